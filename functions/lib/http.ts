import { inspect } from 'node:util';
import type { HttpRequest, HttpResponseInit, InvocationContext } from '@azure/functions';
import type { z } from 'zod';
import { loadConfig } from '../../shared/config.js';
import { BatchError, PROBLEM_CONTENT_TYPE, limitExceeded, problemHeaders, toProblem } from '../../shared/errors.js';
import { redactSecrets } from '../../shared/redact.js';
import type { Invoker } from '../../shared/jobs/types.js';
import { parseOrThrow } from '../../shared/schemas/validate.js';

export type Handler = (request: HttpRequest, context: InvocationContext) => Promise<HttpResponseInit>;

/** Wraps a handler: any error becomes RFC 9457 problem details; only our own failures are 5xx. */
export function api(handler: Handler): Handler {
  return async (request, context) => {
    try {
      return await handler(request, context);
    } catch (err) {
      const path = new URL(request.url).pathname;
      const problem = toProblem(err, path);
      // Logged as text through the one redaction function: an error's cause may carry a URL's SAS.
      if (problem.status >= 500) context.error(`${request.method} ${path} failed: ${redactSecrets(inspect(err, { depth: 4 }))}`);
      const headers: Record<string, string> = { 'content-type': PROBLEM_CONTENT_TYPE, ...problemHeaders(err) };
      if (typeof problem['retry_after_seconds'] === 'number') headers['retry-after'] = String(problem['retry_after_seconds']);
      return { status: problem.status, headers, body: JSON.stringify(problem) };
    }
  };
}

/**
 * The request body as text, refused with 413 (naming BATCH_MAX_REQUEST_BODY_BYTES) once it is over
 * `limit` bytes: at once when its Content-Length says so, else as soon as that many have arrived.
 */
export async function readText(request: HttpRequest, limit: number): Promise<string> {
  const tooLarge = (actual?: number): BatchError =>
    limitExceeded('payload_too_large', `The request body is larger than ${limit} bytes (BATCH_MAX_REQUEST_BODY_BYTES).`, {
      name: 'BATCH_MAX_REQUEST_BODY_BYTES',
      value: limit,
      actual,
      field: '(body)',
    });
  const declared = Number(request.headers.get('content-length') ?? NaN);
  if (Number.isFinite(declared) && declared > limit) throw tooLarge(declared);
  if (!request.body) return '';
  const chunks: Uint8Array[] = [];
  let total = 0;
  // Leaving the loop early cancels the stream: nothing more is read.
  for await (const chunk of request.body as AsyncIterable<Uint8Array>) {
    total += chunk.byteLength;
    if (total > limit) throw tooLarge();
    chunks.push(chunk);
  }
  return new TextDecoder().decode(Buffer.concat(chunks));
}

/** The request body as JSON; an empty body is `{}` so schema errors name the missing fields. */
export async function readJson(request: HttpRequest): Promise<unknown> {
  const text = await readText(request, loadConfig().limits.requestBodyBytes);
  if (text.trim() === '') return {};
  let body: unknown;
  try {
    body = JSON.parse(text) as unknown;
  } catch (err) {
    throw new BatchError('invalid_json', `The request body is not valid JSON: ${(err as Error).message}`, { issues: [{ field: '(body)', message: 'invalid JSON' }] });
  }
  // Nesting deeper than any request of this API has is refused before anything walks the value
  // (a deep enough value overflows the stack of every recursive walk: schemas, copies, this one).
  // A member named __proto__ is an own key of the parsed object, but any copy of the object
  // (a schema's output, a spread) drops it or turns it into a prototype: refused, by its path.
  const found = walk(body);
  if (found?.tooDeep) {
    const field = found.path.join('.') || '(body)';
    throw new BatchError('validation_failed', `${field}: the body nests deeper than ${MAX_JSON_DEPTH} levels.`, { issues: [{ field, message: `nests deeper than ${MAX_JSON_DEPTH} levels` }] });
  }
  if (found) {
    const field = found.path.join('.');
    throw new BatchError('validation_failed', `${field}: "__proto__" is reserved (every JavaScript object has a member of that name); choose another name.`, { issues: [{ field, message: 'is reserved' }] });
  }
  return body;
}

/** The deepest nesting of objects and arrays a request body may have. */
export const MAX_JSON_DEPTH = 64;

/**
 * Walks parsed JSON without recursion: the path of the first member named __proto__, or the path
 * (its first 8 steps) of a value nested deeper than {@link MAX_JSON_DEPTH}.
 */
function walk(root: unknown): { path: string[]; tooDeep: boolean } | undefined {
  const stack: { value: unknown; path: string[] }[] = [{ value: root, path: [] }];
  while (stack.length > 0) {
    const { value, path } = stack.pop() as { value: unknown; path: string[] };
    if (typeof value !== 'object' || value === null) continue;
    if (path.length > MAX_JSON_DEPTH) return { path: path.slice(0, 8), tooDeep: true };
    const keys = Object.keys(value);
    for (let i = keys.length - 1; i >= 0; i--) {
      const key = keys[i] as string;
      if (key === '__proto__') return { path: [...path, key], tooDeep: false };
      stack.push({ value: (value as Record<string, unknown>)[key], path: [...path, key] });
    }
  }
  return undefined;
}

export function json(status: number, body: unknown, headers: Record<string, string> = {}): HttpResponseInit {
  return { status, jsonBody: body, headers: { 'content-type': 'application/json; charset=utf-8', ...headers } };
}

/** scheme://host of the request, for absolute links. */
export function baseUrl(request: HttpRequest): string {
  return new URL(request.url).origin;
}

/** A path parameter, checked against `schema` (names must be valid before they reach storage keys). */
export function param(request: HttpRequest, name: string, schema?: z.ZodType<string>): string {
  const value = request.params[name];
  if (value === undefined || value === '') {
    throw new BatchError('validation_failed', `Missing path parameter '${name}'.`, { issues: [{ field: name, message: 'required' }] });
  }
  return schema ? parseOrThrow(schema, value, `path parameter '${name}'`, name) : value;
}

/** What a caller's invoke rate is counted by: how they authenticated and who they are. */
export function callerKey(invoker: Invoker): string {
  return `${invoker.via}:${invoker.id ?? invoker.name}`;
}

export function positiveInt(request: HttpRequest, name: string, fallback: number, max: number): number {
  const raw = request.query.get(name);
  if (raw === null) return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1 || n > max) {
    throw new BatchError('validation_failed', `Query parameter '${name}' must be an integer from 1 to ${max}.`, {
      issues: [{ field: name, message: `must be an integer from 1 to ${max}` }],
    });
  }
  return n;
}
