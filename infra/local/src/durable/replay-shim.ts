import { randomUUID } from 'node:crypto';
import { type Action, ActionType, type DurableHttpRequestJson, type RetryOptionsJson } from './actions.js';
import { EventType, type HistoryEvent, eventTypeName } from './history.js';

/**
 * The replay shim turns the action list an orchestrator returns into scheduling decisions with the
 * sequence numbers the durable-functions library assigned to them.
 *
 * The library numbers every task it schedules (activities, timers, sub-orchestrations, entity
 * messages) in the order it processes history, including tasks it creates on its own: the timer
 * between two attempts of a retried activity, the next child of a long timer, the polling timer
 * of an HTTP call. Completions must carry those numbers or the library never matches them. The
 * shim therefore walks the same history with a model of the library's task tree, the way the
 * Durable Task Framework replays the actions of an out-of-process orchestrator: top-level actions
 * are yielded one after another, each once the previous one completed. Numbers already present in
 * history are checked against what the orchestrator asks for now (a mismatch is non-determinism);
 * numbers not yet in history are the new decisions of this episode.
 */

/** A request message sent to an entity, as the Durable extension writes it. */
export interface EntityRequestMessage {
  id: string;
  op?: string;
  signal?: boolean;
  input?: string;
  parent?: string;
  parentExecution?: string;
  lockset?: string[];
  pos?: number;
  timestamp: string;
}

export type Decision =
  | {
      kind: 'activity';
      id: number;
      name: string;
      input: string | undefined;
      /** The attempt number when the activity runs under a retry policy. */
      attempt?: number;
    }
  | { kind: 'http'; id: number; request: DurableHttpRequestJson }
  | { kind: 'timer'; id: number; fireAt: string; purpose: 'user' | 'retry' | 'poll' }
  | { kind: 'subOrchestration'; id: number; name: string; instanceId: string | undefined; input: string | undefined; version: string | undefined }
  | { kind: 'entityMessage'; id: number; target: string; operation: string; message: EntityRequestMessage; purpose: 'signal' | 'call' | 'lock' | 'release' };

export interface ShimResult {
  /** Decisions whose sequence numbers are not in history yet, in number order. */
  decisions: Decision[];
  /** Timers already in history that the orchestrator has since canceled. */
  canceledTimerIds: number[];
  continueAsNew: { input: string | undefined } | undefined;
  /** Set when history and the orchestrator disagree; the orchestration must fail. */
  nonDeterminism: string | undefined;
  /**
   * The orchestrator put tasks it had already yielded into a new Task.any/Task.all. fnhost waits
   * on the existing tasks, as the code intends; the Durable extension in Azure schedules them
   * again (azure-functions-durable-js#574), so the app should not rely on this pattern.
   */
  reyieldedTasks: boolean;
}

export interface ShimOptions {
  /** The current time, for timers the shim creates itself. */
  now: number;
  /** The replay schema the library used (0 = V1 … 3 = V4); long timers and HTTP polling need V3. */
  schemaVersion: number;
  defaultHttpAsyncRequestSleepTimeMillseconds: number;
  maximumShortTimerDurationMs: number;
  longRunningTimerIntervalDurationMs: number;
  instanceId: string;
  executionId: string;
  newGuid?: () => string;
}

type TaskState = 'running' | 'completed' | 'failed';

abstract class Task {
  state: TaskState = 'running';
  parent: CompoundTask | undefined;
  /** Sequence number, external event name, or entity request id once assigned. */
  key: number | string | undefined;
  result: unknown;

  setValue(failed: boolean, value: unknown, shim: Shim): void {
    this.state = failed ? 'failed' : 'completed';
    this.result = value;
    this.parent?.childCompleted(this, shim);
  }
}

/** A task scheduled with the host: consumes one sequence number when tracked. */
class AtomicTask extends Task {
  constructor(
    readonly action: Action | 'noop',
    /** What the shim schedules for a no-op child of a retry or polling task. */
    readonly role?: Decision['kind'] | 'timer' | undefined,
  ) {
    super();
  }
}

/** Waits for an external event by name; consumes no sequence number. */
class ExternalEventTask extends Task {
  constructor(readonly name: string) {
    super();
    this.key = name;
  }
}

abstract class CompoundTask extends Task {
  constructor(readonly children: Task[]) {
    super();
    for (const c of children) c.parent = this;
  }

  abstract childCompleted(child: Task, shim: Shim): void;

  addChild(child: Task, shim: Shim): void {
    child.parent = this;
    this.children.push(child);
    shim.track(child);
  }
}

class WhenAllTask extends CompoundTask {
  #failed = false;
  /** Counted rather than rechecked, so a fan-in of n results costs O(n), not O(n²). */
  #completed = 0;
  childCompleted(child: Task, shim: Shim): void {
    if (child.state === 'completed') {
      this.#completed++;
      if (this.state === 'running' && this.#completed === this.children.length) {
        this.setValue(false, undefined, shim);
      }
    } else if (!this.#failed) {
      this.#failed = true;
      if (this.state === 'running') this.setValue(true, child.result, shim);
    }
  }
}

class WhenAnyTask extends CompoundTask {
  childCompleted(child: Task, shim: Shim): void {
    if (this.state === 'running') this.setValue(false, child, shim);
  }
}

/** Mirrors the library's RetryableTask: failure → timer → next attempt, up to maxNumberOfAttempts. */
class RetryTask extends CompoundTask {
  attempt = 1;
  waitingOnTimer = false;
  lastError: unknown;

  constructor(
    inner: AtomicTask,
    readonly options: RetryOptionsJson,
    readonly attemptAction: Action,
  ) {
    super([inner]);
  }

  childCompleted(child: Task, shim: Shim): void {
    if (this.state !== 'running') return;
    if (this.waitingOnTimer) {
      this.waitingOnTimer = false;
      if (this.attempt > this.options.maxNumberOfAttempts) {
        this.setValue(true, this.lastError, shim);
      } else {
        this.addChild(new AtomicTask(this.attemptAction, 'activity'), shim);
      }
    } else if (child.state === 'completed') {
      this.setValue(false, child.result, shim);
    } else {
      this.waitingOnTimer = true;
      this.lastError = child.result;
      this.attempt++;
      const delay =
        this.attempt > this.options.maxNumberOfAttempts ? 0 : retryDelay(this.options, this.attempt - 1);
      const timer = new AtomicTask('noop', 'timer');
      shim.pendingTimerFireAt.set(timer, new Date(shim.currentTime + delay).toISOString());
      shim.pendingTimerPurpose.set(timer, 'retry');
      this.addChild(timer, shim);
    }
  }
}

/** Mirrors LongTimerTask: a timer longer than the maximum short timer is a chain of shorter ones. */
class LongTimerTask extends CompoundTask {
  constructor(
    readonly finalFireAt: number,
    shim: Shim,
  ) {
    super([]);
    this.children.push(this.#nextTimer(shim));
    for (const c of this.children) c.parent = this;
  }

  #nextTimer(shim: Shim): AtomicTask {
    const remaining = this.finalFireAt - shim.currentTime;
    const fireAt =
      remaining > shim.options.maximumShortTimerDurationMs
        ? shim.currentTime + shim.options.longRunningTimerIntervalDurationMs
        : this.finalFireAt;
    const timer = new AtomicTask({ actionType: ActionType.CreateTimer, fireAt: new Date(fireAt).toISOString() });
    return timer;
  }

  childCompleted(child: Task, shim: Shim): void {
    if (this.finalFireAt > shim.currentTime) {
      this.addChild(this.#nextTimer(shim), shim);
    }
    if (child.state === 'completed') {
      if (this.state === 'running' && this.children.every((c) => c.state === 'completed')) {
        this.setValue(false, undefined, shim);
      }
    } else if (this.state === 'running') {
      this.setValue(true, child.result, shim);
    }
  }
}

/** Mirrors CallHttpWithPollingTask: 202 + Location → timer, then the call again. */
class HttpPollingTask extends CompoundTask {
  constructor(
    readonly request: DurableHttpRequestJson,
    first: AtomicTask,
  ) {
    super([first]);
  }

  childCompleted(child: Task, shim: Shim): void {
    if (this.state !== 'running') return;
    if (child.state !== 'completed') {
      this.setValue(true, child.result, shim);
      return;
    }
    if (!(child instanceof AtomicTask) || child.role !== 'http') return;
    const response = child.result as { statusCode?: unknown; headers?: unknown } | null;
    const location = headerOf(response?.headers, 'location');
    if (response?.statusCode === 202 && location !== undefined) {
      const retryAfter = Number(headerOf(response.headers, 'retry-after'));
      const delay = Number.isFinite(retryAfter) && retryAfter >= 0
        ? retryAfter * 1000
        : shim.options.defaultHttpAsyncRequestSleepTimeMillseconds;
      const timer = new AtomicTask('noop', 'timer');
      shim.pendingTimerFireAt.set(timer, new Date(shim.currentTime + delay).toISOString());
      shim.pendingTimerPurpose.set(timer, 'poll');
      const poll = new AtomicTask(
        { actionType: ActionType.CallHttp, httpRequest: { ...this.request, method: 'GET', uri: location } },
        'http',
      );
      delete (poll.action as { httpRequest: DurableHttpRequestJson }).httpRequest.content;
      this.addChild(timer, shim);
      this.addChild(poll, shim);
    } else {
      this.setValue(false, response, shim);
    }
  }
}

function headerOf(headers: unknown, name: string): string | undefined {
  if (typeof headers !== 'object' || headers === null) return undefined;
  for (const [k, v] of Object.entries(headers as Record<string, unknown>)) {
    if (k.toLowerCase() !== name) continue;
    if (typeof v === 'string') return v;
    if (Array.isArray(v) && typeof v[0] === 'string') return v[0];
  }
  return undefined;
}

/** Delay before retry attempt `retryNumber` (1 = first retry), as the Durable Task Framework computes it. */
export function retryDelay(options: RetryOptionsJson, retryNumber: number): number {
  const coefficient = options.backoffCoefficient && options.backoffCoefficient > 0 ? options.backoffCoefficient : 1;
  let delay = options.firstRetryIntervalInMilliseconds * Math.pow(coefficient, retryNumber - 1);
  const cap = options.maxRetryIntervalInMilliseconds;
  if (cap !== undefined && cap > 0 && delay > cap) delay = cap;
  return Math.max(0, Math.round(delay));
}

const SCHEDULING_EVENTS = new Set<number>([
  EventType.TaskScheduled,
  EventType.TimerCreated,
  EventType.SubOrchestrationInstanceCreated,
  EventType.EventSent,
]);

/** The activity name the Durable extension uses for durable HTTP calls. */
export const HTTP_ACTIVITY_NAME = 'BuiltIn::HttpActivity';

class Shim {
  readonly options: ShimOptions;
  readonly decisions: Decision[] = [];
  readonly pendingTimerFireAt = new Map<AtomicTask, string>();
  readonly pendingTimerPurpose = new Map<AtomicTask, 'retry' | 'poll'>();
  currentTime = 0;
  nonDeterminism: string | undefined;
  continueAsNew: { input: string | undefined } | undefined;
  readonly canceledTimerIds: number[] = [];

  #seq = 0;
  readonly #open = new Map<number | string, Task>();
  readonly #openEvents = new Map<string, ExternalEventTask[]>();
  readonly #deferred = new Map<number | string, HistoryEvent[]>();
  readonly #recorded: Map<number, HistoryEvent>;
  readonly #actions: Action[];
  #cursor = 0;
  #current: Task | undefined;
  #started = false;
  /** Entities held by the current critical section, released by ReleaseEntities. */
  #lockedEntities: string[] = [];
  readonly #newGuid: () => string;
  /** Tasks built from actions, by action JSON, to recognise a task yielded again. */
  readonly #yielded = new Map<string, Task[]>();
  reyieldedTasks = false;

  constructor(history: HistoryEvent[], actions: Action[], options: ShimOptions) {
    this.options = options;
    this.#actions = actions;
    this.#newGuid = options.newGuid ?? randomUUID;
    this.#recorded = new Map();
    for (const e of history) {
      if (SCHEDULING_EVENTS.has(e.EventType) && e.EventId >= 0) this.#recorded.set(e.EventId, e);
    }
  }

  run(history: HistoryEvent[]): void {
    const firstStart = history.find((e) => e.EventType === EventType.OrchestratorStarted);
    this.currentTime = firstStart ? Date.parse(firstStart.Timestamp) : this.options.now;
    for (const event of history) {
      if (this.nonDeterminism) return;
      this.#process(event);
    }
    // Anything the orchestrator yielded that the walk did not reach was yielded last.
    while (!this.nonDeterminism && this.#cursor < this.#actions.length) {
      this.#yieldNext(true);
    }
  }

  #process(event: HistoryEvent): void {
    switch (event.EventType) {
      case EventType.OrchestratorStarted: {
        const t = Date.parse(event.Timestamp);
        if (t > this.currentTime) this.currentTime = t;
        return;
      }
      case EventType.ExecutionStarted:
        this.#started = true;
        this.#resume();
        return;
      case EventType.EventSent: {
        const task = this.#open.get(event.EventId);
        if (task instanceof AtomicTask && typeof task.action === 'object') {
          const type = task.action.actionType;
          if (type === ActionType.CallEntity || type === ActionType.LockEntities) {
            const requestId = requestIdOf(event);
            if (requestId !== undefined) {
              this.#open.delete(event.EventId);
              task.key = requestId;
              this.#open.set(requestId, task);
              this.#flushDeferred(requestId);
            }
          }
        }
        return;
      }
      case EventType.TaskCompleted:
      case EventType.SubOrchestrationInstanceCompleted:
        this.#complete(event, event.TaskScheduledId, false, parseResult(event.Result));
        return;
      case EventType.TaskFailed:
      case EventType.SubOrchestrationInstanceFailed:
        this.#complete(event, event.TaskScheduledId, true, event.Reason ?? 'failed');
        return;
      case EventType.TimerFired:
        this.#complete(event, event.TimerId, false, undefined);
        return;
      case EventType.EventRaised:
        this.#complete(event, event.Name, false, parseResult(event.Input));
        return;
      default:
        return;
    }
  }

  #complete(event: HistoryEvent, key: number | string | undefined, failed: boolean, value: unknown): void {
    if (key === undefined) return;
    let task = this.#open.get(key);
    if (task) {
      this.#open.delete(key);
    } else if (typeof key === 'string') {
      const waiting = this.#openEvents.get(key);
      task = waiting?.pop();
      if (waiting && waiting.length === 0) this.#openEvents.delete(key);
    }
    if (!task) {
      const list = this.#deferred.get(key) ?? [];
      list.push(event);
      this.#deferred.set(key, list);
      return;
    }
    task.setValue(failed, value, this);
    this.#resume();
  }

  #flushDeferred(key: number | string): void {
    const list = this.#deferred.get(key);
    if (!list || list.length === 0) return;
    const event = list.shift() as HistoryEvent;
    if (list.length === 0) this.#deferred.delete(key);
    this.#process(event);
  }

  /** User code runs on: yield actions until one is still waiting. */
  #resume(): void {
    if (!this.#started) return;
    while (!this.nonDeterminism && (this.#current === undefined || this.#current.state !== 'running')) {
      if (this.#cursor >= this.#actions.length) return;
      this.#yieldNext(false);
    }
  }

  #yieldNext(flushing: boolean): void {
    const action = this.#actions[this.#cursor++];
    if (!action) return;
    switch (action.actionType) {
      case ActionType.SignalEntity:
        this.#allocate(new AtomicTask(action, 'entityMessage'));
        return;
      case ActionType.ReleaseEntities: {
        for (const target of this.#lockedEntities) {
          this.#allocate(new AtomicTask({ actionType: ActionType.ReleaseEntities }, 'entityMessage'), target);
        }
        this.#lockedEntities = [];
        return;
      }
      case ActionType.ContinueAsNew:
        this.continueAsNew = { input: jsonTextOfProcessedInput(action.input) };
        return;
      default: {
        const task = this.#build(action);
        if (!flushing) this.#current = task;
        this.track(task);
      }
    }
  }

  #build(action: Action): Task {
    const task = this.#create(action);
    const key = JSON.stringify(action);
    const list = this.#yielded.get(key);
    if (list) list.push(task);
    else this.#yielded.set(key, [task]);
    return task;
  }

  /**
   * The children of a new Task.any/Task.all. The library serialises every child's action, also for
   * tasks yielded before; those keep their sequence numbers and must not be scheduled again.
   * Without object identity in the JSON, an equal action of a still-running task (other than an
   * event wait) is taken to be that task; an equal action of a finished task only when the compound also re-uses a running
   * one (the "first result, then all" pattern), since a fresh identical call is likelier otherwise.
   */
  #children(actions: Action[]): Task[] {
    const claimed = new Set<Task>();
    const keys = actions.map((a) => JSON.stringify(a));
    const pick = (i: number, running: boolean): Task | undefined => {
      // Waiting for an event schedules nothing, and a fresh waiter is what the library makes when
      // code waits again (the newest waiter gets the event): never a re-yield.
      if (actions[i]?.actionType === ActionType.WaitForExternalEvent) return undefined;
      const found = (this.#yielded.get(keys[i] as string) ?? []).find(
        (t) => (t.state === 'running') === running && !claimed.has(t),
      );
      if (found) claimed.add(found);
      return found;
    };
    const chosen = actions.map((_, i) => pick(i, true));
    if (chosen.some((t) => t !== undefined)) {
      this.reyieldedTasks = true;
      for (let i = 0; i < chosen.length; i++) chosen[i] ??= pick(i, false);
    }
    return actions.map((a, i) => chosen[i] ?? this.#build(a));
  }

  #create(action: Action): Task {
    switch (action.actionType) {
      case ActionType.WhenAll:
        return new WhenAllTask(this.#children(action.compoundActions));
      case ActionType.WhenAny:
        return new WhenAnyTask(this.#children(action.compoundActions));
      case ActionType.CallActivityWithRetry:
      case ActionType.CallSubOrchestratorWithRetry:
        return new RetryTask(new AtomicTask(action, 'activity'), action.retryOptions, action);
      case ActionType.WaitForExternalEvent:
        return new ExternalEventTask(action.externalEventName);
      case ActionType.CreateTimer: {
        const fireAt = Date.parse(action.fireAt);
        if (this.options.schemaVersion >= 2 && fireAt - this.currentTime > this.options.maximumShortTimerDurationMs) {
          return new LongTimerTask(fireAt, this);
        }
        return new AtomicTask(action, 'timer');
      }
      case ActionType.CallHttp: {
        const first = new AtomicTask(action, 'http');
        return action.httpRequest.asynchronousPatternEnabled === false || this.options.schemaVersion < 2
          ? first
          : new HttpPollingTask(action.httpRequest, first);
      }
      case ActionType.LockEntities:
        this.#lockedEntities = action.lockSet.map((e) => schedulerId(e.name, e.key)).sort();
        return new AtomicTask(action, 'entityMessage');
      default:
        return new AtomicTask(action);
    }
  }

  /** Mirrors the library's trackOpenTask: numbers leaves in order, delivers deferred events. */
  track(task: Task): void {
    if (task instanceof CompoundTask) {
      for (const child of [...task.children]) this.track(child);
      return;
    }
    if (task instanceof ExternalEventTask) {
      const list = this.#openEvents.get(task.name) ?? [];
      list.push(task);
      this.#openEvents.set(task.name, list);
      this.#flushDeferred(task.name);
      return;
    }
    if (task instanceof AtomicTask) {
      // A task yielded before keeps its number.
      if (task.key !== undefined) return;
      const id = this.#allocate(task);
      task.key = id;
      this.#open.set(id, task);
      this.#flushDeferred(id);
    }
  }

  #allocate(task: AtomicTask, releaseTarget?: string): number {
    const id = this.#seq++;
    const recorded = this.#recorded.get(id);
    if (recorded) {
      // Replayed work only needs checking against history, not a full decision.
      const expected = expectationOf(task, releaseTarget);
      if (!expected) return id;
      const problem = mismatch(recorded, expected);
      if (problem) {
        this.nonDeterminism =
          `Non-deterministic workflow detected: history has ${eventTypeName(recorded.EventType)}` +
          `${recorded.Name ? ` "${recorded.Name}"` : ''} with sequence number ${id}, but the orchestrator now ${problem}. ` +
          'Orchestrator code must make the same calls in the same order on every replay.';
        return id;
      }
      if (typeof task.action === 'object' && task.action.actionType === ActionType.CreateTimer && task.action.isCanceled) {
        this.canceledTimerIds.push(id);
      }
      return id;
    }
    const decision = this.#decide(task, id, releaseTarget);
    if (decision) this.decisions.push(decision);
    return id;
  }

  #decide(task: AtomicTask, id: number, releaseTarget: string | undefined): Decision | undefined {
    if (task.action === 'noop') {
      const fireAt = this.pendingTimerFireAt.get(task);
      if (fireAt !== undefined) {
        return { kind: 'timer', id, fireAt, purpose: this.pendingTimerPurpose.get(task) ?? 'retry' };
      }
      return undefined;
    }
    const action = task.action;
    const now = new Date(this.currentTime).toISOString();
    switch (action.actionType) {
      case ActionType.CallActivity:
        return { kind: 'activity', id, name: action.functionName, input: jsonTextOfProcessedInput(action.input) };
      case ActionType.CallActivityWithRetry:
        return {
          kind: 'activity',
          id,
          name: action.functionName,
          input: jsonTextOfProcessedInput(action.input),
          attempt: (task.parent as RetryTask | undefined)?.attempt ?? 1,
        };
      case ActionType.CallSubOrchestrator:
      case ActionType.CallSubOrchestratorWithRetry:
        return {
          kind: 'subOrchestration',
          id,
          name: action.functionName,
          instanceId: action.instanceId,
          input: jsonTextOfRawInput(action.input),
          version: action.version,
        };
      case ActionType.CreateTimer:
        return { kind: 'timer', id, fireAt: new Date(Date.parse(action.fireAt)).toISOString(), purpose: 'user' };
      case ActionType.CallHttp:
        return { kind: 'http', id, request: action.httpRequest };
      case ActionType.CallEntity:
      case ActionType.SignalEntity: {
        const signal = action.actionType === ActionType.SignalEntity;
        const message: EntityRequestMessage = {
          id: this.#newGuid(),
          op: action.operation,
          signal,
          parent: this.options.instanceId,
          parentExecution: this.options.executionId,
          timestamp: now,
        };
        const input = jsonTextOfRawInput(action.input);
        if (input !== undefined) message.input = input;
        return { kind: 'entityMessage', id, target: action.instanceId, operation: action.operation, message, purpose: signal ? 'signal' : 'call' };
      }
      case ActionType.LockEntities: {
        const lockset = action.lockSet.map((e) => schedulerId(e.name, e.key)).sort();
        const unique = lockset.filter((v, i) => i === 0 || lockset[i - 1] !== v);
        return {
          kind: 'entityMessage',
          id,
          target: unique[0] ?? '',
          operation: 'lock',
          message: { id: action.lockRequestId, lockset: unique, pos: 0, parent: this.options.instanceId, parentExecution: this.options.executionId, timestamp: now },
          purpose: 'lock',
        };
      }
      case ActionType.ReleaseEntities:
        return {
          kind: 'entityMessage',
          id,
          target: releaseTarget ?? '',
          operation: 'release',
          message: { id: this.#newGuid(), parent: this.options.instanceId, parentExecution: this.options.executionId, timestamp: now },
          purpose: 'release',
        };
      default:
        return undefined;
    }
  }
}

function requestIdOf(event: HistoryEvent): string | undefined {
  if (!event.Input) return undefined;
  try {
    const parsed = JSON.parse(event.Input) as { id?: unknown };
    return typeof parsed.id === 'string' ? parsed.id : undefined;
  } catch {
    return undefined;
  }
}

function parseResult(text: string | undefined): unknown {
  if (text === undefined) return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

interface Expectation {
  kind: Decision['kind'];
  /** Activity or orchestrator name, or the entity a message goes to. */
  name: string;
}

/** What history must hold for a task that was scheduled before (kind and name only). */
function expectationOf(task: AtomicTask, releaseTarget: string | undefined): Expectation | undefined {
  if (task.action === 'noop') return task.role === 'timer' ? { kind: 'timer', name: '' } : undefined;
  const action = task.action;
  switch (action.actionType) {
    case ActionType.CallActivity:
    case ActionType.CallActivityWithRetry:
      return { kind: 'activity', name: action.functionName };
    case ActionType.CallSubOrchestrator:
    case ActionType.CallSubOrchestratorWithRetry:
      return { kind: 'subOrchestration', name: action.functionName };
    case ActionType.CreateTimer:
      return { kind: 'timer', name: '' };
    case ActionType.CallHttp:
      return { kind: 'http', name: HTTP_ACTIVITY_NAME };
    case ActionType.CallEntity:
    case ActionType.SignalEntity:
      return { kind: 'entityMessage', name: action.instanceId };
    case ActionType.LockEntities: {
      const first = action.lockSet.map((e) => schedulerId(e.name, e.key)).sort()[0];
      return { kind: 'entityMessage', name: first ?? '' };
    }
    case ActionType.ReleaseEntities:
      return { kind: 'entityMessage', name: releaseTarget ?? '' };
    default:
      return undefined;
  }
}

/** Describes how a recorded scheduling event differs from what the orchestrator asks now. */
function mismatch(recorded: HistoryEvent, expected: Expectation): string | undefined {
  switch (expected.kind) {
    case 'activity':
      return recorded.EventType === EventType.TaskScheduled && recorded.Name === expected.name
        ? undefined
        : `calls activity "${expected.name}" there`;
    case 'http':
      return recorded.EventType === EventType.TaskScheduled && recorded.Name === HTTP_ACTIVITY_NAME
        ? undefined
        : 'makes a durable HTTP call there';
    case 'timer':
      return recorded.EventType === EventType.TimerCreated ? undefined : 'creates a timer there';
    case 'subOrchestration':
      return recorded.EventType === EventType.SubOrchestrationInstanceCreated && recorded.Name === expected.name
        ? undefined
        : `calls sub-orchestration "${expected.name}" there`;
    case 'entityMessage':
      return recorded.EventType === EventType.EventSent && recorded.InstanceId === expected.name
        ? undefined
        : `sends to entity "${expected.name}" there`;
  }
}

export function schedulerId(name: string, key: string): string {
  return `@${name.toLowerCase()}@${key}`;
}

/** Activity and continue-as-new inputs: the library already serialised strings to JSON. */
export function jsonTextOfProcessedInput(input: unknown): string | undefined {
  if (input === undefined || input === null) return input === null ? 'null' : undefined;
  return typeof input === 'string' ? input : JSON.stringify(input);
}

/** Sub-orchestration and entity inputs arrive as the raw value. */
export function jsonTextOfRawInput(input: unknown): string | undefined {
  if (input === undefined) return undefined;
  return JSON.stringify(input);
}

/** Replays `history` against `actions` and returns this episode's new decisions. */
export function replayActions(history: HistoryEvent[], actions: Action[], options: ShimOptions): ShimResult {
  const shim = new Shim(history, actions, options);
  shim.run(history);
  return {
    decisions: shim.decisions,
    canceledTimerIds: shim.canceledTimerIds,
    continueAsNew: shim.continueAsNew,
    nonDeterminism: shim.nonDeterminism,
    reyieldedTasks: shim.reyieldedTasks,
  };
}
