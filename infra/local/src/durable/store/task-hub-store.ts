import type { FailureDetails, HistoryEvent, RuntimeStatus } from '../history.js';

/**
 * The durable task hub's persistence. One implementation (SQLite) ships; the engine only sees
 * this interface. Every method that changes state is atomic: a crash leaves either all of a
 * change or none of it.
 */

export interface InstanceRecord {
  instanceId: string;
  executionId: string;
  name: string;
  version: string | undefined;
  runtimeStatus: RuntimeStatus;
  /** JSON text (or null). */
  input: string | null;
  output: string | null;
  customStatus: string | null;
  createdTime: number;
  lastUpdatedTime: number;
  completedTime: number | null;
  parentInstanceId: string | null;
  failureDetails: FailureDetails | null;
  /** Entities only: whether the entity exists and its state as JSON text. */
  isEntity: boolean;
  entityExists: boolean;
  entityState: string | null;
  /** Entities only: the orchestration holding the entity's lock. */
  lockedBy: string | null;
}

/** A message waiting in an instance's inbox (an event to add to its history). */
export interface InboxMessage {
  seq: number;
  instanceId: string;
  /** The execution the message is for; null means the current one. */
  executionId: string | null;
  visibleAt: number;
  event: HistoryEvent;
}

/** An activity (or built-in HTTP call) waiting to run. */
export interface ActivityTask {
  seq: number;
  instanceId: string;
  executionId: string;
  /** The TaskScheduled event id in the orchestration's history. */
  taskId: number;
  name: string;
  /** JSON text. */
  input: string | null;
}

export interface NewMessage {
  instanceId: string;
  executionId: string | null;
  visibleAt: number;
  event: HistoryEvent;
}

export interface NewActivity {
  instanceId: string;
  executionId: string;
  taskId: number;
  name: string;
  input: string | null;
}

/** Starts an orchestration; fails with a conflict if a non-terminal instance has the id. */
export interface CreateInstance {
  instanceId: string;
  executionId: string;
  name: string;
  version: string | undefined;
  input: string | null;
  parentInstanceId: string | null;
  now: number;
  startEvent: HistoryEvent;
  /** Replace a non-terminal instance too (sub-orchestration restarts). */
  force?: boolean;
}

export interface InstanceUpdate {
  executionId: string;
  name: string;
  runtimeStatus: RuntimeStatus;
  input?: string | null;
  output: string | null;
  customStatus: string | null;
  completedTime: number | null;
  failureDetails: FailureDetails | null;
}

/** Everything one orchestration episode changes, committed in one transaction. */
export interface EpisodeCommit {
  instanceId: string;
  /** The commit is dropped if the instance was purged or restarted meanwhile. */
  expectedExecutionId: string;
  now: number;
  /** Inbox messages the episode consumed (or discarded). */
  consumed: number[];
  /** Events appended to the current execution's history. */
  appendHistory: HistoryEvent[];
  /** The same events already serialised (the engine has them), to avoid doing it twice. */
  appendHistoryJson?: string[];
  /** Set on continue-as-new: history restarts with these events. */
  replaceHistory?: HistoryEvent[];
  update: InstanceUpdate;
  activities: NewActivity[];
  messages: NewMessage[];
  /** Sub-orchestrations to create with this episode. */
  children: CreateInstance[];
  /** Pending timer messages to delete (timers the orchestrator canceled). */
  cancelTimers: { executionId: string; timerId: number }[];
}

export interface EntityCommit {
  instanceId: string;
  now: number;
  consumed: number[];
  exists: boolean;
  state: string | null;
  lockedBy: string | null;
  messages: NewMessage[];
}

/** A message was put in an instance's inbox, visible from `visibleAt`. */
export interface Delivery {
  instanceId: string;
  visibleAt: number;
}

export interface CommitResult {
  /** The activity tasks the episode created, with their queue numbers. */
  activities: ActivityTask[];
  notify: Delivery[];
}

export interface InstanceQuery {
  createdTimeFrom?: number;
  createdTimeTo?: number;
  runtimeStatus?: RuntimeStatus[];
  instanceIdPrefix?: string;
  /** Page size. */
  top?: number;
  /** Opaque continuation token from the previous page. */
  continuationToken?: string;
  includeEntities?: boolean;
}

export interface InstancePage {
  instances: InstanceRecord[];
  continuationToken: string | undefined;
}

export interface CreateResult {
  created: boolean;
  /** When not created: the status of the instance that holds the id. */
  existingStatus?: RuntimeStatus;
}

export interface TaskHubStore {
  readonly hubName: string;

  createInstance(request: CreateInstance): CreateResult;
  getInstance(instanceId: string): InstanceRecord | undefined;
  queryInstances(query: InstanceQuery): InstancePage;
  getHistory(instanceId: string): HistoryEvent[];
  /** Adds a message to an existing instance's inbox; false if there is no such instance. */
  enqueue(message: NewMessage): { seq: number } | undefined;
  /** Creates an entity instance on first use and enqueues a message to it. */
  enqueueForEntity(message: NewMessage, now: number): { seq: number };
  /** Inbox messages visible at `now`, oldest first. */
  readInbox(instanceId: string, now: number): InboxMessage[];
  /** Instances with visible inbox messages, and the earliest future visibility (for timers). */
  readyInstances(now: number): { ready: string[]; nextVisibleAt: number | undefined };
  /** Returns undefined when the instance changed under the episode and nothing was written. */
  commitEpisode(commit: EpisodeCommit): CommitResult | undefined;
  commitEntity(commit: EntityCommit): Delivery[];
  pendingActivities(): ActivityTask[];
  /** Deletes inbox messages without other changes (messages for finished instances). */
  deleteMessages(seqs: number[]): void;
  /** Deletes finished tasks and enqueues their results, atomically. */
  completeActivities(results: { taskSeq: number; message: NewMessage }[]): Delivery[];
  purgeInstance(instanceId: string): number;
  purgeInstances(filter: { createdTimeFrom?: number; createdTimeTo?: number; runtimeStatus?: RuntimeStatus[] }): number;
  close(): void;
}
