import type { Invoker } from '../worker/invoker.js';
import type { WorkerRuntime } from '../worker/worker-runtime.js';
import type { KeyStore } from './keys.js';
import { type HostRequest, type HostResponse, empty, json } from './types.js';

/**
 * Admin endpoints (master key): host status, system keys, the function list, and
 * `POST /admin/functions/{name}` to run a non-HTTP function by hand, as Core Tools allows.
 */
export class AdminApi {
  constructor(
    private readonly options: {
      runtime: WorkerRuntime;
      invoker: Invoker;
      keys: KeyStore;
      version: string;
      /** Counters of the durable engine (episodes, activities, entity batches). */
      durableStats: () => Record<string, number>;
    },
  ) {}

  async handle(request: HostRequest, path: string): Promise<HostResponse> {
    const parts = path.split('/').filter((p) => p !== '');
    const method = request.method.toUpperCase();
    const [area, a, b] = parts;
    if (area === 'host' && a === 'status' && method === 'GET') {
      return json(200, { state: 'Running', version: this.options.version, durable: this.options.durableStats() });
    }
    if (area === 'host' && a === 'systemkeys' && b && method === 'GET') {
      const value = this.options.keys.keys.system[b];
      return value === undefined ? empty(404) : json(200, { name: b, value });
    }
    if (area === 'functions' && a === undefined && method === 'GET') {
      return json(
        200,
        [...this.options.runtime.functions.values()].map((f) => ({
          name: f.name,
          trigger: f.triggerType,
          bindings: f.bindings,
          // The host's function metadata carries isDisabled; fnhost also says why a function cannot run.
          isDisabled: f.disabled,
          ...(f.error === undefined ? {} : { error: f.error }),
        })),
      );
    }
    if (area === 'functions' && a && method === 'POST') {
      const fn = this.options.runtime.getFunction(decodeURIComponent(a));
      // A function in error is not one the host knows; a disabled one can still be run by hand, as in the host.
      if (!fn || fn.error !== undefined) return empty(404);
      if (fn.triggerType.toLowerCase() === 'httptrigger') {
        return json(400, { error: 'Call HTTP-triggered functions on their route.' });
      }
      let input: unknown = null;
      if (request.body.length > 0) {
        try {
          input = (JSON.parse(request.body.toString('utf8')) as { input?: unknown }).input ?? null;
        } catch {
          return json(400, { error: 'The body must be JSON: {"input": "..."}' });
        }
      }
      const outcome = await this.options.invoker.invoke(fn, {
        triggerData: input === null ? null : { string: typeof input === 'string' ? input : JSON.stringify(input) },
        reason: 'This function was programmatically called via the host APIs.',
      });
      return outcome.error ? json(500, { error: outcome.error.message }) : empty(202);
    }
    return empty(404);
  }
}
