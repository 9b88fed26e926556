/**
 * Property-based fuzzing of every route (scripts/lib/fuzz.ts) against one fnhost over Azurite:
 * no 5xx, every 4xx problem+json naming a field, and storage untouched by every rejected request.
 * `npm run fuzz` runs the same properties with 10,000 requests and a seed of your choice.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FIXTURE, ROUTES, type Target, checkResponse, createFixtures, diff, fuzz, send, snapshot } from '../../scripts/lib/fuzz.js';
import { type FnHostProcess, PRODUCT_APP } from '../support/fnhost.js';
import { apiOf, deploy, ds, fixtureScript, startProductHost, upload, waitForJob } from '../support/batch.js';

const SEED = 20_261_129;
const RUNS = 1_200;

let host: FnHostProcess;
let target: Target;

beforeAll(async () => {
  ({ host } = await startProductHost({}, { immediateProgress: false }));
  target = { url: host.url, key: host.masterKey, storageConnection: host.storageConnection };
});

afterAll(async () => {
  await host?.stop();
});

/** The routes functions/api.ts and functions/triggers.ts register, as `name METHOD path`. */
function registeredRoutes(): string[] {
  const found: string[] = [];
  for (const file of ['api.ts', 'triggers.ts']) {
    const text = readFileSync(join(PRODUCT_APP, 'functions', file), 'utf8');
    for (const m of text.matchAll(/route\('(\w+)', '([^']+)', '(\w+)'/g)) found.push(`${m[1]} ${m[3]} ${m[2]}`);
    for (const m of text.matchAll(/app\.http\('(\w+)', \{ route: '([^']+)', methods: \['(\w+)'\]/g)) found.push(`${m[1]} ${m[3]} ${m[2]}`);
  }
  return found.sort();
}

async function rejectedWithoutChange(req: Parameters<typeof send>[1]): Promise<{ status: number; problem: Record<string, unknown> }> {
  const before = await snapshot(target.storageConnection);
  const res = await send(target, req);
  expect(checkResponse(res)).toBeUndefined();
  expect(diff(before, await snapshot(target.storageConnection))).toEqual([]);
  return { status: res.status, problem: JSON.parse(res.text) as Record<string, unknown> };
}

describe('a fresh app (no table of its own yet)', () => {
  it('creates no table and no blob for a request it refuses, nor for a read', async () => {
    const unchanged = async (method: string, path: string, body?: string, headers: Record<string, string> = {}): Promise<number> => {
      const before = await snapshot(target.storageConnection);
      const res = await send(target, { route: 'fresh', method: method as 'GET', path, headers: { 'content-type': 'application/json', ...headers }, ...(body === undefined ? {} : { body }) });
      expect(res.status, `${method} ${path}: ${res.text}`).toBeLessThan(500);
      expect([`${method} ${path}`, diff(before, await snapshot(target.storageConnection))]).toEqual([`${method} ${path}`, []]);
      return res.status;
    };
    for (const path of ['endpoints', 'endpoints/none', 'endpoints/none/jobs', 'endpoints/none/triggers', 'jobs/bj-none', 'jobs/bj-none/status', 'datastores', 'datastores/none', 'data', 'models', 'models/none/versions/1', 'components']) {
      expect(await unchanged('GET', `/api/${path}`)).toBeGreaterThanOrEqual(200);
    }
    expect(await unchanged('POST', '/api/endpoints/none/jobs', '{"inputs":{}}', { 'idempotency-key': 'k1' })).toBe(404);
    expect(await unchanged('POST', '/api/jobs', '{}')).toBe(400);
    expect(await unchanged('PUT', '/api/endpoints/Bad!', '{}')).toBe(400);
    expect([400, 404]).toContain(await unchanged('PUT', '/api/endpoints/none/deployments/d', '{"model":"azureml:none:1"}'));
    expect(await unchanged('DELETE', '/api/models/none/versions/1')).toBe(404);
    expect(await unchanged('POST', '/api/jobs/bj-none/cancel')).toBe(404);

    // A deployment, and an invoke refused after all its checks: its output folder holds a
    // predictions file. Neither the idempotency table nor the output claims table may appear.
    const api = apiOf(host);
    await upload(target.storageConnection, { 'fresh/code/echo.js': fixtureScript('slow.js'), 'fresh/model/m.txt': 'm', 'fresh/in/a.txt': 'a\n', 'fresh/out/predictions.csv': 'taken\n' });
    await deploy(api, {
      endpoint: 'fresh-ep',
      deployment: 'blue',
      model: { name: 'fresh-model', version: '1', type: 'custom_model', path: ds('fresh/model/') },
      deploymentBody: { code_configuration: { code: ds('fresh/code/'), scoring_script: 'echo.js' } },
    });
    const invoke = JSON.stringify({ inputs: { data: { type: 'uri_folder', path: ds('fresh/in/') } }, outputs: { score: { type: 'uri_folder', path: ds('fresh/out/') } } });
    expect(await unchanged('POST', '/api/endpoints/fresh-ep/jobs', invoke, { 'idempotency-key': 'k2' })).toBe(409);
    expect(await unchanged('POST', '/api/endpoints/fresh-ep/jobs', invoke)).toBe(409);
    expect(await unchanged('GET', '/api/endpoints/fresh-ep/jobs')).toBe(200);
    // Accepted, it goes ahead as before (the tables are created by its writes).
    const started = await api.call('POST', 'endpoints/fresh-ep/jobs', { inputs: { data: { type: 'uri_folder', path: ds('fresh/in/') } } }, { 'idempotency-key': 'k2' });
    expect(started.status).toBe(202);
    expect((await api.call('POST', 'endpoints/fresh-ep/jobs', { inputs: { data: { type: 'uri_folder', path: ds('fresh/in/') } } }, { 'idempotency-key': 'k2' })).body.id).toBe(started.body.id);
    // Done before the fuzzing starts: a running job's writes would be taken for a rejected request's.
    expect((await waitForJob(api, started.body.id as string)).status).toBe('Completed');
  });
});

describe('fuzzing every route', () => {
  beforeAll(async () => createFixtures(target));

  it('covers every route the app registers', () => {
    expect(ROUTES.map((r) => `${r.name} ${r.method} ${r.path}`).sort()).toEqual(registeredRoutes());
  });

  it(`${RUNS} generated requests: no 5xx, every 4xx is problem+json naming a field, a rejected request changes no table or blob`, async () => {
    const stats = await fuzz(target, { runs: RUNS, seed: SEED });
    expect(stats.requests).toBeGreaterThanOrEqual(1_000);
    // Every route was reached, and both accepted and rejected requests were sent.
    expect(Object.keys(stats.byRoute).sort()).toEqual(ROUTES.map((r) => r.name).sort());
    expect(stats.rejected).toBeGreaterThan(RUNS / 2);
    expect(stats.requests - stats.rejected).toBeGreaterThan(0);
  });
});

describe('what the fuzzer found (regressions)', () => {
  // The fuzz run above may have deleted the fixtures.
  beforeAll(async () => createFixtures(target));

  it('a body nested thousands of levels deep is a 400 naming where, not a 500 (the worker overflowed its stack)', async () => {
    for (const depth of [65, 5_000, 20_000]) {
      const body = `{"description":${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}}`;
      const { status, problem } = await rejectedWithoutChange({ route: 'putEndpoint', method: 'PUT', path: `/api/endpoints/${FIXTURE.endpoint}`, headers: { 'content-type': 'application/json' }, body });
      expect(status).toBe(400);
      expect((problem['errors'] as { field: string }[])[0]?.field).toMatch(/^description\.a\.a/);
    }
    const arrays = `{"inputs":${'['.repeat(10_000)}${']'.repeat(10_000)}}`;
    const { status } = await rejectedWithoutChange({ route: 'invokeEndpoint', method: 'POST', path: `/api/endpoints/${FIXTURE.endpoint}/jobs`, headers: { 'content-type': 'application/json' }, body: arrays });
    expect(status).toBe(400);
  });

  it('a body nested less deeply is read as usual: the schema names the field', async () => {
    const depth = 60;
    const body = `{"description":${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}}`;
    const { status, problem } = await rejectedWithoutChange({ route: 'putEndpoint', method: 'PUT', path: `/api/endpoints/${FIXTURE.endpoint}`, headers: { 'content-type': 'application/json' }, body });
    expect(status).toBe(400);
    expect((problem['errors'] as { field: string }[]).map((e) => e.field)).toEqual(['description']);
  });

  it('a 404 for a missing resource names the path parameter', async () => {
    const cases: [string, string][] = [
      ['/api/datastores/fz-missing', 'name'],
      ['/api/models/fz-missing/versions/1', 'version'],
      ['/api/models/fz-missing/versions', 'name'],
      ['/api/endpoints/fz-missing', 'endpoint'],
      [`/api/endpoints/${FIXTURE.endpoint}/deployments/fz-missing`, 'deployment'],
      [`/api/endpoints/${FIXTURE.endpoint}/triggers/fz-missing`, 'name'],
      ['/api/jobs/fz-missing', 'id'],
      [`/api/jobs/${'x'.repeat(300)}`, 'id'],
      ['/api/components/fz_missing/versions/1', 'version'],
      ['/api/data/fz-missing/versions/1', 'version'],
    ];
    for (const [path, field] of cases) {
      const { status, problem } = await rejectedWithoutChange({ route: 'get', method: 'GET', path, headers: {} });
      expect([path, status, problem['field']]).toEqual([path, 404, field]);
    }
  });

  it('a 409 names the field: deleting the built-in datastore', async () => {
    const { status, problem } = await rejectedWithoutChange({ route: 'deleteDatastore', method: 'DELETE', path: '/api/datastores/workspaceblobstore', headers: {} });
    expect(status).toBe(409);
    expect(problem['field']).toBe('name');
  });
});
