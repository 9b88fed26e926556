import { redactSecrets } from './redact.js';

/**
 * The app's one error hierarchy. Every error has a string `code`, an optional `cause`, and a kind:
 * `user` (the caller sent something wrong: 4xx) or `system` (something failed on our side: 5xx).
 * {@link toProblem} is the single place that maps codes to HTTP status and RFC 9457 problem details.
 * `retryable` tells orchestrations whether running the same work again can succeed.
 */

export type ErrorKind = 'user' | 'system';

export type ErrorCode =
  | 'validation_failed'
  | 'unauthenticated'
  | 'forbidden'
  | 'invalid_json'
  | 'not_found'
  | 'conflict'
  | 'precondition_failed'
  | 'unprocessable'
  | 'no_default_deployment'
  | 'unsupported'
  | 'input_not_found'
  | 'input_changed'
  | 'source_changed'
  | 'nothing_to_rerun'
  | 'deployment_changed'
  | 'output_exists'
  | 'outputs_replaced'
  | 'path_outside_datastores'
  | 'scoring_failed'
  | 'scoring_timeout'
  | 'scoring_setup_failed'
  | 'storage_failed'
  | 'auth_unavailable'
  | 'event_publish_failed'
  | 'configuration'
  | 'payload_too_large'
  | 'limit_exceeded'
  | 'rate_limited'
  | 'internal';

export interface FieldIssue {
  /** JSON-pointer-like path of the offending field, e.g. `settings.mini_batch_size`. */
  field: string;
  message: string;
}

export interface BatchErrorOptions {
  cause?: unknown;
  /** Override the kind implied by the code. */
  kind?: ErrorKind;
  retryable?: boolean;
  issues?: FieldIssue[];
  /** Extra facts for the problem body (the resource that was missing, ...). */
  details?: Record<string, unknown>;
  /** For `unauthenticated` and `forbidden`: the `WWW-Authenticate` challenge sent with the problem (RFC 6750). */
  challenge?: string;
}

interface CodeInfo {
  status: number;
  title: string;
  kind: ErrorKind;
  retryable: boolean;
}

const CODES: Record<ErrorCode, CodeInfo> = {
  validation_failed: { status: 400, title: 'The request is not valid', kind: 'user', retryable: false },
  unauthenticated: { status: 401, title: 'Authentication is required', kind: 'user', retryable: false },
  forbidden: { status: 403, title: 'Permission denied', kind: 'user', retryable: false },
  invalid_json: { status: 400, title: 'The request body is not valid JSON', kind: 'user', retryable: false },
  not_found: { status: 404, title: 'Not found', kind: 'user', retryable: false },
  conflict: { status: 409, title: 'Conflict', kind: 'user', retryable: false },
  precondition_failed: { status: 412, title: 'Precondition failed', kind: 'user', retryable: false },
  unprocessable: { status: 422, title: 'The request cannot be processed', kind: 'user', retryable: false },
  no_default_deployment: { status: 400, title: 'No deployment to route to', kind: 'user', retryable: false },
  unsupported: { status: 400, title: 'Not supported', kind: 'user', retryable: false },
  input_not_found: { status: 400, title: 'Input data not found', kind: 'user', retryable: false },
  input_changed: { status: 409, title: 'The input changed', kind: 'user', retryable: false },
  source_changed: { status: 409, title: 'What was to be reused changed', kind: 'user', retryable: false },
  nothing_to_rerun: { status: 409, title: 'Nothing is left to run', kind: 'user', retryable: false },
  deployment_changed: { status: 409, title: 'The deployment changed', kind: 'user', retryable: false },
  output_exists: { status: 409, title: 'The output already exists', kind: 'user', retryable: false },
  // A finished job's output folder was emptied and claimed by another job: what is there now is not this job's.
  outputs_replaced: { status: 410, title: "The job's outputs are gone", kind: 'user', retryable: false },
  path_outside_datastores: { status: 400, title: 'The path is not on a registered datastore', kind: 'user', retryable: false },
  scoring_failed: { status: 500, title: 'Scoring failed', kind: 'user', retryable: true },
  scoring_timeout: { status: 500, title: 'Scoring timed out', kind: 'user', retryable: true },
  scoring_setup_failed: { status: 500, title: 'The scorer could not be set up', kind: 'user', retryable: false },
  storage_failed: { status: 503, title: 'Storage is unavailable', kind: 'system', retryable: true },
  // The identity provider's OpenID metadata or keys could not be read: the caller's token may be
  // fine, so this is neither a 401 nor the caller's mistake; it answers 503 with Retry-After.
  auth_unavailable: { status: 503, title: 'Authentication is unavailable', kind: 'system', retryable: true },
  event_publish_failed: { status: 502, title: 'The event topic did not accept the events', kind: 'system', retryable: true },
  configuration: { status: 500, title: 'The app is misconfigured', kind: 'system', retryable: false },
  payload_too_large: { status: 413, title: 'The request body is too large', kind: 'user', retryable: false },
  limit_exceeded: { status: 400, title: 'A limit is exceeded', kind: 'user', retryable: false },
  rate_limited: { status: 429, title: 'Too many requests', kind: 'user', retryable: false },
  internal: { status: 500, title: 'Internal error', kind: 'system', retryable: true },
};

export class BatchError extends Error {
  readonly code: ErrorCode;
  readonly kind: ErrorKind;
  readonly retryable: boolean;
  readonly issues: FieldIssue[];
  readonly details: Record<string, unknown>;
  readonly challenge: string | undefined;

  constructor(code: ErrorCode, message: string, options: BatchErrorOptions = {}) {
    super(redactSecrets(message), options.cause === undefined ? undefined : { cause: options.cause });
    const info = CODES[code];
    this.name = 'BatchError';
    this.code = code;
    this.kind = options.kind ?? info.kind;
    this.retryable = options.retryable ?? info.retryable;
    this.issues = (options.issues ?? []).map((i) => ({ ...i, message: redactSecrets(i.message) }));
    this.details = options.details ?? {};
    this.challenge = options.challenge;
  }
}

export function notFound(what: string, name: string, details: Record<string, unknown> = {}): BatchError {
  return new BatchError('not_found', `${what} '${name}' does not exist.`, { details: { resource: what, name, ...details } });
}

/**
 * A limit was exceeded: the problem names it (`limit`: the setting, or the storage limit, that
 * sets it) and its value (`limit_value`), plus what the request came to (`actual`) when known.
 */
export function limitExceeded(
  code: 'payload_too_large' | 'limit_exceeded' | 'rate_limited',
  message: string,
  limit: { name: string; value: number; actual?: number | undefined; field?: string | undefined; retryAfterSeconds?: number | undefined },
): BatchError {
  return new BatchError(code, message, {
    details: {
      limit: limit.name,
      limit_value: limit.value,
      ...(limit.actual === undefined ? {} : { actual: limit.actual }),
      ...(limit.retryAfterSeconds === undefined ? {} : { retry_after_seconds: limit.retryAfterSeconds }),
    },
    issues: limit.field === undefined ? [] : [{ field: limit.field, message: `exceeds ${limit.name} (${limit.value})` }],
  });
}

/** RFC 9457 problem details, as sent with `application/problem+json`. */
export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: ErrorCode;
  instance?: string;
  errors?: FieldIssue[];
  [extension: string]: unknown;
}

export const PROBLEM_CONTENT_TYPE = 'application/problem+json';

/** Maps any thrown value to a status and problem body; unknown errors become opaque 500s. */
export function toProblem(error: unknown, instance?: string): Problem {
  if (error instanceof BatchError) {
    const info = CODES[error.code];
    const problem: Problem = {
      // Extension members first: they must never replace the standard ones.
      ...error.details,
      type: `https://batch-endpoints.dev/problems/${error.code.replace(/_/g, '-')}`,
      title: info.title,
      status: info.status,
      detail: redactSecrets(error.message),
      code: error.code,
    };
    if (instance) problem.instance = instance;
    if (error.issues.length > 0) problem.errors = error.issues;
    return problem;
  }
  return {
    type: 'https://batch-endpoints.dev/problems/internal',
    title: CODES.internal.title,
    status: 500,
    detail: 'An unexpected error occurred. It has been logged.',
    code: 'internal',
    ...(instance ? { instance } : {}),
  };
}

/** Headers that go with an error's problem: `WWW-Authenticate` for 401 and 403 (RFC 6750). */
export function problemHeaders(error: unknown): Record<string, string> {
  return error instanceof BatchError && error.challenge !== undefined ? { 'www-authenticate': error.challenge } : {};
}

/** Whether work that failed with this error may succeed when run again. */
export function isRetryable(error: unknown): boolean {
  if (error instanceof BatchError) return error.retryable;
  return true;
}

/** An error's message as the app shows it (redacted: a URL's query, a key or a SAS never shows). */
export function errorMessage(error: unknown): string {
  if (error instanceof Error) return redactSecrets(error.message);
  return redactSecrets(typeof error === 'string' ? error : JSON.stringify(error));
}
