import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import { AzureNamedKeyCredential, type TableEntityResult, TableClient, generateTableSas, odata } from '@azure/data-tables';
import { BlobSASPermissions, BlobServiceClient, type ContainerClient } from '@azure/storage-blob';
import { QueueServiceClient } from '@azure/storage-queue';
import ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEV_ACCOUNT, DEV_KEY } from '../../infra/local/src/storage/azurite.js';
import { fastList, fastRead } from '../../shared/storage/fast-read.js';
import { startAzurite } from '../support/azurite.js';
import { type Api, type Json, PENGUIN_MODEL, deploy, ds, readBlob, startProductHost, upload, waitForJob } from '../support/batch.js';
import { type FaultProxy, startFaultProxy } from '../support/fault-proxy.js';
import { cleanupsAfterAll } from '../support/cleanups.js';
import { type FnHostProcess, tempDir } from '../support/fnhost.js';
import { uniqueName } from '../support/ports.js';

/**
 * The fault proxy against real Azurite: transparent for everything it does not fail, and each kind
 * of rule failing exactly what it names, as the storage SDKs see it.
 */

let storage: { connectionString: string; stop: () => Promise<void> };
let proxy: FaultProxy;
let direct: BlobServiceClient;
let via: BlobServiceClient;

beforeAll(async () => {
  storage = await startAzurite();
  proxy = await startFaultProxy(storage.connectionString);
  direct = BlobServiceClient.fromConnectionString(storage.connectionString);
  via = BlobServiceClient.fromConnectionString(proxy.connectionString);
});

afterAll(async () => {
  await proxy?.stop();
  await storage?.stop();
});

const table = (connection: string, name: string): TableClient => TableClient.fromConnectionString(connection, name, { allowInsecureConnection: true });

/** The error an SDK call failed with (the test fails if it did not). */
async function failure(call: Promise<unknown>): Promise<{ statusCode?: number; code?: string; message: string; details?: { errorCode?: string } }> {
  try {
    await call;
  } catch (err) {
    return err as { statusCode?: number; code?: string; message: string };
  }
  throw new Error('expected the call to fail');
}

async function newContainers(): Promise<{ name: string; direct: ContainerClient; via: ContainerClient }> {
  const name = uniqueName('fp');
  await via.getContainerClient(name).create();
  return { name, direct: direct.getContainerClient(name), via: via.getContainerClient(name) };
}

/** A raw request, for what the SDKs do not show: framing, exact headers. */
function rawRequest(url: string, options: { method: string; headers?: Record<string, string>; chunks?: Buffer[] }): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: options.method, headers: options.headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    for (const chunk of options.chunks ?? []) req.write(chunk);
    req.end();
  });
}

describe('fault proxy: transparent', () => {
  it('blob upload, download, range read, list and block staging give what Azurite gives directly', async () => {
    const c = await newContainers();
    const odd = 'dir one/a #1?x=%41&y=+ é漢字🐧.csv';
    const big = randomBytes(5 * 1024 * 1024);
    await c.via.getBlockBlobClient(odd).upload('odd,name\n1,2\n', 12);
    await c.via.getBlockBlobClient('big.bin').upload(big, big.length);
    await c.via.getBlockBlobClient('plain.txt').upload('plain', 5, { metadata: { kind: 'test' }, blobHTTPHeaders: { blobContentType: 'text/plain' } });

    // Downloads: the same bytes and properties either way.
    expect((await c.via.getBlobClient(odd).downloadToBuffer()).toString()).toBe('odd,name\n1,2\n');
    expect((await c.direct.getBlobClient(odd).downloadToBuffer()).toString()).toBe('odd,name\n1,2\n');
    expect((await c.via.getBlobClient('big.bin').downloadToBuffer()).equals(big)).toBe(true);
    const [propsVia, propsDirect] = await Promise.all([c.via.getBlobClient('plain.txt').getProperties(), c.direct.getBlobClient('plain.txt').getProperties()]);
    expect(propsVia.etag).toBe(propsDirect.etag);
    expect(propsVia.contentMD5).toEqual(propsDirect.contentMD5);
    expect(propsVia.metadata).toEqual({ kind: 'test' });
    expect(propsVia.contentType).toBe('text/plain');

    // A range read (x-ms-range) through the proxy.
    const range = await c.via.getBlobClient('big.bin').download(1_000_003, 123_457);
    expect(range.contentLength).toBe(123_457);
    const chunks: Buffer[] = [];
    for await (const chunk of range.readableStreamBody as NodeJS.ReadableStream) chunks.push(chunk as Buffer);
    expect(Buffer.concat(chunks).equals(big.subarray(1_000_003, 1_000_003 + 123_457))).toBe(true);

    // Staged blocks, committed through the proxy.
    const blocks = ['a', 'b', 'c'].map((b) => Buffer.from(`block-${b}`).toString('base64'));
    const staged = c.via.getBlockBlobClient('staged/blocks é.txt');
    for (const [i, id] of blocks.entries()) await staged.stageBlock(id, Buffer.from(`part ${i};`), 7);
    const uncommitted = await staged.getBlockList('uncommitted');
    expect(uncommitted.uncommittedBlocks?.map((b) => b.name)).toEqual(blocks);
    await staged.commitBlockList(blocks);
    expect((await c.direct.getBlobClient('staged/blocks é.txt').downloadToBuffer()).toString()).toBe('part 0;part 1;part 2;');
    const committedVia = await staged.getBlockList('committed');
    const committedDirect = await c.direct.getBlockBlobClient('staged/blocks é.txt').getBlockList('committed');
    expect(committedVia.committedBlocks).toEqual(committedDirect.committedBlocks);

    // Listings, flat and by folder.
    const list = async (client: ContainerClient): Promise<unknown[]> => {
      const out: unknown[] = [];
      for await (const b of client.listBlobsFlat({ includeMetadata: true })) out.push([b.name, b.properties.contentLength, b.properties.etag, b.metadata]);
      return out;
    };
    const listed = await list(c.via);
    expect(listed).toEqual(await list(c.direct));
    expect(listed.map((b) => (b as string[])[0])).toEqual(['big.bin', odd, 'plain.txt', 'staged/blocks é.txt']);
    const folders = async (client: ContainerClient): Promise<string[]> => {
      const out: string[] = [];
      for await (const item of client.listBlobsByHierarchy('/')) out.push(item.name);
      return out;
    };
    expect(await folders(c.via)).toEqual(await folders(c.direct));
    expect((await folders(c.via)).sort()).toEqual(['big.bin', 'dir one/', 'plain.txt', 'staged/']);

    // Everything above went through the proxy, none of it failed.
    expect(proxy.count({ path: new RegExp(`^/devstoreaccount1/${c.name}`), injected: true })).toBe(0);
    expect(proxy.count({ service: 'blob', method: 'PUT', path: new RegExp(`/${c.name}/big\\.bin$`) })).toBe(1);
    // The odd name arrives percent-encoded and is matched decoded.
    expect(proxy.count({ service: 'blob', method: 'GET', path: new RegExp(`/${c.name}/dir one/a #1\\?x=%41&y=\\+ é漢字🐧\\.csv$`) })).toBe(1);
    expect(proxy.requestsMatching({ method: 'GET', path: /🐧/ }).every((r) => r.path.startsWith('/devstoreaccount1/'))).toBe(true);
  });

  it("serves SAS GETs and the app's keep-alive fast reads and listings, on reused connections", async () => {
    const c = await newContainers();
    const odd = 'sas dir/100% #sure? ünïcødé 🐧.txt';
    await c.via.getBlockBlobClient(odd).upload('via a SAS', 9);
    await c.via.getBlockBlobClient('sas dir/second.txt').upload('second', 6);

    const sasUrl = await c.via.getBlobClient(odd).generateSasUrl({ permissions: BlobSASPermissions.parse('r'), expiresOn: new Date(Date.now() + 3_600_000) });
    expect(sasUrl.startsWith(`http://127.0.0.1:${proxy.ports.blob}/`)).toBe(true);
    const res = await fetch(sasUrl);
    expect(res.status).toBe(200);
    expect(await res.text()).toBe('via a SAS');
    // A ranged SAS GET.
    const ranged = await fetch(sasUrl, { headers: { 'x-ms-range': 'bytes=4-8' } });
    expect(ranged.status).toBe(206);
    expect(await ranged.text()).toBe('a SAS');

    // The app's own fast path (plain keep-alive GETs on a SAS it signs) through the proxy.
    const before = proxy.connections;
    for (let i = 0; i < 10; i++) expect((await fastRead(c.via, odd, { maxBytes: 1024 }))?.toString()).toBe('via a SAS');
    expect((await fastRead(c.via, odd, { maxBytes: 1024, range: { start: 4, end: 9 } }))?.toString()).toBe('a SAS');
    expect(await fastList(c.via, 'sas dir/')).toEqual(await fastList(c.direct, 'sas dir/'));
    expect((await fastList(c.via, 'sas dir/'))?.map(({ name, size }) => ({ name, size }))).toEqual([
      { name: odd, size: 9 },
      { name: 'sas dir/second.txt', size: 6 },
    ]);
    // Thirteen requests, on the one connection the fast path keeps alive.
    expect(proxy.connections - before).toBe(1);
  });

  it('keeps request framing: chunked bodies reach Azurite chunked, answers come back byte for byte', async () => {
    const c = await newContainers();
    const blobSas = (base: BlobServiceClient, name: string, permissions = 'r'): Promise<string> =>
      base.getContainerClient(c.name).getBlobClient(name).generateSasUrl({ permissions: BlobSASPermissions.parse(permissions), expiresOn: new Date(Date.now() + 3_600_000) });

    // Azurite answers a chunked Put Blob 400 (it wants a Content-Length): through the proxy too,
    // which shows the body was not re-framed on the way.
    const parts = [Buffer.from('chunk one\n'), randomBytes(70_000), Buffer.from('\nlast chunk')];
    const chunkedPut = { method: 'PUT', headers: { 'x-ms-blob-type': 'BlockBlob', 'Transfer-Encoding': 'chunked' }, chunks: parts };
    const [viaPut, directPut] = [await rawRequest(await blobSas(via, 'chunked.bin', 'cw'), chunkedPut), await rawRequest(await blobSas(direct, 'chunked.bin', 'cw'), chunkedPut)];
    expect([viaPut.status, directPut.status]).toEqual([400, 400]);

    // A chunked Insert Entity on a table SAS, which Azurite takes: the body arrives whole.
    const tableName = uniqueName('fpchunked');
    await table(proxy.connectionString, tableName).createTable();
    const sas = generateTableSas(tableName, new AzureNamedKeyCredential(DEV_ACCOUNT, DEV_KEY), { permissions: { add: true, query: true }, expiresOn: new Date(Date.now() + 3_600_000) });
    const long = 'é'.repeat(20_000);
    const insert = await rawRequest(`http://127.0.0.1:${proxy.ports.table}/${DEV_ACCOUNT}/${tableName}?${sas}`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Accept: 'application/json;odata=nometadata', 'Transfer-Encoding': 'chunked', 'x-ms-version': '2019-02-02' },
      chunks: [Buffer.from('{"PartitionKey":"p","RowKey":"r",'), Buffer.from(`"long":"${long}",`), Buffer.from('"n":1}')],
    });
    expect(insert.status).toBe(201);
    expect(insert.headers['transfer-encoding']).toBe('chunked');
    expect((await table(storage.connectionString, tableName).getEntity('p', 'r'))['long']).toBe(long);
    // Azurite's chunked table answers, read through the proxy and directly: the same bytes.
    const query = (port: number): Promise<{ status: number; body: Buffer }> =>
      rawRequest(`http://127.0.0.1:${port}/${DEV_ACCOUNT}/${tableName}()?${sas}`, { method: 'GET', headers: { Accept: 'application/json;odata=nometadata', 'x-ms-version': '2019-02-02' } });
    const [viaQuery, directQuery] = await Promise.all([query(proxy.ports.table), query(Number(new URL(proxy.targets.table).port))]);
    expect(viaQuery.status).toBe(200);
    expect(viaQuery.body.equals(directQuery.body)).toBe(true);

    // The same blob GET either way: the same body, and the same headers but those of one response.
    const whole = Buffer.concat(parts);
    await c.direct.getBlockBlobClient('whole.bin').upload(whole, whole.length, { metadata: { origin: 'test' } });
    const [a, b] = await Promise.all([rawRequest(await blobSas(via, 'whole.bin'), { method: 'GET' }), rawRequest(await blobSas(direct, 'whole.bin'), { method: 'GET' })]);
    expect(a.body.equals(whole)).toBe(true);
    const stable = (h: http.IncomingHttpHeaders): Record<string, unknown> => Object.fromEntries(Object.entries(h).filter(([k]) => !['date', 'x-ms-request-id'].includes(k)));
    expect(stable(a.headers)).toEqual(stable(b.headers));
    expect(a.headers['x-ms-meta-origin']).toBe('test');
    const head = await rawRequest(await blobSas(via, 'whole.bin'), { method: 'HEAD' });
    expect(head.headers['content-length']).toBe(String(whole.length));
    expect(head.body.length).toBe(0);
  });

  it('table create, get, update, upsert, query and batch give what Azurite gives directly', async () => {
    const name = uniqueName('fptable');
    const t = table(proxy.connectionString, name);
    const d = table(storage.connectionString, name);
    await t.createTable();
    const when = new Date('2026-01-02T03:04:05.678Z');
    await t.createEntity({ partitionKey: 'p 1', rowKey: "r'1 é%+&", text: 'héllo', n: 3, big: { value: '9007199254740993', type: 'Int64' }, when, bytes: new Uint8Array([0, 1, 255]) });
    await t.createEntity({ partitionKey: 'p 1', rowKey: 'r2', text: 'two', n: 5 });
    await t.createEntity({ partitionKey: 'p 2', rowKey: 'r3', text: 'three', n: 7 });

    // Azurite writes the odata links from the Host header, which the proxy leaves as the client sent it.
    const strip = (e: TableEntityResult<Record<string, unknown>>): Record<string, unknown> => Object.fromEntries(Object.entries(e).filter(([k]) => k !== 'timestamp' && k !== 'odata.metadata'));
    const gotVia = await t.getEntity('p 1', "r'1 é%+&");
    const gotDirect = await d.getEntity('p 1', "r'1 é%+&");
    expect(strip(gotVia)).toEqual(strip(gotDirect));
    expect(gotVia['odata.metadata']).toBe(`http://127.0.0.1:${proxy.ports.table}/${DEV_ACCOUNT}/$metadata#${name}/@Element`);
    expect(gotVia).toMatchObject({ text: 'héllo', n: 3, big: 9007199254740993n, when });
    expect([...(gotVia['bytes'] as Uint8Array)]).toEqual([0, 1, 255]);

    await t.updateEntity({ partitionKey: 'p 1', rowKey: "r'1 é%+&", n: 4 }, 'Merge', { etag: gotVia.etag });
    await t.updateEntity({ partitionKey: 'p 1', rowKey: 'r2', text: 'replaced' }, 'Replace');
    await t.upsertEntity({ partitionKey: 'p 2', rowKey: 'r4', text: 'four', n: 9 }, 'Merge');
    const conflict = await failure(t.updateEntity({ partitionKey: 'p 1', rowKey: "r'1 é%+&", n: 0 }, 'Merge', { etag: gotVia.etag }));
    expect(conflict.statusCode).toBe(412);
    await t.submitTransaction([
      ['create', { partitionKey: 'p 3', rowKey: 'a', n: 1 }],
      ['upsert', { partitionKey: 'p 3', rowKey: 'b', n: 2 }],
    ]);

    const query = async (client: TableClient, filter: string): Promise<unknown[]> => {
      const out: unknown[] = [];
      for await (const e of client.listEntities({ queryOptions: { filter } })) out.push(strip(e));
      return out;
    };
    for (const filter of [odata`PartitionKey eq ${'p 1'}`, odata`n gt ${4}`, '']) {
      expect(await query(t, filter)).toEqual(await query(d, filter));
    }
    expect((await query(t, odata`PartitionKey eq ${'p 1'}`)).map((e) => [(e as { rowKey: string }).rowKey, (e as { n?: number }).n])).toEqual([
      ["r'1 é%+&", 4],
      ['r2', undefined],
    ]);
    expect((await query(t, odata`PartitionKey eq ${'p 3'}`)).length).toBe(2);
    expect(proxy.count({ service: 'table', path: new RegExp(name) })).toBeGreaterThanOrEqual(10);
  });

  it('queue create, send, receive and delete work through the proxy', async () => {
    const name = uniqueName('fpqueue');
    const q = QueueServiceClient.fromConnectionString(proxy.connectionString).getQueueClient(name);
    await q.create();
    await q.sendMessage('first é');
    await q.sendMessage('second');
    const peeked = await QueueServiceClient.fromConnectionString(storage.connectionString).getQueueClient(name).peekMessages({ numberOfMessages: 5 });
    expect(peeked.peekedMessageItems.map((m) => m.messageText)).toEqual(['first é', 'second']);
    const received = await q.receiveMessages({ numberOfMessages: 1 });
    const message = received.receivedMessageItems[0]!;
    expect(message.messageText).toBe('first é');
    await q.deleteMessage(message.messageId, message.popReceipt);
    expect((await q.getProperties()).approximateMessagesCount).toBe(1);
    // Two sends, a receive and a delete.
    expect(proxy.count({ service: 'queue', path: new RegExp(`/${name}/messages`) })).toBe(4);
  });
});

describe('fault proxy: injected failures', () => {
  it('fails one matching blob PUT with 502 (the blob SDK does not retry it) and lets the next through', async () => {
    const c = await newContainers();
    const rule = proxy.fail({ service: 'blob', method: 'PUT', path: new RegExp(`${c.name}/out/predictions`), times: 1, status: 502 });
    // Not matching: another blob, and a GET of the matching one.
    await c.via.getBlockBlobClient('out/other.csv').upload('x', 1);
    expect(await c.via.getBlobClient('out/predictions.csv').exists()).toBe(false);
    expect(rule.hits).toBe(0);

    const err = await failure(c.via.getBlockBlobClient('out/predictions.csv').upload('a,b\n', 4));
    expect(err.statusCode).toBe(502);
    expect(err.code).toBe('BadGateway');
    expect(rule.hits).toBe(1);
    expect(rule.spent).toBe(true);
    await rule.done;
    expect(await c.direct.getBlobClient('out/predictions.csv').exists()).toBe(false);

    await c.via.getBlockBlobClient('out/predictions.csv').upload('a,b\n', 4);
    expect((await c.direct.getBlobClient('out/predictions.csv').downloadToBuffer()).toString()).toBe('a,b\n');
    expect(rule.hits).toBe(1);
    const puts = proxy.requestsMatching({ service: 'blob', method: 'PUT', path: /out\/predictions\.csv$/ }).filter((r) => r.path.includes(c.name));
    expect(puts.map((r) => [r.status, r.injected, r.rule, typeof r.ms])).toEqual([
      [502, true, rule.index, 'number'],
      [201, false, undefined, 'number'],
    ]);
  });

  it('drops the connection with reset: true; the SDKs see a network error and retry by themselves', async () => {
    const c = await newContainers();
    await c.direct.getBlockBlobClient('reset-me.txt').upload('still here', 10);
    const rule = proxy.fail({ service: 'blob', method: 'GET', path: new RegExp(`${c.name}/reset-me`), times: 1, reset: true });
    expect((await c.via.getBlobClient('reset-me.txt').downloadToBuffer()).toString()).toBe('still here');
    await rule.done;
    const gets = proxy.requestsMatching({ method: 'GET', path: new RegExp(`${c.name}/reset-me`) });
    expect(gets.map((r) => [r.status, r.injected, r.reset])).toEqual([
      [undefined, true, true],
      [206, false, false],
    ]);

    // Without a retry the caller sees the network error itself.
    proxy.fail({ service: 'blob', method: 'GET', path: new RegExp(`${c.name}/reset-me`), times: 1, reset: true });
    const err = await failure(fetch(await c.via.getBlobClient('reset-me.txt').generateSasUrl({ permissions: BlobSASPermissions.parse('r'), expiresOn: new Date(Date.now() + 600_000) })));
    expect(err.message).toMatch(/fetch failed/);

    // The table SDK retries a dropped connection after about a second.
    const name = uniqueName('fpreset');
    const t = table(proxy.connectionString, name);
    await t.createTable();
    await t.createEntity({ partitionKey: 'p', rowKey: 'r', n: 1 });
    const tableRule = proxy.fail({ service: 'table', method: 'GET', path: new RegExp(`${name}\\(PartitionKey='p',RowKey='r'\\)`), times: 1, reset: true });
    expect((await t.getEntity('p', 'r'))['n']).toBe(1);
    expect(tableRule.hits).toBe(1);
    expect(proxy.count({ service: 'table', method: 'GET', path: new RegExp(name) })).toBe(2);
  });

  it('exhausts the table SDK retries with times: 5, status: 503 on an update; the caller sees the error and the next call recovers', async () => {
    const name = uniqueName('fpbusy');
    const t = table(proxy.connectionString, name);
    await t.createTable();
    await t.createEntity({ partitionKey: 'job', rowKey: 'j1', status: 'Running' });
    const entity = new RegExp(`/${name}\\(PartitionKey='job',RowKey='j1'\\)$`);
    const rule = proxy.fail({ service: 'table', path: entity, method: 'PATCH', times: 5, status: 503 });

    const started = Date.now();
    const err = await failure(t.updateEntity({ partitionKey: 'job', rowKey: 'j1', status: 'Completed' }, 'Merge'));
    expect(err.statusCode).toBe(503);
    // The table SDK leaves RestError.code unset; the error code is in details (x-ms-error-code).
    expect(err.details?.errorCode).toBe('ServerBusy');
    // The first try and three retries, about 0.5-1, 1-2 and 2-4 s apart.
    expect(rule.hits).toBe(4);
    expect(Date.now() - started).toBeGreaterThanOrEqual(3_000);
    expect((await table(storage.connectionString, name).getEntity('job', 'j1'))['status']).toBe('Running');

    // The fifth failure is the next call's first try; its retry gets through.
    await t.updateEntity({ partitionKey: 'job', rowKey: 'j1', status: 'Completed' }, 'Merge');
    await rule.done;
    expect(rule.hits).toBe(5);
    expect((await table(storage.connectionString, name).getEntity('job', 'j1'))['status']).toBe('Completed');
    expect(proxy.requestsMatching({ service: 'table', path: entity }).map((r) => r.status)).toEqual([503, 503, 503, 503, 503, 204]);
  }, 60_000);

  it('lets requests through with after: 2 before failing', async () => {
    const c = await newContainers();
    const rule = proxy.fail({ service: 'blob', method: 'PUT', path: new RegExp(`${c.name}/after-`), after: 2, times: 1, status: 502 });
    await c.via.getBlockBlobClient('after-1').upload('1', 1);
    await c.via.getBlockBlobClient('after-2').upload('2', 1);
    expect(rule.passed).toBe(2);
    expect(rule.hits).toBe(0);
    expect((await failure(c.via.getBlockBlobClient('after-3').upload('3', 1))).statusCode).toBe(502);
    await c.via.getBlockBlobClient('after-4').upload('4', 1);
    expect(rule.hits).toBe(1);
    const names: string[] = [];
    for await (const b of c.direct.listBlobsFlat()) names.push(b.name);
    expect(names).toEqual(['after-1', 'after-2', 'after-4']);
  });

  it('matches on query and headers, checks rules in order, and sends a given body', async () => {
    const c = await newContainers();
    const blob = c.via.getBlockBlobClient('staged.txt');
    // Only Put Block (comp=block), not Put Block List (comp=blocklist).
    const putBlock = proxy.fail({ service: 'blob', query: /(^|&)comp=block(&|$)/, path: new RegExp(c.name), times: 1, status: 502 });
    const id = Buffer.from('one').toString('base64');
    expect((await failure(blob.stageBlock(id, Buffer.from('one'), 3))).statusCode).toBe(502);
    await blob.stageBlock(id, Buffer.from('one'), 3);
    await blob.commitBlockList([id]);
    expect(putBlock.hits).toBe(1);

    // A header condition: only uploads that carry this metadata.
    const tagged = proxy.fail({ service: 'blob', header: { 'X-MS-META-FAULT': /^yes$/ }, times: 1, status: 502 });
    await c.via.getBlockBlobClient('untagged.txt').upload('u', 1, { metadata: { fault: 'no' } });
    expect((await failure(c.via.getBlockBlobClient('tagged.txt').upload('t', 1, { metadata: { fault: 'yes' } }))).statusCode).toBe(502);
    expect(tagged.hits).toBe(1);

    // The first live rule that matches decides; a later one waits for it to be spent.
    const first = proxy.fail({ service: 'table', method: 'POST', path: /\/Tables$/, times: 1, status: 409, body: JSON.stringify({ 'odata.error': { code: 'TableBeingDeleted', message: { lang: 'en-US', value: 'injected' } } }), code: 'TableBeingDeleted' });
    const second = proxy.fail({ service: 'table', method: 'POST', path: /\/Tables$/, times: 1, status: 400 });
    const t = table(proxy.connectionString, uniqueName('fporder'));
    const conflict = await failure(t.createTable());
    expect(conflict.statusCode).toBe(409);
    expect(conflict.details?.errorCode).toBe('TableBeingDeleted');
    expect(conflict.message).toContain('injected');
    expect([first.hits, second.hits]).toEqual([1, 0]);
    expect((await failure(t.createTable())).statusCode).toBe(400);
    expect(second.hits).toBe(1);
    await t.createTable();

    // Cancelled rules fail nothing more, and their done rejects.
    const forever = proxy.fail({ service: 'queue', times: Infinity, status: 500 });
    forever.cancel();
    await expect(forever.done).rejects.toThrow(/cancelled after 0 of Infinity/);
    await QueueServiceClient.fromConnectionString(proxy.connectionString).getQueueClient(uniqueName('fpq')).create();
    expect(() => proxy.fail({ service: 'blob', times: 0 })).toThrow(/times/);
  });
});

describe('fault proxy: a whole app behind it', () => {
  const FEATURES = ['bill_length_mm', 'bill_depth_mm', 'flipper_length_mm', 'body_mass_g'];
  const ROWS = [
    [39.1, 18.7, 181, 3750],
    [46.5, 17.9, 192, 3500],
    [50, 15.2, 218, 5700],
    [36.7, 19.3, 193, 3450],
    [49.9, 16.1, 213, 5400],
  ];
  const cleanups = cleanupsAfterAll();
  let appProxy: FaultProxy;
  let host: FnHostProcess;
  let api: Api;
  let endpoint: string;
  let expected: string[];

  beforeAll(async () => {
    appProxy = await startFaultProxy(storage.connectionString);
    cleanups.push(() => appProxy.stop());
    const cache = tempDir('fault-proxy-cache-');
    cleanups.push(cache.remove);
    // --no-azurite: the app's AzureWebJobsStorage is the proxy (the task hub is fnhost's SQLite).
    ({ host, api } = await startProductHost({ BATCH_CACHE_DIR: cache.path }, { storageConnection: appProxy.connectionString }));
    cleanups.push(() => host.stop());
    expect(host.output()).not.toMatch(/Azurite started/);

    endpoint = uniqueName('proxied');
    await upload(appProxy.connectionString, {
      'models/penguins/penguins.onnx': readFileSync(PENGUIN_MODEL),
      [`data/${endpoint}/penguins.csv`]: `island,${FEATURES.join(',')}\n${ROWS.map((r) => `Biscoe,${r.join(',')}`).join('\n')}\n`,
    });
    await deploy(api, {
      endpoint,
      deployment: 'classifier',
      model: { name: 'penguins', version: '1', type: 'onnx', path: ds('models/penguins/penguins.onnx') },
      deploymentBody: { settings: { mini_batch_size: 1, max_concurrency_per_instance: 2 } },
    });
    const session = await ort.InferenceSession.create(PENGUIN_MODEL);
    const feeds: Record<string, ort.Tensor> = {};
    FEATURES.forEach((f, j) => {
      feeds[f] = new ort.Tensor('float32', Float32Array.from(ROWS.map((r) => r[j] as number)), [ROWS.length, 1]);
    });
    const labels = [...((await session.run(feeds))['label']?.data as string[])];
    expected = labels.map((l, i) => `${i},${l},penguins.csv`);
  });

  async function runJob(): Promise<Json> {
    const started = await api.call('POST', `endpoints/${endpoint}/jobs`, { inputs: { penguins: { type: 'uri_folder', path: ds(`data/${endpoint}/`) } } });
    expect(started.status).toBe(202);
    return waitForJob(api, started.body.id);
  }

  it('runs a batch job on fnhost with all of its storage through the proxy', async () => {
    const job = await runJob();
    expect(job.status).toBe('Completed');
    expect(job.counts.items).toEqual({ total: 1, succeeded: 1, failed: 0 });
    const predictions = (await readBlob(storage.connectionString, `azureml/${job.id}/score/predictions.csv`)).toString();
    expect(predictions.trim().split('\n')).toEqual(expected);

    // The app's blob and table traffic all went through the proxy, and Azurite answered all of it:
    // registry and job tables, the model, the input through the app's SAS fast path, the outputs.
    expect(appProxy.count({ service: 'table', path: /\/registry\(/ })).toBeGreaterThan(5);
    expect(appProxy.count({ service: 'table', method: 'PATCH', path: new RegExp(`/jobs\\(PartitionKey='${job.id}'`) })).toBeGreaterThanOrEqual(1);
    expect(appProxy.count({ service: 'blob', method: 'GET', path: /penguins\.onnx$/ })).toBeGreaterThanOrEqual(1);
    expect(appProxy.count({ service: 'blob', method: 'GET', path: /\/penguins\.csv$/, query: /(^|&)sig=/, status: 200 })).toBe(1);
    expect(appProxy.count({ service: 'blob', method: 'PUT', path: new RegExp(`/azureml/${job.id}/score/predictions\\.csv$`) })).toBeGreaterThanOrEqual(1);
    expect(appProxy.count({ injected: true })).toBe(0);
    expect(appProxy.requestsMatching((r) => r.error !== undefined || (r.status ?? 0) >= 500 || r.reset)).toEqual([]);
  });

  it('gives the same predictions when storage fails in ways the SDK and the fast path absorb', async () => {
    // The input's fast-path GET loses its connection (the app reads it through the SDK instead),
    // and the first write of the predictions gets a 503 (the blob SDK retries it).
    const dropped = appProxy.fail({ service: 'blob', method: 'GET', path: new RegExp(`/data/${endpoint}/penguins\\.csv$`), query: /(^|&)sig=/, times: 1, reset: true });
    const busy = appProxy.fail({ service: 'blob', method: 'PUT', path: /\/score\/predictions\.csv$/, times: 1, status: 503 });
    const job = await runJob();
    expect(job.status).toBe('Completed');
    await Promise.all([dropped.done, busy.done]);
    expect((await readBlob(storage.connectionString, `azureml/${job.id}/score/predictions.csv`)).toString().trim().split('\n')).toEqual(expected);
    const inputReads = appProxy.requestsMatching({ method: 'GET', path: new RegExp(`/data/${endpoint}/penguins\\.csv$`) }).slice(-2);
    expect(inputReads.map((r) => [r.reset, /(^|&)sig=/.test(r.query)])).toEqual([
      [true, true],
      [false, false],
    ]);
    expect(appProxy.count({ method: 'PUT', path: new RegExp(`/azureml/${job.id}/score/predictions\\.csv$`), status: 503 })).toBe(1);
  });
});
