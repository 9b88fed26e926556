import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BlobServiceClient, ContainerClient, ContainerSASPermissions } from '@azure/storage-blob';
import { parquetWriteBuffer } from 'hyparquet-writer';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AppConfig, loadConfig } from '../../shared/config.js';
import { JobStore } from '../../shared/jobs/job-store.js';
import { newJobId } from '../../shared/jobs/jobs-service.js';
import { SMALL_BLOB_BYTES, fetchBlob } from '../../shared/jobs/local-files.js';
import { JobWorkArea, type JournalEntry } from '../../shared/jobs/work-area.js';
import { type JobSpec, emptyCounts } from '../../shared/jobs/types.js';
import { OutputFolder } from '../../shared/outputs/output-writer.js';
import { listInput } from '../../shared/planning/list-input.js';
import { Registry } from '../../shared/registry/registry.js';
import { fastList, fastRead } from '../../shared/storage/fast-read.js';
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
  it('assembles a file from parts staged in any order, committing in index order, repeatably', async () => {
    const folder = new OutputFolder(container, 'jobs/out1/');
    await folder.stage('predictions.csv', 2, 'c\n');
    await folder.stage('predictions.csv', 0, 'a\n');
    await folder.stage('predictions.csv', 1, 'b-first-attempt\n');
    await folder.stage('predictions.csv', 1, 'b\n');
    await folder.stage('predictions.csv', 3, '');
    expect(await folder.exists('predictions.csv')).toBe(false);
    expect(await folder.commit('predictions.csv')).toBe(3);
    const read = async (): Promise<string> => (await container.getBlobClient('jobs/out1/predictions.csv').downloadToBuffer()).toString();
    expect(await read()).toBe('a\nb\nc\n');
    // A finalize that runs again (after a crash) produces the same file.
    expect(await folder.commit('predictions.csv')).toBe(3);
    expect(await read()).toBe('a\nb\nc\n');
  });

  it('puts a header first and writes an empty file when nothing was staged', async () => {
    const folder = new OutputFolder(container, 'jobs/out2');
    await folder.stage('report.csv', 5, 'five\n');
    await folder.commit('report.csv', { header: 'h\n' });
    expect((await container.getBlobClient('jobs/out2/report.csv').downloadToBuffer()).toString()).toBe('h\nfive\n');
    await folder.commit('errors.jsonl');
    expect((await container.getBlobClient('jobs/out2/errors.jsonl').downloadToBuffer()).length).toBe(0);
  });

});

describe('job journal (Azurite)', () => {
  it('reads single entries and groups back in mini-batch order; a retry replaces its own entry', async () => {
    const area = new JobWorkArea({ config });
    const job = uniqueName('job');
    const entry = (i: number, note = ''): JournalEntry => ({ i, report: `${i}${note}\n`, errors: '', log: `log ${i}${note}\n` });
    await area.stageJournal(job, entry(-1));
    await area.stageJournalGroup(job, [entry(0), entry(1), entry(3)]);
    await area.stageJournal(job, entry(2, ' first attempt'));
    await area.stageJournal(job, entry(2, ' retried'));
    await area.stageJournalGroup(job, [entry(4), entry(5)]);
    // An activity that ran twice stages the same group again.
    await area.stageJournalGroup(job, [entry(4), entry(5)]);
    await area.stageJournalGroup(job, []);
    const read = await area.readJournal(job);
    expect(read.map((e) => e.report)).toEqual(['-1\n', '0\n', '1\n', '2 retried\n', '3\n', '4\n', '5\n']);
    // Reading again (a finalize after a crash) gives the same.
    expect((await area.readJournal(job)).map((e) => e.i)).toEqual([-1, 0, 1, 2, 3, 4, 5]);
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
  });

  it('lists a folder page by page, leaving out subfolders, exactly as the SDK does', async () => {
    const names = ['a.txt', 'b &amp; <c>.txt', 'ünïcode ファイル.csv', 'sub/inner.txt', 'sub/deeper/x.txt', 'z%20y.txt'];
    for (const [n, name] of names.entries()) await container.getBlockBlobClient(`list/${name}`).upload('x'.repeat(n), n);
    const sdk: { name: string; size: number }[] = [];
    for await (const entry of container.listBlobsByHierarchy('/', { prefix: 'list/' })) {
      if (entry.kind === 'blob') sdk.push({ name: entry.name, size: entry.properties.contentLength ?? -1 });
    }
    expect(sdk.map((b) => b.name)).toHaveLength(4);
    expect(await fastList(container, 'list/', { pageSize: 2 })).toEqual(sdk);
    expect(await fastList(container, 'list/sub/')).toEqual([{ name: 'list/sub/inner.txt', size: 3 }]);
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
  it('creates, updates with concurrency control, lists newest first and claims idempotency keys', async () => {
    const store = new JobStore({ config });
    const endpoint = uniqueName('ep');
    const specOf = (i: number): JobSpec => ({
      id: newJobId(new Date(Date.UTC(2026, 0, 1, 0, 0, i))),
      endpoint,
      deployment: 'dep',
      tags: {},
      model: { name: 'm', version: '1', type: 'onnx', path: 'p', tags: {}, properties: {} },
      settings: deploymentSettings.parse({}),
      resources: { instance_count: 1 },
      input: { name: 'in', type: 'uri_folder', path: 'p', uri: 'p' },
      output: { name: 'score', uri: 'o/' },
      invoked_by: { name: 'test', via: 'anonymous' },
      created_at: new Date(Date.UTC(2026, 0, 1, 0, 0, i)).toISOString(),
    });
    const specs = [0, 1, 2].map(specOf);
    for (const s of specs) await store.create(s, { status: 'NotStarted', counts: emptyCounts() });
    const page1 = await store.listByEndpoint(endpoint, { top: 2 });
    expect(page1.jobs.map((j) => j.spec.id)).toEqual([specs[2]?.id, specs[1]?.id]);
    const page2 = await store.listByEndpoint(endpoint, { top: 2, continuationToken: page1.continuationToken });
    expect(page2.jobs.map((j) => j.spec.id)).toEqual([specs[0]?.id]);

    const id = specs[0]?.id ?? '';
    // Concurrent updates all land (optimistic concurrency retries on conflicts).
    await Promise.all(
      Array.from({ length: 5 }, () =>
        store.update(id, (s) => ({ ...s, counts: { ...s.counts, items: { ...s.counts.items, succeeded: s.counts.items.succeeded + 1 } } })),
      ),
    );
    expect((await store.get(id))?.state.counts.items.succeeded).toBe(5);

    expect(await store.claimKey(endpoint, 'key-1', 'hash-a', id)).toEqual({ claimed: true });
    expect(await store.claimKey(endpoint, 'key-1', 'hash-b', 'other')).toEqual({ claimed: false, jobId: id, requestHash: 'hash-a' });
  });
});
