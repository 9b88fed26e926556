/**
 * fnhost's one error hierarchy. Every error the host raises carries a string `code`,
 * an optional `cause`, and whether the user (bad input, bad app) or the host itself is to blame.
 * HTTP surfaces map codes to status codes in one place ({@link httpStatusFor}).
 */
export type ErrorKind = 'user' | 'system';

export type FnHostErrorCode =
  | 'ERR_CONFIG'
  | 'ERR_APP_LOAD'
  | 'ERR_NOT_FOUND'
  | 'ERR_BAD_REQUEST'
  | 'ERR_UNAUTHORIZED'
  | 'ERR_CONFLICT'
  | 'ERR_GONE'
  | 'ERR_NOT_IMPLEMENTED'
  | 'ERR_METHOD_NOT_ALLOWED'
  | 'ERR_INVOCATION'
  | 'ERR_BINDING'
  | 'ERR_NON_DETERMINISM'
  | 'ERR_SHUTTING_DOWN'
  | 'ERR_INTERNAL';

export interface FnHostErrorOptions {
  cause?: unknown;
  kind?: ErrorKind;
  /** Extra, JSON-serialisable facts for error bodies and logs. */
  details?: Record<string, unknown>;
}

const DEFAULT_KIND: Record<FnHostErrorCode, ErrorKind> = {
  ERR_CONFIG: 'user',
  ERR_APP_LOAD: 'user',
  ERR_NOT_FOUND: 'user',
  ERR_BAD_REQUEST: 'user',
  ERR_UNAUTHORIZED: 'user',
  ERR_CONFLICT: 'user',
  ERR_GONE: 'user',
  ERR_NOT_IMPLEMENTED: 'user',
  ERR_METHOD_NOT_ALLOWED: 'user',
  ERR_INVOCATION: 'user',
  ERR_BINDING: 'user',
  ERR_NON_DETERMINISM: 'user',
  ERR_SHUTTING_DOWN: 'system',
  ERR_INTERNAL: 'system',
};

export class FnHostError extends Error {
  readonly code: FnHostErrorCode;
  readonly kind: ErrorKind;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: FnHostErrorCode, message: string, options: FnHostErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'FnHostError';
    this.code = code;
    this.kind = options.kind ?? DEFAULT_KIND[code];
    this.details = options.details;
  }
}

const HTTP_STATUS: Record<FnHostErrorCode, number> = {
  ERR_CONFIG: 500,
  ERR_APP_LOAD: 500,
  ERR_NOT_FOUND: 404,
  ERR_BAD_REQUEST: 400,
  ERR_UNAUTHORIZED: 401,
  ERR_CONFLICT: 409,
  ERR_GONE: 410,
  ERR_NOT_IMPLEMENTED: 501,
  ERR_METHOD_NOT_ALLOWED: 405,
  ERR_INVOCATION: 500,
  ERR_BINDING: 500,
  ERR_NON_DETERMINISM: 500,
  ERR_SHUTTING_DOWN: 503,
  ERR_INTERNAL: 500,
};

export function httpStatusFor(error: unknown): number {
  return error instanceof FnHostError ? HTTP_STATUS[error.code] : 500;
}

export function toError(value: unknown): Error {
  if (value instanceof Error) return value;
  if (typeof value === 'string') return new Error(value);
  try {
    return new Error(JSON.stringify(value));
  } catch {
    return new Error(String(value));
  }
}

/** One-line description of an error and its causes, for logs. */
export function describeError(value: unknown): string {
  const parts: string[] = [];
  let current: unknown = value;
  for (let depth = 0; current !== undefined && depth < 5; depth++) {
    const err = toError(current);
    parts.push(err.message);
    current = err.cause;
  }
  return parts.join(' <- ');
}
