/**
 * Issue 15, "start fast": a folder listed in more than one page (BATCH_LIST_PAGE_SIZE, 4 here) is
 * planned page by page while its first mini-batches are scored. Over HTTP on fnhost: the outputs are
 * complete and in the listing's order, exactly as for a folder planned whole; cancel, the error
 * threshold and a job-size limit stop the listing too; a first page of subfolders only is skipped.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Api, customDeployment, ds, invoke, jobOutput, readBlob, startProductHost, upload, waitForJob, workAreaBlobs } from '../support/batch.js';
import { type FnHostProcess } from '../support/fnhost.js';
import { uniqueName } from '../support/ports.js';
import { waitFor } from '../support/wait.js';

let host: FnHostProcess;
let api: Api;

beforeAll(async () => {
  ({ host, api } = await startProductHost({
    BATCH_LIST_PAGE_SIZE: '4',
    BATCH_CHUNK_SIZE: '2',
    BATCH_SEGMENT_SIZE: '3',
    BATCH_MAX_FILES_PER_JOB: '40',
  }));
});

afterAll(async () => {
  await host?.stop();
});

/** Files `f-000.txt`… under `prefix`, the i-th holding i + 1 lines (its first line names it). */
async function numberedFiles(prefix: string, count: number, extra: Record<string, string> = {}): Promise<string[]> {
  const names = Array.from({ length: count }, (_, i) => `f-${String(i).padStart(3, '0')}.txt`);
  await upload(host.storageConnection, {
    ...Object.fromEntries(names.map((n, i) => [`${prefix}${n}`, [n, ...Array.from({ length: i }, (_, k) => `line ${k}`)].join('\n') + '\n'])),
    ...Object.fromEntries(Object.entries(extra).map(([k, v]) => [`${prefix}${k}`, v])),
  });
  return names;
}

/** The rows slow-lines.js writes for the numbered files (base name, line count, first line). */
function expectedRows(names: string[]): string {
  return names.map((n, i) => `${n},${i + 1},${n}\n`).join('');
}

describe('a folder listed page by page while it is scored', () => {
  it('scores every file once, in listing order, with reports and counts as for a folder planned whole', async () => {
    const endpoint = uniqueName('stream');
    await customDeployment(host, api, { endpoint, deployment: 'dep', script: 'slow-lines.js', settings: { mini_batch_size: 2, max_concurrency_per_instance: 3, environment_variables: { SLOW_MS: '20' } } });
    // Subfolders and a folder marker among the files: listed as entries, never scored.
    const names = await numberedFiles(`data/${endpoint}/in/`, 37, { 'sub/inner.txt': 'nested\n', 'g-sub/x.txt': 'nested\n' });
    const job = await invoke(api, endpoint, { inputs: { x: { path: ds(`data/${endpoint}/in/`) } } });
    const done = await waitForJob(api, job.id, 180_000);
    expect(done.status, JSON.stringify(done)).toBe('Completed');
    expect(done.counts).toMatchObject({ mini_batches: { total: 19, succeeded: 19, failed: 0 }, items: { total: 37, succeeded: 37, failed: 0 } });
    expect(await jobOutput(host, job.id, 'predictions.csv')).toBe(expectedRows(names));
    const report = (await jobOutput(host, job.id, 'processed_mini_batches.csv')).trim().split('\n');
    expect(report).toHaveLength(20);
    expect(report.slice(1).map((row) => Number(row.split(',')[0]))).toEqual(Array.from({ length: 19 }, (_, i) => i));
    const log = await jobOutput(host, job.id, 'logs/job.log');
    expect(log).toMatch(/input listed page by page while scoring runs/);
    expect(log).toMatch(/input listed: 37 item\(s\) of 37 file\(s\) in 19 mini-batch\(es\)/);
    // The plan index names the chunks it planned: 10 chunks of 2 mini-batches (the last one short).
    const plan = JSON.parse((await readBlob(host.storageConnection, `${job.id}/batchscoring/plan.json`, 'batch-jobs')).toString());
    expect(plan).toMatchObject({ done: true, chunkSize: 2, chunks: 10, miniBatches: 19, items: 37, files: 37, pending: [] });
    // Listed in several pages, each recorded by the execution that planned it.
    expect(plan.writers.length).toBeGreaterThan(1);
    const summary = JSON.parse(await jobOutput(host, job.id, 'job.json'));
    expect(summary.counts.items).toEqual({ total: 37, succeeded: 37, failed: 0 });

    // The same folder listed in one page (a file list is planned whole) gives the same bytes.
    const whole = await invoke(api, endpoint, { inputs: { x: { path: ds(`data/${endpoint}/in/`), files: names.map((name) => ({ name })) } } });
    expect((await waitForJob(api, whole.id, 180_000)).status).toBe('Completed');
    expect(await jobOutput(host, whole.id, 'predictions.csv')).toBe(await jobOutput(host, job.id, 'predictions.csv'));
  }, 300_000);

  it('skips first pages that hold only subfolders', async () => {
    const endpoint = uniqueName('stream-sub');
    await customDeployment(host, api, { endpoint, deployment: 'dep', script: 'slow-lines.js', settings: { mini_batch_size: 2, environment_variables: { SLOW_MS: '0' } } });
    const folders = Object.fromEntries(Array.from({ length: 9 }, (_, i) => [`a${i}/nested.txt`, 'nested\n']));
    const names = await numberedFiles(`data/${endpoint}/in/`, 6, folders);
    const job = await invoke(api, endpoint, { inputs: { x: { path: ds(`data/${endpoint}/in/`) } } });
    const done = await waitForJob(api, job.id, 120_000);
    expect(done.status, JSON.stringify(done)).toBe('Completed');
    expect(await jobOutput(host, job.id, 'predictions.csv')).toBe(expectedRows(names));
  }, 180_000);

  it('stops listing when the job is canceled, and ends Canceled; a rerun lists on and scores the rest', async () => {
    const endpoint = uniqueName('stream-cancel');
    await customDeployment(host, api, { endpoint, deployment: 'dep', script: 'slow-lines.js', settings: { mini_batch_size: 1, max_concurrency_per_instance: 1, environment_variables: { SLOW_MS: '400' } } });
    const names = await numberedFiles(`data/${endpoint}/in/`, 30);
    const job = await invoke(api, endpoint, { inputs: { x: { path: ds(`data/${endpoint}/in/`) } } });
    await waitFor(async () => ((await api.call('GET', `jobs/${job.id}`)).body?.status === 'Running' ? true : undefined), { timeoutMs: 60_000, what: 'running' });
    expect((await api.call('POST', `jobs/${job.id}/cancel`)).status).toBe(202);
    const done = await waitForJob(api, job.id, 120_000);
    expect(done.status).toBe('Canceled');
    expect(done.counts.mini_batches.succeeded).toBeLessThan(30);
    // Every mini-batch it did score is in the report, in order, once.
    const report = (await jobOutput(host, job.id, 'processed_mini_batches.csv')).trim().split('\n').slice(1);
    expect(report.map((row) => Number(row.split(',')[0]))).toEqual(Array.from({ length: report.length }, (_, i) => i));
    // A rerun scores what never ran, and lists on from where the listing stopped: every file's row,
    // once and in order.
    const rerun = await api.call('POST', `jobs/${job.id}/rerun`, {});
    expect(rerun.status, JSON.stringify(rerun.body)).toBe(202);
    const again = await waitForJob(api, rerun.body.id, 120_000);
    expect(again.status).toBe('Completed');
    expect(again.counts.items).toEqual({ total: 30, succeeded: 30, failed: 0 });
    expect(await jobOutput(host, rerun.body.id, 'predictions.csv')).toBe(expectedRows(names));
  }, 180_000);

  it('fails the job when its listing passes a job-size limit, keeping what was scored', async () => {
    const endpoint = uniqueName('stream-limit');
    await customDeployment(host, api, { endpoint, deployment: 'dep', script: 'slow-lines.js', settings: { mini_batch_size: 2, environment_variables: { SLOW_MS: '0' } } });
    await numberedFiles(`data/${endpoint}/in/`, 45);
    const job = await invoke(api, endpoint, { inputs: { x: { path: ds(`data/${endpoint}/in/`) } } });
    const done = await waitForJob(api, job.id, 120_000);
    expect(done.status).toBe('Failed');
    expect(done.error).toMatchObject({ code: 'limit_exceeded' });
    expect(done.error.message).toMatch(/BATCH_MAX_FILES_PER_JOB/);
    const summary = JSON.parse(await jobOutput(host, job.id, 'job.json'));
    expect(summary.status).toBe('Failed');
  }, 180_000);

  it('stops listing once the error threshold is passed', async () => {
    const endpoint = uniqueName('stream-threshold');
    await customDeployment(host, api, { endpoint, deployment: 'dep', script: 'count-lines.js', settings: { mini_batch_size: 1, max_concurrency_per_instance: 1, error_threshold: 1 } });
    await upload(host.storageConnection, Object.fromEntries(Array.from({ length: 30 }, (_, i) => [`data/${endpoint}/in/bad-${String(i).padStart(2, '0')}.txt`, 'x\n'])));
    const job = await invoke(api, endpoint, { inputs: { x: { path: ds(`data/${endpoint}/in/`) } } });
    const done = await waitForJob(api, job.id, 120_000);
    expect(done.status).toBe('Failed');
    expect(done.error).toMatchObject({ code: 'error_threshold_exceeded' });
    expect(done.counts.items.failed).toBeLessThan(30);
    const blobs = await workAreaBlobs(host.storageConnection, `${job.id}/`);
    expect(blobs.some((b) => b.endsWith('plan.json'))).toBe(true);
  }, 180_000);
});
