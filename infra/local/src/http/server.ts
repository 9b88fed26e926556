import { type IncomingMessage, type Server, type ServerResponse, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { FnHostError, describeError } from '../errors.js';
import type { Logger } from '../log.js';
import type { KeyStore } from './keys.js';
import { presentedKey } from './keys.js';
import type { HttpTriggerRouter } from './http-trigger.js';
import { type HostRequest, type HostResponse, empty, json } from './types.js';

/** Requests larger than this are refused, as the Functions host limits request size. */
export const MAX_BODY_BYTES = 100 * 1024 * 1024;

export interface WebhookHandler {
  handle(request: HostRequest, path: string): Promise<HostResponse>;
}

export interface HostServerOptions {
  routePrefix: string;
  httpTriggers: HttpTriggerRouter;
  /** Extension webhooks under /runtime/webhooks/{name}, keyed by lower-case name. */
  webhooks: Map<string, { handler: WebhookHandler; systemKeyName: string | undefined }>;
  admin: WebhookHandler;
  keys: KeyStore;
  logger: Logger;
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    const buf = chunk as Buffer;
    size += buf.length;
    if (size > MAX_BODY_BYTES) throw new FnHostError('ERR_BAD_REQUEST', 'Request body too large.', { details: { status: 413 } });
    chunks.push(buf);
  }
  return Buffer.concat(chunks);
}

function send(res: ServerResponse, response: HostResponse): void {
  const body = response.body === undefined ? undefined : Buffer.isBuffer(response.body) ? response.body : Buffer.from(response.body);
  const headers: Record<string, string> = { ...response.headers };
  if (body) headers['content-length'] = String(body.length);
  res.writeHead(response.status, headers);
  res.end(body);
}

/**
 * The host's HTTP front door: HTTP triggers under the route prefix, extension webhooks
 * (Durable, Event Grid) under /runtime/webhooks, and a few admin endpoints.
 */
export class HostServer {
  readonly #o: HostServerOptions;
  readonly #server: Server;
  readonly #open = new Set<Promise<void>>();
  #closing = false;

  constructor(options: HostServerOptions) {
    this.#o = options;
    this.#server = createServer((req, res) => {
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
      const body = await readBody(req);
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
        send(res, await entry.handler.handle({ method: req.method ?? 'GET', url, headers: req.headers, body }, hook[2] ?? ''));
        return;
      }
      if (lower === '/admin' || lower.startsWith('/admin/')) {
        const level = this.#o.keys.levelOf(presentedKey(req.headers, url.searchParams), {});
        if (level !== 'admin') {
          send(res, empty(401));
          return;
        }
        send(res, await this.#o.admin.handle({ method: req.method ?? 'GET', url, headers: req.headers, body }, path.substring(6)));
        return;
      }
      const prefix = this.#o.routePrefix === '' ? '' : `/${this.#o.routePrefix.toLowerCase()}`;
      if (prefix === '' || lower === prefix || lower.startsWith(`${prefix}/`)) {
        const rest = path.substring(prefix.length);
        if (await this.#o.httpTriggers.handle(req, res, url, rest, body)) return;
      }
      if (path === '/' && req.method === 'GET') {
        send(res, { status: 200, headers: { 'content-type': 'text/plain; charset=utf-8' }, body: 'fnhost: your Functions app is up and running.\n' });
        return;
      }
      send(res, empty(404));
    } catch (err) {
      const status = err instanceof FnHostError && err.details?.['status'] === 413 ? 413 : 500;
      if (status === 500) this.#o.logger.error(`Request ${req.method ?? ''} ${req.url ?? ''} failed: ${describeError(err)}`);
      if (!res.headersSent) send(res, status === 413 ? json(413, { error: 'Request body too large.' }) : empty(500));
      else res.end();
    }
  }
}
