/**
 * Replays a recorded orchestration history against today's orchestrator code, in process, the way
 * fnhost's engine ran it: episode by episode (each `OrchestratorStarted` in history), the
 * orchestrator gets the history up to that episode's new events, returns its actions, and fnhost's
 * replay shim turns them into this episode's decisions. Those must be what history recorded next
 * (same kind, name and sequence number), and where history ends the orchestrator must end with
 * the recorded status and output. A difference is a change that would break instances in flight.
 * A task hub keeps only an instance's current execution, so an orchestrator that now continues as
 * new where history did not is reported as a mismatch; replaying past a continue-as-new is not
 * supported.
 */
import { isDeepStrictEqual } from 'node:util';
import {
  classifyEpisode,
  completedOutputText,
  failedOutputText,
  orchestratorResultOf,
  orchestratorTriggerFields,
  shimEpisode,
} from '../../infra/local/src/durable/episode-protocol.js';
import { EventType, type HistoryEvent, OrchestrationStatusNumber, eventTypeName, parseJsonText } from '../../infra/local/src/durable/history.js';
import { type Decision, HTTP_ACTIVITY_NAME } from '../../infra/local/src/durable/replay-shim.js';
import type { RecordedInstance } from '../../scripts/lib/history-fixtures.js';
import { type OrchestratorListener, invokeListener } from './in-process-durable.js';

export interface ReplayOptions {
  /**
   * Also compare inputs, timer times and sub-orchestration instance ids of new work with history.
   * Off by default: Durable does not check them on replay, so changing them does not break
   * instances in flight (though it changes what those instances do next).
   */
  compareInputs?: boolean;
}

export interface ReplayMismatch {
  /** 1-based episode number (the n-th OrchestratorStarted of the history). */
  episode: number;
  /** Index in the recorded history of the event that disagrees, if one does. */
  eventIndex: number | undefined;
  /** The recorded event, described (undefined when history has nothing there). */
  recorded: string | undefined;
  /** What the orchestrator does now instead. */
  orchestrator: string;
  message: string;
}

export interface ReplayReport {
  instanceId: string;
  name: string;
  /** Episodes the orchestrator was run for. */
  episodes: number;
  mismatch: ReplayMismatch | undefined;
}

/** Recorded events an episode appends after its new events: its decisions and its end. */
const EPISODE_OUTPUT = new Set<number>([
  EventType.TaskScheduled,
  EventType.TimerCreated,
  EventType.SubOrchestrationInstanceCreated,
  EventType.EventSent,
  EventType.OrchestratorCompleted,
  EventType.ExecutionCompleted,
]);

function played(e: HistoryEvent, isPlayed: boolean): HistoryEvent {
  return e.IsPlayed === isPlayed ? e : { ...e, IsPlayed: isPlayed };
}

export function describeEvent(e: HistoryEvent, index?: number): string {
  const parts = [eventTypeName(e.EventType)];
  if (e.Name !== undefined) parts.push(`"${e.Name}"`);
  if (e.EventType === EventType.EventSent && e.InstanceId) parts.push(`to ${e.InstanceId}`);
  if (e.EventId >= 0) parts.push(`(sequence number ${e.EventId})`);
  if (e.TaskScheduledId !== undefined) parts.push(`(for sequence number ${e.TaskScheduledId})`);
  if (e.TimerId !== undefined) parts.push(`(timer ${e.TimerId})`);
  if (index !== undefined) parts.push(`at history event ${index}`);
  return parts.join(' ');
}

export function describeDecision(d: Decision): string {
  switch (d.kind) {
    case 'activity':
      return `calls activity "${d.name}" (sequence number ${d.id})`;
    case 'http':
      return `makes a durable HTTP call ${d.request.method} ${d.request.uri} (sequence number ${d.id})`;
    case 'timer':
      return `creates a ${d.purpose} timer for ${d.fireAt} (sequence number ${d.id})`;
    case 'subOrchestration':
      return `calls sub-orchestration "${d.name}"${d.instanceId ? ` as "${d.instanceId}"` : ''} (sequence number ${d.id})`;
    case 'entityMessage':
      return `sends "${d.operation}" to entity ${d.target} (sequence number ${d.id})`;
  }
}

/** The event the engine records for a decision (only the fields replay compares). */
function recordedFormOf(d: Decision, executionId: string): Partial<HistoryEvent> & { EventType: number; EventId: number } {
  switch (d.kind) {
    case 'activity':
      return { EventType: EventType.TaskScheduled, EventId: d.id, Name: d.name, Input: d.input };
    case 'http':
      return { EventType: EventType.TaskScheduled, EventId: d.id, Name: HTTP_ACTIVITY_NAME, Input: JSON.stringify(d.request) };
    case 'timer':
      return { EventType: EventType.TimerCreated, EventId: d.id, FireAt: d.fireAt };
    case 'subOrchestration':
      return { EventType: EventType.SubOrchestrationInstanceCreated, EventId: d.id, Name: d.name, InstanceId: d.instanceId ?? `${executionId}:${d.id}`, Input: d.input };
    case 'entityMessage':
      // The message carries a fresh GUID: only where it goes and what it is can be compared.
      return { EventType: EventType.EventSent, EventId: d.id, Name: d.purpose === 'release' ? 'release' : 'op', InstanceId: d.target };
  }
}

/** Why a recorded scheduling event and a decision differ, or undefined when they agree. */
function differenceOf(recorded: HistoryEvent, d: Decision, executionId: string, compareInputs: boolean): string | undefined {
  const expected = recordedFormOf(d, executionId);
  if (recorded.EventType !== expected.EventType) return 'a different kind of work';
  if (recorded.EventId !== expected.EventId) return 'a different sequence number';
  if (expected.Name !== undefined && recorded.Name !== expected.Name) return 'a different name';
  if (d.kind === 'entityMessage' && recorded.InstanceId !== expected.InstanceId) return 'a different entity';
  if (!compareInputs || d.kind === 'entityMessage') return undefined;
  if (!isDeepStrictEqual(parseJsonText(recorded.Input), parseJsonText(expected.Input))) return 'a different input';
  if (expected.FireAt !== undefined && Date.parse(recorded.FireAt ?? '') !== Date.parse(expected.FireAt)) return 'a different time';
  if (expected.InstanceId !== undefined && recorded.InstanceId !== expected.InstanceId) return 'a different instance id';
  return undefined;
}

/** Replays `recording` against `orchestrator` (a listener as `df.app.orchestration` registers it). */
export async function replayRecording(recording: RecordedInstance, orchestrator: OrchestratorListener, options: ReplayOptions = {}): Promise<ReplayReport> {
  const history = recording.history;
  const report: ReplayReport = { instanceId: recording.instanceId, name: recording.name, episodes: 0, mismatch: undefined };
  const startEvent = history.find((e) => e.EventType === EventType.ExecutionStarted);
  if (!startEvent) throw new Error(`${recording.instanceId}: the recorded history has no ExecutionStarted event`);
  const executionId = startEvent.OrchestrationInstance?.ExecutionId ?? '';
  const fail = (m: Omit<ReplayMismatch, 'message'>, why: string): ReplayReport => {
    const where = m.recorded === undefined ? 'history has nothing more there' : `history has ${m.recorded}`;
    report.mismatch = { ...m, message: `${recording.name} "${recording.instanceId}", episode ${m.episode}: ${where}, but the orchestrator now ${m.orchestrator}${why ? ` (${why})` : ''}.` };
    return report;
  };

  let episode = 0;
  let ended: 'running' | 'completed' | 'failed' | 'terminated' = 'running';
  for (let s = 0; s < history.length; s++) {
    if ((history[s] as HistoryEvent).EventType !== EventType.OrchestratorStarted) continue;
    episode++;
    // [s, inputEnd): the episode's new events; [inputEnd, decisionsEnd): its recorded decisions.
    let inputEnd = s + 1;
    while (inputEnd < history.length && !EPISODE_OUTPUT.has((history[inputEnd] as HistoryEvent).EventType)) inputEnd++;
    let decisionsEnd = inputEnd;
    while (
      decisionsEnd < history.length &&
      (history[decisionsEnd] as HistoryEvent).EventType !== EventType.OrchestratorCompleted &&
      (history[decisionsEnd] as HistoryEvent).EventType !== EventType.ExecutionCompleted
    ) {
      decisionsEnd++;
    }
    const recordedDecisions = history.slice(inputEnd, decisionsEnd);
    let endIndex = decisionsEnd;
    if (history[endIndex]?.EventType === EventType.OrchestratorCompleted) endIndex++;
    const completion = history[endIndex]?.EventType === EventType.ExecutionCompleted ? history[endIndex] : undefined;
    const newEvents = history.slice(s + 1, inputEnd);

    if (newEvents.some((e) => e.EventType === EventType.ExecutionTerminated)) {
      // Terminated by a client: the engine ends the instance without running the orchestrator.
      ended = 'terminated';
      continue;
    }

    report.episodes++;
    const episodeHistory = [...history.slice(0, s).map((e) => played(e, true)), ...history.slice(s, inputEnd).map((e) => played(e, false))];
    const trigger = {
      history: episodeHistory,
      ...orchestratorTriggerFields({ instanceId: recording.instanceId, startEvent, isReplaying: s > 0, schemaVersion: recording.schemaVersion }),
    };
    const outcome = await invokeListener(orchestrator, trigger, recording.name);
    const result = orchestratorResultOf(
      { error: outcome.error, returnValue: outcome.error ? undefined : { json: JSON.stringify(outcome.returnValue) } },
      recording.schemaVersion,
    );
    const now = Date.parse((history[s] as HistoryEvent).Timestamp);
    const shim = result.state ? shimEpisode(episodeHistory, result.state, { now, instanceId: recording.instanceId, executionId }) : undefined;
    const { kind, errorMessage } = classifyEpisode(result, shim);
    const here = { episode, eventIndex: undefined, recorded: undefined };

    const recordedFailure = completion?.OrchestrationStatus === OrchestrationStatusNumber.Failed ? completion.Result : undefined;
    if (shim?.nonDeterminism && recordedFailure !== failedOutputText(recording.name, shim.nonDeterminism)) {
      // Work recorded before this episode no longer matches: the shim names the event and the call.
      const seq = /sequence number (\d+)/.exec(shim.nonDeterminism)?.[1];
      const index = seq === undefined ? -1 : history.findIndex((e, i) => i < s && e.EventId === Number(seq) && e.EventType !== EventType.OrchestratorStarted);
      return fail(
        { episode, eventIndex: index >= 0 ? index : undefined, recorded: index >= 0 ? describeEvent(history[index] as HistoryEvent, index) : undefined, orchestrator: 'replays differently' },
        shim.nonDeterminism,
      );
    }

    if (kind === 'running') {
      const decisions = shim?.decisions ?? [];
      for (let i = 0; i < Math.max(decisions.length, recordedDecisions.length); i++) {
        const recorded = recordedDecisions[i];
        const decision = decisions[i];
        const eventIndex = recorded ? inputEnd + i : undefined;
        const recordedText = recorded ? describeEvent(recorded, eventIndex) : undefined;
        if (!decision) return fail({ episode, eventIndex, recorded: recordedText, orchestrator: 'schedules nothing more' }, '');
        if (!recorded) return fail({ ...here, orchestrator: `also ${describeDecision(decision)}` }, '');
        const difference = differenceOf(recorded, decision, executionId, options.compareInputs ?? false);
        if (difference) return fail({ episode, eventIndex, recorded: recordedText, orchestrator: describeDecision(decision) }, difference);
      }
      if (completion) {
        return fail(
          { episode, eventIndex: endIndex, recorded: describeEvent(completion, endIndex), orchestrator: 'is still running' },
          'the recorded orchestration ended here',
        );
      }
      continue;
    }

    const first = recordedDecisions[0];
    if (first) {
      return fail(
        { episode, eventIndex: inputEnd, recorded: describeEvent(first, inputEnd), orchestrator: kind === 'failed' ? `fails: ${String(errorMessage)}` : `ends (${kind})` },
        '',
      );
    }
    if (!completion) {
      return fail({ ...here, orchestrator: kind === 'failed' ? `fails: ${String(errorMessage)}` : `ends (${kind})` }, 'the recorded orchestration went on');
    }
    if (kind === 'completed') {
      const output = parseJsonText(completedOutputText(result.state));
      if (completion.OrchestrationStatus !== OrchestrationStatusNumber.Completed || !isDeepStrictEqual(output, parseJsonText(completion.Result))) {
        return fail(
          { episode, eventIndex: endIndex, recorded: `${describeEvent(completion, endIndex)} with status ${String(completion.OrchestrationStatus)} and result ${String(completion.Result)}`, orchestrator: `completes with ${JSON.stringify(output)}` },
          '',
        );
      }
      ended = 'completed';
    } else if (kind === 'failed') {
      const text = failedOutputText(recording.name, errorMessage);
      if (completion.OrchestrationStatus !== OrchestrationStatusNumber.Failed || completion.Result !== text) {
        return fail({ episode, eventIndex: endIndex, recorded: `${describeEvent(completion, endIndex)} with result ${String(completion.Result)}`, orchestrator: `fails: ${text}` }, '');
      }
      ended = 'failed';
    } else {
      return fail({ episode, eventIndex: endIndex, recorded: describeEvent(completion, endIndex), orchestrator: 'continues as new' }, 'replaying continue-as-new is not supported');
    }
  }

  // The instance record agrees with where the history ended (a check of the fixture itself).
  const expectedEnd = { Completed: 'completed', Failed: 'failed', Terminated: 'terminated' }[recording.runtimeStatus as string] ?? 'running';
  if (ended !== expectedEnd) {
    throw new Error(`${recording.instanceId}: the fixture says ${recording.runtimeStatus} but its history ends ${ended}`);
  }
  if (ended === 'completed' && !isDeepStrictEqual(recording.output, parseJsonText(history.findLast((e) => e.EventType === EventType.ExecutionCompleted)?.Result))) {
    throw new Error(`${recording.instanceId}: the fixture's output differs from its history's ExecutionCompleted result`);
  }
  return report;
}
