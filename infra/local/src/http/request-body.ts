import type { IncomingMessage } from 'node:http';
import { FnHostError } from '../errors.js';

/**
 * The host's request body limit when FUNCTIONS_REQUEST_BODY_SIZE_LIMIT is not set: Kestrel's
 * MaxRequestBodySize, which the host sets to ScriptConstants.DefaultMaxRequestBodySize (100 MiB).
 */
export const DEFAULT_MAX_REQUEST_BODY_BYTES = 104_857_600;

/**
 * The request body limit in bytes from FUNCTIONS_REQUEST_BODY_SIZE_LIMIT. The host's
 * HttpRequestBodySizeMiddleware applies the setting only when it parses as a whole number and keeps
 * the default otherwise, so a typo does not lift the limit.
 */
export function requestBodyLimit(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env['FUNCTIONS_REQUEST_BODY_SIZE_LIMIT']?.trim();
  if (raw === undefined || !/^\+?\d+$/.test(raw)) return DEFAULT_MAX_REQUEST_BODY_BYTES;
  const bytes = Number(raw);
  return Number.isSafeInteger(bytes) ? bytes : DEFAULT_MAX_REQUEST_BODY_BYTES;
}

/** A request body over the limit; the message is Kestrel's, which the host logs. */
export class RequestBodyTooLargeError extends FnHostError {
  constructor(readonly limit: number) {
    super('ERR_BAD_REQUEST', `Request body too large. The max request body size is ${limit} bytes.`, { details: { limit } });
  }
}

/** The length a request declares in Content-Length; undefined for chunked bodies or none. */
export function declaredLength(req: IncomingMessage): number | undefined {
  const raw = req.headers['content-length'];
  if (raw === undefined || req.headers['transfer-encoding'] !== undefined) return undefined;
  const length = Number(raw);
  return Number.isSafeInteger(length) && length >= 0 ? length : undefined;
}

/**
 * Reads what is left of a request and drops it, so that a client still sending a refused body
 * can finish and read the answer on the same connection instead of being cut off mid-upload.
 */
export function discardRest(req: IncomingMessage): void {
  req.on('error', () => undefined);
  req.resume();
}

/**
 * Reads a whole request body of at most `limit` bytes. A longer one (declared or sent) rejects
 * with {@link RequestBodyTooLargeError} as soon as it is known, and the rest is dropped unread.
 */
export function readRequestBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const declared = declaredLength(req);
  if (declared !== undefined && declared > limit) {
    discardRest(req);
    return Promise.reject(new RequestBodyTooLargeError(limit));
  }
  return new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const settle = (action: () => void): void => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      req.off('close', onClose);
      action();
    };
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size > limit) {
        settle(() => {
          discardRest(req);
          reject(new RequestBodyTooLargeError(limit));
        });
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = (): void => settle(() => resolve(Buffer.concat(chunks, size)));
    const onError = (err: Error): void => settle(() => reject(err));
    // 'close' before 'end' means the client went away mid-body.
    const onClose = (): void =>
      settle(() => reject(new FnHostError('ERR_BAD_REQUEST', 'The client closed the connection before the request body ended.')));
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
    req.on('close', onClose);
  });
}

