import * as df from 'durable-functions';
import type { EngineRef, MiniBatchInput, MiniBatchResult } from '../../shared/jobs/job-runner.js';
import type { JournalLine } from '../../shared/jobs/journal.js';
import { exceedsThreshold } from '../../shared/jobs/settings.js';
import { type JobCounts, type JobError, addCounts, emptyCounts } from '../../shared/jobs/types.js';
import type { BookkeepingRetry } from '../../shared/config.js';
import type { TypedActivity } from './typed-durable.js';

export interface ChunkInput {
  jobId: string;
  /** The parallel step the chunk belongs to (absent for jobs created before steps). */
  step?: string | undefined;
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
  bookkeeping: BookkeepingRetry;
}

export interface ChunkResult {
  counts: JobCounts;
  /**
   * How many mini-batches from `start` ran to a final outcome that is recorded in the journal (they
   * run in order, so it is a prefix of the range): finalizing expects a record for each of them.
   */
  ran: number;
  canceled: boolean;
  thresholdExceeded: boolean;
  /** Another part of the job halted it (see JobRunner.halt). */
  halted: boolean;
  /** Why this chunk could not go on (its work could not be recorded); the job fails with it. */
  error?: JobError | undefined;
}

export interface ChunkActivities {
  scoreMiniBatch: TypedActivity<MiniBatchInput, MiniBatchResult>;
  recordMiniBatchFailure: TypedActivity<MiniBatchInput & { error: string }, { items: number; jobFailures: number; nonce: string }>;
  recordProgress: TypedActivity<EngineRef & { lane: number; counts: JobCounts }, null>;
  recordJournal: TypedActivity<EngineRef & { lines: JournalLine[] }, null>;
  haltJob: TypedActivity<EngineRef & { error: JobError }, null>;
}

/** Journal lines recorded per call: one storage write stands for this many mini-batches. */
const JOURNAL_GROUP = 16;
/**
 * Bookkeeping (journal, failure records, halting) retries storage trouble that outlasted the
 * storage SDK's own retries, by default for about half a minute (1, 2, 4, 8, 16 s), before the
 * chunk gives up and fails the job (see BATCH_BOOKKEEPING_RETRY_MS).
 */
export function bookkeepingRetry(options: BookkeepingRetry): df.RetryOptions {
  const retry = new df.RetryOptions(options.firstRetryMs, options.attempts);
  retry.backoffCoefficient = 2;
  retry.maxRetryIntervalInMilliseconds = 16_000;
  return retry;
}
/** Progress is advisory: a few tries, then the next report catches up. */
const PROGRESS_RETRY = new df.RetryOptions(500, 3);

interface FailureDetailsLike {
  failureDetails?: { properties?: Record<string, unknown> };
  message?: string;
}

/** Whether an activity failure may succeed on retry: the `retryable` property the activity attached. */
function retryableFailure(error: unknown): boolean {
  const details = (error as FailureDetailsLike | undefined)?.failureDetails?.properties;
  return details?.['retryable'] !== false;
}

export function messageOf(error: unknown): string {
  const m = (error as FailureDetailsLike | undefined)?.message;
  return typeof m === 'string' ? m : String(error);
}

/**
 * Runs a bounded range of mini-batches one at a time (one sub-orchestration per chunk keeps every
 * history small; lanes run chunks side by side): retries of retryable failures up to max_retries,
 * failed items checked against the job-wide error threshold as each mini-batch ends, cancellation
 * and progress reports. Every attempt's outcome goes into the job's journal: a routine one whole
 * (it came back with the activity's result), any other as an ack of the entry its activity staged.
 *
 * It never throws: when its work cannot be recorded (storage failing past every retry) it halts
 * the job, so the other lanes stop at their next mini-batch, and returns the error with what it
 * had recorded, so the job finalizes only after every lane has stopped.
 *
 * Each wait is a new Task.any of a new activity and a new "cancel" waiter: no task is ever put into
 * a second Task.any/Task.all, which the Durable extension in Azure mishandles for JavaScript
 * (azure-functions-durable-js#574). The newest waiter receives a raised event.
 */
export function* batchChunk(context: df.OrchestrationContext, input: ChunkInput, activities: ChunkActivities): Generator<df.Task, ChunkResult, unknown> {
  const bookkeeping = bookkeepingRetry(input.bookkeeping);
  const counts = emptyCounts();
  let canceled = false;
  let thresholdExceeded = false;
  let halted = false;
  let error: JobError | undefined;
  let lastProgress = context.df.currentUtcDateTime.getTime();
  // The engine run every activity is about: the job, or its step.
  const ref = input.step === undefined ? { jobId: input.jobId } : { jobId: input.jobId, step: input.step };
  const call = { ...ref, chunkSize: input.chunkSize, maxRetries: input.maxRetries, deferJournal: true };
  // Lines wait here (in the orchestration's own history, so a replay rebuilds them) until recorded.
  const journal: JournalLine[] = [];
  /** Mini-batches with a final outcome, and how many of those are recorded. */
  let finished = 0;
  let recorded = 0;
  function* recordJournal(): Generator<df.Task, boolean, unknown> {
    if (journal.length > 0) {
      const lines = journal.slice();
      try {
        yield activities.recordJournal({ ...ref, lines }).withRetry(bookkeeping);
      } catch (err) {
        error = { code: 'storage_failed', message: `The outcomes of mini-batches ${input.start + recorded}-${input.start + finished - 1} could not be recorded: ${messageOf(err)}` };
        return false;
      }
      journal.splice(0, lines.length);
    }
    recorded = finished;
    return true;
  }
  const ack = (index: number, attempt: number, nonce: string, final: boolean): JournalLine => ({ ack: { i: index, a: attempt, n: nonce, final } });

  for (let index = input.start; index < input.end && !canceled && !thresholdExceeded && !halted && !error; index++) {
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
          // The activity itself failed and wrote no entry; the ack still says an attempt was retried.
          journal.push(ack(index, attempt, '', false));
          counts.mini_batches.retried++;
          continue;
        }
        let recordedFailure: { items: number; jobFailures: number; nonce: string };
        try {
          recordedFailure = (yield activities.recordMiniBatchFailure({ ...call, index, attempt, error: messageOf(task.result) }).withRetry(bookkeeping)) as typeof recordedFailure;
        } catch (err) {
          error = { code: 'storage_failed', message: `The failure of mini-batch ${index} could not be recorded: ${messageOf(err)}` };
          break;
        }
        journal.push(ack(index, attempt, recordedFailure.nonce, true));
        finished++;
        counts.mini_batches.failed++;
        counts.items.failed += recordedFailure.items;
        thresholdExceeded = exceedsThreshold(recordedFailure.jobFailures, input.errorThreshold);
        break;
      }
      const result = activities.scoreMiniBatch.resultOf(task);
      if (result.status === 'canceled') {
        canceled = true;
      } else if (result.status === 'skipped') {
        if (result.stop === 'halted') halted = true;
        else thresholdExceeded = true;
      } else if (result.status === 'completed') {
        journal.push(result.journal ?? ack(index, attempt, result.nonce, true));
        finished++;
        counts.mini_batches.succeeded++;
        counts.items.succeeded += result.succeeded;
        counts.items.failed += result.failed;
        thresholdExceeded = exceedsThreshold(result.jobFailures, input.errorThreshold);
      } else if (result.retryable && mayRetry) {
        // The failed attempt's entry (its logs, its reason) stays in the journal beside the retry's.
        journal.push(ack(index, attempt, result.nonce, false));
        counts.mini_batches.retried++;
        continue;
      } else {
        journal.push(ack(index, attempt, result.nonce, true));
        finished++;
        counts.mini_batches.failed++;
        counts.items.failed += result.failed;
        thresholdExceeded = exceedsThreshold(result.jobFailures, input.errorThreshold);
      }
      break;
    }
    if (journal.length >= JOURNAL_GROUP && !(yield* recordJournal())) break;
    const now = context.df.currentUtcDateTime.getTime();
    if (!canceled && !error && index + 1 < input.end && now - lastProgress >= input.progressIntervalSeconds * 1000) {
      try {
        yield activities.recordProgress({ ...ref, lane: input.lane, counts: addCounts(input.laneBase, counts) }).withRetry(PROGRESS_RETRY);
      } catch {
        // Counts shown while the job runs lag a little; the final ones come from the journal.
      }
      lastProgress = now;
    }
  }
  if (!error) yield* recordJournal();
  if (!error && !canceled && finished > 0) {
    // Every chunk reports at its end too: chunks shorter than the interval would otherwise never.
    try {
      yield activities.recordProgress({ ...ref, lane: input.lane, counts: addCounts(input.laneBase, counts) }).withRetry(PROGRESS_RETRY);
    } catch {
      // As above.
    }
  }
  if (error) {
    try {
      yield activities.haltJob({ ...ref, error }).withRetry(bookkeeping);
    } catch {
      // The other lanes then run on to their ends; the job still fails with this error.
    }
  }
  return { counts, ran: recorded, canceled, thresholdExceeded, halted, error };
}
