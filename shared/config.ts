import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';
import { BatchError } from './errors.js';
import { SEGMENT_SIZE } from './limits.js';

/**
 * The app's configuration, parsed once from the environment (Functions app settings;
 * local.settings.json `Values` under fnhost). This is the only module that reads `process.env`.
 */

/** A setting left empty (as local.settings.json templates do) is a setting not given. */
function optional<T extends z.ZodType>(inner: T): z.ZodPreprocess<z.ZodOptional<T>> {
  return z.preprocess((v) => (v === '' ? undefined : v), inner.optional());
}

export const AUTH_MODES = ['function_key', 'entra', 'easy_auth', 'none'] as const;
export type AuthMode = (typeof AUTH_MODES)[number];

const schema = z.object({
  AzureWebJobsStorage: z.string().min(1, 'AzureWebJobsStorage must name the storage account (a connection string)'),
  BATCH_WORKSPACE_CONTAINER: z
    .string()
    .regex(/^[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}$/, 'must be a valid blob container name')
    .default('azureml-blobstore'),
  BATCH_API_AUTH_LEVEL: z.enum(['anonymous', 'function']).default('function'),
  /**
   * How callers of the API authenticate (see README, "Authentication and authorization"):
   * `function_key` (the Functions host checks a key), `entra` (the app validates Microsoft Entra ID
   * bearer tokens), `easy_auth` (App Service authentication fronts the app; its
   * `x-ms-client-principal*` headers are trusted), `none`. Unset: `function_key`, or `none` when
   * BATCH_API_AUTH_LEVEL=anonymous (the older setting).
   */
  BATCH_AUTH_MODE: optional(z.enum(AUTH_MODES)),
  /** Tenants (ids) whose tokens are accepted, comma-separated. Required with `entra`; with `easy_auth`, optional (then checked too). */
  BATCH_AUTH_TENANTS: optional(z.string()),
  /** The app's own API: its application ID URI (`api://…`) and/or client id, comma-separated. Required with `entra`. */
  BATCH_AUTH_AUDIENCES: optional(z.string()),
  /** OpenID metadata per tenant; `{tenant}` is replaced by the tenant id. https, or http on loopback (a local issuer). */
  BATCH_AUTH_METADATA_URL: z.preprocess((v) => (v === '' ? undefined : v), z.string().default('https://login.microsoftonline.com/{tenant}/v2.0/.well-known/openid-configuration')),
  /** Seconds of clock skew tolerated on `exp` and `nbf`. */
  BATCH_AUTH_CLOCK_SKEW_SECONDS: z.coerce.number().int().min(0).max(600).default(60),
  /** The `realm` of `WWW-Authenticate` challenges; by default the app's name. */
  BATCH_AUTH_REALM: optional(z.string().regex(/^[\x20-\x7e]*$/, 'must be printable ASCII').refine((v) => !v.includes('"') && !v.includes('\\'), 'must not contain quotes or backslashes')),
  /**
   * The web page's own sign-in with Microsoft Entra ID (BATCH_AUTH_MODE=entra only; see
   * web/README.md): the client id of the app registration whose "single-page application" redirect
   * URI is the page (`https://{app}/api/app/`). Unset: the page takes a pasted token only.
   */
  BATCH_WEB_CLIENT_ID: optional(z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/, 'must be an application (client) id')),
  /** The tenant the page signs users in with: one of BATCH_AUTH_TENANTS (default its first). */
  BATCH_WEB_TENANT: optional(z.string()),
  /**
   * The authority (`https://login.microsoftonline.com/{tenant}`): its `/oauth2/v2.0/authorize` and
   * `/oauth2/v2.0/token` are the page's. Default: BATCH_AUTH_METADATA_URL without
   * `/v2.0/.well-known/openid-configuration` (`{tenant}` replaced), which is Entra's layout.
   */
  BATCH_WEB_AUTHORITY: optional(z.string()),
  /** The delegated scopes the page asks for, space- or comma-separated. Default `{first of BATCH_AUTH_AUDIENCES}/.default`. */
  BATCH_WEB_SCOPES: optional(z.string()),
  BATCH_CACHE_DIR: z.string().min(1).optional(),
  BATCH_TABLE_PREFIX: z
    .string()
    .regex(/^[A-Za-z][A-Za-z0-9]{0,19}$|^$/, 'must be letters and digits, starting with a letter')
    .default(''),
  /** The most mini-batches in one chunk (sub-orchestration); bounds each orchestration's history. */
  BATCH_CHUNK_SIZE: z.coerce.number().int().min(1).max(5000).default(200),
  /** How often (orchestration time) running jobs write their counts to the job table. */
  BATCH_PROGRESS_INTERVAL_SECONDS: z.coerce.number().min(0).default(2),
  /**
   * Megabytes of lanes' next mini-batches fetched while the current ones are scored (0 turns
   * prefetching off); a mini-batch larger than what is left is not prefetched. Small, because it
   * pays where a mini-batch is many small files (each request's latency hidden behind scoring);
   * mini-batches of large files spend their time transferring and parsing, which prefetching only
   * moves, and it then competes with scoring for the CPU (measured: (a) of `npm run bench` ~8%
   * slower with 64 MB, the 1,000-file (b) ~4% faster with it).
   */
  BATCH_PREFETCH_MB: z.coerce.number().min(0).max(4096).default(4),
  BATCH_SCORING_YOUNG_GENERATION_MB: z.coerce.number().int().min(3).max(1024).default(12),
  /**
   * How a job's bookkeeping (journal, failure records, halting) retries storage failures that the
   * storage SDK's own retries did not overcome: attempts in all, the first retry after this many
   * milliseconds, doubling up to 16 s. The defaults ride out about half a minute of trouble before
   * the job fails; progress reports are advisory and retried less.
   */
  BATCH_BOOKKEEPING_RETRY_MS: z.coerce.number().int().min(1).max(60_000).default(1000),
  BATCH_BOOKKEEPING_ATTEMPTS: z.coerce.number().int().min(1).max(20).default(6),
  /**
   * Where job events go (see shared/events/): an Event Grid topic's endpoint
   * (`https://{topic}.{region}-1.eventgrid.azure.net/api/events`, or fnhost's local
   * `{host}/runtime/eventgrid/topics/{topic}/api/events`) and its access key. Unset: no events are
   * recorded or published.
   */
  BATCH_EVENTS_TOPIC_ENDPOINT: optional(z.url({ protocol: /^https?$/, error: 'must be an http(s) URL' })),
  BATCH_EVENTS_TOPIC_KEY: optional(z.string()),
  /** The events' `source`; by default `/batch-endpoints/{app name}` (WEBSITE_SITE_NAME, else the host name). */
  BATCH_EVENTS_SOURCE: optional(z.string()),
  WEBSITE_SITE_NAME: z.string().optional(),
  /** `Retry-After` of invoke and of a running job's status URL (the long-running-operation pattern). */
  BATCH_STATUS_RETRY_AFTER_SECONDS: z.coerce.number().int().min(1).max(3600).default(10),
  /**
   * The largest JSON body the API reads (bytes); larger ones get 413. The host has its own, larger
   * limit on every request (FUNCTIONS_REQUEST_BODY_SIZE_LIMIT, 100 MiB by default).
   */
  BATCH_MAX_REQUEST_BODY_BYTES: z.coerce.number().int().min(1024).max(100 * 1024 * 1024).default(1024 * 1024),
  /**
   * The most input files one job (or step) scores: an operator's cap. A folder is listed page by
   * page while scoring runs (BATCH_LIST_PAGE_SIZE), so memory does not bound it; a job that lists
   * more fails when its listing reaches the cap.
   */
  BATCH_MAX_FILES_PER_JOB: z.coerce.number().int().min(1).default(10_000_000),
  /**
   * Entries per page (Blob storage's `maxresults`, at most 5,000) when a job lists a folder input.
   * A folder listed in one page is planned whole; a larger one is planned page by page while its
   * first mini-batches are already scored.
   */
  BATCH_LIST_PAGE_SIZE: z.coerce.number().int().min(1).max(5000).default(1000),
  /**
   * The most mini-batches of one job (or step): an operator's cap, not storage's (outputs are
   * composed from segment parts, so no blob limit bounds a job; see shared/outputs/compose.ts).
   */
  BATCH_MAX_MINI_BATCHES_PER_JOB: z.coerce.number().int().min(1).default(1_000_000),
  /**
   * Mini-batches per segment of a job prepared from now on (its journal and output parts; a job
   * keeps the size it was prepared with, `segment_size`). At most SEGMENT_SIZE (256, the default):
   * a segment's blobs must stay within a blob's blocks. Smaller sizes are for tests: each segment
   * is a few more blobs and copies.
   */
  BATCH_SEGMENT_SIZE: z.coerce.number().int().min(1).max(SEGMENT_SIZE).default(SEGMENT_SIZE),
  /**
   * Invokes per caller: a token bucket of BATCH_INVOKE_BURST tokens refilled at
   * BATCH_INVOKE_RATE_PER_MINUTE; 0 turns the limit off. Kept in memory per host instance.
   */
  BATCH_INVOKE_RATE_PER_MINUTE: z.coerce.number().min(0).default(600),
  BATCH_INVOKE_BURST: z.coerce.number().int().min(1).default(200),
});

export interface AppConfig {
  storageConnection: string;
  workspaceContainer: string;
  apiAuthLevel: 'anonymous' | 'function';
  /** How callers authenticate and what they may do (see shared/auth/). */
  auth: AuthConfig;
  /** The web page's in-page Entra sign-in; undefined unless BATCH_AUTH_MODE=entra and BATCH_WEB_CLIENT_ID is set. */
  webSignIn: WebSignIn | undefined;
  /** Local folder for downloaded models, code and inputs. */
  cacheDir: string;
  tablePrefix: string;
  /** The most mini-batches in one chunk; jobs cut theirs evenly across lanes (see chunkLayout). */
  maxChunkSize: number;
  /** BATCH_SEGMENT_SIZE: mini-batches per segment of a job prepared now. */
  segmentSize: number;
  /** BATCH_LIST_PAGE_SIZE: entries per page of a folder input's listing. */
  listPageSize: number;
  progressIntervalSeconds: number;
  /** Bytes of upcoming mini-batches' inputs held in memory at most; 0 = no prefetching. */
  prefetchBytes: number;
  /** Each scoring thread's V8 young generation, in MB (see ScoringRuntimeOptions.youngGenerationMb). */
  scoringYoungGenerationMb: number;
  /** Retries of a job's bookkeeping activities (see BATCH_BOOKKEEPING_RETRY_MS). */
  bookkeepingRetry: BookkeepingRetry;
  /** Job events' topic; undefined when events are off (BATCH_EVENTS_TOPIC_ENDPOINT unset). */
  events: EventsConfig | undefined;
  /** Seconds a client following the status URL (Logic Apps) waits between polls. */
  statusRetryAfterSeconds: number;
  /** Limits of requests and jobs (see shared/limits.ts). */
  limits: Limits;
}

/** The configurable limits; each is named by its setting in the problem that reports it. */
export interface Limits {
  /** BATCH_MAX_REQUEST_BODY_BYTES */
  requestBodyBytes: number;
  /** BATCH_MAX_FILES_PER_JOB */
  filesPerJob: number;
  /** BATCH_MAX_MINI_BATCHES_PER_JOB */
  miniBatchesPerJob: number;
  /** BATCH_INVOKE_RATE_PER_MINUTE (0: no limit) and BATCH_INVOKE_BURST */
  invokeRatePerMinute: number;
  invokeBurst: number;
}

/** How callers of the API authenticate (BATCH_AUTH_*). */
export interface AuthConfig {
  mode: AuthMode;
  /** Allowed tenant ids (lowercase); empty: with `easy_auth`, any tenant App Service accepted. */
  tenants: string[];
  audiences: string[];
  /** OpenID metadata URL template, `{tenant}` replaced by a tenant id. */
  metadataUrl: string;
  clockSkewSeconds: number;
  realm: string;
}

/**
 * What the web page needs for the OAuth 2.0 authorization code flow with PKCE (RFC 6749, RFC 7636)
 * against Microsoft Entra ID, as a single-page application: served to it by `GET /api/app/config.json`.
 */
export interface WebSignIn {
  clientId: string;
  tenant: string;
  /** `{authority}/oauth2/v2.0/authorize` and `…/token` (Entra's v2.0 endpoints). */
  authorizationEndpoint: string;
  tokenEndpoint: string;
  /** Delegated scopes of the API (the page adds `openid profile` for the id token and its nonce). */
  scopes: string[];
}

/** Where job events are published (see shared/events/). */
export interface EventsConfig {
  endpoint: string;
  key: string;
  /** The CloudEvents `source` of every event. */
  source: string;
}

/** How bookkeeping activities are retried: attempts in all, and the first interval (doubling, at most 16 s). */
export interface BookkeepingRetry {
  firstRetryMs: number;
  attempts: number;
}

let cached: AppConfig | undefined;

/** Parses the environment once; throws a configuration error naming the bad settings. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): AppConfig {
  if (cached && env === process.env) return cached;
  const result = schema.safeParse(env);
  if (!result.success) {
    const lines = result.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
    throw new BatchError('configuration', `Invalid app settings:\n${lines.join('\n')}`);
  }
  const e = result.data;
  if (e.BATCH_EVENTS_TOPIC_ENDPOINT !== undefined && e.BATCH_EVENTS_TOPIC_KEY === undefined) {
    throw new BatchError('configuration', 'Invalid app settings:\nBATCH_EVENTS_TOPIC_KEY: required with BATCH_EVENTS_TOPIC_ENDPOINT (the topic\'s access key)');
  }
  const auth = authConfig(e);
  const webSignIn = webSignInConfig(e, auth);
  const config: AppConfig = {
    storageConnection: e.AzureWebJobsStorage,
    workspaceContainer: e.BATCH_WORKSPACE_CONTAINER,
    apiAuthLevel: auth.mode === 'function_key' ? 'function' : 'anonymous',
    auth,
    webSignIn,
    cacheDir: e.BATCH_CACHE_DIR ?? join(tmpdir(), 'batch-endpoints'),
    tablePrefix: e.BATCH_TABLE_PREFIX,
    maxChunkSize: e.BATCH_CHUNK_SIZE,
    segmentSize: e.BATCH_SEGMENT_SIZE,
    listPageSize: e.BATCH_LIST_PAGE_SIZE,
    progressIntervalSeconds: e.BATCH_PROGRESS_INTERVAL_SECONDS,
    prefetchBytes: Math.floor(e.BATCH_PREFETCH_MB * 1024 * 1024),
    scoringYoungGenerationMb: e.BATCH_SCORING_YOUNG_GENERATION_MB,
    bookkeepingRetry: { firstRetryMs: e.BATCH_BOOKKEEPING_RETRY_MS, attempts: e.BATCH_BOOKKEEPING_ATTEMPTS },
    events:
      e.BATCH_EVENTS_TOPIC_ENDPOINT === undefined || e.BATCH_EVENTS_TOPIC_KEY === undefined
        ? undefined
        : {
            endpoint: e.BATCH_EVENTS_TOPIC_ENDPOINT,
            key: e.BATCH_EVENTS_TOPIC_KEY,
            source: e.BATCH_EVENTS_SOURCE ?? `/batch-endpoints/${e.WEBSITE_SITE_NAME || hostname()}`,
          },
    statusRetryAfterSeconds: e.BATCH_STATUS_RETRY_AFTER_SECONDS,
    limits: {
      requestBodyBytes: e.BATCH_MAX_REQUEST_BODY_BYTES,
      filesPerJob: e.BATCH_MAX_FILES_PER_JOB,
      miniBatchesPerJob: e.BATCH_MAX_MINI_BATCHES_PER_JOB,
      invokeRatePerMinute: e.BATCH_INVOKE_RATE_PER_MINUTE,
      invokeBurst: e.BATCH_INVOKE_BURST,
    },
  };
  if (env === process.env) cached = config;
  return config;
}

/**
 * Reads an app setting a resource refers to by name (a datastore's connection-string setting).
 * Kept here so that every environment read goes through this module.
 */
export function appSetting(name: string, env: NodeJS.ProcessEnv = process.env): string | undefined {
  const value = env[name];
  return value === undefined || value === '' ? undefined : value;
}

/** The auth level of the API's HTTP functions, needed while registering them (module load): `function` only with function keys. */
export function apiAuthLevel(env: NodeJS.ProcessEnv = process.env): 'anonymous' | 'function' {
  const mode = env['BATCH_AUTH_MODE'];
  if (mode !== undefined && mode !== '') return mode === 'function_key' ? 'function' : 'anonymous';
  return env['BATCH_API_AUTH_LEVEL'] === 'anonymous' ? 'anonymous' : 'function';
}

function list(value: string | undefined): string[] {
  return (value ?? '').split(',').map((v) => v.trim()).filter((v) => v !== '');
}

const LOOPBACK = new Set(['localhost', '127.0.0.1', '[::1]']);

/** Identity providers are reached over https; plain http only on loopback (a local issuer). */
function httpsOrLoopback(url: URL): boolean {
  return url.protocol === 'https:' || (url.protocol === 'http:' && LOOPBACK.has(url.hostname));
}

/** The URL, if it is one {@link httpsOrLoopback} allows, without credentials, query or fragment. */
function allowedUrl(value: string): URL | undefined {
  try {
    const url = new URL(value);
    if (url.username !== '' || url.password !== '' || url.search !== '' || url.hash !== '') return undefined;
    return httpsOrLoopback(url) ? url : undefined;
  } catch {
    return undefined;
  }
}

const METADATA_SUFFIX = '/v2.0/.well-known/openid-configuration';

function webSignInConfig(e: z.infer<typeof schema>, auth: AuthConfig): WebSignIn | undefined {
  const clientId = e.BATCH_WEB_CLIENT_ID;
  if (clientId === undefined || auth.mode !== 'entra') return undefined;
  const problems: string[] = [];
  const tenant = (e.BATCH_WEB_TENANT ?? auth.tenants[0] ?? '').toLowerCase();
  // Tokens from any other tenant would be refused by the API: signing in there would only fail later.
  if (!auth.tenants.includes(tenant)) problems.push(`BATCH_WEB_TENANT: '${tenant}' is not one of BATCH_AUTH_TENANTS`);
  let authority = e.BATCH_WEB_AUTHORITY?.replace(/\{tenant\}/g, tenant);
  if (authority === undefined) {
    const metadata = auth.metadataUrl.replace(/\{tenant\}/g, tenant);
    if (metadata.endsWith(METADATA_SUFFIX)) authority = metadata.substring(0, metadata.length - METADATA_SUFFIX.length);
    else problems.push(`BATCH_WEB_AUTHORITY: required when BATCH_AUTH_METADATA_URL does not end with ${METADATA_SUFFIX}`);
  }
  if (authority !== undefined && allowedUrl(authority) === undefined) problems.push('BATCH_WEB_AUTHORITY: must be an https URL (http only on loopback) without credentials, query or fragment');
  const scopes = e.BATCH_WEB_SCOPES === undefined ? [`${auth.audiences[0] ?? ''}/.default`] : list(e.BATCH_WEB_SCOPES.replace(/\s+/g, ','));
  if (scopes.length === 0) problems.push('BATCH_WEB_SCOPES: names no scope');
  if (problems.length > 0 || authority === undefined) throw new BatchError('configuration', `Invalid app settings:\n${problems.join('\n')}`);
  const base = authority.replace(/\/+$/, '');
  return { clientId, tenant, authorizationEndpoint: `${base}/oauth2/v2.0/authorize`, tokenEndpoint: `${base}/oauth2/v2.0/token`, scopes };
}

function authConfig(e: z.infer<typeof schema>): AuthConfig {
  const mode: AuthMode = e.BATCH_AUTH_MODE ?? (e.BATCH_API_AUTH_LEVEL === 'anonymous' ? 'none' : 'function_key');
  const tenants = list(e.BATCH_AUTH_TENANTS).map((t) => t.toLowerCase());
  const audiences = list(e.BATCH_AUTH_AUDIENCES);
  const problems: string[] = [];
  if (mode === 'entra' && tenants.length === 0) problems.push('BATCH_AUTH_TENANTS: required with BATCH_AUTH_MODE=entra (the tenant ids whose tokens are accepted)');
  if (mode === 'entra' && audiences.length === 0) problems.push("BATCH_AUTH_AUDIENCES: required with BATCH_AUTH_MODE=entra (the app's application ID URI or client id)");
  for (const t of tenants) {
    if (!/^[a-z0-9][a-z0-9.-]{0,99}$/.test(t)) problems.push(`BATCH_AUTH_TENANTS: '${t}' is not a tenant id`);
  }
  const template = e.BATCH_AUTH_METADATA_URL;
  try {
    const url = new URL(template.replace(/\{tenant\}/g, 'tenant'));
    if (!httpsOrLoopback(url)) problems.push('BATCH_AUTH_METADATA_URL: must be https (http only on loopback, for a local issuer)');
    if (url.username !== '' || url.password !== '') problems.push('BATCH_AUTH_METADATA_URL: must not carry credentials');
  } catch {
    problems.push('BATCH_AUTH_METADATA_URL: must be a URL');
  }
  if (mode === 'entra' && tenants.length > 1 && !template.includes('{tenant}')) problems.push('BATCH_AUTH_METADATA_URL: must contain {tenant} when several tenants are allowed');
  if (problems.length > 0) throw new BatchError('configuration', `Invalid app settings:\n${problems.join('\n')}`);
  return {
    mode,
    tenants,
    audiences,
    metadataUrl: template,
    clockSkewSeconds: e.BATCH_AUTH_CLOCK_SKEW_SECONDS,
    realm: e.BATCH_AUTH_REALM ?? e.WEBSITE_SITE_NAME ?? 'batch-endpoints',
  };
}
