import type { Invoker } from '../jobs/types.js';

/**
 * The API's three permission levels. `manage` implies `invoke`, which implies `read`. Users get
 * them as delegated scopes of the app's API (`scp`), applications and managed identities as app
 * roles (`roles`); both carry the same names (see README, "Authentication and authorization").
 */
export type Permission = 'read' | 'invoke' | 'manage';

export const PERMISSION_NAMES: Record<Permission, string> = {
  read: 'Jobs.Read',
  invoke: 'Jobs.Invoke',
  manage: 'Workspace.Manage',
};

const RANK: Record<Permission, number> = { read: 1, invoke: 2, manage: 3 };

/** Who is calling, once authenticated. */
export interface Principal {
  /** The highest permission the caller holds (`undefined`: none; such a caller gets 403 everywhere). */
  permission: Permission | undefined;
  /** What jobs record as their invoker. */
  invoker: Invoker;
}

/** The highest level named by a token's scopes (space-separated `scp`) and app roles (`roles`). */
export function permissionOf(scp: string | undefined, roles: readonly string[] | undefined): Permission | undefined {
  const names = new Set([...(scp ?? '').split(' ').filter((s) => s !== ''), ...(roles ?? [])]);
  let best: Permission | undefined;
  for (const p of ['read', 'invoke', 'manage'] as const) {
    if (names.has(PERMISSION_NAMES[p])) best = p;
  }
  return best;
}

export function allows(held: Permission | undefined, needed: Permission): boolean {
  return held !== undefined && RANK[held] >= RANK[needed];
}

/**
 * Whether a caller sees a job (and may cancel it, with `invoke`): callers holding `manage` see
 * every job; anyone else only the jobs they invoked themselves (same tenant and object id).
 * Jobs of other callers are answered 404, as if they did not exist.
 */
export function canSeeJob(caller: Principal, jobInvoker: Invoker): boolean {
  if (allows(caller.permission, 'manage')) return true;
  const me = caller.invoker;
  return me.id !== undefined && me.id === jobInvoker.id && (me.tenant ?? '') === (jobInvoker.tenant ?? '');
}
