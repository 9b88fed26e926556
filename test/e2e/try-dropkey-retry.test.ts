/**
 * Tester's probes of "a dropped key is warned about once, by the mini-batch that dropped it first,
 * which warns again whenever it runs" (commit b42cc53), with retries instead of kills: a
 * mini-batch's first attempt times out AFTER the host has recorded the key as dropped by it
 * (dropped_by), either before its worker logged the warning (a getter of a column value that
 * spins) or after (a toJSON of a column value that spins). mini_batch_size 1, one lane, so
 * mini-batch 0 fixes the columns and the order is known.
 *
 * The script returns each file's JSON `row`. Per file, on its FIRST run only (a marker file in
 * FLAGS): `spinGetter` makes column `a` a getter that spins 8 s, `spinJson` makes `a` an object
 * whose toJSON spins 8 s; `firstOnly` lists keys present on the first run only (a script whose
 * keys differ between runs: e.g. a diagnostic key it adds when something was slow). `spinAlways`
 * spins on every run (the mini-batch fails for good, by timeouts); `circular` makes `a` a circular
 * object (a user's mistake JSON cannot encode).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Api, type Json, deploy, ds, readBlob, startProductHost, upload, waitForJob } from '../support/batch.js';
import { type FnHostProcess } from '../support/fnhost.js';
import { uniqueName } from '../support/ports.js';

let host: FnHostProcess;
let api: Api;
const flags = mkdtempSync(join(tmpdir(), 'try-dropkey-retry-'));

const SCRIPT = `
import { readFile } from 'node:fs/promises';
import { existsSync, writeFileSync } from 'node:fs';
import { join, basename } from 'node:path';
const spin = (ms) => { const end = Date.now() + ms; while (Date.now() < end); };
export function init() {}
export async function run(miniBatch) {
  const out = [];
  for (const file of miniBatch) {
    const spec = JSON.parse(await readFile(file, 'utf8'));
    const marker = join(process.env.FLAGS, spec.tag + '-' + basename(file));
    const first = !existsSync(marker);
    writeFileSync(marker, 'x');
    const row = { ...spec.row };
    if ((first && spec.spinGetter) || spec.spinAlways) {
      const v = row.a;
      delete row.a;
      const r = {};
      Object.defineProperty(r, 'a', { enumerable: true, get() { spin(8000); return v; } });
      Object.assign(r, row);
      out.push(r);
      continue;
    }
    if (spec.circular) { row.a = { v: row.a }; row.a.self = row.a; }
    if (first && spec.spinJson) row.a = { toJSON() { spin(8000); return 'late'; } };
    if (!first) for (const k of spec.firstOnly ?? []) delete row[k];
    out.push(row);
  }
  return out;
}
`;

beforeAll(async () => {
  ({ host, api } = await startProductHost());
  await upload(host.storageConnection, { 'models/dummy/model.txt': 'unused', 'code/try-dropkey-retry/score.js': SCRIPT });
}, 120_000);

afterAll(async () => {
  await host?.stop();
  rmSync(flags, { recursive: true, force: true });
});

async function runJob(tag: string, files: Json[]): Promise<{ job: Json; predictions: string; log: string; warned: string[] }> {
  const endpoint = uniqueName('dkr');
  await deploy(api, {
    endpoint,
    deployment: 'echo',
    model: { name: 'dummy', version: '1', type: 'custom_model', path: ds('models/dummy/') },
    deploymentBody: {
      code_configuration: { code: ds('code/try-dropkey-retry/'), scoring_script: 'score.js' },
      settings: { mini_batch_size: 1, max_concurrency_per_instance: 1, retry_settings: { max_retries: 2, timeout: 3 }, environment_variables: { FLAGS: flags } },
    },
  });
  const upl: Record<string, string> = {};
  files.forEach((f, i) => (upl[`data/${tag}/f${i}.json`] = JSON.stringify({ tag, ...f })));
  await upload(host.storageConnection, upl);
  const res = await api.call('POST', `endpoints/${endpoint}/jobs`, { inputs: { x: { path: ds(`data/${tag}/`) } }, outputs: { score: { path: ds(`out/${tag}/`) } } });
  expect(res.status, JSON.stringify(res.body)).toBe(202);
  const job = await waitForJob(api, res.body.id as string, 240_000);
  const predictions = (await readBlob(host.storageConnection, `out/${tag}/predictions.csv`)).toString();
  const log = (await readBlob(host.storageConnection, `out/${tag}/logs/job.log`)).toString();
  const warned = log.split('\n').filter((l) => l.includes('dropped from every row'));
  return { job, predictions, log, warned };
}

describe('a dropped key and a retried mini-batch', () => {
  it('first attempt times out after the key was recorded, before the warning: the retry warns once', async () => {
    const r = await runJob('getter', [{ row: { a: 1 } }, { row: { a: 2, extra: 1 }, spinGetter: true }, { row: { a: 3, extra: 2 } }]);
    expect(r.job.status).toBe('Completed');
    expect(r.predictions).toBe('1\n2\n3\n');
    expect(r.warned).toHaveLength(1);
    expect(r.warned[0]).toContain('extra');
  }, 300_000);

  it('first attempt times out after the warning was logged: how many warnings', async () => {
    const r = await runJob('json', [{ row: { a: 1 } }, { row: { a: 2, extra: 1 }, spinJson: true }, { row: { a: 3, extra: 2 } }]);
    expect(r.job.status).toBe('Completed');
    expect(r.predictions).toBe('1\n2\n3\n');
    expect(r.warned).toHaveLength(1);
  }, 300_000);

  it("the key is only in the timed-out attempt's rows; a later mini-batch brings it: it is still warned about", async () => {
    const r = await runJob('nondet', [{ row: { a: 1 } }, { row: { a: 2, extra: 1 }, spinGetter: true, firstOnly: ['extra'] }, { row: { a: 3, extra: 2 } }]);
    expect(r.job.status).toBe('Completed');
    expect(r.predictions).toBe('1\n2\n3\n');
    // mini-batch 2's row had `extra`, and it was dropped from it: the log must say so.
    expect(r.warned).toHaveLength(1);
  }, 300_000);

  it('the mini-batch that dropped the key first fails on every attempt; a later one drops it too: still warned about', async () => {
    const r = await runJob('failing', [{ row: { a: 1 } }, { row: { a: 2, extra: 1 }, spinAlways: true }, { row: { a: 3, extra: 2 } }]);
    expect(r.job.counts.items).toEqual({ total: 3, succeeded: 2, failed: 1 });
    expect(r.predictions).toBe('1\n3\n');
    // mini-batch 2's row had `extra`, and it was dropped from it: the log must say so.
    expect(r.warned).toHaveLength(1);
  }, 300_000);

  it('a circular value in the mini-batch that drops the key first: a clear failure, and the key still warned about', async () => {
    const r = await runJob('circular', [{ row: { a: 1 } }, { row: { a: 2, extra: 1 }, circular: true }, { row: { a: 3, extra: 2 } }]);
    expect(r.job.counts.items).toEqual({ total: 3, succeeded: 2, failed: 1 });
    expect(r.predictions).toBe('1\n3\n');
    expect(r.warned).toHaveLength(1);
    // The script's mistake, in its words: not an internal failure with the runtime's stack.
    expect(r.log).toContain('run() returned a result that cannot be written as a row: Converting circular structure to JSON');
    expect(r.log).not.toContain('The scoring runtime failed in its worker');
  }, 300_000);
});
