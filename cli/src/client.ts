/**
 * The CLI's HTTP client of the API (`{url}/api/...`): JSON in and out, the connection's key or
 * token on every request, and every error answer turned into an {@link ApiProblem} (problem+json as
 * the API sends it; anything else wrapped so it reads the same way).
 */
import type { Connection } from './connection.js';
import { ApiProblem, CliError } from './errors.js';

export class ApiClient {
  constructor(readonly connection: Connection) {}

  async #headers(extra: Record<string, string> = {}): Promise<Record<string, string>> {
    const auth = this.connection.auth;
    const headers: Record<string, string> = { accept: 'application/json, application/problem+json', ...extra };
    if (auth.kind === 'key') headers['x-functions-key'] = auth.key;
    if (auth.kind === 'token') headers['authorization'] = `Bearer ${await auth.token()}`;
    return headers;
  }

  /** An absolute URL for a path under `/api` (paths the API hands out as links are used as they are). */
  url(path: string): string {
    return /^https?:\/\//.test(path) ? path : `${this.connection.url}/api/${path.replace(/^\/+/, '')}`;
  }

  /** Sends a request; answers with the response when it is 2xx, else throws its problem. */
  async send(method: string, path: string, options: { body?: unknown; headers?: Record<string, string> } = {}): Promise<Response> {
    const url = this.url(path);
    let response: Response;
    try {
      response = await fetch(url, {
        method,
        headers: await this.#headers({ ...(options.body === undefined ? {} : { 'content-type': 'application/json' }), ...options.headers }),
        ...(options.body === undefined ? {} : { body: JSON.stringify(options.body) }),
      });
    } catch (err) {
      const cause = (err as { cause?: { code?: string; message?: string } }).cause;
      throw new CliError(`Cannot reach ${this.connection.url}: ${cause?.code ?? cause?.message ?? (err as Error).message}`);
    }
    if (response.ok) return response;
    const text = await response.text();
    let problem: Record<string, unknown>;
    try {
      const parsed = JSON.parse(text) as unknown;
      problem = typeof parsed === 'object' && parsed !== null ? (parsed as Record<string, unknown>) : { detail: text };
    } catch {
      problem = { title: response.statusText, ...(text.trim() ? { detail: text.trim().slice(0, 500) } : {}) };
    }
    if (response.status === 401 && this.connection.auth.kind === 'none') {
      problem['detail'] = `${typeof problem['detail'] === 'string' ? `${problem['detail']} ` : ''}(no key or token was sent: pass --key, --token or --resource, or use a profile)`;
    }
    throw new ApiProblem(response.status, problem, `${method} ${new URL(url).pathname}`);
  }

  async json<T = Record<string, unknown>>(method: string, path: string, body?: unknown, headers?: Record<string, string>): Promise<T> {
    const response = await this.send(method, path, { body, ...(headers ? { headers } : {}) });
    if (response.status === 204) return undefined as T;
    const text = await response.text();
    return (text ? JSON.parse(text) : undefined) as T;
  }

  get<T = Record<string, unknown>>(path: string): Promise<T> {
    return this.json<T>('GET', path);
  }

  /** GET, or undefined when the API says 404 (any other error is thrown). */
  async find<T = Record<string, unknown>>(path: string): Promise<T | undefined> {
    try {
      return await this.get<T>(path);
    } catch (err) {
      if (err instanceof ApiProblem && err.status === 404) return undefined;
      throw err;
    }
  }

  /** Every item of a list answer (`{value, next_link}`), following `next_link` pages. */
  async list<T = Record<string, unknown>>(path: string): Promise<T[]> {
    const all: T[] = [];
    let next: string | null | undefined = path;
    while (next) {
      const page: { value: T[]; next_link?: string | null } = await this.get(next);
      all.push(...page.value);
      next = page.next_link;
    }
    return all;
  }
}
