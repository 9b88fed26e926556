import type { Clock } from '../clock.js';
import { FnHostError, httpStatusFor } from '../errors.js';
import { type HostRequest, type HostResponse, empty, header, json } from '../http/types.js';
import type { DurableEngine } from './engine.js';
import { EventType, type HistoryEvent, type RuntimeStatus, eventTypeName, isTerminal, parseJsonText } from './history.js';
import type { InstanceRecord, TaskHubStore } from './store/task-hub-store.js';

/**
 * The Durable Functions HTTP API (`/runtime/webhooks/durabletask/...`), with the paths, status
 * codes and bodies of the Durable extension. The same handler serves the keyless local RPC
 * endpoint that `DurableClient` calls through `rpcBaseUrl`.
 */

const STATUSES: readonly RuntimeStatus[] = [
  'Pending',
  'Running',
  'Completed',
  'ContinuedAsNew',
  'Failed',
  'Canceled',
  'Terminated',
  'Suspended',
];

export interface DurableApiOptions {
  engine: DurableEngine;
  store: TaskHubStore;
  clock: Clock;
  hubName: string;
  /** Public base, e.g. http://localhost:7071/runtime/webhooks/durabletask (no trailing slash). */
  publicBaseUrl: () => string;
  systemKey: string;
}

function seconds(ms: number): string {
  return `${new Date(ms).toISOString().substring(0, 19)}Z`;
}

function boolParam(query: URLSearchParams, name: string, fallback: boolean): boolean {
  for (const [k, v] of query) {
    if (k.toLowerCase() === name.toLowerCase()) {
      if (/^true$/i.test(v)) return true;
      if (/^false$/i.test(v)) return false;
    }
  }
  return fallback;
}

function param(query: URLSearchParams, name: string): string | undefined {
  for (const [k, v] of query) if (k.toLowerCase() === name.toLowerCase() && v !== '') return v;
  return undefined;
}

function dateParam(query: URLSearchParams, name: string): number | undefined {
  const v = param(query, name);
  if (v === undefined) return undefined;
  const t = Date.parse(v);
  if (Number.isNaN(t)) throw new FnHostError('ERR_BAD_REQUEST', `Query parameter '${name}' is not a date: "${v}".`);
  return t;
}

function statusesParam(query: URLSearchParams): RuntimeStatus[] | undefined {
  const values: RuntimeStatus[] = [];
  for (const [k, v] of query) {
    if (k.toLowerCase() !== 'runtimestatus') continue;
    for (const s of v.split(',')) {
      const match = STATUSES.find((x) => x === s.trim());
      if (match) values.push(match);
    }
  }
  return values.length > 0 ? values : undefined;
}

/** The stored JSON text as a JSON token; text that is not JSON comes back as a string. */
function token(text: string | null): unknown {
  if (text === null) return null;
  if (text.trim() === '') return '';
  return parseJsonText(text);
}

/** Shapes history like the extension's status API: completions carry their scheduling info. */
export function shapeHistory(events: HistoryEvent[], showInput: boolean, showOutput: boolean): Record<string, unknown>[] {
  const scheduled = new Map<number, HistoryEvent>();
  for (const e of events) {
    if (
      (e.EventType === EventType.TaskScheduled || e.EventType === EventType.SubOrchestrationInstanceCreated) &&
      e.EventId >= 0
    ) {
      scheduled.set(e.EventId, e);
    }
  }
  const shaped: Record<string, unknown>[] = [];
  for (const e of events) {
    const type = e.EventType;
    if (
      type === EventType.TaskScheduled ||
      type === EventType.SubOrchestrationInstanceCreated ||
      type === EventType.OrchestratorStarted ||
      type === EventType.OrchestratorCompleted
    ) {
      continue;
    }
    const out: Record<string, unknown> = { EventType: eventTypeName(type), Timestamp: e.Timestamp };
    switch (type) {
      case EventType.ExecutionStarted:
        out['FunctionName'] = e.Name;
        if (showInput) out['Input'] = e.Input ?? null;
        break;
      case EventType.TaskCompleted:
      case EventType.TaskFailed:
      case EventType.SubOrchestrationInstanceCompleted:
      case EventType.SubOrchestrationInstanceFailed: {
        const origin = e.TaskScheduledId === undefined ? undefined : scheduled.get(e.TaskScheduledId);
        if (origin) {
          out['FunctionName'] = origin.Name;
          out['ScheduledTime'] = origin.Timestamp;
          if (origin.InstanceId) out['InstanceId'] = origin.InstanceId;
          if (showInput) out['Input'] = origin.Input ?? null;
        }
        if (type === EventType.TaskFailed || type === EventType.SubOrchestrationInstanceFailed) {
          out['Reason'] = e.Reason ?? null;
          out['Details'] = e.Details ?? null;
          if (e.FailureDetails) out['FailureDetails'] = e.FailureDetails;
        } else if (showOutput) {
          out['Result'] = token(e.Result ?? null);
        }
        break;
      }
      case EventType.ExecutionCompleted:
        out['OrchestrationStatus'] = STATUS_NAMES[e.OrchestrationStatus ?? -1] ?? 'Unknown';
        if (showOutput) out['Result'] = token(e.Result ?? null);
        if (e.FailureDetails) out['FailureDetails'] = e.FailureDetails;
        break;
      case EventType.TimerCreated:
      case EventType.TimerFired:
        out['FireAt'] = e.FireAt;
        break;
      case EventType.EventRaised:
        out['Name'] = e.Name;
        if (showInput) out['Input'] = e.Input ?? null;
        break;
      case EventType.EventSent:
        out['InstanceId'] = e.InstanceId;
        out['Name'] = e.Name;
        out['Input'] = e.Input ?? null;
        break;
      case EventType.ExecutionTerminated:
        out['Input'] = e.Input ?? null;
        break;
      case EventType.ExecutionSuspended:
      case EventType.ExecutionResumed:
        out['Reason'] = e.Reason ?? null;
        break;
      default:
        break;
    }
    shaped.push(out);
  }
  return shaped;
}

const STATUS_NAMES: Record<number, string> = {
  0: 'Running',
  1: 'Completed',
  2: 'ContinuedAsNew',
  3: 'Failed',
  4: 'Canceled',
  5: 'Terminated',
  6: 'Pending',
  7: 'Suspended',
};

export class DurableHttpApi {
  readonly #o: DurableApiOptions;

  constructor(options: DurableApiOptions) {
    this.#o = options;
  }

  /** Builds the management URLs the durable client binding and createCheckStatusResponse use. */
  managementUrls(instanceId: string): Record<string, string> {
    const base = this.#o.publicBaseUrl();
    const q = `taskHub=${encodeURIComponent(this.#o.hubName)}&connection=Storage&code=${encodeURIComponent(this.#o.systemKey)}`;
    const prefix = `${base}/instances/${encodeURIComponent(instanceId)}`;
    return {
      id: instanceId,
      statusQueryGetUri: `${prefix}?${q}`,
      sendEventPostUri: `${prefix}/raiseEvent/{eventName}?${q}`,
      terminatePostUri: `${prefix}/terminate?reason={text}&${q}`,
      rewindPostUri: `${prefix}/rewind?reason={text}&${q}`,
      purgeHistoryDeleteUri: `${prefix}?${q}`,
      restartPostUri: `${prefix}/restart?${q}`,
      suspendPostUri: `${prefix}/suspend?reason={text}&${q}`,
      resumePostUri: `${prefix}/resume?reason={text}&${q}`,
    };
  }

  /** `path` is relative to the API base, without leading slash. */
  async handle(request: HostRequest, path: string): Promise<HostResponse> {
    try {
      return await this.#route(request, path);
    } catch (err) {
      const status = httpStatusFor(err);
      const message = err instanceof Error ? err.message : String(err);
      if (status === 404 || status === 410) return empty(status);
      return json(status, { Message: message });
    }
  }

  async #route(request: HostRequest, path: string): Promise<HostResponse> {
    const parts = path
      .replace(/^\/+|\/+$/g, '')
      .split('/')
      .filter((p) => p !== '')
      .map((p) => decodeURIComponent(p));
    const [area, a, b, c] = parts;
    const method = request.method.toUpperCase();
    switch (area?.toLowerCase()) {
      case 'orchestrators':
        if (method !== 'POST' || a === undefined) return empty(404);
        return this.#start(request, a, b);
      case 'instances':
        if (a === undefined) {
          if (method === 'GET') return this.#list(request);
          if (method === 'DELETE') return this.#purgeBy(request);
          return empty(404);
        }
        if (b === undefined) {
          if (method === 'GET') return this.#status(request, a);
          if (method === 'DELETE') return this.#purge(a);
          return empty(404);
        }
        if (method !== 'POST') return empty(404);
        return this.#operation(request, a, b, c);
      case 'entities':
        return this.#entities(request, a, b);
      default:
        return empty(404);
    }
  }

  #bodyJson(request: HostRequest): string | null {
    if (request.body.length === 0) return null;
    const text = request.body.toString('utf8');
    try {
      JSON.parse(text);
    } catch {
      throw new FnHostError('ERR_BAD_REQUEST', 'Invalid JSON content');
    }
    return text;
  }

  async #start(request: HostRequest, functionName: string, instanceId: string | undefined): Promise<HostResponse> {
    const input = this.#bodyJson(request);
    const version = param(request.url.searchParams, 'version');
    const id = this.#o.engine.startOrchestration({
      name: functionName,
      input,
      ...(instanceId === undefined ? {} : { instanceId }),
      ...(version === undefined ? {} : { version }),
    });
    const timeout = param(request.url.searchParams, 'timeout');
    if (timeout !== undefined) {
      const waited = await this.#waitFor(id, Number(timeout) * 1000, Number(param(request.url.searchParams, 'pollingInterval') ?? 1) * 1000);
      if (waited) return waited;
    }
    return this.#checkStatus(id);
  }

  #checkStatus(instanceId: string): HostResponse {
    const urls = this.#managementUrlsForResponse(instanceId);
    return json(202, urls, { location: urls['statusQueryGetUri'] ?? '', 'retry-after': '10' });
  }

  #managementUrlsForResponse(instanceId: string): Record<string, string> {
    const { rewindPostUri: _rewind, ...rest } = this.managementUrls(instanceId);
    return rest;
  }

  async #waitFor(instanceId: string, timeoutMs: number, intervalMs: number): Promise<HostResponse | undefined> {
    if (!Number.isFinite(timeoutMs) || !Number.isFinite(intervalMs) || intervalMs > timeoutMs) {
      throw new FnHostError('ERR_BAD_REQUEST', 'pollingInterval must be a number not larger than timeout.');
    }
    const deadline = this.#o.clock.now() + timeoutMs;
    for (;;) {
      const record = this.#o.store.getInstance(instanceId);
      if (record && record.runtimeStatus === 'Completed') {
        return { status: 200, headers: { 'content-type': 'application/json; charset=utf-8' }, body: record.output ?? 'null' };
      }
      if (record && isTerminal(record.runtimeStatus)) return json(200, this.#payload(record, { showInput: true }));
      if (this.#o.clock.now() >= deadline) return undefined;
      await new Promise<void>((resolve) => this.#o.clock.setTimeout(resolve, Math.max(10, intervalMs)));
    }
  }

  #payload(record: InstanceRecord, options: { showInput: boolean; history?: Record<string, unknown>[] }): Record<string, unknown> {
    const payload: Record<string, unknown> = {
      name: record.name,
      instanceId: record.instanceId,
      runtimeStatus: record.runtimeStatus,
      input: options.showInput ? token(record.input) : null,
      customStatus: token(record.customStatus),
      output: token(record.output),
      createdTime: seconds(record.createdTime),
      lastUpdatedTime: seconds(record.lastUpdatedTime),
    };
    if (options.history) payload['historyEvents'] = options.history;
    return payload;
  }

  #status(request: HostRequest, instanceId: string): HostResponse {
    const record = this.#o.store.getInstance(instanceId);
    if (!record || record.isEntity) return empty(404);
    const q = request.url.searchParams;
    const showInput = boolParam(q, 'showInput', true);
    const showHistory = boolParam(q, 'showHistory', false);
    const history =
      showHistory && record.runtimeStatus !== 'Pending'
        ? shapeHistory(this.#o.store.getHistory(instanceId), showInput, boolParam(q, 'showHistoryOutput', false))
        : undefined;
    const body = this.#payload(record, { showInput, ...(history ? { history } : {}) });
    switch (record.runtimeStatus) {
      case 'Running':
      case 'Pending':
      case 'ContinuedAsNew':
      case 'Suspended':
        return json(202, body, { location: request.url.toString(), 'retry-after': '5' });
      case 'Failed':
        return json(boolParam(q, 'returnInternalServerErrorOnFailure', false) ? 500 : 200, body);
      default:
        return json(200, body);
    }
  }

  #list(request: HostRequest): HostResponse {
    const q = request.url.searchParams;
    const topText = param(q, 'top');
    const top = topText === undefined ? 100 : Number(topText);
    if (!Number.isInteger(top) || top <= 0) throw new FnHostError('ERR_BAD_REQUEST', "Query parameter 'top' must be a positive integer.");
    const createdTimeFrom = dateParam(q, 'createdTimeFrom');
    const createdTimeTo = dateParam(q, 'createdTimeTo');
    const runtimeStatus = statusesParam(q);
    const instanceIdPrefix = param(q, 'instanceIdPrefix');
    const continuationToken = header(request.headers, 'x-ms-continuation-token');
    const page = this.#o.store.queryInstances({
      top,
      ...(createdTimeFrom === undefined ? {} : { createdTimeFrom }),
      ...(createdTimeTo === undefined ? {} : { createdTimeTo }),
      ...(runtimeStatus === undefined ? {} : { runtimeStatus }),
      ...(instanceIdPrefix === undefined ? {} : { instanceIdPrefix }),
      ...(continuationToken ? { continuationToken } : {}),
    });
    const showInput = boolParam(q, 'showInput', true);
    return json(
      200,
      page.instances.map((r) => this.#payload(r, { showInput })),
      page.continuationToken ? { 'x-ms-continuation-token': page.continuationToken } : {},
    );
  }

  #purge(instanceId: string): HostResponse {
    const record = this.#o.store.getInstance(instanceId);
    if (!record || record.isEntity) return empty(404);
    const deleted = this.#o.engine.purge(instanceId);
    return deleted > 0 ? json(200, { instancesDeleted: deleted }) : empty(404);
  }

  #purgeBy(request: HostRequest): HostResponse {
    const q = request.url.searchParams;
    const createdTimeFrom = dateParam(q, 'createdTimeFrom');
    if (createdTimeFrom === undefined) {
      return json(400, "Please provide value for 'createdTimeFrom' parameter.");
    }
    const createdTimeTo = dateParam(q, 'createdTimeTo');
    const runtimeStatus = statusesParam(q);
    const deleted = this.#o.engine.purgeBy({
      createdTimeFrom,
      createdTimeTo: createdTimeTo ?? this.#o.clock.now(),
      ...(runtimeStatus === undefined ? {} : { runtimeStatus }),
    });
    return deleted > 0 ? json(200, { instancesDeleted: deleted }) : empty(404);
  }

  #operation(request: HostRequest, instanceId: string, operation: string, eventName: string | undefined): HostResponse {
    const reason = param(request.url.searchParams, 'reason') ?? null;
    const engine = this.#o.engine;
    switch (operation.toLowerCase()) {
      case 'raiseevent': {
        if (!eventName) throw new FnHostError('ERR_BAD_REQUEST', 'An event name is required: instances/{id}/raiseEvent/{eventName}.');
        const record = this.#o.store.getInstance(instanceId);
        if (!record || record.isEntity) return empty(404);
        if (isTerminal(record.runtimeStatus)) return empty(410);
        const type = (header(request.headers, 'content-type') ?? '').split(';')[0]?.trim().toLowerCase();
        if (request.body.length > 0 && type !== 'application/json') {
          return json(400, { Message: 'Only application/json request content is supported' });
        }
        engine.raiseEvent(instanceId, eventName, this.#bodyJson(request));
        return empty(202);
      }
      case 'terminate':
        engine.terminate(instanceId, reason);
        return empty(202);
      case 'suspend':
        engine.suspend(instanceId, reason);
        return empty(202);
      case 'resume':
        engine.resume(instanceId, reason);
        return empty(202);
      case 'rewind': {
        const record = this.#o.store.getInstance(instanceId);
        if (!record || record.isEntity) return empty(404);
        return json(501, {
          Message: 'fnhost does not implement rewind. Restart the instance instead: POST instances/{id}/restart.',
        });
      }
      case 'restart': {
        const record = this.#o.store.getInstance(instanceId);
        if (!record || record.isEntity) {
          throw new FnHostError('ERR_BAD_REQUEST', 'InstanceId does not match a valid orchestration instance.');
        }
        const newId = boolParam(request.url.searchParams, 'restartWithNewInstanceId', true);
        const id = engine.startOrchestration({
          name: record.name,
          input: record.input,
          ...(newId ? {} : { instanceId }),
          ...(record.version === undefined ? {} : { version: record.version }),
        });
        return this.#checkStatus(id);
      }
      default:
        return empty(404);
    }
  }

  #entities(request: HostRequest, name: string | undefined, key: string | undefined): HostResponse {
    const method = request.method.toUpperCase();
    if (!name) {
      if (method !== 'GET') return empty(404);
      return this.#listEntities(request, undefined);
    }
    if (key === undefined) {
      if (method !== 'GET') return empty(404);
      return this.#listEntities(request, name);
    }
    const entityKey = key === '$' ? '' : key;
    if (method === 'GET') {
      const state = this.#o.engine.readEntity(name, entityKey);
      if (!state.exists) return empty(404);
      return { status: 200, headers: { 'content-type': 'application/json; charset=utf-8' }, body: state.state ?? 'null' };
    }
    if (method === 'POST' || method === 'DELETE') {
      const op = method === 'DELETE' ? 'delete' : (param(request.url.searchParams, 'op') ?? '');
      let input: string | null = null;
      if (request.body.length > 0) {
        const type = (header(request.headers, 'content-type') ?? '').split(';')[0]?.trim().toLowerCase();
        if (type === 'application/json') {
          const text = request.body.toString('utf8');
          try {
            JSON.parse(text);
          } catch (err) {
            return json(400, { Message: `Could not parse JSON content: ${(err as Error).message}` });
          }
          input = text;
        } else {
          input = JSON.stringify(request.body.toString('utf8'));
        }
      }
      this.#o.engine.signalEntity(name, entityKey, op, input);
      return empty(202);
    }
    return empty(404);
  }

  #listEntities(request: HostRequest, name: string | undefined): HostResponse {
    const q = request.url.searchParams;
    const fetchState = boolParam(q, 'fetchState', false);
    const prefix = name === undefined ? '@' : `@${name.toLowerCase()}@`;
    const continuationToken = header(request.headers, 'x-ms-continuation-token');
    const page = this.#o.store.queryInstances({
      includeEntities: true,
      instanceIdPrefix: prefix,
      top: Number(param(q, 'top') ?? 100) || 100,
      ...(continuationToken ? { continuationToken } : {}),
    });
    const items = page.instances
      .filter((r) => r.isEntity && r.entityExists)
      .map((r) => {
        const at = r.instanceId.indexOf('@', 1);
        return {
          entityId: { name: r.instanceId.substring(1, at), key: r.instanceId.substring(at + 1) },
          lastOperationTime: new Date(r.lastUpdatedTime).toISOString(),
          state: fetchState ? token(r.entityState) : null,
        };
      });
    return json(200, items, page.continuationToken ? { 'x-ms-continuation-token': page.continuationToken } : {});
  }
}
