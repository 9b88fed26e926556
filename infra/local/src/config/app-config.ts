import { readFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join, resolve } from 'node:path';
import { z } from 'zod';
import { FnHostError } from '../errors.js';
import { type EventGridSettings, eventGridSettingsSchema } from '../eventgrid/settings.js';
import { parseTimeSpan } from './timespan.js';

const timeSpan = z.union([z.string(), z.number()]);

/** The parts of host.json fnhost honours. Unknown keys are kept, as the real host ignores them too. */
const hostJsonSchema = z.looseObject({
  version: z.literal('2.0', { message: 'host.json "version" must be "2.0"' }),
  functionTimeout: timeSpan.optional(),
  logging: z
    .looseObject({
      logLevel: z.record(z.string(), z.string()).optional(),
    })
    .optional(),
  extensions: z
    .looseObject({
      http: z
        .looseObject({
          routePrefix: z.string().optional(),
        })
        .optional(),
      durableTask: z
        .looseObject({
          hubName: z.string().optional(),
          maxConcurrentActivityFunctions: z.number().int().positive().optional(),
          maxConcurrentOrchestratorFunctions: z.number().int().positive().optional(),
          maxConcurrentEntityFunctions: z.number().int().positive().optional(),
        })
        .optional(),
      queues: z
        .looseObject({
          maxPollingInterval: timeSpan.optional(),
          visibilityTimeout: timeSpan.optional(),
          batchSize: z.number().int().positive().optional(),
          maxDequeueCount: z.number().int().positive().optional(),
          newBatchThreshold: z.number().int().nonnegative().optional(),
        })
        .optional(),
      blobs: z.looseObject({ maxDegreeOfParallelism: z.number().int().positive().optional() }).optional(),
    })
    .optional(),
});

const localSettingsSchema = z.looseObject({
  IsEncrypted: z.boolean().optional(),
  Values: z.record(z.string(), z.union([z.string(), z.number(), z.boolean()])).optional(),
  ConnectionStrings: z.record(z.string(), z.string()).optional(),
  Host: z
    .looseObject({
      LocalHttpPort: z.number().int().optional(),
      CORS: z.string().optional(),
    })
    .optional(),
  /** fnhost extension: fixed keys instead of generated ones. */
  Keys: z
    .object({
      master: z.string().min(1).optional(),
      host: z.record(z.string(), z.string().min(1)).optional(),
      functions: z.record(z.string(), z.record(z.string(), z.string().min(1))).optional(),
      system: z.record(z.string(), z.string().min(1)).optional(),
    })
    .optional(),
  /** fnhost extension: the storage account's Event Grid system topic and custom topics (eventgrid/settings.ts). */
  EventGrid: eventGridSettingsSchema,
});

export type LocalSettings = z.infer<typeof localSettingsSchema>;
export type KeySettings = NonNullable<LocalSettings['Keys']>;

/** Settings derived from host.json, with the real host's defaults filled in. */
export interface HostSettings {
  routePrefix: string;
  functionTimeoutMs: number | undefined;
  durable: {
    hubName: string;
    maxConcurrentActivityFunctions: number;
    maxConcurrentOrchestratorFunctions: number;
    maxConcurrentEntityFunctions: number;
  };
  queues: {
    maxPollingIntervalMs: number;
    visibilityTimeoutMs: number;
    batchSize: number;
    maxDequeueCount: number;
    newBatchThreshold: number;
  };
  blobs: {
    /** Blobs one blob-triggered function processes at once. */
    maxDegreeOfParallelism: number;
  };
}

export interface AppConfig {
  scriptRoot: string;
  /** The `main` glob of the app's package.json. */
  entryPattern: string;
  isEsm: boolean;
  host: HostSettings;
  /** App settings from local.settings.json `Values`, as strings. */
  values: Record<string, string>;
  keys: KeySettings | undefined;
  eventGrid: EventGridSettings;
}

async function readJson(path: string, what: string, required: boolean): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if (!required && (err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new FnHostError('ERR_CONFIG', `cannot read ${what} at ${path}`, { cause: err });
  }
  try {
    // host.json and local.settings.json may carry a BOM when written on Windows.
    return JSON.parse(text.replace(/^\uFEFF/, ''));
  } catch (err) {
    throw new FnHostError('ERR_CONFIG', `${what} at ${path} is not valid JSON: ${(err as Error).message}`, {
      cause: err,
    });
  }
}

function parseWith<T>(schema: z.ZodType<T>, value: unknown, what: string): T {
  const result = schema.safeParse(value);
  if (!result.success) {
    throw new FnHostError('ERR_CONFIG', `${what} is invalid:\n${z.prettifyError(result.error)}`);
  }
  return result.data;
}

function hostSettingsFrom(hostJson: z.infer<typeof hostJsonSchema>): HostSettings {
  const ext = hostJson.extensions ?? {};
  // The host scales these defaults by the processor count.
  const cores = availableParallelism();
  const queues = ext.queues ?? {};
  const batchSize = queues.batchSize ?? 16;
  return {
    routePrefix: (ext.http?.routePrefix ?? 'api').replace(/^\/+|\/+$/g, ''),
    functionTimeoutMs:
      hostJson.functionTimeout === undefined ? undefined : parseTimeSpan(hostJson.functionTimeout, 'functionTimeout'),
    durable: {
      hubName: ext.durableTask?.hubName ?? 'TestHubName',
      maxConcurrentActivityFunctions: ext.durableTask?.maxConcurrentActivityFunctions ?? 10 * cores,
      maxConcurrentOrchestratorFunctions: ext.durableTask?.maxConcurrentOrchestratorFunctions ?? 10 * cores,
      maxConcurrentEntityFunctions: ext.durableTask?.maxConcurrentEntityFunctions ?? 10 * cores,
    },
    queues: {
      // The storage extension lowers its one-minute default to two seconds in development.
      maxPollingIntervalMs:
        queues.maxPollingInterval === undefined ? 2000 : parseTimeSpan(queues.maxPollingInterval, 'maxPollingInterval'),
      visibilityTimeoutMs:
        queues.visibilityTimeout === undefined ? 0 : parseTimeSpan(queues.visibilityTimeout, 'visibilityTimeout'),
      batchSize,
      maxDequeueCount: queues.maxDequeueCount ?? 5,
      newBatchThreshold: queues.newBatchThreshold ?? Math.floor(batchSize / 2) * cores,
    },
    blobs: { maxDegreeOfParallelism: ext.blobs?.maxDegreeOfParallelism ?? 8 * cores },
  };
}

/** Reads package.json, host.json and local.settings.json of the app at `scriptRoot`. */
export async function loadAppConfig(scriptRootArg: string): Promise<AppConfig> {
  const scriptRoot = resolve(scriptRootArg);
  const pkg = parseWith(
    z.looseObject({ main: z.string().optional(), type: z.string().optional() }),
    await readJson(join(scriptRoot, 'package.json'), 'package.json', true),
    'package.json',
  );
  if (!pkg.main) {
    throw new FnHostError(
      'ERR_CONFIG',
      `package.json at ${scriptRoot} has no "main": set it to the glob of your compiled function files, e.g. "dist/functions/*.js"`,
    );
  }
  const hostJson = parseWith(
    hostJsonSchema,
    await readJson(join(scriptRoot, 'host.json'), 'host.json', true),
    'host.json',
  );
  const local = parseWith(
    localSettingsSchema,
    (await readJson(join(scriptRoot, 'local.settings.json'), 'local.settings.json', false)) ?? {},
    'local.settings.json',
  );
  const values: Record<string, string> = {};
  for (const [k, v] of Object.entries(local.Values ?? {})) values[k] = String(v);
  return {
    scriptRoot,
    entryPattern: pkg.main,
    isEsm: pkg.type === 'module',
    host: hostSettingsFrom(hostJson),
    values,
    keys: local.Keys,
    eventGrid: local.EventGrid,
  };
}
