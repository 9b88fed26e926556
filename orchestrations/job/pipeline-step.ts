import type * as df from 'durable-functions';
import type { CommandAttempt, PreparedStep, StepEnd } from '../../shared/jobs/pipeline-runner.js';
import type { JobError } from '../../shared/jobs/types.js';
import { messageOf } from './batch-chunk.js';
import { type BatchJobActivities, runParallel } from './batch-job.js';
import { SETUP_RETRY } from './pipeline-job.js';
import type { TypedActivity } from './typed-durable.js';

export interface PipelineStepActivities extends BatchJobActivities {
  prepareStep: TypedActivity<{ jobId: string; step: string }, PreparedStep>;
  runCommandStep: TypedActivity<{ jobId: string; step: string; attempt: number }, CommandAttempt>;
  /** Records how the step ended and tells the job's orchestration (`stepDone`). */
  finishStep: TypedActivity<{ jobId: string; step: string; status: StepEnd; error?: JobError | undefined; attempts?: number | undefined }, { status: StepEnd }>;
}

/**
 * One step of a job: a parallel step runs the mini-batch engine (its lanes and chunks keyed by the
 * step), a command step runs its script, retried while the failure is retryable and attempts are
 * left (`retry_settings.max_retries`). A step whose earlier run can be reused, or whose job is
 * being canceled, does nothing. Whatever happens, it records how it ended and tells its job.
 */
export function* pipelineStep(context: df.OrchestrationContext, input: { jobId: string; step: string }, steps: PipelineStepActivities): Generator<df.Task, { status: StepEnd }, unknown> {
  let status: StepEnd = 'Failed';
  let error: JobError | undefined;
  let attempts: number | undefined;
  try {
    const prepared = (yield steps.prepareStep(input).withRetry(SETUP_RETRY)) as PreparedStep;
    if (prepared.status === 'reused') status = 'Completed';
    else if (prepared.status === 'canceled') status = 'Canceled';
    else if (prepared.status === 'failed') error = prepared.error;
    else if (prepared.type === 'parallel') status = (yield* runParallel(context, input, steps)).status;
    else {
      for (let attempt = 1; ; attempt++) {
        attempts = attempt;
        const task = steps.runCommandStep({ ...input, attempt });
        const cancel = context.df.waitForExternalEvent('cancel');
        const winner = yield context.df.Task.any([task, cancel]);
        let canceled = false;
        if (winner === cancel) {
          canceled = true;
          // The attempt in flight runs to its end (its own timeout bounds it); nothing new starts.
          try {
            yield task;
          } catch {
            // read below
          }
        }
        if (task.isFaulted) {
          if (!canceled && attempt <= prepared.maxRetries) continue;
          status = canceled ? 'Canceled' : 'Failed';
          error = canceled ? undefined : { code: 'step_failed', message: messageOf(task.result) };
          break;
        }
        const result = steps.runCommandStep.resultOf(task);
        if (result.status === 'completed') status = 'Completed';
        else if (canceled || result.status === 'canceled') status = 'Canceled';
        else if (result.retryable && attempt <= prepared.maxRetries) continue;
        else {
          status = 'Failed';
          error = { code: result.status === 'timeout' ? 'step_timeout' : 'step_failed', message: result.error ?? `The step ended ${result.status}.` };
        }
        break;
      }
    }
  } catch (err) {
    status = 'Failed';
    error = { code: 'orchestration_failed', message: messageOf(err) };
  }
  return (yield steps.finishStep({ ...input, status, error, attempts }).withRetry(SETUP_RETRY)) as { status: StepEnd };
}
