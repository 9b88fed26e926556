/**
 * Runs durable-functions orchestrators in this process, through the same code path the library
 * registers with `df.app.orchestration` (its `createOrchestrator` listener), so tests see exactly
 * the OrchestratorState (or the failure) a host would get back.
 */
import { createRequire } from 'node:module';
import * as df from 'durable-functions';

/** What `df.app.orchestration` registers as the function's handler: (trigger value, context) → state. */
export type OrchestratorListener = (trigger: unknown, context: df.OrchestrationContext) => Promise<unknown>;

/** The part of the library's public handler type the tests build orchestrators with. */
export type OrchestratorGenerator = (context: df.OrchestrationContext) => Generator<df.Task, unknown, unknown>;

/** What `df.app.entity` registers as the function's handler: (trigger value, context) → entity state. */
export type EntityListener = (trigger: unknown, context: df.EntityContext<unknown>) => Promise<unknown>;

interface TestingUtils {
  createOrchestrator(fn: OrchestratorGenerator): OrchestratorListener;
  createEntityFunction(fn: df.EntityHandler<unknown>): EntityListener;
}

interface TaskClasses {
  RegisteredActivityTask: new (name: string, input: unknown) => df.RegisteredActivityTask;
  RegisteredOrchestrationTask: new (name: string, input: unknown, instanceId: string | undefined) => df.RegisteredOrchestrationTask;
}

// The library keeps these out of its typed index; `df.app.activity`/`orchestration` use them and
// would also register with @azure/functions. These are the same module instances the app's
// `import * as df from 'durable-functions'` uses (one CommonJS cache), so `instanceof` holds.
const require = createRequire(import.meta.url);
const testingUtils = require('durable-functions/lib/src/util/testingUtils.js') as TestingUtils;
const activityTasks = require('durable-functions/lib/src/task/RegisteredActivityTask.js') as Pick<TaskClasses, 'RegisteredActivityTask'>;
const orchestrationTasks = require('durable-functions/lib/src/task/RegisteredOrchestrationTask.js') as Pick<TaskClasses, 'RegisteredOrchestrationTask'>;

/** The listener `df.app.orchestration(name, fn)` would register for `fn`. */
export function orchestratorListener(fn: OrchestratorGenerator): OrchestratorListener {
  return testingUtils.createOrchestrator(fn);
}

/** The listener `df.app.entity(name, fn)` would register for `fn`. */
export function entityListener(fn: df.EntityHandler<unknown>): EntityListener {
  return testingUtils.createEntityFunction(fn);
}

/** A registered-activity handle (`df.app.activity`'s return value) without registering anything. */
export function activityHandle(name: string): (input: unknown) => df.RegisteredActivityTask {
  return (input) => new activityTasks.RegisteredActivityTask(name, input);
}

/** A registered-orchestration handle (`df.app.orchestration`'s return value) without registering anything. */
export function orchestrationHandle(name: string): (input: unknown, instanceId: string) => df.RegisteredOrchestrationTask {
  return (input, instanceId) => new orchestrationTasks.RegisteredOrchestrationTask(name, input, instanceId);
}

export interface ListenerOutcome {
  /** The OrchestratorState the listener returned (a plain object after JSON). */
  returnValue?: unknown;
  /** The error it threw: a failed orchestrator carries its state in the message. */
  error?: Error;
}

/** Invokes a listener with a trigger value (the parsed JSON a host sends) and a fresh context. */
export async function invokeListener(listener: OrchestratorListener, trigger: unknown, functionName: string): Promise<ListenerOutcome> {
  const context = new df.DummyOrchestrationContext(functionName, undefined, () => undefined);
  try {
    // A host sends the state across as JSON; the round trip drops what JSON drops (undefined fields).
    return { returnValue: JSON.parse(JSON.stringify(await listener(trigger, context))) as unknown };
  } catch (err) {
    return { error: err instanceof Error ? err : new Error(String(err)) };
  }
}
