import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { createHash, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { SignJWT, exportJWK, generateKeyPair, importJWK, type CryptoKey, type JWK } from 'jose';

/**
 * A small OpenID issuer for local use: it serves, for any tenant id, Microsoft Entra ID's v2.0
 * discovery document (`/{tenant}/v2.0/.well-known/openid-configuration`) and JWKS
 * (`/{tenant}/discovery/v2.0/keys`), and mints access tokens shaped like Entra's (`iss`, `aud`,
 * `tid`, `oid`, `scp` or `roles`, `azp`, RS256 with a `kid`). The keys are real RSA keys generated
 * by jose; tokens are checked by the app exactly as Entra's are. Used by the tests, and by
 * `npm run issuer` / `npm run token` for trying the API locally.
 *
 * It also signs a user in to a single-page application as Entra's v2.0 endpoints do, for the web
 * page's sign-in: `GET /{tenant}/oauth2/v2.0/authorize` (authorization code flow with PKCE,
 * RFC 6749 §4.1 and RFC 7636; the client and its redirect URIs must be registered with
 * {@link LocalIssuer.registerSpa}; the configured user is signed in and consents at once) and
 * `POST /{tenant}/oauth2/v2.0/token` (`grant_type=authorization_code`: the code once, within 10
 * minutes, for the same client and redirect URI, with the verifier whose S256 hash is the
 * challenge; only by a cross-origin request, as Entra requires of SPA clients, and answered with
 * CORS headers). Errors are OAuth's JSON (`error`, `error_description`).
 */

export const LOCAL_TENANT = '11111111-1111-4111-8111-111111111111';
export const LOCAL_AUDIENCE = 'api://batch-endpoints-local';
export const LOCAL_CLIENT_APP = '22222222-2222-4222-8222-222222222222';
/** The web page's client id with the local issuer (BATCH_WEB_CLIENT_ID). */
export const LOCAL_WEB_CLIENT = '33333333-3333-4333-8333-333333333333';

/** A local user's object id, from their name: the same name gives the same id, so their jobs stay theirs across tokens. */
export function localUserOid(username: string): string {
  const hex = createHash('sha256').update(username).digest('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-4${hex.slice(13, 16)}-8${hex.slice(17, 20)}-${hex.slice(20, 32)}`;
}

/** Where a running local issuer keeps its keys (private to the user), for `npm run token` to sign with. */
export const ISSUER_FILE = join(process.cwd(), '.data', 'local-issuer.json');

interface SigningKey {
  kid: string;
  privateKey: CryptoKey;
  publicJwk: JWK;
}

export interface TokenOptions {
  tenant?: string;
  audience?: string;
  /** Delegated scopes (a user's token), space-separated in `scp`. */
  scopes?: string[];
  /** App roles (an application's or managed identity's token). */
  roles?: string[];
  oid?: string;
  /** `preferred_username` (users). */
  username?: string;
  /** `azp`: the client application. */
  appId?: string;
  /** Seconds from now: token lifetime (default 3600), not-before (default 0). */
  expiresIn?: number;
  notBefore?: number;
  /** The clock the token's times are relative to (default now). */
  now?: Date;
  /** Override the issuer (a wrong issuer). */
  issuer?: string;
  /** Sign with this key (one not published: an unknown kid) instead of the current one. */
  key?: SigningKey;
  /** Extra claims. */
  claims?: Record<string, unknown>;
}

/** A single-page application registered with the issuer, and the user who signs in to it. */
export interface SpaRegistration {
  clientId: string;
  /** Exact redirect URIs ("single-page application" platform). */
  redirectUris: string[];
  /** The user signed in without a prompt (they consent to whatever is asked). */
  user: { username: string; oid: string; name?: string };
  /** Scopes granted for `{resource}/.default` (the user's and admin's consents); named scopes are granted as asked. */
  consented: string[];
}

/** Authorization codes are valid this long (Entra: 10 minutes). */
export const CODE_LIFETIME_MS = 10 * 60 * 1000;

interface IssuedCode {
  clientId: string;
  redirectUri: string;
  challenge: string;
  tenant: string;
  scopes: string[];
  nonce: string | undefined;
  spa: SpaRegistration;
  expiresAt: number;
}

/** An OAuth error answer (RFC 6749 §5.2). */
class OAuthError extends Error {
  constructor(
    readonly error: string,
    description: string,
    readonly status = 400,
  ) {
    super(description);
  }
}

export interface PersistedIssuer {
  url: string;
  keys: { kid: string; privateJwk: JWK; publicJwk: JWK }[];
}

export class LocalIssuer {
  readonly #keys: SigningKey[];
  #server: Server | undefined;
  #url = '';
  readonly #spas = new Map<string, SpaRegistration>();
  readonly #codes = new Map<string, IssuedCode>();
  /** JWKS requests served (tests check refetching). */
  jwksRequests = 0;
  metadataRequests = 0;
  /** Token requests (authorization_code) answered, and those refused, with their `error`. */
  readonly tokenRequests: { error?: string }[] = [];
  /** The issuer's clock (codes' expiry, tokens' times); tests move it. */
  clock: () => Date = () => new Date();

  private constructor(keys: SigningKey[]) {
    this.#keys = keys;
  }

  static async create(): Promise<LocalIssuer> {
    return new LocalIssuer([await newKey()]);
  }

  /** An issuer with keys saved by {@link toJSON} (the token script signs with them). */
  static async fromJSON(saved: PersistedIssuer): Promise<LocalIssuer> {
    const keys = await Promise.all(
      saved.keys.map(async (k) => ({ kid: k.kid, privateKey: (await importJWK(k.privateJwk, 'RS256')) as CryptoKey, publicJwk: k.publicJwk })),
    );
    const issuer = new LocalIssuer(keys);
    issuer.#url = saved.url;
    return issuer;
  }

  /** Saves the keys and URL to {@link ISSUER_FILE} (mode 600): `npm run token` then mints tokens this issuer's app accepts. */
  async save(file = ISSUER_FILE): Promise<void> {
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, JSON.stringify(await this.toJSON(), null, 2), { mode: 0o600 });
  }

  async toJSON(): Promise<PersistedIssuer> {
    return { url: this.#url, keys: await Promise.all(this.#keys.map(async (k) => ({ kid: k.kid, privateJwk: await exportJWK(k.privateKey), publicJwk: k.publicJwk }))) };
  }

  get url(): string {
    return this.#url;
  }

  /** BATCH_AUTH_METADATA_URL for the app. */
  get metadataUrl(): string {
    return `${this.#url}/{tenant}/v2.0/.well-known/openid-configuration`;
  }

  issuerOf(tenant: string): string {
    return `${this.#url}/${tenant}/v2.0`;
  }

  /** A key that is not published (tokens signed with it name an unknown kid). */
  static unpublishedKey(): Promise<SigningKey> {
    return newKey();
  }

  /** Publishes a new signing key (key rollover); tokens are then signed with it. */
  async rotate(): Promise<void> {
    this.#keys.push(await newKey());
  }

  /** Registers (or replaces) a single-page application for `/authorize` and `/token`. */
  registerSpa(spa: SpaRegistration): void {
    this.#spas.set(spa.clientId, spa);
  }

  async start(port = 0, host = '127.0.0.1'): Promise<void> {
    const server = createServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://local');
      const path = url.pathname;
      const oauth = /^\/([^/]+)\/oauth2\/v2\.0\/(authorize|token)$/.exec(path);
      if (oauth?.[1] && oauth[2] === 'authorize' && req.method === 'GET') return this.#authorize(oauth[1], url.searchParams, res);
      if (oauth?.[1] && oauth[2] === 'token') return void this.#token(oauth[1], req, res);
      const discovery = /^\/([^/]+)\/v2\.0\/\.well-known\/openid-configuration$/.exec(path);
      const keys = /^\/([^/]+)\/discovery\/v2\.0\/keys$/.exec(path);
      const send = (status: number, body: unknown): void => {
        res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
      };
      if (req.method !== 'GET') return send(405, { error: 'method not allowed' });
      if (discovery?.[1]) {
        this.metadataRequests += 1;
        const tenant = discovery[1];
        return send(200, {
          issuer: this.issuerOf(tenant),
          jwks_uri: `${this.#url}/${tenant}/discovery/v2.0/keys`,
          authorization_endpoint: `${this.#url}/${tenant}/oauth2/v2.0/authorize`,
          token_endpoint: `${this.#url}/${tenant}/oauth2/v2.0/token`,
          id_token_signing_alg_values_supported: ['RS256'],
          response_types_supported: ['code', 'id_token', 'code id_token', 'id_token token'],
          response_modes_supported: ['query', 'fragment'],
          code_challenge_methods_supported: ['S256'],
          subject_types_supported: ['pairwise'],
        });
      }
      if (keys?.[1]) {
        this.jwksRequests += 1;
        return send(200, { keys: this.#keys.map((k) => k.publicJwk) });
      }
      return send(404, { error: 'not found' });
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => resolve());
    });
    this.#server = server;
    this.#url = `http://${host}:${(server.address() as AddressInfo).port}`;
  }

  async stop(): Promise<void> {
    const server = this.#server;
    this.#server = undefined;
    if (!server) return;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    // Kept-alive connections would hold the port (and answer) until they idle out: an outage now.
    server.closeAllConnections();
    await closed;
  }

  /**
   * `/authorize`: checks the client and redirect URI (an unknown one is answered here, never
   * redirected to), then signs the registered user in and redirects back with `code` and `state`
   * (or `error`), in the query or, with `response_mode=fragment`, the fragment.
   */
  #authorize(tenant: string, q: URLSearchParams, res: ServerResponse): void {
    const page = (status: number, text: string): void => {
      res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8' }).end(text);
    };
    const spa = this.#spas.get(q.get('client_id') ?? '');
    if (!spa) return page(400, `AADSTS700016: no application '${q.get('client_id') ?? ''}' is registered with this issuer.`);
    const redirectUri = q.get('redirect_uri') ?? '';
    if (!spa.redirectUris.includes(redirectUri)) return page(400, `AADSTS50011: the redirect URI '${redirectUri}' is not registered for application '${spa.clientId}'.`);
    const fragment = q.get('response_mode') === 'fragment';
    const back = (params: Record<string, string>): void => {
      const state = q.get('state');
      const all = new URLSearchParams({ ...params, ...(state === null ? {} : { state }) }).toString();
      res.writeHead(302, { location: fragment ? `${redirectUri}#${all}` : `${redirectUri}${redirectUri.includes('?') ? '&' : '?'}${all}` }).end();
    };
    if (q.get('response_type') !== 'code') return back({ error: 'unsupported_response_type', error_description: 'only response_type=code is supported' });
    const challenge = q.get('code_challenge') ?? '';
    // Entra requires PKCE of SPA clients; only S256 is accepted here (plain proves nothing).
    if (q.get('code_challenge_method') !== 'S256' || !/^[A-Za-z0-9_-]{43}$/.test(challenge)) {
      return back({ error: 'invalid_request', error_description: 'AADSTS9002325: PKCE with code_challenge_method=S256 and a 43-character code_challenge is required' });
    }
    const scopes = (q.get('scope') ?? '').split(' ').filter((s) => s !== '');
    if (!scopes.some((s) => s.includes('/'))) return back({ error: 'invalid_scope', error_description: "ask for a scope of the API ('{resource}/Jobs.Read' or '{resource}/.default')" });
    const code = randomBytes(32).toString('base64url');
    this.#codes.set(code, { clientId: spa.clientId, redirectUri, challenge, tenant, scopes, nonce: q.get('nonce') ?? undefined, spa, expiresAt: this.clock().getTime() + CODE_LIFETIME_MS });
    back({ code });
  }

  /** `/token`: redeems a code (once) for an access token and an id token. */
  async #token(tenant: string, req: IncomingMessage, res: ServerResponse): Promise<void> {
    const origin = req.headers.origin;
    const cors: Record<string, string> = origin ? { 'access-control-allow-origin': origin, vary: 'Origin' } : {};
    if (req.method === 'OPTIONS') {
      res.writeHead(204, { ...cors, 'access-control-allow-methods': 'POST', 'access-control-allow-headers': 'content-type', 'access-control-max-age': '600' }).end();
      return;
    }
    const send = (status: number, body: unknown): void => {
      res.writeHead(status, { ...cors, 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' }).end(JSON.stringify(body));
    };
    try {
      if (req.method !== 'POST') throw new OAuthError('invalid_request', 'the token endpoint takes POST', 405);
      const chunks: Buffer[] = [];
      for await (const chunk of req) chunks.push(chunk as Buffer);
      const form = new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
      const body = await this.#redeem(tenant, form, origin);
      this.tokenRequests.push({});
      send(200, body);
    } catch (err) {
      const e = err instanceof OAuthError ? err : new OAuthError('server_error', String(err), 500);
      this.tokenRequests.push({ error: e.error });
      send(e.status, { error: e.error, error_description: e.message });
    }
  }

  async #redeem(tenant: string, form: URLSearchParams, origin: string | undefined): Promise<Record<string, unknown>> {
    if (form.get('grant_type') !== 'authorization_code') throw new OAuthError('unsupported_grant_type', 'only grant_type=authorization_code is supported');
    const code = form.get('code') ?? '';
    const issued = this.#codes.get(code);
    // A code is used once, whatever the outcome: a failed redemption (a wrong verifier) burns it too.
    this.#codes.delete(code);
    if (!issued) throw new OAuthError('invalid_grant', 'AADSTS70008: the code is unknown, or was already redeemed');
    if (this.clock().getTime() > issued.expiresAt) throw new OAuthError('invalid_grant', 'AADSTS70008: the code has expired');
    if (issued.tenant !== tenant) throw new OAuthError('invalid_grant', 'the code was issued by another tenant');
    if (form.get('client_id') !== issued.clientId) throw new OAuthError('invalid_grant', 'AADSTS700005: the code was issued to another client');
    if (form.get('redirect_uri') !== issued.redirectUri) throw new OAuthError('invalid_grant', 'AADSTS50148/50011: redirect_uri differs from the one the code was issued for');
    if (!origin) throw new OAuthError('invalid_request', "AADSTS9002327: tokens issued for the 'Single-Page Application' client-type may only be redeemed via cross-origin requests");
    const verifier = form.get('code_verifier') ?? '';
    if (!/^[A-Za-z0-9._~-]{43,128}$/.test(verifier)) throw new OAuthError('invalid_grant', 'AADSTS501481: the code_verifier is missing or malformed (RFC 7636: 43 to 128 unreserved characters)');
    const hashed = Buffer.from(createHash('sha256').update(verifier, 'ascii').digest('base64url'));
    const expected = Buffer.from(issued.challenge);
    if (hashed.length !== expected.length || !timingSafeEqual(hashed, expected)) throw new OAuthError('invalid_grant', 'AADSTS501481: the code_verifier does not match the code_challenge');
    const apiScopes = issued.scopes.filter((s) => s.includes('/'));
    const resource = (apiScopes[0] ?? '').substring(0, (apiScopes[0] ?? '').lastIndexOf('/'));
    const granted = apiScopes.flatMap((s) => (s.endsWith('/.default') ? issued.spa.consented : [s.substring(s.lastIndexOf('/') + 1)]));
    const { user } = issued.spa;
    const now = this.clock();
    const access = await this.token({ tenant, audience: resource, scopes: [...new Set(granted)], oid: user.oid, username: user.username, appId: issued.clientId, now });
    const body: Record<string, unknown> = { token_type: 'Bearer', scope: [...new Set(granted)].map((s) => `${resource}/${s}`).join(' '), expires_in: 3600, ext_expires_in: 3600, access_token: access };
    if (issued.scopes.includes('openid')) {
      body['id_token'] = await this.token({
        tenant,
        audience: issued.clientId,
        oid: user.oid,
        now,
        claims: { preferred_username: user.username, name: user.name ?? user.username, ...(issued.nonce === undefined ? {} : { nonce: issued.nonce }) },
      });
    }
    return body;
  }

  /** An access token for the app's API, as Entra would issue it. */
  async token(options: TokenOptions = {}): Promise<string> {
    const tenant = options.tenant ?? LOCAL_TENANT;
    const key = options.key ?? this.#keys[this.#keys.length - 1];
    if (!key) throw new Error('the issuer has no key');
    const now = Math.floor((options.now ?? new Date()).getTime() / 1000);
    const user = options.scopes !== undefined;
    const claims: Record<string, unknown> = {
      tid: tenant,
      oid: options.oid ?? randomUUID(),
      azp: options.appId ?? LOCAL_CLIENT_APP,
      ver: '2.0',
      ...(user ? { scp: options.scopes?.join(' '), preferred_username: options.username ?? 'dev@example.test', name: options.username ?? 'Local developer' } : {}),
      ...(options.roles ? { roles: options.roles } : {}),
      ...options.claims,
    };
    return new SignJWT(claims)
      .setProtectedHeader({ alg: 'RS256', typ: 'JWT', kid: key.kid })
      .setIssuer(options.issuer ?? this.issuerOf(tenant))
      .setAudience(options.audience ?? LOCAL_AUDIENCE)
      .setSubject(String(claims['oid']))
      .setIssuedAt(now)
      .setNotBefore(now + (options.notBefore ?? 0))
      .setExpirationTime(now + (options.expiresIn ?? 3600))
      .sign(key.privateKey);
  }
}

async function newKey(): Promise<SigningKey> {
  const { privateKey, publicKey } = await generateKeyPair('RS256', { extractable: true });
  const kid = randomUUID();
  return { kid, privateKey, publicJwk: { ...(await exportJWK(publicKey)), kid, alg: 'RS256', use: 'sig' } };
}
