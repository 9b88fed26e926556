import type { FailureDetails } from './history.js';
import type { RpcTypedData } from '../worker/core-types.js';

/** What an orchestrator function returns (or embeds in its error), per the durable-functions library. */
export interface OrchestratorState {
  isDone: boolean;
  actions: unknown;
  output: unknown;
  error: string | undefined;
  customStatus: unknown;
  schemaVersion: number;
  failureDetails: FailureDetails | undefined;
}

const OUT_OF_PROC_LABEL = '$OutOfProcData$:';

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function toState(value: unknown, fallbackSchema: number): OrchestratorState | undefined {
  if (!isRecord(value) || typeof value['isDone'] !== 'boolean') return undefined;
  const fd = value['failureDetails'];
  return {
    isDone: value['isDone'],
    actions: value['actions'],
    output: value['output'],
    error: typeof value['error'] === 'string' ? value['error'] : undefined,
    customStatus: value['customStatus'],
    schemaVersion: typeof value['schemaVersion'] === 'number' ? value['schemaVersion'] : fallbackSchema,
    failureDetails: isRecord(fd) && typeof fd['ErrorType'] === 'string' ? (fd as unknown as FailureDetails) : undefined,
  };
}

/** Reads the OrchestratorState from a successful invocation's return value. */
export function stateFromReturnValue(data: RpcTypedData | null | undefined, fallbackSchema: number): OrchestratorState | undefined {
  if (!data) return undefined;
  const text = data.json ?? data.string;
  if (typeof text !== 'string') return undefined;
  try {
    return toState(JSON.parse(text), fallbackSchema);
  } catch {
    return undefined;
  }
}

/**
 * A failing orchestrator throws an error whose message carries the state after a marker, so the
 * actions it scheduled before throwing are not lost. Returns the state and the readable message.
 */
export function stateFromError(error: Error, fallbackSchema: number): { state: OrchestratorState | undefined; message: string } {
  const at = error.message.indexOf(OUT_OF_PROC_LABEL);
  if (at < 0) return { state: undefined, message: error.message };
  const before = error.message.substring(0, at).trim();
  let state: OrchestratorState | undefined;
  try {
    state = toState(JSON.parse(error.message.substring(at + OUT_OF_PROC_LABEL.length)), fallbackSchema);
  } catch {
    state = undefined;
  }
  const message = state?.error ?? (before === 'false' || before === 'true' ? 'Orchestrator failed' : before);
  return { state, message };
}
