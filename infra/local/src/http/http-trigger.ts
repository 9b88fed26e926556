import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { request as httpRequest } from 'node:http';
import { FnHostError, describeError } from '../errors.js';
import type { Logger } from '../log.js';
import type { BindingData } from '../worker/binding-data.js';
import type { RpcHttpCookie, RpcHttpData } from '../worker/core-types.js';
import type { Invoker } from '../worker/invoker.js';
import { httpBindingData } from '../worker/trigger-binding-data.js';
import type { RegisteredFunction } from '../worker/worker-runtime.js';
import type { KeyStore } from './keys.js';
import { presentedKey } from './keys.js';
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

function cookieHeader(c: RpcHttpCookie): string {
  let s = `${c.name ?? ''}=${c.value ?? ''}`;
  if (c.domain?.value) s += `; Domain=${c.domain.value}`;
  if (c.path?.value) s += `; Path=${c.path.value}`;
  const expires = c.expires?.value?.seconds;
  if (typeof expires === 'number') s += `; Expires=${new Date(expires * 1000).toUTCString()}`;
  if (typeof c.maxAge?.value === 'number') s += `; Max-Age=${c.maxAge.value}`;
  if (c.secure?.value) s += '; Secure';
  if (c.httpOnly?.value) s += '; HttpOnly';
  if (c.sameSite === 'lax') s += '; SameSite=Lax';
  else if (c.sameSite === 'strict') s += '; SameSite=Strict';
  else if (c.sameSite === 'explicitNone' || c.sameSite === 'none') s += '; SameSite=None';
  return s;
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

  /** Returns false when no function's route matches the path. */
  async handle(req: IncomingMessage, res: ServerResponse, url: URL, path: string, body: Buffer): Promise<boolean> {
    const method = (req.method ?? 'GET').toUpperCase();
    let allowed: string[] = [];
    for (const candidate of this.#functions) {
      const params = matchRoute(candidate.route, path);
      if (!params) continue;
      if (candidate.methods && !candidate.methods.includes(method)) {
        allowed = allowed.concat(candidate.methods);
        continue;
      }
      await this.#invoke(candidate, req, res, url, params, body);
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
    body: Buffer,
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
    const bindingData = httpBindingData({ body, headers, url, params });
    const http: RpcHttpData = {
      method: req.method ?? 'GET',
      url: url.toString(),
      headers,
      query,
      params,
      body: { bytes: body },
    };
    const invocationId = randomUUID();

    if (this.#o.streamUri) {
      await this.#invokeStreaming(target, req, res, url, body, invocationId, bindingData);
      return;
    }

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

  async #invokeStreaming(
    target: HttpFunction,
    req: IncomingMessage,
    res: ServerResponse,
    url: URL,
    body: Buffer,
    invocationId: string,
    bindingData: BindingData,
  ): Promise<void> {
    const streamUri = new URL(`${url.pathname}${url.search}`, this.#o.streamUri);
    const proxied = new Promise<void>((resolve, reject) => {
      const forward = httpRequest(
        streamUri,
        {
          method: req.method,
          headers: {
            ...req.headers,
            'x-ms-invocation-id': invocationId,
            'x-forwarded-host': url.host,
            'x-forwarded-proto': url.protocol.replace(':', ''),
          },
        },
        (proxyRes) => {
          res.writeHead(proxyRes.statusCode ?? 200, proxyRes.headers);
          proxyRes.pipe(res);
          proxyRes.on('end', resolve);
          proxyRes.on('error', reject);
        },
      );
      forward.on('error', reject);
      forward.end(body);
    });
    const outcome = await this.#o.invoker.invoke(target.fn, {
      invocationId,
      triggerData: { http: { method: req.method ?? 'GET', url: url.toString() } },
      bindingData,
    });
    if (outcome.error) {
      if (!res.headersSent) {
        res.writeHead(500);
        res.end();
      }
      proxied.catch(() => undefined);
      return;
    }
    try {
      await proxied;
    } catch (err) {
      this.#o.logger.warn(`HTTP stream proxy for ${target.fn.name} failed: ${describeError(err)}`);
      if (!res.headersSent) res.writeHead(500);
      res.end();
    }
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
  const cookies = (http.cookies ?? []).map(cookieHeader);
  if (cookies.length > 0) headers['set-cookie'] = cookies;
  const b = http.body;
  let payload: Buffer | undefined;
  if (b?.bytes) payload = Buffer.from(b.bytes);
  else if (typeof b?.string === 'string') payload = Buffer.from(b.string);
  else if (typeof b?.json === 'string') payload = Buffer.from(b.json);
  if (payload && payload.length > 0) headers['content-length'] = String(payload.length);
  res.writeHead(status, headers);
  res.end(payload);
}
