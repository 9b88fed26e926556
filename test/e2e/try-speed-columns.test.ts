/**
 * Tester's probes of "the job's columns are settled in the scoring worker when the task carries
 * them fixed and the results bring no new key; otherwise the host decides" (commit 64b4eb8), over
 * HTTP on fnhost: results whose keys vary between mini-batches, come in another order, are dropped
 * and seen again, differ only by case or Unicode normalization, scalars among objects, many
 * mini-batches racing to fix the columns, a rerun of such a job; and names that need encoding in
 * inputs and outputs (the output blocks now go up with a plain PUT on a write SAS).
 *
 * The scoring script returns, for each file, the JSON value the file holds; so each test decides
 * exactly what run() returns per mini-batch and can compute the rows a by-name rule must write.
 */
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Api, type Json, deploy, ds, readBlob, startProductHost, upload, waitForJob } from '../support/batch.js';
import { type FnHostProcess } from '../support/fnhost.js';
import { uniqueName } from '../support/ports.js';

let host: FnHostProcess;
let api: Api;
const flags = mkdtempSync(join(tmpdir(), 'try-speed-columns-'));

/** run() returns each file's JSON value; an object with `__flaky: PATH` returns nothing for its file while PATH exists. */
const ECHO_SCRIPT = `
import { readFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
export function init() {}
export async function run(miniBatch) {
  const out = [];
  for (const file of miniBatch) {
    const value = JSON.parse(await readFile(file, 'utf8'));
    if (value && typeof value === 'object' && typeof value.__flaky === 'string') {
      if (existsSync(value.__flaky)) continue;
      const { __flaky, ...rest } = value;
      out.push(rest);
      continue;
    }
    out.push(value);
  }
  const slow = Number(process.env.SLOW_MS ?? 0);
  if (slow > 0) await new Promise((r) => setTimeout(r, slow));
  return out;
}
`;

beforeAll(async () => {
  ({ host, api } = await startProductHost({ BATCH_SEGMENT_SIZE: '3' }));
  await upload(host.storageConnection, { 'models/dummy/model.txt': 'unused', 'code/try-speed-echo/score.js': ECHO_SCRIPT });
}, 120_000);

afterAll(async () => {
  await host?.stop();
  rmSync(flags, { recursive: true, force: true });
});

async function echoEndpoint(settings: Record<string, unknown>, extra: Record<string, unknown> = {}): Promise<string> {
  const endpoint = uniqueName('cols');
  await deploy(api, {
    endpoint,
    deployment: 'echo',
    model: { name: 'dummy', version: '1', type: 'custom_model', path: ds('models/dummy/') },
    deploymentBody: { code_configuration: { code: ds('code/try-speed-echo/'), scoring_script: 'score.js' }, settings, ...extra },
  });
  return endpoint;
}

async function run(endpoint: string, input: string, out: string, body: Record<string, unknown> = {}): Promise<Json> {
  const res = await api.call('POST', `endpoints/${endpoint}/jobs`, { inputs: { x: { path: ds(input) } }, outputs: { score: { path: ds(out) } }, ...body });
  expect(res.status, JSON.stringify(res.body)).toBe(202);
  return waitForJob(api, res.body.id as string, 240_000);
}

/** What the by-name rule writes for `value` under `columns`: its row, or undefined when it has none of them (the item fails). */
function expectedRow(value: unknown, columns: string[]): string | undefined {
  const record = typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : { prediction: value };
  const cells = columns.map((c) => (Object.hasOwn(record, c) ? record[c] : undefined));
  if (cells.every((c) => c === undefined)) return undefined;
  return cells.map((c) => (c === undefined ? '' : String(c as string | number))).join(',') + '\n';
}

const text = async (name: string): Promise<string> => (await readBlob(host.storageConnection, name)).toString();

/** The job log's dropped-key warnings, as the list of keys each one names. */
function droppedWarnings(log: string): string[][] {
  return log
    .split('\n')
    .filter((l) => l.includes('dropped from every row'))
    .map((l) => (/\): (.*); dropped from every row/.exec(l)?.[1] ?? '').split(', '));
}

describe('a script whose keys vary between mini-batches (one lane: mini-batch 0 fixes the columns)', () => {
  it('writes every row by name, drops each unknown key once, and warns about each exactly once', async () => {
    const endpoint = await echoEndpoint({ mini_batch_size: 1, max_concurrency_per_instance: 1 });
    const values: unknown[] = [
      { b: 1, a: 2 }, // fixes [b, a]
      { a: 3, b: 4 }, // other order
      { a: 5, c: 6 }, // c is new: dropped (host decides)
      { c: 7, b: 8 }, // c again: settled in the worker
      { B: 9, a: 10 }, // B differs from b only by case
      { '\u00e9': 1, a: 11 }, // NFC é
      { 'e\u0301': 2, a: 12 }, // NFD é: another key
      42, // a scalar: { prediction: 42 }, none of the columns: the item fails
      { a: 13, b: 14, c: 15, B: 16 }, // every dropped key again
      { b: 'x y', a: 'z' },
    ];
    const prefix = `data/${endpoint}/in/`;
    await upload(host.storageConnection, Object.fromEntries(values.map((v, i) => [`${prefix}f${String(i).padStart(2, '0')}.json`, JSON.stringify(v)])));
    const out = `out/${endpoint}/`;
    const job = await run(endpoint, prefix, out);
    expect(job.status, JSON.stringify(job.error)).toBe('Completed');
    expect(job.columns).toEqual(['b', 'a']);
    const rows = values.map((v) => expectedRow(v, ['b', 'a']));
    expect(await text(`${out}predictions.csv`)).toBe(rows.filter(Boolean).join(''));
    expect(job.counts.items).toEqual({ total: values.length, succeeded: values.length - 1, failed: 1 });
    const errors = (await text(`${out}errors.jsonl`)).trim().split('\n').map((l) => JSON.parse(l));
    // run() named no files, so the failed item is one count line of mini-batch 7 (documented), not a file.
    expect(errors.map((e) => [e.mini_batch, e.count ?? 1])).toEqual([[7, 1]]);
    const warned = droppedWarnings(await text(`${out}logs/job.log`)).flat();
    expect([...warned].sort()).toEqual(['B', 'c', 'e\u0301', 'prediction', '\u00e9'].sort());
  }, 300_000);
});

describe('many mini-batches racing to fix the columns (4 lanes)', () => {
  it('every row agrees with the job columns by name, and each dropped key is warned once', async () => {
    const endpoint = await echoEndpoint({ mini_batch_size: 1, max_concurrency_per_instance: 2 }, { resources: { instance_count: 2 } });
    const keys = ['k1', 'k2', 'k3', 'k4', 'K1', 'k5'];
    // A fixed pseudo-random choice of keys and orders, so a failure reproduces.
    let seed = 7;
    const rand = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    const values = Array.from({ length: 40 }, (_, i) => {
      const chosen = keys.filter(() => rand(3) > 0);
      const picked = chosen.length > 0 ? chosen : ['k1'];
      for (let k = picked.length - 1; k > 0; k--) {
        const j = rand(k + 1);
        [picked[k], picked[j]] = [picked[j] as string, picked[k] as string];
      }
      return Object.fromEntries(picked.map((k) => [k, `${i}${k}`]));
    });
    const prefix = `data/${endpoint}/in/`;
    await upload(host.storageConnection, Object.fromEntries(values.map((v, i) => [`${prefix}f${String(i).padStart(2, '0')}.json`, JSON.stringify(v)])));
    for (const attempt of ['a', 'b']) {
      const out = `out/${endpoint}/${attempt}/`;
      const job = await run(endpoint, prefix, out, { settings: { environment_variables: { SLOW_MS: '20' } } });
      expect(job.status, JSON.stringify(job.error)).toBe('Completed');
      const columns = job.columns as string[];
      // The columns are the keys of one mini-batch's first (only) result, in its order.
      expect(values.some((v) => JSON.stringify(Object.keys(v)) === JSON.stringify(columns)), JSON.stringify(columns)).toBe(true);
      const rows = values.map((v) => expectedRow(v, columns));
      expect(await text(`${out}predictions.csv`)).toBe(rows.filter(Boolean).join(''));
      expect(job.counts.items.failed).toBe(rows.filter((r) => r === undefined).length);
      const warned = droppedWarnings(await text(`${out}logs/job.log`)).flat();
      const dropped = keys.filter((k) => !columns.includes(k) && values.some((v) => Object.hasOwn(v, k)));
      expect([...warned].sort()).toEqual([...dropped].sort());
    }
  }, 400_000);
});

describe('a rerun of a job whose keys vary', () => {
  it('scores the failed mini-batches under the parent columns: predictions equal a clean run, byte for byte', async () => {
    const endpoint = await echoEndpoint({ mini_batch_size: 1, max_concurrency_per_instance: 2 });
    const flag = join(flags, `${endpoint}.flag`);
    writeFileSync(flag, 'fail while this exists');
    const values: Record<string, unknown>[] = [
      { z: 1, y: 2 },
      { y: 3, z: 4, w: 5, __flaky: flag }, // fails in the parent; in the rerun brings w, which the parent never saw
      { w: 6, y: 7 },
      { z: 8, __flaky: flag },
      { v: 9, z: 10, __flaky: flag }, // v: a key first seen in the rerun
      { y: 11 },
    ];
    const prefix = `data/${endpoint}/in/`;
    await upload(host.storageConnection, Object.fromEntries(values.map((v, i) => [`${prefix}f${i}.json`, JSON.stringify(v)])));
    // Mini-batch 0 alone first, so it fixes the columns as it will in the clean run.
    const parent = await run(endpoint, prefix, `out/${endpoint}/parent/`, { settings: { max_concurrency_per_instance: 1 } });
    expect(parent.status).toBe('Completed');
    expect(parent.columns).toEqual(['z', 'y']);
    expect(parent.counts.items.failed).toBe(3);
    rmSync(flag);
    expect(existsSync(flag)).toBe(false);
    const rerun = await api.call('POST', `jobs/${parent.id}/rerun`, { outputs: { score: { path: ds(`out/${endpoint}/rerun/`) } } });
    expect(rerun.status, JSON.stringify(rerun.body)).toBe(202);
    const rerunJob = await waitForJob(api, rerun.body.id as string, 240_000);
    expect(rerunJob.status, JSON.stringify(rerunJob.error)).toBe('Completed');
    expect(rerunJob.columns).toEqual(['z', 'y']);
    const clean = await run(endpoint, prefix, `out/${endpoint}/clean/`, { settings: { max_concurrency_per_instance: 1 } });
    expect(clean.status).toBe('Completed');
    expect(clean.counts.items.failed).toBe(0);
    const cleanRows = await text(`out/${endpoint}/clean/predictions.csv`);
    expect(cleanRows).toBe(values.map((v) => expectedRow(v, ['z', 'y'])).join(''));
    expect(await text(`out/${endpoint}/rerun/predictions.csv`)).toBe(cleanRows);
    expect(rerunJob.counts.items).toEqual({ total: values.length, succeeded: values.length, failed: 0 });
    // The rerun's own log names what it dropped (w, v) once each.
    expect(droppedWarnings(await text(`out/${endpoint}/rerun/logs/job.log`)).flat().sort()).toEqual(['v', 'w']);
  }, 400_000);
});

describe('names that need encoding, in inputs and the output folder (blocks staged with a plain PUT)', () => {
  it('rows for every input name, outputs at the decoded folder name; the folder cannot be reused while its outputs are there', async () => {
    const endpoint = await echoEndpoint({ mini_batch_size: 2, max_concurrency_per_instance: 2 });
    const names = ['a b.json', 'a+b.json', 'a%b.json', 'a%25b.json', 'a#b.json', 'a?b.json', 'é.json', 'e\u0301.json', '\u{1F600}.json', 'x;y=z.json'];
    const folder = `data/${endpoint}/in 100% #1?/`;
    await upload(host.storageConnection, Object.fromEntries(names.map((n) => [`${folder}${n}`, JSON.stringify({ name: n, len: n.length })])));
    const outFolder = `out/${endpoint}/résultat 100% a+b #1 ?x/`;
    const enc = (p: string): string => p.split('/').map(encodeURIComponent).join('/');
    const invoke = (out: string) => api.call('POST', `endpoints/${endpoint}/jobs`, { inputs: { x: { path: ds(enc(folder)) } }, outputs: { score: { path: ds(enc(out)) } } });
    const res = await invoke(outFolder);
    expect(res.status, JSON.stringify(res.body)).toBe(202);
    const job = await waitForJob(api, res.body.id as string, 240_000);
    expect(job.status, JSON.stringify(job.error)).toBe('Completed');
    const order = [...names].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    const csvCell = (s: string): string => (/[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s);
    expect(await text(`${outFolder}predictions.csv`)).toBe(order.map((n) => `${csvCell(n)},${n.length}\n`).join(''));
    // Re-invoked with the same output folder (its outputs are there): refused, naming the folder.
    const again = await invoke(outFolder);
    expect(again.status, JSON.stringify(again.body)).toBe(409);
    // Two jobs at once into two folders whose names differ only by encoding-sensitive characters.
    const [one, two] = await Promise.all([invoke(`out/${endpoint}/p+q/`), invoke(`out/${endpoint}/p q/`)]);
    expect([one.status, two.status]).toEqual([202, 202]);
    const [j1, j2] = await Promise.all([waitForJob(api, one.body.id as string, 240_000), waitForJob(api, two.body.id as string, 240_000)]);
    expect([j1.status, j2.status]).toEqual(['Completed', 'Completed']);
    const expected = await text(`${outFolder}predictions.csv`);
    expect(await text(`out/${endpoint}/p+q/predictions.csv`)).toBe(expected);
    expect(await text(`out/${endpoint}/p q/predictions.csv`)).toBe(expected);
  }, 400_000);
});
