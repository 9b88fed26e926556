/**
 * The web page's files (dist/web, built by `npm run build`): served as they are, so the page works
 * wherever the app runs (fnhost, Azure). The files hold no data and no secret: the page calls the
 * API with the credential its user gives it (see web/README.md), so this route is anonymous.
 */
import { createHash } from 'node:crypto';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { extname, join, relative, resolve, sep } from 'node:path';
import type { HttpRequest, HttpResponseInit } from '@azure/functions';
import { BatchError } from '../../shared/errors.js';

/** dist/web, from dist/functions/handlers. */
const ROOT = resolve(import.meta.dirname, '..', '..', 'web');

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
};

interface WebFile {
  body: Buffer;
  type: string;
  etag: string;
}

let files: Map<string, WebFile> | undefined;
let policy = '';

/** Every file of dist/web by its path ('/'-separated), read once: only these can be served. */
function webFiles(): Map<string, WebFile> {
  if (files) return files;
  const found = new Map<string, WebFile>();
  const walk = (dir: string): void => {
    for (const name of readdirSync(dir)) {
      const full = join(dir, name);
      if (statSync(full).isDirectory()) walk(full);
      else {
        const type = TYPES[extname(name)];
        if (!type) continue;
        const body = readFileSync(full);
        found.set(relative(ROOT, full).split(sep).join('/'), { body, type, etag: `"${createHash('sha256').update(body).digest('base64url').substring(0, 27)}"` });
      }
    }
  };
  try {
    walk(ROOT);
  } catch {
    // Not built: every path is then not found, and says how to build it.
  }
  // The page's one inline script is its import map; the policy allows exactly that script.
  const html = found.get('index.html')?.body.toString('utf8') ?? '';
  const importMap = /<script type="importmap">([\s\S]*?)<\/script>/.exec(html)?.[1];
  const hash = importMap === undefined ? '' : ` 'sha256-${createHash('sha256').update(importMap).digest('base64')}'`;
  policy = `default-src 'self'; script-src 'self'${hash}; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'`;
  files = found;
  return found;
}

/** GET /api/app/{*path}: a file of the page; the folder itself is index.html. */
export function getWebFile(request: HttpRequest): Promise<HttpResponseInit> {
  const path = request.params['path'] ?? '';
  const url = new URL(request.url);
  // The page's relative links need the trailing slash.
  if (path === '' && !url.pathname.endsWith('/')) return Promise.resolve({ status: 301, headers: { location: `${url.pathname}/` } });
  const file = webFiles().get(path === '' ? 'index.html' : path);
  if (!file) {
    const hint = webFiles().size === 0 ? ' The web page is not built: run `npm run build`.' : '';
    throw new BatchError('not_found', `The web page has no file '${path}'.${hint}`, { details: { resource: 'Web file', name: path, field: 'path' } });
  }
  const headers: Record<string, string> = {
    'content-type': file.type,
    'cache-control': 'no-cache',
    etag: file.etag,
    'x-content-type-options': 'nosniff',
    'referrer-policy': 'no-referrer',
    ...(file.type.startsWith('text/html') ? { 'content-security-policy': policy } : {}),
  };
  if (request.headers.get('if-none-match') === file.etag) return Promise.resolve({ status: 304, headers });
  return Promise.resolve({ status: 200, headers, body: file.body });
}
