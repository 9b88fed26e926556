import * as df from 'durable-functions';
import type { FinalizeInput, PreparedJob } from '../../shared/jobs/job-runner.js';
import { laneInstanceId } from '../../shared/jobs/jobs-service.js';
import { type JobCounts, type JobError, addCounts, emptyCounts } from '../../shared/jobs/types.js';
import type { LaneInput, LaneResult } from './batch-lane.js';
import type { TypedActivity, TypedOrchestration } from './typed-durable.js';

export interface BatchJobActivities {
  prepareJob: TypedActivity<{ jobId: string }, PreparedJob>;
  finalizeJob: TypedActivity<FinalizeInput, { status: string }>;
  batchLane: TypedOrchestration<LaneInput>;
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
 * run it in lanes side by side (each a sub-orchestration running its share of the chunks), then
 * finalize (commit outputs in mini-batch order, write the summary, end the job). Only ids and
 * counts pass through here.
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
      const lanes = Array.from({ length: plan.lanes }, (_, lane) =>
        steps.batchLane(
          {
            jobId,
            lane,
            lanes: plan.lanes,
            chunks: plan.chunks,
            chunkSize: plan.chunkSize,
            miniBatches: plan.miniBatches,
            maxRetries: plan.maxRetries,
            errorThreshold: plan.errorThreshold,
            progressIntervalSeconds: plan.progressIntervalSeconds,
          },
          laneInstanceId(jobId, lane),
        ),
      );
      const results = (yield context.df.Task.all(lanes)) as LaneResult[];
      for (const result of results) {
        counts = addCounts(counts, result.counts);
        columns ??= result.columns;
      }
      if (results.some((r) => r.canceled)) {
        outcome = 'Canceled';
      } else if (results.some((r) => r.thresholdExceeded)) {
        outcome = 'Failed';
        error = {
          code: 'error_threshold_exceeded',
          message: `${counts.items.failed} item(s) failed, more than the error_threshold of ${plan.errorThreshold}; no further mini-batches were scheduled.`,
        };
      }
    }
  } catch (err) {
    outcome = 'Failed';
    error = { code: 'orchestration_failed', message: describe(err) };
  }
  const final = (yield steps.finalizeJob({ jobId, outcome, counts, error, columns }).withRetry(SETUP_RETRY)) as { status: string };
  return { jobId, status: final.status, counts };
}
