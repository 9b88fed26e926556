import { request } from 'node:http';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type FnHostProcess, HOST_KEY, MASTER_KEY, TEST_APP, startFnHost } from '../support/fnhost.js';
import { waitFor } from '../support/wait.js';

/** The shared HTTP functions on @azure/functions 4.3.0, with a 1 KiB request limit in local.settings.json. */
const V4_3_APP = join(resolve(import.meta.dirname, '..'), 'fixtures', 'fnhost-v4-3-app');

let host: FnHostProcess;
let oldHost: FnHostProcess;

beforeAll(async () => {
  [host, oldHost] = await Promise.all([startFnHost({ appDir: TEST_APP }), startFnHost({ appDir: V4_3_APP, args: ['--no-azurite'] })]);
});

afterAll(async () => {
  await Promise.all([host?.stop(), oldHost?.stop()]);
});

/**
 * Sends a POST's headers, declaring `length` body bytes, and resolves with the status of the answer
 * that comes before any of the body was sent.
 */
function answerBeforeBody(url: string, length: number): Promise<number | undefined> {
  return new Promise((resolveStatus, reject) => {
    const req = request(url, { method: 'POST', headers: { 'content-length': String(length) } }, (res) => {
      res.resume();
      resolveStatus(res.statusCode);
      req.destroy();
    });
    req.on('error', reject);
    req.flushHeaders();
    setTimeout(() => {
      req.destroy();
      reject(new Error('no answer before the body was sent'));
    }, 10_000).unref();
  });
}

/** A request body of `bytes` zero bytes without a Content-Length (sent chunked). */
function chunkedBody(bytes: number): RequestInit {
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      controller.enqueue(new Uint8Array(bytes));
      controller.close();
    },
  });
  return { method: 'POST', body, duplex: 'half' };
}

const api = (path: string): string => `${host.url}/api/${path}`;

describe('fnhost HTTP triggers', () => {
  it('serves a function with app settings from local.settings.json', async () => {
    const res = await fetch(api('hello?name=Ada'));
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
    expect(await res.text()).toBe('Hello, Ada!');
    const post = await fetch(api('hello'), { method: 'POST', body: 'Grace' });
    expect(await post.text()).toBe('Hello, Grace!');
  });

  it('logs one line per invocation with function, id, duration and outcome, and context.log lines', async () => {
    await fetch(api('hello?name=Log'));
    await fetch(api('responses/throw'));
    const out = host.output();
    expect(out).toMatch(/hello: Executed 'Functions\.hello' \(Succeeded, Id=[0-9a-f-]{36}, Duration=\d+ms\)/);
    expect(out).toMatch(/responses: Executed 'Functions\.responses' \(Failed, Id=[0-9a-f-]{36}, Duration=\d+ms\): handler failed/);
    expect(out).toContain('hello: hello called');
    expect(out).toContain('hello: a warning from hello');
  });

  it('routes by template with constraints, optional and catch-all parameters', async () => {
    expect(await (await fetch(api('items/42'))).json()).toEqual({ id: 42, method: 'GET' });
    expect(await (await fetch(api('items/abc'))).json()).toEqual({ name: 'abc' });
    expect((await fetch(api('items/4x2'))).status).toBe(404);
    expect(await (await fetch(api('items/7'), { method: 'DELETE' })).json()).toEqual({ id: 7, method: 'DELETE' });
    expect(await (await fetch(api('optional'))).json()).toEqual({ value: null });
    expect(await (await fetch(api('optional/x'))).json()).toEqual({ value: 'x' });
    expect(await (await fetch(api('files/a/b/c.txt'))).json()).toEqual({ path: 'a/b/c.txt' });
    expect(await (await fetch(api('docs/readme.md'))).json()).toEqual({ name: 'readme', ext: 'md' });
    expect(await (await fetch(api(''))).text()).toBe('root of the prefix');
  });

  it('answers 404 for unknown routes and 405 for methods a route does not take', async () => {
    expect((await fetch(api('no/such/route'))).status).toBe(404);
    expect((await fetch(`${host.url}/elsewhere`)).status).toBe(404);
    const wrongMethod = await fetch(api('items/1'), { method: 'PATCH' });
    expect(wrongMethod.status).toBe(405);
    expect(wrongMethod.headers.get('allow')).toContain('GET');
  });

  it('enforces function and admin auth levels with header or query keys', async () => {
    expect((await fetch(api('functionLevel'))).status).toBe(401);
    expect((await fetch(api('functionLevel?code=wrong'))).status).toBe(401);
    expect((await fetch(api(`functionLevel?code=${HOST_KEY}`))).status).toBe(200);
    expect((await fetch(api('functionLevel'), { headers: { 'x-functions-key': MASTER_KEY } })).status).toBe(200);
    expect((await fetch(api(`adminLevel?code=${HOST_KEY}`))).status).toBe(401);
    const admin = await fetch(api('adminLevel'), { headers: { 'x-functions-key': MASTER_KEY } });
    expect(admin.status).toBe(200);
    expect(await admin.text()).toBe('admin level ok');
  });

  it('reads JSON, form, binary and streamed request bodies', async () => {
    const jsonRes = await fetch(api('echoBody'), {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ a: 1, b: [true] }),
    });
    expect(await jsonRes.json()).toEqual({ kind: 'json', value: { a: 1, b: [true] } });

    const form = new FormData();
    form.set('title', 'report');
    form.set('file', new Blob([new Uint8Array(10)]), 'data.bin');
    expect(await (await fetch(api('echoBody'), { method: 'POST', body: form })).json()).toEqual({
      kind: 'form',
      fields: { title: 'report', file: 'file:data.bin:10' },
    });

    const urlencoded = await fetch(api('echoBody'), { method: 'PUT', body: new URLSearchParams({ x: '1', y: 'two' }) });
    expect(await urlencoded.json()).toEqual({ kind: 'form', fields: { x: '1', y: 'two' } });

    const bytes = new Uint8Array(256).map((_, i) => i);
    const binary = await fetch(api('echoBody'), { method: 'POST', headers: { 'content-type': 'application/octet-stream' }, body: bytes });
    expect(await binary.json()).toEqual({ kind: 'bytes', length: 256, sum: (255 * 256) / 2 });

    const streamed = await fetch(api('echoBody'), { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'streamed text body' });
    expect(await streamed.json()).toEqual({ kind: 'stream', text: 'streamed text body' });
  });

  it('passes query parameters, headers and the request URL', async () => {
    const res = await fetch(api('queryAndHeaders?a=1&b=two'), { headers: { 'x-test-header': 'yes' } });
    const body = (await res.json()) as { query: Record<string, string>; agent: string; url: string };
    expect(body.query).toEqual({ a: '1', b: 'two' });
    expect(body.agent).toBe('yes');
    expect(body.url).toBe(api('queryAndHeaders?a=1&b=two'));
  });

  it('writes status, headers, cookies, binary and streamed response bodies', async () => {
    const created = await fetch(api('responses/created'));
    expect(created.status).toBe(201);
    expect(created.headers.get('location')).toBe('/api/items/1');
    expect(created.headers.get('x-custom')).toBe('abc');
    expect(await created.json()).toEqual({ created: true });

    const cookies = await fetch(api('responses/cookies'));
    expect(cookies.headers.getSetCookie()).toEqual(['session=abc123; path=/; samesite=strict; httponly', 'theme=dark; max-age=3600; path=/']);
    // A Set-Cookie header and cookies together: the host sends both, the header first.
    const both = await fetch(api('responses/cookiesAndHeader'));
    expect(both.headers.getSetCookie()).toEqual(['legacy=1; path=/legacy', 'session=abc123; path=/; httponly']);

    const binary = await fetch(api('responses/binary'));
    expect(binary.headers.get('content-type')).toBe('application/octet-stream');
    expect([...new Uint8Array(await binary.arrayBuffer())]).toEqual([0, 1, 2, 3, 254, 255]);

    expect(await (await fetch(api('responses/stream'))).text()).toBe('chunk0;chunk1;chunk2;chunk3;chunk4;');
    expect((await fetch(api('responses/empty'))).status).toBe(204);
    expect((await fetch(api('responses/throw'))).status).toBe(500);
  });

  it('runs app start and invocation hooks', async () => {
    const res = await fetch(api('hooked'));
    expect(res.headers.get('x-pre-hook')).toBe('yes');
    expect(res.headers.get('x-post-hook')).toBe('yes');
    const body = (await res.json()) as { preInvocations: number; appStarted: boolean };
    expect(body.appStarted).toBe(true);
    expect(body.preInvocations).toBeGreaterThan(0);
  });

  it('serves admin endpoints with the master key only', async () => {
    expect((await fetch(`${host.url}/admin/host/status`)).status).toBe(401);
    const status = await fetch(`${host.url}/admin/host/status`, { headers: { 'x-functions-key': MASTER_KEY } });
    expect(await status.json()).toMatchObject({ state: 'Running' });
    const key = await fetch(`${host.url}/admin/host/systemkeys/eventgrid_extension?code=${MASTER_KEY}`);
    expect(await key.json()).toEqual({ name: 'eventgrid_extension', value: 'test-eventgrid-key' });
  });
});

describe.each([
  { version: '4.16.5 (the project\'s)', target: () => host },
  { version: '4.3.0 (pinned by an old app)', target: () => oldHost },
])('fnhost HTTP requests and cookies with @azure/functions $version', ({ target }) => {
  const url = (path: string): string => `${target().url}/api/${path}`;

  it('gives a request without a body none: GET and HEAD work, POST and DELETE see a null body', async () => {
    const get = await fetch(url('probe'));
    expect(get.status).toBe(200);
    expect(await get.json()).toEqual({ method: 'GET', body: null });
    const head = await fetch(url('probe'), { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.headers.get('x-has-body')).toBe('false');
    expect(await head.text()).toBe('');
    expect(await (await fetch(url('probe'), { method: 'DELETE' })).json()).toEqual({ method: 'DELETE', body: null });
    // fetch sends Content-Length: 0 for a POST without a body; the host sends no body then either.
    expect(await (await fetch(url('probe'), { method: 'POST' })).json()).toEqual({ method: 'POST', body: null });
    expect(await (await fetch(url('probe'), { method: 'POST', body: 'abc' })).json()).toEqual({ method: 'POST', body: 'abc' });
    // 4.16.5 drops a GET body with this warning rather than failing; there was none to drop.
    expect(target().output()).not.toContain('Discarding the body');
  });

  it('writes Set-Cookie as the host does: path=/ unless set, SameSite only when set, values URI-escaped', async () => {
    const res = await fetch(url('cookieJar'));
    expect(res.status).toBe(200);
    expect(res.headers.getSetCookie()).toEqual([
      'plain=v1; path=/',
      'session=abc123; path=/app; samesite=strict; httponly',
      'theme=dark; max-age=3600; path=/',
      'cross=x; path=/; secure; samesite=none',
      'lax=l; domain=example.com; path=/; samesite=lax',
      'dated=a%20b%3Bc; expires=Thu, 01 Jan 2037 00:00:00 GMT; path=/',
    ]);
  });
});

describe('fnhost request body limit (FUNCTIONS_REQUEST_BODY_SIZE_LIMIT)', () => {
  it('refuses a body over the host default of 104857600 bytes with 500, before reading it, and keeps serving', async () => {
    const ran = (): number => host.output().match(/Executed 'Functions\.echoBody'/g)?.length ?? 0;
    const before = ran();
    expect(await answerBeforeBody(api('echoBody'), 104_857_601)).toBe(500);
    const logged = 'echoBody: Request body too large. The max request body size is 104857600 bytes.';
    await waitFor(() => (host.output().includes(logged) ? true : undefined), { what: logged });
    expect(ran()).toBe(before);
    expect((await fetch(api('hello?name=after'))).status).toBe(200);
  });

  it('takes the limit from the app setting: 1024 bytes pass, 1025 fail with or without a Content-Length', async () => {
    const probe = `${oldHost.url}/api/probe`;
    const atLimit = await fetch(probe, { method: 'POST', body: 'x'.repeat(1024) });
    expect(atLimit.status).toBe(200);
    expect(((await atLimit.json()) as { body: string }).body).toHaveLength(1024);
    const over = await fetch(probe, { method: 'POST', body: 'x'.repeat(1025) });
    expect(over.status).toBe(500);
    expect((await fetch(probe, chunkedBody(1025))).status).toBe(500);
    expect((await fetch(probe, chunkedBody(1024))).status).toBe(200);
    const logged = 'probe: Request body too large. The max request body size is 1024 bytes.';
    await waitFor(() => (oldHost.output().includes(logged) ? true : undefined), { what: logged });
    expect(oldHost.output()).not.toMatch(/Executed 'Functions\.probe' \(Failed/);
  });
});
