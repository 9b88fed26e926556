import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TableClient } from '@azure/data-tables';
import { BlobServiceClient, ContainerClient, ContainerSASPermissions, StorageSharedKeyCredential } from '@azure/storage-blob';
import { parquetWriteBuffer } from 'hyparquet-writer';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AppConfig, loadConfig } from '../../shared/config.js';
import { JobStore } from '../../shared/jobs/job-store.js';
import { newJobId } from '../../shared/jobs/jobs-service.js';
import { SMALL_BLOB_BYTES, fetchBlob, readInputRange } from '../../shared/jobs/local-files.js';
import type { BatchError } from '../../shared/errors.js';
import { JobWorkArea } from '../../shared/jobs/work-area.js';
import { type JournalEntry, type JournalLine, readJournalLines } from '../../shared/jobs/journal.js';
import { type JobSpec, emptyCounts } from '../../shared/jobs/types.js';
import { BlockIds, OutputFolder, newNonce } from '../../shared/outputs/output-writer.js';
import { listInput } from '../../shared/planning/list-input.js';
import { Registry } from '../../shared/registry/registry.js';
import { fastList, fastRead, fastStageBlock } from '../../shared/storage/fast-read.js';
import { deploymentSettings } from '../../shared/schemas/resources.js';
import { startAzurite } from '../support/azurite.js';
import { uniqueName } from '../support/ports.js';

let storage: { connectionString: string; stop: () => Promise<void> };
let config: AppConfig;
let container: ContainerClient;

beforeAll(async () => {
  storage = await startAzurite();
  config = loadConfig({ AzureWebJobsStorage: storage.connectionString, BATCH_TABLE_PREFIX: uniqueName('t').replace(/[^a-z0-9]/g, '') });
  container = BlobServiceClient.fromConnectionString(storage.connectionString).getContainerClient(uniqueName('c'));
  await container.createIfNotExists();
});

afterAll(async () => {
  await storage?.stop();
});

describe('output folder (Azurite)', () => {
  it('commits exactly the recorded parts in the order given, repeatably, and never a block no record names', async () => {
    const folder = new OutputFolder(container, 'jobs/out1/');
    const ids = new BlockIds('job-a');
    const c = await folder.stage('predictions.csv', ids.part('p', 2, 1, newNonce()), 'c\n');
    const a = await folder.stage('predictions.csv', ids.part('p', 0, 1, newNonce()), 'a\n');
    // A first attempt and a duplicate execution of it stage blocks of their own, beside each other.
    await folder.stage('predictions.csv', ids.part('p', 1, 1, newNonce()), 'b-first-attempt\n');
    const b = await folder.stage('predictions.csv', ids.part('p', 1, 2, newNonce()), 'b\n');
    // Another job's block in the same blob (it could only get there by a bug) is never committed.
    await folder.stage('predictions.csv', new BlockIds('job-b').part('p', 0, 1, newNonce()), 'other job\n');
    expect(await folder.stage('predictions.csv', ids.part('p', 3, 1, newNonce()), '')).toBeUndefined();
    expect(await folder.exists('predictions.csv')).toBe(false);
    const parts = [a, b, c].map((p) => p!);
    expect(parts.map((p) => p.bytes)).toEqual([2, 2, 2]);
    const blocks = await folder.blocks('predictions.csv');
    expect(blocks.size).toBe(5);
    expect(OutputFolder.missing(parts.map((part, index) => ({ index, part })), blocks)).toEqual([]);
    await folder.commit('predictions.csv', parts);
    const read = async (): Promise<string> => (await container.getBlobClient('jobs/out1/predictions.csv').downloadToBuffer()).toString();
    expect(await read()).toBe('a\nb\nc\n');
    // A finalize that runs again (after a crash) finds the committed blocks and writes the same file.
    const again = await folder.blocks('predictions.csv');
    expect(OutputFolder.missing(parts.map((part, index) => ({ index, part })), again)).toEqual([]);
    await folder.commit('predictions.csv', parts);
    expect(await read()).toBe('a\nb\nc\n');
    expect(ids.owns(parts[0]!.id)).toBe(true);
    expect(new BlockIds('job-b').owns(parts[0]!.id)).toBe(false);
  });

  it('finds a recorded part that is missing or has another length than recorded', async () => {
    const folder = new OutputFolder(container, 'jobs/out2/');
    const ids = new BlockIds('job-c');
    const kept = (await folder.stage('p.csv', ids.part('p', 0, 1, 'aaaaaaaa'), 'kept\n'))!;
    const records = [
      { index: 0, part: kept },
      { index: 1, part: { id: ids.part('p', 1, 1, 'bbbbbbbb'), bytes: 4 } },
      { index: 2, part: { ...kept, bytes: kept.bytes + 1 } },
    ];
    expect(OutputFolder.missing(records, await folder.blocks('p.csv')).map((r) => r.index)).toEqual([1, 2]);
    // An empty commit writes an empty file.
    await folder.commit('empty.jsonl', []);
    expect((await container.getBlobClient('jobs/out2/empty.jsonl').downloadToBuffer()).length).toBe(0);
    expect(await folder.hasAnyFile()).toBe(true);
    expect(await new OutputFolder(container, 'jobs/nothing/').hasAnyFile()).toBe(false);
  });
});

describe('job journal (Azurite)', () => {
  it('keeps every attempt and duplicate, and reads back only what the orchestration acknowledged', async () => {
    const area = new JobWorkArea({ config });
    const job = uniqueName('job');
    const entry = (i: number, a: number, n: string, note = ''): JournalEntry => ({
      i,
      a,
      n,
      status: 'completed',
      items: 1,
      succeeded: 1,
      failed: 0,
      report: `${i}${note}\n`,
      errors: '',
      log: `log ${i}/${a}${note}\n`,
    });
    // Segments of 2 mini-batches: each segment's lines go to its own journal blob.
    const S = 2;
    await area.stageEntry(job, { ...entry(-1, 0, ''), log: 'preamble\n' }, S);
    await area.stageGroup(job, [entry(0, 1, 'n0'), entry(1, 1, 'n1'), entry(3, 1, 'n3')], S);
    await area.stageEntry(job, { ...entry(2, 1, 'n2a', ' timed out'), status: 'timeout' }, S);
    await area.stageEntry(job, entry(2, 2, 'n2b', ' retried'), S);
    // A duplicate execution of attempt 2 that the orchestration did not take.
    await area.stageEntry(job, entry(2, 2, 'n2x', ' duplicate'), S);
    const acks = (): JournalLine[] => [
      { ack: { i: 2, a: 1, n: 'n2a', final: false } },
      { ack: { i: 2, a: 2, n: 'n2b', final: true } },
    ];
    await area.stageGroup(job, acks(), S);
    // An activity that ran twice stages the same group again: same content, same block.
    await area.stageGroup(job, acks(), S);
    // Mini-batch 4 ran but its record was lost; 5 staged an entry nobody acknowledged.
    await area.stageEntry(job, entry(5, 1, 'n5'), S);
    const journals = [-1, 0, 2, 4].map((i) => JobWorkArea.journalOf(S, i));
    expect(journals).toEqual(['journal/preamble.jsonl', 'journal/seg-00000000.jsonl', 'journal/seg-00000001.jsonl', 'journal/seg-00000002.jsonl']);
    const readAll = async (): Promise<JournalLine[]> => (await Promise.all(journals.map((j) => area.readJournal(job, j)))).flat();
    const lines = await readAll();
    // Each segment's journal holds only its own mini-batches' lines.
    const segmentOne = await area.readJournal(job, journals[2] as string);
    expect(new Set(segmentOne.map((l) => ('ack' in l ? l.ack.i : l.i)))).toEqual(new Set([2, 3]));
    const reading = readJournalLines(lines, [0, 1, 2, 3, 4, 5]);
    expect(reading.preamble.map((e) => e.log)).toEqual(['preamble\n']);
    expect(reading.accepted.map((m) => [m.index, m.final.report])).toEqual([
      [0, '0\n'],
      [1, '1\n'],
      [2, '2 retried\n'],
      [3, '3\n'],
    ]);
    expect(reading.accepted[2]?.attempts.map((e) => e.log)).toEqual(['log 2/1 timed out\n', 'log 2/2 retried\n']);
    expect(reading.missing).toEqual([
      { index: 4, attempt: 1 },
      { index: 5, attempt: 1 },
    ]);
    // Reading again (a finalize after a crash) gives the same.
    expect(readJournalLines(await readAll(), [0, 1, 2, 3, 4, 5])).toEqual(reading);
    await area.clear(job);
  });
});

describe('fast blob reads (Azurite)', () => {
  it('reads whole blobs and ranges over a SAS, and declines what it cannot read', async () => {
    const names = ['plain.txt', 'folder/with space.txt', 'odd %23#?&+name.txt', 'ünïcode/ファイル.txt'];
    for (const name of names) await container.getBlockBlobClient(`fast/${name}`).upload(`content of ${name}`, Buffer.byteLength(`content of ${name}`));
    for (const name of names) expect((await fastRead(container, `fast/${name}`, { maxBytes: 1000 }))?.toString()).toBe(`content of ${name}`);
    expect((await fastRead(container, 'fast/plain.txt', { maxBytes: 1000, range: { start: 3, end: 10 } }))?.toString()).toBe('tent of');
    // Anything but a clean read is left to the SDK: a missing blob, a body over the limit.
    expect(await fastRead(container, 'fast/missing.txt', { maxBytes: 1000 })).toBeUndefined();
    expect(await fastRead(container, 'fast/plain.txt', { maxBytes: 5 })).toBeUndefined();
    // A client holding a SAS in its URL reads with it; one with an Entra credential is not signed here.
    const sasUrl = await container.generateSasUrl({ permissions: ContainerSASPermissions.parse('r'), expiresOn: new Date(Date.now() + 3_600_000) });
    expect((await fastRead(new ContainerClient(sasUrl), 'fast/plain.txt', { maxBytes: 1000 }))?.toString()).toBe('content of plain.txt');
    const entra = new ContainerClient(container.url, { getToken: () => Promise.resolve({ token: 'x', expiresOnTimestamp: Date.now() + 3_600_000 }) });
    expect(await fastRead(entra, 'fast/plain.txt', { maxBytes: 1000 })).toBeUndefined();
    // The same container URL with a wrong key: signed with that key (refused, left to the SDK), never
    // with the signature the right key made for the same URL just before.
    const account = /AccountName=([^;]+)/.exec(storage.connectionString)?.[1] ?? '';
    const wrongKey = new ContainerClient(container.url, new StorageSharedKeyCredential(account, Buffer.from('not the key').toString('base64')));
    expect(await fastRead(wrongKey, 'fast/plain.txt', { maxBytes: 1000 })).toBeUndefined();
    expect(await fastStageBlock(wrongKey, 'fast/wrong-key.txt', Buffer.from('id-1').toString('base64'), Buffer.from('x'))).toBe(false);
    expect((await fastRead(container, 'fast/plain.txt', { maxBytes: 1000 }))?.toString()).toBe('content of plain.txt');
  });

  it('stages blocks with a plain PUT where it can sign a write SAS, and leaves the rest to the SDK', async () => {
    const blob = 'fast-stage/ünï code #1?.csv';
    const id = new BlockIds('job-fast').part('p', 0, 1, newNonce());
    expect(await fastStageBlock(container, blob, id, Buffer.from('staged fast\n'))).toBe(true);
    const list = await container.getBlockBlobClient(blob).getBlockList('uncommitted');
    expect(list.uncommittedBlocks?.map((b) => [b.name, b.size])).toEqual([[id, 12]]);
    // Not 201 (no such container), a read-only SAS, an Entra credential: false, for the SDK to try.
    const missing = BlobServiceClient.fromConnectionString(storage.connectionString).getContainerClient(uniqueName('none'));
    expect(await fastStageBlock(missing, blob, id, Buffer.from('x'))).toBe(false);
    const readOnly = new ContainerClient(await container.generateSasUrl({ permissions: ContainerSASPermissions.parse('rl'), expiresOn: new Date(Date.now() + 3_600_000) }));
    expect(await fastStageBlock(readOnly, blob, id, Buffer.from('x'))).toBe(false);
    const entra = new ContainerClient(container.url, { getToken: () => Promise.resolve({ token: 'x', expiresOnTimestamp: Date.now() + 3_600_000 }) });
    expect(await fastStageBlock(entra, blob, id, Buffer.from('x'))).toBe(false);
    // Where the SDK cannot either, staging fails as before, and nothing was staged.
    await expect(new OutputFolder(readOnly, 'fast-stage/').stage('ro.csv', id, 'x\n')).rejects.toMatchObject({ code: 'storage_failed' });
    expect((await container.getBlockBlobClient('fast-stage/ro.csv').getBlockList('all').catch(() => undefined))?.uncommittedBlocks ?? []).toEqual([]);
    // A client with a write SAS in its URL stages with it; what it staged commits as any block does.
    const writer = new OutputFolder(new ContainerClient(await container.generateSasUrl({ permissions: ContainerSASPermissions.parse('rw'), expiresOn: new Date(Date.now() + 3_600_000) })), 'fast-stage/');
    const part = await writer.stage('sas.csv', id, 'via sas\n');
    await new OutputFolder(container, 'fast-stage/').commit('sas.csv', [part!]);
    expect((await container.getBlobClient('fast-stage/sas.csv').downloadToBuffer()).toString()).toBe('via sas\n');
  });

  it('lists a folder page by page, leaving out subfolders, exactly as the SDK does', async () => {
    const names = ['a.txt', 'b &amp; <c>.txt', 'ünïcode ファイル.csv', 'sub/inner.txt', 'sub/deeper/x.txt', 'z%20y.txt', 'tab\tname.csv'];
    for (const [n, name] of names.entries()) await container.getBlockBlobClient(`list/${name}`).upload('x'.repeat(n), n);
    const sdk: { name: string; size: number; etag: string }[] = [];
    for await (const entry of container.listBlobsByHierarchy('/', { prefix: 'list/' })) {
      if (entry.kind === 'blob') sdk.push({ name: entry.name, size: entry.properties.contentLength ?? -1, etag: entry.properties.etag ?? '' });
    }
    expect(sdk.map((b) => b.name)).toHaveLength(5);
    expect(await fastList(container, 'list/', { pageSize: 2 })).toEqual(sdk);
    // Azurite writes a carriage return in a name as &#xD; (Azure percent-encodes it, Encoded="true"):
    // the name read back is the blob's own, so reading it by that name works.
    await container.getBlockBlobClient('list-cr/cr\rname.csv').upload('cr', 2);
    const [cr] = (await fastList(container, 'list-cr/')) ?? [];
    expect(cr?.name).toBe('list-cr/cr\rname.csv');
    expect((await fastRead(container, cr?.name ?? '', { maxBytes: 10 }))?.toString()).toBe('cr');
    expect((await fastList(container, 'list/sub/'))?.map((b) => [b.name, b.size])).toEqual([['list/sub/inner.txt', 3]]);
    expect(await fastList(container, 'list/nothing-here/')).toEqual([]);
    const entra = new ContainerClient(container.url, { getToken: () => Promise.resolve({ token: 'x', expiresOnTimestamp: Date.now() + 3_600_000 }) });
    expect(await fastList(entra, 'list/')).toBeUndefined();
  });

  it('fetchBlob falls back to the SDK: a large blob streams to disk, a missing one is a non-retryable input error', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'fetch-'));
    try {
      const big = Buffer.alloc(SMALL_BLOB_BYTES + 10, 7);
      await container.getBlockBlobClient('fast/big.bin').upload(big, big.length);
      const target = join(dir, 'nested', 'big.bin');
      // The listing said it was small: the fast read declines the body, the SDK streams it.
      expect(await fetchBlob(container, 'fast/big.bin', target, { size: 10 })).toBeUndefined();
      expect(readFileSync(target).equals(big)).toBe(true);
      expect((await fetchBlob(container, 'fast/big.bin', '', { inMemory: true }))?.length).toBe(big.length);
      await expect(fetchBlob(container, 'fast/missing.bin', join(dir, 'm'))).rejects.toMatchObject({ code: 'input_not_found', retryable: false });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('input listing and row splitting (Azurite)', () => {
  it('reads a file-list item that is not there as not found, and one rewritten since it was listed as changed, by status', async () => {
    const registry = new Registry({ config });
    const ws = registry.containerOf(registry.workspaceDatastore());
    await ws.createIfNotExists();
    for (const name of ['fl/a.csv', 'fl/b.csv']) await ws.getBlockBlobClient(name).upload('x,y\n1,2\n', 8);
    const input = await registry.resolveData('azureml://datastores/workspaceblobstore/paths/fl/', 'p');
    const items = await listInput(input, undefined, [{ name: 'a.csv' }, { name: 'b.csv' }, { name: 'nosuch.csv' }]);
    expect(items.map((i) => i.name)).toEqual(['a.csv', 'b.csv', 'nosuch.csv']);
    const [a, b, nosuch] = items;
    expect((await fetchBlob(ws, a!.blob, '', { etag: a!.etag, inMemory: true }))?.toString()).toBe('x,y\n1,2\n');
    // Named in the list but never in storage (whole and ranged reads alike).
    for (const read of [fetchBlob(ws, nosuch!.blob, '', { etag: nosuch!.etag, inMemory: true }), readInputRange(ws, nosuch!.blob, 0, 4, nosuch!.etag)]) {
      const err = await read.then(() => undefined, (e: unknown) => e as BatchError);
      expect(err).toMatchObject({ code: 'input_not_found', retryable: false });
      expect(err?.message).toContain('fl/nosuch.csv was not found');
    }
    // Rewritten after listing: a different version is there.
    await ws.getBlockBlobClient('fl/b.csv').upload('x,y\n3,4\n', 8);
    await expect(fetchBlob(ws, b!.blob, '', { etag: b!.etag, inMemory: true })).rejects.toMatchObject({ code: 'input_changed', message: expect.stringContaining('rewritten after the job listed it') });
    // Deleted after listing: not found, not "rewritten".
    await ws.getBlockBlobClient('fl/a.csv').delete();
    await expect(fetchBlob(ws, a!.blob, '', { etag: a!.etag, inMemory: true })).rejects.toMatchObject({ code: 'input_not_found' });
  });

  it('lists the files directly in a folder, sorted, and splits tabular files into row ranges', async () => {
    const registry = new Registry({ config });
    const ws = registry.containerOf(registry.workspaceDatastore());
    await ws.createIfNotExists();
    const csv = 'a,b\n1,"x\ny"\n2,z\n3,w\n4,v\n5,u\n';
    const jsonl = '{"a":1}\n\n{"a":2}\n{"a":3}\n';
    for (const [name, text] of [['in/b.csv', csv], ['in/a.jsonl', jsonl], ['in/nested/skip.csv', csv], ['in/c.bin', 'xx']] as const) {
      await ws.getBlockBlobClient(name).upload(text, Buffer.byteLength(text));
    }
    const input = await registry.resolveData('azureml://datastores/workspaceblobstore/paths/in/', 'p');
    const plain = await listInput(input, undefined);
    expect(plain.map((i) => i.name)).toEqual(['a.jsonl', 'b.csv', 'c.bin']);

    const split = await listInput(input, { by: 'rows', max_rows: 2 });
    expect(split.map((i) => [i.name, i.rows?.start, i.rows?.end])).toEqual([
      ['a.jsonl', 0, 2],
      ['a.jsonl', 2, 3],
      ['b.csv', 0, 2],
      ['b.csv', 2, 4],
      ['b.csv', 4, 5],
      ['c.bin', undefined, undefined],
    ]);
    // Byte ranges cut the file at record boundaries (the quoted newline stays inside its record).
    const b0 = split[2];
    const b1 = split[3];
    expect(csv.substring(0, b0?.headerEnd)).toBe('a,b\n');
    expect(csv.substring(b0?.bytes?.start ?? 0, b0?.bytes?.end)).toBe('1,"x\ny"\n2,z\n');
    expect(csv.substring(b1?.bytes?.start ?? 0, b1?.bytes?.end)).toBe('3,w\n4,v\n');
    const j1 = split[1];
    expect(jsonl.substring(j1?.bytes?.start ?? 0, j1?.bytes?.end)).toBe('{"a":3}\n');
  });

  it('splits where the readers find records: blank lines are no rows, .ndjson is JSON Lines, files without rows or unparseable stay whole', async () => {
    const registry = new Registry({ config });
    const ws = registry.containerOf(registry.workspaceDatastore());
    await ws.createIfNotExists();
    const header = 'island,bill_length_mm,bill_depth_mm,flipper_length_mm,body_mass_g,sex';
    const gaps = `${header}\n\nBiscoe,45.1,14.5,215,5000,female\n\nDream,39.5,16.7,178,3250,female\n\nTorgersen,38.9,17.8,181,3625,female\n\nBiscoe,50,15.2,218,5700,male\n\n`;
    const ndjson = '{"a":1}\r\n{"a":2}\r\n\r\n{"a":3}\r\n';
    const crcrlf = `${header}\r\r\nBiscoe,45.1,14.5,215,5000,female\r\r\nDream,39.5,16.7,178,3250,female\r\r\nTorgersen,38.9,17.8,181,3625,female\r\r\n`;
    const emptyParquet = parquetWriteBuffer({ columnData: [{ name: 'x', data: [], type: 'INT32' }] });
    const files: [string, string | Buffer][] = [
      ['records/a-gaps.csv', gaps],
      ['records/b.ndjson', ndjson],
      ['records/c-crcrlf.csv', crcrlf],
      ['records/d-header-only.csv', `${header}\n`],
      ['records/e-empty.csv', ''],
      ['records/f-blank.jsonl', '\n \n\r\n'],
      ['records/g-unclosed.csv', `${header}\nBiscoe,1,2,3,4,"male\n`],
      ['records/h-empty.parquet', Buffer.from(emptyParquet)],
      ['records/i-not.parquet', 'not parquet'],
    ];
    for (const [name, content] of files) await ws.getBlockBlobClient(name).upload(content, Buffer.byteLength(content));
    const input = await registry.resolveData('azureml://datastores/workspaceblobstore/paths/records/', 'p');
    const split = await listInput(input, { by: 'rows', max_rows: 2 });
    expect(split.map((i) => [i.name, i.rows?.start, i.rows?.end])).toEqual([
      ['a-gaps.csv', 0, 2],
      ['a-gaps.csv', 2, 4],
      ['b.ndjson', 0, 2],
      ['b.ndjson', 2, 3],
      ['c-crcrlf.csv', 0, 2],
      ['c-crcrlf.csv', 2, 3],
      // No records, or records that cannot be told apart: the whole file, as without split.
      ['d-header-only.csv', undefined, undefined],
      ['e-empty.csv', undefined, undefined],
      ['f-blank.jsonl', undefined, undefined],
      ['g-unclosed.csv', undefined, undefined],
      ['h-empty.parquet', undefined, undefined],
      ['i-not.parquet', undefined, undefined],
    ]);
    // Whole-file items are exactly what listing without split gives.
    const plain = await listInput(input, undefined);
    expect(split.filter((i) => !i.rows)).toEqual(plain.slice(3));
    // Each range is its records' bytes: a CSV range goes after the header's bytes.
    const text = (item: (typeof split)[number], content: string): string => Buffer.from(content).subarray(item.bytes?.start, item.bytes?.end).toString();
    expect(gaps.substring(0, split[0]?.headerEnd)).toBe(`${header}\n`);
    expect(text(split[0]!, gaps)).toBe('\nBiscoe,45.1,14.5,215,5000,female\n\nDream,39.5,16.7,178,3250,female\n');
    expect(text(split[1]!, gaps)).toBe('\nTorgersen,38.9,17.8,181,3625,female\n\nBiscoe,50,15.2,218,5700,male\n');
    expect(text(split[2]!, ndjson)).toBe('{"a":1}\r\n{"a":2}\r\n');
    expect(text(split[3]!, ndjson)).toBe('\r\n{"a":3}\r\n');
    expect(crcrlf.substring(0, split[4]?.headerEnd)).toBe(`${header}\r`);
    expect(text(split[5]!, crcrlf)).toBe('\r\nTorgersen,38.9,17.8,181,3625,female\r');
    expect(split.slice(0, 6).map((i) => i.kind)).toEqual(['csv', 'csv', 'jsonl', 'jsonl', 'csv', 'csv']);
  });

  it('splits Parquet files by row count', async () => {
    const registry = new Registry({ config });
    const ws = registry.containerOf(registry.workspaceDatastore());
    const buffer = parquetWriteBuffer({ columnData: [{ name: 'x', data: Array.from({ length: 7 }, (_, i) => i), type: 'INT32' }] });
    await ws.getBlockBlobClient('pq/p.parquet').upload(Buffer.from(buffer), buffer.byteLength);
    const input = await registry.resolveData('azureml://datastores/workspaceblobstore/paths/pq/', 'p');
    const split = await listInput(input, { by: 'rows', max_rows: 3 });
    expect(split.map((i) => i.rows)).toEqual([
      { start: 0, end: 3 },
      { start: 3, end: 6 },
      { start: 6, end: 7 },
    ]);
  });
});

describe('job store (Azurite)', () => {
  const location = { datastore: { name: 'ws', type: 'azure_blob' as const, tags: {}, account_name: 'a', container_name: 'c', endpoint: 'e', protocol: 'http' as const, credentials: { type: 'app_storage' as const } }, container: 'c', path: 'p/' };
  const specOf = (endpoint: string, i: number, uid = ''): JobSpec => ({
    id: newJobId(new Date(Date.UTC(2026, 0, 1, 0, 0, i))),
    endpoint,
    endpoint_uid: uid || undefined,
    deployment: 'dep',
    tags: {},
    model: { name: 'm', version: '1', type: 'onnx', path: 'p', tags: {}, properties: {} },
    model_location: location,
    settings: deploymentSettings.parse({}),
    resources: { instance_count: 1 },
    input: { name: 'in', type: 'uri_folder', path: 'p', uri: 'p', location },
    output: { name: 'score', uri: 'o/', location },
    invoked_by: { name: 'test', via: 'anonymous' },
    created_at: new Date(Date.UTC(2026, 0, 1, 0, 0, i)).toISOString(),
  });

  it('creates, updates with concurrency control, lists newest first and claims idempotency keys', async () => {
    const store = new JobStore({ config });
    const endpoint = uniqueName('ep');
    const scope = { name: endpoint, uid: 'u1' };
    const specs = [0, 1, 2].map((i) => specOf(endpoint, i, 'u1'));
    for (const s of specs) await store.create(s, { status: 'NotStarted', counts: emptyCounts() });
    const page1 = await store.listJobs(scope, { top: 2 });
    expect(page1.jobs.map((j) => j.spec.id)).toEqual([specs[2]?.id, specs[1]?.id]);
    const page2 = await store.listJobs(scope, { top: 2, continuationToken: page1.continuationToken });
    expect(page2.jobs.map((j) => j.spec.id)).toEqual([specs[0]?.id]);
    // The same name created again is another endpoint: none of the old one's jobs or keys.
    const reborn = { name: endpoint, uid: 'u2' };
    expect((await store.listJobs(reborn, { top: 10 })).jobs).toEqual([]);

    const id = specs[0]?.id ?? '';
    // Concurrent updates all land (optimistic concurrency retries on conflicts).
    await Promise.all(
      Array.from({ length: 5 }, () =>
        store.update(id, (s) => ({ ...s, counts: { ...s.counts, items: { ...s.counts.items, succeeded: s.counts.items.succeeded + 1 } } })),
      ),
    );
    expect((await store.get(id))?.state.counts.items.succeeded).toBe(5);

    expect(await store.findKey(scope, 'key-1')).toBeUndefined();
    expect(await store.claimKey(scope, 'key-1', 'hash-a', id)).toEqual({ claimed: true });
    expect(await store.claimKey(scope, 'key-1', 'hash-b', 'other')).toEqual({ claimed: false, jobId: id, requestHash: 'hash-a' });
    expect(await store.findKey(scope, 'key-1')).toEqual({ jobId: id, requestHash: 'hash-a' });
    expect(await store.findKey(reborn, 'key-1')).toBeUndefined();
  });

  it('lists all jobs across endpoints, including jobs indexed before the all-jobs index existed (copied once)', async () => {
    const prefix = uniqueName('t').replace(/[^a-z0-9]/g, '');
    const own = loadConfig({ AzureWebJobsStorage: storage.connectionString, BATCH_TABLE_PREFIX: prefix });
    const store = new JobStore({ config: own });
    const specs = [specOf('ep-one', 10), specOf('ep-two', 11), specOf('ep-one', 12)];
    for (const s of specs) await store.create(s, { status: 'NotStarted', counts: emptyCounts() });
    // As an earlier version left them: index rows of the endpoints only.
    const index = TableClient.fromConnectionString(storage.connectionString, `${prefix}jobindex`, { allowInsecureConnection: true });
    for await (const row of index.listEntities<{ partitionKey: string; rowKey: string }>({ queryOptions: { filter: "PartitionKey eq '*all'" } })) await index.deleteEntity(row.partitionKey, row.rowKey);
    const fresh = new JobStore({ config: own });
    const newest = specs.map((s) => s.id).reverse();
    expect((await fresh.listJobs('all', { top: 10 })).jobs.map((j) => j.spec.id)).toEqual(newest);
    // Paged, and filtered by what select keeps.
    const page = await store.listJobs('all', { top: 1, select: (job) => Promise.resolve(job.spec.endpoint === 'ep-one' ? job : undefined) });
    expect(page.jobs.map((j) => j.spec.id)).toEqual([specs[2]?.id]);
    if (page.continuationToken === undefined) throw new Error('expected a next page');
    const rest = await store.listJobs('all', { top: 5, continuationToken: page.continuationToken, select: (job) => Promise.resolve(job.spec.endpoint === 'ep-one' ? job : undefined) });
    expect(rest.jobs.map((j) => j.spec.id)).toEqual([specs[0]?.id]);
    await expect(store.listJobs({ name: 'ep-one', uid: '' }, { top: 5, continuationToken: page.continuationToken })).rejects.toMatchObject({ code: 'validation_failed' });
    // Copied once: a row removed after the copy stays removed (the copy is not repeated).
    await index.deleteEntity('*all', (await index.listEntities<{ rowKey: string }>({ queryOptions: { filter: "PartitionKey eq '*all'" } }).next()).value?.rowKey ?? '');
    expect((await new JobStore({ config: own }).listJobs('all', { top: 10 })).jobs.map((j) => j.spec.id)).toEqual(newest.slice(1));
  });

  it('gives an output folder to exactly one of many jobs claiming it at once', async () => {
    const store = new JobStore({ config });
    const folder = `http://x/${uniqueName('f')}/out/`;
    const claims = await Promise.all(Array.from({ length: 8 }, (_, n) => store.claimOutput(folder, `job-${n}`, new Date().toISOString(), () => Promise.resolve(false))));
    const winners = claims.filter((c) => c.claimed);
    expect(winners).toHaveLength(1);
    const owner = claims.find((c): c is { claimed: false; jobId: string } => !c.claimed)?.jobId;
    expect(claims.every((c) => c.claimed || c.jobId === owner)).toBe(true);
    // Only the owner's release frees it; a takeover is allowed only when the check says so.
    await store.releaseOutput(folder, 'someone-else');
    expect((await store.claimOutput(folder, 'late', new Date().toISOString(), () => Promise.resolve(false))).claimed).toBe(false);
    expect((await store.claimOutput(folder, 'taker', new Date().toISOString(), (claim) => Promise.resolve(claim.jobId === owner))).claimed).toBe(true);
    await store.releaseOutput(folder, 'taker');
    expect((await store.claimOutput(folder, 'fresh', new Date().toISOString(), () => Promise.resolve(false))).claimed).toBe(true);
  });
});
