import type { RegisteredFunction } from './worker/worker-runtime.js';

/**
 * The start-up output of Core Tools' `func start` that tools wait for. VS Code's Azure Functions
 * tasks end their wait on "Worker process started and initialized." or "Host lock lease acquired
 * by instance ID"; Core Tools lets these two through even without --verbose.
 */
export const WORKER_STARTED = 'Worker process started and initialized.';

/** The host's lock-lease line, for the instance id of {@link hostInstanceId}. */
export function lockLeaseLine(instanceId: string): string {
  return `Host lock lease acquired by instance ID '${instanceId}'.`;
}

/** The WebJobs SDK's stable (non-cryptographic) hash of a string: 32-bit, over UTF-16 code units. */
function stableHash(value: string): number {
  let hash = 23;
  for (let i = 0; i < value.length; i++) hash = (Math.imul(hash, 31) + value.charCodeAt(i)) | 0;
  return hash;
}

/**
 * The instance id the host reports: WEBSITE_INSTANCE_ID when set, else the stable hash of the
 * machine name (.NET's MachineName: the host name up to its first dot) in hex, padded to 32
 * characters, as the WebJobs SDK computes it locally.
 */
export function hostInstanceId(env: NodeJS.ProcessEnv, hostname: string): string {
  const fromEnv = env['WEBSITE_INSTANCE_ID'];
  const id =
    fromEnv !== undefined && fromEnv !== ''
      ? fromEnv
      : (stableHash(hostname.split('.')[0] ?? hostname) >>> 0).toString(16).toUpperCase().padStart(32, '0');
  return id.substring(0, 32);
}

export interface ListingOptions {
  /** Base URL of the server, without a trailing slash. */
  baseUrl: string;
  /** host.json's routePrefix, without slashes. */
  routePrefix: string;
  /** A query string key to append to the URL of a function-level route (when keys are checked). */
  keyFor(fn: RegisteredFunction): string | undefined;
}

/**
 * The "Functions:" listing in Core Tools' format: a tab-indented `name: [GET,POST] url` line for
 * each HTTP function, `name: triggerType` for the others, each followed by an empty line, then
 * "Function X is disabled." for each disabled function. Functions in error are not listed (they
 * were reported when found).
 */
export function functionsListing(functions: Iterable<RegisteredFunction>, options: ListingOptions): string[] {
  const all = [...functions].filter((f) => f.error === undefined);
  const active = all.filter((f) => !f.disabled);
  const lines: string[] = [];
  if (active.length > 0) lines.push('', 'Functions:', '');
  const isHttp = (f: RegisteredFunction): boolean => f.triggerType.toLowerCase() === 'httptrigger';
  const prefix = options.routePrefix === '' ? '' : `${options.routePrefix}/`;
  for (const fn of active.filter(isHttp)) {
    const route = typeof fn.trigger['route'] === 'string' && fn.trigger['route'] !== '' ? fn.trigger['route'] : fn.name;
    const rawMethods = fn.trigger['methods'];
    const methods = Array.isArray(rawMethods) && rawMethods.length > 0 ? `[${rawMethods.map((m) => String(m).toUpperCase()).join(',')}] ` : '';
    const key = options.keyFor(fn);
    lines.push(`\t${fn.name}: ${methods}${options.baseUrl}/${prefix}${route}${key === undefined ? '' : `?code=${key}`}`, '');
  }
  for (const fn of active.filter((f) => !isHttp(f))) lines.push(`\t${fn.name}: ${fn.triggerType}`, '');
  for (const fn of all.filter((f) => f.disabled)) lines.push(`Function ${fn.name} is disabled.`);
  return lines;
}
