import type * as df from 'durable-functions';
import type { MiniBatchResult } from '../../shared/jobs/job-runner.js';
import { addCounts } from '../../shared/jobs/job-runner.js';
import { exceedsThreshold } from '../../shared/jobs/settings.js';
import { type JobCounts, emptyCounts } from '../../shared/jobs/types.js';
import type { TypedActivity } from './typed-durable.js';

export interface ChunkInput {
  jobId: string;
  chunk: number;
  chunkSize: number;
  /** Mini-batch indexes [start, end). */
  start: number;
  end: number;
  parallelism: number;
  maxRetries: number;
  errorThreshold: number;
  /** Failed items of earlier chunks, for the job-wide error threshold. */
  failedItemsBefore: number;
  progressIntervalSeconds: number;
  /** The job's counts before this chunk, so progress reports are job-wide. */
  base: JobCounts;
}

export interface ChunkResult {
  counts: JobCounts;
  canceled: boolean;
  thresholdExceeded: boolean;
  columns?: string[] | undefined;
}

export interface ChunkActivities {
  scoreMiniBatch: TypedActivity<{ jobId: string; chunkSize: number; index: number; attempt: number }, MiniBatchResult>;
  recordMiniBatchFailure: TypedActivity<{ jobId: string; chunkSize: number; index: number; attempt: number; error: string }, { items: number }>;
  recordProgress: TypedActivity<{ jobId: string; counts: JobCounts }, null>;
}

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
 * Runs a bounded range of mini-batches (one sub-orchestration per chunk keeps every history small):
 * waves of `parallelism` scoring activities, retries of retryable failures up to max_retries,
 * failed items counted against the error threshold as results arrive, and cancellation.
 *
 * Each wave waits on a new Task.all plus a new "cancel" event; tasks are never yielded twice inside
 * a new Task.any/Task.all, which the Durable extension in Azure mishandles for JavaScript.
 */
export function* batchChunk(context: df.OrchestrationContext, input: ChunkInput, activities: ChunkActivities): Generator<df.Task, ChunkResult, unknown> {
  const counts = emptyCounts();
  const attempts = new Map<number, number>();
  const queue: number[] = [];
  for (let i = input.start; i < input.end; i++) queue.push(i);
  let canceled = false;
  let thresholdExceeded = false;
  let columns: string[] | undefined;
  let lastProgress = context.df.currentUtcDateTime.getTime();

  while (queue.length > 0) {
    const wave = queue.splice(0, input.parallelism);
    const tasks = wave.map((index) => {
      const attempt = (attempts.get(index) ?? 0) + 1;
      attempts.set(index, attempt);
      return activities.scoreMiniBatch({ jobId: input.jobId, chunkSize: input.chunkSize, index, attempt });
    });
    const all = context.df.Task.all(tasks);
    const cancel = context.df.waitForExternalEvent('cancel');
    const winner = yield context.df.Task.any([all, cancel]);
    if (winner === cancel) {
      canceled = true;
      break;
    }
    if (all.isFaulted) {
      // Task.all stops at the first failure; let the rest of the wave finish before deciding.
      for (const task of tasks) {
        if (!task.isCompleted && !task.isFaulted) {
          try {
            yield task;
          } catch {
            // read below from the task itself
          }
        }
      }
    }
    const retry: number[] = [];
    for (let k = 0; k < tasks.length; k++) {
      const task = tasks[k] as df.Task;
      const index = wave[k] as number;
      const attempt = attempts.get(index) ?? 1;
      const mayRetry = attempt <= input.maxRetries;
      if (task.isFaulted) {
        if (retryableFailure(task.result) && mayRetry) {
          retry.push(index);
          counts.mini_batches.retried++;
        } else {
          const recorded = (yield activities.recordMiniBatchFailure({
            jobId: input.jobId,
            chunkSize: input.chunkSize,
            index,
            attempt,
            error: messageOf(task.result),
          })) as { items: number };
          counts.mini_batches.failed++;
          counts.items.failed += recorded.items;
        }
        continue;
      }
      const result = activities.scoreMiniBatch.resultOf(task);
      if (result.status === 'canceled') {
        canceled = true;
      } else if (result.status === 'completed') {
        counts.mini_batches.succeeded++;
        counts.items.succeeded += result.succeeded;
        counts.items.failed += result.failed;
        columns ??= result.columns;
      } else if (result.retryable && mayRetry) {
        retry.push(index);
        counts.mini_batches.retried++;
      } else {
        counts.mini_batches.failed++;
        counts.items.failed += result.failed;
      }
    }
    queue.unshift(...retry);
    if (canceled) break;
    if (exceedsThreshold(input.failedItemsBefore + counts.items.failed, input.errorThreshold)) {
      thresholdExceeded = true;
      break;
    }
    const now = context.df.currentUtcDateTime.getTime();
    if (queue.length > 0 && now - lastProgress >= input.progressIntervalSeconds * 1000) {
      yield activities.recordProgress({ jobId: input.jobId, counts: addCounts(input.base, counts) });
      lastProgress = now;
    }
  }
  return { counts, canceled, thresholdExceeded, columns };
}
