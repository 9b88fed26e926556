import { createServer, type Server } from 'node:http';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { SignJWT, exportJWK, generateKeyPair, importJWK, type CryptoKey, type JWK } from 'jose';

/**
 * A small OpenID issuer for local use: it serves, for any tenant id, Microsoft Entra ID's v2.0
 * discovery document (`/{tenant}/v2.0/.well-known/openid-configuration`) and JWKS
 * (`/{tenant}/discovery/v2.0/keys`), and mints access tokens shaped like Entra's (`iss`, `aud`,
 * `tid`, `oid`, `scp` or `roles`, `azp`, RS256 with a `kid`). The keys are real RSA keys generated
 * by jose; tokens are checked by the app exactly as Entra's are. Used by the tests, and by
 * `npm run issuer` / `npm run token` for trying the API locally.
 */

export const LOCAL_TENANT = '11111111-1111-4111-8111-111111111111';
export const LOCAL_AUDIENCE = 'api://batch-endpoints-local';
export const LOCAL_CLIENT_APP = '22222222-2222-4222-8222-222222222222';

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

export interface PersistedIssuer {
  url: string;
  keys: { kid: string; privateJwk: JWK; publicJwk: JWK }[];
}

export class LocalIssuer {
  readonly #keys: SigningKey[];
  #server: Server | undefined;
  #url = '';
  /** JWKS requests served (tests check refetching). */
  jwksRequests = 0;
  metadataRequests = 0;

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

  async start(port = 0, host = '127.0.0.1'): Promise<void> {
    const server = createServer((req, res) => {
      const path = new URL(req.url ?? '/', 'http://local').pathname;
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
