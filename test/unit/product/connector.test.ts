import SwaggerParser from '@apidevtools/swagger-parser';
import type { OpenAPI } from 'openapi-types';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { openApi30, openApi31 } from '../../../shared/openapi/api-document.js';
import { CONNECTOR_PLACEHOLDERS, connectorDefinition, connectorProperties, displayName } from '../../../shared/openapi/connector.js';
import { schema2, toSwagger2 } from '../../../shared/openapi/swagger2.js';
import { invokeBody } from '../../../shared/schemas/jobs.js';
import { parseOrThrow } from '../../../shared/schemas/validate.js';
import { CONNECTOR_DIR, connectorFiles } from '../../../scripts/build-connector.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Json = any;

const METHODS = ['get', 'put', 'post', 'delete'];

function operations(doc: Json): [string, string, Json][] {
  return Object.entries(doc.paths as Record<string, Json>).flatMap(([path, item]) => METHODS.filter((m) => item[m]).map((m): [string, string, Json] => [path, m, item[m]]));
}

describe('OpenAPI 3.0 → 2.0', () => {
  it('converts the schema keywords our documents use', () => {
    expect(schema2({ $ref: '#/components/schemas/Job' }, 's')).toEqual({ $ref: '#/definitions/Job' });
    expect(schema2({ type: 'string', nullable: true, pattern: '^a', maxLength: 3, deprecated: true, writeOnly: true }, 's')).toEqual({ type: 'string', 'x-nullable': true, pattern: '^a', maxLength: 3 });
    expect(schema2({ type: 'object', properties: { a: { $ref: '#/components/schemas/A' } }, additionalProperties: { type: 'integer', minimum: 0 }, required: ['a'] }, 's')).toEqual({
      type: 'object',
      properties: { a: { $ref: '#/definitions/A' } },
      additionalProperties: { type: 'integer', minimum: 0 },
      required: ['a'],
    });
    expect(schema2({ type: 'array', items: { type: 'string', enum: ['x'] }, minItems: 1 }, 's')).toEqual({ type: 'array', items: { type: 'string', enum: ['x'] }, minItems: 1 });
  });

  it('turns a union, which 2.0 lacks, into a schema of any value that names the alternatives', () => {
    expect(schema2({ anyOf: [{ type: 'string' }, { type: 'number' }], description: 'A value.', default: 'a' }, 's')).toEqual({ description: 'A value. (One of: string, or number.)', default: 'a' });
    expect(
      schema2({ oneOf: [{ $ref: '#/components/schemas/A' }, { type: 'object', properties: { type: { type: 'string', enum: ['b'] } } }, { type: 'object', properties: { path: { type: 'string' } } }], discriminator: { propertyName: 'type' }, nullable: true }, 's'),
    ).toEqual({ description: '(One of: A, or an object of type "b", or an object with path.)', 'x-nullable': true });
  });

  it('refuses what it does not know, naming where it is', () => {
    expect(() => schema2({ allOf: [{ type: 'string' }] }, 'components.schemas.X')).toThrow(/allOf at components\.schemas\.X\.allOf/);
    expect(() => schema2({ $ref: 'other.json#/X' }, 'here')).toThrow(/\$ref "other.json#\/X" at here/);
    expect(() => toSwagger2({ openapi: '3.1.0', paths: {} }, { host: 'h' })).toThrow(/not an OpenAPI 3.0 document/);
    expect(() => toSwagger2({ openapi: '3.0.3', paths: { '/a': { get: { callbacks: {}, responses: {} } } } }, { host: 'h' })).toThrow(/callbacks at paths\./);
    expect(() => toSwagger2({ openapi: '3.0.3', paths: { '/a': { get: { parameters: [{ name: 'c', in: 'cookie', schema: { type: 'string' } }], responses: {} } } } }, { host: 'h' })).toThrow(/cookie/);
    expect(() => toSwagger2({ openapi: '3.0.3', paths: {}, components: { securitySchemes: { k: {} } } }, { host: 'h' })).toThrow(/components\.securitySchemes/);
  });

  it('moves bodies, parameters, responses and headers to their 2.0 places', () => {
    const doc = toSwagger2(
      {
        openapi: '3.0.3',
        info: { title: 't', version: '1' },
        paths: {
          '/x/{id}': {
            post: {
              operationId: 'Do',
              'x-ms-visibility': 'important',
              parameters: [
                { name: 'id', in: 'path', required: true, schema: { type: 'string', minLength: 1 } },
                { name: 'top', in: 'query', schema: { type: 'integer', maximum: 9 } },
              ],
              requestBody: { required: true, content: { 'application/json': { schema: { $ref: '#/components/schemas/B' } } } },
              responses: {
                202: { description: 'started', headers: { Location: { description: 'where', schema: { type: 'string' } } }, content: { 'application/json': { schema: { type: 'object' } } } },
                400: { description: 'bad', content: { 'application/problem+json': { schema: { type: 'object' } } } },
              },
            },
          },
        },
        components: { schemas: { B: { type: 'object', nullable: true } }, parameters: {} },
      },
      { host: 'example.net', schemes: ['http'] },
    );
    expect(doc).toEqual({
      swagger: '2.0',
      info: { title: 't', version: '1' },
      host: 'example.net',
      basePath: '/',
      schemes: ['http'],
      paths: {
        '/x/{id}': {
          post: {
            operationId: 'Do',
            'x-ms-visibility': 'important',
            consumes: ['application/json'],
            produces: ['application/json', 'application/problem+json'],
            parameters: [
              { name: 'id', in: 'path', required: true, type: 'string', minLength: 1 },
              { name: 'top', in: 'query', required: false, type: 'integer', maximum: 9 },
              { name: 'body', in: 'body', required: true, schema: { $ref: '#/definitions/B' } },
            ],
            responses: {
              202: { description: 'started', headers: { Location: { description: 'where', type: 'string' } }, schema: { type: 'object' } },
              400: { description: 'bad', schema: { type: 'object' } },
            },
          },
        },
      },
      definitions: { B: { type: 'object', 'x-nullable': true } },
    });
  });
});

describe('the API document', () => {
  it("describes the job's invoker and the list's invoked_by filter (31 and the connector)", () => {
    const api = openApi31() as Json;
    expect(api.paths['/api/endpoints/{endpoint}/jobs'].get.parameters.map((p: Json) => p.name)).toContain('invoked_by');
    expect(api.components.schemas.Job.properties.invoked_by).toEqual({ $ref: '#/components/schemas/Invoker' });
    expect(api.components.schemas.Invoker.properties.via.enum).toEqual(['entra', 'easy_auth', 'function_key', 'anonymous', 'event_grid']);
    const connector = connectorDefinition({ host: 'h' }) as Json;
    expect(connector.paths['/api/endpoints/{endpoint}/jobs'].get.parameters.map((p: Json) => p.name)).toContain('invoked_by');
    expect(connector.definitions.Invoker.properties.id.type).toBe('string');
  });
});

describe('the custom connector definition', () => {
  const doc = connectorDefinition({ host: 'app.example.net' });

  it('is valid OpenAPI 2.0 (swagger-parser: the 2.0 JSON schema and the spec rules)', async () => {
    await expect(SwaggerParser.validate(structuredClone(doc) as unknown as OpenAPI.Document)).resolves.toBeTruthy();
    expect(doc['swagger']).toBe('2.0');
    // Custom connectors take at most 1 MB.
    expect(JSON.stringify(doc).length).toBeLessThan(1_000_000);
  });

  it('has every operation of /api/openapi.json, each with a unique operationId, a summary and a visibility', () => {
    const ops = operations(doc);
    expect(ops.map(([path, method]) => `${method} ${path}`).sort()).toEqual(operations(openApi31()).map(([path, method]) => `${method} ${path}`).sort());
    const ids = ops.map(([, , op]) => op.operationId as string);
    expect(new Set(ids).size).toBe(ids.length);
    for (const [path, method, op] of ops) {
      expect(op.summary, `${method} ${path}`).toBeTruthy();
      expect(['important', 'advanced', 'internal'], `${method} ${path}`).toContain(op['x-ms-visibility']);
      for (const p of op.parameters ?? []) {
        expect(p['x-ms-summary'], `${method} ${path} ${p.name}`).toBeTruthy();
        expect(['important', 'advanced', 'internal']).toContain(p['x-ms-visibility']);
      }
    }
    const byId = Object.fromEntries(ops.map(([, , op]) => [op.operationId, op]));
    expect(byId['InvokeEndpoint']['x-ms-visibility']).toBe('important');
    expect(byId['GetJob']['x-ms-visibility']).toBe('important');
    expect(byId['GetJobStatus']['x-ms-visibility']).toBe('internal');
  });

  it('shows every property with a display name, and nothing beside a $ref', () => {
    const walk = (schema: Json, at: string): void => {
      if (!schema || typeof schema !== 'object') return;
      if ('$ref' in schema) expect(Object.keys(schema), at).toEqual(['$ref']);
      for (const [name, p] of Object.entries((schema.properties ?? {}) as Record<string, Json>)) {
        if (!('$ref' in p)) expect(p['x-ms-summary'], `${at}.${name}`).toBeTruthy();
        walk(p, `${at}.${name}`);
      }
      walk(schema.additionalProperties, `${at}[*]`);
      walk(schema.items, `${at}[]`);
    };
    for (const [name, schema] of Object.entries(doc['definitions'] as Record<string, Json>)) walk(schema, name);
    expect(displayName('mini_batch_size')).toBe('Mini batch size');
    expect(displayName('InstanceCount')).toBe('Instance count');
  });

  it('offers the native invoke body to the designer and describes the LRO pattern on invoke', () => {
    const invoke = (doc['paths'] as Json)['/api/endpoints/{endpoint}/jobs'].post;
    expect(invoke.parameters.find((p: Json) => p.in === 'body').schema).toEqual({ $ref: '#/definitions/InvokeRequest' });
    expect(Object.keys(invoke.responses['202'].headers)).toEqual(['Location', 'Retry-After']);
    expect(invoke.responses['202'].schema).toEqual({ $ref: '#/definitions/Job' });
    expect((doc['definitions'] as Json).Job.properties.status.enum).toContain('Failed');
  });

  it('secures every call with the function key (header or query) or Microsoft Entra ID', () => {
    const withIds = connectorDefinition({ host: 'h.example.net', tenantId: 'contoso.onmicrosoft.com', clientId: 'abc' });
    expect(withIds['securityDefinitions']).toMatchObject({
      function_key: { type: 'apiKey', in: 'header', name: 'x-functions-key' },
      function_key_query: { type: 'apiKey', in: 'query', name: 'code' },
      entra_id: {
        type: 'oauth2',
        flow: 'accessCode',
        authorizationUrl: 'https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/authorize',
        tokenUrl: 'https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token',
        scopes: { 'api://abc/user_impersonation': expect.any(String) },
      },
    });
    expect(withIds['security']).toEqual([{ function_key: [] }, { function_key_query: [] }, { entra_id: ['api://abc/user_impersonation'] }]);
    const sets = (connectorProperties().properties as Json).connectionParameterSets.values as Json[];
    expect(sets.map((s) => s.name)).toEqual(['function-key', 'entra-id']);
    expect(sets[1].parameters.token.oAuthSettings).toMatchObject({ identityProvider: 'aad', clientId: CONNECTOR_PLACEHOLDERS.clientId, customParameters: { tenantId: { value: CONNECTOR_PLACEHOLDERS.tenantId } } });
  });

  it('is what infra/azure/connector/ holds (npm run build writes it)', () => {
    for (const [name, content] of Object.entries(connectorFiles())) {
      expect(readFileSync(join(CONNECTOR_DIR, name), 'utf8'), `${name} is stale: run npm run build`).toBe(content);
    }
    expect(JSON.parse(connectorFiles()['apiDefinition.swagger.json'] as string).host).toBe(CONNECTOR_PLACEHOLDERS.host);
  });

  it('starts from the 3.0 form of the same document', () => {
    expect((openApi30() as Json).openapi).toBe('3.0.3');
    expect(Object.keys((openApi30() as Json).paths)).toEqual(Object.keys((openApi31() as Json).paths));
  });
});

describe('the sample Logic App workflow (infra/azure/logic-app/workflow.json)', () => {
  const workflow: Json = JSON.parse(readFileSync(join(CONNECTOR_DIR, '..', 'logic-app', 'workflow.json'), 'utf8'));
  const actions: Json = workflow.definition.actions;
  const invoke = actions['Invoke_the_endpoint_and_wait_for_the_job'];

  it("calls the connector's InvokeEndpoint with a body the API accepts", () => {
    expect(invoke.type).toBe('ApiConnection');
    const template = '/api/endpoints/{endpoint}/jobs';
    expect((connectorDefinition({ host: 'h' })['paths'] as Json)[template][invoke.inputs.method].operationId).toBe('InvokeEndpoint');
    expect(invoke.inputs.path).toMatch(/^\/api\/endpoints\/@\{[^}]+\}\/jobs$/);
    // Expressions are strings to the schema, so the body's shape is checked as sent.
    expect(() => parseOrThrow(invokeBody, invoke.inputs.body, 'workflow body')).not.toThrow();
    expect(Object.keys(invoke.inputs.headers).sort()).toEqual(['azureml-model-deployment', 'idempotency-key']);
  });

  it('starts only on finished writes and branches on every final status', () => {
    const trigger = workflow.definition.triggers['When_a_blob_is_created'];
    expect(trigger.inputs.body.properties.filter.includedEventTypes).toEqual(['Microsoft.Storage.BlobCreated']);
    expect(trigger.conditions[0].expression).toContain("createArray('PutBlob', 'PutBlockList', 'CopyBlob', 'FlushWithClose')");
    const branch = actions['Branch_on_the_job_status'];
    expect(branch.expression).toBe("@body('Invoke_the_endpoint_and_wait_for_the_job')?['status']");
    const cases = Object.values(branch.cases as Record<string, Json>).map((c) => c.case as string);
    expect(cases).toEqual(['Completed', 'Canceled']);
    expect(branch.default.actions['Job_failed'].inputs.runStatus).toBe('Failed');
    for (const status of cases) expect((connectorDefinition({ host: 'h' })['definitions'] as Json).Job.properties.status.enum).toContain(status);
  });
});
