/**
 * Durable Task history events, serialised the way the Durable Functions extension sends them to
 * out-of-process workers: PascalCase properties and a numeric `EventType`.
 */

export const EventType = {
  ExecutionStarted: 0,
  ExecutionCompleted: 1,
  ExecutionFailed: 2,
  ExecutionTerminated: 3,
  TaskScheduled: 4,
  TaskCompleted: 5,
  TaskFailed: 6,
  SubOrchestrationInstanceCreated: 7,
  SubOrchestrationInstanceCompleted: 8,
  SubOrchestrationInstanceFailed: 9,
  TimerCreated: 10,
  TimerFired: 11,
  OrchestratorStarted: 12,
  OrchestratorCompleted: 13,
  EventSent: 14,
  EventRaised: 15,
  ContinueAsNew: 16,
  GenericEvent: 17,
  HistoryState: 18,
  ExecutionSuspended: 19,
  ExecutionResumed: 20,
} as const;

export type EventTypeValue = (typeof EventType)[keyof typeof EventType];

const EVENT_TYPE_NAMES = Object.fromEntries(Object.entries(EventType).map(([k, v]) => [v, k])) as Record<
  number,
  string
>;

export function eventTypeName(type: number): string {
  return EVENT_TYPE_NAMES[type] ?? `Unknown(${type})`;
}

/** Orchestration runtime status, as the Durable HTTP API reports it. */
export type RuntimeStatus =
  | 'Pending'
  | 'Running'
  | 'Completed'
  | 'ContinuedAsNew'
  | 'Failed'
  | 'Canceled'
  | 'Terminated'
  | 'Suspended';

export const TERMINAL_STATUSES: readonly RuntimeStatus[] = ['Completed', 'Failed', 'Terminated', 'Canceled'];

export function isTerminal(status: RuntimeStatus): boolean {
  return TERMINAL_STATUSES.includes(status);
}

/** DTFx's OrchestrationStatus numbers, used in ExecutionCompleted. */
export const OrchestrationStatusNumber: Record<RuntimeStatus, number> = {
  Running: 0,
  Completed: 1,
  ContinuedAsNew: 2,
  Failed: 3,
  Canceled: 4,
  Terminated: 5,
  Pending: 6,
  Suspended: 7,
};

export interface FailureDetails {
  ErrorType: string;
  ErrorMessage: string;
  StackTrace?: string | undefined;
  IsNonRetriable?: boolean | undefined;
  Properties?: Record<string, unknown> | undefined;
  InnerFailure?: FailureDetails | undefined;
}

export interface OrchestrationInstanceRef {
  InstanceId: string;
  ExecutionId: string;
}

export interface ParentInstanceInfo {
  Name: string;
  Version?: string | undefined;
  OrchestrationInstance: OrchestrationInstanceRef;
  TaskScheduleId: number;
}

/**
 * One history event. Fields beyond the common four depend on `EventType`; they are optional
 * here and read through the helpers in this module and the replay shim.
 */
export interface HistoryEvent {
  EventType: EventTypeValue;
  EventId: number;
  IsPlayed: boolean;
  Timestamp: string;
  Name?: string | undefined;
  Version?: string | undefined;
  Input?: string | undefined;
  Result?: string | undefined;
  Reason?: string | undefined;
  Details?: string | undefined;
  FailureDetails?: FailureDetails | undefined;
  TaskScheduledId?: number | undefined;
  TimerId?: number | undefined;
  FireAt?: string | undefined;
  InstanceId?: string | undefined;
  OrchestrationInstance?: OrchestrationInstanceRef | undefined;
  ParentInstance?: ParentInstanceInfo | undefined;
  OrchestrationStatus?: number | undefined;
  Tags?: Record<string, string> | undefined;
}

/** Creates an event stamped at `now` with no event id (-1), the default for non-scheduling events. */
export function makeEvent(type: EventTypeValue, now: number, fields: Partial<HistoryEvent> = {}): HistoryEvent {
  return {
    EventType: type,
    EventId: -1,
    IsPlayed: false,
    Timestamp: new Date(now).toISOString(),
    ...fields,
  };
}

/**
 * The JSON text a value is stored as. Strings coming from the durable-functions library are already
 * JSON (its `Utils.processInput` serialises string inputs), everything else is serialised here.
 */
export function toJsonText(value: unknown): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value === 'string') return value;
  return JSON.stringify(value);
}

export function parseJsonText(text: string | undefined | null): unknown {
  if (text === undefined || text === null || text === '') return null;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}
