import * as df from 'durable-functions';
import type { MiniBatchInput, MiniBatchResult } from '../../shared/jobs/job-runner.js';
import { exceedsThreshold } from '../../shared/jobs/settings.js';
import { type JobCounts, addCounts, emptyCounts } from '../../shared/jobs/types.js';
import type { JournalEntry } from '../../shared/jobs/work-area.js';
import type { TypedActivity } from './typed-durable.js';

export interface ChunkInput {
  jobId: string;
  chunk: number;
  /** The lane running this chunk, for progress reports. */
  lane: number;
  chunkSize: number;
  /** Mini-batch indexes [start, end). */
  start: number;
  end: number;
  maxRetries: number;
  errorThreshold: number;
  progressIntervalSeconds: number;
  /** The lane's counts from its earlier chunks, so progress reports are lane-wide. */
  laneBase: JobCounts;
}

export interface ChunkResult {
  counts: JobCounts;
  canceled: boolean;
  thresholdExceeded: boolean;
  columns?: string[] | undefined;
}

export interface ChunkActivities {
  scoreMiniBatch: TypedActivity<MiniBatchInput, MiniBatchResult>;
  recordMiniBatchFailure: TypedActivity<MiniBatchInput & { error: string }, { items: number; jobFailures: number }>;
  recordProgress: TypedActivity<{ jobId: string; lane: number; counts: JobCounts }, null>;
  recordJournal: TypedActivity<{ jobId: string; entries: JournalEntry[] }, null>;
}

/** Routine journal entries recorded per call: one storage write stands for this many mini-batches. */
const JOURNAL_GROUP = 16;
/** A storage hiccup while recording entries is retried rather than failing the chunk. */
const JOURNAL_RETRY = new df.RetryOptions(1000, 4);

interface FailureDetailsLike {
  failureDetails?: { properties?: Record<string, unknown> };
  message?: string;
}

/** Whether an activity failure may succeed on retry: the `retryable` property the activity attached. */
function retryableFailure(error: unknown): boolean {
  const details = (error as FailureDetailsLike | undefined)?.failureDetails?.properties;
  return details?.['retryable'] !== false;
}

function messageOf(error: unknown): string {
  const m = (error as FailureDetailsLike | undefined)?.message;
  return typeof m === 'string' ? m : String(error);
}

/**
 * Runs a bounded range of mini-batches one at a time (one sub-orchestration per chunk keeps every
 * history small; lanes run chunks side by side): retries of retryable failures up to max_retries,
 * failed items checked against the job-wide error threshold as each mini-batch ends, cancellation
 * and progress reports.
 *
 * Each wait is a new Task.any of a new activity and a new "cancel" waiter: no task is ever put into
 * a second Task.any/Task.all, which the Durable extension in Azure mishandles for JavaScript
 * (azure-functions-durable-js#574). The newest waiter receives a raised event.
 */
export function* batchChunk(context: df.OrchestrationContext, input: ChunkInput, activities: ChunkActivities): Generator<df.Task, ChunkResult, unknown> {
  const counts = emptyCounts();
  let canceled = false;
  let thresholdExceeded = false;
  let columns: string[] | undefined;
  let lastProgress = context.df.currentUtcDateTime.getTime();
  const call = { jobId: input.jobId, chunkSize: input.chunkSize, maxRetries: input.maxRetries, deferJournal: true };
  // Routine entries wait here (in the orchestration's own history, so a replay rebuilds them).
  const journal: JournalEntry[] = [];
  function* recordJournal(): Generator<df.Task, void, unknown> {
    if (journal.length > 0) yield activities.recordJournal({ jobId: input.jobId, entries: journal.splice(0) }).withRetry(JOURNAL_RETRY);
  }

  for (let index = input.start; index < input.end && !canceled && !thresholdExceeded; index++) {
    for (let attempt = 1; ; attempt++) {
      const task = activities.scoreMiniBatch({ ...call, index, attempt, ...(index + 1 < input.end ? { next: index + 1 } : {}) });
      const cancel = context.df.waitForExternalEvent('cancel');
      const winner = yield context.df.Task.any([task, cancel]);
      if (winner === cancel) {
        canceled = true;
        // Work in flight finishes and counts (its rows are staged already); nothing new starts.
        try {
          yield task;
        } catch {
          // read below from the task itself
        }
      }
      const mayRetry = !canceled && attempt <= input.maxRetries;
      if (task.isFaulted) {
        if (retryableFailure(task.result) && mayRetry) {
          counts.mini_batches.retried++;
          continue;
        }
        const recorded = (yield activities.recordMiniBatchFailure({ ...call, index, attempt, error: messageOf(task.result) })) as { items: number; jobFailures: number };
        counts.mini_batches.failed++;
        counts.items.failed += recorded.items;
        thresholdExceeded = exceedsThreshold(recorded.jobFailures, input.errorThreshold);
        break;
      }
      const result = activities.scoreMiniBatch.resultOf(task);
      if (result.journal) journal.push(result.journal);
      if (result.status === 'canceled') {
        canceled = true;
      } else if (result.status === 'skipped') {
        thresholdExceeded = true;
      } else if (result.status === 'completed') {
        counts.mini_batches.succeeded++;
        counts.items.succeeded += result.succeeded;
        counts.items.failed += result.failed;
        columns ??= result.columns;
        thresholdExceeded = exceedsThreshold(result.jobFailures, input.errorThreshold);
      } else if (result.retryable && mayRetry) {
        counts.mini_batches.retried++;
        continue;
      } else {
        counts.mini_batches.failed++;
        counts.items.failed += result.failed;
        thresholdExceeded = exceedsThreshold(result.jobFailures, input.errorThreshold);
      }
      break;
    }
    if (journal.length >= JOURNAL_GROUP) yield* recordJournal();
    const now = context.df.currentUtcDateTime.getTime();
    if (!canceled && index + 1 < input.end && now - lastProgress >= input.progressIntervalSeconds * 1000) {
      yield activities.recordProgress({ jobId: input.jobId, lane: input.lane, counts: addCounts(input.laneBase, counts) });
      lastProgress = now;
    }
  }
  yield* recordJournal();
  return { counts, canceled, thresholdExceeded, columns };
}
