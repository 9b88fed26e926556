import type { HttpRequest } from '@azure/functions';
import type { Permission, Principal } from '../../shared/auth/permissions.js';
import { canSeeJob } from '../../shared/auth/permissions.js';
import { notFound } from '../../shared/errors.js';
import type { Job } from '../../shared/jobs/types.js';
import { services } from '../../shared/services.js';
import type { Handler } from './http.js';

const callers = new WeakMap<HttpRequest, Principal>();

/** Wraps a handler: authenticates the caller (401) and checks the permission the route needs (403). */
export function requires(permission: Permission, handler: Handler): Handler {
  return async (request, context) => {
    const { auth } = services();
    const caller = await auth.authenticate(request.headers, request.query.get('code') !== null);
    auth.authorize(caller, permission);
    callers.set(request, caller);
    return handler(request, context);
  };
}

/** The authenticated caller of a request that went through {@link requires}. */
export function callerOf(request: HttpRequest): Principal {
  const caller = callers.get(request);
  if (!caller) throw new Error('callerOf: the route does not authenticate (wrap it with requires())');
  return caller;
}

/** The job, if the caller may see it; others' jobs are not found (their existence is not revealed). */
export function visibleJob(request: HttpRequest, job: Job): Job {
  if (!canSeeJob(callerOf(request), job.spec.invoked_by)) throw notFound('Job', job.spec.id);
  return job;
}
