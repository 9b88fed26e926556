import { type IncomingMessage, type Server, type ServerResponse, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { FnHostError, describeError } from '../errors.js';
import { type Logger, flushLogLines } from '../log.js';
import type { KeyStore } from './keys.js';
import { presentedKey } from './keys.js';
import type { HttpTriggerRouter } from './http-trigger.js';
import { RequestBodyTooLargeError, readRequestBody, requestBodyLimit } from './request-body.js';
import { type HostRequest, type HostResponse, empty } from './types.js';

export interface WebhookHandler {
  handle(request: HostRequest, path: string): Promise<HostResponse>;
}

export interface HostServerOptions {
  routePrefix: string;
  httpTriggers: HttpTriggerRouter;
  /** Extension webhooks under /runtime/webhooks/{name}, keyed by lower-case name. */
  webhooks: Map<string, { handler: WebhookHandler; systemKeyName: string | undefined }>;
  admin: WebhookHandler;
  /**
   * Other endpoints under /runtime/{name} that check their own credentials (Event Grid topics
   * take their topic key, not a host key), keyed by lower-case name.
   */
  runtime?: Map<string, WebhookHandler>;
  keys: KeyStore;
  logger: Logger;
  /** The largest request body in bytes; default: FUNCTIONS_REQUEST_BODY_SIZE_LIMIT, else the host's 100 MiB. */
  maxRequestBodyBytes?: number;
}

function send(res: ServerResponse, response: HostResponse): void {
  const body = response.body === undefined ? undefined : Buffer.isBuffer(response.body) ? response.body : Buffer.from(response.body);
  const headers: Record<string, string> = { ...response.headers };
  if (body) headers['content-length'] = String(body.length);
  res.writeHead(response.status, headers);
  res.end(body);
}

/** Writes the host's pending log lines before any byte of `res` goes out (see flushLogLines). */
function flushLogsBeforeSending(res: ServerResponse): void {
  const write = res.write.bind(res);
  const end = res.end.bind(res);
  const flushHeaders = res.flushHeaders.bind(res);
  res.write = ((...args: Parameters<typeof write>) => {
    flushLogLines();
    return write(...args);
  }) as typeof write;
  res.end = ((...args: Parameters<typeof end>) => {
    flushLogLines();
    return end(...args);
  }) as typeof end;
  res.flushHeaders = () => {
    flushLogLines();
    flushHeaders();
  };
}

/**
 * The host's HTTP front door: HTTP triggers under the route prefix, extension webhooks
 * (Durable, Event Grid) under /runtime/webhooks, and a few admin endpoints.
 */
export class HostServer {
  readonly #o: HostServerOptions;
  readonly #bodyLimit: number;
  readonly #server: Server;
  readonly #open = new Set<Promise<void>>();
  #closing = false;

  constructor(options: HostServerOptions) {
    this.#o = options;
    this.#bodyLimit = options.maxRequestBodyBytes ?? requestBodyLimit();
    this.#server = createServer((req, res) => {
      flushLogsBeforeSending(res);
      const work = this.#dispatch(req, res);
      this.#open.add(work);
      void work.finally(() => this.#open.delete(work));
    });
    this.#server.keepAliveTimeout = 5000;
  }

  listen(port: number, host: string): Promise<number> {
    return new Promise((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException): void => {
        reject(
          err.code === 'EADDRINUSE'
            ? new FnHostError(
                'ERR_CONFIG',
                `Port ${port} is unavailable. Close the process using that port, or specify another port using --port [-p].`,
              )
            : err,
        );
      };
      this.#server.once('error', onError);
      this.#server.listen(port, host, () => {
        this.#server.off('error', onError);
        resolve((this.#server.address() as AddressInfo).port);
      });
    });
  }

  /** Stops accepting connections and waits up to `graceMs` for requests in progress. */
  async close(graceMs: number): Promise<void> {
    this.#closing = true;
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    this.#server.closeIdleConnections();
    const timer = new Promise<void>((resolve) => setTimeout(resolve, graceMs).unref());
    await Promise.race([Promise.allSettled([...this.#open]), timer]);
    this.#server.closeAllConnections();
    await closed;
  }

  async #dispatch(req: IncomingMessage, res: ServerResponse): Promise<void> {
    try {
      if (this.#closing) {
        send(res, empty(503, { connection: 'close' }));
        return;
      }
      const url = new URL(req.url ?? '/', `http://${req.headers.host ?? 'localhost'}`);
      const path = url.pathname;
      const lower = path.toLowerCase();

      const hook = /^\/runtime\/webhooks\/([^/]+)(\/.*)?$/i.exec(path);
      if (hook) {
        const entry = this.#o.webhooks.get((hook[1] ?? '').toLowerCase());
        if (!entry) {
          send(res, empty(404));
          return;
        }
        if (entry.systemKeyName) {
          const level = this.#o.keys.levelOf(presentedKey(req.headers, url.searchParams), { systemName: entry.systemKeyName });
          if (level !== 'admin' && level !== 'system') {
            send(res, empty(401));
            return;
          }
        }
        const body = await readRequestBody(req, this.#bodyLimit);
        send(res, await entry.handler.handle({ method: req.method ?? 'GET', url, headers: req.headers, body }, hook[2] ?? ''));
        return;
      }
      const runtime = /^\/runtime\/([^/]+)(\/.*)?$/i.exec(path);
      const runtimeHandler = runtime ? this.#o.runtime?.get((runtime[1] ?? '').toLowerCase()) : undefined;
      if (runtime && runtimeHandler) {
        const body = await readRequestBody(req, this.#bodyLimit);
        send(res, await runtimeHandler.handle({ method: req.method ?? 'GET', url, headers: req.headers, body }, runtime[2] ?? ''));
        return;
      }
      if (lower === '/admin' || lower.startsWith('/admin/')) {
        const level = this.#o.keys.levelOf(presentedKey(req.headers, url.searchParams), {});
        if (level !== 'admin') {
          send(res, empty(401));
          return;
        }
        const body = await readRequestBody(req, this.#bodyLimit);
        send(res, await this.#o.admin.handle({ method: req.method ?? 'GET', url, headers: req.headers, body }, path.substring(6)));
        return;
      }
      const prefix = this.#o.routePrefix === '' ? '' : `/${this.#o.routePrefix.toLowerCase()}`;
      if (prefix === '' || lower === prefix || lower.startsWith(`${prefix}/`)) {
        const rest = path.substring(prefix.length);
        // HTTP triggers read (or, with HTTP streams, forward) the body themselves.
        if (await this.#o.httpTriggers.handle(req, res, url, rest, this.#bodyLimit)) return;
      }
      if (path === '/' && req.method === 'GET') {
        send(res, { status: 200, headers: { 'content-type': 'text/plain; charset=utf-8' }, body: 'fnhost: your Functions app is up and running.\n' });
        return;
      }
      send(res, empty(404));
    } catch (err) {
      // An oversized body is refused with 500 as in the host, whose exception middleware turns
      // Kestrel's "Request body too large" into a 500 (azure-functions-host#10519).
      this.#o.logger.error(
        err instanceof RequestBodyTooLargeError
          ? `Request ${req.method ?? ''} ${req.url ?? ''}: ${err.message}`
          : `Request ${req.method ?? ''} ${req.url ?? ''} failed: ${describeError(err)}`,
      );
      if (!res.headersSent) send(res, empty(500));
      else res.destroy();
    }
  }
}
