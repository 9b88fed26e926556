import { OpenAPIRegistry, OpenApiGeneratorV3, OpenApiGeneratorV31 } from '@asteasolutions/zod-to-openapi';
import { z } from 'zod';
import { componentBody } from '../components/schemas.js';
import { azureMlInvokeBody } from '../schemas/azureml-invoke.js';
import { JOB_STATUSES, invokeBody, pipelineJobBody, rerunBody } from '../schemas/jobs.js';
import { dataAssetBody, datastoreBody, deploymentBody, endpointBody, modelBody } from '../schemas/resources.js';
import { triggerBody } from '../schemas/triggers.js';

/**
 * The API's description, built once from the zod schemas that validate requests: served as
 * OpenAPI 3.1 (`GET /api/openapi.json`) and, through OpenAPI 3.0, as the custom connector's
 * OpenAPI 2.0 definition (./connector.ts). Every operation has an `operationId` and says how a
 * Logic Apps / Power Automate designer should show it (`x-ms-visibility`: `important` operations
 * are offered first, `advanced` ones behind "more", `internal` ones never, such as the status URL
 * that the long-running-operation pattern polls by itself).
 */

/** Where a job's status is polled (the long-running-operation pattern): `Location` of invoke. */
export const JOB_STATUS_PATH = '/api/jobs/{id}/status';

const problem = z
  .object({ type: z.string(), title: z.string(), status: z.number(), detail: z.string(), code: z.string(), errors: z.array(z.object({ field: z.string(), message: z.string() })).optional() })
  .meta({ id: 'Problem' });

/** Who invoked a job (see README, "The invoker"). */
const invoker = z
  .looseObject({
    name: z.string().meta({ description: "A display name: the user's name, the application's id, 'function key' or 'anonymous'" }),
    id: z.string().optional().meta({ description: 'The object id (oid) in Microsoft Entra ID' }),
    tenant: z.string().optional().meta({ description: 'The tenant id (tid)' }),
    app_id: z.string().optional().meta({ description: 'The client application (azp)' }),
    kind: z.enum(['user', 'app']).optional().meta({ description: 'user (delegated scopes) or app (an application or managed identity: app roles)' }),
    via: z.enum(['entra', 'easy_auth', 'function_key', 'anonymous', 'event_grid']).meta({ description: 'How the caller authenticated (event_grid: a blob-created trigger)' }),
    trigger: z.looseObject({ rule: z.string(), batch: z.string() }).optional().meta({ description: 'For event_grid: the trigger rule and batch of files' }),
  })
  .meta({ id: 'Invoker' });

/** The job as `GET /api/jobs/{id}` shows it: the fields a workflow reads (more may follow). */
const jobResponse = z
  .looseObject({
    id: z.string().meta({ description: 'The job id (bj-…)' }),
    status: z.enum(JOB_STATUSES).meta({ description: 'Completed, Failed and Canceled are final' }),
    type: z.enum(['model', 'pipeline']),
    endpoint: z.string().nullable(),
    deployment: z.string().nullable(),
    display_name: z.string().nullable(),
    created_at: z.string(),
    started_at: z.string().nullable(),
    completed_at: z.string().nullable(),
    invoked_by: invoker,
    counts: z.looseObject({
      mini_batches: z.looseObject({ total: z.number().int(), succeeded: z.number().int(), failed: z.number().int() }),
      items: z.looseObject({ total: z.number().int(), succeeded: z.number().int(), failed: z.number().int() }),
    }),
    error: z.looseObject({ code: z.string(), message: z.string() }).nullable(),
    outputs: z.record(z.string(), z.looseObject({ path: z.string() })),
    links: z.looseObject({ self: z.string() }),
  })
  .meta({ id: 'Job' });

type Visibility = 'important' | 'advanced' | 'internal';

function buildRegistry(): OpenAPIRegistry {
  const registry = new OpenAPIRegistry();
  const errors = {
    400: { description: 'Invalid request (problem+json naming the field)', content: { 'application/problem+json': { schema: problem } } },
    404: { description: 'A referenced resource does not exist', content: { 'application/problem+json': { schema: problem } } },
    409: { description: 'Conflict with the current state', content: { 'application/problem+json': { schema: problem } } },
    410: {
      description: "outputs_replaced: the job's output folder was emptied and another job (owner_job_id) writes there now; its files are not this job's",
      content: { 'application/problem+json': { schema: problem } },
    },
    413: { description: 'The request body is larger than BATCH_MAX_REQUEST_BODY_BYTES (problem+json naming the limit)', content: { 'application/problem+json': { schema: problem } } },
  };
  const rateLimited = {
    429: {
      description: 'The caller invoked too often (BATCH_INVOKE_RATE_PER_MINUTE): retry after `Retry-After` seconds',
      headers: z.object({ 'Retry-After': z.string().meta({ description: 'Seconds to wait before invoking again' }) }),
      content: { 'application/problem+json': { schema: problem } },
    },
  };
  const job = { 'application/json': { schema: jobResponse } };
  const started = {
    description: `The job, created and started. \`Location\` is its status URL (${JOB_STATUS_PATH}): poll it after \`Retry-After\` seconds until it answers 200.`,
    headers: z.object({
      Location: z.string().meta({ description: 'Absolute URL of the job status (202 while the job runs, 200 with the job once it has ended)' }),
      'Retry-After': z.string().meta({ description: 'Seconds to wait before polling Location' }),
    }),
    content: job,
  };
  const resource = (path: string, tag: string, kind: string, body: z.ZodType, params: Record<string, z.ZodString>): void => {
    const request = { params: z.object(params) };
    const visibility: Visibility = 'advanced';
    registry.registerPath({ method: 'put', path, operationId: `Put${kind}`, summary: `Create or update a ${tag.replace(/s$/, '')}`, 'x-ms-visibility': visibility, tags: [tag], request: { ...request, body: { content: { 'application/json': { schema: body } } } }, responses: { 200: { description: 'Updated' }, 201: { description: 'Created' }, ...errors } });
    registry.registerPath({ method: 'get', path, operationId: `Get${kind}`, summary: `Get a ${tag.replace(/s$/, '')}`, 'x-ms-visibility': visibility, tags: [tag], request, responses: { 200: { description: 'Found' }, 404: errors[404] } });
    registry.registerPath({ method: 'delete', path, operationId: `Delete${kind}`, summary: `Delete a ${tag.replace(/s$/, '')}`, 'x-ms-visibility': visibility, tags: [tag], request, responses: { 204: { description: 'Deleted' }, 404: errors[404], 409: errors[409] } });
  };
  resource('/api/datastores/{name}', 'datastores', 'Datastore', datastoreBody, { name: z.string() });
  resource('/api/data/{name}/versions/{version}', 'data', 'DataAsset', dataAssetBody, { name: z.string(), version: z.string() });
  resource('/api/models/{name}/versions/{version}', 'models', 'Model', modelBody, { name: z.string(), version: z.string() });
  resource('/api/components/{name}/versions/{version}', 'components', 'Component', componentBody, { name: z.string(), version: z.string() });
  resource('/api/endpoints/{endpoint}', 'endpoints', 'Endpoint', endpointBody, { endpoint: z.string() });
  resource('/api/endpoints/{endpoint}/deployments/{deployment}', 'deployments', 'Deployment', deploymentBody, { endpoint: z.string(), deployment: z.string() });
  resource('/api/endpoints/{endpoint}/triggers/{name}', 'triggers', 'Trigger', triggerBody, { endpoint: z.string(), name: z.string() });
  registry.registerPath({
    method: 'post',
    path: '/api/endpoints/{endpoint}/jobs',
    operationId: 'InvokeEndpoint',
    summary: 'Invoke a batch endpoint',
    description:
      'Starts a batch job on the endpoint (its default deployment unless azureml-model-deployment names one) and answers 202 with the job at once. ' +
      "The body is this API's invoke body, or Azure ML's batch-endpoint REST body ({\"properties\": {\"InputData\": …, \"OutputData\": …}}).",
    'x-ms-visibility': 'important',
    tags: ['jobs'],
    request: {
      params: z.object({ endpoint: z.string().meta({ description: 'The batch endpoint' }) }),
      headers: z.object({
        'azureml-model-deployment': z.string().optional().meta({ description: "The deployment to run (else the endpoint's default)" }),
        'idempotency-key': z.string().optional().meta({ description: 'A retried request with the same key returns the same job' }),
      }),
      body: { content: { 'application/json': { schema: z.union([invokeBody, azureMlInvokeBody]) } } },
    },
    responses: { 202: started, ...errors, ...rateLimited },
  });
  registry.registerPath({
    method: 'post',
    path: '/api/jobs',
    operationId: 'SubmitPipelineJob',
    summary: 'Run a standalone pipeline job',
    description: "Azure ML's pipeline job shape; answers 202 with the job at once.",
    'x-ms-visibility': 'advanced',
    tags: ['jobs'],
    request: { body: { content: { 'application/json': { schema: pipelineJobBody } } } },
    responses: { 202: started, ...errors, ...rateLimited },
  });
  registry.registerPath({
    method: 'get',
    path: '/api/jobs/{id}',
    operationId: 'GetJob',
    summary: 'Get a job',
    description: 'Status, counts, outputs and steps of a job.',
    'x-ms-visibility': 'important',
    tags: ['jobs'],
    request: { params: z.object({ id: z.string().meta({ description: 'The job id' }) }) },
    responses: { 200: { description: 'The job', content: job }, 404: errors[404] },
  });
  registry.registerPath({
    method: 'get',
    path: JOB_STATUS_PATH,
    operationId: 'GetJobStatus',
    summary: 'Wait for a job',
    description: 'The status URL of the long-running-operation pattern: 202 with Retry-After (and the job) while the job runs, 200 with the job once it is Completed, Failed or Canceled.',
    'x-ms-visibility': 'internal',
    tags: ['jobs'],
    request: { params: z.object({ id: z.string().meta({ description: 'The job id' }) }) },
    responses: {
      200: { description: 'The job has ended (Completed, Failed or Canceled)', content: job },
      202: { description: 'The job is still running; poll again after Retry-After seconds', headers: started.headers, content: job },
      404: errors[404],
    },
  });
  const listQuery = {
    top: z.number().int().min(1).max(100).optional().meta({ description: 'Jobs per page (20)' }),
    status: z.string().optional().meta({ description: `Only jobs in these statuses, comma-separated (${JOB_STATUSES.join(', ')}); a filtered page may hold fewer than top jobs and still have a next_link` }),
    invoked_by: z.string().optional().meta({ description: "'me' or an object id: only that principal's jobs (callers without manage permission see only their own)" }),
    continuation: z.string().optional().meta({ description: 'From next_link of the previous page' }),
  };
  const jobPage = { description: 'Jobs, newest first', content: { 'application/json': { schema: z.object({ value: z.array(jobResponse), next_link: z.string().nullable() }).meta({ id: 'JobPage' }) } } };
  registry.registerPath({
    method: 'get',
    path: '/api/endpoints/{endpoint}/jobs',
    operationId: 'ListJobs',
    summary: "List an endpoint's jobs",
    'x-ms-visibility': 'advanced',
    tags: ['jobs'],
    request: { params: z.object({ endpoint: z.string() }), query: z.object(listQuery) },
    responses: { 200: jobPage, 400: errors[400], 404: errors[404] },
  });
  registry.registerPath({
    method: 'get',
    path: '/api/jobs',
    operationId: 'ListAllJobs',
    summary: 'List jobs of all endpoints',
    description: 'Jobs of every endpoint and standalone pipeline jobs, newest first; endpoint narrows to one endpoint (404 when it does not exist).',
    'x-ms-visibility': 'advanced',
    tags: ['jobs'],
    request: { query: z.object({ endpoint: z.string().optional().meta({ description: 'Only this endpoint\'s jobs' }), ...listQuery }) },
    responses: { 200: jobPage, 400: errors[400], 404: errors[404] },
  });
  for (const [path, operationId, summary] of [
    ['/api/jobs/{id}/outputs/{file}', 'GetJobOutput', 'Download an output file of a job'],
    ['/api/jobs/{id}/steps/{step}/outputs/{file}', 'GetStepOutput', "Download an output file of a job's step (user_logs/… for a command step's logs)"],
  ] as const) {
    registry.registerPath({
      method: 'get',
      path,
      operationId,
      summary,
      'x-ms-visibility': 'advanced',
      tags: ['jobs'],
      request: { params: z.object({ id: z.string(), ...(path.includes('{step}') ? { step: z.string() } : {}), file: z.string().meta({ description: 'e.g. predictions.csv' }) }) },
      responses: { 200: { description: 'The file' }, 404: errors[404], 410: errors[410] },
    });
  }
  const reportQuery = { step: z.string().optional().meta({ description: "A step of a pipeline job (its reports); else the job's own" }) };
  const reportNote = 'Read from the file finalize writes: complete is false, and the list empty, until it exists (while the job runs).';
  registry.registerPath({
    method: 'get',
    path: '/api/jobs/{id}/mini-batches',
    operationId: 'GetJobMiniBatches',
    summary: "Each mini-batch's final attempt (processed_mini_batches.csv)",
    description: reportNote,
    'x-ms-visibility': 'advanced',
    tags: ['jobs'],
    request: { params: z.object({ id: z.string() }), query: z.object(reportQuery) },
    responses: {
      200: {
        description: 'Mini-batches in order',
        content: {
          'application/json': {
            schema: z.object({
              status: z.enum(JOB_STATUSES),
              complete: z.boolean(),
              value: z.array(
                z.object({
                  mini_batch_id: z.number().int(),
                  attempts: z.number().int(),
                  items: z.number().int(),
                  succeeded: z.number().int(),
                  failed: z.number().int(),
                  seconds: z.number(),
                  status: z.string().meta({ description: 'completed, failed or timeout' }),
                  error: z.string().nullable(),
                  started_at: z.string().nullable().meta({ description: 'When the final attempt started' }),
                }),
              ),
            }),
          },
        },
      },
      400: errors[400],
      404: errors[404],
      410: errors[410],
    },
  });
  registry.registerPath({
    method: 'get',
    path: '/api/jobs/{id}/failures',
    operationId: 'GetJobFailures',
    summary: 'Failed items by reason (errors.jsonl)',
    description: reportNote,
    'x-ms-visibility': 'advanced',
    tags: ['jobs'],
    request: { params: z.object({ id: z.string() }), query: z.object(reportQuery) },
    responses: {
      200: {
        description: 'Reasons, most items first, each with a few sample items',
        content: {
          'application/json': {
            schema: z.object({
              status: z.enum(JOB_STATUSES),
              complete: z.boolean(),
              items: z.number().int(),
              reasons: z.array(z.object({ reason: z.string(), count: z.number().int(), samples: z.array(z.looseObject({ mini_batch: z.number().int(), file: z.string().nullable() })) })),
            }),
          },
        },
      },
      400: errors[400],
      404: errors[404],
      410: errors[410],
    },
  });
  registry.registerPath({
    method: 'get',
    path: '/api/jobs/{id}/log',
    operationId: 'GetJobLogTail',
    summary: 'The tail of logs/job.log',
    description: reportNote,
    'x-ms-visibility': 'advanced',
    tags: ['jobs'],
    request: { params: z.object({ id: z.string() }), query: z.object({ ...reportQuery, tail: z.number().int().min(1).max(1000).optional().meta({ description: 'Lines (100)' }) }) },
    responses: {
      200: { description: 'The last lines', content: { 'application/json': { schema: z.object({ status: z.enum(JOB_STATUSES), complete: z.boolean(), lines: z.array(z.string()), truncated: z.boolean() }) } } },
      400: errors[400],
      404: errors[404],
      410: errors[410],
    },
  });
  registry.registerPath({
    method: 'post',
    path: '/api/jobs/{id}/cancel',
    operationId: 'CancelJob',
    summary: 'Cancel a job',
    'x-ms-visibility': 'advanced',
    tags: ['jobs'],
    request: { params: z.object({ id: z.string() }) },
    responses: { 202: { description: 'Canceling', content: job }, 404: errors[404], 409: errors[409] },
  });
  registry.registerPath({
    method: 'post',
    path: '/api/jobs/{id}/rerun',
    operationId: 'RerunJob',
    summary: 'Rerun what a finished job did not score, reusing its other rows',
    'x-ms-visibility': 'advanced',
    tags: ['jobs'],
    request: { params: z.object({ id: z.string() }), body: { content: { 'application/json': { schema: rerunBody } }, required: false } },
    responses: { 202: { description: 'The rerun job, created and started', content: job }, 400: errors[400], 404: errors[404], 409: errors[409], 410: errors[410] },
  });
  return registry;
}

const INFO = { title: 'batch-endpoints', version: '1.0.0', description: 'Batch inference endpoints (Azure ML batch endpoints and deployments) on Azure Functions + Durable Functions.' };

let v31: unknown;
let v30: unknown;

/** The OpenAPI 3.1 document (`GET /api/openapi.json`). */
export function openApi31(): unknown {
  v31 ??= new OpenApiGeneratorV31(buildRegistry().definitions).generateDocument({ openapi: '3.1.0', info: INFO });
  return v31;
}

/** The same API as OpenAPI 3.0 (the starting point of the 2.0 connector definition). */
export function openApi30(): unknown {
  v30 ??= new OpenApiGeneratorV3(buildRegistry().definitions).generateDocument({ openapi: '3.0.3', info: INFO });
  return v30;
}
