import { BatchError } from '../errors.js';
import type { AuthConfig } from '../config.js';
import { EntraValidator } from './entra.js';
import { PERMISSION_NAMES, allows, permissionOf, type Permission, type Principal } from './permissions.js';

/** The headers of a request (the Fetch API's `Headers`, or anything that reads one by name). */
export interface HeaderReader {
  get(name: string): string | null;
}

/**
 * Authenticates a request according to BATCH_AUTH_MODE:
 * - `function_key`: the Functions host has already checked the key; the caller may do anything.
 * - `none`: anyone may do anything (local use only).
 * - `entra`: `Authorization: Bearer <token>`, validated by {@link EntraValidator}.
 * - `easy_auth`: App Service authentication has validated the caller and sends
 *   `x-ms-client-principal` (base64 JSON of the claims). Only App Service can set that header in
 *   front of the app, so it is read in this mode only; in every other mode it is ignored.
 */
export class Authenticator {
  readonly #config: AuthConfig;
  readonly #validator: EntraValidator | undefined;

  constructor(config: AuthConfig, validator?: EntraValidator) {
    this.#config = config;
    this.#validator = config.mode === 'entra' ? (validator ?? EntraValidator.fromConfig(config)) : undefined;
  }

  get mode(): AuthConfig['mode'] {
    return this.#config.mode;
  }

  async authenticate(headers: HeaderReader, keyInQuery: boolean): Promise<Principal> {
    switch (this.#config.mode) {
      case 'function_key':
        return { permission: 'manage', invoker: { name: 'function key', via: 'function_key' } };
      case 'none':
        // Keys are not checked in this mode: the label only says what the caller sent.
        return { permission: 'manage', invoker: keyInQuery || headers.get('x-functions-key') ? { name: 'function key', via: 'function_key' } : { name: 'anonymous', via: 'anonymous' } };
      case 'entra':
        return this.#bearer(headers);
      case 'easy_auth':
        return this.#easyAuth(headers);
    }
  }

  /** Throws 403 (naming the permission, and the field of the request that needs it) unless the caller holds `needed`. */
  authorize(caller: Principal, needed: Permission, what?: { field: string; reason: string }): void {
    if (allows(caller.permission, needed)) return;
    const name = PERMISSION_NAMES[needed];
    throw new BatchError('forbidden', `${what === undefined ? 'This operation' : `${what.field}: ${what.reason}`} needs the permission '${name}' (a delegated scope for users, an app role for applications and managed identities)${caller.permission ? `; the caller holds '${PERMISSION_NAMES[caller.permission]}'` : '; the caller holds none of the API\'s permissions'}.`, {
      details: { required_permission: name, permission_level: needed, ...(what === undefined ? {} : { field: what.field }) },
      challenge: this.#config.mode === 'entra' ? `Bearer realm="${this.#config.realm}", error="insufficient_scope", scope="${name}"` : undefined,
    });
  }

  async #bearer(headers: HeaderReader): Promise<Principal> {
    const realm = this.#config.realm;
    const authorization = headers.get('authorization');
    if (authorization === null || authorization.trim() === '') {
      throw new BatchError('unauthenticated', 'This API needs a Microsoft Entra ID access token: Authorization: Bearer <token>.', { challenge: `Bearer realm="${realm}"` });
    }
    const match = /^Bearer +([A-Za-z0-9\-._~+/]+=*)$/i.exec(authorization.trim());
    if (!match?.[1]) {
      throw new BatchError('unauthenticated', 'The Authorization header must be "Bearer <token>".', {
        challenge: `Bearer realm="${realm}", error="invalid_request", error_description="the Authorization header must be Bearer <token>"`,
      });
    }
    if (!this.#validator) throw new BatchError('configuration', 'No token validator is configured.');
    return this.#validator.validate(match[1]);
  }

  #easyAuth(headers: HeaderReader): Principal {
    const encoded = headers.get('x-ms-client-principal');
    if (encoded === null || encoded === '') {
      throw new BatchError('unauthenticated', 'No signed-in caller: App Service authentication sent no x-ms-client-principal (is unauthenticated access allowed?).', { challenge: `Bearer realm="${this.#config.realm}"` });
    }
    let claims: { typ: string; val: string }[];
    try {
      const parsed = JSON.parse(Buffer.from(encoded, 'base64').toString('utf8')) as { claims?: unknown };
      const isClaim = (c: unknown): c is { typ: string; val: string } =>
        typeof c === 'object' && c !== null && typeof (c as { typ?: unknown }).typ === 'string' && typeof (c as { val?: unknown }).val === 'string';
      claims = Array.isArray(parsed.claims) ? (parsed.claims as unknown[]).filter(isClaim) : [];
    } catch {
      throw new BatchError('unauthenticated', 'x-ms-client-principal is not base64 JSON.', { challenge: `Bearer realm="${this.#config.realm}", error="invalid_token"` });
    }
    const one = (...types: string[]): string | undefined => claims.find((c) => types.includes(c.typ))?.val;
    const all = (...types: string[]): string[] => claims.filter((c) => types.includes(c.typ)).map((c) => c.val);
    const tid = one('http://schemas.microsoft.com/identity/claims/tenantid', 'tid')?.toLowerCase();
    if (this.#config.tenants.length > 0 && (tid === undefined || !this.#config.tenants.includes(tid))) {
      throw new BatchError('unauthenticated', 'The signed-in caller is not from an allowed tenant.', { challenge: `Bearer realm="${this.#config.realm}", error="invalid_token", error_description="tenant not allowed"` });
    }
    const scp = one('http://schemas.microsoft.com/identity/claims/scope', 'scp');
    const roles = all('roles', 'http://schemas.microsoft.com/ws/2008/06/identity/claims/role');
    const oid = one('http://schemas.microsoft.com/identity/claims/objectidentifier', 'oid') ?? headers.get('x-ms-client-principal-id') ?? undefined;
    const appId = one('azp', 'appid');
    const kind = scp !== undefined ? 'user' : 'app';
    const name = headers.get('x-ms-client-principal-name') ?? one('preferred_username', 'name') ?? (kind === 'app' ? appId : undefined) ?? oid ?? 'unknown';
    return { permission: permissionOf(scp, roles), invoker: { name, id: oid, tenant: tid, app_id: appId, kind, via: 'easy_auth' } };
  }
}
