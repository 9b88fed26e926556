import { Readable } from 'node:stream';
import type { ReadableStream } from 'node:stream/web';
import type { HttpRequest, HttpResponseInit, InvocationContext } from '@azure/functions';
import * as df from 'durable-functions';
import { pipelineJobOrchestration } from '../../orchestrations/orchestrators.js';
import { BatchError } from '../../shared/errors.js';
import { services } from '../../shared/services.js';
import { endpointName } from '../../shared/schemas/resources.js';
import { JOB_STATUSES, type JobStatus, inlineComponentSteps, isTerminalJob, stepName } from '../../shared/schemas/jobs.js';
import { withNativeInvokeBody } from '../../shared/schemas/azureml-invoke.js';
import { jobView } from '../../shared/views.js';
import { failuresOf, logTail, miniBatchTimeline } from '../../shared/jobs/job-reports.js';
import type { Invoker, Job } from '../../shared/jobs/types.js';
import { callerOf, visibleJob } from '../lib/auth.js';
import { baseUrl, callerKey, json, param, positiveInt, readJson } from '../lib/http.js';
import { parseOrThrow } from '../../shared/schemas/validate.js';
import { allows, canSeeJob } from '../../shared/auth/permissions.js';


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

/** The caller, once their invoke rate allows another job (else 429 with Retry-After; see BATCH_INVOKE_RATE_PER_MINUTE). */
function checkRate(request: HttpRequest): Invoker {
  const invoker = callerOf(request).invoker;
  const { invokeRate, config } = services();
  invokeRate.check(callerKey(invoker), config.limits);
  return invoker;
}

/** POST /api/endpoints/{endpoint}/jobs: invoke the endpoint (native or Azure ML REST body); 202 with the job at once. */
export async function invokeEndpoint(request: HttpRequest, context: InvocationContext): Promise<HttpResponseInit> {
  const client = df.getClient(context);
  const endpoint = param(request, 'endpoint', endpointName);
  const invokedBy = checkRate(request);
  const { job, replayed } = await withNativeInvokeBody(await readJson(request), (body) =>
    services().jobs.invoke({
      endpoint,
      deploymentHeader: request.headers.get('azureml-model-deployment') ?? undefined,
      body,
      idempotencyKey: request.headers.get('idempotency-key') ?? undefined,
      invokedBy,
      start: async (jobId) => {
        await client.startNew(pipelineJobOrchestration.orchestrationName, { instanceId: jobId, input: { jobId } });
      },
    }),
  );
  if (replayed && !canSeeJob(callerOf(request), job.spec.invoked_by)) {
    // Another caller's key: its job is not shown to this one.
    throw new BatchError('conflict', 'This Idempotency-Key was already used by another caller on this endpoint; choose another key.', { details: { field: 'Idempotency-Key' } });
  }
  return json(202, jobView(job, baseUrl(request)), {
    ...pollingHeaders(request, job.spec.id),
    ...(replayed ? { 'idempotent-replayed': 'true' } : {}),
  });
}

/**
 * `POST /api/jobs`: a standalone pipeline job (Azure ML's pipeline job YAML as JSON). A graph with
 * inline components runs code nobody registered: that needs `manage` (see inlineComponentSteps).
 */
export async function submitJob(request: HttpRequest, context: InvocationContext): Promise<HttpResponseInit> {
  const client = df.getClient(context);
  const body = await readJson(request);
  const inline = inlineComponentSteps(body);
  if (inline.length > 0) services().auth.authorize(callerOf(request), 'manage', { field: `jobs.${inline[0] ?? ''}.component`, reason: 'an inline component runs code that is not registered, which' });
  const invokedBy = checkRate(request);
  const { job } = await services().jobs.submit({
    body,
    invokedBy,
    start: async (jobId) => {
      await client.startNew(pipelineJobOrchestration.orchestrationName, { instanceId: jobId, input: { jobId } });
    },
  });
  return json(202, jobView(job, baseUrl(request)), pollingHeaders(request, job.spec.id));
}

/** A job the caller may see: its invoker, or anyone holding `manage`; others' jobs are 404. */
async function jobOf(request: HttpRequest): Promise<Job> {
  return visibleJob(request, await services().jobs.get(jobIdParam(request)));
}

export async function getJob(request: HttpRequest): Promise<HttpResponseInit> {
  const job = await jobOf(request);
  return json(200, jobView(job, baseUrl(request)));
}

/** GET /api/jobs/{id}/status: the status URL; 202 (Retry-After) with the job while it runs, 200 once it has ended. */
export async function getJobStatus(request: HttpRequest): Promise<HttpResponseInit> {
  const job = await jobOf(request);
  const view = jobView(job, baseUrl(request));
  return isTerminalJob(job.state.status) ? json(200, view) : json(202, view, pollingHeaders(request, job.spec.id));
}

/** `GET /api/endpoints/{endpoint}/jobs`: an endpoint's jobs, newest first (filters as listAllJobs). */
export async function listJobs(request: HttpRequest): Promise<HttpResponseInit> {
  const endpoint = param(request, 'endpoint', endpointName);
  return listPage(request, endpoint, `/api/endpoints/${endpoint}/jobs`);
}

/** `GET /api/jobs`: jobs of every endpoint (and standalone pipeline jobs), newest first; `?endpoint=` narrows to one. */
export async function listAllJobs(request: HttpRequest): Promise<HttpResponseInit> {
  const endpoint = request.query.get('endpoint');
  return listPage(request, endpoint === null ? undefined : parseOrThrow(endpointName, endpoint, "query parameter 'endpoint'", 'endpoint'), '/api/jobs');
}

/**
 * One page of a job listing: `top` (1-100, 20), `status` (job statuses, comma-separated),
 * `invoked_by` (see invokedByFilter) and `continuation`; `next_link` repeats the filters.
 */
async function listPage(request: HttpRequest, endpoint: string | undefined, path: string): Promise<HttpResponseInit> {
  const top = positiveInt(request, 'top', 20, 100);
  const invokedBy = invokedByFilter(request);
  const statuses = statusFilter(request);
  const page = await services().jobs.list({ endpoint, statuses, top, continuationToken: request.query.get('continuation') ?? undefined, invokedBy });
  let next: string | null = null;
  if (page.continuationToken) {
    const query = new URLSearchParams({ top: String(top) });
    if (path === '/api/jobs' && endpoint !== undefined) query.set('endpoint', endpoint);
    if (statuses) query.set('status', statuses.join(','));
    const filter = request.query.get('invoked_by');
    if (filter !== null) query.set('invoked_by', filter);
    query.set('continuation', page.continuationToken);
    next = `${baseUrl(request)}${path}?${query.toString()}`;
  }
  return json(200, { value: page.jobs.map((j) => jobView(j, baseUrl(request))), next_link: next });
}

/** `?status=Running,Preparing`: job statuses (any case), comma-separated. */
function statusFilter(request: HttpRequest): JobStatus[] | undefined {
  const raw = request.query.get('status');
  if (raw === null) return undefined;
  const statuses = raw.split(',').map((name) => JOB_STATUSES.find((s) => s.toLowerCase() === name.trim().toLowerCase()));
  if (raw.trim() === '' || statuses.some((s) => s === undefined)) {
    throw new BatchError('validation_failed', `Query parameter 'status' must be one or more of ${JOB_STATUSES.join(', ')}, comma-separated.`, {
      issues: [{ field: 'status', message: `must be one or more of ${JOB_STATUSES.join(', ')}` }],
    });
  }
  return [...new Set(statuses.filter((s): s is JobStatus => s !== undefined))];
}

/**
 * `?invoked_by=me|{object id}`: only the jobs of that principal. Callers without `manage` see only
 * their own jobs, whatever they ask for: `me` is implied, and another principal's id lists nothing.
 */
function invokedByFilter(request: HttpRequest): { id: string; tenant: string | undefined } | undefined {
  const caller = callerOf(request);
  const asked = request.query.get('invoked_by');
  const me = caller.invoker.id === undefined ? undefined : { id: caller.invoker.id.toLowerCase(), tenant: caller.invoker.tenant };
  if (asked !== null && asked !== 'me' && !/^[0-9a-fA-F-]{1,64}$/.test(asked)) {
    throw new BatchError('validation_failed', "Query parameter 'invoked_by' must be 'me' or an object id.", { issues: [{ field: 'invoked_by', message: "must be 'me' or an object id" }] });
  }
  if (allows(caller.permission, 'manage')) {
    if (asked === null) return undefined;
    if (asked !== 'me') return { id: asked.toLowerCase(), tenant: undefined };
    if (!me) {
      throw new BatchError('validation_failed', "invoked_by=me needs a signed-in caller (this one is identified by no object id).", { issues: [{ field: 'invoked_by', message: 'the caller has no object id' }] });
    }
    return me;
  }
  if (!me) return { id: '', tenant: undefined };
  return asked === null || asked === 'me' || asked.toLowerCase() === me.id ? me : { id: '', tenant: undefined };
}

/** POST /api/jobs/{id}/cancel: stop scheduling; the job ends Canceled with its partial outputs. */
export async function cancelJob(request: HttpRequest, context: InvocationContext): Promise<HttpResponseInit> {
  const client = df.getClient(context);
  const job = await services().jobs.cancel((await jobOf(request)).spec.id, async (instanceIds) => {
    await Promise.all(
      instanceIds.map((id) =>
        // Chunks not started yet do not exist; finished ones no longer listen. Both are fine.
        client.raiseEvent(id, 'cancel', { at: new Date().toISOString() }).catch(() => undefined),
      ),
    );
  });
  return json(202, jobView(job, baseUrl(request)));
}

/** POST /api/jobs/{id}/rerun: a new job scoring what a finished job did not, reusing its other rows; 202 with the job. */
export async function rerunJob(request: HttpRequest, context: InvocationContext): Promise<HttpResponseInit> {
  const client = df.getClient(context);
  const parent = await jobOf(request);
  const invokedBy = checkRate(request);
  const { job } = await services().jobs.rerun({
    id: parent.spec.id,
    body: await readJson(request),
    invokedBy,
    start: async (jobId) => {
      await client.startNew(pipelineJobOrchestration.orchestrationName, { instanceId: jobId, input: { jobId } });
    },
  });
  return json(202, jobView(job, baseUrl(request)), pollingHeaders(request, job.spec.id));
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
  const job = await jobOf(request);
  const path = param(request, 'file');
  if (path.split('/').some((s) => s === '..' || s === '.' || s === '')) {
    throw new BatchError('validation_failed', 'The file path must stay inside the job output folder.', { issues: [{ field: 'file', message: 'invalid path' }] });
  }
  // Read through the owner check: a file another job wrote into this job's reused folder is a 410.
  const response = await jobs.readOutput(job, step, path, async ({ blob, etag, file }): Promise<HttpResponseInit> => {
    const download = await blob.download(0, undefined, { conditions: { ifMatch: etag } });
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
  });
  if (response) return response;
  throw new BatchError('not_found', `Job '${job.spec.id}' has no output '${path}'${job.state.status === 'Completed' ? '' : ` (the job is ${job.state.status})`}.`, {
    details: { resource: 'Job output', name: path, field: 'file' },
  });
}

/** `?step=`: a step of the job (its reports), or the job's own when left out. */
function stepQuery(request: HttpRequest): string | undefined {
  const step = request.query.get('step');
  return step === null ? undefined : parseOrThrow(stepName, step, "query parameter 'step'", 'step');
}

/** GET /api/jobs/{id}/mini-batches: each mini-batch's final attempt (processed_mini_batches.csv), once written. */
export async function getMiniBatches(request: HttpRequest): Promise<HttpResponseInit> {
  const job = await jobOf(request);
  return json(200, { status: job.state.status, ...(await miniBatchTimeline(services().jobs, job, stepQuery(request))) });
}

/** GET /api/jobs/{id}/failures: failed items by reason (errors.jsonl), once written. */
export async function getFailures(request: HttpRequest): Promise<HttpResponseInit> {
  const job = await jobOf(request);
  return json(200, { status: job.state.status, ...(await failuresOf(services().jobs, job, stepQuery(request))) });
}

/** GET /api/jobs/{id}/log?tail=N: the last N (100; at most 1000) lines of logs/job.log, once written. */
export async function getLogTail(request: HttpRequest): Promise<HttpResponseInit> {
  const job = await jobOf(request);
  const tail = positiveInt(request, 'tail', 100, 1000);
  return json(200, { status: job.state.status, ...(await logTail(services().jobs, job, stepQuery(request), tail)) });
}
