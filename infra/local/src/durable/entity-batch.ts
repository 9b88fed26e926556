import type { RpcTypedData } from '../worker/core-types.js';
import { EventType, makeEvent } from './history.js';
import type { EntityRequestMessage } from './replay-shim.js';
import type { InboxMessage, InstanceRecord, NewMessage } from './store/task-hub-store.js';

/** One operation in the batch an entity function receives. */
export interface EntityOperation {
  name: string;
  input: string | null;
  isSignal: boolean;
}

export interface EntityPayload {
  self: { name: string; key: string };
  exists: boolean;
  state: string | null;
  batch: EntityOperation[];
}

export interface EntityBatchInput {
  self: { name: string; key: string };
  schedulerId: string;
  record: InstanceRecord;
  inbox: InboxMessage[];
  /** Runs the entity function; undefined when no entity function has this name. */
  invoke: ((payload: EntityPayload) => Promise<RpcTypedData | null>) | undefined;
  now: number;
  newGuid: () => string;
}

export interface EntityBatchResult {
  consumed: number[];
  exists: boolean;
  state: string | null;
  lockedBy: string | null;
  messages: NewMessage[];
  /** A lock was released after messages from others were passed over: run the entity again. */
  rerun: boolean;
}

interface OperationResultJson {
  isError?: boolean;
  result?: string;
}

interface EntityStateJson {
  entityExists?: boolean;
  entityState?: string;
  results?: OperationResultJson[];
  signals?: { target?: { name?: string; key?: string }; name?: string; input?: string }[];
}

function parseRequest(input: string | undefined): EntityRequestMessage | undefined {
  if (!input) return undefined;
  try {
    const value = JSON.parse(input) as EntityRequestMessage;
    return typeof value === 'object' && value !== null && typeof value.id === 'string' ? value : undefined;
  } catch {
    return undefined;
  }
}

function parseState(data: RpcTypedData | null): EntityStateJson | undefined {
  const text = data?.json ?? data?.string;
  if (typeof text !== 'string') return undefined;
  try {
    return JSON.parse(text) as EntityStateJson;
  } catch {
    return undefined;
  }
}

/**
 * Processes an entity's inbox: operations run as one batch through the entity function, lock
 * requests and releases are handled here, responses go back to callers. While an orchestration
 * holds the entity's lock, messages from anyone else stay queued.
 */
export async function runEntityBatch(input: EntityBatchInput): Promise<EntityBatchResult> {
  let exists = input.record.entityExists;
  let state = input.record.entityState;
  let lockedBy = input.record.lockedBy;
  const consumed: number[] = [];
  const messages: NewMessage[] = [];
  let skipped = false;
  let released = false;
  let batch: { seq: number; request: EntityRequestMessage }[] = [];
  const now = input.now;

  const respond = (request: EntityRequestMessage, result: string | undefined, isError: boolean): void => {
    if (!request.parent) return;
    const response: { result?: string; exceptionType?: string } = {};
    if (result !== undefined) response.result = result;
    if (isError) response.exceptionType = 'Error';
    messages.push({
      instanceId: request.parent,
      executionId: request.parentExecution ?? null,
      visibleAt: now,
      event: makeEvent(EventType.EventRaised, now, { Name: request.id, Input: JSON.stringify(response) }),
    });
  };

  const flush = async (): Promise<void> => {
    if (batch.length === 0) return;
    const current = batch;
    batch = [];
    for (const item of current) consumed.push(item.seq);
    const payload: EntityPayload = {
      self: input.self,
      exists,
      state,
      batch: current.map(({ request }) => ({
        name: request.op ?? '',
        input: request.input ?? null,
        isSignal: request.signal === true,
      })),
    };
    let parsed: EntityStateJson | undefined;
    let failure: string | undefined;
    if (!input.invoke) {
      failure = `The function '${input.self.name}' doesn't exist, is disabled, or is not an entity function.`;
    } else {
      try {
        parsed = parseState(await input.invoke(payload));
        if (!parsed) failure = `Entity function '${input.self.name}' returned no entity state.`;
      } catch (err) {
        failure = `Entity function '${input.self.name}' failed: ${err instanceof Error ? err.message : String(err)}`;
      }
    }
    if (!parsed) {
      for (const { request } of current) {
        if (!request.signal) respond(request, JSON.stringify(failure), true);
      }
      return;
    }
    exists = parsed.entityExists === true;
    state = exists ? (parsed.entityState ?? null) : null;
    current.forEach(({ request }, i) => {
      if (request.signal) return;
      const r = parsed.results?.[i];
      respond(request, r?.result, r?.isError === true);
    });
    for (const signal of parsed.signals ?? []) {
      const name = signal.target?.name;
      const key = signal.target?.key;
      if (!name || key === undefined || !signal.name) continue;
      const message: EntityRequestMessage = {
        id: input.newGuid(),
        op: signal.name,
        signal: true,
        parent: input.schedulerId,
        timestamp: new Date(now).toISOString(),
      };
      if (signal.input) message.input = signal.input;
      messages.push({
        instanceId: `@${name.toLowerCase()}@${key}`,
        executionId: null,
        visibleAt: now,
        event: makeEvent(EventType.EventRaised, now, { Name: 'op', Input: JSON.stringify(message) }),
      });
    }
  };

  for (const msg of input.inbox) {
    const event = msg.event;
    const request = event.EventType === EventType.EventRaised ? parseRequest(event.Input) : undefined;
    if (!request) {
      consumed.push(msg.seq);
      continue;
    }
    if (event.Name === 'release') {
      await flush();
      consumed.push(msg.seq);
      if (lockedBy !== null && lockedBy === request.parent) {
        lockedBy = null;
        released = true;
      }
      continue;
    }
    if (lockedBy !== null && request.parent !== lockedBy) {
      skipped = true;
      continue;
    }
    if (request.lockset) {
      await flush();
      consumed.push(msg.seq);
      lockedBy = request.parent ?? null;
      const pos = (request.pos ?? 0) + 1;
      const next = request.lockset[pos];
      if (next !== undefined) {
        messages.push({
          instanceId: next,
          executionId: null,
          visibleAt: now,
          event: makeEvent(EventType.EventRaised, now, { Name: 'op', Input: JSON.stringify({ ...request, pos }) }),
        });
      } else {
        respond(request, JSON.stringify('Lock Acquisition Completed'), false);
      }
      continue;
    }
    batch.push({ seq: msg.seq, request });
  }
  await flush();
  return { consumed, exists, state, lockedBy, messages, rerun: skipped && released };
}
