import { existsSync, readFileSync } from 'node:fs';
import { type IncomingHttpHeaders, type Server, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join, resolve } from 'node:path';

/** The test app with Event Grid functions and subscriptions (see its local.settings.json). */
export const EVENTGRID_APP = resolve(import.meta.dirname, '..', 'fixtures', 'fnhost-eventgrid-app');
export const TOPIC = 'batch-jobs';
export const TOPIC_KEY = 'test-topic-key-0123456789';

/** What an Event Grid function of the test app has received, one record per invocation. */
export function receivedBy<T = Record<string, unknown>>(dir: string, functionName: string): T[] {
  const file = join(dir, `${functionName}.jsonl`);
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as T);
}

export interface SinkRequest {
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
  body: unknown;
  at: number;
}

/**
 * A webhook subscriber, as a real HTTP server: it answers Event Grid's validation handshakes and
 * records every request. `failures(path, event)` says how many times to answer 500 to an event
 * before accepting it.
 */
export class WebhookSink {
  readonly requests: SinkRequest[] = [];
  readonly #server: Server;
  readonly #failures: (path: string, event: Record<string, unknown>) => number;
  readonly #attempts = new Map<string, number>();
  url = '';
  /** While true every request is answered 503 (the subscriber is down). */
  down = false;

  constructor(failures: (path: string, event: Record<string, unknown>) => number = () => 0) {
    this.#failures = failures;
    this.#server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let body: unknown = text;
        try {
          body = text ? JSON.parse(text) : undefined;
        } catch {
          // kept as text
        }
        const path = req.url ?? '/';
        this.requests.push({ method: req.method ?? '', path, headers: req.headers, body, at: Date.now() });
        if (this.down) {
          res.writeHead(503).end();
          return;
        }
        if (req.method === 'OPTIONS') {
          res.writeHead(200, { 'webhook-allowed-origin': String(req.headers['webhook-request-origin'] ?? '') }).end();
          return;
        }
        if (req.headers['aeg-event-type'] === 'SubscriptionValidation') {
          const code = (body as { data: { validationCode: string } }[])[0]?.data.validationCode;
          res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ validationResponse: code }));
          return;
        }
        const event = (Array.isArray(body) ? body[0] : body) as Record<string, unknown>;
        const key = `${path} ${String(event['id'])}`;
        const attempt = (this.#attempts.get(key) ?? 0) + 1;
        this.#attempts.set(key, attempt);
        res.writeHead(attempt <= this.#failures(path, event) ? 500 : 200).end();
      });
    });
  }

  async listen(port = 0): Promise<void> {
    await new Promise<void>((done) => this.#server.listen(port, '127.0.0.1', done));
    this.url = `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
  }

  close(): Promise<void> {
    this.#server.closeAllConnections();
    return new Promise((done) => this.#server.close(() => done()));
  }

  /** Notifications (not handshakes) to `path`, each with its event. */
  notifications(path: string): (SinkRequest & { event: Record<string, unknown> })[] {
    return this.requests
      .filter((r) => r.path === path && r.method === 'POST' && r.headers['aeg-event-type'] === 'Notification')
      .map((r) => ({ ...r, event: (Array.isArray(r.body) ? r.body[0] : r.body) as Record<string, unknown> }));
  }

  /** Notifications to `path` that were accepted (answered 200): the last attempt of each event. */
  delivered(path: string): Record<string, unknown>[] {
    const seen = new Map<string, Record<string, unknown>>();
    for (const n of this.notifications(path)) seen.set(String(n.event['id']), n.event);
    return [...seen.values()];
  }
}

export async function publish(url: string, events: unknown, options: { key?: string; topic?: string; contentType?: string } = {}): Promise<Response> {
  const headers: Record<string, string> = { 'content-type': options.contentType ?? 'application/cloudevents-batch+json; charset=utf-8' };
  if (options.key !== '') headers['aeg-sas-key'] = options.key ?? TOPIC_KEY;
  return fetch(`${url}/runtime/eventgrid/topics/${options.topic ?? TOPIC}/api/events?api-version=2018-01-01`, {
    method: 'POST',
    headers,
    body: typeof events === 'string' ? events : JSON.stringify(events),
  });
}

export function jobEvent(id: string, subject: string, type = 'BatchEndpoints.JobStateChanged', data: Record<string, unknown> = {}): Record<string, unknown> {
  return { specversion: '1.0', id, source: '/batch-endpoints/local', subject, type, time: new Date().toISOString(), data };
}
