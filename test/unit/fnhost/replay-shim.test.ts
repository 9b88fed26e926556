import { describe, expect, it } from 'vitest';
import { type Action, ActionType } from '../../../infra/local/src/durable/actions.js';
import { EventType, type HistoryEvent, makeEvent } from '../../../infra/local/src/durable/history.js';
import { type ShimOptions, replayActions, retryDelay } from '../../../infra/local/src/durable/replay-shim.js';

const T0 = Date.parse('2026-01-01T00:00:00Z');
let guid = 0;
const options = (now = T0): ShimOptions => ({
  now,
  schemaVersion: 2,
  defaultHttpAsyncRequestSleepTimeMillseconds: 30_000,
  maximumShortTimerDurationMs: 6 * 86_400_000,
  longRunningTimerIntervalDurationMs: 3 * 86_400_000,
  instanceId: 'i1',
  executionId: 'e1',
  newGuid: () => `guid-${++guid}`,
});

const started = (t = T0): HistoryEvent[] => [
  makeEvent(EventType.OrchestratorStarted, t),
  makeEvent(EventType.ExecutionStarted, t, { Name: 'orch' }),
];
const scheduled = (id: number, name: string): HistoryEvent => makeEvent(EventType.TaskScheduled, T0, { EventId: id, Name: name });
const completed = (id: number, result: unknown): HistoryEvent =>
  makeEvent(EventType.TaskCompleted, T0, { TaskScheduledId: id, Result: JSON.stringify(result) });
const failed = (id: number): HistoryEvent => makeEvent(EventType.TaskFailed, T0, { TaskScheduledId: id, Reason: 'boom', Details: '' });
const timerCreated = (id: number): HistoryEvent => makeEvent(EventType.TimerCreated, T0, { EventId: id, FireAt: new Date(T0).toISOString() });
const timerFired = (id: number): HistoryEvent => makeEvent(EventType.TimerFired, T0, { TimerId: id });
const activity = (name: string, input?: unknown): Action => ({ actionType: ActionType.CallActivity, functionName: name, input });

describe('replay shim', () => {
  it('schedules the first activity of a new orchestration as sequence number 0', () => {
    const result = replayActions(started(), [activity('a', '"x"')], options());
    expect(result.decisions).toEqual([{ kind: 'activity', id: 0, name: 'a', input: '"x"' }]);
    expect(result.nonDeterminism).toBeUndefined();
  });

  it('yields the next action only after the previous one completed', () => {
    const history = [...started(), scheduled(0, 'a'), makeEvent(EventType.OrchestratorStarted, T0 + 1), completed(0, 1)];
    const result = replayActions(history, [activity('a'), activity('b')], options());
    expect(result.decisions.map((d) => [d.kind, d.id])).toEqual([['activity', 1]]);
  });

  it('numbers the children of Task.all in order and schedules only new ones', () => {
    const all: Action = { actionType: ActionType.WhenAll, compoundActions: [activity('a'), activity('b'), activity('c')] };
    const first = replayActions(started(), [all], options());
    expect(first.decisions.map((d) => d.id)).toEqual([0, 1, 2]);
    const history = [...started(), scheduled(0, 'a'), scheduled(1, 'b'), scheduled(2, 'c'), completed(1, 'b')];
    expect(replayActions(history, [all], options()).decisions).toEqual([]);
    const done = [...history, completed(0, 'a'), completed(2, 'c')];
    expect(replayActions(done, [all, activity('d')], options()).decisions.map((d) => d.id)).toEqual([3]);
  });

  it('inserts a retry timer after each failed attempt, including the last', () => {
    const retry: Action = {
      actionType: ActionType.CallActivityWithRetry,
      functionName: 'flaky',
      retryOptions: { firstRetryIntervalInMilliseconds: 1000, maxNumberOfAttempts: 2, backoffCoefficient: 2 },
    };
    let history = [...started(), scheduled(0, 'flaky'), failed(0)];
    let result = replayActions(history, [retry], options());
    expect(result.decisions).toEqual([{ kind: 'timer', id: 1, fireAt: new Date(T0 + 1000).toISOString(), purpose: 'retry' }]);
    history = [...history, timerCreated(1), timerFired(1)];
    result = replayActions(history, [retry], options());
    expect(result.decisions).toEqual([{ kind: 'activity', id: 2, name: 'flaky', input: undefined, attempt: 2 }]);
    history = [...history, scheduled(2, 'flaky'), failed(2)];
    result = replayActions(history, [retry], options());
    // No attempts left: the timer fires at once, then the task fails.
    expect(result.decisions).toEqual([{ kind: 'timer', id: 3, fireAt: new Date(T0).toISOString(), purpose: 'retry' }]);
    history = [...history, timerCreated(3), timerFired(3)];
    result = replayActions(history, [retry, activity('after')], options());
    expect(result.decisions.map((d) => [d.kind, d.id])).toEqual([['activity', 4]]);
  });

  it('detects non-determinism when history disagrees with the orchestrator', () => {
    const history = [...started(), scheduled(0, 'a'), completed(0, 1)];
    const result = replayActions(history, [activity('b')], options());
    expect(result.nonDeterminism).toMatch(/history has TaskScheduled "a" with sequence number 0.*calls activity "b"/);
  });

  it('re-keys an entity call to its request id and completes it from the response event', () => {
    const call: Action = { actionType: ActionType.CallEntity, instanceId: '@counter@k', operation: 'get' };
    const first = replayActions(started(), [call], options());
    const decision = first.decisions[0];
    expect(decision).toMatchObject({ kind: 'entityMessage', id: 0, target: '@counter@k', purpose: 'call' });
    const requestId = decision?.kind === 'entityMessage' ? decision.message.id : '';
    const history = [
      ...started(),
      makeEvent(EventType.EventSent, T0, { EventId: 0, InstanceId: '@counter@k', Name: 'op', Input: JSON.stringify({ id: requestId }) }),
      makeEvent(EventType.EventRaised, T0, { Name: requestId, Input: JSON.stringify({ result: '5' }) }),
    ];
    expect(replayActions(history, [call, activity('next')], options()).decisions.map((d) => d.id)).toEqual([1]);
  });

  it('delivers an external event raised before the orchestrator waits for it', () => {
    const wait: Action = { actionType: ActionType.WaitForExternalEvent, externalEventName: 'go' };
    const history = [...started(), makeEvent(EventType.EventRaised, T0, { Name: 'go', Input: '1' })];
    expect(replayActions(history, [activity('a')], options()).decisions.map((d) => d.id)).toEqual([0]);
    const later = [...history, scheduled(0, 'a'), completed(0, null)];
    expect(replayActions(later, [activity('a'), wait, activity('b')], options()).decisions.map((d) => d.id)).toEqual([1]);
  });

  it('schedules actions the walk did not reach after everything else (the library yielded them last)', () => {
    const all: Action = { actionType: ActionType.WhenAll, compoundActions: [activity('a'), activity('b')] };
    const history = [...started(), scheduled(0, 'a'), scheduled(1, 'b'), completed(0, 'a')];
    expect(replayActions(history, [all, activity('c')], options()).decisions.map((d) => d.id)).toEqual([2]);
  });

  it('reports recorded timers the orchestrator canceled', () => {
    const timer: Action = { actionType: ActionType.CreateTimer, fireAt: new Date(T0 + 60_000).toISOString(), isCanceled: true };
    const wait: Action = { actionType: ActionType.WaitForExternalEvent, externalEventName: 'go' };
    const any: Action = { actionType: ActionType.WhenAny, compoundActions: [wait, timer] };
    const history = [...started(), timerCreated(0), makeEvent(EventType.EventRaised, T0, { Name: 'go' })];
    const result = replayActions(history, [any], options());
    expect(result.canceledTimerIds).toEqual([0]);
    expect(result.decisions).toEqual([]);
  });

  it('counts one sequence number per signal and per released entity', () => {
    const signal: Action = { actionType: ActionType.SignalEntity, instanceId: '@a@1', operation: 'add' };
    const result = replayActions(started(), [signal, signal, activity('x')], options());
    expect(result.decisions.map((d) => [d.kind, d.id])).toEqual([
      ['entityMessage', 0],
      ['entityMessage', 1],
      ['activity', 2],
    ]);
  });

  it('computes retry delays with backoff and a cap', () => {
    const o = { firstRetryIntervalInMilliseconds: 100, maxNumberOfAttempts: 9, backoffCoefficient: 3, maxRetryIntervalInMilliseconds: 1000 };
    expect([1, 2, 3, 4].map((n) => retryDelay(o, n))).toEqual([100, 300, 900, 1000]);
  });
});

describe('replay shim: tasks yielded again', () => {
  it('keeps the numbers of running tasks passed to a new Task.any (sliding window)', () => {
    const a = activity('work', { i: 0 });
    const b = activity('work', { i: 1 });
    const c = activity('work', { i: 2 });
    const first: Action = { actionType: ActionType.WhenAny, compoundActions: [a, b] };
    const second: Action = { actionType: ActionType.WhenAny, compoundActions: [b, c] };
    const history = [...started(), scheduled(0, 'work'), scheduled(1, 'work'), completed(0, 0)];
    const result = replayActions(history, [first, second], options());
    // b keeps number 1; only c is new.
    expect(result.decisions.map((d) => [d.kind, d.id])).toEqual([['activity', 2]]);
    expect(result.reyieldedTasks).toBe(true);
    expect(result.nonDeterminism).toBeUndefined();
  });

  it('treats an equal call after a finished one as new when nothing running is re-used', () => {
    const poll = activity('poll', 'x');
    const round: Action = { actionType: ActionType.WhenAll, compoundActions: [poll] };
    const history = [...started(), scheduled(0, 'poll'), completed(0, 1)];
    const result = replayActions(history, [round, round], options());
    expect(result.decisions.map((d) => [d.kind, d.id])).toEqual([['activity', 1]]);
    expect(result.reyieldedTasks).toBe(false);
  });

  it('gives each new Task.any its own event waiter, and the event to the newest (not a re-yield)', () => {
    const cancel: Action = { actionType: ActionType.WaitForExternalEvent, externalEventName: 'cancel' };
    const step = (i: number): Action => ({ actionType: ActionType.WhenAny, compoundActions: [activity('work', { i }), cancel] });
    // The first activity finished; the second is running when "cancel" is raised.
    const history = [...started(), scheduled(0, 'work'), completed(0, 'done'), scheduled(1, 'work'), makeEvent(EventType.EventRaised, T0, { Name: 'cancel' })];
    const result = replayActions(history, [step(0), step(1), activity('after')], options());
    expect(result.reyieldedTasks).toBe(false);
    // The second Task.any was won by the event, so the orchestrator went on to "after".
    expect(result.decisions.map((d) => [d.kind, d.id])).toEqual([['activity', 2]]);
  });
});
