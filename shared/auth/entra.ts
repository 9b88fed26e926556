import { createLocalJWKSet, createRemoteJWKSet, decodeJwt, decodeProtectedHeader, errors as joseErrors, jwtVerify, type JWTPayload, type JWTVerifyGetKey } from 'jose';
import { BatchError } from '../errors.js';
import type { AuthConfig } from '../config.js';
import { permissionOf, type Principal } from './permissions.js';

/**
 * Validates Microsoft Entra ID access tokens for the app's own API (v2.0 tokens): the tenant
 * (`tid`) must be allowed; the issuer must be that tenant's, as its OpenID metadata names it; the
 * audience the app's application ID URI or client id; the signature one of the tenant's keys
 * (JWKS from the metadata's `jwks_uri`, cached, fetched again when a token names an unknown
 * `kid`, at most once per cooldown); `exp`/`nbf` within a small clock skew. Only RS256 is
 * accepted: `alg: none`, HMAC (a public key used as a shared secret) and anything else are refused.
 *
 * When the tenant's metadata or keys cannot be read (the identity provider, or the way to it, is
 * down), a token is not thereby invalid: that is `auth_unavailable` (503 with Retry-After), not a
 * 401. Keys fetched before stay in use while a refresh fails (the "last known good" keys, as
 * Microsoft.IdentityModel's ConfigurationManager keeps them), so an outage only refuses tokens
 * signed with a key the app has never seen, and tenants it has not yet discovered.
 */

export const ACCEPTED_ALGORITHMS = ['RS256'];

/** `Retry-After` (seconds) of `auth_unavailable`: metadata and keys are fetched again on the next request. */
export const AUTH_RETRY_AFTER_SECONDS = 10;

export interface EntraValidatorOptions {
  tenants: readonly string[];
  audiences: readonly string[];
  /** OpenID metadata URL; `{tenant}` is replaced by the tenant id. */
  metadataUrl: string;
  clockSkewSeconds: number;
  /** The time tokens are checked against. */
  clock?: () => Date;
  /** Milliseconds before an unknown `kid` may fetch the JWKS again (jose's cooldown; default 30 s). */
  jwksCooldownMs?: number;
  /** Milliseconds a fetched JWKS is used without refetching (default 10 minutes). */
  jwksMaxAgeMs?: number;
}

interface TenantKeys {
  issuer: string;
  jwks: JWTVerifyGetKey;
}

/** 503: the identity provider's metadata or keys could not be read (the token was not judged). */
export function authUnavailable(tenant: string, what: string, cause: unknown): BatchError {
  return new BatchError('auth_unavailable', `The ${what} of tenant '${tenant}' could not be read, so the token could not be checked; retry later.`, {
    cause,
    details: { retry_after_seconds: AUTH_RETRY_AFTER_SECONDS },
  });
}

/**
 * Whether a key lookup failed because the keys could not be fetched (network, timeout, a non-200
 * or non-JSON answer: jose's generic error), rather than because of the token (no matching key,
 * an unsupported key or algorithm: jose's specific errors).
 */
function keysUnreachable(err: unknown): boolean {
  if (!(err instanceof joseErrors.JOSEError)) return true;
  return err instanceof joseErrors.JWKSTimeout || err instanceof joseErrors.JWKSInvalid || err.code === joseErrors.JOSEError.code;
}

/** An RFC 6750 `invalid_token` failure (401). */
export function invalidToken(realm: string, description: string): BatchError {
  return new BatchError('unauthenticated', `The bearer token is not valid: ${description}`, {
    challenge: `Bearer realm="${realm}", error="invalid_token", error_description="${description.replace(/["\\]/g, "'")}"`,
  });
}

export class EntraValidator {
  readonly #options: EntraValidatorOptions;
  readonly #realm: string;
  readonly #tenants = new Map<string, Promise<TenantKeys>>();

  constructor(options: EntraValidatorOptions, realm: string) {
    this.#options = options;
    this.#realm = realm;
  }

  static fromConfig(auth: AuthConfig, clock?: () => Date): EntraValidator {
    return new EntraValidator(
      { tenants: auth.tenants, audiences: auth.audiences, metadataUrl: auth.metadataUrl, clockSkewSeconds: auth.clockSkewSeconds, ...(clock ? { clock } : {}) },
      auth.realm,
    );
  }

  /** The caller a token names; throws `unauthenticated` (with its challenge) for any invalid token. */
  async validate(token: string): Promise<Principal> {
    let header: ReturnType<typeof decodeProtectedHeader>;
    let unverified: JWTPayload;
    try {
      header = decodeProtectedHeader(token);
      unverified = decodeJwt(token);
    } catch {
      throw invalidToken(this.#realm, 'malformed token');
    }
    if (typeof header.alg !== 'string' || !ACCEPTED_ALGORITHMS.includes(header.alg)) {
      throw invalidToken(this.#realm, `algorithm '${String(header.alg)}' is not accepted (${ACCEPTED_ALGORITHMS.join(', ')})`);
    }
    const tid = typeof unverified['tid'] === 'string' ? unverified['tid'].toLowerCase() : undefined;
    if (tid === undefined || !this.#options.tenants.includes(tid)) throw invalidToken(this.#realm, 'the token is not from an allowed tenant');
    const keys = await this.#keysOf(tid);
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, keys.jwks, {
        issuer: keys.issuer,
        audience: [...this.#options.audiences],
        algorithms: ACCEPTED_ALGORITHMS,
        clockTolerance: this.#options.clockSkewSeconds,
        currentDate: (this.#options.clock ?? (() => new Date()))(),
        requiredClaims: ['exp', 'tid', 'oid'],
      }));
    } catch (err) {
      if (err instanceof BatchError) throw err;
      throw invalidToken(this.#realm, describe(err));
    }
    return principalOf(payload);
  }

  /** The tenant's issuer and keys, from its OpenID metadata (fetched once; a failed fetch is tried again next time). */
  #keysOf(tenant: string): Promise<TenantKeys> {
    let found = this.#tenants.get(tenant);
    if (!found) {
      found = this.#discover(tenant);
      this.#tenants.set(tenant, found);
      found.catch(() => this.#tenants.delete(tenant));
    }
    return found;
  }

  async #discover(tenant: string): Promise<TenantKeys> {
    const url = this.#options.metadataUrl.replace(/\{tenant\}/g, encodeURIComponent(tenant));
    let metadata: { issuer?: unknown; jwks_uri?: unknown };
    try {
      const res = await fetch(url, { redirect: 'error', signal: AbortSignal.timeout(10_000) });
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      metadata = (await res.json()) as typeof metadata;
    } catch (err) {
      throw authUnavailable(tenant, 'OpenID metadata', err);
    }
    if (typeof metadata.issuer !== 'string' || typeof metadata.jwks_uri !== 'string') {
      throw new BatchError('configuration', `The OpenID metadata of tenant '${tenant}' names no issuer or jwks_uri.`);
    }
    const jwksUri = new URL(metadata.jwks_uri);
    const metadataOrigin = new URL(url).origin;
    if (jwksUri.protocol !== 'https:' && jwksUri.origin !== metadataOrigin) {
      throw new BatchError('configuration', `The OpenID metadata of tenant '${tenant}' names a jwks_uri that is neither https nor on the metadata's own host.`);
    }
    const remote = createRemoteJWKSet(jwksUri, {
      cooldownDuration: this.#options.jwksCooldownMs ?? 30_000,
      cacheMaxAge: this.#options.jwksMaxAgeMs ?? 600_000,
      timeoutDuration: 10_000,
    });
    const jwks: JWTVerifyGetKey = async (header, token) => {
      try {
        return await remote(header, token);
      } catch (err) {
        if (!keysUnreachable(err)) throw err;
        // A refresh failed: the keys fetched last are still the tenant's keys as far as we know.
        const lastKnown = remote.jwks();
        if (lastKnown) {
          try {
            return await createLocalJWKSet(lastKnown)(header, token);
          } catch (local) {
            // An unknown kid may be a new key we cannot fetch now: that is not the token's fault.
            if (!(local instanceof joseErrors.JWKSNoMatchingKey)) throw local;
          }
        }
        throw authUnavailable(tenant, 'signing keys (JWKS)', err);
      }
    };
    return {
      // Multi-tenant metadata (common, organizations) names `{tenantid}` in its issuer.
      issuer: metadata.issuer.replace('{tenantid}', tenant),
      jwks,
    };
  }
}

function describe(err: unknown): string {
  if (err instanceof joseErrors.JWTExpired) return 'the token has expired';
  if (err instanceof joseErrors.JWTClaimValidationFailed) {
    if (err.claim === 'nbf') return 'the token is not valid yet';
    if (err.claim === 'aud') return 'the token is not for this API (audience)';
    if (err.claim === 'iss') return "the token's issuer is not its tenant's";
    return `claim '${err.claim}' is not valid (${err.reason})`;
  }
  if (err instanceof joseErrors.JWKSNoMatchingKey) return "the token is signed with a key that is not one of its tenant's";
  if (err instanceof joseErrors.JWSSignatureVerificationFailed) return 'the signature is not valid';
  if (err instanceof joseErrors.JOSEAlgNotAllowed) return 'the algorithm is not accepted';
  if (err instanceof joseErrors.JOSEError) return 'the token could not be verified';
  return 'the token could not be verified';
}

function stringClaim(payload: JWTPayload, name: string): string | undefined {
  const v = payload[name];
  return typeof v === 'string' && v !== '' ? v : undefined;
}

/** The caller a verified token names: users carry scopes (`scp`), applications app roles (`roles`). */
export function principalOf(payload: JWTPayload): Principal {
  const scp = stringClaim(payload, 'scp');
  const roles = Array.isArray(payload['roles']) ? payload['roles'].filter((r): r is string => typeof r === 'string') : [];
  const kind = scp !== undefined ? 'user' : 'app';
  const appId = stringClaim(payload, 'azp') ?? stringClaim(payload, 'appid');
  const oid = stringClaim(payload, 'oid');
  const name = kind === 'user' ? (stringClaim(payload, 'preferred_username') ?? stringClaim(payload, 'name') ?? oid) : (appId ?? oid);
  return {
    // Delegated tokens act for the user: only their scopes count (a user's app roles arrive in
    // `roles` too, and still grant the same names).
    permission: permissionOf(scp, roles),
    invoker: { name: name ?? 'unknown', id: oid, tenant: stringClaim(payload, 'tid')?.toLowerCase(), app_id: appId, kind, via: 'entra' },
  };
}
