import type { AppConfig } from '../config.js';
import { BatchError } from '../errors.js';
import type { Registry } from '../registry/registry.js';
import { isTerminalJob } from '../schemas/jobs.js';
import type { JobStore } from './job-store.js';
import { chunkInstanceId, stepInstanceId, sumCounts } from './jobs-service.js';
import {
  type DataValue,
  type Job,
  type JobCounts,
  type JobError,
  MODEL_STEP,
  type StepSpec,
  type StepState,
  emptyCounts,
  isPipelineSpec,
} from './types.js';

/** What the pipeline orchestration needs to run a job's graph (names only). */
export interface PipelinePlan {
  status: 'ready' | 'failed' | 'canceled';
  /** The steps in an order where each comes after the steps it needs. */
  steps: { name: string; needs: string[] }[];
  continueOnStepFailure: boolean;
  error?: JobError | undefined;
}

/** What a step orchestration does next. */
export interface PreparedStep {
  /** `ready`: run it; `reused`: done, an earlier run's outputs stand for it; `canceled`/`failed`: do not run it. */
  status: 'ready' | 'reused' | 'canceled' | 'failed';
  type: 'command' | 'parallel';
  /** Attempts a command step may retry (`retry_settings.max_retries`). */
  maxRetries: number;
  error?: JobError | undefined;
}

/** How one attempt of a command step ended. */
export interface CommandAttempt {
  status: 'completed' | 'failed' | 'timeout' | 'canceled';
  retryable: boolean;
  error?: string | undefined;
}

/** How a step ended, as the pipeline orchestration hears of it. */
export type StepEnd = 'Completed' | 'Failed' | 'Canceled' | 'Skipped';

/** The steps of a job as the orchestration schedules them: a model deployment's job is one. */
function stepsOf(job: Job): StepSpec[] | undefined {
  return isPipelineSpec(job.spec) ? job.spec.pipeline.steps : undefined;
}

/**
 * The work behind the pipeline orchestrations' activities: a job as a graph of steps (a model
 * deployment's job is one parallel step, `batchscoring`). Steps' records live beside the job's;
 * the mini-batch engine (JobRunner) runs parallel steps, command steps run through `runCommand`.
 * Each method is safe to run more than once (activities run at least once).
 */
export class PipelineRunner {
  readonly #store: JobStore;
  readonly #now: () => Date;

  constructor(options: { config: AppConfig; registry: Registry; store: JobStore; now?: () => Date }) {
    this.#store = options.store;
    this.#now = options.now ?? (() => new Date());
  }

  async #job(jobId: string): Promise<Job> {
    const job = await this.#store.get(jobId);
    if (!job) throw new BatchError('not_found', `Job '${jobId}' does not exist.`, { retryable: false });
    return job;
  }

  /** Starts the job (Preparing → Running) and says which steps it has and what each needs. */
  async preparePipeline(jobId: string): Promise<PipelinePlan> {
    const job = await this.#job(jobId);
    const steps = stepsOf(job);
    const plan: PipelinePlan = {
      status: 'ready',
      steps: steps ? steps.map((s) => ({ name: s.name, needs: s.needs })) : [{ name: MODEL_STEP, needs: [] }],
      continueOnStepFailure: isPipelineSpec(job.spec) ? job.spec.pipeline.settings.continue_on_step_failure : false,
    };
    const state = await this.#store.update(jobId, (s) =>
      s.status === 'NotStarted' ? { ...s, status: 'Running', started_at: this.#now().toISOString() } : undefined,
    );
    if (state?.status === 'Canceling' || state?.status === 'Canceled') return { ...plan, status: 'canceled' };
    return plan;
  }

  /**
   * Gets a step ready to run: binds the inputs it takes from steps that ran before it (their
   * outputs as they recorded them), and says what to run. A step of a job being canceled is not run.
   */
  async prepareStep(input: { jobId: string; step: string }): Promise<PreparedStep> {
    const job = await this.#job(input.jobId);
    const spec = stepsOf(job)?.find((s) => s.name === input.step);
    const type = spec?.type ?? 'parallel';
    const maxRetries = spec?.type === 'command' ? spec.max_retries : 0;
    if (job.state.status === 'Canceling' || job.state.status === 'Canceled') {
      await this.#store.updateStep(input.jobId, input.step, (s) => (isTerminalJob(s.status as 'Canceled') || s.status === 'Skipped' ? undefined : { ...s, status: 'Canceled', completed_at: this.#now().toISOString() }));
      return { status: 'canceled', type, maxRetries };
    }
    if (!spec) return { status: 'ready', type, maxRetries };
    const others = await this.#store.listSteps(input.jobId);
    let bound: (DataValue & { name: string }) | undefined;
    if (spec.type === 'parallel') {
      const value = spec.inputs[spec.input_data];
      try {
        bound = value ? { name: spec.input_data, ...this.#dataOf(value, others, `${spec.name}.inputs.${spec.input_data}`) } : undefined;
      } catch (err) {
        if (!(err instanceof BatchError)) throw err;
        const error = { code: err.code, message: err.message };
        await this.#store.updateStep(input.jobId, input.step, (s) => ({ ...s, status: 'Failed', error, completed_at: this.#now().toISOString() }));
        return { status: 'failed', type, maxRetries, error };
      }
    }
    const outputs = Object.fromEntries(Object.entries(spec.outputs).map(([name, o]) => [name, { uri: o.uri, location: o.location }]));
    await this.#store.updateStep(input.jobId, input.step, (s) =>
      s.status === 'NotStarted' ? { ...s, ...(bound ? { input: bound } : {}), outputs, ...(spec.type === 'command' ? { status: 'Running', started_at: this.#now().toISOString() } : {}) } : undefined,
    );
    return { status: 'ready', type, maxRetries };
  }

  /** The data a step input names: a job input's, or the output an earlier step recorded. */
  #dataOf(value: StepSpec['inputs'][string], steps: ReadonlyMap<string, StepState>, field: string): DataValue {
    switch (value.type) {
      case 'uri_file':
      case 'uri_folder':
        return value;
      case 'step_output': {
        const output = steps.get(value.step)?.outputs?.[value.output];
        if (!output) throw new BatchError('internal', `${field}: step '${value.step}' recorded no output '${value.output}'.`, { retryable: false });
        return { type: 'uri_folder', path: output.uri, uri: output.uri, location: output.location };
      }
      default:
        throw new BatchError('validation_failed', `${field}: a parallel step's input_data must be data, not ${value.type === 'literal' ? 'a literal' : 'left unbound'}.`, {
          issues: [{ field, message: 'must be data' }],
        });
    }
  }

  /** Runs one attempt of a command step (see shared/steps). */
  runCommandAttempt(input: { jobId: string; step: string; attempt: number }): Promise<CommandAttempt> {
    return Promise.reject(new BatchError('unsupported', `Step '${input.step}' is a command step, which this version cannot run yet.`, { retryable: false }));
  }

  /**
   * Records how a step ended, after its own orchestration is done with it. A parallel step's record
   * was ended by the engine already; a command step's is ended here. Returns how it ended.
   */
  async finishStep(input: { jobId: string; step: string; status: StepEnd; error?: JobError | undefined; attempts?: number | undefined }): Promise<{ status: StepEnd }> {
    const now = this.#now().toISOString();
    const state = await this.#store.updateStep(input.jobId, input.step, (s) => {
      if (isTerminalJob(s.status as 'Completed') || s.status === 'Skipped') return undefined;
      return { ...s, status: input.status, completed_at: now, ...(input.error ? { error: input.error } : {}), ...(input.attempts ? { attempts: input.attempts } : {}) };
    });
    const status = state?.status;
    return { status: status === 'Completed' || status === 'Failed' || status === 'Canceled' || status === 'Skipped' ? status : input.status };
  }

  /**
   * Stops steps that are still going (the job was canceled, or a step failed and
   * continue_on_step_failure is false): their records say Canceling, which their mini-batches and
   * attempts check; returns the orchestration instances to tell.
   */
  async cancelSteps(input: { jobId: string; steps: string[] }): Promise<string[]> {
    const instances: string[] = [];
    for (const name of input.steps) {
      const state = await this.#store.updateStep(input.jobId, name, (s) =>
        s.status === 'Running' || s.status === 'Preparing' || s.status === 'NotStarted' ? { ...s, status: 'Canceling' } : undefined,
      );
      instances.push(stepInstanceId(input.jobId, name), ...Array.from({ length: state?.chunks ?? 0 }, (_, c) => chunkInstanceId(input.jobId, c, name)));
    }
    return instances;
  }

  /**
   * Ends the job once no step runs: steps that never started are Skipped; the job is Canceled when
   * it was canceled, Failed when a step failed (with that step's error), else Completed. Its counts
   * are its parallel steps' (a model deployment's job: its one step's, columns too).
   */
  async finalizePipeline(input: { jobId: string; canceled: boolean; error?: JobError | undefined }): Promise<{ status: 'Completed' | 'Failed' | 'Canceled' }> {
    const job = await this.#job(input.jobId);
    if (isTerminalJob(job.state.status)) return { status: job.state.status as 'Completed' | 'Failed' | 'Canceled' };
    const now = this.#now().toISOString();
    const steps = await this.#store.listSteps(input.jobId);
    for (const [name, step] of steps) {
      if (step.status === 'NotStarted') {
        const skipped = await this.#store.updateStep(input.jobId, name, (s) => (s.status === 'NotStarted' ? { ...s, status: 'Skipped', completed_at: now } : undefined));
        if (skipped) steps.set(name, skipped);
      }
    }
    const order = stepsOf(job)?.map((s) => s.name) ?? [MODEL_STEP];
    const failed = order.map((name) => [name, steps.get(name)] as const).find(([, s]) => s?.status === 'Failed');
    let status: 'Completed' | 'Failed' | 'Canceled' = 'Completed';
    let error = input.error;
    if (input.canceled) status = 'Canceled';
    else if (failed || error) {
      status = 'Failed';
      const [name, step] = failed ?? [];
      const stepError = step?.error;
      error ??= stepError && name ? (isPipelineSpec(job.spec) ? { ...stepError, message: `Step '${name}' failed: ${stepError.message}`, details: { step: name } } : stepError) : { code: 'step_failed', message: `Step '${name ?? ''}' failed.` };
    }
    const parallel = [...steps.values()].flatMap((s) => (s.counts ? [s.counts] : []));
    const counts: JobCounts = parallel.length > 0 ? parallel.reduce(sumCounts, emptyCounts()) : job.state.counts;
    const model = isPipelineSpec(job.spec) ? undefined : steps.get(MODEL_STEP);
    // A model deployment's job says what its one step says (its status, error and columns).
    if (model && !input.canceled && (model.status === 'Completed' || model.status === 'Failed' || model.status === 'Canceled')) {
      status = model.status;
      error = model.error;
    }
    await this.#store.update(input.jobId, (s) => ({
      ...s,
      status,
      completed_at: now,
      counts,
      error,
      ...(model?.columns ? { columns: model.columns } : {}),
    }));
    return { status };
  }
}
