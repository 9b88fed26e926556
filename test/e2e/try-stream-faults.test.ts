/**
 * Tester's probes of a folder listed page by page when storage misbehaves under it (a fault proxy
 * in front of real Azurite): a listing page that keeps failing, and writes of the plan (its index,
 * a chunk's manifest) that storage acknowledges and loses. A job must end, and never Completed
 * without every listed file's rows.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Api, type Json, deploy, ds, fixtureScript, readBlob, startProductHostBehindProxy, upload, waitForJob } from '../support/batch.js';
import type { FaultProxy } from '../support/fault-proxy.js';
import { type FnHostProcess } from '../support/fnhost.js';
import { uniqueName } from '../support/ports.js';

let storage: { connectionString: string; stop: () => Promise<void> };
let proxy: FaultProxy;
let host: FnHostProcess;
let api: Api;
let stopHost: (() => Promise<void>) | undefined;
const PLAN = /\/batch-jobs\/.*\/plan\.json$/;
const MANIFEST = /\/batch-jobs\/.*\/manifest\/chunk-\d+-[^/]+\.jsonl$/;

beforeAll(async () => {
  ({ host, api, storage, proxy, stop: stopHost } = await startProductHostBehindProxy({ BATCH_LIST_PAGE_SIZE: '3', BATCH_CHUNK_SIZE: '1' }, 'try-stream-faults-cache-'));
});

afterAll(async () => {
  await stopHost?.();
});

/** A slow-lines.js deployment (mini-batches of 1, so one chunk per file) over `count` files; returns the folder. */
async function setUp(count: number, slowMs = 0): Promise<{ endpoint: string; folder: string; names: string[] }> {
  const endpoint = uniqueName('faults');
  const codeDir = `code/${endpoint}/`;
  const folder = `data/${endpoint}/in/`;
  const names = Array.from({ length: count }, (_, i) => `f-${String(i).padStart(2, '0')}.txt`);
  await upload(storage.connectionString, { [`${codeDir}score.js`]: fixtureScript('slow-lines.js'), ...Object.fromEntries(names.map((n) => [`${folder}${n}`, `${n}\n`])) });
  await deploy(api, {
    endpoint,
    deployment: 'dep',
    model: { name: 'dummy', version: '1', type: 'custom_model', path: ds('models/dummy/') },
    deploymentBody: { code_configuration: { code: ds(codeDir), scoring_script: 'score.js' }, settings: { mini_batch_size: 1, max_concurrency_per_instance: 2, environment_variables: { SLOW_MS: String(slowMs) } } },
  });
  return { endpoint, folder, names };
}

async function start(endpoint: string, folder: string): Promise<string> {
  const res = await api.call('POST', `endpoints/${endpoint}/jobs`, { inputs: { x: { path: ds(folder) } } });
  if (res.status !== 202) throw new Error(`invoke: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body.id as string;
}

async function output(jobId: string, file: string): Promise<{ status: number; text: string }> {
  const res = await fetch(`${host.url}/api/jobs/${jobId}/outputs/${file}`, { headers: { 'x-functions-key': host.masterKey } });
  return { status: res.status, text: await res.text() };
}

/**
 * Waits for a job to end; a job that does not end fails with its view, its plan index, its planner
 * and lanes (their awaitPlan calls), and whether a cancel then ends it.
 */
async function ended(id: string, timeoutMs: number): Promise<Json> {
  return waitForJob(api, id, timeoutMs).catch(async (err: unknown) => {
    const view = (await api.call('GET', `jobs/${id}`)).body;
    const plan = JSON.parse((await readBlob(storage.connectionString, `${id}/batchscoring/plan.json`, 'batch-jobs')).toString());
    const instance = async (suffix: string): Promise<string> => {
      const res = await fetch(`${host.url}/runtime/webhooks/durabletask/instances/${encodeURIComponent(`${id}:batchscoring:${suffix}`)}?code=${host.masterKey}&showHistory=true`);
      const body = (await res.json().catch(() => ({}))) as { runtimeStatus?: string; output?: unknown; historyEvents?: { FunctionName?: string }[] };
      const calls = (body.historyEvents ?? []).filter((e) => e.FunctionName === 'awaitPlan').length;
      return `${suffix} ${body.runtimeStatus ?? res.status} output=${JSON.stringify(body.output ?? null)} awaitPlan calls=${calls}`;
    };
    const stuck = `${await instance('planner')}; ${await instance('lane-0')}; ${await instance('lane-1')}`;
    const cancel = await api.call('POST', `jobs/${id}/cancel`);
    const after = await waitForJob(api, id, 60_000).catch(() => undefined);
    throw new Error(
      `${String(err)}; cancel answered ${cancel.status}, then the job is ${after?.status ?? (await api.call('GET', `jobs/${id}`)).body.status} 60 s later; ${stuck}; job: ${JSON.stringify({ status: view.status, error: view.error, counts: view.counts })}; plan index: ${JSON.stringify({ done: plan.done, stopped: plan.stopped, chunks: plan.chunks, files: plan.files })}`,
    );
  });
}

/** A job that ended Completed has every file's row; one that did not says why. */
async function expectWholeOrFailed(job: Json, names: string[]): Promise<void> {
  if (job.status === 'Completed') {
    expect((await output(job.id, 'predictions.csv')).text).toBe(names.map((n) => `${n},1,${n}\n`).join(''));
    expect(job.counts.items).toEqual({ total: names.length, succeeded: names.length, failed: 0 });
  } else {
    expect(job.status).toBe('Failed');
    expect(job.error?.message).toBeTruthy();
  }
}

describe('storage failing under a listing', () => {
  it('a listing page that keeps failing (access revoked mid-listing) fails the job, saying so', async () => {
    const { endpoint, folder, names } = await setUp(12);
    const rule = proxy.fail({ service: 'blob', method: 'GET', query: new RegExp(`(?=.*comp=list)(?=.*marker=)(?=.*prefix=${folder})`), status: 403, code: 'AuthorizationFailure', times: Infinity });
    const job = await ended(await start(endpoint, folder), 120_000);
    rule.cancel();
    expect(rule.hits).toBeGreaterThan(0);
    expect(job.status).toBe('Failed');
    expect(job.error.message).toMatch(/list/);
    await expectWholeOrFailed(job, names);
  }, 300_000);

  it('the plan index recording the end of the listing, acknowledged and lost: the job still ends', async () => {
    const { endpoint, folder, names } = await setUp(12);
    // 12 files in pages of 3: prepare writes the plan index once, the planner three times (the last: done).
    const rule = proxy.fail({ service: 'blob', method: 'PUT', path: PLAN, drop: true, after: 3, times: 1 });
    const id = await start(endpoint, folder);
    const job = await ended(id, 120_000);
    rule.cancel();
    expect(rule.hits).toBe(1);
    await expectWholeOrFailed(job, names);
  }, 300_000);

  it('the container gone mid-listing (404 ContainerNotFound): the job fails with input_not_found', async () => {
    const { endpoint, folder, names } = await setUp(12);
    const rule = proxy.fail({ service: 'blob', method: 'GET', query: new RegExp(`(?=.*comp=list)(?=.*marker=)(?=.*prefix=${folder})`), status: 404, code: 'ContainerNotFound', times: Infinity });
    const job = await ended(await start(endpoint, folder), 120_000);
    rule.cancel();
    expect(job.status).toBe('Failed');
    expect(job.error.code).toBe('input_not_found');
    await expectWholeOrFailed(job, names);
  }, 300_000);

  it('a listing page failing for a while, within the retries: the job completes as without the failures', async () => {
    const { endpoint, folder, names } = await setUp(12);
    const rule = proxy.fail({ service: 'blob', method: 'GET', query: new RegExp(`(?=.*comp=list)(?=.*marker=)(?=.*prefix=${folder})`), status: 503, times: 3 });
    const job = await ended(await start(endpoint, folder), 120_000);
    rule.cancel();
    expect(rule.hits).toBe(3);
    expect(job.status).toBe('Completed');
    await expectWholeOrFailed(job, names);
  }, 300_000);

  it("a chunk's manifest, acknowledged and lost: the job still ends, never Completed without that chunk's rows", async () => {
    const { endpoint, folder, names } = await setUp(12);
    // The first chunk the planner writes (prepare writes chunks 0-2).
    const rule = proxy.fail({ service: 'blob', method: 'PUT', path: MANIFEST, drop: true, after: 3, times: 1 });
    const id = await start(endpoint, folder);
    const job = await ended(id, 120_000);
    rule.cancel();
    expect(rule.hits).toBe(1);
    await expectWholeOrFailed(job, names);
  }, 300_000);
});
