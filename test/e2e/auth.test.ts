import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Api, type Json, deploy, ds, fixtureScript, startProductHost, upload, waitForJob } from '../support/batch.js';
import { type FnHostProcess } from '../support/fnhost.js';
import { uniqueName } from '../support/ports.js';
import { waitFor } from '../support/wait.js';
import { LOCAL_AUDIENCE, LOCAL_TENANT, LocalIssuer } from '../../scripts/lib/oidc-issuer.js';

/**
 * Authentication and authorization on fnhost: a local OpenID issuer (real RSA keys, real
 * signatures) and the app validating its tokens as it would Microsoft Entra ID's.
 */

let issuer: LocalIssuer;
let entra: FnHostProcess;
let easy: FnHostProcess;

/** A second allowed tenant whose metadata the app reads first while the issuer is down. */
const OUTAGE_TENANT = '44444444-4444-4444-8444-444444444444';
const ADA = randomUUID();
const BOB = randomUUID();
const tokens: Record<string, string> = {};

function apiAs(host: FnHostProcess, headers: Record<string, string>): Api {
  return {
    async call(method, path, body, extra = {}) {
      const res = await fetch(`${host.url}/api/${path}`, {
        method,
        headers: { ...headers, ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...extra },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
      const text = await res.text();
      return { status: res.status, body: text ? (JSON.parse(text)) : undefined, headers: res.headers };
    },
  };
}

const bearer = (who: string): Record<string, string> => ({ authorization: `Bearer ${tokens[who] ?? ''}` });

function clientPrincipal(claims: Record<string, string | string[]>): string {
  const list = Object.entries(claims).flatMap(([typ, v]) => (Array.isArray(v) ? v : [v]).map((val) => ({ typ, val })));
  return Buffer.from(JSON.stringify({ auth_typ: 'aad', claims: list })).toString('base64');
}

function easyAuthHeaders(oid: string, claims: Record<string, string | string[]>, name: string): Record<string, string> {
  return {
    'x-ms-client-principal': clientPrincipal({ 'http://schemas.microsoft.com/identity/claims/objectidentifier': oid, 'http://schemas.microsoft.com/identity/claims/tenantid': LOCAL_TENANT, ...claims }),
    'x-ms-client-principal-id': oid,
    'x-ms-client-principal-name': name,
    'x-ms-client-principal-idp': 'aad',
  };
}

/** An endpoint with a slow custom deployment (cancelable jobs) and an input folder of `files` files. */
async function slowEndpoint(host: FnHostProcess, admin: Api, files = 12): Promise<{ endpoint: string; input: string }> {
  const endpoint = uniqueName('auth');
  const codeDir = `code/${endpoint}/`;
  const data: Record<string, string> = { [`${codeDir}slow.js`]: fixtureScript('slow.js'), 'models/dummy/model.txt': 'unused' };
  for (let i = 0; i < files; i++) data[`data/${endpoint}/f${i}.txt`] = `line ${i}\n`;
  await upload(host.storageConnection, data);
  await deploy(admin, {
    endpoint,
    deployment: 'slow',
    model: { name: 'dummy', version: '1', type: 'custom_model', path: ds('models/dummy/') },
    deploymentBody: { code_configuration: { code: ds(codeDir), scoring_script: 'slow.js' }, settings: { mini_batch_size: 1, max_concurrency_per_instance: 1, environment_variables: { SLOW_MS: '500' } } },
  });
  return { endpoint, input: ds(`data/${endpoint}/`) };
}

function expectProblem(res: { status: number; body: Json; headers: Headers }, status: number): void {
  expect(res.status).toBe(status);
  expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
  expect(res.body).toMatchObject({ status, type: expect.stringMatching(/^https:\/\//) as string, title: expect.any(String) as string, detail: expect.any(String) as string });
}

beforeAll(async () => {
  issuer = await LocalIssuer.create();
  await issuer.start();
  const base = { BATCH_AUTH_TENANTS: `${LOCAL_TENANT},${OUTAGE_TENANT}`, BATCH_AUTH_REALM: 'batch-e2e' };
  [{ host: entra }, { host: easy }] = await Promise.all([
    startProductHost({ ...base, BATCH_AUTH_MODE: 'entra', BATCH_AUTH_AUDIENCES: LOCAL_AUDIENCE, BATCH_AUTH_METADATA_URL: issuer.metadataUrl }),
    startProductHost({ ...base, BATCH_AUTH_MODE: 'easy_auth' }),
  ]);
  tokens['admin'] = await issuer.token({ roles: ['Workspace.Manage'], appId: 'admin-app' });
  tokens['reader'] = await issuer.token({ scopes: ['Jobs.Read'], username: 'rita@contoso.test' });
  tokens['ada'] = await issuer.token({ scopes: ['Jobs.Invoke'], oid: ADA, username: 'ada@contoso.test' });
  tokens['bob'] = await issuer.token({ scopes: ['Jobs.Invoke'], oid: BOB, username: 'bob@contoso.test' });
  tokens['nobody'] = await issuer.token({ scopes: ['user_impersonation'] });
  tokens['expired'] = await issuer.token({ scopes: ['Workspace.Manage'], expiresIn: -600 });
  tokens['foreign'] = await issuer.token({ scopes: ['Workspace.Manage'], audience: 'https://management.azure.com' });
}, 120_000);

afterAll(async () => {
  await Promise.all([entra?.stop(), easy?.stop()]);
  await issuer?.stop();
});

describe('Microsoft Entra ID tokens (BATCH_AUTH_MODE=entra)', () => {
  it('answers a missing or invalid token with 401 problem+json and an RFC 6750 challenge; function keys are not a way in', async () => {
    const none = await apiAs(entra, {}).call('GET', 'endpoints');
    expectProblem(none, 401);
    expect(none.headers.get('www-authenticate')).toBe('Bearer realm="batch-e2e"');
    for (const who of ['expired', 'foreign']) {
      const res = await apiAs(entra, bearer(who)).call('GET', 'endpoints');
      expectProblem(res, 401);
      expect(res.headers.get('www-authenticate')).toMatch(/^Bearer realm="batch-e2e", error="invalid_token", error_description="[^"]+"$/);
    }
    expect((await apiAs(entra, bearer('expired')).call('GET', 'endpoints')).body.detail).toMatch(/expired/);
    expect((await apiAs(entra, bearer('foreign')).call('GET', 'endpoints')).body.detail).toMatch(/audience/);
    expectProblem(await apiAs(entra, { 'x-functions-key': entra.masterKey }).call('GET', 'endpoints'), 401);
    // The API's description stays public.
    expect((await fetch(`${entra.url}/api/openapi.json`)).status).toBe(200);
  });

  it('enforces the permission of each route with 403 problem+json naming it', async () => {
    const reader = apiAs(entra, bearer('reader'));
    const ada = apiAs(entra, bearer('ada'));
    expect((await reader.call('GET', 'endpoints')).status).toBe(200);
    expect((await reader.call('GET', 'datastores')).status).toBe(200);
    const cases: [Api, string, string, unknown, string][] = [
      [reader, 'PUT', 'endpoints/forbidden-one', {}, 'Workspace.Manage'],
      [ada, 'PUT', 'endpoints/forbidden-one', {}, 'Workspace.Manage'],
      [ada, 'DELETE', 'models/dummy/versions/1', undefined, 'Workspace.Manage'],
      [ada, 'PUT', 'datastores/other', { type: 'azure_blob' }, 'Workspace.Manage'],
      [ada, 'PUT', 'endpoints/any/triggers/t', {}, 'Workspace.Manage'],
      [apiAs(entra, bearer('nobody')), 'GET', 'endpoints/any/triggers', undefined, 'Jobs.Read'],
      [reader, 'POST', 'endpoints/any/jobs', {}, 'Jobs.Invoke'],
      [reader, 'POST', 'jobs', {}, 'Jobs.Invoke'],
      // Invoke runs what is registered; a graph with inline components runs code nobody registered.
      [ada, 'POST', 'jobs', { type: 'pipeline', jobs: { mine: { component: { type: 'command', code: 'azureml://datastores/workspaceblobstore/paths/x/', entry_script: 'x.js' } } } }, 'Workspace.Manage'],
      [reader, 'POST', 'jobs/bj-x/cancel', undefined, 'Jobs.Invoke'],
      [apiAs(entra, bearer('nobody')), 'GET', 'endpoints', undefined, 'Jobs.Read'],
    ];
    for (const [api, method, path, body, permission] of cases) {
      const res = await api.call(method, path, body);
      expectProblem(res, 403);
      expect(res.body).toMatchObject({ code: 'forbidden', required_permission: permission });
      expect(res.body.detail).toContain(`'${permission}'`);
      expect(res.headers.get('www-authenticate')).toBe(`Bearer realm="batch-e2e", error="insufficient_scope", scope="${permission}"`);
    }
    // Nothing was created by the refused PUT.
    expect((await reader.call('GET', 'endpoints/forbidden-one')).status).toBe(404);
  });

  it('records the invoker; a caller with invoke sees and cancels only their own jobs (others are 404); managers see all', async () => {
    const admin = apiAs(entra, bearer('admin'));
    const ada = apiAs(entra, bearer('ada'));
    const bob = apiAs(entra, bearer('bob'));
    const reader = apiAs(entra, bearer('reader'));
    const { endpoint, input } = await slowEndpoint(entra, admin);

    const key = uniqueName('idem');
    const started = await ada.call('POST', `endpoints/${endpoint}/jobs`, { inputs: { text: { path: input } } }, { 'idempotency-key': key });
    expect(started.status).toBe(202);
    const id = started.body.id as string;
    expect(started.body.invoked_by).toEqual({ name: 'ada@contoso.test', id: ADA, tenant: LOCAL_TENANT, app_id: expect.any(String) as string, kind: 'user', via: 'entra' });

    // Bob, spoofing Ada's Easy Auth headers alongside his own token, is still Bob.
    const bobs = await bob.call('POST', `endpoints/${endpoint}/jobs`, { inputs: { text: { path: input } } }, easyAuthHeaders(ADA, { roles: ['Workspace.Manage'] }, 'ada@contoso.test'));
    expect(bobs.status).toBe(202);
    expect(bobs.body.invoked_by).toMatchObject({ id: BOB, name: 'bob@contoso.test', via: 'entra' });
    // Ada's idempotency key does not hand her job to Bob.
    expectProblem(await bob.call('POST', `endpoints/${endpoint}/jobs`, { inputs: { text: { path: input } } }, { 'idempotency-key': key }), 409);

    for (const [method, path] of [['GET', `jobs/${id}`], ['GET', `jobs/${id}/status`], ['GET', `jobs/${id}/outputs/predictions.csv`], ['POST', `jobs/${id}/cancel`], ['GET', `jobs/${id}/mini-batches`], ['GET', `jobs/${id}/failures`], ['GET', `jobs/${id}/log`]] as const) {
      const res = await bob.call(method, path);
      expectProblem(res, 404);
      expect(res.body.detail).toBe(`Job '${id}' does not exist.`);
    }
    expectProblem(await reader.call('GET', `jobs/${id}`), 404);
    expect((await ada.call('GET', `jobs/${id}`)).status).toBe(200);
    expect((await admin.call('GET', `jobs/${id}`)).status).toBe(200);

    const ids = async (api: Api, query = ''): Promise<string[]> => {
      const res = await api.call('GET', `endpoints/${endpoint}/jobs${query}`);
      expect(res.status).toBe(200);
      return (res.body.value as { id: string }[]).map((j) => j.id).sort();
    };
    expect(await ids(ada)).toEqual([id]);
    expect(await ids(ada, '?invoked_by=me')).toEqual([id]);
    expect(await ids(ada, `?invoked_by=${BOB}`)).toEqual([]);
    expect(await ids(bob)).toEqual([bobs.body.id as string]);
    expect(await ids(reader)).toEqual([]);
    expect(await ids(admin)).toEqual([id, bobs.body.id as string].sort());
    expect(await ids(admin, `?invoked_by=${ADA}`)).toEqual([id]);
    expect(await ids(admin, '?invoked_by=me')).toEqual([]);
    expectProblem(await admin.call('GET', `endpoints/${endpoint}/jobs?invoked_by=${encodeURIComponent("x' or true")}`), 400);
    // GET /api/jobs (every endpoint's jobs) shows each caller the same jobs.
    const both = [id, bobs.body.id as string];
    const all = async (api: Api, query = ''): Promise<string[]> => {
      const res = await api.call('GET', `jobs?top=100${query}`);
      expect(res.status).toBe(200);
      return (res.body.value as { id: string }[]).map((j) => j.id).filter((j) => both.includes(j)).sort();
    };
    expect(await all(ada)).toEqual([id]);
    expect(await all(bob)).toEqual([bobs.body.id as string]);
    expect(await all(reader)).toEqual([]);
    expect(await all(admin, `&endpoint=${endpoint}`)).toEqual([...both].sort());
    expect(await all(admin, `&invoked_by=${ADA}`)).toEqual([id]);
    expect(await all(ada, `&invoked_by=${BOB}`)).toEqual([]);

    const canceled = await ada.call('POST', `jobs/${id}/cancel`);
    expect(canceled.status).toBe(202);
    expect(['Canceling', 'Canceled']).toContain(canceled.body.status);
    expect((await waitForJob(ada, id)).status).toBe('Canceled');
    // Bob's job was untouched by all of this; the admin may cancel it.
    expect((await admin.call('POST', `jobs/${bobs.body.id as string}/cancel`)).status).toBe(202);
    await waitForJob(admin, bobs.body.id as string);
  });

  it('an outage of the OpenID metadata or keys is 503 auth_unavailable with Retry-After (not 401); keys read before stay in use', async () => {
    const outsider = await issuer.token({ tenant: OUTAGE_TENANT, roles: ['Workspace.Manage'] });
    const port = Number(new URL(issuer.url).port);
    await issuer.stop();
    try {
      const res = await apiAs(entra, { authorization: `Bearer ${outsider}` }).call('GET', 'endpoints');
      expectProblem(res, 503);
      expect(res.body).toMatchObject({ code: 'auth_unavailable', retry_after_seconds: expect.any(Number) as number });
      expect(Number(res.headers.get('retry-after'))).toBeGreaterThan(0);
      expect(res.headers.get('www-authenticate')).toBeNull();
      // The tenant that was discovered before keeps working on the keys it has.
      expect((await apiAs(entra, bearer('admin')).call('GET', 'endpoints')).status).toBe(200);
      // A token invalid on its face is still refused as such.
      expectProblem(await apiAs(entra, bearer('foreign')).call('GET', 'endpoints'), 401);
    } finally {
      await issuer.start(port);
    }
    expect((await apiAs(entra, { authorization: `Bearer ${outsider}` }).call('GET', 'endpoints')).status).toBe(200);
  });
});

describe('App Service authentication (BATCH_AUTH_MODE=easy_auth)', () => {
  it('trusts x-ms-client-principal for the caller and its permission; without it, 401', async () => {
    const none = await apiAs(easy, {}).call('GET', 'endpoints');
    expectProblem(none, 401);
    expect(none.headers.get('www-authenticate')).toMatch(/^Bearer realm="batch-e2e"/);
    // The name header alone is not a principal.
    expectProblem(await apiAs(easy, { 'x-ms-client-principal-name': 'admin' }).call('GET', 'endpoints'), 401);
    const admin = apiAs(easy, easyAuthHeaders(randomUUID(), { roles: ['Workspace.Manage'], azp: 'admin-app' }, 'admin-app'));
    const ada = apiAs(easy, easyAuthHeaders(ADA, { 'http://schemas.microsoft.com/identity/claims/scope': 'Jobs.Invoke' }, 'ada@contoso.test'));
    const bob = apiAs(easy, easyAuthHeaders(BOB, { 'http://schemas.microsoft.com/identity/claims/scope': 'Jobs.Invoke' }, 'bob@contoso.test'));
    const res = await ada.call('PUT', 'endpoints/not-for-ada', {});
    expectProblem(res, 403);
    expect(res.body.required_permission).toBe('Workspace.Manage');
    const { endpoint, input } = await slowEndpoint(easy, admin, 2);
    const started = await ada.call('POST', `endpoints/${endpoint}/jobs`, { inputs: { text: { path: input } } });
    expect(started.status).toBe(202);
    expect(started.body.invoked_by).toMatchObject({ id: ADA, tenant: LOCAL_TENANT, name: 'ada@contoso.test', kind: 'user', via: 'easy_auth' });
    expectProblem(await bob.call('GET', `jobs/${started.body.id as string}`), 404);
    await waitFor(async () => {
      const job = await ada.call('GET', `jobs/${started.body.id as string}`);
      return ['Completed', 'Failed', 'Canceled'].includes(job.body.status as string) ? job : undefined;
    }, { timeoutMs: 90_000 });
  });
});
