/**
 * Registers the batch job's activities and exports their typed handles, which the orchestrators
 * call (never activity names as strings).
 */
import * as df from 'durable-functions';
import { BatchError } from '../shared/errors.js';
import type { FinalizeInput, FinalizeResult, MiniBatchInput, MiniBatchResult, PreparedJob } from '../shared/jobs/job-runner.js';
import type { JournalLine } from '../shared/jobs/journal.js';
import type { JobCounts, JobError } from '../shared/jobs/types.js';
import { services } from '../shared/services.js';
import { typedActivity } from './job/typed-durable.js';

// Failures carry their code and whether a retry can help; orchestrators read this, not messages.
df.app.setExceptionPropertiesProvider({
  getExceptionProperties: (err: unknown) =>
    err instanceof BatchError ? { code: err.code, retryable: err.retryable } : { code: 'internal', retryable: true },
});

export const prepareJob = typedActivity<{ jobId: string }, PreparedJob>('prepareJob', (input) => services().runner.prepare(input.jobId));

export const scoreMiniBatch = typedActivity<MiniBatchInput, MiniBatchResult>('scoreMiniBatch', (input) => services().runner.scoreMiniBatch(input));

export const recordMiniBatchFailure = typedActivity<MiniBatchInput & { error: string }, { items: number; jobFailures: number; nonce: string }>('recordMiniBatchFailure', (input) =>
  services().runner.recordFailure(input),
);

export const recordJournal = typedActivity<{ jobId: string; lines: JournalLine[] }, null>('recordJournal', async (input) => {
  await services().runner.recordJournal(input);
  return null;
});

export const recordProgress = typedActivity<{ jobId: string; lane: number; counts: JobCounts }, null>('recordProgress', async (input) => {
  await services().runner.progress(input);
  return null;
});

export const haltJob = typedActivity<{ jobId: string; error: JobError }, null>('haltJob', async (input) => {
  await services().runner.halt(input);
  return null;
});

export const finalizeJob = typedActivity<FinalizeInput, FinalizeResult>('finalizeJob', (input) => services().runner.finalize(input));
