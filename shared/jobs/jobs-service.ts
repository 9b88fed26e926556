import { own } from '../schemas/names.js';
import { createHash, randomBytes } from 'node:crypto';
import type { AppConfig } from '../config.js';
import { datastoreUri, parseDataUri } from '../data/data-uri.js';
import { BatchError, notFound } from '../errors.js';
import { redactSecrets } from '../redact.js';
import { OutputFolder } from '../outputs/output-writer.js';
import { type DataLocation, type Registry, type ResolvedData, WORKSPACE_DATASTORE } from '../registry/registry.js';
import { type FolderContent, folderContent } from './local-files.js';
import { DEFAULT_OUTPUT_NAME, type InvokeBody, type JobStatus, invokeBody, isTerminalJob, pipelineJobBody, rerunBody } from '../schemas/jobs.js';
import { endpointName } from '../schemas/resources.js';
import { folderPrefix, isFileIn } from '../planning/list-input.js';
import { parseOrThrow } from '../schemas/validate.js';
import { isNotFound } from '../storage/clients.js';
import type { InvokerFilter, JobStore, OutputClaim } from './job-store.js';
import { mergeSettings } from './settings.js';
import { jobSizeProblem } from '../limits.js';
import { ERRORS_FILE, type Invoker, type Job, type JobCounts, type JobSpec, LOG_FILE, MODEL_STEP, type ModelJobSpec, type ParallelWork, type PipelineJobSpec, REPORT_FILE, SUMMARY_FILE, type StepInput, type StepState, emptyCounts, isPipelineSpec } from './types.js';
import { type PipelineSpecContext, buildPipelineSpec, pipelineBodyOfJob } from './pipeline-spec.js';
import { resolvePipeline } from '../components/graph.js';
import { type PipelineComponentDoc, isComponentRef } from '../components/types.js';
import type { DeploymentDoc } from '../registry/types.js';
import type { DeploymentSettings } from '../schemas/resources.js';
import { fileFormat } from '../data/records.js';
import { requiredInputColumns, rowJoinOf, rowJoinProblem } from '../scoring/columns.js';
import { storedColumns } from '../scoring/tabular.js';
import { predictionsHeader } from '../scoring/rows.js';
import type { RerunSource } from './rerun.js';
import { type OwnedOutput, readOwnedOutput } from './output-access.js';
import { JobWorkArea, unlistedRest } from './work-area.js';

export interface InvokeRequest {
  endpoint: string;
  /** The azureml-model-deployment header, if sent. */
  deploymentHeader: string | undefined;
  body: unknown;
  idempotencyKey: string | undefined;
  invokedBy: Invoker;
  /** Starts the job's orchestration; the Functions layer supplies it (durable client). */
  start: (jobId: string) => Promise<void>;
  /**
   * Fills in an output path written as a template (a trigger rule's `output_path`) once the job's
   * id and creation time are known. The Idempotency-Key compares the request as given, before this.
   */
  expandOutput?: ((path: string, job: { id: string; created_at: string }) => string) | undefined;
}

export interface InvokeResult {
  job: Job;
  /** True when an Idempotency-Key matched an earlier invocation and that job is returned. */
  replayed: boolean;
}


/** What #create records for a new job. */
interface JobToCreate {
  spec: JobSpec;
  steps: Record<string, StepState>;
  /** Output places the job claims; `empty`: the place must hold no file at all. */
  claims: { target: { uri: string; location: DataLocation }; files: readonly string[]; empty: boolean; field: string }[];
  /** The data the job reads: no output may be, contain or lie inside any of it. */
  inputs: { location: DataLocation; field: string }[];
}

/** The data places among a job's (or a step's) inputs, with the field that names each. */
function dataInputs(inputs: Record<string, StepInput>, prefix: string): { location: DataLocation; field: string }[] {
  return Object.entries(inputs).flatMap(([name, value]) => (value.type === 'uri_file' || value.type === 'uri_folder' ? [{ location: value.location, field: `${prefix}${name}.path` }] : []));
}

/** Job ids sort by creation time and are unique: bj-20261126T201500-1a2b3c4d. */
export function newJobId(now: Date): string {
  const stamp = now.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, '');
  return `bj-${stamp}-${randomBytes(4).toString('hex')}`.toLowerCase();
}

function hashRequest(endpoint: string, deployment: string | undefined, body: InvokeBody): string {
  return createHash('sha256').update(JSON.stringify({ endpoint, deployment: deployment ?? null, body })).digest('hex');
}

/** How long a request waits for the job of an earlier request with its Idempotency-Key to be recorded. */
const REPLAY_WAIT_MS = 10_000;

/** An invocation that died between claiming an output folder and recording its job leaves a claim this old at most. */
const ORPHAN_CLAIM_MS = 60_000;

/** An output folder, where the job's spec put it (never looked up by name again). */
export function outputFolderOf(registry: Registry, target: { location: DataLocation }, owner?: string): OutputFolder {
  return new OutputFolder(registry.open(target.location), target.location.path, owner);
}

/** What identifies an output folder physically: the container's URL and the folder's prefix. */
export function outputFolderKey(registry: Registry, location: DataLocation): string {
  const url = new URL(registry.open(location).url);
  return `${url.origin}${url.pathname.replace(/\/+$/, '')}/${folderPrefix(location.path)}`;
}

/**
 * Invoking endpoints and managing jobs: validation, deployment routing, settings merge,
 * idempotency, and the job records. Free of Functions types; the trigger passes what it needs.
 */
export class JobsService {
  readonly #registry: Registry;
  readonly #store: JobStore;
  readonly #now: () => Date;
  readonly #limits: AppConfig['limits'];
  readonly #workArea: JobWorkArea;

  constructor(options: { config: AppConfig; registry: Registry; store: JobStore; workArea?: JobWorkArea | undefined; now?: () => Date }) {
    this.#limits = options.config.limits;
    this.#workArea = options.workArea ?? new JobWorkArea({ config: options.config });
    this.#registry = options.registry;
    this.#store = options.store;
    this.#now = options.now ?? (() => new Date());
  }

  /**
   * Invokes an endpoint: validates everything, claims what the job will own (its idempotency key,
   * its output folder), records the job and starts its orchestration. Nothing is left behind when
   * any step fails: claims made so far are released and the job record removed.
   *
   * An Idempotency-Key is looked up before any check that the first job's own effects can change
   * (its output folder is claimed and filled by then), so a retry always gets the first job back.
   */
  async invoke(request: InvokeRequest): Promise<InvokeResult> {
    const body = parseOrThrow(invokeBody, request.body, 'request body');
    const key = request.idempotencyKey;
    if (key !== undefined && (key.length === 0 || key.length > 255)) {
      throw new BatchError('validation_failed', 'The Idempotency-Key header must be 1-255 characters.', {
        issues: [{ field: 'Idempotency-Key', message: 'must be 1-255 characters' }],
      });
    }
    const endpoint = await this.#registry.requireEndpoint(request.endpoint);
    const scope = { name: request.endpoint, uid: endpoint.doc.uid ?? '' };
    const requestHash = hashRequest(request.endpoint, request.deploymentHeader, body);
    if (key !== undefined) {
      const used = await this.#store.findKey(scope, key);
      if (used) return this.#replay(used, requestHash);
    }

    const header = request.deploymentHeader?.trim() || undefined;
    if (header !== undefined) parseOrThrow(endpointName, header, 'the azureml-model-deployment header', 'azureml-model-deployment');
    const deploymentName = header ?? endpoint.doc.defaults.deployment_name;
    if (!deploymentName) {
      throw new BatchError(
        'no_default_deployment',
        `No valid deployments to route to: endpoint '${request.endpoint}' has no default deployment. Set defaults.deployment_name on the endpoint, or use the azureml-model-deployment header to choose one.`,
        { details: { header: 'azureml-model-deployment', field: 'azureml-model-deployment' } },
      );
    }
    const found = await this.#registry.getAnyDeployment(request.endpoint, deploymentName);
    if (!found) {
      throw notFound('Deployment', `${request.endpoint}/${deploymentName}`, request.deploymentHeader ? { header: 'azureml-model-deployment', field: 'azureml-model-deployment' } : { field: 'defaults.deployment_name' });
    }
    const now = this.#now();
    const jobId = newJobId(now);
    const base = {
      id: jobId,
      runs_as: 'steps' as const,
      endpoint: request.endpoint,
      endpoint_uid: scope.uid || undefined,
      deployment: deploymentName,
      display_name: body.display_name,
      description: body.description,
      tags: body.tags,
      invoked_by: request.invokedBy,
      created_at: now.toISOString(),
    };
    const doc = found.doc;
    let created: JobToCreate;
    if (doc.type === 'pipeline') {
      for (const field of ['settings', 'resources', 'split'] as const) {
        if (body[field] !== undefined) {
          throw new BatchError('validation_failed', `${field}: a pipeline deployment's job runs with its components' settings; ${field} can only be given to a model deployment's job.`, {
            issues: [{ field, message: 'not for a pipeline deployment' }],
          });
        }
      }
      const pipeline = await this.#registry.pipelineComponentOf(doc);
      const spec: PipelineJobSpec = {
        ...base,
        kind: 'pipeline',
        pipeline: await buildPipelineSpec(this.#specContext(), {
          jobId,
          pipeline,
          resolved: await this.#registry.resolveDeploymentPipeline(doc),
          component: isComponentRef(doc.component) ? doc.component : undefined,
          settings: doc.settings,
          inputs: body.inputs,
          outputs: body.outputs ?? {},
        }),
      };
      created = this.#pipelineToCreate(spec);
    } else {
      created = await this.#modelJob(base, doc, body, request.expandOutput);
    }
    return this.#create({ key, scope, requestHash, start: request.start }, created);
  }

  /**
   * A standalone pipeline job (`POST /api/jobs`): its graph inline (`jobs`) or a registered
   * pipeline component (`component`), checked as a registered pipeline would be, with its inputs
   * and outputs checked as an invoke's. Answers like an invoke: the job, created and started.
   */
  async submit(request: { body: unknown; invokedBy: Invoker; start: (jobId: string) => Promise<void> }): Promise<InvokeResult> {
    const body = parseOrThrow(pipelineJobBody, request.body, 'request body');
    let pipeline: PipelineComponentDoc;
    let component: { name: string; version: string } | undefined;
    if (body.component !== undefined) {
      const resolved = await this.#registry.resolveComponentRef(body.component, 'component');
      if (resolved.doc.type !== 'pipeline') {
        throw new BatchError('validation_failed', `component: a pipeline job runs a pipeline component; ${body.component} is a ${resolved.doc.type} component.`, { issues: [{ field: 'component', message: 'must be a pipeline component' }] });
      }
      pipeline = resolved.doc;
      component = resolved.ref;
    } else {
      const resolved = await this.#registry.resolveComponentRef(pipelineBodyOfJob({ inputs: body.inputs, outputs: body.outputs, jobs: body.jobs ?? {} }), '');
      if (resolved.doc.type !== 'pipeline') throw new BatchError('internal', 'A pipeline job body did not make a pipeline.');
      pipeline = resolved.doc;
    }
    const datastore = body.settings.default_datastore.replace(/^azureml:/, '');
    if (!(await this.#registry.getDatastore(datastore))) throw notFound('Datastore', datastore, { field: 'settings.default_datastore' });
    const now = this.#now();
    const jobId = newJobId(now);
    const spec: PipelineJobSpec = {
      id: jobId,
      kind: 'pipeline',
      runs_as: 'steps',
      endpoint: '',
      deployment: '',
      display_name: body.display_name,
      description: body.description,
      tags: body.tags,
      invoked_by: request.invokedBy,
      created_at: now.toISOString(),
      pipeline: await buildPipelineSpec(this.#specContext(), {
        jobId,
        pipeline,
        resolved: await resolvePipeline(pipeline, this.#registry, ''),
        component,
        settings: { continue_on_step_failure: body.settings.continue_on_step_failure, default_datastore: datastore, force_rerun: body.settings.force_rerun },
        inputs: body.inputs,
        outputs: body.outputs,
      }),
    };
    return this.#create({ key: undefined, scope: undefined, requestHash: '', start: request.start }, this.#pipelineToCreate(spec));
  }

  /**
   * Reruns a finished model deployment job (`POST /api/jobs/{id}/rerun`): a new job, linked to
   * it, that scores only the mini-batches and items the parent did not score (failed, or never
   * ran) with the parent's inputs, plan and settings (retries, timeout, concurrency, error
   * threshold and logging may change), and copies the parent's rows for the rest server-side, so
   * its output folder is what one clean run would have written (see shared/jobs/rerun.ts).
   *
   * Refused: a job still running (409), a pipeline or summary_only job (400), a job whose plan and
   * journal are gone or whose predictions file changed since (409), a job with nothing left to run
   * (409 `nothing_to_rerun`), and, unless `force`, a deployment whose model or scoring code is not
   * the parent's (409 `deployment_changed`: the rows would come from two scorers).
   */
  async rerun(request: { id: string; body: unknown; invokedBy: Invoker; start: (jobId: string) => Promise<void> }): Promise<InvokeResult> {
    const body = parseOrThrow(rerunBody, request.body ?? {}, 'request body');
    const parent = await this.get(request.id);
    const spec = parent.spec;
    if (isPipelineSpec(spec)) {
      throw new BatchError('unsupported', `Job '${request.id}' is a pipeline job: invoke it again, and the steps whose inputs did not change are reused (force_rerun: false).`, { details: { field: 'id' } });
    }
    if (!isTerminalJob(parent.state.status)) {
      throw new BatchError('conflict', `Job '${request.id}' is ${parent.state.status}; only a finished job (Completed, Failed or Canceled) can be rerun.`, { details: { job_status: parent.state.status, field: 'id' } });
    }
    if (spec.settings.output_action !== 'append_row') {
      throw new BatchError('unsupported', `Job '${request.id}' is summary_only: its scoring script wrote its own files, which a rerun cannot reuse. Invoke the endpoint again.`, { details: { field: 'id' } });
    }
    const scope = spec.runs_as === 'steps' ? `${spec.id}/${MODEL_STEP}` : spec.id;
    // The engine's state: the job's own, or its model step's (where its columns and layout are).
    const engine = spec.runs_as === 'steps' ? parent.steps?.[MODEL_STEP] : parent.state;
    const columns = parent.state.columns ?? engine?.columns;
    const segmentSize = engine?.segment_size;
    const file = spec.settings.output_file_name;
    const headerBytes = Buffer.byteLength(predictionsHeader(spec.settings, columns));
    // A plan listed page by page that stopped early (canceled, failed) lacks the files never
    // listed: the rerun lists on from where it stopped (JobRunner.prepare), so they are left too.
    const listing = (await this.#workArea.readPlan(scope))?.index;
    const unlisted = listing !== undefined && unlistedRest(listing);
    const plan = await this.#workArea.rerunPlan(scope, headerBytes, segmentSize);
    if (plan.batches.length === 0) {
      throw new BatchError('conflict', `Job '${request.id}' has no plan or journal left (it finished before reruns were possible, or never planned its work); invoke the endpoint again.`, { details: { field: 'id' } });
    }
    if (plan.scored.items === 0 && !unlisted) {
      throw new BatchError('nothing_to_rerun', `Nothing is left to run: every one of the ${plan.reused.items} item(s) of job '${request.id}' succeeded.`, { details: { field: 'id', job_id: request.id } });
    }
    let source: RerunSource | undefined;
    if (plan.expectedBytes > 0) {
      // Through the owner check: predictions another job wrote into a reused folder are not the parent's.
      const props = await this.readOutput(parent, undefined, file, (owned) => Promise.resolve(owned.properties));
      if (props?.contentLength !== plan.expectedBytes || !props.etag) {
        throw new BatchError('conflict', `The predictions of job '${request.id}' (${spec.output.uri}${file}) are ${props ? `${props.contentLength ?? 0} bytes, not the ${plan.expectedBytes} its journal records` : 'gone'}: its rows cannot be reused. Invoke the endpoint again.`, {
          details: { field: 'id' },
        });
      }
      source = { location: spec.output.location, file, etag: props.etag, bytes: plan.expectedBytes };
    }

    const deploymentName = body.deployment ?? spec.deployment;
    const found = await this.#registry.getAnyDeployment(spec.endpoint, deploymentName);
    if (!found) throw notFound('Deployment', `${spec.endpoint}/${deploymentName}`, { field: body.deployment ? 'deployment' : 'id' });
    if (found.doc.type !== 'model') {
      throw new BatchError('validation_failed', `deployment: ${deploymentName} is a pipeline deployment; a rerun scores with a model deployment.`, { issues: [{ field: 'deployment', message: 'not a model deployment' }] });
    }
    const scorer = await this.#scorerOf(found.doc);
    const changes = [
      ...(scorer.model.name !== spec.model.name || scorer.model.version !== spec.model.version ? [`model ${spec.model.name}:${spec.model.version} → ${scorer.model.name}:${scorer.model.version}`] : []),
      ...(scorer.model_content !== spec.model_content ? ['the model files'] : []),
      ...((scorer.code_configuration?.scoring_script ?? null) !== (spec.code_configuration?.scoring_script ?? null) ? ['the scoring script'] : []),
      ...(scorer.code_content !== spec.code_content ? ['the scoring code'] : []),
    ];
    const unique = [...new Set(changes)];
    if (unique.length > 0 && !body.force) {
      throw new BatchError('deployment_changed', `Deployment ${spec.endpoint}/${deploymentName} does not score as job '${request.id}' did (${unique.join('; ')}): its rows and the reused ones would come from two scorers. Pass "force": true to rerun anyway.`, {
        details: { field: 'force', changes: unique },
      });
    }
    const settings = mergeSettings(spec.settings, body.settings);
    const now = this.#now();
    const base = {
      id: newJobId(now),
      runs_as: 'steps' as const,
      endpoint: spec.endpoint,
      endpoint_uid: spec.endpoint_uid,
      deployment: deploymentName,
      display_name: body.display_name ?? spec.display_name,
      description: spec.description,
      tags: body.tags ?? spec.tags,
      invoked_by: request.invokedBy,
      created_at: now.toISOString(),
    };
    const problem = rowJoinProblem(rowJoinOf(settings), { script: (unique.length > 0 ? scorer.code_configuration : spec.code_configuration) !== undefined, field: 'settings' });
    if (problem) throw new BatchError('validation_failed', `deployment: ${problem.message}.`, { issues: [{ field: 'deployment', message: problem.message }] });
    const out = await this.#outputOf(base, Object.entries(body.outputs ?? {}));
    const { id: _id, created_at: _created, invoked_by: _by, rerun_of: _rerun, runs_as: _runs, deployment: _deployment, display_name: _name, tags: _tags, output: _output, ...work } = spec;
    const rerun: ModelJobSpec = {
      ...work,
      ...base,
      kind: 'model',
      // The parent's model and code, pinned as they were, unless the caller forced others.
      ...(unique.length > 0 ? scorer : {}),
      settings,
      resources: { instance_count: body.resources?.instance_count ?? spec.resources.instance_count },
      output: out.output,
      rerun_of: {
        job: spec.id,
        scope,
        force: body.force,
        source,
        header_bytes: headerBytes,
        ...(columns ? { columns: [...columns] } : {}),
        ...(segmentSize === undefined ? {} : { segment_size: segmentSize }),
        reused: plan.reused,
        scored: plan.scored,
      },
    };
    return this.#create({ key: undefined, scope: undefined, requestHash: '', start: request.start }, this.#modelToCreate(rerun, out.field));
  }

  /**
   * The graph of a completed pipeline job, for `job_definition: azureml:<job>` (Azure ML: a
   * deployment made from a pipeline job). A job that is not a pipeline job, or has not completed,
   * is a 400 naming `field`.
   */
  async definitionOf(jobId: string, field: string): Promise<PipelineComponentDoc> {
    const job = await this.#store.get(jobId);
    if (!job) throw notFound('Job', jobId, { field });
    const definition = isPipelineSpec(job.spec) ? job.spec.pipeline.definition : undefined;
    if (!definition) {
      throw new BatchError('validation_failed', `${field}: job '${jobId}' is not a pipeline job; a deployment is made from a pipeline job's graph.`, { issues: [{ field, message: 'not a pipeline job' }] });
    }
    if (job.state.status !== 'Completed') {
      throw new BatchError('validation_failed', `${field}: job '${jobId}' is ${job.state.status}; a deployment is made from a completed pipeline job.`, { issues: [{ field, message: `the job is ${job.state.status}` }] });
    }
    const { name: _name, version: _version, ...graph } = definition;
    return graph;
  }

  /** What buildPipelineSpec needs of this service. */
  #specContext(): PipelineSpecContext {
    return { registry: this.#registry, content: (location, field, what, options) => this.#content(location, field, what, options), inputData: (input, field) => this.#inputData(input, field) };
  }

  /** A pipeline job's records: the job, one record per step, and a claim per job output. */
  #pipelineToCreate(spec: PipelineJobSpec): JobToCreate {
    const outputs = Object.entries(spec.pipeline.outputs);
    return {
      spec,
      steps: Object.fromEntries(spec.pipeline.steps.map((s) => [s.name, { status: 'NotStarted' as const }])),
      claims: outputs.map(([name, target]) => ({ target, files: [], empty: true, field: `outputs.${name}.path` })),
      inputs: [...dataInputs(spec.pipeline.inputs, 'inputs.'), ...spec.pipeline.steps.flatMap((s) => dataInputs(s.inputs, `jobs.${s.name}.inputs.`))],
    };
  }

  /** A model deployment's job: exactly one data input, at most one output (Azure ML's rules). */
  async #modelJob(base: Omit<ModelJobSpec, keyof ParallelWork | 'kind'>, deployment: DeploymentDoc, body: InvokeBody, expandOutput?: InvokeRequest['expandOutput']): Promise<JobToCreate> {
    const inputs = Object.entries(body.inputs);
    if (inputs.length !== 1) {
      throw new BatchError('validation_failed', 'A model deployment takes exactly one input.', {
        issues: [{ field: 'inputs', message: `expected 1 input, got ${inputs.length}` }],
      });
    }
    const outputs = Object.entries(body.outputs ?? {});
    const [inputName, raw] = inputs[0] as [string, InvokeBody['inputs'][string]];
    if (typeof raw !== 'object' || !('path' in raw)) {
      throw new BatchError('validation_failed', `inputs.${inputName}: a model deployment takes one data input ({"type": "uri_folder", "path": …}); literal inputs are for pipeline deployments.`, {
        issues: [{ field: `inputs.${inputName}`, message: 'must be data, not a literal' }],
      });
    }
    const input = raw;

    const settings = mergeSettings(deployment.settings, body.settings);
    const resources = { instance_count: body.resources?.instance_count ?? deployment.resources.instance_count };
    const split = body.split === null ? undefined : (body.split ?? deployment.split);
    if (input.files) {
      // A file list's size is known now: every file is at least one item (split makes more), so
      // the mini-batches are at least this many. A folder's is known when the job lists it.
      const files = input.files.length;
      const tooLarge = jobSizeProblem(this.#limits, { files, miniBatches: Math.ceil(files / settings.mini_batch_size) }, `inputs.${inputName}.files`);
      if (tooLarge) throw tooLarge;
    }
    const scorer = await this.#scorerOf(deployment);
    const inputField = `inputs.${inputName}.path`;
    // A file list names its files: they are read (each at its ETag) when the job lists its input,
    // and one that is gone by then fails its items, not the invocation.
    const resolvedInput = input.files
      ? await this.#registry.resolveData(input.path, inputField, 'uri_folder')
      : await this.#inputData(await this.#registry.resolveData(input.path, inputField, input.type), inputField);

    await this.#checkRowJoin(settings, deployment.code_configuration !== undefined, resolvedInput, inputField);

    const out = await this.#outputOf(base, outputs, expandOutput);
    const spec: ModelJobSpec = {
      ...base,
      kind: 'model',
      ...scorer,
      settings,
      resources,
      split,
      input: { name: inputName, type: resolvedInput.type, path: redactSecrets(input.path), uri: resolvedInput.uri, location: resolvedInput.location, ...(input.files ? { files: input.files } : {}) },
      output: out.output,
    };
    return this.#modelToCreate(spec, out.field);
  }

  /** A model job's records: the job, its one parallel step (input bound now), its output folder's claim. */
  #modelToCreate(spec: ModelJobSpec, outputField: string): JobToCreate {
    return {
      spec,
      // A model deployment's job is one parallel step (Azure ML's batchscoring), its input bound now.
      steps: { [MODEL_STEP]: { status: 'NotStarted', input: spec.input } },
      claims: [{ target: spec.output, files: Object.values(outputFiles(spec)), empty: false, field: outputField }],
      inputs: [{ location: spec.input.location, field: `inputs.${spec.input.name}.path` }],
    };
  }

  /** What a model deployment scores with, pinned now: the model and code, where they are, and their content. */
  async #scorerOf(deployment: DeploymentDoc): Promise<Pick<ModelJobSpec, 'model' | 'model_location' | 'model_content' | 'code_configuration' | 'code_location' | 'code_content'>> {
    const model = await this.#registry.getModel(deployment.model.name, deployment.model.version);
    if (!model) throw notFound('Model', `${deployment.model.name}:${deployment.model.version}`, { field: 'model' });
    const modelData = await this.#registry.resolveData(model.doc.path, 'model.path');
    const code = deployment.code_configuration
      ? await this.#registry.resolveData(deployment.code_configuration.code, 'code_configuration.code', 'uri_folder')
      : undefined;
    const [modelContent, codeContent] = await Promise.all([
      this.#content(modelData.location, 'model.path', `The model ${model.doc.name}:${model.doc.version}`),
      code ? this.#content(code.location, 'code_configuration.code', 'The scoring code folder', { file: false }) : undefined,
    ]);
    return {
      model: model.doc,
      model_location: modelData.location,
      model_content: modelContent,
      code_content: codeContent,
      code_configuration: deployment.code_configuration,
      code_location: code?.location,
    };
  }

  /** A model job's output folder: the one `outputs` names (at most one, a folder), else `azureml/{job}/score/` on the workspace datastore. */
  async #outputOf(base: { id: string; created_at: string }, outputs: [string, { type?: 'uri_folder' | 'uri_file' | undefined; path: string }][], expandOutput?: InvokeRequest['expandOutput']): Promise<{ output: ModelJobSpec['output']; field: string }> {
    if (outputs.length > 1) {
      throw new BatchError('validation_failed', 'A model deployment writes exactly one output.', {
        issues: [{ field: 'outputs', message: `expected at most 1 output, got ${outputs.length}` }],
      });
    }
    const [outputName, output] = outputs[0] ?? [DEFAULT_OUTPUT_NAME, undefined];
    const outputField = `outputs.${outputName}.path`;
    if (output?.type === 'uri_file') {
      throw new BatchError('validation_failed', `outputs.${outputName}.type: a model deployment's output is a folder (uri_folder).`, {
        issues: [{ field: `outputs.${outputName}.type`, message: 'must be uri_folder' }],
      });
    }
    if (output && parseDataUri(output.path, outputField).kind === 'asset') {
      // A data asset version is immutable: writing a job's outputs into its folder would change it.
      throw new BatchError('validation_failed', `${outputField}: an output is a folder (azureml://datastores/{datastore}/paths/{path} or a blob URL), not a data asset.`, {
        issues: [{ field: outputField, message: 'a data asset cannot be an output' }],
      });
    }
    const outputData = output
      ? await this.#registry.resolveData(expandOutput ? expandOutput(output.path, base) : output.path, outputField, 'uri_folder')
      : await this.#registry.resolveData(datastoreUri(WORKSPACE_DATASTORE, `azureml/${base.id}/${outputName}/`), outputField, 'uri_folder');
    return { output: { name: outputName, uri: outputData.uri.replace(/\/?$/, '/'), location: { ...outputData.location, path: folderPrefix(outputData.location.path) } }, field: outputField };
  }

  /**
   * Records a job and starts it: claims (the Idempotency-Key, each output folder) in order, the job
   * and its steps' records, then its orchestration. Whatever was claimed or written is given back
   * if the job does not go ahead, so nothing is left half-created.
   */
  async #create(request: { key: string | undefined; scope: { name: string; uid: string } | undefined; requestHash: string; start: (jobId: string) => Promise<void> }, created: JobToCreate): Promise<InvokeResult> {
    const { spec } = created;
    const jobId = spec.id;
    const { key, scope } = request;
    // Everything that can refuse the job is checked before the first write (a refused request
    // changes nothing, not even by creating a table); the writes below check again, atomically,
    // and are undone when another request got in between.
    const seen = new Map<string, string>();
    for (const claim of created.claims) {
      const folderKey = outputFolderKey(this.#registry, claim.target.location);
      // One output inside another's folder would mix their files (and a reuse would copy one into the other).
      const other = [...seen].find(([key]) => key.startsWith(folderKey) || folderKey.startsWith(key))?.[1];
      if (other !== undefined) {
        throw new BatchError('validation_failed', `${claim.field}: the same place as ${other}, or inside it (or it inside this); each output needs a place of its own.`, {
          issues: [{ field: claim.field, message: `overlaps ${other}` }],
        });
      }
      seen.set(folderKey, claim.field);
      // A job writing where it reads would score its own outputs (a folder input lists them) or
      // overwrite its input: the output must be apart from every input, in both directions.
      const input = created.inputs.find((i) => {
        const inputKey = outputFolderKey(this.#registry, i.location);
        return inputKey.startsWith(folderKey) || folderKey.startsWith(inputKey);
      });
      if (input) {
        throw new BatchError('validation_failed', `${claim.field}: the output ${claim.target.uri} overlaps the job's input (${input.field}): it is the same place, inside it or contains it. Choose an output folder apart from the inputs.`, {
          issues: [
            { field: claim.field, message: `overlaps the input ${input.field}` },
            { field: input.field, message: `overlaps the output ${claim.field}` },
          ],
        });
      }
      const owner = await this.#store.outputClaim(folderKey);
      const problem =
        owner && owner.jobId !== jobId && !(await this.#mayTakeOver(claim.target, owner))
          ? outputTaken(claim.target, claim.field, owner.jobId)
          : await this.#outputProblem(spec, claim.target, claim.files, claim.field, { empty: claim.empty });
      if (problem) {
        // A request with the same key may have claimed this folder since the key was looked up
        // (it records its key before its outputs): then this one is its retry.
        const used = key !== undefined && scope ? await this.#store.findKey(scope, key) : undefined;
        if (used) return this.#replay(used, request.requestHash);
        throw problem;
      }
    }
    const undo: (() => Promise<void>)[] = [];
    try {
      if (key !== undefined && scope) {
        const claim = await this.#store.claimKey(scope, key, request.requestHash, jobId);
        // Another request with this key got there between the lookup above and now.
        if (!claim.claimed) return await this.#replay(claim, request.requestHash);
        undo.push(() => this.#store.releaseKey(scope, key));
      }
      for (const claim of created.claims) {
        await this.#claimOutput(spec, claim.target, claim.files, claim.field, { empty: claim.empty });
        undo.push(() => this.#store.releaseOutput(outputFolderKey(this.#registry, claim.target.location), jobId));
      }
      await this.#store.create(spec, { status: 'NotStarted', counts: emptyCounts() });
      undo.push(() => this.#store.remove(spec));
      await this.#store.createSteps(jobId, created.steps);
      try {
        await request.start(jobId);
      } catch (err) {
        throw new BatchError('internal', `The job could not be started: ${(err as Error).message}`, { cause: err });
      }
    } catch (err) {
      for (const step of undo.reverse()) await step().catch(() => undefined);
      throw err;
    }
    // The job goes ahead: its first event (NotStarted, recorded with it) can be published.
    this.#store.announceEvents(jobId);
    const job = await this.#store.get(jobId);
    if (!job) throw new BatchError('internal', `Job ${jobId} vanished after it was created.`);
    return { job, replayed: false };
  }

  /**
   * Checks a job's `join` and `key_field` (see columns.ts) where it can before the job exists: that
   * they fit the scorer, and for a single tabular file (`uri_file`) that its columns hold them. A
   * folder's files are checked as each is scored (a file without a column fails its item).
   */
  async #checkRowJoin(settings: DeploymentSettings, script: boolean, input: ResolvedData, inputField: string): Promise<void> {
    const rows = rowJoinOf(settings);
    const problem = rowJoinProblem(rows, { script, field: 'settings' });
    if (problem) throw new BatchError('validation_failed', `${problem.field}: ${problem.message}.`, { issues: [problem] });
    const required = requiredInputColumns(rows);
    if (required.length === 0 || input.type !== 'uri_file') return;
    const format = fileFormat(input.path);
    if (!('tabular' in format)) return;
    const blob = input.container.getBlobClient(input.path);
    let columns: string[] | undefined;
    try {
      const { contentLength } = await blob.getProperties();
      columns = await storedColumns(format.tabular, contentLength ?? 0, async (start, end) => blob.downloadToBuffer(start, end - start));
    } catch (err) {
      throw new BatchError('storage_failed', `Could not read ${input.uri}.`, { cause: err });
    }
    const absent = columns ? required.filter((c) => !columns.includes(c)) : [];
    if (absent.length === 0 || !columns) return;
    const field = rows.keyField !== undefined && absent.includes(rows.keyField) ? 'settings.key_field' : 'settings.join.columns';
    const message = `${absent.map((c) => `"${c}"`).join(', ')} ${absent.length === 1 ? 'is not a column' : 'are not columns'} of the input ${input.uri} (its columns: ${columns.join(', ') || 'none'})`;
    throw new BatchError('validation_failed', `${field}: ${message}.`, { issues: [{ field, message }, { field: inputField, message: `has no column ${absent.map((c) => `"${c}"`).join(', ')}` }] });
  }

  /** The identity of a model's or code's content now (see folderContent); nothing there is a 400. */
  async #content(location: DataLocation, field: string, what: string, options: { file?: boolean } = {}): Promise<string> {
    let content: FolderContent;
    try {
      content = await folderContent(this.#registry, location, options);
    } catch (err) {
      throw new BatchError('storage_failed', `Could not read ${field}.`, { cause: err });
    }
    if (content.files.length === 0) {
      throw new BatchError('validation_failed', `${what} has no files at ${datastoreUri(location.datastore.name, location.path)}.`, { issues: [{ field, message: 'no files there' }] });
    }
    return content.key;
  }

  /** The answer to a request whose Idempotency-Key was used before: that job, or why not. */
  async #replay(used: { jobId: string; requestHash: string }, requestHash: string): Promise<InvokeResult> {
    if (used.requestHash !== requestHash) {
      throw new BatchError('unprocessable', 'The Idempotency-Key was already used with a different request.', {
        details: { header: 'Idempotency-Key', field: 'Idempotency-Key', job_id: used.jobId },
      });
    }
    // The request that claimed the key may still be recording its job: wait for it a little, so
    // that concurrent requests with one key all answer with its job (or learn that it failed).
    let wait = 25;
    for (let waited = 0; ; waited += wait, wait = Math.min(wait * 2, 500)) {
      const existing = await this.#store.get(used.jobId);
      if (existing) return { job: existing, replayed: true };
      if (waited >= REPLAY_WAIT_MS) break;
      await new Promise((resolve) => setTimeout(resolve, wait));
    }
    throw new BatchError('conflict', 'A request with this Idempotency-Key is still being processed; retry shortly.', {
      details: { header: 'Idempotency-Key', field: 'Idempotency-Key', job_id: used.jobId },
    });
  }

  /**
   * Claims the job's output folder (see JobStore.claimOutput), then makes sure nothing written
   * outside this app's claims (an earlier run's predictions or summary) is in the way. A claim held
   * by another job is a 409 naming the output, unless that job never came to be (its invocation
   * died between claiming and recording it) or it has ended and its outputs have since been deleted.
   */
  async #claimOutput(job: { id: string; created_at: string }, target: { uri: string; location: DataLocation }, files: readonly string[], field: string, options: { empty?: boolean } = {}): Promise<void> {
    const folderKey = outputFolderKey(this.#registry, target.location);
    const claimed = await this.#store.claimOutput(folderKey, job.id, job.created_at, (claim) => this.#mayTakeOver(target, claim));
    if (!claimed.claimed) throw outputTaken(target, field, claimed.jobId);
    const problem = await this.#outputProblem(job, target, files, field, options);
    if (problem) {
      await this.#store.releaseOutput(folderKey, job.id);
      throw problem;
    }
  }

  /** Whether a job may take over an output folder claimed by another (see JobStore.claimOutput). */
  async #mayTakeOver(target: { location: DataLocation }, claim: OutputClaim): Promise<boolean> {
    const owner = await this.#store.get(claim.jobId);
    if (!owner) return this.#now().getTime() - Date.parse(claim.claimedAt) > ORPHAN_CLAIM_MS;
    return isTerminalJob(owner.state.status) && !(await outputFolderOf(this.#registry, target).hasAnyFile());
  }

  /**
   * Why the job cannot write into this output folder, its own claim aside: it lies inside another
   * job's output folder, or contains one, or holds files the job would overwrite (any file, for a
   * pipeline output). The one rule, checked before anything is written and again once the folder
   * is claimed (so of two jobs racing for nested folders, at least one sees the other's claim).
   */
  async #outputProblem(job: { id: string }, target: { uri: string; location: DataLocation }, files: readonly string[], field: string, options: { empty?: boolean }): Promise<BatchError | undefined> {
    const folder = outputFolderOf(this.#registry, target);
    // Nested output folders are one folder (a folder inside another job's is that job's too: its
    // files would show up among the other's outputs, and be copied with them when a step is reused),
    // so the check goes both ways: every claimed folder above this one, and every one inside it.
    const path = folderPrefix(target.location.path);
    const nested: { location: DataLocation; claim: OutputClaim; inside: boolean }[] = [];
    // Ancestors up to the container's root (path ''), which holds every folder of the container.
    for (let at = path === '' ? -2 : path.lastIndexOf('/', path.length - 2); at >= -1; at = at <= 0 ? at - 1 : path.lastIndexOf('/', at - 1)) {
      const ancestor = { ...target.location, path: path.substring(0, at + 1) };
      const claim = await this.#store.outputClaim(outputFolderKey(this.#registry, ancestor));
      if (claim) nested.push({ location: ancestor, claim, inside: false });
    }
    const key = outputFolderKey(this.#registry, target.location);
    for (const claim of await this.#store.outputClaimsInside(key)) {
      nested.push({ location: { ...target.location, path: `${path}${claim.folder.substring(key.length)}` }, claim, inside: true });
    }
    for (const { location, claim, inside } of nested) {
      if (claim.jobId === job.id) continue;
      // The claim's own rule (#mayTakeOver): it stands while its job runs or its files are there, and
      // while an invocation that made it may still be recording its job.
      if (!(await this.#mayTakeOver({ location }, claim))) {
        const where = inside ? `contains the output folder of job ${claim.jobId} (${datastoreUri(location.datastore.name, location.path)})` : `is inside the output folder of job ${claim.jobId}`;
        return outputConflict(target, field, `The output ${target.uri} ${where}; each job needs an output folder of its own. Choose another folder.`, claim.jobId);
      }
    }
    // A pipeline output's files are its steps' to choose: the place must be empty.
    if (options.empty && (await folder.hasAnyFile())) {
      return outputConflict(target, field, `The output ${target.uri} already holds files. Choose an empty output folder (or a file that does not exist yet).`);
    }
    // Any file the job would write, found there, would be overwritten: the folder is refused.
    for (const file of files) {
      if (await folder.exists(file)) return outputConflict(target, field, `The output ${target.uri}${file} already exists. Choose an empty output folder.`);
    }
    return undefined;
  }

  /**
   * Settles what the input is, from storage: a path given without a type and without a trailing
   * "/" is a file if a blob has that name and a folder if files are under it (Azure ML's SDK types an
   * input uri_folder when no type is given). A stated type that does not match what is there is a
   * 400 that says what is there.
   */
  async #inputData(input: ResolvedData, field: string): Promise<ResolvedData> {
    const prefix = folderPrefix(input.path);
    const isFile = async (): Promise<boolean> => input.path !== '' && !input.path.endsWith('/') && (await input.container.getBlobClient(input.path).exists());
    const isFolder = async (): Promise<boolean> => {
      // Small pages: one blob settles it, and a folder of 10,000 files is not listed twice per job.
      for await (const page of input.container.listBlobsByHierarchy('/', { prefix }).byPage({ maxPageSize: 50 })) {
        if (page.segment.blobItems.some((b) => isFileIn(prefix, b.name))) return true;
      }
      return false;
    };
    const missing = (message: string): BatchError => new BatchError('input_not_found', message, { issues: [{ field, message }] });
    try {
      if (input.type === 'uri_file') {
        if (await isFile()) return input;
        if (await isFolder()) {
          if (!input.typeGiven) return { ...input, type: 'uri_folder' };
          throw missing(`${input.uri} is a folder, not a file: give the input type uri_folder (or no type).`);
        }
        throw missing(`The input file ${input.uri} does not exist.`);
      }
      if (await isFolder()) return input;
      if (await isFile()) throw missing(`${input.uri} is a file, not a folder: give the input type uri_file (or no type).`);
      throw missing(`The input folder ${input.uri} contains no files.`);
    } catch (err) {
      if (err instanceof BatchError) throw err;
      if (isNotFound(err)) throw missing(`The input ${input.uri} does not exist (its container is missing).`);
      throw new BatchError('storage_failed', `Could not read ${input.uri}.`, { cause: err });
    }
  }

  /**
   * A job as users see it, with its steps: while a parallel step runs, its counts are the sum of
   * what its lanes reported; a job's counts are its parallel steps' (a model deployment's job has
   * one).
   */
  async get(id: string): Promise<Job> {
    const job = await this.#store.get(id);
    if (!job) throw notFound('Job', id, { field: 'id' });
    return this.#withLiveCounts(job);
  }

  /**
   * Jobs newest first, as users see them (live counts and status): of one endpoint (404 when it does
   * not exist) or of all, only those of `invokedBy` and in one of `statuses` when given. The status
   * is the one `get` shows, so a filtered page may be short (see JobStore.listJobs).
   */
  async list(filter: { endpoint?: string | undefined; statuses?: readonly JobStatus[] | undefined; top: number; continuationToken?: string | undefined; invokedBy?: InvokerFilter | undefined }): Promise<{ jobs: Job[]; continuationToken: string | undefined }> {
    const scope = filter.endpoint === undefined ? 'all' : { name: filter.endpoint, uid: (await this.#registry.requireEndpoint(filter.endpoint)).doc.uid ?? '' };
    const statuses = filter.statuses;
    return this.#store.listJobs(scope, {
      top: filter.top,
      continuationToken: filter.continuationToken,
      invokedBy: filter.invokedBy,
      select: async (job) => {
        // A job's final status is its record's; only a running one's may show another (its step's).
        if (statuses && isTerminalJob(job.state.status) && !statuses.includes(job.state.status)) return undefined;
        const live = await this.#withLiveCounts(job);
        return !statuses || statuses.includes(live.state.status) ? live : undefined;
      },
    });
  }

  async #withLiveCounts(job: Job): Promise<Job> {
    const running = (status: string): boolean => status === 'Running' || status === 'Canceling';
    if (job.spec.runs_as !== 'steps') {
      if (!running(job.state.status)) return job;
      return { ...job, state: { ...job.state, counts: withTotals(await this.#store.laneCounts(job.spec.id), job.state.counts) } };
    }
    const steps = await this.#store.listSteps(job.spec.id);
    for (const [name, step] of steps) {
      if (step.counts && running(step.status)) steps.set(name, { ...step, counts: withTotals(await this.#store.laneCounts(job.spec.id, name), step.counts) });
    }
    const parallel = [...steps.values()].flatMap((s) => (s.counts ? [s.counts] : []));
    // Once the job has ended its own counts are final (taken from the steps' records).
    const counts = isTerminalJob(job.state.status) || parallel.length === 0 ? job.state.counts : parallel.reduce(sumCounts, emptyCounts());
    const state = { ...job.state, counts };
    // A model deployment's job is its one step, as callers of Azure ML see it: until the job has
    // ended it shows the step's status (Preparing, Running, Finalizing…) and error. The step ends
    // a moment before the job's own record does; until then the job is Finalizing, so whoever
    // sees a final status (the status URL's 200 included) sees the job's final record.
    const only = isPipelineSpec(job.spec) ? undefined : steps.get(MODEL_STEP);
    if (only && !isTerminalJob(job.state.status) && only.status !== 'NotStarted' && only.status !== 'Skipped') {
      const ended = only.status === 'Completed' || only.status === 'Failed' || only.status === 'Canceled';
      state.status = ended ? 'Finalizing' : only.status;
      if (only.error && !ended) state.error = only.error;
    }
    return { ...job, state, steps: Object.fromEntries(steps) };
  }

  /**
   * Which file `GET /api/jobs/{id}[/steps/{step}]/outputs/{*file}` means: for a model deployment's
   * job (or its one step) a file of its output folder; for a pipeline job or a step with one
   * output, a file of that output; with several, the path starts with the output's name. A step's
   * outputs are where it recorded them (an earlier run's, when it was reused).
   */
  outputFile(job: Job, step: string | undefined, file: string): { folder: OutputFolder; file: string; owners: string[] } {
    const spec = job.spec;
    let outputs: Record<string, { uri: string; location: DataLocation }>;
    // Whose files these may be: the job's, or for a step that reused an earlier run, that run's job's.
    const reusedFrom = step === undefined ? undefined : job.steps?.[step]?.reused_from?.job;
    const owners = reusedFrom === undefined ? [spec.id] : [spec.id, reusedFrom];
    if (!isPipelineSpec(spec)) {
      if (step !== undefined && step !== MODEL_STEP) throw notFound('Step', step, { field: 'step' });
      outputs = { [spec.output.name]: spec.output };
    } else if (step === undefined) {
      outputs = spec.pipeline.outputs;
    } else {
      const found = spec.pipeline.steps.find((s) => s.name === step);
      if (!found) throw notFound('Step', step, { field: 'step' });
      const state = job.steps?.[step];
      // A command step's logs: GET …/steps/{step}/outputs/user_logs/attempt-1.log.
      if (state?.logs && file.startsWith('user_logs/') && !own(state.outputs ?? found.outputs, 'user_logs')) return { folder: outputFolderOf(this.#registry, state.logs), file: file.substring('user_logs/'.length), owners };
      outputs = state?.outputs ?? found.outputs;
    }
    const names = Object.keys(outputs);
    const [first, ...rest] = file.split('/');
    const named = first !== undefined && rest.length > 0 ? outputs[first] : undefined;
    const only = names.length === 1 ? outputs[names[0] as string] : undefined;
    const target = named ?? only;
    if (!target) {
      throw new BatchError('not_found', `Name the output first (${names.join(', ') || 'none'}): outputs/<output>/<file>.`, { details: { resource: 'Job output', name: file, field: 'file' } });
    }
    return { folder: outputFolderOf(this.#registry, target), file: named ? rest.join('/') : file, owners };
  }

  /**
   * Reads a file of the job's outputs (as {@link outputFile} finds it) through the owner check of
   * ./output-access.ts: a file another job wrote into a reused folder is a 410 `outputs_replaced`,
   * never its bytes. `read` gets the checked ETag for its download's `ifMatch`; undefined: no such file.
   */
  async readOutput<T>(job: Job, step: string | undefined, path: string, read: (owned: OwnedOutput & { file: string }) => Promise<T>): Promise<T | undefined> {
    const { folder, file, owners } = this.outputFile(job, step, path);
    const blob = folder.container.getBlobClient(folder.blobName(file));
    return readOwnedOutput(job, owners, { blob, uri: path }, (owned) => read({ ...owned, file }));
  }

  /**
   * Requests cancellation: the job becomes Canceling and its orchestrations are told. Work in
   * flight finishes; nothing new is scheduled; the job ends Canceled with its partial outputs.
   */
  async cancel(id: string, notify: (instanceIds: string[]) => Promise<void>): Promise<Job> {
    const job = await this.get(id);
    if (isTerminalJob(job.state.status) || job.state.status === 'Finalizing') {
      throw new BatchError('conflict', `Job '${id}' is ${job.state.status} and can no longer be canceled.`, {
        details: { job_status: job.state.status, field: 'id' },
      });
    }
    const state = await this.#store.update(id, (s) =>
      isTerminalJob(s.status) || s.status === 'Canceling' || s.status === 'Finalizing' ? undefined : { ...s, status: 'Canceling' },
    );
    if (job.spec.runs_as !== 'steps') {
      const chunks = state?.chunks ?? 0;
      await notify([id, ...Array.from({ length: chunks }, (_, c) => chunkInstanceId(id, c))]);
      return this.get(id);
    }
    // Every step still going hears it: its record says Canceling (its mini-batches check that) and
    // its orchestrations (the step's, and a parallel step's chunks) get the event.
    const instances = [id];
    for (const [name, step] of await this.#store.listSteps(id)) {
      if (isTerminalJob(step.status as JobStatus) || step.status === 'Skipped') continue;
      const updated = await this.#store.updateStep(id, name, (s) => (s.status === 'Running' || s.status === 'Preparing' ? { ...s, status: 'Canceling' } : undefined));
      instances.push(stepInstanceId(id, name), ...Array.from({ length: updated?.chunks ?? 0 }, (_, c) => chunkInstanceId(id, c, name)));
    }
    await notify(instances);
    return this.get(id);
  }
}

/** The sub-orchestration instance that runs lane `lane` of a job (or of its parallel step `step`). */
export function laneInstanceId(jobId: string, lane: number, step?: string): string {
  return step === undefined ? `${jobId}:lane-${lane}` : `${jobId}:${step}:lane-${lane}`;
}

/** The sub-orchestration instance that lists and plans a run's input page by page (see batchPlanner). */
export function plannerInstanceId(jobId: string, step?: string): string {
  return step === undefined ? `${jobId}:planner` : `${jobId}:${step}:planner`;
}

/** The sub-orchestration instance that runs chunk `chunk` of a job (or of its parallel step `step`). */
export function chunkInstanceId(jobId: string, chunk: number, step?: string): string {
  return step === undefined ? `${jobId}:chunk-${chunk}` : `${jobId}:${step}:chunk-${chunk}`;
}

/** The orchestration instance that runs step `step` of a job. */
export function stepInstanceId(jobId: string, step: string): string {
  return `${jobId}:step-${step}`;
}

/** Live counts of lanes with the plan's totals (the lanes' rows do not carry them). */
function withTotals(live: JobCounts, planned: JobCounts): JobCounts {
  return { mini_batches: { ...live.mini_batches, total: planned.mini_batches.total }, items: { ...live.items, total: planned.items.total } };
}

/** Counts of two parallel steps together: totals add up too (unlike lanes of one step, see addCounts). */
export function sumCounts(a: JobCounts, b: JobCounts): JobCounts {
  return {
    mini_batches: {
      total: a.mini_batches.total + b.mini_batches.total,
      succeeded: a.mini_batches.succeeded + b.mini_batches.succeeded,
      failed: a.mini_batches.failed + b.mini_batches.failed,
      retried: a.mini_batches.retried + b.mini_batches.retried,
    },
    items: { total: a.items.total + b.items.total, succeeded: a.items.succeeded + b.items.succeeded, failed: a.items.failed + b.items.failed },
  };
}

/** The files a job writes, relative to its output folder. */
export function outputFiles(spec: { settings: { output_action: string; output_file_name: string } }): Record<string, string> {
  const files: Record<string, string> = {};
  if (spec.settings.output_action === 'append_row') files['predictions'] = spec.settings.output_file_name;
  files['mini_batch_report'] = REPORT_FILE;
  files['errors'] = ERRORS_FILE;
  files['summary'] = SUMMARY_FILE;
  files['logs'] = LOG_FILE;
  return files;
}

/** 409 `output_exists`: the job cannot have this output folder. */
function outputConflict(target: { uri: string }, field: string, message: string, jobId?: string): BatchError {
  return new BatchError('output_exists', message, {
    issues: [{ field, message: jobId ? `the output folder belongs to job ${jobId}` : 'job outputs already exist there' }],
    details: { output: target.uri, ...(jobId ? { job_id: jobId } : {}) },
  });
}

function outputTaken(target: { uri: string }, field: string, jobId: string): BatchError {
  return outputConflict(target, field, `The output folder ${target.uri} belongs to job ${jobId}; each job needs an output folder of its own. Choose another folder.`, jobId);
}
