import type * as df from 'durable-functions';
import type { PlanProgress } from '../../shared/jobs/job-runner.js';
import { chunkInstanceId } from '../../shared/jobs/jobs-service.js';
import { type JobCounts, type JobError, addCounts, emptyCounts } from '../../shared/jobs/types.js';
import { chunkRange } from '../../shared/planning/plan.js';
import type { BookkeepingRetry } from '../../shared/config.js';
import { type ChunkInput, type ChunkResult, bookkeepingRetry, messageOf } from './batch-chunk.js';
import type { TypedActivity, TypedOrchestration } from './typed-durable.js';

export interface LaneInput {
  jobId: string;
  /** The parallel step the lane belongs to (absent for jobs created before steps). */
  step?: string | undefined;
  lane: number;
  lanes: number;
  chunks: number;
  chunkSize: number;
  miniBatches: number;
  maxRetries: number;
  errorThreshold: number;
  progressIntervalSeconds: number;
  bookkeeping: BookkeepingRetry;
  /**
   * The plan is still being listed (PreparedJob.streamed): `chunks` and `miniBatches` are what is
   * planned so far, and the lane asks for more (awaitPlan) when it has run those. Absent for a
   * plan made whole, and in the histories of lanes started before plans were listed page by page.
   */
  streamed?: true | undefined;
}

export interface LaneResult {
  counts: JobCounts;
  /** The lane's first `done` chunks ran whole; the next one its first `partial` mini-batches (see ranIndexes). */
  done: number;
  partial: number;
  canceled: boolean;
  thresholdExceeded: boolean;
  halted: boolean;
  error?: JobError | undefined;
}

/**
 * One of the job's lanes: runs chunks lane, lane + lanes, … one after another, each a
 * sub-orchestration. Lanes run side by side, so instance_count × max_concurrency_per_instance
 * mini-batches are in flight and a slow mini-batch holds up only its own lane. It never throws: a
 * chunk that fails halts the job (the other lanes stop) and the lane returns the error, so the job
 * waits for every lane before it finalizes.
 */
export function* batchLane(
  context: df.OrchestrationContext,
  input: LaneInput,
  steps: {
    batchChunk: TypedOrchestration<ChunkInput>;
    haltJob: TypedActivity<{ jobId: string; step?: string; error: JobError }, null>;
    awaitPlan: TypedActivity<{ jobId: string; step?: string; chunk: number }, PlanProgress>;
  },
): Generator<df.Task, LaneResult, unknown> {
  let counts = emptyCounts();
  let done = 0;
  let { chunks, miniBatches } = input;
  let planned = input.streamed === undefined;
  const at = input.step === undefined ? {} : { step: input.step };
  for (let chunk = input.lane; ; chunk += input.lanes) {
    while (!planned && chunk >= chunks) {
      let progress: PlanProgress;
      try {
        progress = (yield steps.awaitPlan({ jobId: input.jobId, ...at, chunk }).withRetry(bookkeepingRetry(input.bookkeeping))) as PlanProgress;
      } catch (err) {
        // Storage failing past every retry: the lane stops here, as the planner does (it halts the job).
        const error: JobError = { code: 'storage_failed', message: `The plan could not be read: ${messageOf(err)}` };
        return { counts, done, partial: 0, canceled: false, thresholdExceeded: false, halted: false, error };
      }
      ({ chunks, miniBatches } = progress);
      planned = progress.done;
      // The job stopped (canceled, halted, or its plan lost) while this lane waited: it stops too.
      if (progress.stopped === 'canceled' || progress.stopped === 'halted' || progress.error) {
        return { counts, done, partial: 0, canceled: progress.stopped === 'canceled', thresholdExceeded: false, halted: progress.stopped === 'halted', error: progress.error };
      }
    }
    if (chunk >= chunks) break;
    // Chunks planned while the listing goes on are whole; only the last one can be short.
    const range = planned ? chunkRange(chunk, input.chunkSize, miniBatches) : { start: chunk * input.chunkSize, end: (chunk + 1) * input.chunkSize };
    let result: ChunkResult;
    try {
      result = (yield steps.batchChunk(
        {
          jobId: input.jobId,
          ...(input.step === undefined ? {} : { step: input.step }),
          chunk,
          lane: input.lane,
          chunkSize: input.chunkSize,
          start: range.start,
          end: range.end,
          maxRetries: input.maxRetries,
          errorThreshold: input.errorThreshold,
          progressIntervalSeconds: input.progressIntervalSeconds,
          laneBase: counts,
          bookkeeping: input.bookkeeping,
        },
        chunkInstanceId(input.jobId, chunk, input.step),
      )) as ChunkResult;
    } catch (err) {
      const error: JobError = { code: 'internal', message: `Chunk ${chunk} of the job failed: ${messageOf(err)}` };
      try {
        yield steps.haltJob({ jobId: input.jobId, ...(input.step === undefined ? {} : { step: input.step }), error }).withRetry(bookkeepingRetry(input.bookkeeping));
      } catch {
        // The other lanes then run on to their ends; the job still fails with this error.
      }
      return { counts, done, partial: 0, canceled: false, thresholdExceeded: false, halted: false, error };
    }
    counts = addCounts(counts, result.counts);
    const stopped = result.canceled || result.thresholdExceeded || result.halted || result.error !== undefined;
    if (stopped || result.ran < range.end - range.start) {
      return { counts, done, partial: result.ran, canceled: result.canceled, thresholdExceeded: result.thresholdExceeded, halted: result.halted, error: result.error };
    }
    done++;
  }
  return { counts, done, partial: 0, canceled: false, thresholdExceeded: false, halted: false };
}
