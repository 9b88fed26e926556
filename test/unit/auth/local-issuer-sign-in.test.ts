import { createHash, randomBytes } from 'node:crypto';
import { decodeJwt } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CODE_LIFETIME_MS, LOCAL_AUDIENCE, LOCAL_TENANT, LocalIssuer } from '../../../scripts/lib/oidc-issuer.js';
import { EntraValidator } from '../../../shared/auth/entra.js';

/**
 * The local issuer's authorization code flow with PKCE (what the web page's sign-in runs against
 * locally): real codes, real S256 checks, tokens the app's validator accepts.
 */

const CLIENT = 'web-client';
const REDIRECT = 'http://127.0.0.1:7071/api/app/';
const ORIGIN = 'http://127.0.0.1:7071';
const ADA = '0d0d0d0d-0000-4000-8000-00000000ada0';
let issuer: LocalIssuer;

beforeAll(async () => {
  issuer = await LocalIssuer.create();
  await issuer.start();
  issuer.registerSpa({ clientId: CLIENT, redirectUris: [REDIRECT], user: { username: 'ada@contoso.test', oid: ADA }, consented: ['Jobs.Invoke'] });
});

afterAll(async () => {
  await issuer?.stop();
});

const verifierOf = (): string => randomBytes(32).toString('base64url');
const challengeOf = (verifier: string): string => createHash('sha256').update(verifier).digest('base64url');

/** GET /authorize; the answer's parameters (from the redirect's fragment or query), or the status and text of a page. */
async function authorize(params: Record<string, string>): Promise<{ status: number; answer: URLSearchParams; location: string; text: string }> {
  const query = new URLSearchParams({ client_id: CLIENT, response_type: 'code', redirect_uri: REDIRECT, response_mode: 'fragment', scope: `openid profile ${LOCAL_AUDIENCE}/.default`, state: 'st4te', nonce: 'n0nce', code_challenge_method: 'S256', ...params });
  const res = await fetch(`${issuer.url}/${LOCAL_TENANT}/oauth2/v2.0/authorize?${query.toString()}`, { redirect: 'manual' });
  const location = res.headers.get('location') ?? '';
  const answer = new URLSearchParams(location.includes('#') ? location.substring(location.indexOf('#') + 1) : location.includes('?') ? location.substring(location.indexOf('?') + 1) : '');
  return { status: res.status, answer, location, text: await res.text() };
}

async function redeem(form: Record<string, string>, origin: string | null = ORIGIN): Promise<{ status: number; body: Record<string, unknown>; headers: Headers }> {
  const res = await fetch(`${issuer.url}/${LOCAL_TENANT}/oauth2/v2.0/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...(origin === null ? {} : { origin }) },
    body: new URLSearchParams({ client_id: CLIENT, grant_type: 'authorization_code', redirect_uri: REDIRECT, ...form }),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown>, headers: res.headers };
}

describe('local issuer: authorization code flow with PKCE', () => {
  it('signs the configured user in and redeems the code once, for the verifier of its challenge, with CORS', async () => {
    const verifier = verifierOf();
    const { status, answer, location } = await authorize({ code_challenge: challengeOf(verifier) });
    expect(status).toBe(302);
    expect(location.startsWith(`${REDIRECT}#`)).toBe(true);
    expect(answer.get('state')).toBe('st4te');
    const code = answer.get('code') ?? '';
    expect(code).toMatch(/^[A-Za-z0-9_-]{43}$/);
    const ok = await redeem({ code, code_verifier: verifier });
    expect(ok.status).toBe(200);
    expect(ok.headers.get('access-control-allow-origin')).toBe(ORIGIN);
    expect(ok.body).toMatchObject({ token_type: 'Bearer', scope: `${LOCAL_AUDIENCE}/Jobs.Invoke` });
    // The access token is one the app accepts, for the signed-in user, with the consented scope.
    const validator = new EntraValidator({ tenants: [LOCAL_TENANT], audiences: [LOCAL_AUDIENCE], metadataUrl: issuer.metadataUrl, clockSkewSeconds: 60 }, 'test');
    const principal = await validator.validate(ok.body['access_token'] as string);
    expect(principal).toMatchObject({ permission: 'invoke', invoker: { id: ADA, name: 'ada@contoso.test', app_id: CLIENT, kind: 'user' } });
    expect(decodeJwt(ok.body['id_token'] as string)).toMatchObject({ aud: CLIENT, nonce: 'n0nce', preferred_username: 'ada@contoso.test', oid: ADA });
    // Used once.
    const again = await redeem({ code, code_verifier: verifier });
    expect(again).toMatchObject({ status: 400, body: { error: 'invalid_grant' } });
  });

  it('refuses a wrong verifier, and the code is burnt by the attempt', async () => {
    const verifier = verifierOf();
    const code = (await authorize({ code_challenge: challengeOf(verifier) })).answer.get('code') ?? '';
    const wrong = await redeem({ code, code_verifier: verifierOf() });
    expect(wrong.status).toBe(400);
    expect(wrong.body).toMatchObject({ error: 'invalid_grant', error_description: expect.stringMatching(/code_verifier does not match/) as string });
    expect(wrong.headers.get('access-control-allow-origin')).toBe(ORIGIN);
    expect((await redeem({ code, code_verifier: verifier })).body).toMatchObject({ error: 'invalid_grant' });
    // No verifier at all, or a malformed one.
    const code2 = (await authorize({ code_challenge: challengeOf(verifier) })).answer.get('code') ?? '';
    expect((await redeem({ code: code2 })).body).toMatchObject({ error: 'invalid_grant', error_description: expect.stringMatching(/missing or malformed/) as string });
  });

  it('refuses another client, another redirect URI, a same-origin (no Origin) redemption and an expired code', async () => {
    const verifier = verifierOf();
    const code = async (): Promise<string> => (await authorize({ code_challenge: challengeOf(verifier) })).answer.get('code') ?? '';
    expect((await redeem({ code: await code(), code_verifier: verifier, client_id: 'other' })).body).toMatchObject({ error: 'invalid_grant' });
    expect((await redeem({ code: await code(), code_verifier: verifier, redirect_uri: 'http://127.0.0.1:9/' })).body).toMatchObject({ error: 'invalid_grant' });
    expect((await redeem({ code: await code(), code_verifier: verifier }, null)).body).toMatchObject({ error: 'invalid_request', error_description: expect.stringMatching(/cross-origin/) as string });
    const late = await code();
    const real = issuer.clock;
    issuer.clock = () => new Date(Date.now() + CODE_LIFETIME_MS + 1000);
    try {
      expect((await redeem({ code: late, code_verifier: verifier })).body).toMatchObject({ error: 'invalid_grant', error_description: expect.stringMatching(/expired/) as string });
    } finally {
      issuer.clock = real;
    }
  });

  it('answers an unknown client or redirect URI itself, and a request without S256 PKCE with an error at the redirect URI', async () => {
    const unknown = await authorize({ client_id: 'nobody', code_challenge: challengeOf(verifierOf()) });
    expect(unknown.status).toBe(400);
    expect(unknown.text).toMatch(/AADSTS700016/);
    const elsewhere = await authorize({ redirect_uri: 'https://evil.example/', code_challenge: challengeOf(verifierOf()) });
    expect(elsewhere.status).toBe(400);
    expect(elsewhere.location).toBe('');
    for (const params of [{ code_challenge: 'short' }, { code_challenge: challengeOf(verifierOf()), code_challenge_method: 'plain' }] as Record<string, string>[]) {
      const res = await authorize(params);
      expect(res.status).toBe(302);
      expect(res.answer.get('error')).toBe('invalid_request');
      expect(res.answer.get('state')).toBe('st4te');
      expect(res.answer.has('code')).toBe(false);
    }
  });

  it('answers the CORS preflight of the token endpoint', async () => {
    const res = await fetch(`${issuer.url}/${LOCAL_TENANT}/oauth2/v2.0/token`, { method: 'OPTIONS', headers: { origin: ORIGIN, 'access-control-request-method': 'POST' } });
    expect(res.status).toBe(204);
    expect(res.headers.get('access-control-allow-origin')).toBe(ORIGIN);
    expect(res.headers.get('access-control-allow-methods')).toBe('POST');
  });
});
