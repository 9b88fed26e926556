import { Readable } from 'node:stream';
import type { ReadableStream } from 'node:stream/web';
import type { HttpRequest, HttpResponseInit, InvocationContext } from '@azure/functions';
import * as df from 'durable-functions';
import { pipelineJobOrchestration } from '../../orchestrations/orchestrators.js';
import { BatchError } from '../../shared/errors.js';
import { services } from '../../shared/services.js';
import { isNotFound } from '../../shared/storage/clients.js';
import { endpointName } from '../../shared/schemas/resources.js';
import { isTerminalJob, stepName } from '../../shared/schemas/jobs.js';
import { withNativeInvokeBody } from '../../shared/schemas/azureml-invoke.js';
import { jobView } from '../../shared/views.js';
import { baseUrl, invokerOf, json, param, positiveInt, readJson } from '../lib/http.js';


/** Job ids are generated (bj-...); anything else cannot be a job, so it is simply not found. */
function jobIdParam(request: HttpRequest): string {
  const id = param(request, 'id');
  if (!/^[a-z0-9][a-z0-9-]{0,80}$/.test(id)) throw new BatchError('not_found', `Job '${id}' does not exist.`, { details: { resource: 'Job', name: id, field: 'id' } });
  return id;
}

/**
 * The long-running-operation pattern that Logic Apps (and any client that follows `Location` and
 * `Retry-After`) follows by itself: invoke answers 202 with `Location` = the job's status URL,
 * which answers 202 with `Retry-After` while the job runs and 200 with the job once it has ended.
 * A caller that sent its function key as `code` gets it back on the status URL (it chose to put
 * the key in URLs); a key sent as `x-functions-key` is never copied into one.
 */
function pollingHeaders(request: HttpRequest, jobId: string): Record<string, string> {
  const code = request.query.get('code');
  return {
    location: `${baseUrl(request)}/api/jobs/${jobId}/status${code ? `?code=${encodeURIComponent(code)}` : ''}`,
    'retry-after': String(services().config.statusRetryAfterSeconds),
  };
}

/** POST /api/endpoints/{endpoint}/jobs: invoke the endpoint (native or Azure ML REST body); 202 with the job at once. */
export async function invokeEndpoint(request: HttpRequest, context: InvocationContext): Promise<HttpResponseInit> {
  const client = df.getClient(context);
  const endpoint = param(request, 'endpoint', endpointName);
  const { job, replayed } = await withNativeInvokeBody(await readJson(request), (body) =>
    services().jobs.invoke({
      endpoint,
      deploymentHeader: request.headers.get('azureml-model-deployment') ?? undefined,
      body,
      idempotencyKey: request.headers.get('idempotency-key') ?? undefined,
      invokedBy: invokerOf(request),
      start: async (jobId) => {
        await client.startNew(pipelineJobOrchestration.orchestrationName, { instanceId: jobId, input: { jobId } });
      },
    }),
  );
  return json(202, jobView(job, baseUrl(request)), {
    ...pollingHeaders(request, job.spec.id),
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
  return json(202, jobView(job, baseUrl(request)), pollingHeaders(request, job.spec.id));
}

export async function getJob(request: HttpRequest): Promise<HttpResponseInit> {
  const job = await services().jobs.get(jobIdParam(request));
  return json(200, jobView(job, baseUrl(request)));
}

/** GET /api/jobs/{id}/status: the status URL; 202 (Retry-After) with the job while it runs, 200 once it has ended. */
export async function getJobStatus(request: HttpRequest): Promise<HttpResponseInit> {
  const job = await services().jobs.get(jobIdParam(request));
  const view = jobView(job, baseUrl(request));
  return isTerminalJob(job.state.status) ? json(200, view) : json(202, view, pollingHeaders(request, job.spec.id));
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
        details: { resource: 'Job output', name: path, field: 'file' },
      });
    }
    throw new BatchError('storage_failed', `Could not read output '${path}'.`, { cause: err });
  }
}
