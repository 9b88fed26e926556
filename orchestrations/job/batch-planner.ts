import type * as df from 'durable-functions';
import type { BookkeepingRetry } from '../../shared/config.js';
import type { EngineRef, PlanProgress } from '../../shared/jobs/job-runner.js';
import type { JobError } from '../../shared/jobs/types.js';
import { bookkeepingRetry, messageOf } from './batch-chunk.js';
import type { TypedActivity } from './typed-durable.js';

export interface PlannerInput extends EngineRef {
  bookkeeping: BookkeepingRetry;
}

/**
 * Lists the rest of a run's input folder while its lanes score what is planned already: planPages
 * again and again (each call lists for a while and records every page in the plan index, where the
 * lanes find it) until the plan is done. Returns how the plan ended; a listing that failed has
 * halted the job already, and its error comes back here.
 */
export function* batchPlanner(
  _context: df.OrchestrationContext,
  input: PlannerInput,
  activities: { planPages: TypedActivity<EngineRef, PlanProgress>; haltJob: TypedActivity<EngineRef & { error: JobError }, null> },
): Generator<df.Task, PlanProgress, unknown> {
  const ref: EngineRef = input.step === undefined ? { jobId: input.jobId } : { jobId: input.jobId, step: input.step };
  const retry = bookkeepingRetry(input.bookkeeping);
  try {
    for (;;) {
      const progress = (yield activities.planPages(ref).withRetry(retry)) as PlanProgress;
      if (progress.done) return progress;
    }
  } catch (err) {
    // Like a lane, it never throws (the job waits for it and every lane): it halts the job, so
    // lanes waiting for more of the plan stop, and returns the error.
    const error: JobError = { code: 'storage_failed', message: `The input could not be listed: ${messageOf(err)}` };
    try {
      yield activities.haltJob({ ...ref, error }).withRetry(retry);
    } catch {
      // The job still fails with this error; lanes stop when their storage calls fail too.
    }
    return { chunks: 0, miniBatches: 0, items: 0, done: true, stopped: 'failed', error };
  }
}
