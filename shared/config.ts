import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';
import { BatchError } from './errors.js';
import { MAX_COMMITTED_BLOCKS } from './limits.js';

/**
 * The app's configuration, parsed once from the environment (Functions app settings;
 * local.settings.json `Values` under fnhost). This is the only module that reads `process.env`.
 */

/** A setting left empty (as local.settings.json templates do) is a setting not given. */
function optional<T extends z.ZodType>(inner: T): z.ZodPreprocess<z.ZodOptional<T>> {
  return z.preprocess((v) => (v === '' ? undefined : v), inner.optional());
}

const schema = z.object({
  AzureWebJobsStorage: z.string().min(1, 'AzureWebJobsStorage must name the storage account (a connection string)'),
  BATCH_WORKSPACE_CONTAINER: z
    .string()
    .regex(/^[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}$/, 'must be a valid blob container name')
    .default('azureml-blobstore'),
  BATCH_API_AUTH_LEVEL: z.enum(['anonymous', 'function']).default('function'),
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
  /** The most input files one job (or step) scores; a job listing more fails before scoring. */
  BATCH_MAX_FILES_PER_JOB: z.coerce.number().int().min(1).default(100_000),
  /**
   * The most mini-batches of one job (or step). At most 50,000: each mini-batch is one committed
   * block of the predictions file, and a block blob holds at most that many (MAX_COMMITTED_BLOCKS).
   */
  BATCH_MAX_MINI_BATCHES_PER_JOB: z.coerce.number().int().min(1).max(MAX_COMMITTED_BLOCKS).default(MAX_COMMITTED_BLOCKS),
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
  /** Local folder for downloaded models, code and inputs. */
  cacheDir: string;
  tablePrefix: string;
  /** The most mini-batches in one chunk; jobs cut theirs evenly across lanes (see chunkLayout). */
  maxChunkSize: number;
  progressIntervalSeconds: number;
  /** Bytes of upcoming mini-batches' inputs held in memory at most; 0 = no prefetching. */
  prefetchBytes: number;
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
  /** BATCH_MAX_MINI_BATCHES_PER_JOB (never above MAX_COMMITTED_BLOCKS) */
  miniBatchesPerJob: number;
  /** BATCH_INVOKE_RATE_PER_MINUTE (0: no limit) and BATCH_INVOKE_BURST */
  invokeRatePerMinute: number;
  invokeBurst: number;
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
  const config: AppConfig = {
    storageConnection: e.AzureWebJobsStorage,
    workspaceContainer: e.BATCH_WORKSPACE_CONTAINER,
    apiAuthLevel: e.BATCH_API_AUTH_LEVEL,
    cacheDir: e.BATCH_CACHE_DIR ?? join(tmpdir(), 'batch-endpoints'),
    tablePrefix: e.BATCH_TABLE_PREFIX,
    maxChunkSize: e.BATCH_CHUNK_SIZE,
    progressIntervalSeconds: e.BATCH_PROGRESS_INTERVAL_SECONDS,
    prefetchBytes: Math.floor(e.BATCH_PREFETCH_MB * 1024 * 1024),
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

/** The auth level of the API's HTTP functions, needed while registering them (module load). */
export function apiAuthLevel(env: NodeJS.ProcessEnv = process.env): 'anonymous' | 'function' {
  return env['BATCH_API_AUTH_LEVEL'] === 'anonymous' ? 'anonymous' : 'function';
}
