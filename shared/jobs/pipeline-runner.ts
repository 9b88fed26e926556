import { createHash, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import type { AppConfig } from '../config.js';
import { datastoreUri } from '../data/data-uri.js';
import { type CommandStepInput, runCommandStep } from '../steps/command-step.js';
import { folderContent } from './local-files.js';
import { own } from '../schemas/names.js';
import { isNotFound } from '../storage/clients.js';
import type { ReusableRun } from './job-store.js';
import { stepFolder } from './pipeline-spec.js';
import { BatchError } from '../errors.js';
import { type DataLocation, type Registry, WORKSPACE_DATASTORE } from '../registry/registry.js';
import { isTerminalJob } from '../schemas/jobs.js';
import type { JobStore } from './job-store.js';
import { ownerMetadata } from '../outputs/output-writer.js';
import { chunkInstanceId, outputFolderOf, stepInstanceId, sumCounts } from './jobs-service.js';
import { resolveEnvironment } from '../schemas/environment.js';
import {
  type DataValue,
  type Job,
  type JobCounts,
  type JobError,
  MODEL_STEP,
  type OutputTarget,
  type PipelineJobSpec,
  type StepOutput,
  type StepSpec,
  type StepState,
  emptyCounts,
  isPipelineSpec,
} from './types.js';

/** How often a running command step looks for its cancellation, ms. */
const CANCEL_POLL_MS = 500;

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
  readonly #config: AppConfig;
  readonly #registry: Registry;
  readonly #store: JobStore;
  readonly #now: () => Date;

  constructor(options: { config: AppConfig; registry: Registry; store: JobStore; now?: () => Date }) {
    this.#config = options.config;
    this.#registry = options.registry;
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
    const outputs: Record<string, StepOutput> = Object.fromEntries(Object.entries(spec.outputs).map(([name, o]) => [name, { type: o.type, uri: o.uri, location: o.location }]));
    const changed = spec.type === 'parallel' ? await this.#changedInput(spec) : undefined;
    if (changed) {
      const error = { code: 'input_changed', message: changed };
      await this.#store.updateStep(input.jobId, input.step, (s) => ({ ...s, status: 'Failed', error, completed_at: this.#now().toISOString() }));
      return { status: 'failed', type, maxRetries, error };
    }
    const fingerprint = await this.#fingerprint(job, spec, others);
    if (isPipelineSpec(job.spec) && !job.spec.pipeline.settings.force_rerun) {
      const reused = await this.#reuse(job.spec, spec, fingerprint);
      if (reused) {
        const now = this.#now().toISOString();
        await this.#store.updateStep(input.jobId, input.step, (s) =>
          s.status === 'NotStarted'
            ? {
                ...s,
                status: 'Completed',
                started_at: now,
                completed_at: now,
                fingerprint,
                outputs: reused.outputs,
                reused_from: { job: reused.job, step: reused.step },
                ...(reused.counts ? { counts: reused.counts } : {}),
                ...(reused.columns ? { columns: reused.columns } : {}),
              }
            : undefined,
        );
        return { status: 'reused', type, maxRetries };
      }
    }
    const logs = spec.type === 'command' ? await this.#logsPlace(job, spec.name) : undefined;
    await this.#store.updateStep(input.jobId, input.step, (s) =>
      s.status === 'NotStarted'
        ? { ...s, ...(bound ? { input: bound } : {}), outputs, fingerprint, ...(logs ? { logs } : {}), ...(spec.type === 'command' ? { status: 'Running', started_at: this.#now().toISOString() } : {}) }
        : undefined,
    );
    return { status: 'ready', type, maxRetries };
  }

  /** Where a command step's logs go: the step's folder's user-logs/ on the default datastore (Azure ML's user_logs), never one of its outputs' folders. */
  async #logsPlace(job: Job, step: string): Promise<{ uri: string; location: DataLocation }> {
    const store = isPipelineSpec(job.spec) ? job.spec.pipeline.settings.default_datastore.replace(/^azureml:/, '') : WORKSPACE_DATASTORE;
    const data = await this.#registry.resolveData(datastoreUri(store, `${stepFolder(job.spec.id, step)}user-logs/`), 'default_datastore', 'uri_folder');
    return { uri: data.uri, location: data.location };
  }

  /**
   * What decides whether a step can reuse an earlier run (Azure ML: same component version, same
   * input data, same literal values): the component as pinned (its registered name and version,
   * or its content when inline), the content keys of its code and model, and for each input the
   * content of the data, the literal, or the fingerprint of the step whose output it takes.
   * Outputs' places are not part of it: a reused run's outputs are copied or pointed to.
   */
  async #fingerprint(job: Job, spec: StepSpec, steps: ReadonlyMap<string, StepState>): Promise<string | undefined> {
    if (!isPipelineSpec(job.spec)) return undefined;
    const inputs: Record<string, unknown> = {};
    for (const [name, value] of Object.entries(spec.inputs).sort(([a], [b]) => a.localeCompare(b))) {
      switch (value.type) {
        case 'literal':
          inputs[name] = { literal: value.value };
          break;
        case 'none':
          inputs[name] = null;
          break;
        case 'step_output': {
          const upstream = steps.get(value.step)?.fingerprint;
          if (!upstream) return undefined;
          inputs[name] = { step: upstream, output: value.output };
          break;
        }
        default:
          inputs[name] = { data: value.content ?? (await folderContent(this.#registry, value.location, { file: value.type === 'uri_file' })).key };
      }
    }
    const component = spec.component.name && spec.component.version ? { name: spec.component.name, version: spec.component.version } : undefined;
    const what =
      spec.type === 'command'
        ? { type: spec.type, code: spec.code.content, entry: spec.entry_script, env: spec.environment_variables }
        : { type: spec.type, model: spec.work.model_content, code: spec.work.code_content, settings: spec.work.settings, split: spec.work.split ?? null, input_data: spec.input_data };
    const outputs = Object.entries(spec.outputs).map(([name, o]) => [name, o.type]).sort();
    return createHash('sha256').update(JSON.stringify({ component: component ?? null, what, inputs, outputs })).digest('hex');
  }

  /**
   * An earlier completed run with this fingerprint whose outputs are all still there: this step's
   * outputs become that run's. An output the job delivers (bound to a pipeline output) is copied to
   * the job's place, server-side; an intermediate one is read where it is. Undefined: run the step.
   */
  async #reuse(job: PipelineJobSpec, spec: StepSpec, fingerprint: string | undefined): Promise<(Omit<ReusableRun, 'contents'> & { outputs: Record<string, StepOutput> }) | undefined> {
    if (!fingerprint) return undefined;
    const earlier = await this.#store.getReusable(fingerprint);
    if (!earlier || earlier.job === job.id) return undefined;
    const delivered = new Set(Object.values(job.pipeline.outputs).map((o) => o.uri));
    const outputs: Record<string, StepOutput> = {};
    for (const [name, target] of Object.entries(spec.outputs)) {
      const from = own(earlier.outputs, name);
      if (!from) return undefined;
      // The earlier outputs must be exactly what that run left (the same files, sizes and ETags):
      // a folder emptied and taken over by another job, or files changed since, are not its outputs.
      const files = await folderContent(this.#registry, from.location, { file: from.type === 'uri_file' });
      if (files.files.length === 0 || files.key !== own(earlier.contents ?? {}, name)) return undefined;
      if (!delivered.has(target.uri)) {
        outputs[name] = from;
        continue;
      }
      const copied = await this.#copy(job.id, from, target, files.files);
      if (!copied) return undefined;
      outputs[name] = copied;
    }
    return { job: earlier.job, step: earlier.step, outputs, counts: earlier.counts, columns: earlier.columns };
  }

  /**
   * Copies an earlier output to a job's place inside one storage account (a server-side copy) and
   * says where it now is; undefined when the accounts differ. A uri_file place that is a folder
   * keeps the file's name.
   */
  async #copy(owner: string, from: StepOutput, to: OutputTarget, files: { blob: string; relative: string }[]): Promise<StepOutput | undefined> {
    const source = this.#registry.open(from.location);
    const target = this.#registry.open(to.location);
    if (new URL(source.url).host !== new URL(target.url).host || source.accountName !== target.accountName) return undefined;
    const prefix = from.location.path === '' || from.location.path.endsWith('/') ? from.location.path : `${from.location.path}/`;
    const toFolder = to.location.path === '' || to.location.path.endsWith('/');
    let placed: StepOutput = { type: to.type, uri: to.uri, location: to.location };
    for (const file of files) {
      let name: string;
      if (to.type === 'uri_file') {
        name = toFolder ? `${to.location.path}${file.relative}` : to.location.path;
        placed = { type: to.type, uri: toFolder ? `${to.uri}${encodeURIComponent(file.relative)}` : to.uri, location: { ...to.location, path: name } };
      } else name = `${to.location.path}${file.blob.startsWith(prefix) ? file.blob.substring(prefix.length) : file.relative}`;
      const poller = await target.getBlobClient(name).beginCopyFromURL(source.getBlobClient(file.blob).url, ownerMetadata(owner));
      await poller.pollUntilDone();
    }
    return placed;
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
        return { type: output.type ?? 'uri_folder', path: output.uri, uri: output.uri, location: output.location };
      }
      default:
        throw new BatchError('validation_failed', `${field}: a parallel step's input_data must be data, not ${value.type === 'literal' ? 'a literal' : 'left unbound'}.`, {
          issues: [{ field, message: 'must be data' }],
        });
    }
  }

  /**
   * Runs one attempt of a command step (shared/steps/command-step.ts): its data inputs as they
   * were bound (a job input, or the output an earlier step recorded), its literals, its outputs'
   * places. The attempt's log is written to the step's user_logs. A step being canceled runs no
   * new attempt.
   */
  async runCommandAttempt(input: { jobId: string; step: string; attempt: number }): Promise<CommandAttempt> {
    const job = await this.#job(input.jobId);
    const spec = stepsOf(job)?.find((s) => s.name === input.step);
    if (spec?.type !== 'command') throw new BatchError('internal', `Job '${input.jobId}' has no command step '${input.step}'.`, { retryable: false });
    const steps = await this.#store.listSteps(input.jobId);
    const state = steps.get(input.step);
    if (!state || state.status === 'Canceling' || state.status === 'Canceled' || job.state.status === 'Canceling') return { status: 'canceled', retryable: false };
    const inputs: Record<string, CommandStepInput> = {};
    for (const [name, value] of Object.entries(spec.inputs)) {
      if (value.type === 'none') inputs[name] = undefined;
      else if (value.type === 'literal') inputs[name] = { type: 'literal', value: value.value };
      else if (value.type === 'step_output') {
        const output = steps.get(value.step)?.outputs?.[value.output];
        if (!output) throw new BatchError('internal', `jobs.${spec.name}.inputs.${name}: step '${value.step}' recorded no output '${value.output}'.`, { retryable: false });
        inputs[name] = { type: output.type ?? 'uri_folder', location: output.location };
      } else inputs[name] = { type: value.type, location: value.location };
    }
    const outputs = Object.fromEntries(Object.entries(spec.outputs).map(([name, o]) => [name, { type: o.type, location: o.location }]));
    const changed = await this.#changedInput(spec);
    if (changed) return { status: 'failed', retryable: false, error: changed };
    // The places are this job's alone (claimed empty at invoke, or its own folders): whatever an
    // earlier attempt left there (one killed with the host) goes, so the outputs are this attempt's only.
    await Promise.all(Object.values(spec.outputs).map((o) => this.#clear(o)));
    // Cancel reaches a running script: the step's record is watched, and its thread stopped.
    const canceled = new AbortController();
    const watch = setInterval(() => {
      this.#store.getStep(input.jobId, input.step).then(
        (s) => {
          if (s?.status === 'Canceling' || s?.status === 'Canceled') canceled.abort();
        },
        () => undefined,
      );
    }, CANCEL_POLL_MS);
    const result = await runCommandStep({
      signal: canceled.signal,
      registry: this.#registry,
      code: spec.code.location,
      codeContent: spec.code.content,
      entryScript: spec.entry_script,
      inputs,
      outputs,
      environment: resolveEnvironment(spec.environment_variables),
      timeoutMs: spec.timeout * 1000,
      workDir: join(this.#config.cacheDir, 'work', input.jobId, input.step, `a${input.attempt}-${randomBytes(4).toString('hex')}`),
      cacheDir: this.#config.cacheDir,
      jobId: input.jobId,
      stepName: input.step,
      attempt: input.attempt,
      now: this.#now,
    }).finally(() => clearInterval(watch));
    if (state.logs) {
      const text = result.logs.map((e) => `${e.time} ${e.level.toUpperCase()} ${e.message}\n`).join('') + `${this.#now().toISOString()} attempt ${input.attempt} ${result.status}${result.error ? `: ${result.error}` : ''} (${result.seconds.toFixed(3)} s)\n`;
      await outputFolderOf(this.#registry, state.logs, input.jobId).upload(`attempt-${input.attempt}.log`, text, 'text/plain; charset=utf-8');
    }
    if (result.status === 'completed') {
      // A uri_file output placed in a folder is where the script's file went: the next steps read that.
      const placed: Record<string, StepOutput> = {};
      for (const [name, sent] of Object.entries(result.outputs)) {
        const target = own(spec.outputs, name);
        if (target?.type !== 'uri_file' || sent.file === undefined || sent.file === target.location.path) continue;
        placed[name] = { type: 'uri_file', uri: `${target.uri}${sent.file.substring(target.location.path.length).split('/').map(encodeURIComponent).join('/')}`, location: { ...target.location, path: sent.file } };
      }
      if (Object.keys(placed).length > 0) await this.#store.updateStep(input.jobId, input.step, (s) => ({ ...s, outputs: { ...(s.outputs ?? {}), ...placed } }));
    }
    return { status: result.status, retryable: result.retryable, error: result.error };
  }

  /**
   * Why a step must not run: one of the job's data inputs it reads no longer holds what it held
   * at invoke (a file rewritten, added or removed); undefined when all are unchanged.
   */
  async #changedInput(spec: StepSpec): Promise<string | undefined> {
    for (const [name, value] of Object.entries(spec.inputs)) {
      if ((value.type !== 'uri_file' && value.type !== 'uri_folder') || value.content === undefined) continue;
      const now = await folderContent(this.#registry, value.location, { file: value.type === 'uri_file' });
      if (now.key !== value.content) return `input_changed: jobs.${spec.name}.inputs.${name} (${value.uri}) changed after the job was invoked; a job reads its inputs as they were then. Invoke a new job to use the new content.`;
    }
    return undefined;
  }

  /** Removes whatever is at an output's place (every blob under a folder, or the one blob). */
  async #clear(target: OutputTarget): Promise<void> {
    const container = this.#registry.open(target.location);
    const path = target.location.path;
    const isFolder = path === '' || path.endsWith('/');
    if (!isFolder) {
      await container.getBlobClient(path).deleteIfExists();
      return;
    }
    const names: string[] = [];
    try {
      for await (const blob of container.listBlobsFlat({ prefix: path })) names.push(blob.name);
    } catch (err) {
      if (isNotFound(err)) return;
      throw err;
    }
    for (const name of names) await container.getBlobClient(name).deleteIfExists();
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
    // A step that ran to completion (not one that reused another) can be reused by later jobs.
    if (state && status === 'Completed' && state.fingerprint && !state.reused_from && state.outputs) {
      const contents: Record<string, string> = {};
      for (const [name, output] of Object.entries(state.outputs)) contents[name] = (await folderContent(this.#registry, output.location, { file: output.type === 'uri_file' })).key;
      await this.#store.putReusable(state.fingerprint, { job: input.jobId, step: input.step, outputs: state.outputs, contents, counts: state.counts, columns: state.columns });
    }
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
