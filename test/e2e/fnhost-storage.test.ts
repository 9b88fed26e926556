import { resolve } from 'node:path';
import { TableClient } from '@azure/data-tables';
import { BlobServiceClient } from '@azure/storage-blob';
import { QueueServiceClient } from '@azure/storage-queue';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type FnHostProcess, TEST_APP, startFnHost } from '../support/fnhost.js';
import { uniqueName } from '../support/ports.js';
import { waitFor } from '../support/wait.js';

const STORAGE_APP = resolve(import.meta.dirname, '..', 'fixtures', 'fnhost-storage-app');

let host: FnHostProcess;
let storageHost: FnHostProcess;
let blobs: BlobServiceClient;
let queues: QueueServiceClient;

beforeAll(async () => {
  [host, storageHost] = await Promise.all([startFnHost({ appDir: TEST_APP }), startFnHost({ appDir: STORAGE_APP })]);
  expect(host.storageConnection).toContain('BlobEndpoint=http://127.0.0.1');
  blobs = BlobServiceClient.fromConnectionString(host.storageConnection);
  queues = QueueServiceClient.fromConnectionString(host.storageConnection);
});

afterAll(async () => {
  await Promise.all([host?.stop(), storageHost?.stop()]);
});

const api = (path: string, base = host): string => `${base.url}/api/${path}`;
const b64 = (text: string): string => Buffer.from(text, 'utf8').toString('base64');
const unb64 = (text: string): string => Buffer.from(text, 'base64').toString('utf8');

function table(connection: string, name: string): TableClient {
  return TableClient.fromConnectionString(connection, name, { allowInsecureConnection: true });
}

/** A blob's text, or undefined while it does not exist. */
async function blobText(container: string, name: string, service = blobs): Promise<string | undefined> {
  try {
    return (await service.getContainerClient(container).getBlobClient(name).downloadToBuffer()).toString('utf8');
  } catch (err) {
    if ((err as { statusCode?: number }).statusCode === 404) return undefined;
    throw err;
  }
}

async function peekAll(queueName: string, connection = host.storageConnection): Promise<string[]> {
  const q = QueueServiceClient.fromConnectionString(connection).getQueueClient(queueName);
  if (!(await q.exists())) return [];
  return (await q.peekMessages({ numberOfMessages: 32 })).peekedMessageItems.map((m) => m.messageText);
}

describe('fnhost blob bindings', () => {
  it('reads a blob as bytes or as a string, and missing blobs as null', async () => {
    const name = `${uniqueName('in')}/data.txt`;
    await blobs.getContainerClient('fnhost-in').createIfNotExists();
    await blobs.getContainerClient('fnhost-in').getBlockBlobClient(name).uploadData(Buffer.from('héllo blob', 'utf8'));

    const found = await (await fetch(api(`storage/blob-read/${encodeURIComponent(name)}`))).json();
    expect(found).toEqual({ bytesIsBuffer: true, bytesLength: Buffer.byteLength('héllo blob'), text: 'héllo blob' });

    const missing = await (await fetch(api('storage/blob-read/no-such-blob.txt'))).json();
    expect(missing).toEqual({ bytesIsBuffer: false, bytesLength: null, text: null });
  });

  it('writes text, JSON and bytes to a path with expressions, creating the container', async () => {
    const container = uniqueName('out');
    const year = new Date().getUTCFullYear();
    for (const [mode, body] of [
      ['text', 'plain text'],
      ['json', '{"a":[1,2]}'],
      ['bytes', 'abc'],
    ] as const) {
      const res = await fetch(api(`storage/blob-write/${container}/${mode}.dat?mode=${mode}`), { method: 'POST', body });
      expect(res.status).toBe(204);
    }
    expect(await blobText(container, `${year}/text.dat`)).toBe('plain text');
    expect(JSON.parse((await blobText(container, `${year}/json.dat`)) ?? 'null')).toEqual({ a: [1, 2] });
    expect(await blobText(container, `${year}/bytes.dat`)).toBe('cba');
  });

  it('fails the invocation when the resolved path is not a valid blob path', async () => {
    const res = await fetch(api('storage/blob-write/Bad_Container/x'), { method: 'POST', body: 'x' });
    expect(res.status).toBe(500);
    expect(host.output()).toContain("Invalid container name: 'Bad_Container'");
  });
});

describe('fnhost queue output binding', () => {
  it('sends one Base64 message per array element to the lower-cased queue, objects as JSON', async () => {
    const suffix = uniqueName('q');
    const res = await fetch(api(`storage/queue-send/${suffix.toUpperCase()}`), {
      method: 'POST',
      body: JSON.stringify({ value: ['first', { second: 2 }] }),
      headers: { 'content-type': 'application/json' },
    });
    expect(res.status).toBe(204);
    const raw = await peekAll(`hello-${suffix}`);
    expect(raw.map(unb64)).toEqual(['first', '{"second":2}']);

    await fetch(api(`storage/queue-send/${suffix}`), { method: 'POST', body: JSON.stringify({ value: { only: true } }) });
    expect((await peekAll(`hello-${suffix}`)).map(unb64)).toEqual(['first', '{"second":2}', '{"only":true}']);
  });
});

describe('fnhost table bindings', () => {
  it('inserts entities (camel-case keys too), reads one by key and queries with filter and take', async () => {
    const name = uniqueName('tbl').replace(/[^a-z0-9]/g, '');
    const write = (entities: unknown): Promise<Response> =>
      fetch(api(`storage/table-write/${name}`), { method: 'POST', body: JSON.stringify({ entities }) });
    expect(
      (
        await write([
          { PartitionKey: 'p1', RowKey: 'r1', Color: 'red', Size: 1 },
          { partitionKey: 'p1', rowKey: 'r2', Color: 'red', Size: 2 },
          { PartitionKey: 'p1', RowKey: 'r3', Color: 'red', Size: 3 },
          { PartitionKey: 'p1', RowKey: 'r4', Color: "blu'e", Size: 4 },
        ])
      ).status,
    ).toBe(204);
    // The binding's partitionKey fills in a missing one.
    expect((await write({ RowKey: 'solo', Color: 'green' })).status).toBe(204);

    // As the host's Tables extension hands entities over: keys and properties, no odata.etag or Timestamp.
    const one = (await (await fetch(api(`storage/table-read/${name}/p1/r2`))).json()) as { entity: Record<string, unknown> };
    expect(one.entity).toEqual({ PartitionKey: 'p1', RowKey: 'r2', Color: 'red', Size: 2 });
    expect(await (await fetch(api(`storage/table-read/${name}/p1/nope`))).json()).toEqual({ entity: null });
    expect(await (await fetch(api(`storage/table-read/${name}/default-pk/solo`))).json()).toMatchObject({
      entity: { Color: 'green' },
    });

    const query = async (color: string): Promise<unknown[]> => {
      const res = await fetch(api(`storage/table-query/${name}/p1?color=${encodeURIComponent(color)}`));
      return ((await res.json()) as { entities: unknown[] }).entities;
    };
    // take: 2 cuts the three red ones; the quote in the value is escaped for OData.
    expect(await query('red')).toEqual([
      { PartitionKey: 'p1', RowKey: 'r1', Color: 'red', Size: 1 },
      { PartitionKey: 'p1', RowKey: 'r2', Color: 'red', Size: 2 },
    ]);
    expect(await query("blu'e")).toEqual([{ PartitionKey: 'p1', RowKey: 'r4', Color: "blu'e", Size: 4 }]);

    // A plain insert of an existing entity is a conflict.
    expect((await write({ PartitionKey: 'p1', RowKey: 'r1', Color: 'again' })).status).toBe(500);
    const rows: string[] = [];
    for await (const e of table(host.storageConnection, name).listEntities<{ Color: string }>()) rows.push(`${e.rowKey}:${e.Color}`);
    expect(rows.sort()).toEqual(['r1:red', 'r2:red', 'r3:red', "r4:blu'e", 'solo:green']);
  });
});

describe('fnhost queue trigger', () => {
  it('delivers Base64 and plain messages, JSON-parsed, with the host metadata, and deletes them', async () => {
    const work = queues.getQueueClient('fnhost-work');
    await work.createIfNotExists();
    const json = await work.sendMessage(b64(JSON.stringify({ kind: 'json', n: 1 })));
    const plain = await work.sendMessage('just text');

    const result = async (id: string): Promise<Record<string, unknown>> =>
      waitFor(async () => {
        const text = await blobText('fnhost-results', `${id}.json`);
        return text === undefined ? undefined : (JSON.parse(text) as Record<string, unknown>);
      }, { what: `result of message ${id}` });

    const first = await result(json.messageId);
    expect(first['value']).toEqual({ kind: 'json', n: 1 });
    expect(first['type']).toBe('object');
    const meta = first['metadata'] as Record<string, unknown>;
    expect(meta).toMatchObject({ id: json.messageId, dequeueCount: 1, queueTrigger: { kind: 'json', n: 1 } });
    for (const k of ['expirationTime', 'insertionTime', 'nextVisibleTime']) expect(typeof meta[k]).toBe('string');
    expect(typeof meta['popReceipt']).toBe('string');

    const second = await result(plain.messageId);
    expect(second).toMatchObject({ value: 'just text', type: 'string' });

    // Processed messages are deleted.
    await waitFor(async () => ((await work.getProperties()).approximateMessagesCount === 0 ? true : undefined), {
      what: 'the work queue to empty',
    });
  });

  it('exposes JSON message properties as binding data', async () => {
    const orders = queues.getQueueClient('fnhost-orders');
    await orders.createIfNotExists();
    const orderId = uniqueName('order');
    await orders.sendMessage(b64(JSON.stringify({ orderId, total: 12.5 })));
    const text = await waitFor(() => blobText('fnhost-orders', `${orderId}.json`), { what: 'the order blob' });
    expect(JSON.parse(text)).toEqual({ orderId, total: 12.5, handled: true });
  });

  it('moves a message that keeps failing to <queue>-poison after maxDequeueCount attempts', async () => {
    const connection = storageHost.storageConnection;
    const failQueue = QueueServiceClient.fromConnectionString(connection).getQueueClient('fnhost-fail');
    await failQueue.createIfNotExists();
    const text = uniqueName('poison-me');
    await failQueue.sendMessage(b64(text));

    const poisoned = await waitFor(
      async () => {
        const found = (await peekAll('fnhost-fail-poison', connection)).filter((m) => unb64(m) === text);
        return found.length > 0 ? found : undefined;
      },
      { what: 'the poison message', timeoutMs: 30_000 },
    );
    // Copied as stored (Base64), once.
    expect(poisoned).toEqual([b64(text)]);
    const attempts = (await (await fetch(api('attempts', storageHost))).json()) as { queue: Record<string, number[]> };
    expect(attempts.queue[text]).toEqual([1, 2]);
    expect((await peekAll('fnhost-fail', connection)).map(unb64)).not.toContain(text);
  });
});

describe('fnhost blob trigger', () => {
  async function runsFor(name: string): Promise<Record<string, unknown>[]> {
    const rows: Record<string, unknown>[] = [];
    const t = table(host.storageConnection, 'fnhostblobruns');
    try {
      for await (const e of t.listEntities<Record<string, unknown>>({ queryOptions: { filter: `PartitionKey eq '${name.replace(/\//g, '|')}'` } })) {
        rows.push(e);
      }
    } catch (err) {
      if ((err as { statusCode?: number }).statusCode !== 404) throw err;
    }
    return rows;
  }

  it('fires once per new or changed blob whose name matches, with the host metadata', async () => {
    const watch = blobs.getContainerClient('fnhost-watch');
    await watch.createIfNotExists();
    const first = `${uniqueName('dir')}/a`;
    await watch.getBlockBlobClient(`${first}.txt`).uploadData(Buffer.from('first blob'), { metadata: { owner: 'ada' } });
    await watch.getBlockBlobClient(`${first}.json`).uploadData(Buffer.from('not matched'));

    expect(await waitFor(() => blobText('fnhost-watched', `${first}.out`), { what: 'the first output' })).toBe('FIRST BLOB');
    const [run] = await waitFor(async () => {
      const rows = await runsFor(first);
      return rows.length > 0 ? rows : undefined;
    });
    expect(run).toMatchObject({ IsBuffer: true, BlobTrigger: `fnhost-watch/${first}.txt`, ContentLength: 10, Owner: 'ada' });
    expect(String(run?.['Uri'])).toMatch(new RegExp(`/fnhost-watch/${first}\\.txt$`));

    // A second blob is found by a later scan; by then the first had its chance to fire again.
    const second = `${uniqueName('dir')}/b`;
    await watch.getBlockBlobClient(`${second}.txt`).uploadData(Buffer.from('second'));
    expect(await waitFor(() => blobText('fnhost-watched', `${second}.out`), { what: 'the second output' })).toBe('SECOND');
    await waitFor(async () => ((await runsFor(second)).length === 1 ? true : undefined));
    expect(await runsFor(first)).toHaveLength(1);

    // Changing a blob (new ETag) fires again.
    await watch.getBlockBlobClient(`${first}.txt`).uploadData(Buffer.from('first, changed'));
    expect(await waitFor(async () => ((await blobText('fnhost-watched', `${first}.out`)) === 'FIRST, CHANGED' ? true : undefined))).toBe(true);
    await waitFor(async () => ((await runsFor(first)).length === 2 ? true : undefined), { what: 'a second run' });
    expect(await blobText('fnhost-watched', `${first}.json.out`)).toBeUndefined();
  });

  it('reports a blob that keeps failing on webjobs-blobtrigger-poison after maxDequeueCount attempts', async () => {
    const connection = storageHost.storageConnection;
    const service = BlobServiceClient.fromConnectionString(connection);
    const container = service.getContainerClient('fnhost-fail-blobs');
    await container.createIfNotExists();
    const name = `${uniqueName('bad')}.bin`;
    await container.getBlockBlobClient(name).uploadData(Buffer.from('x'));

    const message = await waitFor(
      async () => {
        const found = (await peekAll('webjobs-blobtrigger-poison', connection))
          .map((m) => JSON.parse(unb64(m)) as Record<string, unknown>)
          .find((m) => m['BlobName'] === name);
        return found;
      },
      { what: 'the blob poison message', timeoutMs: 30_000 },
    );
    expect(message).toMatchObject({
      Type: 'BlobTrigger',
      FunctionId: 'Host.Functions.blobAlwaysFails',
      BlobType: 'BlockBlob',
      ContainerName: 'fnhost-fail-blobs',
      BlobName: name,
    });
    expect(typeof message['ETag']).toBe('string');
    const attempts = (await (await fetch(api('attempts', storageHost))).json()) as { blob: Record<string, number[]> };
    expect(attempts.blob[name]).toHaveLength(2);
  });
});

describe('fnhost storage shutdown', () => {
  it('stops polling on SIGTERM but lets a running queue-triggered function finish', async () => {
    const slow = QueueServiceClient.fromConnectionString(storageHost.storageConnection).getQueueClient('fnhost-slow');
    await slow.createIfNotExists();
    await slow.sendMessage(b64(JSON.stringify({ ms: 1500 })));
    await waitFor(() => (storageHost.output().includes('slowQueue started for 1500ms') ? true : undefined), {
      what: 'the slow function to start',
    });
    expect(await storageHost.stop()).toBe(0);
    const out = storageHost.output();
    expect(out).toContain('slowQueue finished');
    expect(out).toMatch(/Executed 'Functions\.slowQueue' \(Succeeded/);
    expect(out.indexOf('slowQueue finished')).toBeGreaterThan(out.indexOf('SIGTERM received'));
  });
});
