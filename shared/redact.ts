/**
 * The one redaction function (issue 12, "No secrets anywhere visible"). Whatever text the app shows
 * (problem details, job errors, job.json, logs/job.log, errors.jsonl, the host's log) passes
 * through it where it may carry a URL or a connection string:
 * - a URL's query string (where a SAS lives: `sv=`, `sig=`, `se=`, ...) becomes `?<redacted>`,
 *   keeping the scheme, host and path;
 * - `AccountKey=`, `SharedAccessSignature=` and `SharedAccessKey=` values of connection strings,
 *   and a bare `sig=` anywhere, become `<redacted>`;
 * - a bearer token (`Bearer …`), anything shaped like a JWT (`eyJ….eyJ….…`, signed or not) and a
 *   storage account key (88 characters of base64) become `<redacted>`.
 */
export const REDACTED = '<redacted>';

const URL_QUERY = /\b([a-z][a-z0-9+.-]*:\/\/[^\s?#"'<>`]*)\?[^\s#"'<>`]*/gi;
const CONNECTION_SECRET = /\b(AccountKey|SharedAccessSignature|SharedAccessKey)=[^;\s"'`]*/gi;
const SAS_SIGNATURE = /([?&\s"'`]|^)sig=[^&\s"'`]*/gi;
const BEARER = /\b(Bearer)\s+[A-Za-z0-9\-._~+/]{16,}=*/gi;
const JWT = /\beyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*/g;
const ACCOUNT_KEY = /(^|[^A-Za-z0-9+/])[A-Za-z0-9+/]{86}==(?![A-Za-z0-9+/=])/g;
const FUNCTION_KEY = /[?&]code=[^&\s"'`]+/i;

export function redactSecrets(text: string): string {
  return text
    .replace(URL_QUERY, (_m, base: string) => `${base}?${REDACTED}`)
    .replace(CONNECTION_SECRET, (_m, name: string) => `${name}=${REDACTED}`)
    .replace(SAS_SIGNATURE, (_m, before: string) => `${before}sig=${REDACTED}`)
    .replace(BEARER, (_m, word: string) => `${word} ${REDACTED}`)
    .replace(JWT, REDACTED)
    .replace(ACCOUNT_KEY, (_m, before: string) => `${before}${REDACTED}`);
}

/**
 * What kind of secret `text` carries, if any (for refusing one where only references belong, see
 * shared/schemas/environment.ts): the same patterns {@link redactSecrets} hides, plus a function
 * key in a URL (`code=`). A URL's other query parameters are not taken for secrets here.
 */
export function secretKind(text: string): string | undefined {
  const has = (pattern: RegExp): boolean => new RegExp(pattern.source, pattern.flags.replace('g', '')).test(text);
  if (has(CONNECTION_SECRET)) return 'a key or SAS of a connection string';
  if (has(SAS_SIGNATURE)) return 'a SAS signature (sig=)';
  if (has(FUNCTION_KEY)) return 'a function key (code=)';
  if (has(BEARER) || has(JWT)) return 'a bearer token';
  if (has(ACCOUNT_KEY)) return 'a storage account key';
  return undefined;
}
