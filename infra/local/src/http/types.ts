import type { IncomingHttpHeaders } from 'node:http';

/** A fully read request as the host's own endpoints see it. */
export interface HostRequest {
  method: string;
  url: URL;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

/** A response from one of the host's own endpoints. */
export interface HostResponse {
  status: number;
  headers?: Record<string, string>;
  body?: string | Buffer;
}

export function json(status: number, value: unknown, headers: Record<string, string> = {}): HostResponse {
  return {
    status,
    headers: { 'content-type': 'application/json; charset=utf-8', ...headers },
    body: JSON.stringify(value),
  };
}

export function empty(status: number, headers: Record<string, string> = {}): HostResponse {
  return { status, headers };
}

export function text(status: number, message: string): HostResponse {
  return { status, headers: { 'content-type': 'text/plain; charset=utf-8' }, body: message };
}

export function header(headers: IncomingHttpHeaders, name: string): string | undefined {
  const v = headers[name.toLowerCase()];
  return Array.isArray(v) ? v[0] : v;
}
