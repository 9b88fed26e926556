/**
 * Storage failures injected under a running job (issue 8, kind 6). All of the app's storage goes
 * through a fault proxy in front of real Azurite: requests a rule names are failed, or acknowledged
 * without being stored (what a storage crash loses), and everything else is Azurite's own answer.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Api, type Json, deploy, ds, fixtureScript, startProductHostBehindProxy, upload, waitForJob } from '../support/batch.js';
import type { FaultProxy } from '../support/fault-proxy.js';
import { type FnHostProcess } from '../support/fnhost.js';
import { uniqueName } from '../support/ports.js';

let storage: { connectionString: string; stop: () => Promise<void> };
let proxy: FaultProxy;
let host: FnHostProcess;
let api: Api;
let stopHost: (() => Promise<void>) | undefined;

/** Block ids start with a kind letter (see BlockIds): base64 of "e-" is "ZS", of "g-" "Zy", of "p-" "cC". */
/** A segment's journal blob (shared/jobs/work-area.ts: `journal/seg-NNNNNNNN.jsonl`). */
const JOURNAL = /\/journal\/seg-\d+\.jsonl$/;
/** A segment's part blob of the predictions, where mini-batches stage their rows. */
const PREDICTION_PARTS = /\/seg-\d+\/predictions$/;
const OWN_ENTRY = /blockid=ZS/;
const GROUP = /blockid=Zy/;

beforeAll(async () => {
  ({ host, api, storage, proxy, stop: stopHost } = await startProductHostBehindProxy({}, 'batch-faults-cache-'));
});

afterAll(async () => {
  await stopHost?.();
});

async function scriptDeployment(endpoint: string, script: string, settings: Record<string, unknown>): Promise<void> {
  const codeDir = `code/${uniqueName('c')}/`;
  await upload(storage.connectionString, { [`${codeDir}score.js`]: fixtureScript(script) });
  await deploy(api, {
    endpoint,
    deployment: 'dep',
    model: { name: 'dummy', version: '1', type: 'custom_model', path: ds('models/dummy/') },
    deploymentBody: { code_configuration: { code: ds(codeDir), scoring_script: 'score.js' }, settings },
  });
}

async function files(prefix: string, names: string[]): Promise<void> {
  await upload(storage.connectionString, Object.fromEntries(names.map((n) => [`${prefix}${n}`, `${n}\n`])));
}

async function run(endpoint: string, folder: string): Promise<Json> {
  const res = await api.call('POST', `endpoints/${endpoint}/jobs`, { inputs: { x: { path: ds(folder) } } });
  if (res.status !== 202) throw new Error(`invoke: ${res.status} ${JSON.stringify(res.body)}`);
  return waitForJob(api, res.body.id);
}

async function output(jobId: string, file: string): Promise<string> {
  const res = await fetch(`${host.url}/api/jobs/${jobId}/outputs/${file}`, { headers: { 'x-functions-key': host.masterKey } });
  return res.text();
}

function reportRows(text: string): string[][] {
  return text.trim().split('\n').slice(1).map((l) => l.split(','));
}

describe('lost acknowledged writes are found before the outputs are committed', () => {
  it('runs again a mini-batch whose staged rows were acknowledged but lost, and commits complete predictions', async () => {
    const endpoint = uniqueName('lostpart');
    await scriptDeployment(endpoint, 'slow-lines.js', { mini_batch_size: 1, max_concurrency_per_instance: 2, environment_variables: { SLOW_MS: '0' } });
    const names = Array.from({ length: 10 }, (_, i) => `f${i}.txt`);
    await files(`data/${endpoint}/`, names);
    const rule = proxy.fail({ service: 'blob', method: 'PUT', path: PREDICTION_PARTS, query: /comp=block&/, drop: true, times: 1, after: 3 });
    const job = await run(endpoint, `data/${endpoint}/`);
    expect(rule.hits).toBe(1);
    expect(job.status).toBe('Completed');
    expect(job.counts.items).toEqual({ total: 10, succeeded: 10, failed: 0 });
    expect(await output(job.id, 'predictions.csv')).toBe(names.map((n) => `${n},1,${n}\n`).join(''));
    const report = reportRows(await output(job.id, 'processed_mini_batches.csv'));
    expect(report).toHaveLength(10);
    expect(report.filter((r) => r[1] === '2')).toHaveLength(1);
  });

  it('runs again the mini-batches whose journal records were acknowledged but lost', async () => {
    const endpoint = uniqueName('lostjournal');
    await scriptDeployment(endpoint, 'slow-lines.js', { mini_batch_size: 1, max_concurrency_per_instance: 2, environment_variables: { SLOW_MS: '0' } });
    const names = Array.from({ length: 10 }, (_, i) => `g${i}.txt`);
    await files(`data/${endpoint}/`, names);
    // The first group of records a lane writes (five mini-batches' outcomes) is lost.
    const rule = proxy.fail({ service: 'blob', method: 'PUT', path: JOURNAL, query: GROUP, drop: true, times: 1 });
    const job = await run(endpoint, `data/${endpoint}/`);
    expect(rule.hits).toBe(1);
    expect(job.status).toBe('Completed');
    expect(job.counts.items).toEqual({ total: 10, succeeded: 10, failed: 0 });
    expect(await output(job.id, 'predictions.csv')).toBe(names.map((n) => `${n},1,${n}\n`).join(''));
    const report = reportRows(await output(job.id, 'processed_mini_batches.csv'));
    expect(report.map((r) => r[0])).toEqual(names.map((_, i) => String(i)));
    // Their first outcomes were lost with the records; the log says which ran again, and why.
    const again = (await output(job.id, 'logs/job.log')).split('\n').filter((l) => l.includes('run again while finalizing'));
    expect(again).toHaveLength(5);
  });
});

describe('bookkeeping retries storage failures', () => {
  it('ends with correct outputs and counts while progress, journal, failure-record and finalize writes fail', async () => {
    const endpoint = uniqueName('bookkeeping');
    await scriptDeployment(endpoint, 'slow-lines.js', { mini_batch_size: 1, max_concurrency_per_instance: 2, retry_settings: { max_retries: 1 }, environment_variables: { SLOW_MS: '0' } });
    const good = Array.from({ length: 7 }, (_, i) => `h${i}.txt`);
    await files(`data/${endpoint}/`, [...good, 'zz-broken.txt']);
    const rules = {
      // Progress rows never get written: advisory, the job goes on.
      progress: proxy.fail({ service: 'table', method: 'PUT', path: /RowKey='steplane:batchscoring:/, status: 403, code: 'AuthorizationFailure', times: Infinity }),
      // Journal groups fail twice before they land.
      journal: proxy.fail({ service: 'blob', method: 'PUT', path: JOURNAL, query: GROUP, status: 502, times: 2 }),
      // One input cannot be read at all, so its mini-batch's failure is recorded by its own activity…
      input: proxy.fail({ service: 'blob', method: 'GET', path: /zz-broken\.txt$/, status: 502, times: Infinity }),
      // …whose write fails once (the job's preamble is a journal blob of its own, journal/preamble.jsonl).
      failure: proxy.fail({ service: 'blob', method: 'PUT', path: JOURNAL, query: OWN_ENTRY, status: 502, times: 1 }),
      // Finalize fails once writing the report, and runs again.
      finalize: proxy.fail({ service: 'blob', method: 'PUT', path: /\/processed_mini_batches\.csv$/, status: 502, times: 1 }),
    };
    const job = await run(endpoint, `data/${endpoint}/`);
    for (const rule of Object.values(rules)) rule.cancel();
    expect(rules.progress.hits).toBeGreaterThan(0);
    expect(rules.journal.hits).toBe(2);
    expect(rules.input.hits).toBeGreaterThan(0);
    expect(rules.failure.hits).toBe(1);
    expect(rules.finalize.hits).toBe(1);
    expect(job.status).toBe('Completed');
    expect(job.counts).toEqual({ mini_batches: { total: 8, succeeded: 7, failed: 1, retried: 1 }, items: { total: 8, succeeded: 7, failed: 1 } });
    expect(await output(job.id, 'predictions.csv')).toBe(good.map((n) => `${n},1,${n}\n`).join(''));
    const errors = (await output(job.id, 'errors.jsonl')).trim().split('\n').map((l) => JSON.parse(l));
    expect(errors).toEqual([expect.objectContaining({ mini_batch: 7, file: 'zz-broken.txt', reason: expect.stringContaining('Could not download') })]);
    expect(reportRows(await output(job.id, 'processed_mini_batches.csv'))).toHaveLength(8);
  });

  it('halts the job when a lane cannot record its work: the other lane stops, and finalizing waits for every lane', async () => {
    const endpoint = uniqueName('halt');
    await scriptDeployment(endpoint, 'uneven.js', { mini_batch_size: 1, max_concurrency_per_instance: 2, retry_settings: { max_retries: 0 } });
    // Lane 0 runs the a-* files (a-bad first: its outcome is not routine, so it writes a record of
    // its own, which fails for good); lane 1 runs twelve files of 300 ms each.
    const laneZero = ['a-bad.txt', ...Array.from({ length: 11 }, (_, i) => `a-ok${String(i).padStart(2, '0')}.txt`)];
    const laneOne = Array.from({ length: 12 }, (_, i) => `b-wait${String(i).padStart(2, '0')}.txt`);
    await files(`data/${endpoint}/`, [...laneZero, ...laneOne]);
    const rule = proxy.fail({ service: 'blob', method: 'PUT', path: JOURNAL, query: OWN_ENTRY, status: 502, times: Infinity });
    const job = await run(endpoint, `data/${endpoint}/`);
    rule.cancel();
    expect(job.status).toBe('Failed');
    expect(job.error.code).toBe('storage_failed');
    expect(job.error.message).toContain('mini-batch 0');
    // Lane 1 stopped well before its end once the job was halted.
    const report = reportRows(await output(job.id, 'processed_mini_batches.csv'));
    const laneOneRan = report.filter((r) => Number(r[0]) >= 12);
    expect(laneOneRan.length).toBeGreaterThan(0);
    expect(laneOneRan.length).toBeLessThan(12);
    // What was committed is exactly what the report and counts say.
    expect((await output(job.id, 'predictions.csv')).trim().split('\n')).toHaveLength(job.counts.items.succeeded);
    expect(job.counts.items.succeeded).toBe(laneOneRan.length);
    // No lane or chunk of the job was still running when it ended (the job's own orchestration
    // ends just after the job record does).
    const instances = [`${job.id}:batchscoring:lane-0`, `${job.id}:batchscoring:lane-1`, `${job.id}:batchscoring:chunk-0`, `${job.id}:batchscoring:chunk-1`];
    for (const id of instances) {
      const res = await fetch(`${host.url}/runtime/webhooks/durabletask/instances/${encodeURIComponent(id)}`, { headers: { 'x-functions-key': host.masterKey } });
      expect(((await res.json()) as Json).runtimeStatus, id).toBe('Completed');
    }
  });
});
