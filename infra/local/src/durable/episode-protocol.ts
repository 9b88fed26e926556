/**
 * One orchestration episode as the engine runs it, minus the store: what the orchestrator function
 * is sent, how its answer is read, and what the episode then is. The engine and the replay tests
 * (test/support/replay.ts) both use these, so a recorded history is replayed exactly as it ran.
 */
import { formatTimeSpan } from '../config/timespan.js';
import { describeError } from '../errors.js';
import type { RpcTypedData } from '../worker/core-types.js';
import { topLevelActions } from './actions.js';
import { type HistoryEvent, parseJsonText } from './history.js';
import { type OrchestratorState, stateFromError, stateFromReturnValue } from './orchestrator-state.js';
import { type ShimResult, replayActions } from './replay-shim.js';

export const MAX_SHORT_TIMER_MS = 3650 * 86_400_000;
export const LONG_TIMER_INTERVAL_MS = 3 * 86_400_000;
export const DEFAULT_HTTP_POLL_MS = 30_000;

/** The fields of an orchestrator's trigger next to `history`, as the Durable extension sends them. */
export function orchestratorTriggerFields(options: {
  instanceId: string;
  startEvent: HistoryEvent;
  /** Whether the history holds events from earlier episodes. */
  isReplaying: boolean;
  schemaVersion: number;
}): Record<string, unknown> {
  const { startEvent, schemaVersion } = options;
  return {
    input: parseJsonText(startEvent.Input),
    instanceId: options.instanceId,
    isReplaying: options.isReplaying,
    parentInstanceId: startEvent.ParentInstance?.OrchestrationInstance.InstanceId ?? null,
    upperSchemaVersion: Math.min(schemaVersion, 1),
    upperSchemaVersionNew: schemaVersion,
    longRunningTimerIntervalDuration: formatTimeSpan(LONG_TIMER_INTERVAL_MS),
    maximumShortTimerDuration: formatTimeSpan(MAX_SHORT_TIMER_MS),
    defaultHttpAsyncRequestSleepTimeMillseconds: DEFAULT_HTTP_POLL_MS,
  };
}

export interface OrchestratorResult {
  state: OrchestratorState | undefined;
  error: string | undefined;
  stack: string | undefined;
}

/** Reads an orchestrator invocation's outcome: its returned state, or the state its error carries. */
export function orchestratorResultOf(
  outcome: { error?: Error | undefined; returnValue?: RpcTypedData | null | undefined },
  schemaVersion: number,
): OrchestratorResult {
  if (outcome.error) {
    const { state, message } = stateFromError(outcome.error, schemaVersion);
    return { state, error: message, stack: outcome.error.stack };
  }
  const state = stateFromReturnValue(outcome.returnValue, schemaVersion);
  return state
    ? { state, error: state.error, stack: undefined }
    : { state: undefined, error: 'The orchestrator function returned no OrchestratorState. Is it registered with df.app.orchestration?', stack: undefined };
}

/** Replays the episode's whole history against the orchestrator's actions (see replay-shim.ts). */
export function shimEpisode(
  history: HistoryEvent[],
  state: OrchestratorState,
  options: { now: number; instanceId: string; executionId: string; newGuid?: () => string },
): ShimResult {
  try {
    const actions = topLevelActions(state.actions, state.schemaVersion);
    return replayActions(history, actions, {
      now: options.now,
      schemaVersion: state.schemaVersion,
      defaultHttpAsyncRequestSleepTimeMillseconds: DEFAULT_HTTP_POLL_MS,
      maximumShortTimerDurationMs: MAX_SHORT_TIMER_MS,
      longRunningTimerIntervalDurationMs: LONG_TIMER_INTERVAL_MS,
      instanceId: options.instanceId,
      executionId: options.executionId,
      ...(options.newGuid ? { newGuid: options.newGuid } : {}),
    });
  } catch (err) {
    return {
      decisions: [],
      canceledTimerIds: [],
      continueAsNew: undefined,
      nonDeterminism: `The orchestrator returned actions fnhost cannot read: ${describeError(err)}`,
      reyieldedTasks: false,
    };
  }
}

export type EpisodeKind = 'running' | 'completed' | 'failed' | 'continueAsNew';

/** What the episode is: the orchestration goes on, ends, fails or restarts; and why it failed. */
export function classifyEpisode(
  result: OrchestratorResult,
  shim: ShimResult | undefined,
): { kind: EpisodeKind; errorMessage: string | undefined } {
  let errorMessage = result.error;
  if (shim?.nonDeterminism) errorMessage = shim.nonDeterminism;
  if (errorMessage !== undefined || !result.state || !shim) {
    return { kind: 'failed', errorMessage: errorMessage ?? 'The orchestrator returned no state.' };
  }
  if (result.state.isDone && shim.continueAsNew) return { kind: 'continueAsNew', errorMessage: undefined };
  if (result.state.isDone) return { kind: 'completed', errorMessage: undefined };
  return { kind: 'running', errorMessage: undefined };
}

/** The JSON text a completed orchestration's output is recorded as. */
export function completedOutputText(state: OrchestratorState | undefined): string {
  return state?.output === undefined ? 'null' : JSON.stringify(state.output);
}

/** The text a failed orchestration's ExecutionCompleted carries. */
export function failedOutputText(orchestratorName: string, errorMessage: string | undefined): string {
  return `Orchestrator function '${orchestratorName}' failed: ${String(errorMessage)}`;
}
