/**
 * Reruns over HTTP on fnhost (`POST /api/jobs/{id}/rerun`): a job whose scorer failed on some
 * files, then works again, is rerun: only what failed (or never ran) is scored, the rest of the
 * rows are copied from the parent server-side, and the output equals a clean run's byte for byte.
 * Reruns of Completed-with-failures, Failed and Canceled jobs, a rerun of a rerun, 409 when
 * nothing is left, and 409 when the deployment's code changed unless `force`. The host cuts jobs
 * into segments of 2 mini-batches (BATCH_SEGMENT_SIZE), so every job here spans several segments:
 * the parent's journal is read, and the rerun's rows are staged and composed, segment by segment.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Api, type Json, deploy, ds, fixtureScript, jobOutput, startProductHost, upload, waitForJob, workAreaBlobs } from '../support/batch.js';
import { type FnHostProcess } from '../support/fnhost.js';
import { uniqueName } from '../support/ports.js';
import { waitFor } from '../support/wait.js';
import { parseReport } from '../../shared/jobs/report.js';
import { MODEL_STEP } from '../../shared/jobs/types.js';

let host: FnHostProcess;
let api: Api;
const flags = mkdtempSync(join(tmpdir(), 'rerun-flags-'));
const DUMMY = { name: 'dummy', version: '1', type: 'custom_model', path: ds('models/dummy/') } as const;

beforeAll(async () => {
  ({ host, api } = await startProductHost({ BATCH_SEGMENT_SIZE: '2' }));
  await upload(host.storageConnection, { 'models/dummy/model.txt': 'a model file the scripts ignore' });
});

afterAll(async () => {
  await host?.stop();
  rmSync(flags, { recursive: true, force: true });
});

interface Setup {
  endpoint: string;
  folder: string;
  broken: string;
  gate: string;
  log: string;
  /** The names scored since the last call, in the order they were scored. */
  scored(): string[];
}

/** Text files (a few lines each, distinct per file) under a fresh folder, and the flaky script deployed over them. */
async function setUp(names: string[], settings: Record<string, unknown> = {}): Promise<Setup> {
  const endpoint = uniqueName('rerun');
  const folder = `data/${endpoint}/`;
  const files: Record<string, string> = {};
  names.forEach((name, i) => (files[`${folder}${name}`] = Array.from({ length: 2 + (i % 3) }, (_, k) => `${name} line ${k} ${'x'.repeat(i + k)}`).join('\n') + '\n'));
  await upload(host.storageConnection, { ...files, [`code/${endpoint}/score.js`]: fixtureScript('flaky.js') });
  const broken = join(flags, `${endpoint}-broken`);
  const gate = join(flags, `${endpoint}-gate`);
  const log = join(flags, `${endpoint}-scored.log`);
  writeFileSync(log, '');
  await deploy(api, {
    endpoint,
    deployment: 'flaky',
    model: DUMMY,
    deploymentBody: {
      code_configuration: { code: ds(`code/${endpoint}/`), scoring_script: 'score.js' },
      settings: { mini_batch_size: 3, max_concurrency_per_instance: 1, retry_settings: { max_retries: 0, timeout: 120 }, environment_variables: { BROKEN_FLAG: broken, GATE: gate, SCORED_LOG: log }, ...settings },
    },
  });
  let seen = 0;
  return {
    endpoint,
    folder,
    broken,
    gate,
    log,
    scored: () => {
      const all = readFileSync(log, 'utf8').split('\n').filter(Boolean);
      const fresh = all.slice(seen);
      seen = all.length;
      return fresh;
    },
  };
}

async function invoke(s: Setup, body: Record<string, unknown> = {}): Promise<string> {
  const res = await api.call('POST', `endpoints/${s.endpoint}/jobs`, { inputs: { data: { path: ds(s.folder) } }, ...body });
  if (res.status !== 202) throw new Error(`invoke: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body.id as string;
}

async function rerun(id: string, body?: Record<string, unknown>): Promise<Json> {
  const res = await api.call('POST', `jobs/${id}/rerun`, body);
  if (res.status !== 202) throw new Error(`rerun ${id}: ${res.status} ${JSON.stringify(res.body)}`);
  expect(res.headers.get('location')).toContain(`/api/jobs/${res.body.id as string}/status`);
  return waitForJob(api, res.body.id as string);
}

/** What a job wrote that a clean run must match: predictions (bytes), errors and the report's rows (by name, without attempts and timings). */
async function outputsOf(job: Json): Promise<{ predictions: string; errors: string; report: string[] }> {
  const report = parseReport(await jobOutput(host, job.id, 'processed_mini_batches.csv')).map((r) => [r.index, r.items, r.succeeded, r.failed, r.status, r.error].join(','));
  return { predictions: await jobOutput(host, job.id, 'predictions.csv'), errors: await jobOutput(host, job.id, 'errors.jsonl'), report };
}

/**
 * The journal blobs a finished job keeps in the work area (one per segment), once its segment
 * parts are gone (deleted just after its final status is written).
 */
async function keptJournals(job: Json): Promise<string[]> {
  const scope = `${job.id as string}/${MODEL_STEP}/`;
  const names = await waitFor(
    async () => {
      const all = await workAreaBlobs(host.storageConnection, scope);
      return all.some((n) => n.startsWith(`${scope}parts/`)) ? undefined : all;
    },
    { timeoutMs: 60_000, intervalMs: 100, what: `the segment parts of ${job.id as string} deleted` },
  );
  return names.filter((n) => /\/journal\/seg-\d+\.jsonl$/.test(n));
}

describe('rerun', () => {
  it('scores only the items that failed, copies the rest, and chains: the output equals a clean run byte for byte', async () => {
    const names = ['a01.txt', 'a02-bad.txt', 'a03.txt', 'a04.txt', 'a05.txt', 'a06.txt', 'a07-bad.txt', 'a08-bad.txt', 'a09.txt', 'a10.txt', 'a11.txt'];
    const s = await setUp(names);
    writeFileSync(s.broken, '');
    const parent = await waitForJob(api, await invoke(s));
    expect(parent.status).toBe('Completed');
    expect(parent.counts.items).toMatchObject({ total: 11, succeeded: 8, failed: 3 });
    s.scored();

    // Still broken: a rerun scores the three again (and nothing else), fails them again, copies the rest.
    const first = await rerun(parent.id);
    expect(first.status).toBe('Completed');
    expect(first.rerun_of).toMatchObject({ job: parent.id, force: false, reused: { items: 8, mini_batches: 2 }, scored: { items: 3, mini_batches: 2 } });
    expect(first.counts.items).toMatchObject({ total: 11, succeeded: 8, failed: 3 });
    expect(s.scored()).toEqual(['a02-bad.txt', 'a07-bad.txt', 'a08-bad.txt']);
    expect(await jobOutput(host, first.id, 'predictions.csv')).toBe(await jobOutput(host, parent.id, 'predictions.csv'));

    // Fixed: the rerun of the rerun scores the three, and only them.
    rmSync(s.broken);
    const second = await rerun(first.id, { settings: { retry_settings: { max_retries: 1, timeout: 60 } } });
    expect(second.status).toBe('Completed');
    expect(second.rerun_of).toMatchObject({ job: first.id, reused: { items: 8 }, scored: { items: 3 } });
    expect(second.settings.retry_settings).toEqual({ max_retries: 1, timeout: 60 });
    expect(second.counts.items).toMatchObject({ total: 11, succeeded: 11, failed: 0 });
    expect(s.scored()).toEqual(['a02-bad.txt', 'a07-bad.txt', 'a08-bad.txt']);

    const clean = await waitForJob(api, await invoke(s));
    expect(clean.status).toBe('Completed');
    expect(s.scored()).toEqual(names);
    const [got, want] = [await outputsOf(second), await outputsOf(clean)];
    expect(got.predictions).toBe(want.predictions);
    expect(got.predictions.split('\n').filter(Boolean)).toHaveLength(names.reduce((n, _, i) => n + 2 + (i % 3), 0));
    expect(got.errors).toBe('');
    expect(got.report).toEqual(want.report);

    // Nothing left: a 409 that says so, and no job.
    for (const done of [second.id, clean.id]) {
      const res = await api.call('POST', `jobs/${done}/rerun`);
      expect(res.status).toBe(409);
      expect(res.headers.get('content-type')).toContain('application/problem+json');
      expect(res.body.code).toBe('nothing_to_rerun');
      expect(res.body.detail).toContain('Nothing is left to run');
    }
  });

  it('reruns a Failed job (a mini-batch threw, the error threshold stopped the rest), and refuses changed code unless forced', async () => {
    const names = ['b1.txt', 'b2.txt', 'b3.txt', 'b4-throw.txt', 'b5.txt', 'b6.txt', 'b7.txt', 'b8.txt'];
    const s = await setUp(names, { error_threshold: 0 });
    writeFileSync(s.broken, '');
    const parent = await waitForJob(api, await invoke(s));
    expect(parent.status).toBe('Failed');
    rmSync(s.broken);

    // Another deployment whose code is elsewhere (the same script): another scorer, so not without force.
    await upload(host.storageConnection, { [`code/${s.endpoint}-v2/score.js`]: fixtureScript('flaky.js') });
    const deployment = (await api.call('GET', `endpoints/${s.endpoint}/deployments/flaky`)).body;
    const put = await api.call('PUT', `endpoints/${s.endpoint}/deployments/fixed`, {
      model: 'azureml:dummy:1',
      code_configuration: { code: ds(`code/${s.endpoint}-v2/`), scoring_script: 'score.js' },
      settings: deployment.settings,
    });
    expect(put.status).toBe(201);
    const refused = await api.call('POST', `jobs/${parent.id}/rerun`, { deployment: 'fixed' });
    expect(refused.status).toBe(409);
    expect(refused.body.code).toBe('deployment_changed');
    expect(refused.body.detail).toContain('force');
    const bad = await api.call('POST', `jobs/${parent.id}/rerun`, { settings: { mini_batch_size: 1 } });
    expect(bad.status).toBe(400);
    expect(JSON.stringify(bad.body.errors)).toContain('mini_batch_size');
    s.scored();

    const forced = await rerun(parent.id, { deployment: 'fixed', force: true });
    expect(forced.status).toBe('Completed');
    expect(forced.deployment).toBe('fixed');
    expect(forced.rerun_of).toMatchObject({ job: parent.id, force: true });
    expect(forced.rerun_of.reused.items + forced.rerun_of.scored.items).toBe(names.length);
    expect(forced.rerun_of.scored.items).toBeGreaterThanOrEqual(3);
    expect(s.scored()).toHaveLength(forced.rerun_of.scored.items);
    const clean = await waitForJob(api, await invoke(s));
    expect((await outputsOf(forced)).predictions).toBe((await outputsOf(clean)).predictions);
    expect(await jobOutput(host, forced.id, 'errors.jsonl')).toBe('');
  });

  it('reruns a Canceled job: the mini-batches that never ran are scored, the rest copied', async () => {
    const names = ['c1.txt', 'c2.txt', 'g3.txt', 'g4.txt', 'g5.txt', 'g6.txt', 'g7.txt', 'g8.txt', 'g9.txt'];
    const s = await setUp(names);
    writeFileSync(s.gate, '');
    const id = await invoke(s);
    // The first mini-batch (c1, c2, g3) waits at g3 for the gate; cancel while it does.
    await waitFor(() => Promise.resolve(readFileSync(s.log, 'utf8').includes('c2.txt') ? true : undefined), { timeoutMs: 60_000, intervalMs: 50, what: 'the first files scored' });
    expect((await api.call('POST', `jobs/${id}/cancel`)).status).toBe(202);
    rmSync(s.gate);
    const parent = await waitForJob(api, id);
    expect(parent.status).toBe('Canceled');
    expect(parent.counts.items.succeeded).toBeLessThan(names.length);
    s.scored();

    const child = await rerun(id);
    expect(child.status).toBe('Completed');
    expect(child.rerun_of.reused.items).toBe(parent.counts.items.succeeded);
    expect(child.counts.items).toMatchObject({ total: 9, succeeded: 9, failed: 0 });
    expect(s.scored()).toEqual(names.slice(parent.counts.items.succeeded));
    const clean = await waitForJob(api, await invoke(s));
    expect((await outputsOf(child)).predictions).toBe((await outputsOf(clean)).predictions);
  });
  it('reuses rows across segments: failures in every segment, a csv_header line first, chained, equal to a clean run byte for byte', async () => {
    // 16 files in mini-batches of 3: 6 mini-batches, 3 segments of 2; a failed item in each segment,
    // one mini-batch failed whole (a throw), and whole mini-batches reused on both sides of them.
    const names = ['d01.txt', 'd02-bad.txt', 'd03.txt', 'd04.txt', 'd05.txt', 'd06.txt', 'd07.txt', 'd08-bad.txt', 'd09.txt', 'd10-throw.txt', 'd11.txt', 'd12.txt', 'd13.txt', 'd14.txt', 'd15-bad.txt', 'd16.txt'];
    const s = await setUp(names, { csv_header: true });
    writeFileSync(s.broken, '');
    const parent = await waitForJob(api, await invoke(s));
    expect(parent.status).toBe('Completed');
    expect(parent.counts.mini_batches).toMatchObject({ total: 6, failed: 1 });
    expect(parent.counts.items).toMatchObject({ total: 16, succeeded: 10, failed: 6 });
    // Finished: one journal per segment kept for reruns, the segment parts gone.
    expect(await keptJournals(parent)).toEqual([0, 1, 2].map((k) => `${parent.id as string}/${MODEL_STEP}/journal/seg-${String(k).padStart(8, '0')}.jsonl`));
    s.scored();

    // Still broken: the failed items and the failed mini-batch are scored again (it throws at its
    // first file, before the others are reached), the rest copied.
    const first = await rerun(parent.id);
    expect(first.status).toBe('Completed');
    expect(first.rerun_of).toMatchObject({ reused: { items: 10, mini_batches: 2 }, scored: { items: 6, mini_batches: 4 } });
    expect(first.counts.items).toMatchObject({ total: 16, succeeded: 10, failed: 6 });
    expect(s.scored()).toEqual(['d02-bad.txt', 'd08-bad.txt', 'd15-bad.txt']);
    expect(await jobOutput(host, first.id, 'predictions.csv')).toBe(await jobOutput(host, parent.id, 'predictions.csv'));
    expect(await keptJournals(first)).toHaveLength(3);

    rmSync(s.broken);
    const second = await rerun(first.id);
    expect(second.status).toBe('Completed');
    expect(second.counts.items).toMatchObject({ total: 16, succeeded: 16, failed: 0 });
    expect(s.scored()).toEqual(['d02-bad.txt', 'd08-bad.txt', 'd10-throw.txt', 'd11.txt', 'd12.txt', 'd15-bad.txt']);

    const clean = await waitForJob(api, await invoke(s));
    expect(clean.status).toBe('Completed');
    const [got, want] = [await outputsOf(second), await outputsOf(clean)];
    expect(got.predictions).toBe(want.predictions);
    const lines = got.predictions.split('\n').filter(Boolean);
    // The header once, first; then every file's rows in file order.
    expect(lines[0]).toBe('file_name,line,text,length');
    expect(lines.filter((l) => l === lines[0])).toHaveLength(1);
    expect(lines.slice(1).map((l) => l.split(',')[0])).toEqual(names.flatMap((name, i) => Array.from({ length: 2 + (i % 3) }, () => name)));
    expect(got.report).toEqual(want.report);
    expect(got.errors).toBe('');
  });
});
