import * as df from 'durable-functions';
import { afterEach, describe, expect, it } from 'vitest';
import type { Clock } from '../../../infra/local/src/clock.js';
import { DurableEngine } from '../../../infra/local/src/durable/engine.js';
import { EventType, type RuntimeStatus, isTerminal } from '../../../infra/local/src/durable/history.js';
import { SqliteTaskHubStore } from '../../../infra/local/src/durable/store/sqlite-store.js';
import type { CommitResult, Delivery, EntityCommit, EpisodeCommit, NewMessage } from '../../../infra/local/src/durable/store/task-hub-store.js';
import { type LogRecord, Logger } from '../../../infra/local/src/log.js';
import { BindingRegistry } from '../../../infra/local/src/worker/bindings.js';
import { type InvocationOutcome, type InvokeOptions, Invoker } from '../../../infra/local/src/worker/invoker.js';
import { type RegisteredFunction, WorkerRuntime } from '../../../infra/local/src/worker/worker-runtime.js';
import { type EntityListener, type OrchestratorGenerator, entityListener, invokeListener, orchestratorListener } from '../../support/in-process-durable.js';
import { ManualClock } from './manual-clock.js';

/** The real SQLite store, made to fail chosen writes a number of times before it works again. */
class FlakyStore extends SqliteTaskHubStore {
  failCompleteActivities = 0;
  failCommitEpisode = 0;
  failReadyInstances = 0;
  failCommitEntity = 0;
  /** Task numbers of every completeActivities call, and whether it went through. */
  readonly completeCalls: { seqs: number[]; ok: boolean }[] = [];

  override completeActivities(results: { taskSeq: number; message: NewMessage }[]): Delivery[] {
    const seqs = results.map((r) => r.taskSeq);
    if (this.failCompleteActivities > 0) {
      this.failCompleteActivities--;
      this.completeCalls.push({ seqs, ok: false });
      throw new Error('SQLITE_BUSY: database is locked');
    }
    this.completeCalls.push({ seqs, ok: true });
    return super.completeActivities(results);
  }

  override commitEpisode(commit: EpisodeCommit): CommitResult | undefined {
    if (this.failCommitEpisode > 0) {
      this.failCommitEpisode--;
      throw new Error('SQLITE_FULL: database or disk is full');
    }
    return super.commitEpisode(commit);
  }

  override commitEntity(commit: EntityCommit): Delivery[] {
    if (this.failCommitEntity > 0) {
      this.failCommitEntity--;
      throw new Error('SQLITE_BUSY: database is locked');
    }
    return super.commitEntity(commit);
  }

  override readyInstances(now: number): { ready: string[]; nextVisibleAt: number | undefined } {
    if (this.failReadyInstances > 0) {
      this.failReadyInstances--;
      throw new Error('SQLITE_IOERR: disk I/O error');
    }
    return super.readyInstances(now);
  }
}

type ActivityFn = (input: unknown, clock: Clock) => Promise<unknown>;

/** Runs orchestrators through durable-functions' own listener and activities as plain functions. */
class InProcessInvoker extends Invoker {
  readonly calls: { name: string; input: unknown }[] = [];
  readonly #clock: Clock;
  readonly #orchestrators: Map<string, ReturnType<typeof orchestratorListener>>;
  readonly #activities: Map<string, ActivityFn>;
  readonly #entities: Map<string, EntityListener>;

  constructor(
    runtime: WorkerRuntime,
    logger: Logger,
    clock: Clock,
    functions: { orchestrators: Record<string, OrchestratorGenerator>; activities: Record<string, ActivityFn>; entities: Record<string, df.EntityHandler<unknown>> },
  ) {
    super({ runtime, bindings: new BindingRegistry(), logger, clock, functionTimeoutMs: undefined });
    this.#clock = clock;
    this.#orchestrators = new Map(Object.entries(functions.orchestrators).map(([name, fn]) => [name, orchestratorListener(fn)]));
    this.#activities = new Map(Object.entries(functions.activities));
    this.#entities = new Map(Object.entries(functions.entities).map(([name, fn]) => [name, entityListener(fn)]));
  }

  override async invoke(fn: RegisteredFunction, options: InvokeOptions): Promise<InvocationOutcome> {
    const base = { invocationId: 'test', functionName: fn.name, durationMs: 0 };
    const orchestrator = this.#orchestrators.get(fn.name);
    if (orchestrator) {
      const outcome = await invokeListener(orchestrator, JSON.parse(options.triggerData?.string ?? 'null'), fn.name);
      return outcome.error ? { ...base, error: outcome.error } : { ...base, response: { returnValue: { json: JSON.stringify(outcome.returnValue) } } };
    }
    const entity = this.#entities.get(fn.name);
    if (entity) {
      this.calls.push({ name: fn.name, input: null });
      const state = await entity(JSON.parse(options.triggerData?.string ?? 'null'), new df.DummyEntityContext(fn.name, undefined, () => undefined));
      return { ...base, response: { returnValue: { json: JSON.stringify(state) } } };
    }
    const activity = this.#activities.get(fn.name);
    if (!activity) return { ...base, error: new Error(`no function ${fn.name}`) };
    const input: unknown = JSON.parse(options.triggerData?.json ?? 'null');
    this.calls.push({ name: fn.name, input });
    try {
      return { ...base, response: { returnValue: { json: JSON.stringify(await activity(input, this.#clock)) } } };
    } catch (err) {
      return { ...base, error: err as Error };
    }
  }
}

const sleep = (clock: Clock, ms: number): Promise<void> => new Promise((resolve) => clock.setTimeout(resolve, ms));

const ORCHESTRATORS: Record<string, OrchestratorGenerator> = {
  /** Doubles 1..n in parallel and returns the results. */
  *fanOut(context: df.OrchestrationContext) {
    const n = context.df.getInput<number>();
    const tasks = Array.from({ length: n }, (_, i) => context.df.callActivity('double', i + 1));
    return yield context.df.Task.all(tasks);
  },
  /** Activities that finish at different times, so results arrive while a write is retried. */
  *staggered(context: df.OrchestrationContext) {
    const delays = context.df.getInput<number[]>();
    return yield context.df.Task.all(delays.map((ms) => context.df.callActivity('sleepThenEcho', ms)));
  },
  *addToCounter(context: df.OrchestrationContext) {
    return yield context.df.callEntity(new df.EntityId('counter', 'k'), 'add', context.df.getInput<number>());
  },
  *napThenDouble(context: df.OrchestrationContext) {
    yield context.df.createTimer(new Date(context.df.currentUtcDateTime.getTime() + 60_000));
    return yield context.df.callActivity('double', 21);
  },
};

const ACTIVITIES: Record<string, ActivityFn> = {
  double: (input) => Promise.resolve((input as number) * 2),
  sleepThenEcho: async (input, clock) => {
    await sleep(clock, input as number);
    return input;
  },
};

const ENTITIES: Record<string, df.EntityHandler<unknown>> = {
  counter(context) {
    const value = (context.df.getState(() => 0) as number) + (context.df.getInput<number>() ?? 0);
    context.df.setState(value);
    context.df.return(value);
  },
};

interface Harness {
  engine: DurableEngine;
  store: FlakyStore;
  clock: ManualClock;
  invoker: InProcessInvoker;
  logs: LogRecord[];
  /** Advances the clock in steps until the instance ends or `maxMs` has passed; returns its status. */
  runUntilDone(instanceId: string, maxMs: number, stepMs?: number): Promise<RuntimeStatus | undefined>;
}

const stores: SqliteTaskHubStore[] = [];
afterEach(() => {
  for (const s of stores.splice(0)) s.close();
});

function harness(options: { store?: FlakyStore; clock?: ManualClock } = {}): Harness {
  const clock = options.clock ?? new ManualClock('2026-01-01T00:00:00Z');
  const store = options.store ?? new FlakyStore({ path: ':memory:', hubName: 'test' });
  if (!options.store) stores.push(store);
  const logs: LogRecord[] = [];
  const logger = new Logger({ sink: (r) => logs.push(r), minLevel: 'warning' });
  const runtime = new WorkerRuntime({ logger, hostVersion: 'test' });
  const noop = (): undefined => undefined;
  for (const name of Object.keys(ORCHESTRATORS)) {
    runtime.registerFunction({ name, bindings: { context: { type: 'orchestrationTrigger', direction: 'in' } } }, noop);
  }
  for (const name of Object.keys(ACTIVITIES)) {
    runtime.registerFunction({ name, bindings: { input: { type: 'activityTrigger', direction: 'in' } } }, noop);
  }
  for (const name of Object.keys(ENTITIES)) {
    runtime.registerFunction({ name, bindings: { context: { type: 'entityTrigger', direction: 'in' } } }, noop);
  }
  const invoker = new InProcessInvoker(runtime, logger, clock, { orchestrators: ORCHESTRATORS, activities: ACTIVITIES, entities: ENTITIES });
  const engine = new DurableEngine({
    store,
    runtime,
    invoker,
    logger,
    clock,
    maxConcurrentActivityFunctions: 8,
    maxConcurrentOrchestratorFunctions: 4,
    maxConcurrentEntityFunctions: 4,
    schemaVersion: 3,
    httpCall: () => Promise.reject(new Error('no HTTP in this test')),
  });
  return {
    engine,
    store,
    clock,
    invoker,
    logs,
    async runUntilDone(instanceId, maxMs, stepMs = 10) {
      for (let waited = 0; waited <= maxMs; waited += stepMs) {
        const status = store.getInstance(instanceId)?.runtimeStatus;
        if (status && isTerminal(status)) return status;
        await clock.advance(stepMs);
      }
      return store.getInstance(instanceId)?.runtimeStatus;
    },
  };
}

const errorsLike = (logs: LogRecord[], pattern: RegExp): string[] => logs.filter((r) => r.level === 'error' && pattern.test(r.message)).map((r) => r.message);

describe('durable engine: task hub writes that fail', () => {
  it('keeps activity results whose write failed and records every one of them exactly once after a backoff', async () => {
    const h = harness();
    h.store.failCompleteActivities = 3;
    h.engine.start();
    const id = h.engine.startOrchestration({ name: 'fanOut', input: '5' });

    // The five results were produced, but the store refused them: the orchestration must wait, not finish or hang.
    await h.clock.advance(0);
    expect(h.invoker.calls).toHaveLength(5);
    expect(h.store.completeCalls).toEqual([{ seqs: expect.any(Array) as unknown, ok: false }]);
    expect(h.store.getInstance(id)?.runtimeStatus).toBe('Running');

    expect(await h.runUntilDone(id, 10_000)).toBe('Completed');
    expect(JSON.parse(h.store.getInstance(id)?.output ?? 'null')).toEqual([2, 4, 6, 8, 10]);
    // Each activity ran once; each result reached history once.
    expect(h.invoker.calls).toHaveLength(5);
    const completed = h.store.getHistory(id).filter((e) => e.EventType === EventType.TaskCompleted);
    expect(completed.map((e) => e.TaskScheduledId).sort()).toEqual([0, 1, 2, 3, 4]);
    expect(h.store.pendingActivities()).toEqual([]);
    // Three failed writes of the same batch, then one that went through.
    const batch = h.store.completeCalls[0]?.seqs;
    expect(batch).toHaveLength(5);
    expect(h.store.completeCalls).toEqual([
      { seqs: batch, ok: false },
      { seqs: batch, ok: false },
      { seqs: batch, ok: false },
      { seqs: batch, ok: true },
    ]);
    // Loud, with a doubling backoff.
    const errors = errorsLike(h.logs, /Could not record 5 activity result/);
    expect(errors).toHaveLength(3);
    expect(errors.map((m) => /written again in (\d+) ms/.exec(m)?.[1])).toEqual(['50', '100', '200']);
    expect(errors[0]).toContain('SQLITE_BUSY');
    await h.engine.stop(0);
  });

  it('writes kept results ahead of newer ones, in order, and waits for the backoff before trying again', async () => {
    const h = harness();
    h.store.failCompleteActivities = 2;
    h.engine.start();
    const id = h.engine.startOrchestration({ name: 'staggered', input: JSON.stringify([10, 30, 300]) });
    expect(await h.runUntilDone(id, 5_000, 5)).toBe('Completed');
    expect(JSON.parse(h.store.getInstance(id)?.output ?? 'null')).toEqual([10, 30, 300]);
    // t=10: the first result fails; t=30: the second queues behind it (no write of its own);
    // t=60: both fail again; t=160: both are written, the first one first; t=300: the third.
    expect(h.store.completeCalls.map((c) => c.ok)).toEqual([false, false, true, true]);
    const [first, second, third, fourth] = h.store.completeCalls.map((c) => c.seqs);
    expect(first).toHaveLength(1);
    expect(second).toEqual([first?.[0], expect.any(Number)]);
    expect(third).toEqual(second);
    expect(fourth).toHaveLength(1);
    expect(new Set([...(third ?? []), ...(fourth ?? [])]).size).toBe(3);
    expect(h.store.getHistory(id).filter((e) => e.EventType === EventType.TaskCompleted)).toHaveLength(3);
  });

  it('stop() writes what it can, and what it cannot stays queued in the store and runs again on the next start', async () => {
    const h = harness();
    h.store.failCompleteActivities = Number.POSITIVE_INFINITY;
    h.engine.start();
    const id = h.engine.startOrchestration({ name: 'fanOut', input: '3' });
    await h.clock.advance(0);
    expect(h.invoker.calls).toHaveLength(3);
    const stopping = h.engine.stop(1_000);
    await h.clock.advance(1_000);
    await stopping;
    expect(errorsLike(h.logs, /could not be recorded before the host stopped/)).toHaveLength(1);
    // Not lost: the tasks are still queued in the task hub.
    expect(h.store.pendingActivities()).toHaveLength(3);

    // The same store, healthy again, under a new engine: the activities run again and the orchestration ends.
    h.store.failCompleteActivities = 0;
    const again = harness({ store: h.store, clock: h.clock });
    again.engine.start();
    expect(await again.runUntilDone(id, 1_000)).toBe('Completed');
    expect(JSON.parse(h.store.getInstance(id)?.output ?? 'null')).toEqual([2, 4, 6]);
    expect(again.invoker.calls).toHaveLength(3);
    await again.engine.stop(0);
  });

  it('stop() retries a failing write within its grace period', async () => {
    const h = harness();
    h.store.failCompleteActivities = Number.POSITIVE_INFINITY;
    h.engine.start();
    const id = h.engine.startOrchestration({ name: 'fanOut', input: '2' });
    await h.clock.advance(0);
    h.store.failCompleteActivities = 2;
    const stopping = h.engine.stop(1_000);
    await h.clock.advance(1_000);
    await stopping;
    expect(h.store.pendingActivities()).toEqual([]);
    expect(h.store.readInbox(id, h.clock.now()).filter((m) => m.event.EventType === EventType.TaskCompleted)).toHaveLength(2);
    expect(errorsLike(h.logs, /before the host stopped/)).toEqual([]);
  });

  it('runs an episode again when its commit failed, instead of leaving the instance waiting', async () => {
    const h = harness();
    h.store.failCommitEpisode = 2;
    h.engine.start();
    const id = h.engine.startOrchestration({ name: 'fanOut', input: '2' });
    expect(await h.runUntilDone(id, 5_000)).toBe('Completed');
    expect(JSON.parse(h.store.getInstance(id)?.output ?? 'null')).toEqual([2, 4]);
    // The failed episodes scheduled nothing: each activity ran once.
    expect(h.invoker.calls).toHaveLength(2);
    const errors = errorsLike(h.logs, /episode failed in the host/);
    expect(errors).toHaveLength(2);
    expect(errors.map((m) => /runs again in (\d+) ms/.exec(m)?.[1])).toEqual(['50', '100']);
  });

  it('runs an entity batch again when its commit failed', async () => {
    const h = harness();
    h.store.failCommitEntity = 2;
    h.engine.start();
    const id = h.engine.startOrchestration({ name: 'addToCounter', input: '5' });
    expect(await h.runUntilDone(id, 5_000)).toBe('Completed');
    expect(h.store.getInstance(id)?.output).toBe('5');
    // The operation ran three times, but only the committed run counts: the state is 5, not 15.
    expect(h.invoker.calls.filter((c) => c.name === 'counter')).toHaveLength(3);
    expect(h.engine.readEntity('counter', 'k')).toEqual({ exists: true, state: '5' });
    expect(errorsLike(h.logs, /Entity "@counter@k" batch failed in the host/).map((m) => /runs again in (\d+) ms/.exec(m)?.[1])).toEqual(['50', '100']);
  });

  it('keeps waking durable timers when reading the due instances fails', async () => {
    const h = harness();
    h.engine.start();
    const id = h.engine.startOrchestration({ name: 'napThenDouble', input: null });
    await h.clock.advance(10);
    expect(h.store.getHistory(id).some((e) => e.EventType === EventType.TimerCreated)).toBe(true);
    await h.engine.stop(0);

    // A restarted engine finds the timer in the store and asks the store again when it is due.
    const again = harness({ store: h.store, clock: h.clock });
    again.engine.start();
    h.store.failReadyInstances = 1;
    expect(await again.runUntilDone(id, 61_000, 1_000)).toBe('Completed');
    expect(h.store.getInstance(id)?.output).toBe('42');
    expect(errorsLike(again.logs, /Could not read which instances are due/)).toHaveLength(1);
    await again.engine.stop(0);
  });
});
