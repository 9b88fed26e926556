import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type FnHostProcess, startFnHost } from '../support/fnhost.js';

const APP = join(resolve(import.meta.dirname, '..'), 'fixtures', 'fnhost-stream-app');
let host: FnHostProcess;

beforeAll(async () => {
  host = await startFnHost({ appDir: APP, args: ['--no-azurite'] });
});

afterAll(async () => {
  await host?.stop();
});

describe('fnhost HTTP streaming (app.setup({ enableHttpStream: true }))', () => {
  it('streams a response chunk by chunk as the function produces it', async () => {
    const started = performance.now();
    const res = await fetch(`${host.url}/api/ticks/5`);
    expect(res.status).toBe(200);
    expect(res.headers.get('x-streamed')).toBe('yes');
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    const first = await reader.read();
    const firstAt = performance.now() - started;
    let text = new TextDecoder().decode(first.value);
    for (let r = await reader.read(); !r.done; r = await reader.read()) text += new TextDecoder().decode(r.value);
    const total = performance.now() - started;
    expect(text).toBe('tick 0\ntick 1\ntick 2\ntick 3\ntick 4\n');
    // The first tick arrives long before the last one is produced (~500 ms in all).
    expect(total - firstAt).toBeGreaterThan(250);
  });

  it('streams a large request body into the function', async () => {
    const size = 8 * 1024 * 1024;
    const res = await fetch(`${host.url}/api/upload?q=big`, { method: 'POST', body: new Uint8Array(size) });
    const body = (await res.json()) as { bytes: number; chunks: number; query: string };
    expect(body.bytes).toBe(size);
    expect(body.chunks).toBeGreaterThan(1);
    expect(body.query).toBe('big');
  });
});
