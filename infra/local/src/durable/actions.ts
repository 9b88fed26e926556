/**
 * The actions the durable-functions library returns in its OrchestratorState. Shapes follow the
 * library's action classes after JSON serialisation; every field is checked before use because
 * they arrive as untyped JSON.
 */

export const ActionType = {
  CallActivity: 0,
  CallActivityWithRetry: 1,
  CallSubOrchestrator: 2,
  CallSubOrchestratorWithRetry: 3,
  ContinueAsNew: 4,
  CreateTimer: 5,
  WaitForExternalEvent: 6,
  CallEntity: 7,
  CallHttp: 8,
  SignalEntity: 9,
  WhenAny: 11,
  WhenAll: 12,
  LockEntities: 13,
  ReleaseEntities: 14,
} as const;

export interface RetryOptionsJson {
  firstRetryIntervalInMilliseconds: number;
  maxNumberOfAttempts: number;
  backoffCoefficient?: number;
  maxRetryIntervalInMilliseconds?: number;
  retryTimeoutInMilliseconds?: number;
}

export interface DurableHttpRequestJson {
  method: string;
  uri: string;
  content?: string;
  headers?: Record<string, string>;
  tokenSource?: unknown;
  asynchronousPatternEnabled?: boolean;
}

export type Action =
  | { actionType: 0; functionName: string; input?: unknown }
  | { actionType: 1; functionName: string; input?: unknown; retryOptions: RetryOptionsJson }
  | { actionType: 2; functionName: string; instanceId?: string; input?: unknown; version?: string }
  | {
      actionType: 3;
      functionName: string;
      instanceId?: string;
      input?: unknown;
      version?: string;
      retryOptions: RetryOptionsJson;
    }
  | { actionType: 4; input?: unknown }
  | { actionType: 5; fireAt: string; isCanceled?: boolean }
  | { actionType: 6; externalEventName: string; reason?: string }
  | { actionType: 7; instanceId: string; operation: string; input?: unknown }
  | { actionType: 8; httpRequest: DurableHttpRequestJson }
  | { actionType: 9; instanceId: string; operation: string; input?: unknown }
  | { actionType: 11; compoundActions: Action[] }
  | { actionType: 12; compoundActions: Action[] }
  | { actionType: 13; lockRequestId: string; lockSet: { name: string; key: string }[] }
  | { actionType: 14 };

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function str(o: Record<string, unknown>, key: string): string {
  const v = o[key];
  if (typeof v !== 'string' || v.length === 0) throw new Error(`action field "${key}" must be a non-empty string`);
  return v;
}

function optStr(o: Record<string, unknown>, key: string): string | undefined {
  const v = o[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') throw new Error(`action field "${key}" must be a string`);
  return v;
}

function retry(o: Record<string, unknown>): RetryOptionsJson {
  const r = o['retryOptions'];
  if (!isRecord(r)) throw new Error('action field "retryOptions" is missing');
  const first = Number(r['firstRetryIntervalInMilliseconds']);
  const max = Number(r['maxNumberOfAttempts']);
  if (!Number.isFinite(first) || !Number.isFinite(max)) throw new Error('retryOptions is malformed');
  const result: RetryOptionsJson = { firstRetryIntervalInMilliseconds: first, maxNumberOfAttempts: max };
  for (const key of ['backoffCoefficient', 'maxRetryIntervalInMilliseconds', 'retryTimeoutInMilliseconds'] as const) {
    const v = r[key];
    if (typeof v === 'number' && Number.isFinite(v)) result[key] = v;
  }
  return result;
}

/** Validates one action (recursively for compound actions). Throws with a message naming the problem. */
export function parseAction(raw: unknown): Action {
  if (!isRecord(raw)) throw new Error('an action must be an object');
  const type = raw['actionType'];
  switch (type) {
    case ActionType.CallActivity:
      return { actionType: 0, functionName: str(raw, 'functionName'), input: raw['input'] };
    case ActionType.CallActivityWithRetry:
      return { actionType: 1, functionName: str(raw, 'functionName'), input: raw['input'], retryOptions: retry(raw) };
    case ActionType.CallSubOrchestrator:
    case ActionType.CallSubOrchestratorWithRetry: {
      const base = {
        functionName: str(raw, 'functionName'),
        input: raw['input'],
        ...(optStr(raw, 'instanceId') === undefined ? {} : { instanceId: optStr(raw, 'instanceId') as string }),
        ...(optStr(raw, 'version') === undefined ? {} : { version: optStr(raw, 'version') as string }),
      };
      return type === ActionType.CallSubOrchestrator
        ? { actionType: 2, ...base }
        : { actionType: 3, ...base, retryOptions: retry(raw) };
    }
    case ActionType.ContinueAsNew:
      return { actionType: 4, input: raw['input'] };
    case ActionType.CreateTimer: {
      const fireAt = raw['fireAt'];
      if (typeof fireAt !== 'string' || Number.isNaN(Date.parse(fireAt))) throw new Error('CreateTimer needs fireAt');
      return { actionType: 5, fireAt, isCanceled: raw['isCanceled'] === true };
    }
    case ActionType.WaitForExternalEvent:
      return { actionType: 6, externalEventName: str(raw, 'externalEventName') };
    case ActionType.CallEntity:
    case ActionType.SignalEntity:
      return {
        actionType: type,
        instanceId: str(raw, 'instanceId'),
        operation: str(raw, 'operation'),
        input: raw['input'],
      };
    case ActionType.CallHttp: {
      const req = raw['httpRequest'];
      if (!isRecord(req)) throw new Error('CallHttp needs httpRequest');
      const headers = isRecord(req['headers']) ? (req['headers'] as Record<string, string>) : undefined;
      const content = optStr(req, 'content');
      return {
        actionType: 8,
        httpRequest: {
          method: str(req, 'method'),
          uri: str(req, 'uri'),
          ...(content === undefined ? {} : { content }),
          ...(headers === undefined ? {} : { headers }),
          tokenSource: req['tokenSource'],
          asynchronousPatternEnabled: req['asynchronousPatternEnabled'] !== false,
        },
      };
    }
    case ActionType.WhenAny:
    case ActionType.WhenAll: {
      const children = raw['compoundActions'];
      if (!Array.isArray(children) || children.length === 0) throw new Error('compound action needs children');
      return { actionType: type, compoundActions: children.map(parseAction) };
    }
    case ActionType.LockEntities: {
      const set = raw['lockSet'];
      if (!Array.isArray(set)) throw new Error('LockEntities needs lockSet');
      return {
        actionType: 13,
        lockRequestId: str(raw, 'lockRequestId'),
        lockSet: set.map((e) => {
          if (!isRecord(e)) throw new Error('lockSet entries must be entity ids');
          return { name: str(e, 'name'), key: str(e, 'key') };
        }),
      };
    }
    case ActionType.ReleaseEntities:
      return { actionType: 14 };
    default:
      throw new Error(`unknown actionType ${String(type)}`);
  }
}

/**
 * Normalises the `actions` of an OrchestratorState to one top-level list in yield order.
 * Schema V1 sends an array of arrays (one inner array per yield, compound tasks flattened);
 * V2 and later send a single array whose entries may be WhenAll/WhenAny compounds.
 */
export function topLevelActions(actions: unknown, schemaVersion: number): Action[] {
  if (!Array.isArray(actions)) return [];
  if (schemaVersion === 0) {
    const result: Action[] = [];
    for (const group of actions) {
      if (!Array.isArray(group) || group.length === 0) continue;
      const parsed = group.map(parseAction);
      const only = parsed[0];
      // V1 loses whether a group was all() or any(); all() is the common fan-out case.
      result.push(parsed.length === 1 && only ? only : { actionType: 12, compoundActions: parsed });
    }
    return result;
  }
  const items = actions as unknown[];
  const first = items[0];
  const list: unknown[] = items.length === 1 && Array.isArray(first) ? (first as unknown[]) : items;
  return list.map(parseAction);
}
