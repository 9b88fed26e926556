import { once } from 'node:events';
import { type IncomingMessage, request } from 'node:http';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { TableClient } from '@azure/data-tables';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type FnHostProcess, startFnHost } from '../support/fnhost.js';
import { uniqueName } from '../support/ports.js';
import { waitFor } from '../support/wait.js';

const FIXTURES = join(resolve(import.meta.dirname, '..'), 'fixtures');
/** The same streaming functions on the project's @azure/functions and on 4.3.0, the first with HTTP streams. */
const STREAM_APP = join(FIXTURES, 'fnhost-stream-app');
const V4_3_STREAM_APP = join(FIXTURES, 'fnhost-v4-3-stream-app');
/** FUNCTIONS_REQUEST_BODY_SIZE_LIMIT for both hosts: above what the upload tests send. */
const LIMIT = 40 * 1024 * 1024;

let host: FnHostProcess;
let oldHost: FnHostProcess;
let entities: TableClient;

beforeAll(async () => {
  const env = { FUNCTIONS_REQUEST_BODY_SIZE_LIMIT: String(LIMIT) };
  host = await startFnHost({ appDir: STREAM_APP, env });
  // One Azurite for both.
  oldHost = await startFnHost({ appDir: V4_3_STREAM_APP, env, storageConnection: host.storageConnection });
  entities = TableClient.fromConnectionString(host.storageConnection, 'streamEntities', { allowInsecureConnection: true });
});

afterAll(async () => {
  await Promise.all([host?.stop(), oldHost?.stop()]);
});

/** A request body of `total` bytes in pieces of 1 MiB, without a Content-Length (sent chunked). */
function chunkedBody(total: number): RequestInit {
  let sent = 0;
  const body = new ReadableStream<Uint8Array>({
    pull(controller) {
      const size = Math.min(1024 * 1024, total - sent);
      if (size <= 0) {
        controller.close();
        return;
      }
      sent += size;
      controller.enqueue(new Uint8Array(size));
    },
  });
  return { method: 'POST', body, duplex: 'half' };
}

/** Reads a response line by line as it arrives. */
function lines(res: IncomingMessage): () => Promise<string> {
  const iterator = createInterface({ input: res, crlfDelay: Infinity })[Symbol.asyncIterator]();
  return async () => {
    const next = await iterator.next();
    if (next.done) throw new Error('the response ended');
    return next.value;
  };
}

describe.each([
  { version: '4.16.5 (the project\'s)', target: () => host },
  { version: '4.3.0 (pinned by an old app)', target: () => oldHost },
])('fnhost HTTP streaming (app.setup({ enableHttpStream: true })) with @azure/functions $version', ({ target }) => {
  const url = (path: string): string => `${target().url}/api/${path}`;
  const post = (path: string, value: unknown): Promise<Response> => fetch(url(path), { method: 'POST', body: JSON.stringify(value) });

  it('streams a response chunk by chunk as the function produces it', async () => {
    const started = performance.now();
    const res = await fetch(url('ticks/5'));
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
    const res = await fetch(url('upload?q=big'), { method: 'POST', body: new Uint8Array(size) });
    const body = (await res.json()) as { bytes: number; chunks: number; query: string };
    expect(body.bytes).toBe(size);
    expect(body.chunks).toBeGreaterThan(1);
    expect(body.query).toBe('big');
  });

  it('hands the function the request body as it arrives, before the client has sent all of it', async () => {
    const req = request(url('duplex'), { method: 'POST', headers: { 'content-type': 'application/octet-stream' } });
    req.write(Buffer.alloc(64 * 1024, 1));
    // The function answers a line per piece it reads; if fnhost waited for the whole body, no answer
    // could come while the request is still open.
    const answered = once(req, 'response') as Promise<[IncomingMessage]>;
    const timeout = new Promise<never>((_, reject) =>
      setTimeout(() => reject(new Error('no answer while the request body was still being sent: fnhost buffered it')), 10_000).unref(),
    );
    const [res] = await Promise.race([answered, timeout]);
    expect(res.statusCode).toBe(200);
    const nextLine = lines(res);
    expect(await nextLine()).toMatch(/^got \d+$/);
    // Now the rest, far more than the first piece; the function sees every byte.
    const rest = 24 * 1024 * 1024;
    for (let sent = 0; sent < rest; sent += 1024 * 1024) {
      if (!req.write(Buffer.alloc(1024 * 1024, 2))) await once(req, 'drain');
    }
    req.end();
    let line = await nextLine();
    while (line.startsWith('got ')) line = await nextLine();
    expect(line).toBe(`end ${64 * 1024 + rest}`);
  });

  it('answers 201 only once the output binding has written the entity, with and without a body', async () => {
    const pk = uniqueName('pk');
    // A client that checks the status and reads the entity at once, without reading the answer's body.
    const withBody = await post('entities', { PartitionKey: pk, RowKey: 'a', value: 1 });
    expect(withBody.status).toBe(201);
    expect(await entities.getEntity(pk, 'a')).toMatchObject({ value: 1 });
    expect(await withBody.json()).toEqual({ PartitionKey: pk, RowKey: 'a', value: 1 });

    const noBody = await post('entities?body=none', { PartitionKey: pk, RowKey: 'b', value: 2 });
    expect(noBody.status).toBe(201);
    expect(noBody.headers.get('x-row')).toBe('b');
    expect(await entities.getEntity(pk, 'b')).toMatchObject({ value: 2 });
    expect(await noBody.text()).toBe('');
  });

  it('answers 500, not 201, when the output binding fails after the function answered, and keeps running', async () => {
    const pk = uniqueName('dup');
    expect((await post('entities', { PartitionKey: pk, RowKey: 'r', value: 'first' })).status).toBe(201);
    // The same keys again: the function answers 201, then the insert conflicts.
    const again = await post('entities', { PartitionKey: pk, RowKey: 'r', value: 'second' });
    expect(again.status).toBe(500);
    expect(await again.text()).toBe('');
    const againNoBody = await post('entities?body=none', { PartitionKey: pk, RowKey: 'r', value: 'third' });
    expect(againNoBody.status).toBe(500);
    await waitFor(() => (/Executed 'Functions\.entities' \(Failed, [^\n]*Error while handling parameter/.test(target().output()) ? true : undefined), {
      what: 'the failed invocation in the log',
    });
    // A function that throws before it answers fails the same way.
    expect((await fetch(url('boom'))).status).toBe(500);
    // The host and its storage are still up.
    expect(await entities.getEntity(pk, 'r')).toMatchObject({ value: 'first' });
    const after = await post('entities', { PartitionKey: pk, RowKey: 's', value: 'after' });
    expect(after.status).toBe(201);
    expect(await after.json()).toMatchObject({ RowKey: 's' });
  });

  it('refuses a request body over FUNCTIONS_REQUEST_BODY_SIZE_LIMIT with 500, streamed or declared, and keeps running', async () => {
    const chunked = await fetch(url('upload'), chunkedBody(LIMIT + 1));
    expect(chunked.status).toBe(500);
    const declared = await fetch(url('upload'), { method: 'POST', body: new Uint8Array(LIMIT + 1) });
    expect(declared.status).toBe(500);
    const atLimit = await fetch(url('upload'), chunkedBody(LIMIT));
    expect(((await atLimit.json()) as { bytes: number }).bytes).toBe(LIMIT);
    const logged = `upload: Request body too large. The max request body size is ${LIMIT} bytes.`;
    await waitFor(() => (target().output().includes(logged) ? true : undefined), { what: logged });
    expect((await fetch(url('ticks/1'))).status).toBe(200);
  });
});
