import { describe, expect, it } from 'vitest';
import { runEntityBatch, type EntityPayload } from '../../../infra/local/src/durable/entity-batch.js';
import { EventType, makeEvent } from '../../../infra/local/src/durable/history.js';
import type { InboxMessage, InstanceRecord } from '../../../infra/local/src/durable/store/task-hub-store.js';

const record = (over: Partial<InstanceRecord> = {}): InstanceRecord => ({
  instanceId: '@counter@k',
  executionId: '',
  name: 'counter',
  version: undefined,
  runtimeStatus: 'Running',
  input: null,
  output: null,
  customStatus: null,
  createdTime: 0,
  lastUpdatedTime: 0,
  completedTime: null,
  parentInstanceId: null,
  failureDetails: null,
  isEntity: true,
  entityExists: true,
  entityState: '10',
  lockedBy: null,
  ...over,
});

let seq = 0;
function message(name: string, request: Record<string, unknown>): InboxMessage {
  return {
    seq: ++seq,
    instanceId: '@counter@k',
    executionId: null,
    visibleAt: 0,
    event: makeEvent(EventType.EventRaised, 0, { Name: name, Input: JSON.stringify({ timestamp: '', ...request }) }),
  };
}

/** A stand-in for the entity function: adds inputs, returns the state for `get`. */
function counter(payload: EntityPayload): Promise<{ json: string }> {
  let state = Number(payload.state ?? 0);
  const results = payload.batch.map((op) => {
    if (op.name === 'add') state += Number(JSON.parse(op.input ?? '0'));
    return { isError: false, duration: 0, startTime: 0, result: op.name === 'get' ? String(state) : undefined };
  });
  return Promise.resolve({ json: JSON.stringify({ entityExists: true, entityState: String(state), results, signals: [] }) });
}

describe('entity batches', () => {
  it('runs operations as one batch and answers callers', async () => {
    const result = await runEntityBatch({
      self: { name: 'counter', key: 'k' },
      schedulerId: '@counter@k',
      record: record(),
      inbox: [
        message('op', { id: 's1', op: 'add', signal: true, input: '5' }),
        message('op', { id: 'c1', op: 'get', parent: 'orch1', parentExecution: 'x1' }),
      ],
      invoke: counter,
      now: 0,
      newGuid: () => 'g',
    });
    expect(result.state).toBe('15');
    expect(result.consumed).toHaveLength(2);
    expect(result.messages).toHaveLength(1);
    expect(result.messages[0]).toMatchObject({ instanceId: 'orch1', executionId: 'x1' });
    expect(result.messages[0]?.event.Name).toBe('c1');
    expect(JSON.parse(result.messages[0]?.event.Input ?? '{}')).toEqual({ result: '15' });
  });

  it('holds other callers while locked, and grants a lock along the lock set', async () => {
    const locked = await runEntityBatch({
      self: { name: 'counter', key: 'k' },
      schedulerId: '@counter@k',
      record: record({ lockedBy: 'owner' }),
      inbox: [message('op', { id: 'c2', op: 'add', input: '1', parent: 'someone-else' })],
      invoke: counter,
      now: 0,
      newGuid: () => 'g',
    });
    expect(locked.consumed).toEqual([]);
    expect(locked.state).toBe('10');

    const lock = await runEntityBatch({
      self: { name: 'counter', key: 'k' },
      schedulerId: '@counter@k',
      record: record(),
      inbox: [message('op', { id: 'L1', parent: 'owner', lockset: ['@counter@k', '@counter@z'], pos: 0 })],
      invoke: counter,
      now: 0,
      newGuid: () => 'g',
    });
    expect(lock.lockedBy).toBe('owner');
    expect(lock.messages[0]?.instanceId).toBe('@counter@z');
    expect(JSON.parse(lock.messages[0]?.event.Input ?? '{}')).toMatchObject({ id: 'L1', pos: 1 });
  });

  it('answers every call with an error when the entity function is missing', async () => {
    const result = await runEntityBatch({
      self: { name: 'counter', key: 'k' },
      schedulerId: '@counter@k',
      record: record(),
      inbox: [message('op', { id: 'c3', op: 'get', parent: 'orch1' })],
      invoke: undefined,
      now: 0,
      newGuid: () => 'g',
    });
    expect(JSON.parse(result.messages[0]?.event.Input ?? '{}')).toMatchObject({ exceptionType: 'Error' });
    expect(result.state).toBe('10');
  });
});
