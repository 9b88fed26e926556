import { type JobStatus, isTerminalJob } from '../schemas/jobs.js';
import { type JobCounts, type JobError, type JobSpec, MODEL_STEP, type StepStatus, emptyCounts, isPipelineSpec } from '../jobs/types.js';

/**
 * Job events: every change of a job's status, as users see it, is one CloudEvent 1.0. This module
 * decides which record writes are such changes and what their events say; it is pure (the outbox
 * in job-store.ts records them with the change, shared/events/outbox.ts publishes them).
 */

/** A CloudEvents 1.0 event in the structured JSON format (what Event Grid's CloudEvents schema takes). */
export interface CloudEvent<T = unknown> {
  specversion: '1.0';
  id: string;
  source: string;
  type: string;
  subject: string;
  time: string;
  datacontenttype: 'application/json';
  data: T;
}

export const JOB_STATE_CHANGED = 'BatchEndpoints.JobStateChanged';
export const JOB_COMPLETED = 'BatchEndpoints.JobCompleted';
export const JOB_FAILED = 'BatchEndpoints.JobFailed';
export const JOB_CANCELED = 'BatchEndpoints.JobCanceled';

/** The event type of a transition to `status`: the terminal states have types of their own. */
export function eventTypeOf(status: JobStatus): string {
  switch (status) {
    case 'Completed':
      return JOB_COMPLETED;
    case 'Failed':
      return JOB_FAILED;
    case 'Canceled':
      return JOB_CANCELED;
    default:
      return JOB_STATE_CHANGED;
  }
}

/** What an event's `data` holds: the job as it was at the transition. */
export interface JobEventData {
  job_id: string;
  /** Empty for a standalone pipeline job. */
  endpoint: string;
  deployment: string;
  type: 'model' | 'pipeline';
  status: JobStatus;
  /** The status of the job's previous event (null for its first). */
  previous_status: JobStatus | null;
  /** 1, 2, 3… per job, in the order of its transitions. */
  sequence: number;
  counts: JobCounts;
  /** Every output of the job, by name: its URI. */
  outputs: Record<string, string>;
  error: JobError | null;
  started_at: string | null;
  completed_at: string | null;
}

/** Which record of a job was written: its own, or one of its steps'. */
export type WrittenRecord = { kind: 'job' } | { kind: 'step'; step: string };

/**
 * The status a write of a record tells users the job has now, or undefined when the write is no
 * transition of the job. The job's own record is the job, except in a model deployment's job that
 * runs as its one step (`batchscoring`): there, as in the job view, the step's Preparing, Running
 * and Finalizing are the job's (its record says Running the whole time), and the job's record
 * tells NotStarted, Canceling and how it ended. Other steps' states are never the job's.
 */
export function publishedStatus(spec: JobSpec, record: WrittenRecord, status: StepStatus): JobStatus | undefined {
  if (status === 'Skipped') return undefined;
  const mirrorsStep = spec.runs_as === 'steps' && !isPipelineSpec(spec);
  if (record.kind === 'step') {
    if (!mirrorsStep || record.step !== MODEL_STEP) return undefined;
    return status === 'Preparing' || status === 'Running' || status === 'Finalizing' || status === 'Canceling' ? status : undefined;
  }
  if (mirrorsStep && (status === 'Preparing' || status === 'Running' || status === 'Finalizing')) return undefined;
  return status;
}

/** Order of statuses: a job's events never go back (a step's Running after the job's Canceling is not published). */
const RANK: Record<JobStatus, number> = { NotStarted: 0, Preparing: 1, Running: 2, Canceling: 3, Finalizing: 4, Completed: 5, Failed: 5, Canceled: 5 };

/** Whether `next` is a transition after the job's last published status (undefined: none yet). */
export function isTransition(last: JobStatus | undefined, next: JobStatus): boolean {
  if (last === undefined) return true;
  if (isTerminalJob(last) || last === next) return false;
  return RANK[next] >= RANK[last];
}

/** The event id of a job's transition: stable, so a consumer drops redeliveries by it. */
export function eventId(jobId: string, sequence: number, status: JobStatus): string {
  return `${jobId}:${sequence}:${status}`;
}

/** The subject of a job's events (a standalone pipeline job has no endpoint). */
export function eventSubject(spec: Pick<JobSpec, 'id' | 'endpoint'>): string {
  return spec.endpoint === '' ? `jobs/${spec.id}` : `endpoints/${spec.endpoint}/jobs/${spec.id}`;
}

/** Every output of a job by name: its URI. */
export function outputsOf(spec: JobSpec): Record<string, string> {
  if (isPipelineSpec(spec)) return Object.fromEntries(Object.entries(spec.pipeline.outputs).map(([name, o]) => [name, o.uri]));
  if (spec.output === undefined) return {};
  return { [spec.output.name]: spec.output.uri };
}

/** What a record held when it was written (the job's state, or the step's). */
export interface RecordSnapshot {
  counts?: JobCounts | undefined;
  error?: JobError | undefined;
  started_at?: string | undefined;
  completed_at?: string | undefined;
}

/** The event of a job's transition number `sequence` to `status`. */
export function buildJobEvent(input: {
  source: string;
  spec: JobSpec;
  sequence: number;
  status: JobStatus;
  previous: JobStatus | undefined;
  time: Date;
  /** The record written, and the job's own record when that was a step's. */
  record: RecordSnapshot;
  job?: RecordSnapshot | undefined;
}): CloudEvent<JobEventData> {
  const { spec, record, job } = input;
  return {
    specversion: '1.0',
    id: eventId(spec.id, input.sequence, input.status),
    source: input.source,
    type: eventTypeOf(input.status),
    subject: eventSubject(spec),
    time: input.time.toISOString(),
    datacontenttype: 'application/json',
    data: {
      job_id: spec.id,
      endpoint: spec.endpoint,
      deployment: spec.deployment,
      type: isPipelineSpec(spec) ? 'pipeline' : 'model',
      status: input.status,
      previous_status: input.previous ?? null,
      sequence: input.sequence,
      counts: record.counts ?? job?.counts ?? emptyCounts(),
      outputs: outputsOf(spec),
      error: record.error ?? job?.error ?? null,
      started_at: record.started_at ?? job?.started_at ?? null,
      completed_at: record.completed_at ?? null,
    },
  };
}
