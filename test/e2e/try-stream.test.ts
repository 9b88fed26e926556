/**
 * Tester's probes of "a folder listed page by page while it is scored" (BATCH_LIST_PAGE_SIZE) over
 * HTTP on fnhost: the same files must give the same rows, in the same order, whether the folder is
 * listed in many pages, given as a file list, or cut into row ranges; names that need encoding
 * survive page markers; results go to the item they name; concurrent jobs and files changed while
 * the job lists stay apart.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BlobServiceClient } from '@azure/storage-blob';
import { type Api, PENGUIN_MODEL, WORKSPACE_CONTAINER, customDeployment, deploy, ds, invoke, jobOutput, readBlob, startProductHost, upload, waitForJob } from '../support/batch.js';
import { type FnHostProcess } from '../support/fnhost.js';
import { penguinCsv } from '../support/penguins.js';
import { uniqueName } from '../support/ports.js';
import { waitFor } from '../support/wait.js';

let host: FnHostProcess;
let api: Api;

beforeAll(async () => {
  ({ host, api } = await startProductHost({
    BATCH_LIST_PAGE_SIZE: '3',
    BATCH_CHUNK_SIZE: '2',
    BATCH_SEGMENT_SIZE: '3',
  }));
  await upload(host.storageConnection, { 'models/penguins/penguins.onnx': readFileSync(PENGUIN_MODEL) });
});

const flags = mkdtempSync(join(tmpdir(), 'try-stream-'));

afterAll(async () => {
  await host?.stop();
  rmSync(flags, { recursive: true, force: true });
});

/** Blob storage's (Azurite's) listing order of names under one prefix. */
const listingOrder = (names: string[]): string[] => [...names].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));

/** The row slow-lines.js writes for a file whose content is `content`. */
function slowLinesRow(name: string, content: string): string {
  return `${name},${content.split('\n').filter(Boolean).length},${content.split('\n')[0] ?? ''}\n`;
}

/** A job's plan index (read again when it is being rewritten under the read). */
async function plan(jobId: string): Promise<Record<string, unknown>> {
  return waitFor(async () => JSON.parse((await readBlob(host.storageConnection, `${jobId}/batchscoring/plan.json`, 'batch-jobs')).toString()) as Record<string, unknown>, {
    timeoutMs: 10_000,
    what: `the plan of ${jobId}`,
  });
}

describe('which files a folder gives, and in which order, however it is listed', () => {
  it('names that need encoding, unicode, empty files, subfolders and markers: paged folder = file list = listing order', async () => {
    const endpoint = uniqueName('names');
    await customDeployment(host, api, { endpoint, deployment: 'dep', script: 'slow-lines.js', settings: { mini_batch_size: 2, max_concurrency_per_instance: 2, environment_variables: { SLOW_MS: '0' } } });
    const names = [
      'a b.txt',
      'a+b.txt',
      'a%b.txt',
      'a%25b.txt',
      'a%2Fb.txt',
      'a#b.txt',
      'a&b.txt',
      "a'b.txt",
      'a?b.txt',
      'a;b=c.txt',
      'a<b>.txt',
      'ü.txt',
      'e\u0301.txt', // NFD "é"
      '\u00e9.txt', // NFC "é": another name that looks the same
      '\uFF5E.txt', // sorts after the emoji by UTF-16, before it by UTF-8
      '\u{1F600}.txt',
      'Z.txt',
      '~.txt',
      'empty.txt',
      'x .txt',
      '[x].txt',
    ];
    const contents = Object.fromEntries(names.map((n) => [n, n === 'empty.txt' ? '' : `${n}\nsecond\n`]));
    const prefix = `data/${endpoint}/in/`;
    await upload(host.storageConnection, {
      ...Object.fromEntries(names.map((n) => [`${prefix}${n}`, contents[n] as string])),
      [`${prefix}sub/inner.txt`]: 'nested\n',
      [`${prefix}a b/inner.txt`]: 'nested\n',
      [`${prefix}marker/`]: '',
    });
    const expected = listingOrder(names).map((n) => slowLinesRow(n, contents[n] as string)).join('');

    const paged = await invoke(api, endpoint, { inputs: { x: { path: ds(`data/${endpoint}/in/`) } } });
    const pagedDone = await waitForJob(api, paged.id, 180_000);
    expect(pagedDone.status, JSON.stringify(pagedDone.error)).toBe('Completed');
    expect((await plan(paged.id)).writers).not.toHaveLength(1);
    expect(pagedDone.counts.items).toEqual({ total: names.length, succeeded: names.length, failed: 0 });
    expect(await jobOutput(host, paged.id, 'predictions.csv')).toBe(expected);

    const listed = await invoke(api, endpoint, { inputs: { x: { path: ds(`data/${endpoint}/in/`), files: names.map((name) => ({ name })) } } });
    const listedDone = await waitForJob(api, listed.id, 180_000);
    expect(listedDone.status, JSON.stringify(listedDone.error)).toBe('Completed');
    expect(await jobOutput(host, listed.id, 'predictions.csv')).toBe(expected);
  }, 400_000);

  it('split row ranges of CSV and JSON Lines files, paged: same rows as whole files and as a file list', async () => {
    const endpoint = uniqueName('split');
    const model = { name: 'penguins', version: '1', type: 'onnx' as const, path: ds('models/penguins/') };
    await deploy(api, { endpoint, deployment: 'split', model, deploymentBody: { settings: { mini_batch_size: 2 }, split: { by: 'rows', max_rows: 2 } } });
    await deploy(api, { endpoint, deployment: 'whole', model, deploymentBody: { settings: { mini_batch_size: 2 } }, makeDefault: false });
    const row = (i: number): number[] => [39 + i * 0.7, 17 + (i % 5) * 0.3, 180 + i * 3, 3500 + i * 75];
    const rows = (n: number, from: number): number[][] => Array.from({ length: n }, (_, k) => row(from + k));
    const jsonl = (rs: number[][]): string => rs.map((r) => JSON.stringify({ bill_length_mm: r[0], bill_depth_mm: r[1], flipper_length_mm: r[2], body_mass_g: r[3] })).join('\n') + '\n';
    const prefix = `data/${endpoint}/in/`;
    const files: Record<string, string> = {
      'p-00.csv': penguinCsv(rows(5, 0)),
      'p-01.csv': penguinCsv(rows(1, 10)),
      'p-02.jsonl': jsonl(rows(3, 20)),
      'p-03.csv': penguinCsv([]), // a header only
      'p-04.csv': '',
      'p-05.csv': penguinCsv(rows(4, 30)).replace(/\n/g, '\r\n'),
      'p 06.csv': penguinCsv(rows(2, 40)),
      'p%07.jsonl': '\n' + jsonl(rows(3, 50)) + '\n\n',
      'p-08.csv': penguinCsv(rows(7, 60)),
      'p-09.txt': 'not tabular\n',
      'sub/p-10.csv': penguinCsv(rows(2, 70)),
    };
    await upload(host.storageConnection, Object.fromEntries(Object.entries(files).map(([n, c]) => [`${prefix}${n}`, c])));
    const folder = { path: ds(prefix) };
    const run = async (deployment: string, input: Record<string, unknown>): Promise<{ predictions: string; errors: string[] }> => {
      const job = await invoke(api, endpoint, { inputs: { x: input } }, { 'azureml-model-deployment': deployment });
      const done = await waitForJob(api, job.id, 180_000);
      expect(done.status, JSON.stringify(done.error)).toBe('Completed');
      const errors = (await jobOutput(host, job.id, 'errors.jsonl'))
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as { file: string; reason: string; rows?: unknown })
        .map((e) => `${e.file}: ${e.reason}`)
        .sort();
      return { predictions: await jobOutput(host, job.id, 'predictions.csv'), errors };
    };
    const splitPaged = await run('split', folder);
    const wholePaged = await run('whole', folder);
    const names = Object.keys(files).filter((n) => !n.includes('/'));
    const splitListed = await run('split', { ...folder, files: names.map((name) => ({ name })) });
    // 5 + 1 + 3 + 4 + 2 + 3 + 7 rows
    expect(splitPaged.predictions.trim().split('\n')).toHaveLength(25);
    expect(splitPaged.predictions).toBe(wholePaged.predictions);
    expect(splitListed.predictions).toBe(wholePaged.predictions);
    expect(splitPaged.errors).toEqual(wholePaged.errors);
    expect(splitListed.errors).toEqual(wholePaged.errors);
  }, 400_000);
});

describe('names XML cannot carry as they are', () => {
  it('control characters in names, across page markers: a file list may name every file the paged folder scored', async () => {
    const endpoint = uniqueName('ctrl');
    await customDeployment(host, api, { endpoint, deployment: 'dep', script: 'slow-lines.js', settings: { mini_batch_size: 2, environment_variables: { SLOW_MS: '0' } } });
    const names = ['a\tb.txt', 'a\rb.txt', 'a b.txt', 'a\u007Fb.txt', 'a\uFFFDb.txt', 'plain.txt', 'z&amp;.txt', 'z&.txt'];
    const prefix = `data/${endpoint}/in/`;
    await upload(host.storageConnection, Object.fromEntries(names.map((n, i) => [`${prefix}${n}`, 'x\n'.repeat(i + 1)])));
    const paged = await invoke(api, endpoint, { inputs: { x: { path: ds(prefix) } } });
    const pagedDone = await waitForJob(api, paged.id, 180_000);
    expect(pagedDone.status, JSON.stringify(pagedDone.error)).toBe('Completed');
    expect(pagedDone.counts.items).toEqual({ total: names.length, succeeded: names.length, failed: 0 });
    // The same files named in a file list: the same names, the same rows.
    const res = await api.call('POST', `endpoints/${endpoint}/jobs`, { inputs: { x: { path: ds(prefix), files: names.map((name) => ({ name })) } } });
    expect(res.status, JSON.stringify(res.body)).toBe(202);
    expect((await waitForJob(api, res.body.id, 180_000)).status).toBe('Completed');
    expect(await jobOutput(host, res.body.id, 'predictions.csv')).toBe(await jobOutput(host, paged.id, 'predictions.csv'));
  }, 300_000);
});

describe('results and reports by name, not by position', () => {
  it('errors.jsonl and the report name the mini-batch each failed file was planned in', async () => {
    const endpoint = uniqueName('attrib');
    await customDeployment(host, api, { endpoint, deployment: 'dep', script: 'count-lines.js', settings: { mini_batch_size: 3, max_concurrency_per_instance: 2 } });
    const names = Array.from({ length: 40 }, (_, i) => `f-${String(i).padStart(2, '0')}${i % 7 === 3 ? '-bad' : ''}.txt`);
    const prefix = `data/${endpoint}/in/`;
    await upload(host.storageConnection, Object.fromEntries(names.map((n, i) => [`${prefix}${n}`, 'x\n'.repeat(i + 1)])));
    const job = await invoke(api, endpoint, { inputs: { x: { path: ds(prefix) } } });
    const done = await waitForJob(api, job.id, 180_000);
    expect(done.status, JSON.stringify(done.error)).toBe('Completed');
    const order = listingOrder(names);
    const bad = order.filter((n) => n.includes('bad'));
    expect(done.counts.items).toEqual({ total: 40, succeeded: 40 - bad.length, failed: bad.length });
    const errors = (await jobOutput(host, job.id, 'errors.jsonl'))
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as { mini_batch: number; file: string });
    expect(errors.map((e) => [e.mini_batch, e.file])).toEqual(bad.map((n) => [Math.floor(order.indexOf(n) / 3), n]));
    const report = (await jobOutput(host, job.id, 'processed_mini_batches.csv')).trim().split('\n').slice(1).map((r) => r.split(','));
    expect(report.map((r) => [Number(r[0]), Number(r[2]), Number(r[4])])).toEqual(
      Array.from({ length: Math.ceil(40 / 3) }, (_, i) => {
        const items = order.slice(i * 3, i * 3 + 3);
        return [i, items.length, items.filter((n) => n.includes('bad')).length];
      }),
    );
    const predictions = (await jobOutput(host, job.id, 'predictions.csv')).trim().split('\n');
    expect(predictions.map((p) => Number(p.split(',')[1]))).toEqual(order.filter((n) => !n.includes('bad')).map((n) => names.indexOf(n) + 1));
  }, 300_000);
});

describe('jobs and files that share names', () => {
  it('two jobs over one folder at once each score every file once', async () => {
    const endpoint = uniqueName('twice');
    await customDeployment(host, api, { endpoint, deployment: 'dep', script: 'slow-lines.js', settings: { mini_batch_size: 2, max_concurrency_per_instance: 2, environment_variables: { SLOW_MS: '10' } } });
    const names = Array.from({ length: 41 }, (_, i) => `f-${String(i).padStart(2, '0')}.txt`);
    const prefix = `data/${endpoint}/in/`;
    const contents = Object.fromEntries(names.map((n, i) => [n, `${n}\n${'l\n'.repeat(i)}`]));
    await upload(host.storageConnection, Object.fromEntries(names.map((n) => [`${prefix}${n}`, contents[n] as string])));
    const [a, b] = await Promise.all([invoke(api, endpoint, { inputs: { x: { path: ds(prefix) } } }), invoke(api, endpoint, { inputs: { x: { path: ds(prefix) } } })]);
    const [da, db] = await Promise.all([waitForJob(api, a.id, 180_000), waitForJob(api, b.id, 180_000)]);
    const expected = names.map((n) => slowLinesRow(n, contents[n] as string)).join('');
    expect([da.status, db.status]).toEqual(['Completed', 'Completed']);
    expect(await jobOutput(host, a.id, 'predictions.csv')).toBe(expected);
    expect(await jobOutput(host, b.id, 'predictions.csv')).toBe(expected);
  }, 300_000);

  it('an output folder of a job still listing its input is not given to a second job; an Idempotency-Key gives back the first', async () => {
    const endpoint = uniqueName('sameout');
    await customDeployment(host, api, { endpoint, deployment: 'dep', script: 'slow-lines.js', settings: { mini_batch_size: 1, max_concurrency_per_instance: 1, environment_variables: { SLOW_MS: '100' } } });
    const prefix = `data/${endpoint}/in/`;
    await upload(host.storageConnection, Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`${prefix}f-${String(i).padStart(2, '0')}.txt`, `f ${i}\n`])));
    const body = { inputs: { x: { path: ds(prefix) } }, outputs: { score: { path: ds(`out/${endpoint}/`) } } };
    const first = await invoke(api, endpoint, body, { 'Idempotency-Key': `${endpoint}-k` });
    const again = await api.call('POST', `endpoints/${endpoint}/jobs`, body, { 'Idempotency-Key': `${endpoint}-k` });
    expect(again.status).toBe(202);
    expect(again.body.id).toBe(first.id);
    const other = await api.call('POST', `endpoints/${endpoint}/jobs`, body);
    expect(other.status).toBe(409);
    expect(other.body.code).toBe('output_exists');
    expect(JSON.stringify(other.body)).toContain(first.id);
    const done = await waitForJob(api, first.id, 180_000);
    expect(done.status).toBe('Completed');
    expect((await api.call('POST', `endpoints/${endpoint}/jobs`, body)).status).toBe(409);
    expect((await jobOutput(host, first.id, 'predictions.csv')).trim().split('\n')).toHaveLength(20);
  }, 300_000);

  it('files deleted, rewritten and added while the folder is listed: listed versions or clear failures, never mixed or duplicated', async () => {
    const endpoint = uniqueName('mutate');
    await customDeployment(host, api, { endpoint, deployment: 'dep', script: 'slow-lines.js', settings: { mini_batch_size: 1, max_concurrency_per_instance: 1, retry_settings: { max_retries: 0, timeout: 60 }, environment_variables: { SLOW_MS: '40' } } });
    const count = 600;
    const names = Array.from({ length: count }, (_, i) => `f-${String(i).padStart(4, '0')}.txt`);
    const prefix = `data/${endpoint}/in/`;
    const v1 = (n: string): string => `${n} v1\n`;
    const container = BlobServiceClient.fromConnectionString(host.storageConnection).getContainerClient(WORKSPACE_CONTAINER);
    for (let at = 0; at < count; at += 100) await upload(host.storageConnection, Object.fromEntries(names.slice(at, at + 100).map((n) => [`${prefix}${n}`, v1(n)])));
    const job = await invoke(api, endpoint, { inputs: { x: { path: ds(prefix) } } });
    // While the plan is still being listed, change files the job listed and has not scored yet, and
    // files it has not listed yet.
    const during = await waitFor(
      async () => {
        const p = await plan(job.id);
        return p.done === false && (p.items as number) + (p.pending as unknown[]).length > 30 ? p : undefined;
      },
      { timeoutMs: 120_000, intervalMs: 20, what: 'a plan being listed' },
    );
    const listedSoFar = (during.items as number) + (during.pending as unknown[]).length;
    const early = [names[listedSoFar - 2] as string, names[listedSoFar - 1] as string];
    const late = [names[count - 10] as string, names[count - 9] as string];
    const added = [`${names[3] as string}a`, `${names[count - 1] as string}a`];
    await container.deleteBlob(`${prefix}${early[0]}`);
    await upload(host.storageConnection, { [`${prefix}${early[1]}`]: `${early[1]} v2\nmore\n` });
    await container.deleteBlob(`${prefix}${late[0]}`);
    await upload(host.storageConnection, { [`${prefix}${late[1]}`]: `${late[1]} v2\nmore\n`, [`${prefix}${added[0]}`]: 'added early\n', [`${prefix}${added[1]}`]: 'added late\n' });
    const after = await plan(job.id);
    const progress = (await api.call('GET', `jobs/${job.id}`)).body;
    const done = await waitForJob(api, job.id, 300_000);
    expect(during.done, 'the changes were made while the folder was being listed').toBe(false);
    expect(after.done, 'the changes were made while the folder was being listed').toBe(false);
    expect(progress.counts.items.succeeded, 'the early files were not scored yet').toBeLessThan(listedSoFar - 2);
    expect(done.status, JSON.stringify(done.error)).toBe('Completed');
    const rows = (await jobOutput(host, job.id, 'predictions.csv')).trim().split('\n');
    const scored = rows.map((r) => r.split(',')[0] as string);
    // Every row once, every row from the version it was listed at (v1), or the late file's new version.
    expect(new Set(scored).size).toBe(scored.length);
    expect(scored).toEqual(listingOrder(scored));
    for (const r of rows) {
      const [name, lines, first] = r.split(',');
      if (name === late[1]) expect([lines, first]).toEqual(['2', `${late[1]} v2`]);
      else if (name === added[1]) expect([lines, first]).toEqual(['1', 'added late']);
      else expect([name, lines, first]).toEqual([name, '1', `${name} v1`]);
    }
    expect(scored).not.toContain(early[0]);
    expect(scored).not.toContain(early[1]);
    expect(scored).not.toContain(late[0]);
    expect(scored).not.toContain(added[0]);
    expect(scored).toContain(late[1]);
    expect(scored).toContain(added[1]);
    const errors = (await jobOutput(host, job.id, 'errors.jsonl'))
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as { file: string; reason: string });
    expect(errors.map((e) => e.file).sort()).toEqual(early);
    expect(errors.find((e) => e.file === early[0])?.reason).toMatch(/was not found/);
    expect(errors.find((e) => e.file === early[1])?.reason).toMatch(/rewritten after the job listed it/);
    // late[0] was never listed, added[1] was; early[0] and early[1] were listed and fail.
    expect(done.counts.items).toEqual({ total: count, succeeded: count - 2, failed: 2 });
  }, 400_000);
});

describe('reruns of a job whose folder was listed page by page', () => {
  it('scores only what failed and ends byte-identical to a clean run', async () => {
    const endpoint = uniqueName('rerun');
    const broken = join(flags, `${endpoint}-broken`);
    await customDeployment(host, api, {
      endpoint,
      deployment: 'dep',
      script: 'flaky.js',
      settings: { mini_batch_size: 3, max_concurrency_per_instance: 2, retry_settings: { max_retries: 0, timeout: 60 }, environment_variables: { BROKEN_FLAG: broken } },
    });
    const names = Array.from({ length: 40 }, (_, i) => `f-${String(i).padStart(2, '0')}${i % 9 === 4 ? '-bad' : i === 30 ? '-throw' : ''}.txt`);
    const prefix = `data/${endpoint}/in/`;
    await upload(host.storageConnection, Object.fromEntries(names.map((n, i) => [`${prefix}${n}`, Array.from({ length: 1 + (i % 3) }, (_, k) => `${n} ${k}`).join('\n') + '\n'])));
    writeFileSync(broken, '');
    const parent = await invoke(api, endpoint, { inputs: { x: { path: ds(prefix) } } });
    const parentDone = await waitForJob(api, parent.id, 180_000);
    expect(parentDone.status, JSON.stringify(parentDone.error)).toBe('Completed');
    expect((await plan(parent.id)).writers).not.toHaveLength(1);
    // "bad" files 4, 13, 22, 31, and the mini-batch of files 30-32 (f-30-throw).
    expect(parentDone.counts.items).toEqual({ total: 40, succeeded: 34, failed: 6 });
    rmSync(broken);
    const res = await api.call('POST', `jobs/${parent.id}/rerun`, {});
    expect(res.status, JSON.stringify(res.body)).toBe(202);
    const rerun = await waitForJob(api, res.body.id, 180_000);
    expect(rerun.status, JSON.stringify(rerun.error)).toBe('Completed');
    expect(rerun.rerun_of).toMatchObject({ reused: { items: 34 }, scored: { items: 6 } });
    expect(rerun.counts.items).toEqual({ total: 40, succeeded: 40, failed: 0 });
    const clean = await invoke(api, endpoint, { inputs: { x: { path: ds(prefix) } } });
    expect((await waitForJob(api, clean.id, 180_000)).status).toBe('Completed');
    expect(await jobOutput(host, rerun.id, 'predictions.csv')).toBe(await jobOutput(host, clean.id, 'predictions.csv'));
    expect(await jobOutput(host, rerun.id, 'errors.jsonl')).toBe('');
  }, 400_000);

  it('a job canceled while its folder was being listed can be rerun (README: reruns of Canceled jobs score what never ran)', async () => {
    const endpoint = uniqueName('rerun-cancel');
    await customDeployment(host, api, { endpoint, deployment: 'dep', script: 'slow-lines.js', settings: { mini_batch_size: 1, max_concurrency_per_instance: 1, environment_variables: { SLOW_MS: '300' } } });
    const prefix = `data/${endpoint}/in/`;
    await upload(host.storageConnection, Object.fromEntries(Array.from({ length: 300 }, (_, i) => [`${prefix}f-${String(i).padStart(3, '0')}.txt`, `f ${i}\n`])));
    const parent = await invoke(api, endpoint, { inputs: { x: { path: ds(prefix) } } });
    await waitFor(async () => ((await plan(parent.id)).done === false ? true : undefined), { timeoutMs: 60_000, what: 'listing under way' });
    expect((await api.call('POST', `jobs/${parent.id as string}/cancel`)).status).toBe(202);
    const canceled = await waitForJob(api, parent.id, 180_000);
    expect(canceled.status).toBe('Canceled');
    expect(await plan(parent.id)).toMatchObject({ stopped: 'canceled' });
    const res = await api.call('POST', `jobs/${parent.id as string}/rerun`, {});
    expect(res.status, JSON.stringify(res.body)).toBe(202);
  }, 300_000);

  it('a job past its error threshold after its folder was listed to the end can be rerun', async () => {
    const endpoint = uniqueName('rerun-thr');
    const broken = join(flags, `${endpoint}-broken`);
    await customDeployment(host, api, {
      endpoint,
      deployment: 'dep',
      script: 'flaky.js',
      settings: { mini_batch_size: 1, max_concurrency_per_instance: 1, error_threshold: 0, retry_settings: { max_retries: 0, timeout: 60 }, environment_variables: { BROKEN_FLAG: broken } },
    });
    // The bad file comes last: by the time it fails, every page is listed.
    const names = [...Array.from({ length: 12 }, (_, i) => `f-${String(i).padStart(2, '0')}.txt`), 'z-bad.txt'];
    const prefix = `data/${endpoint}/in/`;
    await upload(host.storageConnection, Object.fromEntries(names.map((n) => [`${prefix}${n}`, `${n}\n`])));
    writeFileSync(broken, '');
    const parent = await invoke(api, endpoint, { inputs: { x: { path: ds(prefix) } } });
    const parentDone = await waitForJob(api, parent.id, 180_000);
    expect(parentDone.status).toBe('Failed');
    expect(parentDone.error).toMatchObject({ code: 'error_threshold_exceeded' });
    expect(await plan(parent.id)).toMatchObject({ done: true, files: 13 });
    rmSync(broken);
    const res = await api.call('POST', `jobs/${parent.id}/rerun`, {});
    expect(res.status, JSON.stringify(res.body)).toBe(202);
    const rerun = await waitForJob(api, res.body.id, 180_000);
    expect(rerun.status).toBe('Completed');
    expect(rerun.counts.items).toEqual({ total: 13, succeeded: 13, failed: 0 });
  }, 300_000);
});

describe('a pipeline parallel step over a folder listed page by page', () => {
  it('gives the rows a model deployment gives over the same folder', async () => {
    const endpoint = uniqueName('pipe');
    const prefix = `data/${endpoint}/in/`;
    const row = (i: number): number[] => [39 + i * 0.7, 17 + (i % 5) * 0.3, 180 + i * 3, 3500 + i * 75];
    await upload(
      host.storageConnection,
      Object.fromEntries(Array.from({ length: 11 }, (_, f) => [`${prefix}p-${String(f).padStart(2, '0')}.csv`, penguinCsv(Array.from({ length: 1 + (f % 3) }, (_, k) => row(f * 3 + k)))])),
    );
    const model = { name: 'penguins', version: '1', type: 'onnx' as const, path: ds('models/penguins/') };
    await deploy(api, { endpoint, deployment: 'model', model, deploymentBody: { settings: { mini_batch_size: 2 } } });
    const score = { type: 'parallel', inputs: { data: { type: 'uri_folder' } }, outputs: { predictions: { type: 'uri_folder' } }, input_data: '${{inputs.data}}', model: 'azureml:penguins:1', mini_batch_size: 2, max_concurrency_per_instance: 2, task: { type: 'run_function', append_row_to: '${{outputs.predictions}}' } };
    expect((await api.call('PUT', `components/${endpoint}_score/versions/1`, score)).status).toBe(201);
    const pipeline = {
      type: 'pipeline',
      inputs: { data: { type: 'uri_folder' } },
      outputs: { predictions: { type: 'uri_folder' } },
      jobs: { score: { component: `azureml:${endpoint}_score:1`, inputs: { data: '${{parent.inputs.data}}' }, outputs: { predictions: '${{parent.outputs.predictions}}' } } },
    };
    expect((await api.call('PUT', `components/${endpoint}_pipe/versions/1`, pipeline)).status).toBe(201);
    expect((await api.call('PUT', `endpoints/${endpoint}/deployments/pipe`, { type: 'pipeline', component: `azureml:${endpoint}_pipe:1` })).status).toBe(201);
    const direct = await invoke(api, endpoint, { inputs: { x: { path: ds(prefix) } } }, { 'azureml-model-deployment': 'model' });
    const piped = await invoke(api, endpoint, { inputs: { data: { type: 'uri_folder', path: ds(prefix) } } }, { 'azureml-model-deployment': 'pipe' });
    const [d, p] = [await waitForJob(api, direct.id, 180_000), await waitForJob(api, piped.id, 180_000)];
    expect(d.status, JSON.stringify(d.error)).toBe('Completed');
    expect(p.status, JSON.stringify(p.error)).toBe('Completed');
    const want = await jobOutput(host, direct.id, 'predictions.csv');
    expect(want.trim().split('\n')).toHaveLength(21);
    const stepOutput = await fetch(`${host.url}/api/jobs/${piped.id as string}/steps/score/outputs/predictions.csv`, { headers: { 'x-functions-key': host.masterKey } });
    expect(stepOutput.status).toBe(200);
    expect(await stepOutput.text()).toBe(want);
    const stepPlan = JSON.parse((await readBlob(host.storageConnection, `${piped.id as string}/score/plan.json`, 'batch-jobs')).toString()) as { writers: unknown[] };
    expect(stepPlan.writers.length).toBeGreaterThan(1);
  }, 300_000);
});
