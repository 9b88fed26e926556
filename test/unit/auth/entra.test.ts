import { randomUUID } from 'node:crypto';
import { SignJWT, exportSPKI, importJWK, base64url, type CryptoKey } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EntraValidator } from '../../../shared/auth/entra.js';
import { BatchError, problemHeaders, toProblem } from '../../../shared/errors.js';
import { LOCAL_AUDIENCE, LOCAL_TENANT, LocalIssuer } from '../../../scripts/lib/oidc-issuer.js';

const OTHER_TENANT = '33333333-3333-4333-8333-333333333333';
let issuer: LocalIssuer;

beforeAll(async () => {
  issuer = await LocalIssuer.create();
  await issuer.start();
});
afterAll(async () => {
  await issuer.stop();
});

function validator(options: { clock?: () => Date; tenants?: string[]; audiences?: string[]; from?: LocalIssuer; jwksMaxAgeMs?: number } = {}): EntraValidator {
  return new EntraValidator(
    {
      tenants: options.tenants ?? [LOCAL_TENANT, OTHER_TENANT],
      audiences: options.audiences ?? [LOCAL_AUDIENCE, 'client-id-of-the-app'],
      metadataUrl: (options.from ?? issuer).metadataUrl,
      clockSkewSeconds: 60,
      jwksCooldownMs: 0,
      ...(options.jwksMaxAgeMs === undefined ? {} : { jwksMaxAgeMs: options.jwksMaxAgeMs }),
      ...(options.clock ? { clock: options.clock } : {}),
    },
    'batch-test',
  );
}

/** The 401 a token gets: its problem and challenge. */
async function refusal(v: EntraValidator, token: string): Promise<{ detail: string; challenge: string }> {
  const err = await v.validate(token).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(BatchError);
  const problem = toProblem(err);
  expect(problem.status).toBe(401);
  const challenge = problemHeaders(err)['www-authenticate'] ?? '';
  expect(challenge).toMatch(/^Bearer realm="batch-test", error="invalid_token", error_description="[^"]+"$/);
  return { detail: problem.detail, challenge };
}

describe('Entra ID bearer tokens', () => {
  it('accepts a valid user token: scopes give the permission, claims the invoker', async () => {
    const oid = randomUUID();
    const principal = await validator().validate(await issuer.token({ scopes: ['Jobs.Invoke'], oid, username: 'ada@contoso.test' }));
    expect(principal.permission).toBe('invoke');
    expect(principal.invoker).toEqual({ name: 'ada@contoso.test', id: oid, tenant: LOCAL_TENANT, app_id: expect.any(String) as string, kind: 'user', via: 'entra' });
  });

  it('accepts an application token (app roles) from a second allowed tenant, and the client id as audience', async () => {
    const principal = await validator().validate(await issuer.token({ tenant: OTHER_TENANT, roles: ['Workspace.Manage'], appId: 'app-123', audience: 'client-id-of-the-app' }));
    expect(principal.permission).toBe('manage');
    expect(principal.invoker).toMatchObject({ name: 'app-123', app_id: 'app-123', kind: 'app', tenant: OTHER_TENANT, via: 'entra' });
  });

  it('refuses an expired token, but tolerates the clock skew', async () => {
    expect((await refusal(validator(), await issuer.token({ scopes: ['Jobs.Read'], expiresIn: -120 }))).detail).toMatch(/expired/);
    await expect(validator().validate(await issuer.token({ scopes: ['Jobs.Read'], expiresIn: -30 }))).resolves.toMatchObject({ permission: 'read' });
  });

  it('refuses a token not valid yet (nbf beyond the skew)', async () => {
    expect((await refusal(validator(), await issuer.token({ scopes: ['Jobs.Read'], notBefore: 300 }))).detail).toMatch(/not valid yet/);
  });

  it('checks times against the injected clock', async () => {
    const token = await issuer.token({ scopes: ['Jobs.Read'], expiresIn: 600 });
    await expect(validator({ clock: () => new Date(Date.now() + 5 * 60_000) }).validate(token)).resolves.toBeDefined();
    expect((await refusal(validator({ clock: () => new Date(Date.now() + 20 * 60_000) }), token)).detail).toMatch(/expired/);
  });

  it('refuses a token for another audience', async () => {
    expect((await refusal(validator(), await issuer.token({ scopes: ['Jobs.Read'], audience: 'https://management.azure.com' }))).detail).toMatch(/audience/);
  });

  it('refuses a tenant not on the allow-list without contacting its metadata', async () => {
    const before = issuer.metadataRequests;
    const stranger = randomUUID();
    expect((await refusal(validator(), await issuer.token({ scopes: ['Jobs.Read'], tenant: stranger }))).detail).toMatch(/tenant/);
    expect(issuer.metadataRequests).toBe(before);
  });

  it("refuses a token whose issuer is not its tenant's (another allowed tenant's issuer, or another host)", async () => {
    const v = validator();
    expect((await refusal(v, await issuer.token({ scopes: ['Jobs.Read'], tenant: LOCAL_TENANT, issuer: issuer.issuerOf(OTHER_TENANT) }))).detail).toMatch(/issuer/);
    expect((await refusal(v, await issuer.token({ scopes: ['Jobs.Read'], issuer: `https://login.microsoftonline.com/${LOCAL_TENANT}/v2.0` }))).detail).toMatch(/issuer/);
  });

  it('fetches the keys again for an unknown kid: a rolled-over key is accepted, an unpublished one refused', async () => {
    const v = validator();
    await v.validate(await issuer.token({ scopes: ['Jobs.Read'] }));
    const fetched = issuer.jwksRequests;
    await v.validate(await issuer.token({ scopes: ['Jobs.Read'] }));
    expect(issuer.jwksRequests).toBe(fetched); // cached
    await issuer.rotate();
    await expect(v.validate(await issuer.token({ scopes: ['Jobs.Read'] }))).resolves.toBeDefined();
    expect(issuer.jwksRequests).toBe(fetched + 1);
    const detail = (await refusal(v, await issuer.token({ scopes: ['Jobs.Read'], key: await LocalIssuer.unpublishedKey() }))).detail;
    expect(detail).toMatch(/key that is not one of its tenant's/);
    expect(issuer.jwksRequests).toBe(fetched + 2);
  });

  it("refuses alg: none", async () => {
    const header = base64url.encode(JSON.stringify({ alg: 'none', typ: 'JWT' }));
    const now = Math.floor(Date.now() / 1000);
    const payload = base64url.encode(JSON.stringify({ iss: issuer.issuerOf(LOCAL_TENANT), aud: LOCAL_AUDIENCE, tid: LOCAL_TENANT, oid: randomUUID(), scp: 'Workspace.Manage', iat: now, nbf: now, exp: now + 600 }));
    expect((await refusal(validator(), `${header}.${payload}.`)).detail).toMatch(/algorithm 'none' is not accepted/);
  });

  it('refuses HS256 signed with the public key as the secret', async () => {
    const res = await fetch(`${issuer.url}/${LOCAL_TENANT}/discovery/v2.0/keys`);
    const jwks = (await res.json()) as { keys: { kid: string }[] };
    const published = jwks.keys[jwks.keys.length - 1];
    if (!published) throw new Error('no key');
    const pem = await exportSPKI((await importJWK(published, 'RS256')) as CryptoKey);
    for (const secret of [new TextEncoder().encode(pem), base64url.decode((published as { n?: string }).n ?? '')]) {
      const token = await new SignJWT({ tid: LOCAL_TENANT, oid: randomUUID(), scp: 'Workspace.Manage' })
        .setProtectedHeader({ alg: 'HS256', kid: published.kid })
        .setIssuer(issuer.issuerOf(LOCAL_TENANT))
        .setAudience(LOCAL_AUDIENCE)
        .setIssuedAt()
        .setExpirationTime('10m')
        .sign(secret);
      expect((await refusal(validator(), token)).detail).toMatch(/algorithm 'HS256' is not accepted/);
    }
  });

  it('refuses a tampered payload (signature) and garbage', async () => {
    const [h, , s] = (await issuer.token({ scopes: ['Jobs.Read'] })).split('.');
    const now = Math.floor(Date.now() / 1000);
    const forged = base64url.encode(JSON.stringify({ iss: issuer.issuerOf(LOCAL_TENANT), aud: LOCAL_AUDIENCE, tid: LOCAL_TENANT, oid: randomUUID(), scp: 'Workspace.Manage', exp: now + 600 }));
    expect((await refusal(validator(), `${h}.${forged}.${s}`)).detail).toMatch(/signature/);
    expect((await refusal(validator(), 'not-a-token')).detail).toMatch(/malformed/);
  });

  it('an unreachable issuer is auth_unavailable (503 with Retry-After), not a 401; keys fetched before stay in use', async () => {
    const down = await LocalIssuer.create();
    await down.start();
    const unavailable = async (v: EntraValidator, token: string): Promise<void> => {
      const err = await v.validate(token).then(() => undefined, (e: unknown) => e);
      expect(err).toBeInstanceOf(BatchError);
      expect((err as BatchError).code).toBe('auth_unavailable');
      expect((err as BatchError).retryable).toBe(true);
      const problem = toProblem(err);
      expect(problem).toMatchObject({ status: 503, code: 'auth_unavailable', retry_after_seconds: expect.any(Number) as number });
      expect(problemHeaders(err)['www-authenticate']).toBeUndefined();
    };
    try {
      // The keys expire at once: every token makes the validator fetch them again.
      const warm = validator({ from: down, jwksMaxAgeMs: 0 });
      const known = await down.token({ scopes: ['Jobs.Read'] });
      await expect(warm.validate(known)).resolves.toMatchObject({ permission: 'read' });
      const keysFetched = down.jwksRequests;
      await warm.validate(known);
      expect(down.jwksRequests).toBe(keysFetched + 1);
      const expired = await down.token({ scopes: ['Jobs.Read'], expiresIn: -600 });
      await down.rotate();
      const rotated = await down.token({ scopes: ['Jobs.Read'] });
      const forged = await down.token({ scopes: ['Jobs.Read'], key: await LocalIssuer.unpublishedKey() });
      await down.stop();

      // Metadata never read: the tenant cannot be discovered.
      await unavailable(validator({ from: down }), await down.token({ scopes: ['Jobs.Read'] }));
      // Keys read before: a token signed with one of them still passes; a kid never seen cannot be judged.
      await expect(warm.validate(known)).resolves.toMatchObject({ permission: 'read' });
      await unavailable(warm, rotated);
      await unavailable(warm, forged);
      // A token invalid on its face is still a 401, outage or not.
      expect((await refusal(warm, expired)).detail).toMatch(/expired/);

      // Back up (same port): the new key is fetched and accepted, the unpublished one refused.
      await down.start(Number(new URL(down.url).port));
      await expect(warm.validate(rotated)).resolves.toMatchObject({ permission: 'read' });
      expect((await refusal(warm, forged)).detail).toMatch(/key that is not one of its tenant's/);
    } finally {
      await down.stop();
    }
  });
});
