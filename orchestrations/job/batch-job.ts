import * as df from 'durable-functions';
import { addCounts, type FinalizeInput, type PreparedJob } from '../../shared/jobs/job-runner.js';
import { chunkInstanceId } from '../../shared/jobs/jobs-service.js';
import { chunkRange } from '../../shared/planning/plan.js';
import { type JobCounts, type JobError, emptyCounts } from '../../shared/jobs/types.js';
import type { ChunkInput, ChunkResult } from './batch-chunk.js';
import type { TypedActivity, TypedOrchestration } from './typed-durable.js';

export interface BatchJobActivities {
  prepareJob: TypedActivity<{ jobId: string }, PreparedJob>;
  finalizeJob: TypedActivity<FinalizeInput, { status: string }>;
  batchChunk: TypedOrchestration<ChunkInput>;
}

export interface BatchJobResult {
  jobId: string;
  status: string;
  counts: JobCounts;
}

/** Storage hiccups in setup and finish are retried; a job's own failures are results, not exceptions. */
const SETUP_RETRY = new df.RetryOptions(2000, 4);

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * One batch job: prepare the plan (list the input, split it into mini-batches, write the manifest),
 * run the chunks one after another, each a bounded sub-orchestration, then finalize (commit outputs
 * in mini-batch order, write the summary, end the job). Only ids and counts pass through here.
 */
export function* batchJob(context: df.OrchestrationContext, input: { jobId: string }, steps: BatchJobActivities): Generator<df.Task, BatchJobResult, unknown> {
  const { jobId } = input;
  let counts = emptyCounts();
  let outcome: FinalizeInput['outcome'] = 'Completed';
  let error: JobError | undefined;
  let columns: string[] | undefined;
  try {
    const plan = (yield steps.prepareJob({ jobId }).withRetry(SETUP_RETRY)) as PreparedJob;
    if (plan.status !== 'ready') {
      outcome = plan.status === 'canceled' ? 'Canceled' : 'Failed';
      error = plan.error;
    } else {
      counts.mini_batches.total = plan.miniBatches;
      counts.items.total = plan.items;
      for (let chunk = 0; chunk < plan.chunks; chunk++) {
        const range = chunkRange(chunk, plan.chunkSize, plan.miniBatches);
        const result = (yield steps.batchChunk(
          {
            jobId,
            chunk,
            chunkSize: plan.chunkSize,
            start: range.start,
            end: range.end,
            parallelism: plan.parallelism,
            maxRetries: plan.maxRetries,
            errorThreshold: plan.errorThreshold,
            failedItemsBefore: counts.items.failed,
            progressIntervalSeconds: plan.progressIntervalSeconds,
            base: counts,
          },
          chunkInstanceId(jobId, chunk),
        )) as ChunkResult;
        counts = addCounts(counts, result.counts);
        columns ??= result.columns;
        if (result.canceled) {
          outcome = 'Canceled';
          break;
        }
        if (result.thresholdExceeded) {
          outcome = 'Failed';
          error = {
            code: 'error_threshold_exceeded',
            message: `${counts.items.failed} item(s) failed, more than the error_threshold of ${plan.errorThreshold}; no further mini-batches were scheduled.`,
          };
          break;
        }
      }
    }
  } catch (err) {
    outcome = 'Failed';
    error = { code: 'orchestration_failed', message: describe(err) };
  }
  const final = (yield steps.finalizeJob({ jobId, outcome, counts, error, columns }).withRetry(SETUP_RETRY)) as { status: string };
  return { jobId, status: final.status, counts };
}
