import type { IncomingHttpHeaders, IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import { request as httpRequest } from 'node:http';
import { FnHostError, describeError } from '../errors.js';
import type { Logger } from '../log.js';
import type { BindingData } from '../worker/binding-data.js';
import type { Invoker } from '../worker/invoker.js';
import type { RegisteredFunction } from '../worker/worker-runtime.js';
import { RequestBodyTooLargeError, declaredLength, discardRest, readRequestBody } from './request-body.js';

/**
 * Headers of one connection, which a proxy does not pass on (RFC 9110 7.6.1), and Expect, which
 * fnhost's own server has already answered with 100 Continue.
 */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'expect',
]);

/**
 * A response held back until its invocation ends starts streaming once it holds this much, so a
 * large body does not sit in memory whole; its end is still held.
 */
const HOLD_LIMIT_BYTES = 16 * 1024 * 1024;

/** Request bodies with a Content-Length up to this size are read before the function runs. */
const PREREAD_BYTES = 64 * 1024;

/**
 * `headers` without hop-by-hop ones and those the Connection header names. A request keeps
 * Transfer-Encoding: Node's client sends a chunked body without framing otherwise for methods like
 * DELETE, and the library reads the body as it was sent.
 */
function forwardable(headers: IncomingHttpHeaders, keepFraming: boolean): OutgoingHttpHeaders {
  const named = new Set(
    String(headers.connection ?? '')
      .split(',')
      .map((h) => h.trim().toLowerCase())
      .filter((h) => h !== ''),
  );
  const out: OutgoingHttpHeaders = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || named.has(name)) continue;
    if (HOP_BY_HOP.has(name) && !(keepFraming && name === 'transfer-encoding')) continue;
    out[name] = value;
  }
  return out;
}

function statusAllowsBody(status: number): boolean {
  return status >= 200 && status !== 204 && status !== 304;
}

/**
 * The client's side of a streamed invocation. As in the host, where Kestrel sends what its YARP
 * forwarder copies from the worker, the head goes out with the first body bytes and the response
 * ends only when the invocation has finished, outputs included. A response the function had
 * already finished producing when its bytes arrive is held whole until then, so that a failed
 * output binding can still answer 500 instead of a status the invocation did not earn.
 */
class ClientAnswer {
  #status = 200;
  #headers: OutgoingHttpHeaders = {};
  #held: Buffer[] = [];
  #heldBytes = 0;
  #done = false;

  constructor(
    private readonly res: ServerResponse,
    private readonly isHead: boolean,
  ) {}

  head(status: number, headers: OutgoingHttpHeaders): void {
    this.#status = status;
    this.#headers = headers;
  }

  /**
   * A piece of the body; `live` says the function is still producing its response, so the client
   * should see it now. Returns false when the client is not keeping up.
   */
  write(chunk: Buffer, live: boolean): boolean {
    if (this.#done) return true;
    if (!this.res.headersSent && (live || this.#heldBytes + chunk.length > HOLD_LIMIT_BYTES)) {
      this.res.writeHead(this.#status, this.#headers);
      for (const held of this.#held) this.res.write(held);
      this.#held = [];
    }
    if (this.res.headersSent) return this.res.write(chunk);
    this.#held.push(chunk);
    this.#heldBytes += chunk.length;
    return true;
  }

  succeed(): void {
    if (this.#done) return;
    this.#done = true;
    if (this.res.headersSent) {
      this.res.end();
      return;
    }
    const body = Buffer.concat(this.#held, this.#heldBytes);
    this.#held = [];
    const headers = { ...this.#headers };
    if (headers['content-length'] === undefined && !this.isHead && statusAllowsBody(this.#status)) {
      headers['content-length'] = String(body.length);
    }
    this.res.writeHead(this.#status, headers);
    this.res.end(body);
  }

  /** 500 while nothing was sent; after that the connection is cut, as Kestrel does, so the client cannot take it for complete. */
  fail(): void {
    if (this.#done) return;
    this.#done = true;
    this.#held = [];
    if (this.res.headersSent) {
      this.res.destroy();
      return;
    }
    this.res.writeHead(500);
    this.res.end();
  }
}

export interface StreamedInvocation {
  fn: RegisteredFunction;
  req: IncomingMessage;
  res: ServerResponse;
  url: URL;
  /** The library's own HTTP server for this app. */
  streamUri: string;
  bodyLimit: number;
  invocationId: string;
  /** Binding data of the request, given its body when it was read before the function runs (else none). */
  bindingDataOf: (preread: Buffer) => BindingData;
  invoker: Invoker;
  logger: Logger;
}

/**
 * Runs an HTTP-triggered function of an app with HTTP streams. Like the host, fnhost forwards the
 * request to the library's proxy server while the invocation runs, the body as it arrives and up
 * to the body limit, and copies the library's response back. The invocation's outputs are written
 * only after the library's response has arrived whole, and the client's response ends only after
 * they were written; a failure on the way answers 500, or cuts a response already started.
 * Resolves once the client has its answer.
 */
export async function invokeStreamed(o: StreamedInvocation): Promise<void> {
  const { fn, req, res, url, logger, invocationId, bodyLimit } = o;
  const method = req.method ?? 'GET';
  const answer = new ClientAnswer(res, method.toUpperCase() === 'HEAD');
  const logTooLarge = (): void =>
    logger.write({ level: 'error', category: 'host', functionName: fn.name, invocationId, message: new RequestBodyTooLargeError(bodyLimit).message });

  const declared = declaredLength(req);
  if (declared !== undefined && declared > bodyLimit) {
    logTooLarge();
    discardRest(req);
    answer.fail();
    return;
  }
  // The host's HTTP trigger binding reads a body with a Content-Length before the function runs,
  // for binding data. fnhost does so only for small ones, which keeps JSON properties as binding
  // data for API calls while uploads stream.
  const preread = declared !== undefined && declared <= PREREAD_BYTES ? await readRequestBody(req, bodyLimit) : undefined;
  const bindingData = o.bindingDataOf(preread ?? Buffer.alloc(0));

  // The host's forwarding task: settles when the library's response has arrived whole.
  let forwarded!: () => void;
  let forwardFailed!: (err: Error) => void;
  const forwarding = new Promise<void>((resolve, reject) => {
    forwarded = resolve;
    forwardFailed = reject;
  });
  forwarding.catch(() => undefined);
  let forwardSettled = false;
  let failure: Error | undefined;
  let failedNow!: () => void;
  const failedSignal = new Promise<'failed'>((resolve) => {
    failedNow = () => resolve('failed');
  });
  let received = 0;
  // The function is producing its response until the programming model has returned it.
  let producing = true;

  const forward = httpRequest(new URL(`${url.pathname}${url.search}`, o.streamUri), {
    method,
    headers: {
      ...forwardable(req.headers, true),
      'x-ms-invocation-id': invocationId,
      'x-forwarded-host': url.host,
      'x-forwarded-proto': url.protocol.replace(':', ''),
    },
  });

  function onBody(chunk: Buffer): void {
    received += chunk.length;
    if (received > bodyLimit) {
      logTooLarge();
      fail(new RequestBodyTooLargeError(bodyLimit));
      return;
    }
    if (!forward.write(chunk)) req.pause();
  }

  /** Ends the exchange as failed: stops forwarding, answers the client, fails the forwarding task. */
  function fail(err: Error): void {
    if (failure) return;
    failure = err;
    req.off('data', onBody);
    discardRest(req);
    if (!forwardSettled) forward.destroy();
    forwardSettled = true;
    forwardFailed(err);
    answer.fail();
    failedNow();
  }

  forward.on('response', (proxied: IncomingMessage) => {
    answer.head(proxied.statusCode ?? 200, forwardable(proxied.headers, false));
    proxied.on('data', (chunk: Buffer) => {
      try {
        if (!answer.write(chunk, producing)) {
          proxied.pause();
          res.once('drain', () => proxied.resume());
        }
      } catch (err) {
        fail(err instanceof Error ? err : new Error(String(err)));
      }
    });
    proxied.on('end', () => {
      if (forwardSettled) return;
      forwardSettled = true;
      forwarded();
    });
    proxied.on('error', (err) => fail(err));
    proxied.on('close', () => {
      if (!forwardSettled) fail(new FnHostError('ERR_INVOCATION', 'The HTTP stream proxy closed the response before it ended.'));
    });
  });
  forward.on('error', (err) => {
    if (failure) return;
    logger.warn(`HTTP stream proxy for ${fn.name} failed: ${describeError(err)}`);
    fail(err);
  });
  res.on('close', () => {
    if (!res.writableFinished) fail(new FnHostError('ERR_INVOCATION', 'The client closed the connection before the response ended.'));
  });

  if (preread) {
    forward.end(preread);
  } else {
    // The library takes the request up by its invocation id before the function reads any body.
    forward.flushHeaders();
    forward.on('drain', () => req.resume());
    req.on('data', onBody);
    req.on('end', () => {
      if (!failure) forward.end();
    });
  }

  const invocation = o.invoker.invoke(fn, {
    invocationId,
    triggerData: { http: { method, url: url.toString() } },
    bindingData,
    beforeOutputs: async () => {
      producing = false;
      await forwarding;
    },
  });
  const first = await Promise.race([invocation, failedSignal]);
  // After a failed exchange the invocation fails too (it cannot write outputs) and logs itself.
  if (first === 'failed') return;
  if (first.error) fail(first.error);
  else answer.succeed();
}
