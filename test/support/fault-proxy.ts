import http from 'node:http';
import type { Socket } from 'node:net';
import { devConnectionString } from '../../infra/local/src/storage/azurite.js';
import { parseConnectionString } from '../../shared/storage/clients.js';

/**
 * Failure injection that stays real: an HTTP proxy between the app and Azurite. Every request is
 * forwarded to Azurite unchanged (method, path and query exactly as sent, headers with their case
 * and order, `Host` included, bodies streamed both ways as they come), so SharedKey signatures and
 * SAS URLs stay valid; a request that matches a live rule is answered with an injected failure
 * instead, or its connection is dropped. Nothing about storage is faked: whatever is not failed is
 * Azurite's own answer.
 *
 * Hop-by-hop headers (`Connection`, `Keep-Alive`, `Proxy-*`, `TE`, `Trailer`, `Upgrade`) belong
 * to one connection and are not forwarded: each side keeps its own keep-alive connections.
 * `Expect: 100-continue` is answered by the proxy itself and not forwarded either.
 */

export type StorageService = 'blob' | 'queue' | 'table';
const SERVICES: readonly StorageService[] = ['blob', 'queue', 'table'];

/** Where a service is: a port on 127.0.0.1, or a URL whose origin is used (its path is ignored). */
export type Target = number | string;

/**
 * A failure to inject. A request matches when every given condition holds; conditions left out
 * match anything.
 */
export interface FaultRule {
  /** The service the request came to (each has its own proxy port). */
  service: StorageService;
  /** HTTP method, any case ('PUT', 'get'). */
  method?: string;
  /**
   * Tested against the percent-decoded URL path, account included and query left out:
   * `/devstoreaccount1/container/dir/name with spaces.csv`, `/devstoreaccount1/jobs(PartitionKey='a',RowKey='b')`.
   */
  path?: RegExp;
  /**
   * Tested against the percent-decoded query string without its `?` (`comp=block&blockid=...`,
   * `restype=container&comp=list&prefix=data/`); a request without a query is tested as ''.
   */
  query?: RegExp;
  /**
   * Request headers (names in any case) whose values must match; a header the request does not
   * carry does not match. Repeated headers are tested joined with ', '.
   */
  header?: Record<string, RegExp>;
  /** How many matching requests fail; then the rule is spent. A positive integer, or Infinity (until `cancel()`). */
  times: number;
  /** Status code of the injected answer; default 503. */
  status?: number;
  /**
   * Body of the injected answer. Default: a storage-style error naming `code`, XML for blob and
   * queue, JSON for table, as Azure Storage answers. A body starting with '<' is sent as
   * application/xml, one starting with '{' as application/json, anything else as text/plain.
   */
  body?: string;
  /** Error code of the default body and of the `x-ms-error-code` header; default by status (503 ServerBusy, 500 InternalError, ...). */
  code?: string;
  /** Extra headers on the injected answer, such as `Retry-After` (seconds). */
  headers?: Record<string, string>;
  /**
   * Drop the connection instead of answering: the socket is reset (TCP RST) as soon as the request
   * head arrives, and the client sees ECONNRESET, a network error.
   */
  reset?: boolean;
  /**
   * Acknowledge the request as storage does a successful write (`status`, default 201, an empty
   * body) without forwarding it: the client believes the write is stored, and it is not. This is
   * what a storage crash after acknowledging a write loses (an emulator that had not saved it yet).
   */
  drop?: boolean;
  /**
   * Never answer: the request is read and then held open until the client goes away (a host that
   * was killed while waiting) or the proxy stops. For catching a process between two writes.
   */
  hang?: boolean;
  /**
   * Let this many matching requests through to Azurite first (default 0); failing starts with the
   * next one. Counted among the requests this rule decides: while an earlier live rule matches a
   * request, that rule decides it and this one does not see it.
   */
  after?: number;
}

/** A rule given to `fail()`. */
export interface FaultHandle {
  /** Its place among the proxy's rules, from 0 in the order `fail()` was called (see ProxiedRequest.rule). */
  readonly index: number;
  /** Requests this rule failed so far. */
  readonly hits: number;
  /** Matching requests it let through because of `after`. */
  readonly passed: number;
  /** Whether it has failed `times` requests (or was cancelled) and matches nothing any more. */
  readonly spent: boolean;
  /**
   * Resolves once the rule has failed `times` requests (the last injected answer sent or the last
   * connection dropped). Rejects if the rule is cancelled or the proxy stopped first; an unawaited
   * rejection is not reported as unhandled.
   */
  readonly done: Promise<void>;
  /** Retires the rule at once; requests it would have failed are forwarded. */
  cancel(): void;
}

/** One request the proxy received, logged when its head arrived and updated when it was answered. */
export interface ProxiedRequest {
  /** Order of arrival across all services, from 0. */
  seq: number;
  service: StorageService;
  method: string;
  /** The percent-decoded path, as rules see it. */
  path: string;
  /** The percent-decoded query without '?', as rules see it ('' when there is none). */
  query: string;
  /** Request headers as received (names lower-case). */
  headers: http.IncomingHttpHeaders;
  /**
   * Status of the answer the client got: Azurite's, or the injected one. Undefined while no answer
   * has been sent, and for good when the connection was dropped before one (an injected reset, or
   * Azurite unreachable).
   */
  status: number | undefined;
  /** Whether a rule failed this request (with a status or a reset). */
  injected: boolean;
  /** Whether a rule dropped the connection instead of answering (`reset: true`). */
  reset: boolean;
  /** Index of the rule that failed it, in the order `fail()` was called. */
  rule: number | undefined;
  /** What went wrong forwarding it, if anything (Azurite unreachable, client gone). */
  error: string | undefined;
  /** When its head arrived (epoch ms). */
  at: number;
  /**
   * Milliseconds from its head's arrival to the end of the exchange (answer sent, or connection
   * dropped); undefined while it is in flight.
   */
  ms: number | undefined;
}

/** Conditions on logged requests for `count()` and `requestsMatching()`; each left out matches anything. */
export interface RequestFilter {
  service?: StorageService;
  method?: string;
  path?: RegExp;
  query?: RegExp;
  status?: number;
  injected?: boolean;
}

export interface FaultProxy {
  /**
   * An explicit-endpoint connection string for Azurite's development account with every endpoint
   * on the proxy (`BlobEndpoint=http://127.0.0.1:<port>/devstoreaccount1;...`).
   */
  readonly connectionString: string;
  /** The proxy's port for each service. */
  readonly ports: Readonly<Record<StorageService, number>>;
  /** The origin each service is forwarded to (`http://127.0.0.1:<azurite port>`). */
  readonly targets: Readonly<Record<StorageService, string>>;
  /** Every request received so far, in order of arrival. */
  readonly requests: readonly ProxiedRequest[];
  /** Client connections accepted so far, all services together (keep-alive reuses them). */
  readonly connections: number;
  /** Adds a rule after those already there; rules are checked in order and the first live one that matches decides. */
  fail(rule: FaultRule): FaultHandle;
  /** Requests logged so far that satisfy a filter or a predicate. */
  count(filter: RequestFilter | ((request: ProxiedRequest) => boolean)): number;
  requestsMatching(filter: RequestFilter | ((request: ProxiedRequest) => boolean)): ProxiedRequest[];
  /** Cancels every rule still live. */
  clearRules(): void;
  /** Forgets the request log (counts start again from here). */
  clearLog(): void;
  /** Cancels the rules, closes the listening sockets and drops every connection, both sides. */
  stop(): Promise<void>;
}

/** Hop-by-hop headers (RFC 9110 7.6.1) and Expect: they concern one connection, not the request. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'proxy-authenticate', 'proxy-authorization', 'te', 'trailer', 'upgrade', 'expect']);

const DEFAULT_CODES: Record<number, string> = {
  400: 'InvalidInput',
  403: 'AuthenticationFailed',
  404: 'ResourceNotFound',
  408: 'OperationTimedOut',
  409: 'InjectedConflict',
  412: 'ConditionNotMet',
  429: 'ServerBusy',
  500: 'InternalError',
  502: 'BadGateway',
  503: 'ServerBusy',
  504: 'OperationTimedOut',
};

function decode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    // Malformed percent-encoding: matched as sent.
    return text;
  }
}

/** Keeps only end-to-end headers of a raw header list ([name, value, name, value, ...]). */
function endToEnd(raw: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i] as string;
    if (!HOP_BY_HOP.has(name.toLowerCase())) out.push(name, raw[i + 1] as string);
  }
  return out;
}

function headerValue(headers: http.IncomingHttpHeaders, name: string): string | undefined {
  const value = headers[name.toLowerCase()];
  return Array.isArray(value) ? value.join(', ') : value;
}

function originOf(target: Target): string {
  if (typeof target === 'number') return `http://127.0.0.1:${target}`;
  const url = new URL(target);
  if (url.protocol !== 'http:') throw new Error(`fault proxy: only http targets are supported, not ${target}`);
  return url.origin;
}

/** The blob, queue and table origins of a connection string (explicit endpoints, or development storage). */
export function targetsOf(connectionString: string): Record<StorageService, string> {
  const parts = parseConnectionString(connectionString);
  if (parts['usedevelopmentstorage'] === 'true') {
    return { blob: 'http://127.0.0.1:10000', queue: 'http://127.0.0.1:10001', table: 'http://127.0.0.1:10002' };
  }
  const out: Partial<Record<StorageService, string>> = {};
  for (const service of SERVICES) {
    const endpoint = parts[`${service}endpoint`];
    if (!endpoint) throw new Error(`fault proxy: the connection string has no ${service} endpoint`);
    out[service] = originOf(endpoint);
  }
  return out as Record<StorageService, string>;
}

function errorBody(service: StorageService, code: string, status: number): { body: string; contentType: string } {
  const message = `Injected by the fault proxy: ${status} ${code}.`;
  if (service === 'table') {
    return { body: JSON.stringify({ 'odata.error': { code, message: { lang: 'en-US', value: message } } }), contentType: 'application/json;odata=minimalmetadata;streaming=true;charset=utf-8' };
  }
  return { body: `<?xml version="1.0" encoding="utf-8"?><Error><Code>${code}</Code><Message>${message}</Message></Error>`, contentType: 'application/xml' };
}

function contentTypeOf(body: string): string {
  const start = body.trimStart();
  if (start.startsWith('<')) return 'application/xml';
  if (start.startsWith('{')) return 'application/json';
  return 'text/plain; charset=utf-8';
}

interface LiveRule {
  index: number;
  rule: FaultRule;
  /** Matching requests seen while live (let through or failed). */
  seen: number;
  /** Requests failed (decided; the answer may still be on its way). */
  hits: number;
  /** Injected answers sent or connections dropped. */
  answered: number;
  cancelled: boolean;
  settled: boolean;
  resolve: () => void;
  reject: (err: Error) => void;
}

/** A rule is live until it has failed `times` requests or is cancelled. */
const isLive = (live: LiveRule): boolean => !live.cancelled && live.hits < live.rule.times;

function matchesRule(rule: FaultRule, service: StorageService, method: string, path: string, query: string, headers: http.IncomingHttpHeaders): boolean {
  if (rule.service !== service) return false;
  if (rule.method !== undefined && rule.method.toUpperCase() !== method.toUpperCase()) return false;
  if (rule.path && !rule.path.test(path)) return false;
  if (rule.query && !rule.query.test(query)) return false;
  for (const [name, pattern] of Object.entries(rule.header ?? {})) {
    const value = headerValue(headers, name);
    if (value === undefined || !pattern.test(value)) return false;
  }
  return true;
}

function matchesFilter(filter: RequestFilter | ((request: ProxiedRequest) => boolean), r: ProxiedRequest): boolean {
  if (typeof filter === 'function') return filter(r);
  return (
    (filter.service === undefined || filter.service === r.service) &&
    (filter.method === undefined || filter.method.toUpperCase() === r.method) &&
    (filter.path === undefined || filter.path.test(r.path)) &&
    (filter.query === undefined || filter.query.test(r.query)) &&
    (filter.status === undefined || filter.status === r.status) &&
    (filter.injected === undefined || filter.injected === r.injected)
  );
}

/** Checks a rule's numbers up front, so a typo fails the test that wrote it rather than passing silently. */
function validate(rule: FaultRule): void {
  if (!SERVICES.includes(rule.service)) throw new Error(`fault proxy: unknown service ${String(rule.service)}`);
  if (!(rule.times === Infinity || (Number.isInteger(rule.times) && rule.times > 0))) throw new Error(`fault proxy: times must be a positive integer or Infinity, not ${rule.times}`);
  if (rule.after !== undefined && !(Number.isInteger(rule.after) && rule.after >= 0)) throw new Error(`fault proxy: after must be a whole number, not ${rule.after}`);
  if (rule.status !== undefined && !(Number.isInteger(rule.status) && rule.status >= 200 && rule.status <= 599)) throw new Error(`fault proxy: status must be 200-599, not ${rule.status}`);
  // A global or sticky RegExp keeps lastIndex between tests and would match every other request.
  for (const pattern of [rule.path, rule.query, ...Object.values(rule.header ?? {})]) {
    if (pattern && (pattern.global || pattern.sticky)) throw new Error(`fault proxy: ${String(pattern)} must not have the g or y flag`);
  }
}

async function listen(server: http.Server): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      const address = server.address();
      resolve(typeof address === 'object' && address ? address.port : 0);
    });
  });
}

/**
 * Starts a proxy for each service on a free loopback port, forwarding to the given Azurite
 * endpoints (ports on 127.0.0.1 or URLs), or to those of an Azurite connection string.
 */
export async function startFaultProxy(targets: Record<StorageService, Target> | string): Promise<FaultProxy> {
  const origins: Record<StorageService, string> =
    typeof targets === 'string' ? targetsOf(targets) : { blob: originOf(targets.blob), queue: originOf(targets.queue), table: originOf(targets.table) };
  // Idle upstream connections are closed before Azurite's 5 s keep-alive timeout would close them
  // under a request about to reuse them.
  const agent = new http.Agent({ keepAlive: true, timeout: 4_000, maxSockets: 256 });
  const rules: LiveRule[] = [];
  let log: ProxiedRequest[] = [];
  let seq = 0;
  let connections = 0;
  const sockets = new Set<Socket>();
  let stopped = false;

  function settle(live: LiveRule, error?: Error): void {
    if (live.settled) return;
    live.settled = true;
    if (error) live.reject(error);
    else live.resolve();
  }

  function cancel(live: LiveRule, why: string): void {
    if (!isLive(live)) return;
    live.cancelled = true;
    settle(live, new Error(`fault proxy: rule ${live.index} ${why} after ${live.hits} of ${live.rule.times} failures`));
  }

  function inject(live: LiveRule, entry: ProxiedRequest, req: http.IncomingMessage, res: http.ServerResponse): void {
    const { rule } = live;
    entry.injected = true;
    entry.rule = live.index;
    let once = false;
    const answered = (): void => {
      if (once) return;
      once = true;
      live.answered += 1;
      if (live.answered >= rule.times) settle(live);
    };
    if (rule.reset) {
      entry.reset = true;
      req.socket.resetAndDestroy();
      answered();
      return;
    }
    if (rule.hang) {
      res.once('close', answered);
      req.resume();
      return;
    }
    const status = rule.status ?? (rule.drop ? 201 : 503);
    const code = rule.code ?? DEFAULT_CODES[status] ?? 'InjectedFault';
    const { body, contentType } = rule.drop
      ? { body: '', contentType: 'text/plain' }
      : rule.body !== undefined
        ? { body: rule.body, contentType: contentTypeOf(rule.body) }
        : errorBody(entry.service, code, status);
    // The request body is read to its end first, as a server does before it answers, so the
    // connection stays usable for the client's next request.
    const respond = (): void => {
      if (res.destroyed) return;
      entry.status = status;
      res.writeHead(status, {
        'Content-Type': contentType,
        'Content-Length': Buffer.byteLength(body),
        ...(rule.drop ? { 'x-ms-version': '2025-01-05' } : { 'x-ms-error-code': code }),
        'x-ms-request-id': `fault-proxy-${entry.seq}`,
        ...rule.headers,
      });
      res.end(body);
    };
    // Sent, or the client went away first: either way this failure is over.
    res.once('close', answered);
    if (req.readableEnded) respond();
    else {
      req.once('end', respond);
      req.resume();
    }
  }

  function forward(service: StorageService, entry: ProxiedRequest, req: http.IncomingMessage, res: http.ServerResponse): void {
    const target = new URL(origins[service]);
    const upstream = http.request({
      agent,
      protocol: 'http:',
      hostname: target.hostname,
      port: target.port,
      method: req.method,
      // The request target exactly as the client sent it: no re-encoding of path or query.
      path: req.url,
      // Raw headers keep names' case, order and repeats; Host stays the client's, so signatures
      // and the URLs Azurite writes into its answers (table odata links) name the proxy.
      headers: endToEnd(req.rawHeaders),
      // Node must not add Host, Content-Length or chunking of its own: the raw headers say it all.
      setHost: false,
    });
    upstream.on('response', (answer) => {
      entry.status = answer.statusCode;
      res.writeHead(answer.statusCode ?? 502, answer.statusMessage, endToEnd(answer.rawHeaders));
      answer.pipe(res);
      // Azurite's answer broke off: so does the client's, rather than end as if it were whole.
      answer.on('close', () => {
        if (answer.complete) return;
        entry.error ??= "Azurite's answer broke off";
        res.destroy();
      });
    });
    upstream.on('error', (err) => {
      // Azurite unreachable or gone mid-answer: the client sees its connection drop, as it would
      // talking to Azurite directly.
      entry.error ??= err.message;
      if (!res.headersSent) entry.status = undefined;
      req.socket.destroy();
    });
    // A client that goes away mid-request or mid-answer takes the upstream request with it.
    res.on('close', () => {
      if (!res.writableFinished) {
        entry.error ??= 'the client closed the connection';
        upstream.destroy();
      }
    });
    req.pipe(upstream);
  }

  function handle(service: StorageService, req: http.IncomingMessage, res: http.ServerResponse): void {
    const url = req.url ?? '/';
    const at = url.indexOf('?');
    const method = (req.method ?? 'GET').toUpperCase();
    const entry: ProxiedRequest = {
      seq: seq++,
      service,
      method,
      path: decode(at < 0 ? url : url.substring(0, at)),
      query: at < 0 ? '' : decode(url.substring(at + 1)),
      headers: req.headers,
      status: undefined,
      injected: false,
      reset: false,
      rule: undefined,
      error: undefined,
      at: Date.now(),
      ms: undefined,
    };
    res.once('close', () => {
      entry.ms = Date.now() - entry.at;
    });
    log.push(entry);
    // The first live rule that matches decides: it lets the request through (one of its `after`)
    // or fails it. Later rules do not see it.
    const live = rules.find((r) => isLive(r) && matchesRule(r.rule, service, method, entry.path, entry.query, req.headers));
    if (live) {
      live.seen += 1;
      if (live.seen > (live.rule.after ?? 0)) {
        live.hits += 1;
        inject(live, entry, req, res);
        return;
      }
    }
    forward(service, entry, req, res);
  }

  const servers = new Map<StorageService, http.Server>();
  const ports: Partial<Record<StorageService, number>> = {};
  try {
    for (const service of SERVICES) {
      const server = http.createServer((req, res) => handle(service, req, res));
      server.on('connection', (socket: Socket) => {
        connections += 1;
        sockets.add(socket);
        socket.once('close', () => sockets.delete(socket));
      });
      // A client that sends garbage gets its connection closed, as from any Node server.
      server.on('clientError', (_err, socket: Socket) => socket.destroy());
      servers.set(service, server);
      ports[service] = await listen(server);
    }
  } catch (err) {
    for (const server of servers.values()) server.close();
    agent.destroy();
    throw err;
  }
  const portMap = ports as Record<StorageService, number>;

  const proxy: FaultProxy = {
    connectionString: devConnectionString('127.0.0.1', portMap),
    ports: portMap,
    targets: origins,
    get requests() {
      return log;
    },
    get connections() {
      return connections;
    },
    fail(rule) {
      if (stopped) throw new Error('fault proxy: stopped');
      validate(rule);
      let resolve!: () => void;
      let reject!: (err: Error) => void;
      const done = new Promise<void>((res, rej) => {
        resolve = res;
        reject = rej;
      });
      done.catch(() => undefined);
      const live: LiveRule = { index: rules.length, rule: { ...rule }, seen: 0, hits: 0, answered: 0, cancelled: false, settled: false, resolve, reject };
      rules.push(live);
      return {
        index: live.index,
        get hits() {
          return live.hits;
        },
        get passed() {
          return Math.min(live.seen, live.rule.after ?? 0);
        },
        get spent() {
          return !isLive(live);
        },
        done,
        cancel: () => cancel(live, 'was cancelled'),
      };
    },
    count(filter) {
      return log.reduce((n, r) => (matchesFilter(filter, r) ? n + 1 : n), 0);
    },
    requestsMatching(filter) {
      return log.filter((r) => matchesFilter(filter, r));
    },
    clearRules() {
      for (const live of rules) cancel(live, 'was cleared');
    },
    clearLog() {
      log = [];
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      for (const live of rules) {
        cancel(live, 'was stopped with the proxy');
        // Failures decided but not yet answered never will be now.
        settle(live, new Error(`fault proxy: stopped before rule ${live.index}'s last failure was answered`));
      }
      const closed = [...servers.values()].map((server) => new Promise<void>((resolve) => server.close(() => resolve())));
      for (const socket of sockets) socket.destroy();
      agent.destroy();
      await Promise.all(closed);
    },
  };
  return proxy;
}
