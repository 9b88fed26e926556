/**
 * Loads this app's orchestrators the way fnhost loads the app: `@azure/functions` registers into
 * fnhost's worker runtime, and each orchestrator is the very handler `df.app.orchestration`
 * registered (today's `orchestrations/orchestrators.ts`, its wiring and activity names included).
 * The activity handles come along for tests that build altered orchestrators from them.
 */
import { Logger } from '../../infra/local/src/log.js';
import { installCoreModule } from '../../infra/local/src/worker/module-hook.js';
import { WorkerRuntime } from '../../infra/local/src/worker/worker-runtime.js';
import type * as activitiesModule from '../../orchestrations/activities.js';
import type * as orchestratorsModule from '../../orchestrations/orchestrators.js';
import type { OrchestratorListener } from './in-process-durable.js';

export type AppActivities = typeof activitiesModule;
export type AppOrchestrations = typeof orchestratorsModule;

export interface LoadedApp {
  /** Registered orchestrator handlers by function name (batchJob, batchLane, batchChunk). */
  orchestrators: Map<string, OrchestratorListener>;
  activities: AppActivities;
  orchestrations: AppOrchestrations;
}

let loaded: Promise<LoadedApp> | undefined;

/**
 * `@azure/functions` looks for the worker API once per process, at its first registration: the
 * hook must be in place before any module of the app is imported (so test files import the app
 * only through here, never statically).
 */
export function loadAppOrchestrators(): Promise<LoadedApp> {
  loaded ??= (async () => {
    const runtime = new WorkerRuntime({ logger: new Logger({ minLevel: 'warning' }), hostVersion: 'replay-tests' });
    const remove = installCoreModule(runtime.coreApi);
    try {
      const orchestrations = await import('../../orchestrations/orchestrators.js');
      const activities = await import('../../orchestrations/activities.js');
      const orchestrators = new Map<string, OrchestratorListener>();
      for (const fn of runtime.functionsWithTrigger('orchestrationTrigger')) {
        orchestrators.set(fn.name, fn.callback as OrchestratorListener);
      }
      if (orchestrators.size === 0) {
        throw new Error('No orchestrator registered with the worker runtime: was @azure/functions already loaded without it?');
      }
      return { orchestrators, activities, orchestrations };
    } finally {
      remove();
    }
  })();
  return loaded;
}
