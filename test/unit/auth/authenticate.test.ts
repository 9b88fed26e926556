import { describe, expect, it } from 'vitest';
import { Authenticator } from '../../../shared/auth/authenticate.js';
import { allows, canSeeJob, permissionOf, type Principal } from '../../../shared/auth/permissions.js';
import { type AuthConfig, apiAuthLevel, loadConfig } from '../../../shared/config.js';
import { BatchError, problemHeaders, toProblem } from '../../../shared/errors.js';

const TENANT = '11111111-1111-4111-8111-111111111111';

function config(mode: AuthConfig['mode'], tenants: string[] = []): AuthConfig {
  return { mode, tenants, audiences: ['api://x'], metadataUrl: 'http://127.0.0.1:1/{tenant}/v2.0/.well-known/openid-configuration', clockSkewSeconds: 60, realm: 'r' };
}

function headers(values: Record<string, string>): { get(name: string): string | null } {
  const h = new Headers(values);
  return { get: (n) => h.get(n) };
}

function clientPrincipal(claims: Record<string, string | string[]>): string {
  const list = Object.entries(claims).flatMap(([typ, v]) => (Array.isArray(v) ? v : [v]).map((val) => ({ typ, val })));
  return Buffer.from(JSON.stringify({ auth_typ: 'aad', claims: list, name_typ: 'name', role_typ: 'roles' })).toString('base64');
}

const SPOOF = {
  'x-ms-client-principal': clientPrincipal({ 'http://schemas.microsoft.com/identity/claims/objectidentifier': 'victim', roles: ['Workspace.Manage'], 'http://schemas.microsoft.com/identity/claims/tenantid': TENANT }),
  'x-ms-client-principal-id': 'victim',
  'x-ms-client-principal-name': 'victim@contoso.test',
  'x-ms-client-principal-idp': 'aad',
};

async function failure(p: Promise<unknown>): Promise<{ status: number; detail: string; challenge: string | undefined; body: Record<string, unknown> }> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(BatchError);
  const problem = toProblem(err);
  return { status: problem.status, detail: problem.detail, challenge: problemHeaders(err)['www-authenticate'], body: problem };
}

describe('permissions', () => {
  it('names three levels by scope or app role; manage implies invoke implies read', () => {
    expect(permissionOf('Jobs.Read', [])).toBe('read');
    expect(permissionOf('openid Jobs.Invoke profile', undefined)).toBe('invoke');
    expect(permissionOf(undefined, ['Jobs.Read', 'Workspace.Manage'])).toBe('manage');
    expect(permissionOf('user_impersonation', ['Other.Role'])).toBeUndefined();
    expect(allows('manage', 'invoke')).toBe(true);
    expect(allows('invoke', 'read')).toBe(true);
    expect(allows('invoke', 'manage')).toBe(false);
    expect(allows('read', 'invoke')).toBe(false);
    expect(allows(undefined, 'read')).toBe(false);
  });

  it('shows a job to its invoker (same tenant and object id) and to managers only', () => {
    const ada: Principal = { permission: 'invoke', invoker: { name: 'ada', id: 'a', tenant: TENANT, via: 'entra' } };
    const admin: Principal = { permission: 'manage', invoker: { name: 'admin', id: 'm', tenant: TENANT, via: 'entra' } };
    expect(canSeeJob(ada, { name: 'ada', id: 'a', tenant: TENANT, via: 'entra' })).toBe(true);
    expect(canSeeJob(ada, { name: 'bob', id: 'b', tenant: TENANT, via: 'entra' })).toBe(false);
    expect(canSeeJob(ada, { name: 'ada elsewhere', id: 'a', tenant: 'other', via: 'entra' })).toBe(false);
    expect(canSeeJob(ada, { name: 'trigger t', via: 'event_grid' })).toBe(false);
    expect(canSeeJob({ permission: 'read', invoker: { name: 'x', via: 'entra' } }, { name: 'y', via: 'anonymous' })).toBe(false);
    expect(canSeeJob(admin, { name: 'bob', id: 'b', tenant: TENANT, via: 'entra' })).toBe(true);
  });

  it('answers a missing permission with 403 naming it (and an insufficient_scope challenge with Entra)', () => {
    const auth = new Authenticator(config('entra', [TENANT]));
    let err: unknown;
    try {
      auth.authorize({ permission: 'read', invoker: { name: 'r', via: 'entra' } }, 'manage');
    } catch (e) {
      err = e;
    }
    const problem = toProblem(err);
    expect(problem).toMatchObject({ status: 403, code: 'forbidden', required_permission: 'Workspace.Manage' });
    expect(problem.detail).toMatch(/'Workspace\.Manage'.*holds 'Jobs\.Read'/);
    expect(problemHeaders(err)).toEqual({ 'www-authenticate': 'Bearer realm="r", error="insufficient_scope", scope="Workspace.Manage"' });
    expect(() => auth.authorize({ permission: 'manage', invoker: { name: 'm', via: 'entra' } }, 'invoke')).not.toThrow();
  });
});

describe('authentication modes', () => {
  it('entra: no token is 401 with a bare Bearer challenge; a non-Bearer header is invalid_request', async () => {
    const auth = new Authenticator(config('entra', [TENANT]));
    const none = await failure(auth.authenticate(headers({}), false));
    expect(none).toMatchObject({ status: 401, challenge: 'Bearer realm="r"' });
    const basic = await failure(auth.authenticate(headers({ authorization: 'Basic dXNlcjpwYXNz' }), false));
    expect(basic.status).toBe(401);
    expect(basic.challenge).toMatch(/^Bearer realm="r", error="invalid_request"/);
  });

  it('entra: Easy Auth headers alone are not a caller (spoofing), 401', async () => {
    const auth = new Authenticator(config('entra', [TENANT]));
    expect(await failure(auth.authenticate(headers(SPOOF), false))).toMatchObject({ status: 401 });
  });

  it('function_key and none: Easy Auth headers are ignored; the invoker is the key or anonymous', async () => {
    await expect(new Authenticator(config('function_key')).authenticate(headers(SPOOF), false)).resolves.toEqual({ permission: 'manage', invoker: { name: 'function key', via: 'function_key' } });
    await expect(new Authenticator(config('none')).authenticate(headers(SPOOF), false)).resolves.toEqual({ permission: 'manage', invoker: { name: 'anonymous', via: 'anonymous' } });
    await expect(new Authenticator(config('none')).authenticate(headers({ ...SPOOF, 'x-functions-key': 'k' }), false)).resolves.toMatchObject({ invoker: { via: 'function_key' } });
  });

  it('easy_auth: the client principal gives the caller and its permission; the tenant allow-list applies', async () => {
    const auth = new Authenticator(config('easy_auth', [TENANT]));
    const user = await auth.authenticate(
      headers({
        'x-ms-client-principal': clientPrincipal({
          'http://schemas.microsoft.com/identity/claims/objectidentifier': 'oid-1',
          'http://schemas.microsoft.com/identity/claims/tenantid': TENANT,
          'http://schemas.microsoft.com/identity/claims/scope': 'Jobs.Invoke',
          azp: 'client-1',
        }),
        'x-ms-client-principal-name': 'ada@contoso.test',
      }),
      false,
    );
    expect(user).toEqual({ permission: 'invoke', invoker: { name: 'ada@contoso.test', id: 'oid-1', tenant: TENANT, app_id: 'client-1', kind: 'user', via: 'easy_auth' } });
    expect(await failure(auth.authenticate(headers({ 'x-ms-client-principal': clientPrincipal({ 'http://schemas.microsoft.com/identity/claims/tenantid': 'elsewhere', roles: 'Workspace.Manage' }) }), false))).toMatchObject({ status: 401 });
    expect(await failure(auth.authenticate(headers({ 'x-ms-client-principal-name': 'only-the-name' }), false))).toMatchObject({ status: 401 });
    expect(await failure(auth.authenticate(headers({ 'x-ms-client-principal': '%%%' }), false))).toMatchObject({ status: 401 });
  });
});

describe('auth configuration', () => {
  const base = { AzureWebJobsStorage: 'UseDevelopmentStorage=true' };

  it('defaults to function keys; BATCH_API_AUTH_LEVEL=anonymous still means none', () => {
    expect(loadConfig(base).auth.mode).toBe('function_key');
    expect(loadConfig({ ...base, BATCH_API_AUTH_LEVEL: 'anonymous' }).auth.mode).toBe('none');
    expect(apiAuthLevel({})).toBe('function');
    expect(apiAuthLevel({ BATCH_AUTH_MODE: 'entra' })).toBe('anonymous');
    expect(apiAuthLevel({ BATCH_AUTH_MODE: 'function_key', BATCH_API_AUTH_LEVEL: 'anonymous' })).toBe('function');
  });

  it('entra needs tenants and audiences; several tenants need {tenant} in the metadata URL; http only on loopback', () => {
    expect(() => loadConfig({ ...base, BATCH_AUTH_MODE: 'entra' })).toThrow(/BATCH_AUTH_TENANTS: required[\s\S]*BATCH_AUTH_AUDIENCES: required/);
    const ok = loadConfig({ ...base, BATCH_AUTH_MODE: 'entra', BATCH_AUTH_TENANTS: ` ${TENANT.toUpperCase()}, contoso.onmicrosoft.com`, BATCH_AUTH_AUDIENCES: 'api://batch,abc' });
    expect(ok.auth).toMatchObject({ mode: 'entra', tenants: [TENANT, 'contoso.onmicrosoft.com'], audiences: ['api://batch', 'abc'], clockSkewSeconds: 60, realm: 'batch-endpoints' });
    expect(ok.auth.metadataUrl).toBe('https://login.microsoftonline.com/{tenant}/v2.0/.well-known/openid-configuration');
    const entra = { ...base, BATCH_AUTH_MODE: 'entra', BATCH_AUTH_TENANTS: `${TENANT},other`, BATCH_AUTH_AUDIENCES: 'a' };
    expect(() => loadConfig({ ...entra, BATCH_AUTH_METADATA_URL: 'https://login.example/fixed/.well-known/openid-configuration' })).toThrow(/must contain \{tenant\}/);
    expect(() => loadConfig({ ...entra, BATCH_AUTH_METADATA_URL: 'http://169.254.169.254/{tenant}/x' })).toThrow(/must be https/);
    expect(loadConfig({ ...entra, BATCH_AUTH_METADATA_URL: 'http://127.0.0.1:8123/{tenant}/v2.0/.well-known/openid-configuration' }).auth.metadataUrl).toMatch(/^http:\/\/127/);
    expect(() => loadConfig({ ...base, BATCH_AUTH_MODE: 'oauth' })).toThrow(/BATCH_AUTH_MODE/);
  });
});
