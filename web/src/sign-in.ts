/**
 * "Sign in with Microsoft": the OAuth 2.0 authorization code flow with PKCE (RFC 6749 §4.1,
 * RFC 7636) of a single-page application, against Microsoft Entra ID's v2.0 endpoints (or the
 * local issuer, which serves the same ones). Written here with WebCrypto rather than MSAL, which
 * is not a dependency and may not be fetched at run time.
 *
 * 1. `beginSignIn`: a random verifier (32 bytes, base64url), its S256 challenge, a random `state`
 *    and `nonce`, kept in sessionStorage (this tab only); the tab goes to the authorization
 *    endpoint with `response_mode=fragment`, so the code never reaches a server's logs.
 * 2. `completeSignIn`, on the page's load: an answer in the fragment is taken once (removed from
 *    storage and from the address bar at once); its `state` must be the stored one, or it is
 *    refused without being redeemed (a forged or replayed answer); the code is redeemed by a CORS
 *    POST to the token endpoint with the verifier (the authority checks it against the
 *    challenge); the id token's `nonce` and `aud` must be ours. The id token comes straight from
 *    the token endpoint over TLS, so its signature is not checked here (OpenID Connect Core
 *    §3.1.3.7); the access token is checked, fully, by the API on every call.
 * 3. The access token goes where a pasted one goes (api.ts: sessionStorage). No refresh token is
 *    asked for: when the API answers 401 (the token expired), the page asks to sign in again.
 */
import { type Credential, apiBase, saveCredential } from './api.js';

/** `GET /api/app/config.json` (functions/handlers/web.ts, WebConfigView). */
export interface AppSettings {
  auth_mode: string;
  sign_in: { client_id: string; tenant: string; authorization_endpoint: string; token_endpoint: string; scopes: string[] } | null;
}

type SignInSettings = NonNullable<AppSettings['sign_in']>;

/** The flow in progress, between leaving for the authority and coming back. */
interface Pending {
  state: string;
  nonce: string;
  verifier: string;
  client_id: string;
  redirect_uri: string;
  token_endpoint: string;
  /** Where the user was (a hash route), restored after sign-in. */
  return_hash: string;
}

const PENDING_KEY = 'batch-endpoints.sign-in';

export async function loadAppSettings(): Promise<AppSettings> {
  try {
    const res = await fetch(`${apiBase()}app/config.json`);
    if (res.ok) return (await res.json()) as AppSettings;
  } catch {
    // An older app without the route: no in-page sign-in.
  }
  return { auth_mode: 'unknown', sign_in: null };
}

function base64url(bytes: Uint8Array): string {
  let text = '';
  for (const b of bytes) text += String.fromCharCode(b);
  return btoa(text).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

function random(bytes: number): string {
  return base64url(crypto.getRandomValues(new Uint8Array(bytes)));
}

/** RFC 7636 §4.2: BASE64URL(SHA256(ASCII(code_verifier))). */
async function s256(verifier: string): Promise<string> {
  return base64url(new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(verifier))));
}

/** The page's own address, registered as the app registration's "single-page application" redirect URI. */
export function redirectUri(): string {
  return `${location.origin}${apiBase()}app/`;
}

/** Leaves for the authority's sign-in; the tab comes back to {@link redirectUri} with a code. */
export async function beginSignIn(settings: SignInSettings): Promise<void> {
  const pending: Pending = {
    state: random(16),
    nonce: random(16),
    verifier: random(32),
    client_id: settings.client_id,
    redirect_uri: redirectUri(),
    token_endpoint: settings.token_endpoint,
    return_hash: location.hash || '#/jobs',
  };
  sessionStorage.setItem(PENDING_KEY, JSON.stringify(pending));
  const url = new URL(settings.authorization_endpoint);
  url.search = new URLSearchParams({
    client_id: pending.client_id,
    response_type: 'code',
    redirect_uri: pending.redirect_uri,
    response_mode: 'fragment',
    scope: ['openid', 'profile', ...settings.scopes].join(' '),
    state: pending.state,
    nonce: pending.nonce,
    code_challenge: await s256(pending.verifier),
    code_challenge_method: 'S256',
    prompt: 'select_account',
  }).toString();
  location.assign(url.toString());
}

export type SignInOutcome = { outcome: 'none' } | { outcome: 'signed-in'; credential: Credential } | { outcome: 'refused'; message: string };

function takePending(): Pending | undefined {
  const raw = sessionStorage.getItem(PENDING_KEY);
  sessionStorage.removeItem(PENDING_KEY);
  try {
    const p = raw === null ? undefined : (JSON.parse(raw) as Partial<Pending>);
    const fields = ['state', 'nonce', 'verifier', 'client_id', 'redirect_uri', 'token_endpoint', 'return_hash'] as const;
    return p && fields.every((f) => typeof p[f] === 'string') ? (p as Pending) : undefined;
  } catch {
    return undefined;
  }
}

/** The claims of a JWT's payload (not verified: see the module's comment). */
function claimsOf(jwt: string): Record<string, unknown> {
  const part = jwt.split('.')[1] ?? '';
  const text = atob(part.replace(/-/g, '+').replace(/_/g, '/').padEnd(Math.ceil(part.length / 4) * 4, '='));
  const bytes = Uint8Array.from(text, (c) => c.charCodeAt(0));
  return JSON.parse(new TextDecoder().decode(bytes)) as Record<string, unknown>;
}

/**
 * Completes a sign-in when the address holds the authority's answer (`#code=…&state=…` or
 * `#error=…`); otherwise does nothing. The answer is taken out of the address bar either way.
 */
export async function completeSignIn(): Promise<SignInOutcome> {
  const answer = new URLSearchParams(location.hash.replace(/^#/, ''));
  if (!answer.has('state') || (!answer.has('code') && !answer.has('error'))) return { outcome: 'none' };
  const pending = takePending();
  history.replaceState(null, '', `${location.pathname}${location.search}${pending?.return_hash ?? '#/jobs'}`);
  if (pending === undefined || answer.get('state') !== pending.state) {
    return { outcome: 'refused', message: 'A sign-in answer arrived that this tab did not ask for (its state does not match): it was ignored. Sign in again.' };
  }
  const error = answer.get('error');
  if (error !== null) return { outcome: 'refused', message: `Sign-in failed: ${error}${answer.get('error_description') ? `: ${answer.get('error_description') ?? ''}` : ''}` };
  let body: Record<string, unknown>;
  try {
    const res = await fetch(pending.token_endpoint, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ client_id: pending.client_id, grant_type: 'authorization_code', code: answer.get('code') ?? '', redirect_uri: pending.redirect_uri, code_verifier: pending.verifier }),
      credentials: 'omit',
    });
    body = (await res.json()) as Record<string, unknown>;
    if (!res.ok) {
      const why = typeof body['error_description'] === 'string' ? body['error_description'] : typeof body['error'] === 'string' ? body['error'] : `${res.status}`;
      return { outcome: 'refused', message: `The sign-in was refused when its code was redeemed: ${why}` };
    }
  } catch (err) {
    return { outcome: 'refused', message: `The token endpoint could not be reached: ${err instanceof Error ? err.message : String(err)}` };
  }
  const access = body['access_token'];
  const idToken = body['id_token'];
  if (typeof access !== 'string' || typeof idToken !== 'string') return { outcome: 'refused', message: 'The token endpoint sent no access token or id token.' };
  let id: Record<string, unknown>;
  try {
    id = claimsOf(idToken);
  } catch {
    return { outcome: 'refused', message: 'The id token could not be read.' };
  }
  const aud = id['aud'];
  if (id['nonce'] !== pending.nonce || !(aud === pending.client_id || (Array.isArray(aud) && aud.includes(pending.client_id)))) {
    return { outcome: 'refused', message: 'The id token is not for this sign-in (its nonce or audience does not match): it was refused.' };
  }
  const user = typeof id['preferred_username'] === 'string' ? id['preferred_username'] : typeof id['name'] === 'string' ? id['name'] : undefined;
  const expiresIn = typeof body['expires_in'] === 'number' ? body['expires_in'] : Number(body['expires_in'] ?? 3600);
  const credential: Credential = { kind: 'bearer', value: access, signedIn: true, expiresAt: Date.now() + expiresIn * 1000, ...(user === undefined ? {} : { user }) };
  saveCredential(credential);
  return { outcome: 'signed-in', credential };
}
