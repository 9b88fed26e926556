import * as df from 'durable-functions';
import type { PipelinePlan, StepEnd } from '../../shared/jobs/pipeline-runner.js';
import type { JobError } from '../../shared/jobs/types.js';
import { messageOf } from './batch-chunk.js';
import type { TypedActivity } from './typed-durable.js';

export interface PipelineJobActivities {
  preparePipeline: TypedActivity<{ jobId: string }, PipelinePlan>;
  /** Starts the steps' orchestrations (each a top-level instance that reports back with `stepDone`). */
  startSteps: TypedActivity<{ jobId: string; steps: string[] }, null>;
  cancelSteps: TypedActivity<{ jobId: string; steps: string[] }, null>;
  finalizePipeline: TypedActivity<{ jobId: string; canceled: boolean; error?: JobError | undefined }, { status: 'Completed' | 'Failed' | 'Canceled' }>;
}

/** The event a step's orchestration raises to its job's when it has ended. */
export interface StepDoneEvent {
  step: string;
  status: StepEnd;
}

/** Storage hiccups in setup and finish are retried; a job's own failures are results, not exceptions. */
export const SETUP_RETRY = new df.RetryOptions(2000, 4);

/**
 * A job as a graph of steps (a model deployment's job is one parallel step): each step starts as
 * soon as the steps it takes inputs from have completed, independent steps run side by side, and
 * each reports back when it ends. A failed step's dependants never start; with
 * `continue_on_step_failure` false the steps still running are stopped too. Cancel reaches every
 * running step. The job ends once no step runs.
 *
 * Steps run as orchestrations of their own, started by an activity, and report with a `stepDone`
 * event: the alternative, waiting on whichever of several sub-orchestrations ends first, would put
 * tasks into a second Task.any, which the Durable extension in Azure mishandles for JavaScript
 * (azure-functions-durable-js#574). Each wait here is a new pair of event waiters.
 */
export function* pipelineJob(context: df.OrchestrationContext, input: { jobId: string }, steps: PipelineJobActivities): Generator<df.Task, { jobId: string; status: string }, unknown> {
  const { jobId } = input;
  let canceled = false;
  let error: JobError | undefined;
  let plan: PipelinePlan | undefined;
  try {
    plan = (yield steps.preparePipeline({ jobId }).withRetry(SETUP_RETRY)) as PipelinePlan;
    if (plan.status === 'canceled') canceled = true;
    if (plan.status === 'failed') error = plan.error;
    if (plan.status === 'ready') {
      const state = new Map<string, 'waiting' | 'running' | StepEnd>(plan.steps.map((s) => [s.name, 'waiting']));
      let halted = false;
      for (;;) {
        if (!canceled && !halted) {
          const ready = plan.steps.filter((s) => state.get(s.name) === 'waiting' && s.needs.every((n) => state.get(n) === 'Completed')).map((s) => s.name);
          if (ready.length > 0) {
            yield steps.startSteps({ jobId, steps: ready }).withRetry(SETUP_RETRY);
            for (const name of ready) state.set(name, 'running');
          }
        }
        const running = [...state].filter(([, v]) => v === 'running').map(([k]) => k);
        if (running.length === 0) break;
        const done = context.df.waitForExternalEvent('stepDone');
        const cancel = context.df.waitForExternalEvent('cancel');
        const winner = yield context.df.Task.any([done, cancel]);
        if (winner === cancel) {
          if (!canceled) {
            canceled = true;
            yield steps.cancelSteps({ jobId, steps: running }).withRetry(SETUP_RETRY);
          }
          continue;
        }
        const event = done.result as StepDoneEvent;
        // A step's report can arrive twice (its activity ran twice): only the first counts.
        if (state.get(event.step) !== 'running') continue;
        state.set(event.step, event.status);
        if (event.status === 'Failed' && !plan.continueOnStepFailure && !halted) {
          halted = true;
          const others = running.filter((name) => name !== event.step);
          if (others.length > 0) yield steps.cancelSteps({ jobId, steps: others }).withRetry(SETUP_RETRY);
        }
      }
    }
  } catch (err) {
    error = { code: 'orchestration_failed', message: messageOf(err) };
  }
  const final = (yield steps.finalizePipeline({ jobId, canceled, error }).withRetry(SETUP_RETRY)) as { status: string };
  return { jobId, status: final.status };
}
