import { Readable } from 'node:stream';
import type { ReadableStream } from 'node:stream/web';
import type { HttpRequest, HttpResponseInit, InvocationContext } from '@azure/functions';
import * as df from 'durable-functions';
import { pipelineJobOrchestration } from '../../orchestrations/orchestrators.js';
import { BatchError } from '../../shared/errors.js';
import { services } from '../../shared/services.js';
import { isNotFound } from '../../shared/storage/clients.js';
import { endpointName } from '../../shared/schemas/resources.js';
import { stepName } from '../../shared/schemas/jobs.js';
import { jobView } from '../../shared/views.js';
import { baseUrl, invokerOf, json, param, positiveInt, readJson } from '../lib/http.js';


/** Job ids are generated (bj-...); anything else cannot be a job, so it is simply not found. */
function jobIdParam(request: HttpRequest): string {
  const id = param(request, 'id');
  if (!/^[a-z0-9][a-z0-9-]{0,80}$/.test(id)) throw new BatchError('not_found', `Job '${id}' does not exist.`, { details: { resource: 'Job', name: id } });
  return id;
}

/** POST /api/endpoints/{endpoint}/jobs: invoke the endpoint; 202 with the job at once. */
export async function invokeEndpoint(request: HttpRequest, context: InvocationContext): Promise<HttpResponseInit> {
  const client = df.getClient(context);
  const { job, replayed } = await services().jobs.invoke({
    endpoint: param(request, 'endpoint', endpointName),
    deploymentHeader: request.headers.get('azureml-model-deployment') ?? undefined,
    body: await readJson(request),
    idempotencyKey: request.headers.get('idempotency-key') ?? undefined,
    invokedBy: invokerOf(request),
    start: async (jobId) => {
      await client.startNew(pipelineJobOrchestration.orchestrationName, { instanceId: jobId, input: { jobId } });
    },
  });
  const location = `${baseUrl(request)}/api/jobs/${job.spec.id}`;
  return json(202, jobView(job, baseUrl(request)), {
    location,
    'retry-after': '5',
    ...(replayed ? { 'idempotent-replayed': 'true' } : {}),
  });
}

/** `POST /api/jobs`: a standalone pipeline job (Azure ML's pipeline job YAML as JSON). */
export async function submitJob(request: HttpRequest, context: InvocationContext): Promise<HttpResponseInit> {
  const client = df.getClient(context);
  const { job } = await services().jobs.submit({
    body: await readJson(request),
    invokedBy: invokerOf(request),
    start: async (jobId) => {
      await client.startNew(pipelineJobOrchestration.orchestrationName, { instanceId: jobId, input: { jobId } });
    },
  });
  return json(202, jobView(job, baseUrl(request)), { location: `${baseUrl(request)}/api/jobs/${job.spec.id}`, 'retry-after': '5' });
}

export async function getJob(request: HttpRequest): Promise<HttpResponseInit> {
  const job = await services().jobs.get(jobIdParam(request));
  return json(200, jobView(job, baseUrl(request)));
}

export async function listJobs(request: HttpRequest): Promise<HttpResponseInit> {
  const endpoint = param(request, 'endpoint', endpointName);
  const top = positiveInt(request, 'top', 20, 100);
  const page = await services().jobs.list(endpoint, { top, continuationToken: request.query.get('continuation') ?? undefined });
  const next = page.continuationToken
    ? `${baseUrl(request)}/api/endpoints/${endpoint}/jobs?top=${top}&continuation=${encodeURIComponent(page.continuationToken)}`
    : null;
  return json(200, { value: page.jobs.map((j) => jobView(j, baseUrl(request))), next_link: next });
}

/** POST /api/jobs/{id}/cancel: stop scheduling; the job ends Canceled with its partial outputs. */
export async function cancelJob(request: HttpRequest, context: InvocationContext): Promise<HttpResponseInit> {
  const client = df.getClient(context);
  const job = await services().jobs.cancel(jobIdParam(request), async (instanceIds) => {
    await Promise.all(
      instanceIds.map((id) =>
        // Chunks not started yet do not exist; finished ones no longer listen. Both are fine.
        client.raiseEvent(id, 'cancel', { at: new Date().toISOString() }).catch(() => undefined),
      ),
    );
  });
  return json(202, jobView(job, baseUrl(request)));
}

/** GET /api/jobs/{id}/outputs/{*file}: streams a file of the job's outputs. */
export async function getJobOutput(request: HttpRequest): Promise<HttpResponseInit> {
  return streamOutput(request, undefined);
}

/** GET /api/jobs/{id}/steps/{step}/outputs/{*file}: streams a file of a step's outputs. */
export async function getStepOutput(request: HttpRequest): Promise<HttpResponseInit> {
  return streamOutput(request, param(request, 'step', stepName));
}

async function streamOutput(request: HttpRequest, step: string | undefined): Promise<HttpResponseInit> {
  const { jobs } = services();
  const job = await jobs.get(jobIdParam(request));
  const path = param(request, 'file');
  if (path.split('/').some((s) => s === '..' || s === '.' || s === '')) {
    throw new BatchError('validation_failed', 'The file path must stay inside the job output folder.', { issues: [{ field: 'file', message: 'invalid path' }] });
  }
  const { folder, file } = jobs.outputFile(job, step, path);
  const blob = folder.container.getBlobClient(folder.blobName(file));
  try {
    const download = await blob.download();
    const body = download.readableStreamBody;
    return {
      status: 200,
      headers: {
        'content-type': download.contentType ?? 'application/octet-stream',
        ...(download.contentLength === undefined ? {} : { 'content-length': String(download.contentLength) }),
        'content-disposition': `inline; filename="${file.split('/').pop() ?? 'output'}"`,
      },
      body: body ? (Readable.toWeb(body as Readable) as ReadableStream<Uint8Array>) : '',
    };
  } catch (err) {
    if (isNotFound(err)) {
      throw new BatchError('not_found', `Job '${job.spec.id}' has no output '${path}'${job.state.status === 'Completed' ? '' : ` (the job is ${job.state.status})`}.`, {
        details: { resource: 'Job output', name: path },
      });
    }
    throw new BatchError('storage_failed', `Could not read output '${path}'.`, { cause: err });
  }
}
