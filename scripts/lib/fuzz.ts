/**
 * Property-based fuzzing of the HTTP API with fast-check, against a running host (fnhost over
 * Azurite, or any deployment reachable with a key and its storage connection string).
 *
 * Every route of functions/api.ts and functions/triggers.ts gets generated requests: path
 * parameters (valid names, invalid ones, percent-encodings, unicode, long), query strings, the
 * headers the API reads (azureml-model-deployment, idempotency-key, content-type) and bodies,
 * built from the OpenAPI document's request schemas (shared/openapi/api-document.ts, generated
 * from the zod schemas) and then mutated: wrong types, extra and missing fields, huge numbers,
 * deep nesting, prototype names, `${{`, percent-encodings and control characters.
 *
 * The properties, checked for each request:
 * - no 5xx, ever;
 * - every 4xx is `application/problem+json` naming at least one field (`errors[].field` or `field`);
 * - after a rejected (4xx) request, every table and every blob container of the app's storage is
 *   exactly as it was before it (entity and blob ETags compared).
 *
 * Requests run one at a time, so the snapshot taken after one request is the "before" of the next.
 */
import { BlobServiceClient } from '@azure/storage-blob';
import { TableClient, TableServiceClient } from '@azure/data-tables';
import fc from 'fast-check';
import { openApi31 } from '../../shared/openapi/api-document.js';

type Json = unknown;
type Schema = Record<string, unknown>;
type Method = 'GET' | 'PUT' | 'POST' | 'DELETE';

/** A route of the app: its method, its template (below /api) and, when it takes one, its body schema. */
export interface Route {
  name: string;
  method: Method;
  path: string;
  body?: string;
  query?: string[];
  headers?: string[];
}

/** Every route the app registers (test/e2e/fuzz.test.ts checks this against functions/api.ts and functions/triggers.ts). */
export const ROUTES: readonly Route[] = [
  { name: 'listDatastores', method: 'GET', path: 'datastores' },
  { name: 'getDatastore', method: 'GET', path: 'datastores/{name}' },
  { name: 'putDatastore', method: 'PUT', path: 'datastores/{name}', body: 'DatastoreRequest' },
  { name: 'deleteDatastore', method: 'DELETE', path: 'datastores/{name}' },
  { name: 'listDataAssets', method: 'GET', path: 'data' },
  { name: 'listDataAssetVersions', method: 'GET', path: 'data/{name}/versions' },
  { name: 'getDataAsset', method: 'GET', path: 'data/{name}/versions/{version}' },
  { name: 'putDataAsset', method: 'PUT', path: 'data/{name}/versions/{version}', body: 'DataAssetRequest' },
  { name: 'deleteDataAsset', method: 'DELETE', path: 'data/{name}/versions/{version}' },
  { name: 'listModels', method: 'GET', path: 'models' },
  { name: 'listModelVersions', method: 'GET', path: 'models/{name}/versions' },
  { name: 'getModel', method: 'GET', path: 'models/{name}/versions/{version}' },
  { name: 'putModel', method: 'PUT', path: 'models/{name}/versions/{version}', body: 'ModelRequest' },
  { name: 'deleteModel', method: 'DELETE', path: 'models/{name}/versions/{version}' },
  { name: 'listEndpoints', method: 'GET', path: 'endpoints' },
  { name: 'getEndpoint', method: 'GET', path: 'endpoints/{endpoint}' },
  { name: 'putEndpoint', method: 'PUT', path: 'endpoints/{endpoint}', body: 'EndpointRequest' },
  { name: 'deleteEndpoint', method: 'DELETE', path: 'endpoints/{endpoint}' },
  { name: 'listDeployments', method: 'GET', path: 'endpoints/{endpoint}/deployments' },
  { name: 'getDeployment', method: 'GET', path: 'endpoints/{endpoint}/deployments/{deployment}' },
  { name: 'putDeployment', method: 'PUT', path: 'endpoints/{endpoint}/deployments/{deployment}', body: 'DeploymentRequest' },
  { name: 'deleteDeployment', method: 'DELETE', path: 'endpoints/{endpoint}/deployments/{deployment}' },
  { name: 'listComponents', method: 'GET', path: 'components' },
  { name: 'listComponentVersions', method: 'GET', path: 'components/{name}/versions' },
  { name: 'getComponent', method: 'GET', path: 'components/{name}/versions/{version}' },
  { name: 'putComponent', method: 'PUT', path: 'components/{name}/versions/{version}', body: 'ComponentRequest' },
  { name: 'deleteComponent', method: 'DELETE', path: 'components/{name}/versions/{version}' },
  { name: 'invokeEndpoint', method: 'POST', path: 'endpoints/{endpoint}/jobs', body: 'InvokeRequest|AzureMLInvokeRequest', headers: ['azureml-model-deployment', 'idempotency-key'] },
  { name: 'listJobs', method: 'GET', path: 'endpoints/{endpoint}/jobs', query: ['top', 'continuation', 'status', 'invoked_by'] },
  { name: 'submitJob', method: 'POST', path: 'jobs', body: 'PipelineJobRequest', headers: ['idempotency-key'] },
  { name: 'listAllJobs', method: 'GET', path: 'jobs', query: ['top', 'continuation', 'status', 'invoked_by', 'endpoint'] },
  { name: 'getJob', method: 'GET', path: 'jobs/{id}' },
  { name: 'getJobStatus', method: 'GET', path: 'jobs/{id}/status' },
  { name: 'cancelJob', method: 'POST', path: 'jobs/{id}/cancel' },
  { name: 'getJobOutput', method: 'GET', path: 'jobs/{id}/outputs/{*file}' },
  { name: 'getStepOutput', method: 'GET', path: 'jobs/{id}/steps/{step}/outputs/{*file}' },
  { name: 'getMiniBatches', method: 'GET', path: 'jobs/{id}/mini-batches', query: ['step'] },
  { name: 'getFailures', method: 'GET', path: 'jobs/{id}/failures', query: ['step'] },
  { name: 'getLogTail', method: 'GET', path: 'jobs/{id}/log', query: ['step', 'tail'] },
  { name: 'openapi', method: 'GET', path: 'openapi.json' },
  { name: 'connectorDefinition', method: 'GET', path: 'connector/swagger.json' },
  { name: 'listTriggers', method: 'GET', path: 'endpoints/{endpoint}/triggers' },
  { name: 'getTrigger', method: 'GET', path: 'endpoints/{endpoint}/triggers/{name}' },
  { name: 'putTrigger', method: 'PUT', path: 'endpoints/{endpoint}/triggers/{name}', body: 'TriggerRuleRequest' },
  { name: 'deleteTrigger', method: 'DELETE', path: 'endpoints/{endpoint}/triggers/{name}' },
];

/** Names the fuzzer's fixtures create, so generated requests reach existing resources too. */
export const FIXTURE = { endpoint: 'fz-ep', datastore: 'workspaceblobstore', trigger: 'fz-trigger' } as const;

export interface WireRequest {
  route: string;
  method: Method;
  /** Below the host: `/api/...?...`, already encoded. */
  path: string;
  headers: Record<string, string>;
  body?: string;
}

// ---------------------------------------------------------------------------------------------
// Strings and names

const PROTO_NAMES = ['__proto__', 'constructor', 'prototype', 'toString', 'hasOwnProperty', 'valueOf', '__defineGetter__', 'isPrototypeOf'];
const NASTY_STRINGS = [
  '${{inputs.x}}',
  '${{parent.jobs.a.outputs.b}}',
  '${{',
  '%',
  '%ZZ',
  '%2F..%2F',
  '%00',
  '100%25',
  '\u0000',
  '\r\n',
  '\u202e',
  '\ud83d\ude00',
  '..',
  '../../etc/passwd',
  'azureml://datastores/workspaceblobstore/paths/',
  'azureml://datastores/workspaceblobstore/paths/%ZZ/',
  'azureml://datastores/x/paths/a',
  'azureml:x:1',
  'azureml:x@latest',
  'https://evil.example/a',
  'http://169.254.169.254/metadata',
  'file:///etc/passwd',
  '',
  ' ',
  'null',
  '0',
  '-1',
  '1e309',
];

const nastyString: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom(...NASTY_STRINGS, ...PROTO_NAMES),
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.string({ unit: fc.constantFrom('\u0000', '\u0001', '\u001f', '\u007f', '\t', '\n', '%', '$', '{', '}', '/', '\\', 'a', '.'), maxLength: 20 }),
  fc.integer({ min: 256, max: 6000 }).map((n) => 'x'.repeat(n)),
  fc.tuple(fc.constantFrom('${{', '%', '%2e', '%E2%82%AC'), fc.string({ maxLength: 10 })).map(([a, b]) => a + b),
);

const validName: fc.Arbitrary<string> = fc.stringMatching(/^[a-z][a-z0-9-]{1,12}[a-z0-9]$/);

/** A path parameter value: an existing name, a valid one, or anything. */
const pathParam: fc.Arbitrary<string> = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom(FIXTURE.endpoint, FIXTURE.datastore, FIXTURE.trigger, 'fz-new', '1', 'latest') },
  { weight: 3, arbitrary: validName },
  { weight: 4, arbitrary: nastyString },
  { weight: 1, arbitrary: fc.string({ unit: 'grapheme', minLength: 1, maxLength: 20 }) },
);

/** One path segment as sent: percent-encoded (never empty, never a dot segment a URL would remove). */
function segment(value: string): string {
  let encoded: string;
  try {
    encoded = encodeURIComponent(value);
  } catch {
    encoded = 'x';
  }
  if (encoded === '' || encoded === '.' || encoded === '..') return `${encoded}x`;
  return encoded;
}

/** A header value fetch can send: latin-1, no CR/LF/NUL, no leading or trailing blanks. */
function headerValue(value: string): string {
  return value
    .replace(/[^\u0020-\u007e\u00a0-\u00ff]/g, '')
    .trim()
    .slice(0, 4000);
}

// ---------------------------------------------------------------------------------------------
// Bodies from the OpenAPI schemas

const DOC = openApi31() as { components: { schemas: Record<string, Schema> } };

function deref(schema: Schema): Schema {
  const ref = schema['$ref'];
  if (typeof ref === 'string') {
    const name = ref.replace('#/components/schemas/', '');
    return DOC.components.schemas[name] ?? {};
  }
  return schema;
}

/** Well-known values for string fields, by name: bodies that get past the first checks. */
function stringFor(key: string): fc.Arbitrary<string> | undefined {
  if (/path|uri|code|output_path|data/.test(key)) {
    return fc.constantFrom(
      'azureml://datastores/workspaceblobstore/paths/fz/data/',
      'azureml://datastores/workspaceblobstore/paths/fz/a.csv',
      'azureml://datastores/workspaceblobstore/paths/fz/%25%20x/',
      'azureml:fz-data:1',
      'azureml:fz-data@latest',
      `https://devstoreaccount1.blob.core.windows.net/azureml-blobstore/fz/`,
    );
  }
  if (/model|component/.test(key)) return fc.constantFrom('azureml:fz-model:1', 'azureml:fz-model@latest', 'azureml:fz-comp:1');
  if (/deployment/.test(key)) return fc.constantFrom('fz-dep', 'fz-missing');
  if (/datastore/.test(key)) return fc.constantFrom('workspaceblobstore', 'fz-missing');
  return undefined;
}

/** A value that (mostly) fits `schema`. */
function fromSchema(input: Schema, depth: number, key = ''): fc.Arbitrary<Json> {
  const schema = deref(input);
  if (depth > 6) return fc.constant(null);
  const alternatives = (schema['anyOf'] ?? schema['oneOf']) as Schema[] | undefined;
  if (alternatives && alternatives.length > 0) return fc.oneof(...alternatives.map((s) => fromSchema(s, depth + 1, key)));
  if (schema['const'] !== undefined) return fc.constant(schema['const']);
  if (Array.isArray(schema['enum'])) return fc.constantFrom(...(schema['enum'] as Json[]));
  const type = schema['type'];
  switch (Array.isArray(type) ? type[0] : type) {
    case 'object': {
      const props = (schema['properties'] ?? {}) as Record<string, Schema>;
      const required = new Set((schema['required'] ?? []) as string[]);
      const model: Record<string, fc.Arbitrary<Json>> = {};
      for (const [name, s] of Object.entries(props)) model[name] = fromSchema(s, depth + 1, name);
      const additional = schema['additionalProperties'];
      const record = fc.record(model, { requiredKeys: Object.keys(props).filter((k) => required.has(k)) });
      if (additional && typeof additional === 'object' && Object.keys(props).length === 0) {
        return fc.dictionary(fc.stringMatching(/^[a-z_][a-z0-9_]{0,8}$/), fromSchema(additional as Schema, depth + 1), { maxKeys: 3 });
      }
      return record;
    }
    case 'array':
      return fc.array(fromSchema((schema['items'] ?? {}) as Schema, depth + 1, key), { maxLength: 3 });
    case 'integer':
      return fc.integer({ min: typeof schema['minimum'] === 'number' ? schema['minimum'] : -5, max: typeof schema['maximum'] === 'number' ? Math.min(schema['maximum'], 1e6) : 1000 });
    case 'number':
      return fc.double({ min: -1e3, max: 1e3, noNaN: true });
    case 'boolean':
      return fc.boolean();
    case 'string': {
      const known = stringFor(key);
      if (known) return known;
      if (typeof schema['pattern'] === 'string') {
        try {
          return fc.stringMatching(new RegExp(schema['pattern'])).map((s) => s.slice(0, 64));
        } catch {
          return fc.string({ maxLength: 10 });
        }
      }
      return fc.string({ maxLength: 12 });
    }
    default:
      return fc.jsonValue({ maxDepth: 2 });
  }
}

const bodyArbitraries = new Map<string, fc.Arbitrary<Json>>();
function bodyFor(names: string): fc.Arbitrary<Json> {
  let arb = bodyArbitraries.get(names);
  if (!arb) {
    arb = fc.oneof(...names.split('|').map((n) => fromSchema({ $ref: `#/components/schemas/${n}` }, 0)));
    bodyArbitraries.set(names, arb);
  }
  return arb;
}

/** A value of a type a field did not expect. */
const wrongValue: fc.Arbitrary<Json> = fc.oneof(
  fc.constantFrom<Json>(null, true, false, 0, -1, 1e308, -1e308, 2 ** 53 + 1, 0.5, [], {}, [[]], { '': null }),
  nastyString,
  fc.integer(),
  fc.double(),
  fc.jsonValue({ maxDepth: 3 }),
);

/** An object member whose key is `key`, as an own property even when `key` is "__proto__". */
function setOwn(target: Record<string, Json>, key: string, value: Json): void {
  Object.defineProperty(target, key, { value, enumerable: true, configurable: true, writable: true });
}

interface Mutation {
  at: number;
  kind: 'replace' | 'delete' | 'add' | 'nest';
  key: string;
  value: Json;
  depth: number;
}

const mutation: fc.Arbitrary<Mutation> = fc.record({
  at: fc.nat(),
  kind: fc.constantFrom('replace', 'replace', 'delete', 'add', 'add', 'nest'),
  key: fc.oneof(fc.constantFrom(...PROTO_NAMES), nastyString, fc.stringMatching(/^[a-z_]{1,10}$/)),
  value: wrongValue,
  depth: fc.integer({ min: 1, max: 300 }),
});

/** The places (objects and arrays, with the key or index that leads to them) of a value. */
function places(value: Json, out: { parent: Record<string, Json> | Json[]; key: string | number }[] = []): { parent: Record<string, Json> | Json[]; key: string | number }[] {
  if (Array.isArray(value)) {
    value.forEach((v, i) => {
      out.push({ parent: value, key: i });
      places(v, out);
    });
  } else if (value !== null && typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) {
      out.push({ parent: value as Record<string, Json>, key: k });
      places(v, out);
    }
  }
  return out;
}

function nested(depth: number, leaf: Json): Json {
  let v: Json = leaf;
  for (let i = 0; i < depth; i++) v = i % 2 === 0 ? [v] : { a: v };
  return v;
}

function applyMutations(body: Json, mutations: Mutation[]): Json {
  const root: { body: Json } = { body: structuredClone(body) };
  for (const m of mutations) {
    const all = places(root.body);
    const place = all.length === 0 ? { parent: root as unknown as Record<string, Json>, key: 'body' } : all[m.at % all.length]!;
    const { parent, key } = place;
    const target = Array.isArray(parent) ? parent : parent;
    switch (m.kind) {
      case 'replace':
        (target as Record<string | number, Json>)[key] = m.value;
        break;
      case 'delete':
        if (Array.isArray(target)) target.splice(Number(key), 1);
        else delete target[key as string];
        break;
      case 'add': {
        const holder = (target as Record<string | number, Json>)[key];
        if (holder !== null && typeof holder === 'object' && !Array.isArray(holder)) setOwn(holder as Record<string, Json>, m.key, m.value);
        else if (!Array.isArray(target)) setOwn(target, m.key, m.value);
        break;
      }
      case 'nest':
        (target as Record<string | number, Json>)[key] = nested(m.depth, m.value);
        break;
    }
  }
  return root.body;
}

/** Bodies that are not JSON objects at all, or JSON no schema reads. */
const rawBody: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom('', ' ', '{', '}', '[]', 'null', '0', '"x"', 'true', '{"a":', '\uFEFF{}', '{"__proto__":{"x":1}}', '{"constructor":{"prototype":{"x":1}}}', '{"a":1,"a":2}', 'NaN', '{"inputs":1e999}'),
  fc.string({ unit: 'binary', maxLength: 60 }),
  fc.integer({ min: 1000, max: 20_000 }).map((d) => '['.repeat(d) + ']'.repeat(d)),
  fc.integer({ min: 1000, max: 20_000 }).map((d) => '{"a":'.repeat(d) + '1' + '}'.repeat(d)),
  fc.integer({ min: 500, max: 5000 }).map((d) => `{"inputs":${'{"x":'.repeat(d)}1${'}'.repeat(d)}}`),
);

function bodyArbitrary(route: Route): fc.Arbitrary<string | undefined> {
  if (!route.body) return fc.oneof({ weight: 4, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: rawBody });
  const valid = bodyFor(route.body);
  return fc.oneof(
    { weight: 2, arbitrary: valid.map((b) => JSON.stringify(b)) },
    { weight: 6, arbitrary: fc.tuple(valid, fc.array(mutation, { minLength: 1, maxLength: 4 })).map(([b, ms]) => JSON.stringify(applyMutations(b, ms)) ?? 'null') },
    { weight: 2, arbitrary: rawBody },
  );
}

// ---------------------------------------------------------------------------------------------
// Requests

const queryValue: fc.Arbitrary<string> = fc.oneof(fc.constantFrom('1', '0', '-1', '100', '101', '1.5', 'abc', '', '%ZZ', '1e3', 'Completed', 'x'.repeat(3000)), nastyString);

function queryArbitrary(route: Route): fc.Arbitrary<string> {
  const names = [...(route.query ?? []), 'code', 'api-version', '__proto__', 'top'];
  return fc.array(fc.tuple(fc.constantFrom(...names), queryValue), { maxLength: 3 }).map((pairs) => {
    if (pairs.length === 0) return '';
    return `?${pairs.map(([k, v]) => `${encodeURIComponent(k)}=${segment(v)}`).join('&')}`;
  });
}

const contentType: fc.Arbitrary<string | undefined> = fc.oneof(
  { weight: 6, arbitrary: fc.constant('application/json') },
  { weight: 1, arbitrary: fc.constant(undefined) },
  { weight: 2, arbitrary: fc.constantFrom('text/plain', 'application/problem+json', 'application/json; charset=utf-16', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'application/xml', '*/*', 'garbage', 'application/json; charset=latin1') },
);

function headersArbitrary(route: Route): fc.Arbitrary<Record<string, string>> {
  const headerValues = fc.oneof(fc.constantFrom('fz-dep', 'fz-missing', FIXTURE.endpoint, ''), nastyString);
  const reads = route.headers ?? [];
  return fc
    .record({
      ct: contentType,
      deployment: fc.option(headerValues, { nil: undefined }),
      idempotency: fc.option(fc.oneof(fc.uuid(), headerValues), { nil: undefined }),
      extra: fc.option(fc.constantFrom('x-ms-client-principal-name', 'if-match', 'if-none-match', 'accept'), { nil: undefined }),
      extraValue: headerValues,
    })
    .map(({ ct, deployment, idempotency, extra, extraValue }) => {
      const h: Record<string, string> = {};
      if (ct !== undefined) h['content-type'] = ct;
      if (deployment !== undefined && (reads.includes('azureml-model-deployment') || deployment.length % 3 === 0)) h['azureml-model-deployment'] = headerValue(deployment);
      if (idempotency !== undefined) h['idempotency-key'] = headerValue(idempotency);
      if (extra !== undefined) h[extra] = headerValue(extraValue);
      return h;
    });
}

function pathArbitrary(route: Route): fc.Arbitrary<string> {
  const parts = route.path.split('/');
  const arbs = parts.map((p) => {
    if (p === '{*file}') return fc.array(pathParam, { minLength: 1, maxLength: 3 }).map((xs) => xs.map(segment).join('/'));
    if (p.startsWith('{')) return pathParam.map(segment);
    return fc.constant(p);
  });
  return fc.tuple(...arbs).map((xs) => `/api/${xs.join('/')}`);
}

/** A generated request for `route`. */
export function requestFor(route: Route): fc.Arbitrary<WireRequest> {
  return fc.record({ path: pathArbitrary(route), query: queryArbitrary(route), headers: headersArbitrary(route), body: bodyArbitrary(route) }).map(({ path, query, headers, body }) => ({
    route: route.name,
    method: route.method,
    path: path + query,
    headers,
    ...(body === undefined || route.method === 'GET' || route.method === 'DELETE' ? {} : { body }),
  }));
}

/** A generated request for any route (every route equally likely). */
export const anyRequest: fc.Arbitrary<WireRequest> = fc.oneof(...ROUTES.map(requestFor));

// ---------------------------------------------------------------------------------------------
// State snapshots

/** Every entity (with its ETag) of every table, and every blob (with its ETag) of every container. */
export async function snapshot(storageConnection: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const tables = TableServiceClient.fromConnectionString(storageConnection, { allowInsecureConnection: true });
  const blobs = BlobServiceClient.fromConnectionString(storageConnection);
  const tableNames: string[] = [];
  for await (const t of tables.listTables()) if (t.name) tableNames.push(t.name);
  await Promise.all(
    tableNames.map(async (name) => {
      out.set(`table ${name}`, '');
      const client = TableClient.fromConnectionString(storageConnection, name, { allowInsecureConnection: true });
      for await (const e of client.listEntities({ queryOptions: { select: ['PartitionKey', 'RowKey'] } })) out.set(`entity ${name}/${e.partitionKey}/${e.rowKey}`, e.etag);
    }),
  );
  const containers: string[] = [];
  for await (const c of blobs.listContainers()) containers.push(c.name);
  await Promise.all(
    containers.map(async (name) => {
      out.set(`container ${name}`, '');
      for await (const b of blobs.getContainerClient(name).listBlobsFlat()) out.set(`blob ${name}/${b.name}`, b.properties.etag ?? '');
    }),
  );
  return out;
}

/** What differs between two snapshots (empty when they are equal). */
export function diff(before: Map<string, string>, after: Map<string, string>): string[] {
  const changes: string[] = [];
  for (const [k, v] of before) {
    if (!after.has(k)) changes.push(`removed ${k}`);
    else if (after.get(k) !== v) changes.push(`changed ${k}`);
  }
  for (const k of after.keys()) if (!before.has(k)) changes.push(`added ${k}`);
  return changes;
}

// ---------------------------------------------------------------------------------------------
// The run

export interface Target {
  url: string;
  key: string;
  storageConnection: string;
}

export interface SentResponse {
  status: number;
  contentType: string;
  text: string;
}

export async function send(target: Target, req: WireRequest): Promise<SentResponse> {
  const res = await fetch(target.url + req.path, {
    method: req.method,
    headers: { 'x-functions-key': target.key, ...req.headers },
    ...(req.body === undefined ? {} : { body: req.body }),
  });
  return { status: res.status, contentType: res.headers.get('content-type') ?? '', text: await res.text() };
}

/** Why a response breaks the properties, or undefined when it keeps them. */
export function checkResponse(res: SentResponse): string | undefined {
  if (res.status >= 500) return `a ${res.status}: ${res.text.slice(0, 500)}`;
  if (res.status < 400) return undefined;
  if (!res.contentType.startsWith('application/problem+json')) return `a ${res.status} as '${res.contentType}', not application/problem+json: ${res.text.slice(0, 300)}`;
  let problem: { status?: unknown; field?: unknown; errors?: { field?: unknown }[] };
  try {
    problem = JSON.parse(res.text) as typeof problem;
  } catch {
    return `a ${res.status} whose body is not JSON: ${res.text.slice(0, 300)}`;
  }
  if (problem.status !== res.status) return `a ${res.status} whose problem says status ${String(problem.status)}`;
  const named = (typeof problem.field === 'string' && problem.field !== '') || (Array.isArray(problem.errors) && problem.errors.some((e) => typeof e.field === 'string' && e.field !== ''));
  if (!named) return `a ${res.status} naming no field: ${res.text.slice(0, 400)}`;
  return undefined;
}

export interface FuzzStats {
  requests: number;
  byStatus: Record<string, number>;
  byRoute: Record<string, number>;
  rejected: number;
  ms: number;
}

export function describeRequest(req: WireRequest): string {
  const body = req.body === undefined ? '' : `\n  body (${req.body.length} chars): ${req.body.slice(0, 600)}`;
  return `${req.method} ${req.path.slice(0, 600)}\n  headers: ${JSON.stringify(req.headers).slice(0, 600)}${body}`;
}

/** Creates what generated requests should sometimes find: an endpoint and a trigger rule on it. */
export async function createFixtures(target: Target): Promise<void> {
  const put = async (path: string, body: unknown): Promise<void> => {
    const res = await send(target, { route: 'fixture', method: 'PUT', path: `/api/${path}`, headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    if (res.status >= 300) throw new Error(`fixture ${path}: ${res.status} ${res.text}`);
  };
  await put(`endpoints/${FIXTURE.endpoint}`, { description: 'fuzz fixture' });
}

/**
 * Sends `runs` generated requests one after another and checks the properties for each; throws
 * (with the seed, the counterexample and fast-check's replay path) at the first that breaks one.
 */
export async function fuzz(target: Target, options: { runs: number; seed: number; onProgress?: (stats: FuzzStats) => void }): Promise<FuzzStats> {
  const stats: FuzzStats = { requests: 0, byStatus: {}, byRoute: {}, rejected: 0, ms: 0 };
  const started = Date.now();
  let state = await snapshot(target.storageConnection);
  const property = fc.asyncProperty(anyRequest, async (req) => {
    const res = await send(target, req);
    stats.requests++;
    stats.byStatus[res.status] = (stats.byStatus[res.status] ?? 0) + 1;
    stats.byRoute[req.route] = (stats.byRoute[req.route] ?? 0) + 1;
    if (stats.requests % 500 === 0) options.onProgress?.({ ...stats, ms: Date.now() - started });
    const broken = checkResponse(res);
    if (broken) throw new Error(`${describeRequest(req)}\n  got ${broken}`);
    const after = await snapshot(target.storageConnection);
    if (res.status >= 400) {
      stats.rejected++;
      const changes = diff(state, after);
      state = after;
      if (changes.length > 0) throw new Error(`${describeRequest(req)}\n  was rejected (${res.status}) but changed storage: ${changes.slice(0, 10).join(', ')}`);
    }
    state = after;
  });
  const details = await fc.check(property, { numRuns: options.runs, seed: options.seed });
  stats.ms = Date.now() - started;
  if (details.failed) {
    const error = details.errorInstance instanceof Error ? details.errorInstance.message : String(details.errorInstance);
    throw new Error(`Property failed after ${details.numRuns} generated requests (seed ${details.seed}, path "${details.counterexamplePath ?? ''}", shrunk ${details.numShrinks} times):\n${error}`);
  }
  return stats;
}
