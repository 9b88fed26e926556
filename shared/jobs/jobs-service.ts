import { createHash, randomBytes } from 'node:crypto';
import type { AppConfig } from '../config.js';
import { datastoreUri } from '../data/data-uri.js';
import { BatchError, notFound } from '../errors.js';
import { OutputFolder } from '../outputs/output-writer.js';
import { type Registry, type ResolvedData, WORKSPACE_DATASTORE } from '../registry/registry.js';
import { type InvokeBody, invokeBody, isTerminalJob } from '../schemas/jobs.js';
import { folderPrefix, isFileIn } from '../planning/list-input.js';
import { parseOrThrow } from '../schemas/validate.js';
import { isNotFound } from '../storage/clients.js';
import type { JobStore } from './job-store.js';
import { mergeSettings } from './settings.js';
import { ERRORS_FILE, type Invoker, type Job, type JobSpec, LOG_FILE, REPORT_FILE, SUMMARY_FILE, emptyCounts } from './types.js';

export interface InvokeRequest {
  endpoint: string;
  /** The azureml-model-deployment header, if sent. */
  deploymentHeader: string | undefined;
  body: unknown;
  idempotencyKey: string | undefined;
  invokedBy: Invoker;
  /** Starts the job's orchestration; the Functions layer supplies it (durable client). */
  start: (jobId: string) => Promise<void>;
}

export interface InvokeResult {
  job: Job;
  /** True when an Idempotency-Key matched an earlier invocation and that job is returned. */
  replayed: boolean;
}

const DEFAULT_OUTPUT_NAME = 'score';

/** Job ids sort by creation time and are unique: bj-20261126T201500-1a2b3c4d. */
export function newJobId(now: Date): string {
  const stamp = now.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, '');
  return `bj-${stamp}-${randomBytes(4).toString('hex')}`.toLowerCase();
}

function hashRequest(endpoint: string, deployment: string | undefined, body: InvokeBody): string {
  return createHash('sha256').update(JSON.stringify({ endpoint, deployment: deployment ?? null, body })).digest('hex');
}

/** The output folder of a job, from its spec. */
export async function outputFolderOf(registry: Registry, spec: JobSpec): Promise<OutputFolder> {
  const resolved = await registry.resolveData(spec.output.uri, 'outputs', 'uri_folder');
  return new OutputFolder(resolved.container, resolved.path);
}

/**
 * Invoking endpoints and managing jobs: validation, deployment routing, settings merge,
 * idempotency, and the job records. Free of Functions types; the trigger passes what it needs.
 */
export class JobsService {
  readonly #registry: Registry;
  readonly #store: JobStore;
  readonly #now: () => Date;

  constructor(options: { config: AppConfig; registry: Registry; store: JobStore; now?: () => Date }) {
    this.#registry = options.registry;
    this.#store = options.store;
    this.#now = options.now ?? (() => new Date());
  }

  async invoke(request: InvokeRequest): Promise<InvokeResult> {
    const body = parseOrThrow(invokeBody, request.body, 'request body');
    const endpoint = await this.#registry.requireEndpoint(request.endpoint);
    const deploymentName = request.deploymentHeader?.trim() || endpoint.doc.defaults.deployment_name;
    if (!deploymentName) {
      throw new BatchError(
        'no_default_deployment',
        `No valid deployments to route to: endpoint '${request.endpoint}' has no default deployment. Set defaults.deployment_name on the endpoint, or use the azureml-model-deployment header to choose one.`,
        { details: { header: 'azureml-model-deployment' } },
      );
    }
    const deployment = await this.#registry.getDeployment(request.endpoint, deploymentName);
    if (!deployment) {
      throw notFound('Deployment', `${request.endpoint}/${deploymentName}`, request.deploymentHeader ? { header: 'azureml-model-deployment' } : {});
    }

    const inputs = Object.entries(body.inputs);
    if (inputs.length !== 1) {
      throw new BatchError('validation_failed', 'A model deployment takes exactly one input.', {
        issues: [{ field: 'inputs', message: `expected 1 input, got ${inputs.length}` }],
      });
    }
    const outputs = Object.entries(body.outputs ?? {});
    if (outputs.length > 1) {
      throw new BatchError('validation_failed', 'A model deployment writes exactly one output.', {
        issues: [{ field: 'outputs', message: `expected at most 1 output, got ${outputs.length}` }],
      });
    }
    const [inputName, input] = inputs[0] as [string, InvokeBody['inputs'][string]];

    if (request.idempotencyKey !== undefined) {
      const key = request.idempotencyKey;
      if (key.length === 0 || key.length > 255) {
        throw new BatchError('validation_failed', 'The Idempotency-Key header must be 1-255 characters.', {
          issues: [{ field: 'Idempotency-Key', message: 'must be 1-255 characters' }],
        });
      }
    }

    const settings = mergeSettings(deployment.doc.settings, body.settings);
    const resources = { instance_count: body.resources?.instance_count ?? deployment.doc.resources.instance_count };
    const split = body.split === null ? undefined : (body.split ?? deployment.doc.split);
    const model = await this.#registry.getModel(deployment.doc.model.name, deployment.doc.model.version);
    if (!model) throw notFound('Model', `${deployment.doc.model.name}:${deployment.doc.model.version}`);

    const resolvedInput = await this.#registry.resolveData(input.path, `inputs.${inputName}.path`, input.type);
    await this.#checkInputExists(resolvedInput, `inputs.${inputName}.path`);

    const now = this.#now();
    const jobId = newJobId(now);
    const [outputName, output] = outputs[0] ?? [DEFAULT_OUTPUT_NAME, undefined];
    const outputUri = output
      ? (await this.#registry.resolveData(output.path, `outputs.${outputName}.path`, 'uri_folder')).uri.replace(/\/?$/, '/')
      : datastoreUri(WORKSPACE_DATASTORE, `azureml/${jobId}/${outputName}/`);
    const spec: JobSpec = {
      id: jobId,
      endpoint: request.endpoint,
      deployment: deploymentName,
      display_name: body.display_name,
      description: body.description,
      tags: body.tags,
      model: model.doc,
      code_configuration: deployment.doc.code_configuration,
      settings,
      resources,
      split,
      input: { name: inputName, type: resolvedInput.type, path: input.path, uri: resolvedInput.uri },
      output: { name: outputName, uri: outputUri },
      invoked_by: request.invokedBy,
      created_at: now.toISOString(),
    };
    if (output && settings.output_action === 'append_row') {
      const folder = await outputFolderOf(this.#registry, spec);
      if (await folder.exists(settings.output_file_name)) {
        throw new BatchError('output_exists', `The output ${outputUri}${settings.output_file_name} already exists. Choose an empty output folder.`, {
          issues: [{ field: `outputs.${outputName}.path`, message: `${settings.output_file_name} already exists there` }],
        });
      }
    }

    if (request.idempotencyKey !== undefined) {
      const hash = hashRequest(request.endpoint, request.deploymentHeader, body);
      const claim = await this.#store.claimKey(request.endpoint, request.idempotencyKey, hash, jobId);
      if (!claim.claimed) {
        if (claim.requestHash !== hash) {
          throw new BatchError('unprocessable', 'The Idempotency-Key was already used with a different request.', {
            details: { header: 'Idempotency-Key', job_id: claim.jobId },
          });
        }
        const existing = await this.#store.get(claim.jobId);
        if (!existing) {
          throw new BatchError('conflict', 'A request with this Idempotency-Key is still being processed; retry shortly.', {
            details: { header: 'Idempotency-Key', job_id: claim.jobId },
          });
        }
        return { job: existing, replayed: true };
      }
    }

    await this.#store.create(spec, { status: 'NotStarted', counts: emptyCounts() });
    try {
      await request.start(jobId);
    } catch (err) {
      await this.#store.remove(spec);
      if (request.idempotencyKey !== undefined) await this.#store.releaseKey(request.endpoint, request.idempotencyKey);
      throw new BatchError('internal', `The job could not be started: ${(err as Error).message}`, { cause: err });
    }
    const job = await this.#store.get(jobId);
    if (!job) throw new BatchError('internal', `Job ${jobId} vanished after it was created.`);
    return { job, replayed: false };
  }

  async #checkInputExists(input: ResolvedData, field: string): Promise<void> {
    try {
      if (input.type === 'uri_file') {
        if (await input.container.getBlobClient(input.path).exists()) return;
      } else {
        const prefix = folderPrefix(input.path);
        // Small pages: one blob settles it, and a folder of 10,000 files is not listed twice per job.
        for await (const page of input.container.listBlobsByHierarchy('/', { prefix }).byPage({ maxPageSize: 50 })) {
          if (page.segment.blobItems.some((b) => isFileIn(prefix, b.name))) return;
        }
      }
    } catch (err) {
      if (!isNotFound(err)) throw new BatchError('storage_failed', `Could not read ${input.uri}.`, { cause: err });
    }
    throw new BatchError(
      'input_not_found',
      input.type === 'uri_file' ? `The input file ${input.uri} does not exist.` : `The input folder ${input.uri} contains no files.`,
      { issues: [{ field, message: 'no data there' }] },
    );
  }

  /** A job as users see it: while it runs, its counts are the sum of what its lanes reported. */
  async get(id: string): Promise<Job> {
    const job = await this.#store.get(id);
    if (!job) throw notFound('Job', id);
    return this.#withLiveCounts(job);
  }

  async list(endpoint: string, page: { top: number; continuationToken?: string | undefined }): Promise<{ jobs: Job[]; continuationToken: string | undefined }> {
    await this.#registry.requireEndpoint(endpoint);
    const found = await this.#store.listByEndpoint(endpoint, page);
    return { ...found, jobs: await Promise.all(found.jobs.map((job) => this.#withLiveCounts(job))) };
  }

  async #withLiveCounts(job: Job): Promise<Job> {
    if (job.state.status !== 'Running' && job.state.status !== 'Canceling') return job;
    const live = await this.#store.laneCounts(job.spec.id);
    const { total: batches } = job.state.counts.mini_batches;
    const { total: items } = job.state.counts.items;
    return { ...job, state: { ...job.state, counts: { mini_batches: { ...live.mini_batches, total: batches }, items: { ...live.items, total: items } } } };
  }

  /**
   * Requests cancellation: the job becomes Canceling and its orchestrations are told. Work in
   * flight finishes; nothing new is scheduled; the job ends Canceled with its partial outputs.
   */
  async cancel(id: string, notify: (instanceIds: string[]) => Promise<void>): Promise<Job> {
    const job = await this.get(id);
    if (isTerminalJob(job.state.status) || job.state.status === 'Finalizing') {
      throw new BatchError('conflict', `Job '${id}' is ${job.state.status} and can no longer be canceled.`, {
        details: { job_status: job.state.status },
      });
    }
    const state = await this.#store.update(id, (s) =>
      isTerminalJob(s.status) || s.status === 'Canceling' || s.status === 'Finalizing' ? undefined : { ...s, status: 'Canceling' },
    );
    const chunks = state?.chunks ?? 0;
    await notify([id, ...Array.from({ length: chunks }, (_, c) => chunkInstanceId(id, c))]);
    return this.get(id);
  }
}

/** The sub-orchestration instance that runs lane `lane` of a job. */
export function laneInstanceId(jobId: string, lane: number): string {
  return `${jobId}:lane-${lane}`;
}

/** The sub-orchestration instance that runs chunk `chunk` of a job. */
export function chunkInstanceId(jobId: string, chunk: number): string {
  return `${jobId}:chunk-${chunk}`;
}

/** The files a job writes, relative to its output folder. */
export function outputFiles(spec: JobSpec): Record<string, string> {
  const files: Record<string, string> = {};
  if (spec.settings.output_action === 'append_row') files['predictions'] = spec.settings.output_file_name;
  files['mini_batch_report'] = REPORT_FILE;
  files['errors'] = ERRORS_FILE;
  files['summary'] = SUMMARY_FILE;
  files['logs'] = LOG_FILE;
  return files;
}
