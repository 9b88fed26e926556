/**
 * The page's client of the API: the same routes and the same credentials as any other client. The
 * credential is a function key (sent as `x-functions-key`) or a Microsoft Entra access token (sent
 * as `Authorization: Bearer`), kept in sessionStorage: it lives as long as the tab and is never put
 * in a URL. Downloads go through fetch with the same header, so no key appears in a link.
 */

export type Credential = { kind: 'key'; value: string } | { kind: 'bearer'; value: string } | { kind: 'none' };

const STORAGE_KEY = 'batch-endpoints.credential';

export function loadCredential(): Credential {
  try {
    const raw = sessionStorage.getItem(STORAGE_KEY);
    if (raw) {
      const parsed = JSON.parse(raw) as Credential;
      if (parsed.kind === 'none' || ((parsed.kind === 'key' || parsed.kind === 'bearer') && typeof parsed.value === 'string')) return parsed;
    }
  } catch {
    // A value this page did not write: start over.
  }
  return { kind: 'none' };
}

export function saveCredential(credential: Credential): void {
  sessionStorage.setItem(STORAGE_KEY, JSON.stringify(credential));
}

/** The API's root: the page is served at `{routePrefix}/app/`, the API at `{routePrefix}/`. */
export function apiBase(): string {
  const path = location.pathname;
  const at = path.lastIndexOf('/app/');
  return at >= 0 ? path.substring(0, at + 1) : '/api/';
}

function headers(): Record<string, string> {
  const c = loadCredential();
  if (c.kind === 'key') return { 'x-functions-key': c.value };
  if (c.kind === 'bearer') return { authorization: `Bearer ${c.value}` };
  return {};
}

/** An API error: its status and the problem+json's title, detail and fields. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly fields: string[] = [],
  ) {
    super(message);
  }
}

async function send(path: string): Promise<Response> {
  const url = /^https?:/.test(path) ? path : `${apiBase()}${path}`;
  const res = await fetch(url, { headers: headers() });
  if (res.ok) return res;
  let message = `${res.status} ${res.statusText}`;
  let fields: string[] = [];
  try {
    const problem = (await res.json()) as { title?: string; detail?: string; errors?: { field: string; message: string }[] };
    message = problem.detail ?? problem.title ?? message;
    fields = (problem.errors ?? []).map((e) => e.field);
  } catch {
    // Not problem+json (a host's own 401 has no body).
  }
  if (res.status === 401) message = 'Sign in: the API needs a function key or an Entra access token.';
  throw new ApiError(res.status, message, fields);
}

/** GET a JSON resource: `path` under the API root, or an absolute link the API gave (next_link). */
export async function getJson<T>(path: string): Promise<T> {
  return (await (await send(path)).json()) as T;
}

/** Saves a file the API serves (with the credential), named `name`. */
export async function download(path: string, name: string): Promise<void> {
  const blob = await (await send(path)).blob();
  const url = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}
