import { BatchError } from '../errors.js';
import { accountOf, parseConnectionString } from './clients.js';

/**
 * Which storage URLs the app may contact: the one module that decides it (issue 12, "No SSRF").
 *
 * A storage account is only ever reached at its own blob endpoint, derived from its account name and
 * an allow-listed endpoint suffix: `https://{account}.blob.{suffix}` with the suffix of the public
 * or a sovereign Azure cloud. The one exception is the local storage emulator (Azurite), reached
 * path-style at `http://127.0.0.1:{port}/{account}`, and only when the app's own storage
 * (AzureWebJobsStorage) is that emulator: then its origin and the accounts it serves are allowed,
 * and no other loopback address or port. Whatever does not fit is refused with a 400 naming the
 * field, before anything is created or contacted: no user info, no port, no query or fragment, no
 * other scheme, no IP address, no lookalike host, no encoded, upper-case or trailing-dot spelling of
 * one (a URL must be written exactly as the app would write it itself).
 *
 * Blob URLs given as data (job inputs and outputs, model and code paths, data assets) are never
 * fetched as given: they are matched to a registered datastore by {@link blobUrlAccount}, and that
 * datastore's client (its endpoint checked here) is what is contacted.
 */

/** Blob endpoint suffixes of the Azure clouds: public, China (21Vianet), US Government. */
export const ENDPOINT_SUFFIXES = ['core.windows.net', 'core.chinacloudapi.cn', 'core.usgovcloudapi.net'] as const;
export type EndpointSuffix = (typeof ENDPOINT_SUFFIXES)[number];

/** The emulator's default (devstoreaccount1) account. */
export const EMULATOR_ACCOUNT = 'devstoreaccount1';

const ACCOUNT = /^[a-z0-9]{3,24}$/;
const CLOUD_HOST = new RegExp(`^([a-z0-9]{3,24})\\.blob\\.(${ENDPOINT_SUFFIXES.map((s) => s.replace(/\./g, '\\.')).join('|')})$`);
const LOOPBACK_HOSTS = new Set(['127.0.0.1', 'localhost', '[::1]']);

export function isEndpointSuffix(value: string): value is EndpointSuffix {
  return (ENDPOINT_SUFFIXES as readonly string[]).includes(value);
}

/** What may be contacted besides the Azure clouds: the emulator, when the app's own storage is it. */
export interface EndpointPolicy {
  emulator: { origin: string; accounts: readonly string[] } | undefined;
}

/** The policy for an app whose own storage is `storageConnection` (AzureWebJobsStorage). */
export function endpointPolicy(storageConnection: string): EndpointPolicy {
  const parts = parseConnectionString(storageConnection);
  const { accountName, blobEndpoint } = accountOf(storageConnection);
  let url: URL;
  try {
    url = new URL(blobEndpoint);
  } catch {
    return { emulator: undefined };
  }
  const emulator = parts['usedevelopmentstorage'] === 'true' || (url.protocol === 'http:' && LOOPBACK_HOSTS.has(url.hostname));
  if (!emulator) return { emulator: undefined };
  return { emulator: { origin: url.origin, accounts: [...new Set([EMULATOR_ACCOUNT, accountName].filter((a) => ACCOUNT.test(a)))] } };
}

function refuse(field: string, message: string, detail: string): BatchError {
  return new BatchError('validation_failed', `${field}: ${detail}`, { issues: [{ field, message }] });
}

/** The blob endpoint of an account in an Azure cloud, as the app writes it. */
export function cloudAccountUrl(account: string, suffix: EndpointSuffix): string {
  return `https://${account}.blob.${suffix}`;
}

/** The authority (`host[:port]` with any user info) exactly as written in a URL, before any parser normalizes it. */
function rawAuthority(raw: string): string | undefined {
  const m = /^[A-Za-z][A-Za-z0-9+.-]*:\/\/([^/?#]*)/.exec(raw);
  return m ? m[1] : undefined;
}

/**
 * The account endpoint an account URL names, checked: `https://{account}.blob.{suffix}` exactly,
 * or the emulator's `{origin}/{account}` when the policy allows it. `account` (when given) must be
 * the account named. Throws a 400 naming `field` otherwise.
 */
export function checkAccountUrl(raw: string, field: string, policy: EndpointPolicy, expected?: { account: string; suffix?: string | undefined }): { url: string; account: string; emulator: boolean } {
  const text = raw.replace(/\/$/, '');
  const authority = rawAuthority(text);
  const cloud = authority !== undefined ? CLOUD_HOST.exec(authority) : null;
  if (cloud && text === `https://${authority ?? ''}`) {
    const account = cloud[1] ?? '';
    const suffix = cloud[2] ?? '';
    if (expected && account !== expected.account) {
      throw refuse(field, `must be the blob endpoint of account '${expected.account}'`, `${text} is not the blob endpoint of account '${expected.account}' (https://${expected.account}.blob.${expected.suffix ?? ENDPOINT_SUFFIXES[0]}).`);
    }
    if (expected?.suffix !== undefined && suffix !== expected.suffix) {
      throw refuse(field, `must be on endpoint '${expected.suffix}'`, `${text} is not on the datastore's endpoint '${expected.suffix}'.`);
    }
    return { url: text, account, emulator: false };
  }
  const emulator = policy.emulator;
  if (emulator && text.startsWith(`${emulator.origin}/`)) {
    const account = text.substring(emulator.origin.length + 1);
    if (emulator.accounts.includes(account) && (!expected || expected.account === account)) return { url: text, account, emulator: true };
  }
  throw refuse(
    field,
    `must be an account's own blob endpoint (https://{account}.blob.{${ENDPOINT_SUFFIXES.join('|')}})`,
    `${text} is not a storage account's blob endpoint. Use https://{account}.blob.{suffix} with a suffix of ${ENDPOINT_SUFFIXES.join(', ')}${emulator ? `, or the local emulator's ${emulator.origin}/{account}` : ''}.`,
  );
}

/**
 * The account endpoint a connection string reaches, checked as {@link checkAccountUrl} does (its
 * account must be `account`). A 400 naming `field` when it reaches anything else.
 */
export function connectionAccountUrl(connection: string, field: string, policy: EndpointPolicy, account: string): { url: string; account: string; emulator: boolean } {
  const { blobEndpoint } = accountOf(connection);
  try {
    return checkAccountUrl(blobEndpoint, field, policy, { account });
  } catch {
    // The endpoint itself is not shown: a connection string is a secret, and so may be its endpoint's query.
    throw refuse(field, `the connection string must reach account '${account}' at its own blob endpoint`, `the connection string in this setting does not reach account '${account}' at an allowed blob endpoint.`);
  }
}

/**
 * Where a blob URL given as data points: the account endpoint it is on (`base`, to be matched with a
 * registered datastore's) and the path after it. Only a cloud account host written exactly as the
 * app writes it (https, lower case, no port, no user info), or a loopback path-style URL (the
 * emulator's form; it is then only ever matched, never contacted, unless a registered datastore is
 * that emulator account). Throws a 400 naming `field` otherwise.
 */
export function blobUrlAccount(raw: string, field: string): { account: string; base: string; path: string; url: URL } | undefined {
  const authority = rawAuthority(raw);
  if (authority === undefined || !/^https?:\/\//.test(raw)) return undefined;
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw refuse(field, 'invalid URL', 'the value is not a valid URL.');
  }
  const cloud = CLOUD_HOST.exec(authority);
  if (cloud && url.protocol === 'https:') {
    return { account: cloud[1] ?? '', base: `https://${authority}`, path: url.pathname.replace(/^\/+/, ''), url };
  }
  const loopback = /^(127\.0\.0\.1|localhost|\[::1\]):([0-9]{1,5})$/.exec(authority);
  if (loopback && url.protocol === 'http:') {
    const segments = url.pathname.replace(/^\/+/, '').split('/');
    const account = segments.shift() ?? '';
    if (ACCOUNT.test(account)) return { account, base: `http://${authority}/${account}`, path: segments.join('/'), url };
  }
  throw refuse(
    field,
    'not a blob URL of an allowed storage endpoint',
    `the URL is not a blob URL of a storage account (https://{account}.blob.{${ENDPOINT_SUFFIXES.join('|')}}/{container}/{path}, written exactly so: no user info, port, IP address or other host).`,
  );
}
