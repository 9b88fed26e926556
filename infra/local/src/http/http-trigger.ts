import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { FnHostError } from '../errors.js';
import type { Logger } from '../log.js';
import type { BindingData } from '../worker/binding-data.js';
import type { RpcHttpCookie, RpcHttpData } from '../worker/core-types.js';
import type { Invoker } from '../worker/invoker.js';
import { httpBindingData } from '../worker/trigger-binding-data.js';
import type { RegisteredFunction } from '../worker/worker-runtime.js';
import { invokeStreamed } from './http-stream.js';
import type { KeyStore } from './keys.js';
import { presentedKey } from './keys.js';
import { RequestBodyTooLargeError, readRequestBody } from './request-body.js';
import { type CompiledRoute, compileRoute, matchRoute } from './routes.js';

interface HttpFunction {
  fn: RegisteredFunction;
  route: CompiledRoute;
  methods: string[] | undefined;
  authLevel: 'anonymous' | 'function' | 'admin';
}

export interface HttpTriggerOptions {
  functions: RegisteredFunction[];
  invoker: Invoker;
  keys: KeyStore;
  logger: Logger;
  /** The library's own HTTP server when the app enabled HTTP streaming. */
  streamUri: string | undefined;
}

function methodsOf(fn: RegisteredFunction): string[] | undefined {
  const methods = fn.trigger['methods'];
  if (!Array.isArray(methods) || methods.length === 0) return undefined;
  return methods.map((m) => String(m).toUpperCase());
}

function authLevelOf(fn: RegisteredFunction): HttpFunction['authLevel'] {
  const raw = fn.trigger['authLevel'];
  const level = (typeof raw === 'string' ? raw : 'anonymous').toLowerCase();
  if (level === 'function' || level === 'admin' || level === 'anonymous') return level;
  if (level === 'system') return 'admin';
  throw new FnHostError('ERR_APP_LOAD', `Function "${fn.name}" has an unknown authLevel "${level}".`);
}

/** Uri.EscapeDataString: percent-encodes everything but RFC 3986 unreserved characters. */
function escapeDataString(value: string): string {
  return encodeURIComponent(value).replace(/[!'()*]/g, (ch) => `%${ch.charCodeAt(0).toString(16).toUpperCase()}`);
}

/**
 * A Set-Cookie value as the host writes it: ASP.NET Core's Response.Cookies.Append with the
 * CookieOptions the host builds from the RPC cookie. The value is URI-escaped, attributes are
 * lower-case in SetCookieHeaderValue's order, the path defaults to "/", and SameSite is written
 * only when the app set one (the library sends "none" for unset, "explicitNone" for None).
 */
function cookieHeader(c: RpcHttpCookie): string {
  const parts = [`${c.name ?? ''}=${escapeDataString(c.value ?? '')}`];
  const expires = c.expires?.value?.seconds;
  if (typeof expires === 'number') parts.push(`expires=${new Date(expires * 1000).toUTCString()}`);
  const maxAge = c.maxAge?.value;
  if (typeof maxAge === 'number') parts.push(`max-age=${Math.trunc(maxAge)}`);
  const domain = c.domain?.value;
  if (typeof domain === 'string') parts.push(`domain=${domain}`);
  parts.push(`path=${c.path ? (c.path.value ?? '') : '/'}`);
  if (c.secure?.value) parts.push('secure');
  if (c.sameSite === 'strict') parts.push('samesite=strict');
  else if (c.sameSite === 'lax') parts.push('samesite=lax');
  else if (c.sameSite === 'explicitNone') parts.push('samesite=none');
  if (c.httpOnly?.value) parts.push('httponly');
  return parts.join('; ');
}

function flatHeaders(req: IncomingMessage): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(req.headers)) {
    if (v === undefined) continue;
    out[k] = Array.isArray(v) ? v.join(', ') : v;
  }
  return out;
}

function queryRecord(url: URL): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of url.searchParams) out[k] = k in out ? `${out[k]},${v}` : v;
  return out;
}

/** Routes requests under the route prefix to HTTP-triggered functions and writes their responses. */
export class HttpTriggerRouter {
  readonly #functions: HttpFunction[];
  readonly #o: HttpTriggerOptions;

  constructor(options: HttpTriggerOptions) {
    this.#o = options;
    this.#functions = options.functions
      .map((fn) => {
        const route = fn.trigger['route'];
        return {
          fn,
          route: compileRoute(typeof route === 'string' && route !== '' ? route : fn.name),
          methods: methodsOf(fn),
          authLevel: authLevelOf(fn),
        };
      })
      .sort((a, b) => b.route.precedence - a.route.precedence);
  }

  get routes(): { name: string; template: string; methods: string[] | undefined; authLevel: string }[] {
    return this.#functions.map((f) => ({
      name: f.fn.name,
      template: f.route.template,
      methods: f.methods,
      authLevel: f.authLevel,
    }));
  }

  /**
   * Returns false when no function's route matches the path. The request body is read here (or
   * forwarded as it arrives, with HTTP streams), refused past `bodyLimit` bytes.
   */
  async handle(req: IncomingMessage, res: ServerResponse, url: URL, path: string, bodyLimit: number): Promise<boolean> {
    const method = (req.method ?? 'GET').toUpperCase();
    let allowed: string[] = [];
    for (const candidate of this.#functions) {
      const params = matchRoute(candidate.route, path);
      if (!params) continue;
      if (candidate.methods && !candidate.methods.includes(method)) {
        allowed = allowed.concat(candidate.methods);
        continue;
      }
      await this.#invoke(candidate, req, res, url, params, bodyLimit);
      return true;
    }
    if (allowed.length > 0) {
      res.writeHead(405, { allow: [...new Set(allowed)].join(', ') });
      res.end();
      return true;
    }
    return false;
  }

  async #invoke(
    target: HttpFunction,
    req: IncomingMessage,
    res: ServerResponse,
    url: URL,
    params: Record<string, string>,
    bodyLimit: number,
  ): Promise<void> {
    const { fn } = target;
    if (target.authLevel !== 'anonymous' || fn.disabled) {
      const level = this.#o.keys.levelOf(presentedKey(req.headers, url.searchParams), { functionName: fn.name });
      const ok =
        target.authLevel === 'anonymous' ||
        (target.authLevel === 'admin' ? level === 'admin' : level === 'admin' || level === 'function');
      // As the host does: authorization first, then a disabled function is not found unless the caller is admin.
      const status = !ok ? 401 : fn.disabled && level !== 'admin' ? 404 : undefined;
      if (status !== undefined) {
        res.writeHead(status);
        res.end();
        return;
      }
    }
    const headers = flatHeaders(req);
    const query = queryRecord(url);
    const invocationId = randomUUID();
    // Binding data as the host builds it (trigger-binding-data.ts), from the body when one was read.
    const bindingDataOf = (body: Buffer): BindingData => httpBindingData({ body, headers, url, params });

    if (this.#o.streamUri) {
      await invokeStreamed({
        fn,
        req,
        res,
        url,
        streamUri: this.#o.streamUri,
        bodyLimit,
        invocationId,
        bindingDataOf,
        invoker: this.#o.invoker,
        logger: this.#o.logger,
      });
      return;
    }

    let body: Buffer;
    try {
      body = await readRequestBody(req, bodyLimit);
    } catch (err) {
      if (!(err instanceof RequestBodyTooLargeError)) throw err;
      // The host fails such a request before the function runs, with 500 (azure-functions-host#10519).
      this.#o.logger.write({ level: 'error', category: 'host', functionName: fn.name, invocationId, message: err.message });
      res.writeHead(500);
      res.end();
      return;
    }
    const bindingData = bindingDataOf(body);
    const http: RpcHttpData = {
      method: req.method ?? 'GET',
      url: url.toString(),
      headers,
      query,
      params,
    };
    // The host sends a body only when the request has one. @azure/functions before 4.16.4 passes
    // any RPC body to the Request constructor, which refuses one, even empty, for GET and HEAD.
    if (body.length > 0) http.body = { bytes: body };

    const outcome = await this.#o.invoker.invoke(fn, {
      invocationId,
      triggerData: { http },
      bindingData,
    });
    if (outcome.error) {
      if (!res.headersSent) {
        res.writeHead(500);
        res.end();
      }
      return;
    }
    const response = outcome.response;
    let httpOut: RpcHttpData | null | undefined;
    for (const [name, binding] of Object.entries(fn.bindings)) {
      if (binding.direction !== 'out' || String(binding.type).toLowerCase() !== 'http') continue;
      httpOut =
        name === '$return'
          ? response?.returnValue?.http
          : response?.outputData?.find((o) => o.name === name)?.data?.http;
      if (httpOut) break;
    }
    writeRpcResponse(res, httpOut);
  }
}

/** Writes an RpcHttpData response (status, headers, cookies, body) to the client. */
export function writeRpcResponse(res: ServerResponse, http: RpcHttpData | null | undefined): void {
  if (!http) {
    res.writeHead(204);
    res.end();
    return;
  }
  const status = Number(http.statusCode ?? 200) || 200;
  const headers: Record<string, string | string[]> = {};
  for (const [k, v] of Object.entries(http.headers ?? {})) headers[k.toLowerCase()] = v;
  // The host copies the headers and then appends each cookie (Response.Cookies.Append): a
  // Set-Cookie header the function set is sent too, before the cookies, not replaced by them.
  const cookies = (http.cookies ?? []).map(cookieHeader);
  if (cookies.length > 0) {
    const own = headers['set-cookie'];
    headers['set-cookie'] = [...(own === undefined ? [] : Array.isArray(own) ? own : [own]), ...cookies];
  }
  const b = http.body;
  let payload: Buffer | undefined;
  if (b?.bytes) payload = Buffer.from(b.bytes);
  else if (typeof b?.string === 'string') payload = Buffer.from(b.string);
  else if (typeof b?.json === 'string') payload = Buffer.from(b.json);
  if (payload && payload.length > 0) headers['content-length'] = String(payload.length);
  res.writeHead(status, headers);
  res.end(payload);
}
