/**
 * Registers the batch job's activities and exports their typed handles, which the orchestrators
 * call (never activity names as strings).
 */
import * as df from 'durable-functions';
import { BatchError } from '../shared/errors.js';
import type { EngineRef, FinalizeInput, FinalizeResult, MiniBatchInput, MiniBatchResult, PlanProgress, PreparedJob } from '../shared/jobs/job-runner.js';
import { plannerInstanceId, stepInstanceId } from '../shared/jobs/jobs-service.js';
import type { JournalLine } from '../shared/jobs/journal.js';
import type { CommandAttempt, PipelinePlan, PreparedStep, StepEnd } from '../shared/jobs/pipeline-runner.js';
import type { JobCounts, JobError } from '../shared/jobs/types.js';
import { services } from '../shared/services.js';
import type { StepDoneEvent } from './job/pipeline-job.js';
import { typedActivity, typedClientActivity } from './job/typed-durable.js';

// Failures carry their code and whether a retry can help; orchestrators read this, not messages.
df.app.setExceptionPropertiesProvider({
  getExceptionProperties: (err: unknown) =>
    err instanceof BatchError ? { code: err.code, retryable: err.retryable } : { code: 'internal', retryable: true },
});

// ---------------------------------------------------------------- the mini-batch engine

export const prepareJob = typedActivity<EngineRef, PreparedJob>('prepareJob', (input) => services().runner.prepare(input));

export const planPages = typedActivity<EngineRef, PlanProgress>('planPages', (input) => services().runner.planPages(input));

export const awaitPlan = typedClientActivity<EngineRef & { chunk: number }, PlanProgress>('awaitPlan', (input, client) =>
  services().runner.awaitPlan(input, {
    // The planner is a sub-orchestration of the step: once it has ended, no one will move the plan on.
    plannerEnded: async () => {
      const status = await client.getStatus(plannerInstanceId(input.jobId, input.step)).catch(() => undefined);
      return ['Completed', 'Failed', 'Terminated', 'Canceled'].includes(String(status?.runtimeStatus));
    },
  }),
);

export const scoreMiniBatch = typedActivity<MiniBatchInput, MiniBatchResult>('scoreMiniBatch', (input) => services().runner.scoreMiniBatch(input));

export const recordMiniBatchFailure = typedActivity<MiniBatchInput & { error: string }, { items: number; jobFailures: number; nonce: string }>('recordMiniBatchFailure', (input) =>
  services().runner.recordFailure(input),
);

export const recordJournal = typedActivity<EngineRef & { lines: JournalLine[] }, null>('recordJournal', async (input) => {
  await services().runner.recordJournal(input);
  return null;
});

export const recordProgress = typedActivity<EngineRef & { lane: number; counts: JobCounts }, null>('recordProgress', async (input) => {
  await services().runner.progress(input);
  return null;
});

export const haltJob = typedActivity<EngineRef & { error: JobError }, null>('haltJob', async (input) => {
  await services().runner.halt(input);
  return null;
});

export const finalizeJob = typedActivity<FinalizeInput, FinalizeResult>('finalizeJob', (input) => services().runner.finalize(input));

// ---------------------------------------------------------------- jobs as graphs of steps

/** The orchestrator that runs one step (registered in orchestrators.ts; named here to start it). */
export const PIPELINE_STEP_ORCHESTRATOR = 'pipelineStep';

export const preparePipeline = typedActivity<{ jobId: string }, PipelinePlan>('preparePipeline', (input) => services().pipelines.preparePipeline(input.jobId));

export const startSteps = typedClientActivity<{ jobId: string; steps: string[] }, null>('startSteps', async (input, client) => {
  for (const step of input.steps) {
    const instanceId = stepInstanceId(input.jobId, step);
    // Activities run at least once: a step started by an earlier run of this one is left alone
    // (starting it again would overwrite it in Azure).
    if (await exists(client, instanceId)) continue;
    await client.startNew(PIPELINE_STEP_ORCHESTRATOR, { instanceId, input: { jobId: input.jobId, step } });
  }
  return null;
});

export const cancelSteps = typedClientActivity<{ jobId: string; steps: string[] }, null>('cancelSteps', async (input, client) => {
  const instances = await services().pipelines.cancelSteps(input);
  // Steps that already ended (or chunks not started yet) do not listen; that is fine.
  await Promise.all(instances.map((id) => client.raiseEvent(id, 'cancel', { at: new Date().toISOString() }).catch(() => undefined)));
  return null;
});

export const finalizePipeline = typedActivity<{ jobId: string; canceled: boolean; error?: JobError | undefined }, { status: 'Completed' | 'Failed' | 'Canceled' }>('finalizePipeline', (input) =>
  services().pipelines.finalizePipeline(input),
);

export const prepareStep = typedActivity<{ jobId: string; step: string }, PreparedStep>('prepareStep', (input) => services().pipelines.prepareStep(input));

export const runCommandStep = typedActivity<{ jobId: string; step: string; attempt: number }, CommandAttempt>('runCommandStep', (input) => services().pipelines.runCommandAttempt(input));

export const finishStep = typedClientActivity<{ jobId: string; step: string; status: StepEnd; error?: JobError | undefined; attempts?: number | undefined }, { status: StepEnd }>(
  'finishStep',
  async (input, client) => {
    const finished = await services().pipelines.finishStep(input);
    await client.raiseEvent(input.jobId, 'stepDone', { step: input.step, status: finished.status } satisfies StepDoneEvent);
    return finished;
  },
);

async function exists(client: df.DurableClient, instanceId: string): Promise<boolean> {
  try {
    const status = await client.getStatus(instanceId);
    return status !== undefined && status !== null && typeof status.runtimeStatus === 'string';
  } catch {
    return false;
  }
}
