import { randomUUID } from 'node:crypto';
import type { Clock } from '../clock.js';
import { FnHostError, describeError } from '../errors.js';
import type { Logger } from '../log.js';
import type { Invoker } from '../worker/invoker.js';
import type { RegisteredFunction, WorkerRuntime } from '../worker/worker-runtime.js';
import { activityBindingData, orchestrationBindingData } from '../worker/trigger-binding-data.js';
import type { DurableHttpRequestJson } from './actions.js';
import {
  DEFAULT_HTTP_POLL_MS,
  type OrchestratorResult,
  classifyEpisode,
  completedOutputText,
  failedOutputText,
  orchestratorResultOf,
  orchestratorTriggerFields,
  shimEpisode,
} from './episode-protocol.js';
import { runEntityBatch } from './entity-batch.js';
import {
  EventType,
  type FailureDetails,
  type HistoryEvent,
  OrchestrationStatusNumber,
  type RuntimeStatus,
  isTerminal,
  makeEvent,
} from './history.js';
import { MinHeap } from './min-heap.js';
import type { OrchestratorState } from './orchestrator-state.js';
import { type EntityRequestMessage, HTTP_ACTIVITY_NAME, type ShimResult, schedulerId } from './replay-shim.js';
import { activityFailure, jsonTextOfTypedData } from './results.js';
import type {
  ActivityTask,
  CreateInstance,
  Delivery,
  EpisodeCommit,
  InboxMessage,
  InstanceRecord,
  NewActivity,
  NewMessage,
  TaskHubStore,
} from './store/task-hub-store.js';

/** A durable HTTP response, as `BuiltIn::HttpActivity` returns it. */
export interface DurableHttpResponse {
  statusCode: number;
  headers: Record<string, string>;
  content: string;
}

export interface DurableEngineOptions {
  store: TaskHubStore;
  runtime: WorkerRuntime;
  invoker: Invoker;
  logger: Logger;
  clock: Clock;
  maxConcurrentActivityFunctions: number;
  maxConcurrentOrchestratorFunctions: number;
  maxConcurrentEntityFunctions: number;
  /** The replay schema offered to the library: 0 = V1 … 3 = V4 (entity locks). */
  schemaVersion: number;
  /** Runs durable HTTP calls (`callHttp`). */
  httpCall: (request: DurableHttpRequestJson) => Promise<DurableHttpResponse>;
  /** Events of this many instances' histories stay parsed in memory between episodes. */
  historyCacheEvents?: number;
}

/** An instance's next episode waits this many times its last replay's cost, so fan-in batches up. */
const REPLAY_BACKOFF_FACTOR = 2;
/**
 * A task hub write that failed (a locked, full or failing disk) is tried again after 50 ms,
 * doubling up to 5 s: what it carried is kept until the store has it, never dropped.
 */
const STORE_RETRY_FIRST_MS = 50;
const STORE_RETRY_MAX_MS = 5_000;

/** The wait before the next try after `failures` failed store writes in a row. */
export function storeRetryDelay(failures: number): number {
  return Math.min(STORE_RETRY_FIRST_MS * 2 ** Math.max(0, failures - 1), STORE_RETRY_MAX_MS);
}

interface CachedHistory {
  executionId: string;
  events: HistoryEvent[];
  /**
   * The events' JSON (IsPlayed true), comma-joined. Payloads splice it in, so a long history is
   * not serialised again on every episode; appending builds a rope, not a copy.
   */
  text: string;
}

function newId(): string {
  return randomUUID().replace(/-/g, '');
}

function played(event: HistoryEvent): HistoryEvent {
  return event.IsPlayed ? event : { ...event, IsPlayed: true };
}

function startEventOf(events: HistoryEvent[]): HistoryEvent | undefined {
  return events.find((e) => e.EventType === EventType.ExecutionStarted);
}

function checkInstanceId(instanceId: string): void {
  if (instanceId.length === 0 || instanceId.length > 256) {
    throw new FnHostError('ERR_BAD_REQUEST', 'An instance ID must be between 1 and 256 characters long.');
  }
  if (instanceId.startsWith('@')) {
    throw new FnHostError('ERR_BAD_REQUEST', `Orchestration instance IDs must not start with @ ("${instanceId}").`);
  }
  if ([...instanceId].some((ch) => '/\\#?'.includes(ch) || ch.charCodeAt(0) < 0x20 || ch.charCodeAt(0) === 0x7f)) {
    throw new FnHostError(
      'ERR_BAD_REQUEST',
      `Instance ID "${instanceId}" contains a character that is not allowed (/, \\, #, ? or a control character).`,
    );
  }
}

/**
 * The Durable Task engine of fnhost: runs orchestration episodes, activities, entities and timers
 * against a {@link TaskHubStore}. All scheduling state lives in the store; the queues here are a
 * cache of it, rebuilt on start, so a killed host resumes where the store says it was.
 */
export class DurableEngine {
  readonly #o: DurableEngineOptions;
  readonly #store: TaskHubStore;
  readonly #clock: Clock;
  readonly #logger: Logger;

  readonly #activityQueue: ActivityTask[] = [];
  #activityHead = 0;
  #activitiesRunning = 0;

  readonly #orchReady = new Set<string>();
  readonly #orchRunning = new Set<string>();
  readonly #orchDirty = new Set<string>();
  readonly #entityReady = new Set<string>();
  readonly #entityRunning = new Set<string>();
  readonly #entityDirty = new Set<string>();

  readonly #timers = new MinHeap<string>();
  #timerHandle: unknown;
  #timerAt = Number.POSITIVE_INFINITY;

  readonly #completions: { taskSeq: number; message: NewMessage }[] = [];
  #flushScheduled = false;
  /** Failed writes of activity results in a row, and the timer of the next try. */
  #completionFailures = 0;
  #completionRetry: unknown;
  /** Episodes and entity batches that failed in the host, by instance, for their backoff. */
  readonly #instanceFailures = new Map<string, number>();
  #rescanFailures = 0;
  #pumpScheduled = false;
  readonly #inFlight = new Set<Promise<void>>();
  readonly #histories = new Map<string, CachedHistory>();
  #cachedEvents = 0;
  readonly #replayCost = new Map<string, { cost: number; end: number }>();
  #stopping = false;
  #started = false;
  readonly #warnedReyield = new Set<string>();
  /** Counts for benchmarks and tests. */
  readonly stats = { episodes: 0, activities: 0, entityBatches: 0 };

  constructor(options: DurableEngineOptions) {
    this.#o = options;
    this.#store = options.store;
    this.#clock = options.clock;
    this.#logger = options.logger;
  }

  // ---------------------------------------------------------------- lifecycle

  /** Rebuilds the in-memory queues from the store and starts dispatching. */
  start(): void {
    if (this.#started) return;
    this.#started = true;
    for (const task of this.#store.pendingActivities()) this.#activityQueue.push(task);
    const now = this.#clock.now();
    const { ready, nextVisibleAt } = this.#store.readyInstances(now);
    for (const id of ready) this.#notify(id);
    if (nextVisibleAt !== undefined) this.#addTimer(nextVisibleAt, '');
    if (this.#activityQueue.length > 0 || ready.length > 0) {
      this.#logger.info(
        `Durable task hub "${this.#store.hubName}": resuming ${ready.length} instance(s) and ${this.#activityQueue.length} activity task(s)`,
      );
    }
    this.#schedulePump();
  }

  /** Stops taking new work and waits (up to `graceMs`) for running invocations to finish. */
  async stop(graceMs: number): Promise<void> {
    this.#stopping = true;
    const deadline = this.#clock.now() + graceMs;
    if (this.#timerHandle !== undefined) this.#clock.clearTimeout(this.#timerHandle);
    this.#timerHandle = undefined;
    const all = Promise.allSettled([...this.#inFlight]);
    let handle: unknown;
    const timeout = new Promise<void>((resolve) => {
      handle = this.#clock.setTimeout(resolve, graceMs);
    });
    await Promise.race([all, timeout]);
    this.#clock.clearTimeout(handle);
    await this.#drainCompletions(deadline);
  }

  /**
   * Writes the results still queued before the host goes, trying again while the grace period
   * lasts. What cannot be written is not lost: those tasks are still in the store and run again
   * on the next start (at least once, as in Durable Functions).
   */
  async #drainCompletions(deadline: number): Promise<void> {
    if (this.#completionRetry !== undefined) this.#clock.clearTimeout(this.#completionRetry);
    this.#completionRetry = undefined;
    for (;;) {
      if (this.#flushCompletions()) return;
      const wait = Math.min(storeRetryDelay(this.#completionFailures), deadline - this.#clock.now());
      if (wait <= 0) break;
      await new Promise<void>((resolve) => this.#clock.setTimeout(resolve, wait));
    }
    this.#logger.error(
      `${this.#completions.length} activity result(s) could not be recorded before the host stopped; ` +
        'their tasks are still queued in the task hub and run again when it restarts.',
    );
  }

  /** True when nothing is queued, running or waiting on a timer that is due. */
  get idle(): boolean {
    return (
      this.#activityHead >= this.#activityQueue.length &&
      this.#activitiesRunning === 0 &&
      this.#orchReady.size === 0 &&
      this.#orchRunning.size === 0 &&
      this.#entityReady.size === 0 &&
      this.#entityRunning.size === 0 &&
      this.#completions.length === 0
    );
  }

  // ---------------------------------------------------------------- client operations

  startOrchestration(request: { name: string; instanceId?: string; input: string | null; version?: string }): string {
    const fn = this.#function(request.name, 'orchestrationTrigger');
    if (!fn) {
      throw new FnHostError(
        'ERR_BAD_REQUEST',
        `The function '${request.name}' doesn't exist, is disabled, or is not an orchestrator function. Additional info: ${this.#listFunctions('orchestrationTrigger')}`,
      );
    }
    const instanceId = request.instanceId ?? newId();
    checkInstanceId(instanceId);
    const now = this.#clock.now();
    const executionId = newId();
    const result = this.#store.createInstance({
      instanceId,
      executionId,
      name: fn.name,
      version: request.version,
      input: request.input,
      parentInstanceId: null,
      now,
      startEvent: makeEvent(EventType.ExecutionStarted, now, {
        Name: fn.name,
        Version: request.version ?? '',
        Input: request.input ?? undefined,
        OrchestrationInstance: { InstanceId: instanceId, ExecutionId: executionId },
      }),
    });
    if (!result.created) {
      throw new FnHostError(
        'ERR_CONFLICT',
        `An orchestration with instance ID '${instanceId}' already exists and is ${String(result.existingStatus)}.`,
      );
    }
    this.#histories.delete(instanceId);
    this.#notify(instanceId);
    return instanceId;
  }

  raiseEvent(instanceId: string, eventName: string, dataJson: string | null): void {
    if (!eventName) throw new FnHostError('ERR_BAD_REQUEST', 'An event name is required.');
    this.#sendToRunning(
      instanceId,
      makeEvent(EventType.EventRaised, this.#clock.now(), { Name: eventName, Input: dataJson ?? undefined }),
    );
  }

  terminate(instanceId: string, reason: string | null): void {
    this.#sendToRunning(
      instanceId,
      makeEvent(EventType.ExecutionTerminated, this.#clock.now(), { Input: reason ?? undefined }),
    );
  }

  suspend(instanceId: string, reason: string | null): void {
    const instance = this.#requireInstance(instanceId);
    if (instance.runtimeStatus === 'Suspended') {
      throw new FnHostError('ERR_CONFLICT', `Instance '${instanceId}' is already suspended.`);
    }
    this.#sendToRunning(instanceId, makeEvent(EventType.ExecutionSuspended, this.#clock.now(), { Reason: reason ?? undefined }));
  }

  resume(instanceId: string, reason: string | null): void {
    const instance = this.#requireInstance(instanceId);
    if (instance.runtimeStatus !== 'Suspended' && !isTerminal(instance.runtimeStatus)) {
      throw new FnHostError('ERR_CONFLICT', `Instance '${instanceId}' is not suspended.`);
    }
    this.#sendToRunning(instanceId, makeEvent(EventType.ExecutionResumed, this.#clock.now(), { Reason: reason ?? undefined }));
  }

  signalEntity(name: string, key: string, operation: string, inputJson: string | null): void {
    const target = schedulerId(name, key);
    const now = this.#clock.now();
    const message: EntityRequestMessage = {
      id: randomUUID(),
      op: operation,
      signal: true,
      timestamp: new Date(now).toISOString(),
    };
    if (inputJson !== null) message.input = inputJson;
    this.#store.enqueueForEntity(
      { instanceId: target, executionId: null, visibleAt: now, event: makeEvent(EventType.EventRaised, now, { Name: 'op', Input: JSON.stringify(message) }) },
      now,
    );
    this.#notify(target);
  }

  readEntity(name: string, key: string): { exists: boolean; state: string | null } {
    const record = this.#store.getInstance(schedulerId(name, key));
    return record?.isEntity ? { exists: record.entityExists, state: record.entityState } : { exists: false, state: null };
  }

  purge(instanceId: string): number {
    this.#histories.delete(instanceId);
    return this.#store.purgeInstance(instanceId);
  }

  purgeBy(filter: { createdTimeFrom?: number; createdTimeTo?: number; runtimeStatus?: RuntimeStatus[] }): number {
    this.#histories.clear();
    this.#cachedEvents = 0;
    return this.#store.purgeInstances(filter);
  }

  #requireInstance(instanceId: string): InstanceRecord {
    const instance = this.#store.getInstance(instanceId);
    if (!instance || instance.isEntity) throw new FnHostError('ERR_NOT_FOUND', `No instance with ID '${instanceId}' found.`);
    return instance;
  }

  #sendToRunning(instanceId: string, event: HistoryEvent): void {
    const instance = this.#requireInstance(instanceId);
    if (isTerminal(instance.runtimeStatus)) {
      throw new FnHostError('ERR_GONE', `Instance '${instanceId}' is ${instance.runtimeStatus} and can no longer receive events.`);
    }
    const queued = this.#store.enqueue({ instanceId, executionId: null, visibleAt: this.#clock.now(), event });
    if (!queued) throw new FnHostError('ERR_NOT_FOUND', `No instance with ID '${instanceId}' found.`);
    this.#notify(instanceId);
  }

  #function(name: string, triggerType: string): RegisteredFunction | undefined {
    const fn = this.#o.runtime.getFunction(name);
    // A disabled function has no listener in the host, so the extension does not find it.
    const runs = fn !== undefined && !fn.disabled && fn.error === undefined;
    return runs && fn.triggerType.toLowerCase() === triggerType.toLowerCase() ? fn : undefined;
  }

  #entityFunction(entityName: string): RegisteredFunction | undefined {
    return this.#o.runtime
      .functionsWithTrigger('entityTrigger')
      .find((f) => f.name.toLowerCase() === entityName.toLowerCase());
  }

  #listFunctions(triggerType: string): string {
    const names = this.#o.runtime.functionsWithTrigger(triggerType).map((f) => f.name);
    return names.length > 0 ? `Registered ${triggerType} functions: ${names.join(', ')}.` : `No ${triggerType} functions are registered.`;
  }

  // ---------------------------------------------------------------- scheduling

  #notify(instanceId: string): void {
    if (instanceId === '') return;
    if (instanceId.startsWith('@')) {
      if (this.#entityRunning.has(instanceId)) this.#entityDirty.add(instanceId);
      else this.#entityReady.add(instanceId);
    } else if (this.#orchRunning.has(instanceId)) {
      this.#orchDirty.add(instanceId);
    } else {
      this.#orchReady.add(instanceId);
    }
    this.#schedulePump();
  }

  #deliver(deliveries: Delivery[]): void {
    const now = this.#clock.now();
    for (const d of deliveries) {
      if (d.visibleAt <= now) this.#notify(d.instanceId);
      else this.#addTimer(d.visibleAt, d.instanceId);
    }
  }

  #addTimer(at: number, instanceId: string): void {
    this.#timers.push(at, instanceId);
    this.#armTimer();
  }

  #armTimer(): void {
    if (this.#stopping) return;
    const next = this.#timers.peek();
    if (!next) return;
    if (next.key >= this.#timerAt && this.#timerHandle !== undefined) return;
    if (this.#timerHandle !== undefined) this.#clock.clearTimeout(this.#timerHandle);
    this.#timerAt = next.key;
    this.#timerHandle = this.#clock.setTimeout(() => {
      this.#timerHandle = undefined;
      this.#timerAt = Number.POSITIVE_INFINITY;
      this.#fireTimers();
    }, next.key - this.#clock.now());
  }

  #fireTimers(): void {
    const now = this.#clock.now();
    let rescan = false;
    for (let next = this.#timers.peek(); next && next.key <= now; next = this.#timers.peek()) {
      this.#timers.pop();
      if (next.value === '') rescan = true;
      else this.#notify(next.value);
    }
    if (rescan) {
      // Timers found in the store at start-up: ask it which instances they wake.
      try {
        const { ready, nextVisibleAt } = this.#store.readyInstances(now);
        this.#rescanFailures = 0;
        for (const id of ready) this.#notify(id);
        if (nextVisibleAt !== undefined) this.#timers.push(nextVisibleAt, '');
      } catch (err) {
        // Without the rescan marker nothing would wake the instances whose timers the store holds.
        this.#rescanFailures++;
        const delay = storeRetryDelay(this.#rescanFailures);
        this.#logger.error(
          `Could not read which instances are due from the task hub (failure ${this.#rescanFailures} in a row): ` +
            `${describeError(err)}. Trying again in ${delay} ms.`,
        );
        this.#timers.push(now + delay, '');
      }
    }
    this.#armTimer();
  }

  #schedulePump(): void {
    if (this.#pumpScheduled || this.#stopping || !this.#started) return;
    this.#pumpScheduled = true;
    setImmediate(() => {
      this.#pumpScheduled = false;
      this.#pump();
    });
  }

  #track(work: Promise<void>): void {
    this.#inFlight.add(work);
    void work.finally(() => this.#inFlight.delete(work));
  }

  #pump(): void {
    if (this.#stopping) return;
    const o = this.#o;
    while (this.#activitiesRunning < o.maxConcurrentActivityFunctions && this.#activityHead < this.#activityQueue.length) {
      const task = this.#activityQueue[this.#activityHead++] as ActivityTask;
      // Taken tasks keep their inputs alive until they are spliced off: do it often enough that a
      // long fan-out does not hold thousands of them, rarely enough to stay cheap.
      if (this.#activityHead > 256 && this.#activityHead * 2 > this.#activityQueue.length) {
        this.#activityQueue.splice(0, this.#activityHead);
        this.#activityHead = 0;
      }
      this.#activitiesRunning++;
      this.#track(
        this.#runActivity(task).finally(() => {
          this.#activitiesRunning--;
          this.#schedulePump();
        }),
      );
    }
    const now = this.#clock.now();
    for (const id of [...this.#orchReady]) {
      if (this.#orchRunning.size >= o.maxConcurrentOrchestratorFunctions) break;
      this.#orchReady.delete(id);
      const cost = this.#replayCost.get(id);
      if (cost && now < cost.end + cost.cost * REPLAY_BACKOFF_FACTOR) {
        this.#addTimer(cost.end + cost.cost * REPLAY_BACKOFF_FACTOR, id);
        continue;
      }
      this.#orchRunning.add(id);
      this.#track(
        this.#runEpisode(id)
          .then(
            () => {
              this.#instanceFailures.delete(id);
            },
            (err: unknown) => {
              this.#retryInstance(id, `Orchestration "${id}" episode`, err);
            },
          )
          .finally(() => {
            this.#orchRunning.delete(id);
            if (this.#orchDirty.delete(id)) this.#orchReady.add(id);
            this.#schedulePump();
          }),
      );
    }
    for (const id of [...this.#entityReady]) {
      if (this.#entityRunning.size >= o.maxConcurrentEntityFunctions) break;
      this.#entityReady.delete(id);
      this.#entityRunning.add(id);
      this.#track(
        this.#runEntity(id)
          .then(
            () => {
              this.#instanceFailures.delete(id);
            },
            (err: unknown) => {
              this.#retryInstance(id, `Entity "${id}" batch`, err);
            },
          )
          .finally(() => {
            this.#entityRunning.delete(id);
            if (this.#entityDirty.delete(id)) this.#entityReady.add(id);
            this.#schedulePump();
          }),
      );
    }
  }

  /**
   * An episode or entity batch that failed in the host (mostly: its store write failed) wrote
   * nothing, and its messages are still in the store. Nothing else would wake the instance before
   * its next message or a restart, so it runs again after a backoff.
   */
  #retryInstance(id: string, what: string, err: unknown): void {
    const failures = (this.#instanceFailures.get(id) ?? 0) + 1;
    this.#instanceFailures.set(id, failures);
    // The store is the truth: the next try reads the history again.
    this.#forget(id);
    const delay = storeRetryDelay(failures);
    this.#logger.error(`${what} failed in the host (failure ${failures} in a row): ${describeError(err)}. It runs again in ${delay} ms.`);
    this.#addTimer(this.#clock.now() + delay, id);
  }

  // ---------------------------------------------------------------- history cache

  #history(instanceId: string, executionId: string): CachedHistory {
    const cached = this.#histories.get(instanceId);
    if (cached && cached.executionId === executionId) {
      // Refresh its place in the LRU order.
      this.#histories.delete(instanceId);
      this.#histories.set(instanceId, cached);
      return cached;
    }
    if (cached) this.#forget(instanceId);
    const events = this.#store.getHistory(instanceId).map(played);
    const entry: CachedHistory = { executionId, events, text: events.map((e) => JSON.stringify(e)).join(',') };
    this.#remember(instanceId, entry);
    return entry;
  }

  #remember(instanceId: string, entry: CachedHistory): void {
    this.#histories.set(instanceId, entry);
    this.#cachedEvents += entry.events.length;
    const limit = this.#o.historyCacheEvents ?? 400_000;
    for (const [id, e] of this.#histories) {
      if (this.#cachedEvents <= limit || id === instanceId) break;
      this.#histories.delete(id);
      this.#cachedEvents -= e.events.length;
    }
  }

  #forget(instanceId: string): void {
    const e = this.#histories.get(instanceId);
    if (!e) return;
    this.#histories.delete(instanceId);
    this.#cachedEvents -= e.events.length;
  }

  #append(instanceId: string, entry: CachedHistory, events: HistoryEvent[], json: string[]): void {
    for (const e of events) entry.events.push(played(e));
    if (json.length > 0) entry.text = entry.text === '' ? json.join(',') : `${entry.text},${json.join(',')}`;
    this.#cachedEvents += events.length;
    if (!this.#histories.has(instanceId)) this.#remember(instanceId, entry);
  }

  // ---------------------------------------------------------------- orchestrations

  async #runEpisode(instanceId: string): Promise<void> {
    const now = this.#clock.now();
    const instance = this.#store.getInstance(instanceId);
    if (!instance) return;
    const inbox = this.#store.readInbox(instanceId, now);
    if (inbox.length === 0) return;
    if (isTerminal(instance.runtimeStatus)) {
      this.#store.deleteMessages(inbox.map((m) => m.seq));
      return;
    }

    const consumed: number[] = [];
    const newEvents: HistoryEvent[] = [];
    let terminate: HistoryEvent | undefined;
    let suspended = instance.runtimeStatus === 'Suspended';
    let work = false;
    const held: InboxMessage[] = [];
    for (const msg of inbox) {
      if (terminate) {
        consumed.push(msg.seq);
        continue;
      }
      if (msg.executionId !== null && msg.executionId !== instance.executionId) {
        consumed.push(msg.seq);
        continue;
      }
      const e = msg.event;
      switch (e.EventType) {
        case EventType.ExecutionTerminated:
          consumed.push(msg.seq);
          terminate = e;
          break;
        case EventType.ExecutionSuspended:
          consumed.push(msg.seq);
          if (!suspended) {
            suspended = true;
            newEvents.push(e);
          }
          break;
        case EventType.ExecutionResumed:
          consumed.push(msg.seq);
          if (suspended) {
            suspended = false;
            newEvents.push(e);
            // Events that arrived while suspended are delivered now, in arrival order.
            for (const h of held) {
              consumed.push(h.seq);
              newEvents.push(h.event);
              work = true;
            }
            held.length = 0;
          }
          break;
        default:
          if (suspended) {
            held.push(msg);
            break;
          }
          consumed.push(msg.seq);
          newEvents.push(e);
          work = true;
      }
    }

    const cache = this.#history(instanceId, instance.executionId);
    if (terminate) {
      this.#commitTermination(instance, cache, consumed, terminate, now);
      return;
    }
    if (!work) {
      // Only suspend/resume (or messages that must wait while suspended).
      if (consumed.length === 0) return;
      const status: RuntimeStatus = suspended ? 'Suspended' : cache.events.length > 0 ? 'Running' : 'Pending';
      this.#commit(instance, cache, {
        instanceId,
        expectedExecutionId: instance.executionId,
        now,
        consumed,
        appendHistory: newEvents,
        update: this.#sameUpdate(instance, status),
        activities: [],
        messages: [],
        children: [],
        cancelTimers: [],
      });
      return;
    }

    const episodeEvents = [makeEvent(EventType.OrchestratorStarted, now), ...newEvents];
    const fullHistory = cache.events.concat(episodeEvents);
    const startEvent = startEventOf(fullHistory);
    if (!startEvent) {
      this.#logger.warn(`Orchestration "${instanceId}" has messages but never started; dropping them.`);
      this.#store.deleteMessages(consumed);
      return;
    }

    const started = this.#clock.now();
    const result = await this.#invokeOrchestrator(instance, cache, episodeEvents, startEvent);
    const finished = this.#clock.now();
    this.#replayCost.set(instanceId, { cost: finished - started, end: finished });
    this.stats.episodes++;

    const shimResult = result.state ? this.#shim(instance, fullHistory, result.state) : undefined;
    if (shimResult?.reyieldedTasks && !this.#warnedReyield.has(instance.name)) {
      this.#warnedReyield.add(instance.name);
      this.#logger.warn(
        `Orchestrator "${instance.name}" passes tasks it already yielded to Task.any/Task.all. fnhost waits on the ` +
          'existing tasks, but the Durable Functions extension in Azure schedules them again ' +
          '(azure-functions-durable-js#574): restructure the code before deploying.',
      );
    }
    const { kind, errorMessage } = classifyEpisode(result, shimResult);

    const commit: EpisodeCommit = {
      instanceId,
      expectedExecutionId: instance.executionId,
      now: this.#clock.now(),
      consumed,
      appendHistory: [...episodeEvents],
      update: this.#sameUpdate(instance, 'Running'),
      activities: [],
      messages: [],
      children: [],
      cancelTimers: [],
    };
    if (result.state && result.state.customStatus !== undefined) {
      commit.update.customStatus = JSON.stringify(result.state.customStatus);
    }
    if (shimResult && (kind === 'running' || kind === 'continueAsNew')) {
      this.#applyDecisions(instance, shimResult, commit, kind === 'continueAsNew');
    }
    commit.appendHistory.push(makeEvent(EventType.OrchestratorCompleted, commit.now));
    const parent = startEvent.ParentInstance;

    if (kind === 'completed') {
      const output = completedOutputText(result.state);
      commit.appendHistory.push(
        makeEvent(EventType.ExecutionCompleted, commit.now, {
          OrchestrationStatus: OrchestrationStatusNumber.Completed,
          Result: output,
        }),
      );
      commit.update = { ...commit.update, runtimeStatus: 'Completed', output, completedTime: commit.now };
      if (parent) {
        commit.messages.push({
          instanceId: parent.OrchestrationInstance.InstanceId,
          executionId: parent.OrchestrationInstance.ExecutionId,
          visibleAt: commit.now,
          event: makeEvent(EventType.SubOrchestrationInstanceCompleted, commit.now, {
            TaskScheduledId: parent.TaskScheduleId,
            Result: output,
          }),
        });
      }
    } else if (kind === 'failed') {
      const text = failedOutputText(instance.name, errorMessage);
      const failure: FailureDetails = result.state?.failureDetails ?? {
        ErrorType: 'OrchestrationFailureException',
        ErrorMessage: String(errorMessage),
        StackTrace: result.stack,
      };
      commit.appendHistory.push(
        makeEvent(EventType.ExecutionCompleted, commit.now, {
          OrchestrationStatus: OrchestrationStatusNumber.Failed,
          Result: text,
          FailureDetails: failure,
        }),
      );
      commit.update = {
        ...commit.update,
        runtimeStatus: 'Failed',
        output: JSON.stringify(text),
        completedTime: commit.now,
        failureDetails: failure,
      };
      if (parent) {
        commit.messages.push({
          instanceId: parent.OrchestrationInstance.InstanceId,
          executionId: parent.OrchestrationInstance.ExecutionId,
          visibleAt: commit.now,
          event: makeEvent(EventType.SubOrchestrationInstanceFailed, commit.now, {
            TaskScheduledId: parent.TaskScheduleId,
            Reason: text,
            Details: failure.StackTrace ?? '',
            FailureDetails: failure,
          }),
        });
      }
      this.#logger.warn(text);
    } else if (kind === 'continueAsNew' && shimResult?.continueAsNew) {
      const input = shimResult.continueAsNew.input ?? null;
      const executionId = newId();
      commit.appendHistory = [];
      commit.replaceHistory = [];
      commit.update = { ...commit.update, executionId, runtimeStatus: 'Running', input, output: null };
      commit.messages.push({
        instanceId,
        executionId,
        visibleAt: commit.now,
        event: makeEvent(EventType.ExecutionStarted, commit.now, {
          Name: instance.name,
          Version: startEvent.Version ?? '',
          Input: input ?? undefined,
          OrchestrationInstance: { InstanceId: instanceId, ExecutionId: executionId },
          ParentInstance: parent,
        }),
      });
    }
    this.#commit(instance, cache, commit);
  }

  #sameUpdate(instance: InstanceRecord, status: RuntimeStatus): EpisodeCommit['update'] {
    return {
      executionId: instance.executionId,
      name: instance.name,
      runtimeStatus: status,
      output: instance.output,
      customStatus: instance.customStatus,
      completedTime: instance.completedTime,
      failureDetails: instance.failureDetails,
    };
  }

  #commit(instance: InstanceRecord, cache: CachedHistory, commit: EpisodeCommit): void {
    commit.appendHistoryJson = commit.appendHistory.map((e) => JSON.stringify(played(e)));
    const result = this.#store.commitEpisode(commit);
    if (!result) {
      this.#logger.debug(`Instance "${instance.instanceId}" changed during its episode; the episode was dropped.`);
      this.#forget(instance.instanceId);
      return;
    }
    if (isTerminal(commit.update.runtimeStatus)) {
      this.#forget(instance.instanceId);
      this.#replayCost.delete(instance.instanceId);
    } else if (commit.replaceHistory) {
      this.#forget(instance.instanceId);
      this.#remember(instance.instanceId, { executionId: commit.update.executionId, events: [], text: '' });
    } else {
      this.#append(instance.instanceId, cache, commit.appendHistory, commit.appendHistoryJson);
    }
    for (const task of result.activities) this.#activityQueue.push(task);
    this.#deliver(result.notify);
    this.#schedulePump();
  }

  #commitTermination(
    instance: InstanceRecord,
    cache: CachedHistory,
    consumed: number[],
    terminate: HistoryEvent,
    now: number,
  ): void {
    const reason = terminate.Input ?? null;
    const output = reason === null ? null : JSON.stringify(reason);
    const messages: NewMessage[] = [];
    const parent = startEventOf(cache.events)?.ParentInstance;
    if (parent) {
      messages.push({
        instanceId: parent.OrchestrationInstance.InstanceId,
        executionId: parent.OrchestrationInstance.ExecutionId,
        visibleAt: now,
        event: makeEvent(EventType.SubOrchestrationInstanceFailed, now, {
          TaskScheduledId: parent.TaskScheduleId,
          Reason: `Sub-orchestration '${instance.instanceId}' was terminated${reason ? `: ${reason}` : ''}`,
          Details: '',
        }),
      });
    }
    this.#commit(instance, cache, {
      instanceId: instance.instanceId,
      expectedExecutionId: instance.executionId,
      now,
      consumed,
      appendHistory: [
        makeEvent(EventType.OrchestratorStarted, now),
        terminate,
        makeEvent(EventType.ExecutionCompleted, now, {
          OrchestrationStatus: OrchestrationStatusNumber.Terminated,
          Result: reason ?? undefined,
        }),
      ],
      update: { ...this.#sameUpdate(instance, 'Terminated'), output, completedTime: now },
      activities: [],
      messages,
      children: [],
      cancelTimers: [],
    });
  }

  async #invokeOrchestrator(
    instance: InstanceRecord,
    cache: CachedHistory,
    episodeEvents: HistoryEvent[],
    startEvent: HistoryEvent,
  ): Promise<OrchestratorResult> {
    const fn = this.#function(instance.name, 'orchestrationTrigger');
    if (!fn) {
      return {
        state: undefined,
        error: `The function '${instance.name}' doesn't exist, is disabled, or is not an orchestrator function.`,
        stack: undefined,
      };
    }
    const schema = this.#o.schemaVersion;
    // The history is spliced in as text: past events keep their cached JSON, so a long history is
    // not serialised again on every episode.
    const fresh = episodeEvents.map((e) => JSON.stringify(e)).join(',');
    const historyJson = cache.text === '' ? fresh : `${cache.text},${fresh}`;
    const rest = orchestratorTriggerFields({
      instanceId: instance.instanceId,
      startEvent,
      isReplaying: cache.events.length > 0,
      schemaVersion: schema,
    });
    const payload = `{"history":[${historyJson}],${JSON.stringify(rest).slice(1)}`;
    const outcome = await this.#o.invoker.invoke(fn, {
      triggerData: { string: payload },
      skipBindings: true,
      bindingData: orchestrationBindingData(instance.instanceId),
    });
    return orchestratorResultOf({ error: outcome.error, returnValue: outcome.response?.returnValue }, schema);
  }

  #shim(instance: InstanceRecord, history: HistoryEvent[], state: OrchestratorState): ShimResult {
    return shimEpisode(history, state, { now: this.#clock.now(), instanceId: instance.instanceId, executionId: instance.executionId });
  }

  #applyDecisions(instance: InstanceRecord, shim: ShimResult, commit: EpisodeCommit, onlySignals: boolean): void {
    const now = commit.now;
    const self = instance.instanceId;
    const executionId = instance.executionId;
    const toSelf = (event: HistoryEvent, visibleAt = now): NewMessage => ({ instanceId: self, executionId, visibleAt, event });
    for (const d of shim.decisions) {
      if (onlySignals && !(d.kind === 'entityMessage' && d.purpose === 'signal')) continue;
      switch (d.kind) {
        case 'activity': {
          commit.appendHistory.push(makeEvent(EventType.TaskScheduled, now, { EventId: d.id, Name: d.name, Input: d.input }));
          if (this.#function(d.name, 'activityTrigger')) {
            const activity: NewActivity = { instanceId: self, executionId, taskId: d.id, name: d.name, input: d.input ?? null };
            commit.activities.push(activity);
          } else {
            commit.messages.push(
              toSelf(
                makeEvent(EventType.TaskFailed, now, {
                  TaskScheduledId: d.id,
                  Reason: `The function '${d.name}' doesn't exist, is disabled, or is not an activity function. ${this.#listFunctions('activityTrigger')}`,
                  Details: '',
                }),
              ),
            );
          }
          break;
        }
        case 'http': {
          const input = JSON.stringify(d.request);
          commit.appendHistory.push(makeEvent(EventType.TaskScheduled, now, { EventId: d.id, Name: HTTP_ACTIVITY_NAME, Input: input }));
          commit.activities.push({ instanceId: self, executionId, taskId: d.id, name: HTTP_ACTIVITY_NAME, input });
          break;
        }
        case 'timer':
          commit.appendHistory.push(makeEvent(EventType.TimerCreated, now, { EventId: d.id, FireAt: d.fireAt }));
          commit.messages.push(
            toSelf(makeEvent(EventType.TimerFired, now, { TimerId: d.id, FireAt: d.fireAt }), Math.max(now, Date.parse(d.fireAt))),
          );
          break;
        case 'subOrchestration': {
          const childId = d.instanceId ?? `${executionId}:${d.id}`;
          commit.appendHistory.push(
            makeEvent(EventType.SubOrchestrationInstanceCreated, now, { EventId: d.id, Name: d.name, InstanceId: childId, Input: d.input }),
          );
          const fn = this.#function(d.name, 'orchestrationTrigger');
          let problem: string | undefined;
          if (!fn) {
            problem = `The function '${d.name}' doesn't exist, is disabled, or is not an orchestrator function.`;
          } else {
            try {
              checkInstanceId(childId);
            } catch (err) {
              problem = (err as Error).message;
            }
          }
          if (problem || !fn) {
            commit.messages.push(
              toSelf(makeEvent(EventType.SubOrchestrationInstanceFailed, now, { TaskScheduledId: d.id, Reason: problem, Details: '' })),
            );
            break;
          }
          const childExecution = newId();
          const child: CreateInstance = {
            instanceId: childId,
            executionId: childExecution,
            name: fn.name,
            version: d.version,
            input: d.input ?? null,
            parentInstanceId: self,
            now,
            startEvent: makeEvent(EventType.ExecutionStarted, now, {
              Name: fn.name,
              Version: d.version ?? '',
              Input: d.input,
              OrchestrationInstance: { InstanceId: childId, ExecutionId: childExecution },
              ParentInstance: {
                Name: instance.name,
                OrchestrationInstance: { InstanceId: self, ExecutionId: executionId },
                TaskScheduleId: d.id,
              },
            }),
          };
          commit.children.push(child);
          break;
        }
        case 'entityMessage': {
          const eventName = d.purpose === 'release' ? 'release' : 'op';
          const input = JSON.stringify(d.message);
          commit.appendHistory.push(makeEvent(EventType.EventSent, now, { EventId: d.id, InstanceId: d.target, Name: eventName, Input: input }));
          const entityName = d.target.substring(1, d.target.indexOf('@', 1));
          if (this.#entityFunction(entityName)) {
            commit.messages.push({
              instanceId: d.target,
              executionId: null,
              visibleAt: now,
              event: makeEvent(EventType.EventRaised, now, { Name: eventName, Input: input }),
            });
          } else if (d.purpose === 'call' || d.purpose === 'lock') {
            const error = `The function '${entityName}' doesn't exist, is disabled, or is not an entity function.`;
            commit.messages.push(
              toSelf(
                makeEvent(EventType.EventRaised, now, {
                  Name: d.message.id,
                  Input: JSON.stringify({ result: JSON.stringify(error), exceptionType: 'Error' }),
                }),
              ),
            );
          } else {
            this.#logger.warn(`Signal to entity "${d.target}" dropped: no entity function named "${entityName}".`);
          }
          break;
        }
      }
    }
    for (const timerId of shim.canceledTimerIds) commit.cancelTimers.push({ executionId, timerId });
  }

  // ---------------------------------------------------------------- activities

  async #runActivity(task: ActivityTask): Promise<void> {
    const now = () => this.#clock.now();
    let event: HistoryEvent;
    if (task.name === HTTP_ACTIVITY_NAME) {
      event = await this.#runHttpActivity(task);
    } else {
      const fn = this.#function(task.name, 'activityTrigger');
      if (!fn) {
        event = makeEvent(EventType.TaskFailed, now(), {
          TaskScheduledId: task.taskId,
          Reason: `Activity function '${task.name}' failed: Activity function '${task.name}' does not exist.`,
          Details: '',
        });
      } else {
        const outcome = await this.#o.invoker.invoke(fn, {
          triggerData: task.input === null ? null : { json: task.input },
          bindingData: activityBindingData({ instanceId: task.instanceId, triggerName: fn.triggerName, input: task.input }),
        });
        this.stats.activities++;
        if (outcome.error) {
          const failure = activityFailure(task.name, outcome.error);
          event = makeEvent(EventType.TaskFailed, now(), {
            TaskScheduledId: task.taskId,
            Reason: failure.reason,
            Details: failure.details,
            FailureDetails: failure.failureDetails,
          });
        } else {
          event = makeEvent(EventType.TaskCompleted, now(), {
            TaskScheduledId: task.taskId,
            Result: jsonTextOfTypedData(outcome.response?.returnValue),
          });
        }
      }
    }
    this.#completions.push({
      taskSeq: task.seq,
      message: { instanceId: task.instanceId, executionId: task.executionId, visibleAt: now(), event },
    });
    this.#scheduleFlush();
  }

  async #runHttpActivity(task: ActivityTask): Promise<HistoryEvent> {
    try {
      const request = JSON.parse(task.input ?? 'null') as DurableHttpRequestJson;
      let response = await this.#o.httpCall(request);
      // Below schema V3 the library does not poll; the activity follows 202 + Location itself.
      if (this.#o.schemaVersion < 2 && request.asynchronousPatternEnabled !== false) {
        for (let i = 0; i < 1000 && response.statusCode === 202; i++) {
          const location = Object.entries(response.headers).find(([k]) => k.toLowerCase() === 'location')?.[1];
          if (!location) break;
          await new Promise<void>((resolve) => this.#clock.setTimeout(resolve, DEFAULT_HTTP_POLL_MS));
          response = await this.#o.httpCall({ method: 'GET', uri: location, headers: request.headers ?? {} });
        }
      }
      return makeEvent(EventType.TaskCompleted, this.#clock.now(), { TaskScheduledId: task.taskId, Result: JSON.stringify(response) });
    } catch (err) {
      return makeEvent(EventType.TaskFailed, this.#clock.now(), {
        TaskScheduledId: task.taskId,
        Reason: `Activity function '${HTTP_ACTIVITY_NAME}' failed: ${describeError(err)}`,
        Details: err instanceof Error ? (err.stack ?? '') : '',
      });
    }
  }

  #scheduleFlush(): void {
    // After a failed write, new results queue behind the kept ones until the retry timer fires.
    if (this.#flushScheduled || this.#completionRetry !== undefined) return;
    this.#flushScheduled = true;
    // Results that finish in the same turn are committed together (group commit).
    setImmediate(() => {
      this.#flushScheduled = false;
      this.#flushCompletions();
    });
  }

  /**
   * Records the queued results in one store transaction. They leave the queue only once the store
   * has them: a failed call wrote nothing (it is one transaction) and is tried again whole, in
   * order and ahead of newer results, after a backoff. A retry cannot record a result twice: the
   * store skips tasks that are no longer queued. Returns whether everything was recorded.
   */
  #flushCompletions(): boolean {
    const count = this.#completions.length;
    if (count === 0) return true;
    let notify: Delivery[];
    try {
      notify = this.#store.completeActivities(this.#completions.slice(0, count));
    } catch (err) {
      this.#completionFailures++;
      const delay = storeRetryDelay(this.#completionFailures);
      this.#logger.error(
        `Could not record ${count} activity result(s) (failure ${this.#completionFailures} in a row): ${describeError(err)}. ` +
          `They are kept and written again in ${delay} ms; their orchestrations wait for them until then.`,
      );
      if (!this.#stopping && this.#completionRetry === undefined) {
        this.#completionRetry = this.#clock.setTimeout(() => {
          this.#completionRetry = undefined;
          this.#flushCompletions();
        }, delay);
      }
      return false;
    }
    this.#completions.splice(0, count);
    if (this.#completionFailures > 0) {
      this.#logger.warn(`Recorded ${count} activity result(s) after ${this.#completionFailures} failed attempt(s).`);
      this.#completionFailures = 0;
    }
    this.#deliver(notify);
    return true;
  }

  // ---------------------------------------------------------------- entities

  async #runEntity(instanceId: string): Promise<void> {
    const now = this.#clock.now();
    const record = this.#store.getInstance(instanceId);
    if (!record) return;
    const inbox = this.#store.readInbox(instanceId, now);
    if (inbox.length === 0) return;
    const entityName = record.name;
    const key = instanceId.substring(instanceId.indexOf('@', 1) + 1);
    const fn = this.#entityFunction(entityName);
    const result = await runEntityBatch({
      self: { name: entityName, key },
      schedulerId: instanceId,
      record,
      inbox,
      invoke: fn
        ? async (payload) => {
            const outcome = await this.#o.invoker.invoke(fn, {
              triggerData: { string: JSON.stringify(payload) },
              skipBindings: true,
            });
            if (outcome.error) throw outcome.error;
            return outcome.response?.returnValue ?? null;
          }
        : undefined,
      now,
      newGuid: randomUUID,
    });
    this.stats.entityBatches++;
    const notify = this.#store.commitEntity({
      instanceId,
      now: this.#clock.now(),
      consumed: result.consumed,
      exists: result.exists,
      state: result.state,
      lockedBy: result.lockedBy,
      messages: result.messages,
    });
    if (result.rerun) this.#entityDirty.add(instanceId);
    this.#deliver(notify);
  }
}
