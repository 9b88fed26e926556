import type { HttpResponseInit } from '@azure/functions';
import { OpenAPIRegistry, OpenApiGeneratorV31 } from '@asteasolutions/zod-to-openapi';
import { z } from 'zod';
import { componentBody } from '../../shared/components/schemas.js';
import { invokeBody, pipelineJobBody } from '../../shared/schemas/jobs.js';
import { dataAssetBody, datastoreBody, deploymentBody, endpointBody, modelBody } from '../../shared/schemas/resources.js';
import { triggerBody } from '../../shared/schemas/triggers.js';
import { json } from '../lib/http.js';

const problem = z
  .object({ type: z.string(), title: z.string(), status: z.number(), detail: z.string(), code: z.string(), errors: z.array(z.object({ field: z.string(), message: z.string() })).optional() })
  .meta({ id: 'Problem' });

let document: unknown;

/** The API's OpenAPI 3.1 document, generated from the same zod schemas that validate requests. */
function build(): unknown {
  const registry = new OpenAPIRegistry();
  const errors = {
    400: { description: 'Invalid request (problem+json naming the field)', content: { 'application/problem+json': { schema: problem } } },
    404: { description: 'A referenced resource does not exist', content: { 'application/problem+json': { schema: problem } } },
    409: { description: 'Conflict with the current state', content: { 'application/problem+json': { schema: problem } } },
  };
  const resource = (path: string, tag: string, body: z.ZodType, params: Record<string, z.ZodString>): void => {
    const request = { params: z.object(params) };
    registry.registerPath({ method: 'put', path, tags: [tag], request: { ...request, body: { content: { 'application/json': { schema: body } } } }, responses: { 200: { description: 'Updated' }, 201: { description: 'Created' }, ...errors } });
    registry.registerPath({ method: 'get', path, tags: [tag], request, responses: { 200: { description: 'Found' }, 404: errors[404] } });
    registry.registerPath({ method: 'delete', path, tags: [tag], request, responses: { 204: { description: 'Deleted' }, 404: errors[404], 409: errors[409] } });
  };
  resource('/api/datastores/{name}', 'datastores', datastoreBody, { name: z.string() });
  resource('/api/data/{name}/versions/{version}', 'data', dataAssetBody, { name: z.string(), version: z.string() });
  resource('/api/models/{name}/versions/{version}', 'models', modelBody, { name: z.string(), version: z.string() });
  resource('/api/components/{name}/versions/{version}', 'components', componentBody, { name: z.string(), version: z.string() });
  resource('/api/endpoints/{endpoint}', 'endpoints', endpointBody, { endpoint: z.string() });
  resource('/api/endpoints/{endpoint}/deployments/{deployment}', 'deployments', deploymentBody, { endpoint: z.string(), deployment: z.string() });
  resource('/api/endpoints/{endpoint}/triggers/{name}', 'triggers', triggerBody, { endpoint: z.string(), name: z.string() });
  registry.registerPath({
    method: 'post',
    path: '/api/endpoints/{endpoint}/jobs',
    tags: ['jobs'],
    summary: 'Invoke the endpoint: returns 202 with the job at once',
    request: {
      params: z.object({ endpoint: z.string() }),
      headers: z.object({ 'azureml-model-deployment': z.string().optional(), 'idempotency-key': z.string().optional() }),
      body: { content: { 'application/json': { schema: invokeBody } } },
    },
    responses: { 202: { description: 'The job (Location: /api/jobs/{id})' }, ...errors },
  });
  registry.registerPath({
    method: 'post',
    path: '/api/jobs',
    tags: ['jobs'],
    summary: 'Run a standalone pipeline job: returns 202 with the job at once',
    request: { body: { content: { 'application/json': { schema: pipelineJobBody } } } },
    responses: { 202: { description: 'The job (Location: /api/jobs/{id})' }, ...errors },
  });
  for (const [path, summary] of [
    ['/api/jobs/{id}', 'A job: status, counts, outputs, steps'],
    ['/api/jobs/{id}/outputs/{file}', 'Stream an output file'],
    ['/api/jobs/{id}/steps/{step}/outputs/{file}', "Stream a step's output file (user_logs/… for a command step's logs)"],
  ] as const) {
    registry.registerPath({
      method: 'get',
      path,
      tags: ['jobs'],
      summary,
      request: { params: z.object({ id: z.string(), ...(path.includes('{step}') ? { step: z.string() } : {}), ...(path.includes('{file}') ? { file: z.string() } : {}) }) },
      responses: { 200: { description: 'OK' }, 404: errors[404] },
    });
  }
  registry.registerPath({ method: 'post', path: '/api/jobs/{id}/cancel', tags: ['jobs'], request: { params: z.object({ id: z.string() }) }, responses: { 202: { description: 'Canceling' }, 404: errors[404], 409: errors[409] } });
  const generator = new OpenApiGeneratorV31(registry.definitions);
  return generator.generateDocument({ openapi: '3.1.0', info: { title: 'batch-endpoints', version: '1.0.0', description: 'Batch inference endpoints on Azure Functions + Durable Functions.' } });
}

export function getOpenApi(): Promise<HttpResponseInit> {
  document ??= build();
  return Promise.resolve(json(200, document));
}
