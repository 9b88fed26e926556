import * as df from 'durable-functions';
import type { EngineRef, FinalizeInput, FinalizeResult, LaneRan, MiniBatchInput, MiniBatchResult, PlanProgress, PreparedJob } from '../../shared/jobs/job-runner.js';
import { laneInstanceId, plannerInstanceId } from '../../shared/jobs/jobs-service.js';
import type { JournalLine } from '../../shared/jobs/journal.js';
import { type JobCounts, type JobError, addCounts, emptyCounts } from '../../shared/jobs/types.js';
import { bookkeepingRetry, messageOf } from './batch-chunk.js';
import type { LaneInput, LaneResult } from './batch-lane.js';
import type { PlannerInput } from './batch-planner.js';
import type { TypedActivity, TypedOrchestration } from './typed-durable.js';

export interface BatchJobActivities {
  prepareJob: TypedActivity<EngineRef, PreparedJob>;
  finalizeJob: TypedActivity<FinalizeInput, FinalizeResult>;
  batchLane: TypedOrchestration<LaneInput>;
  batchPlanner: TypedOrchestration<PlannerInput>;
  scoreMiniBatch: TypedActivity<MiniBatchInput, MiniBatchResult>;
  recordJournal: TypedActivity<EngineRef & { lines: JournalLine[] }, null>;
}

export interface BatchJobResult {
  jobId: string;
  status: string;
  counts: JobCounts;
}

/** Storage hiccups in setup and finish are retried; a job's own failures are results, not exceptions. */
const SETUP_RETRY = new df.RetryOptions(2000, 4);
/** Bookkeeping retries when there is no plan to say (prepare failed): the configuration's defaults. */
const DEFAULT_BOOKKEEPING = { firstRetryMs: 1000, attempts: 6 };
/** Rounds of running again mini-batches whose recorded outputs were lost, before the job fails. */
const REPAIR_ROUNDS = 2;

/**
 * One batch job: prepare the plan (list the input, split it into mini-batches, write the manifest),
 * run it in lanes side by side (each a sub-orchestration running its share of the chunks), then
 * finalize: check the outputs against the journal, run again any mini-batch whose outputs were
 * lost, commit, write the summary and end the job. Only ids and counts pass through here.
 */
export function* batchJob(context: df.OrchestrationContext, input: { jobId: string }, steps: BatchJobActivities): Generator<df.Task, BatchJobResult, unknown> {
  const result = yield* runParallel(context, { jobId: input.jobId }, steps);
  return { jobId: input.jobId, status: result.status, counts: result.counts };
}

/**
 * One run of the mini-batch engine, for a job created before steps (`ref.step` absent: the
 * `batchJob` orchestrator) or a parallel step: prepare, lanes side by side, then finalize with
 * repairs. Returns the run's final status. For the legacy job this is exactly what `batchJob` did,
 * call for call, so histories of jobs in flight replay unchanged.
 */
export function* runParallel(
  context: df.OrchestrationContext,
  ref: EngineRef,
  steps: BatchJobActivities,
): Generator<df.Task, { status: 'Completed' | 'Failed' | 'Canceled'; counts: JobCounts }, unknown> {
  const { jobId, step } = ref;
  const at = step === undefined ? {} : { step };
  let counts = emptyCounts();
  let outcome: FinalizeInput['outcome'] = 'Completed';
  let error: JobError | undefined;
  let layout: FinalizeInput['layout'] = { lanes: 0, chunkSize: 1, miniBatches: 0 };
  let ran: LaneRan[] = [];
  let plan: PreparedJob | undefined;
  try {
    plan = (yield steps.prepareJob({ jobId, ...at }).withRetry(SETUP_RETRY)) as PreparedJob;
    if (plan.status !== 'ready') {
      outcome = plan.status === 'canceled' ? 'Canceled' : 'Failed';
      error = plan.error;
    } else {
      counts.mini_batches.total = plan.miniBatches;
      counts.items.total = plan.items;
      layout = { lanes: plan.lanes, chunkSize: plan.chunkSize, miniBatches: plan.miniBatches };
      const prepared = plan;
      const lanes = Array.from({ length: prepared.lanes }, (_, lane) =>
        steps.batchLane(
          {
            jobId,
            ...at,
            lane,
            lanes: prepared.lanes,
            chunks: prepared.chunks,
            chunkSize: prepared.chunkSize,
            miniBatches: prepared.miniBatches,
            maxRetries: prepared.maxRetries,
            errorThreshold: prepared.errorThreshold,
            progressIntervalSeconds: prepared.progressIntervalSeconds,
            bookkeeping: prepared.bookkeeping,
            ...(prepared.streamed ? { streamed: true as const } : {}),
          },
          laneInstanceId(jobId, lane, step),
        ),
      );
      // A plan still being listed: the planner lists the rest beside the lanes, which ask it for more.
      const planner = prepared.streamed ? steps.batchPlanner({ jobId, ...at, bookkeeping: prepared.bookkeeping }, plannerInstanceId(jobId, step)) : undefined;
      // Lanes and the planner never fail (they return their errors), so this waits for every one of them.
      const settled = (yield context.df.Task.all(planner ? [planner, ...lanes] : lanes)) as unknown[];
      const listed = planner ? (settled[0] as PlanProgress) : undefined;
      const results = (planner ? settled.slice(1) : settled) as LaneResult[];
      if (listed) {
        counts.mini_batches.total = listed.miniBatches;
        counts.items.total = listed.items;
        layout = { ...layout, miniBatches: listed.miniBatches };
      }
      ran = results.map((r) => ({ done: r.done, partial: r.partial }));
      for (const result of results) counts = addCounts(counts, result.counts);
      const failed = listed?.error ?? results.find((r) => r.error !== undefined)?.error;
      if (failed) {
        outcome = 'Failed';
        error = failed;
      } else if (results.some((r) => r.canceled) || listed?.stopped === 'canceled') {
        outcome = 'Canceled';
      } else if (results.some((r) => r.thresholdExceeded) || listed?.stopped === 'threshold') {
        outcome = 'Failed';
        error = {
          code: 'error_threshold_exceeded',
          message: `${counts.items.failed} item(s) failed, more than the error_threshold of ${plan.errorThreshold}; no further mini-batches were scheduled.`,
        };
      }
    }
  } catch (err) {
    outcome = 'Failed';
    error = { code: 'orchestration_failed', message: messageOf(err) };
  }
  for (let round = 0; ; round++) {
    const final = (yield steps.finalizeJob({ jobId, ...at, outcome, counts, error, layout, ran, mayRepair: round < REPAIR_ROUNDS }).withRetry(SETUP_RETRY)) as FinalizeResult;
    if (final.status !== 'repair') return { status: final.status, counts };
    // Mini-batches whose recorded outputs were lost run again, one at a time (this is rare), and
    // their new outcomes are acknowledged like any other before finalizing looks again.
    const lines: JournalLine[] = [];
    for (const missing of final.repair) {
      try {
        const result = (yield steps.scoreMiniBatch({
          jobId,
          ...at,
          chunkSize: layout.chunkSize,
          index: missing.index,
          attempt: missing.attempt,
          maxRetries: 0,
          repair: true,
        })) as MiniBatchResult;
        lines.push({ ack: { i: missing.index, a: missing.attempt, n: result.nonce, final: true } });
      } catch {
        // Still missing when finalizing looks again: another round, or the job fails saying so.
      }
    }
    try {
      yield steps.recordJournal({ jobId, ...at, lines }).withRetry(bookkeepingRetry(plan?.bookkeeping ?? DEFAULT_BOOKKEEPING));
    } catch {
      // As above: the next look finds them missing.
    }
  }
}
