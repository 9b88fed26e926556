/**
 * Tester's probes of dropped keys (commit b42cc53) in a pipeline's parallel step and in a rerun.
 * The script returns each file's JSON `row`; a file with `failWhile: NAME` throws while the flag
 * file FLAGS/NAME exists (so a rerun after removing it scores it).
 */
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Api, type Json, deploy, ds, readBlob, startProductHost, upload, waitForJob } from '../support/batch.js';
import { type FnHostProcess } from '../support/fnhost.js';

let host: FnHostProcess;
let api: Api;
const flags = mkdtempSync(join(tmpdir(), 'try-dropkey-pr-'));

const SCRIPT = `
import { readFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
export function init() {}
export async function run(miniBatch) {
  const out = [];
  for (const file of miniBatch) {
    const spec = JSON.parse(await readFile(file, 'utf8'));
    if (spec.failWhile && existsSync(join(process.env.FLAGS, spec.failWhile))) throw new Error('broken while ' + spec.failWhile + ' exists');
    out.push(spec.row);
  }
  return out;
}
`;

beforeAll(async () => {
  ({ host, api } = await startProductHost());
  await upload(host.storageConnection, { 'models/dummy/model.txt': 'unused', 'code/dkpr/score.js': SCRIPT });
  const put = async (path: string, body: unknown): Promise<void> => {
    const res = await api.call('PUT', path, body);
    if (res.status >= 300) throw new Error(`PUT ${path}: ${res.status} ${JSON.stringify(res.body)}`);
  };
  await put('models/dummy/versions/1', { type: 'custom_model', path: ds('models/dummy/') });
}, 120_000);

afterAll(async () => {
  await host?.stop();
  rmSync(flags, { recursive: true, force: true });
});

const warnedKeys = (log: string): string[] =>
  log
    .split('\n')
    .filter((l) => l.includes('dropped from every row'))
    .flatMap((l) => (/\): (.*); dropped from every row/.exec(l)?.[1] ?? '').split(', '));

async function text(id: string, file: string): Promise<string> {
  const res = await fetch(`${host.url}/api/jobs/${id}/${file}`, { headers: { 'x-functions-key': host.masterKey } });
  const body = await res.text();
  if (res.status !== 200) throw new Error(`GET ${file}: ${res.status} ${body}`);
  return body;
}

describe('dropped keys in a pipeline step and a rerun', () => {
  it("a pipeline's parallel step writes by name and warns each dropped key once in its log", async () => {
    const files: Record<string, string> = {};
    for (let i = 0; i < 20; i++) {
      const row: Record<string, unknown> = i % 2 ? { a: i, id: `r${i}` } : { id: `r${i}`, a: i };
      if (i % 4 === 1) row['extra'] = i;
      if (i === 13) row['other'] = 'o';
      files[`data/dkpipe/f${String(i).padStart(2, '0')}.json`] = JSON.stringify({ row });
    }
    await upload(host.storageConnection, files);
    const put = async (path: string, body: unknown): Promise<void> => {
      const res = await api.call('PUT', path, body);
      if (res.status >= 300) throw new Error(`PUT ${path}: ${res.status} ${JSON.stringify(res.body)}`);
    };
    await put('endpoints/dkpipe', {});
    await put('endpoints/dkpipe/deployments/pipe', {
      type: 'pipeline',
      settings: { force_rerun: true },
      component: {
        type: 'pipeline',
        inputs: { data: { type: 'uri_folder' } },
        outputs: { predictions: { type: 'uri_folder' } },
        jobs: {
          score: {
            component: {
              type: 'parallel',
              inputs: { data: { type: 'uri_folder' } },
              outputs: { predictions: { type: 'uri_folder' } },
              input_data: '${{inputs.data}}',
              model: 'azureml:dummy:1',
              mini_batch_size: 2,
              max_concurrency_per_instance: 2,
              environment_variables: { FLAGS: flags },
              task: { type: 'run_function', code: ds('code/dkpr/'), entry_script: 'score.js', append_row_to: '${{outputs.predictions}}' },
            },
            inputs: { data: '${{parent.inputs.data}}' },
            outputs: { predictions: '${{parent.outputs.predictions}}' },
          },
        },
      },
    });
    await put('endpoints/dkpipe', { defaults: { deployment_name: 'pipe' } });
    const res = await api.call('POST', 'endpoints/dkpipe/jobs', { inputs: { data: { type: 'uri_folder', path: ds('data/dkpipe/') } } });
    expect(res.status, JSON.stringify(res.body)).toBe(202);
    const job = await waitForJob(api, res.body.id as string, 240_000);
    expect(job.status, JSON.stringify(job)).toBe('Completed');
    const step = job.steps.find((s: Json) => s.name === 'score');
    const predictions = await text(job.id, 'steps/score/outputs/predictions.csv');
    const cols = step.columns as string[];
    const expected = Array.from({ length: 20 }, (_, i) => {
      const row: Record<string, unknown> = { id: `r${i}`, a: i };
      return cols.map((c) => String(row[c])).join(',') + '\n';
    }).join('');
    expect(predictions).toBe(expected);
    const log = await text(job.id, 'steps/score/outputs/logs/job.log');
    expect(warnedKeys(log).sort()).toEqual(['extra', 'other']);
  }, 300_000);

  it('a rerun that scores a mini-batch with a key its parent dropped: rows by name, warned in the rerun log', async () => {
    const flag = 'rerun-broken';
    writeFileSync(join(flags, flag), 'x');
    const rows = [
      { id: 0, a: 'x0' },
      { id: 1, a: 'x1', extra: 1 },
      { a: 'x2', id: 2, extra: 2, fresh: 2 },
      { id: 3, a: 'x3', extra: 3 },
    ];
    const files: Record<string, string> = {};
    rows.forEach((row, i) => (files[`data/dkrerun/f${i}.json`] = JSON.stringify(i === 2 ? { row, failWhile: flag } : { row })));
    await upload(host.storageConnection, files);
    await deploy(api, {
      endpoint: 'dkrerun',
      deployment: 'echo',
      model: { name: 'dummy', version: '1', type: 'custom_model', path: ds('models/dummy/') },
      deploymentBody: {
        code_configuration: { code: ds('code/dkpr/'), scoring_script: 'score.js' },
        settings: { mini_batch_size: 1, max_concurrency_per_instance: 1, retry_settings: { max_retries: 0, timeout: 30 }, environment_variables: { FLAGS: flags } },
      },
    });
    const res = await api.call('POST', 'endpoints/dkrerun/jobs', { inputs: { x: { path: ds('data/dkrerun/') } }, outputs: { score: { path: ds('out/dkrerun/') } } });
    expect(res.status, JSON.stringify(res.body)).toBe(202);
    const parent = await waitForJob(api, res.body.id as string, 120_000);
    expect(parent.counts.items).toEqual({ total: 4, succeeded: 3, failed: 1 });
    const parentLog = (await readBlob(host.storageConnection, 'out/dkrerun/logs/job.log')).toString();
    expect(warnedKeys(parentLog)).toEqual(['extra']);
    rmSync(join(flags, flag));
    expect(existsSync(join(flags, flag))).toBe(false);
    const rr = await api.call('POST', `jobs/${parent.id}/rerun`, { outputs: { score: { path: ds('out/dkrerun-2/') } } });
    expect(rr.status, JSON.stringify(rr.body)).toBe(202);
    const child = await waitForJob(api, rr.body.id as string, 120_000);
    expect(child.status).toBe('Completed');
    expect(child.counts.items).toEqual({ total: 4, succeeded: 4, failed: 0 });
    expect(child.columns).toEqual(['id', 'a']);
    expect((await readBlob(host.storageConnection, 'out/dkrerun-2/predictions.csv')).toString()).toBe('0,x0\n1,x1\n2,x2\n3,x3\n');
    const childLog = (await readBlob(host.storageConnection, 'out/dkrerun-2/logs/job.log')).toString();
    expect(warnedKeys(childLog).sort()).toEqual(['extra', 'fresh']);
  }, 300_000);

  it('keys named like Object.prototype members, empty, or needing CSV quotes: written by name, dropped ones warned', async () => {
    const first = JSON.parse('{"__proto__": 1, "": 2, "a,b": 3, "q\\"x": 4, "constructor": 5}');
    const rows: unknown[] = [first, JSON.parse('{"constructor": 6, "toString": 7, "hasOwnProperty": 8}'), JSON.parse('{"__proto__": {"polluted": true}, "valueOf": 9}')];
    const files: Record<string, string> = {};
    rows.forEach((row, i) => (files[`data/dkproto/f${i}.json`] = JSON.stringify({ row })));
    await upload(host.storageConnection, files);
    for (const name of ['predictions.csv', 'predictions.jsonl']) {
      const endpoint = `dkproto${name.endsWith('csv') ? 'c' : 'j'}`;
      await deploy(api, {
        endpoint,
        deployment: 'echo',
        model: { name: 'dummy', version: '1', type: 'custom_model', path: ds('models/dummy/') },
        deploymentBody: {
          code_configuration: { code: ds('code/dkpr/'), scoring_script: 'score.js' },
          settings: { mini_batch_size: 1, max_concurrency_per_instance: 1, csv_header: true, output_file_name: name, environment_variables: { FLAGS: flags } },
        },
      });
      const res = await api.call('POST', `endpoints/${endpoint}/jobs`, { inputs: { x: { path: ds('data/dkproto/') } }, outputs: { score: { path: ds(`out/${endpoint}/`) } } });
      expect(res.status, JSON.stringify(res.body)).toBe(202);
      const job = await waitForJob(api, res.body.id as string, 120_000);
      const out = (await readBlob(host.storageConnection, `out/${endpoint}/${name}`)).toString();
      const log = (await readBlob(host.storageConnection, `out/${endpoint}/logs/job.log`)).toString();
      expect(job.columns).toEqual(['__proto__', '', 'a,b', 'q"x', 'constructor']);
      if (name.endsWith('csv')) expect(out).toBe('__proto__,,"a,b","q""x",constructor\n1,2,3,4,5\n,,,,6\n"{""polluted"":true}",,,,\n');
      else expect(out.trim().split('\n').map((l) => JSON.parse(l))).toEqual([JSON.parse('{"__proto__":1,"":2,"a,b":3,"q\\"x":4,"constructor":5}'), JSON.parse('{"__proto__":null,"":null,"a,b":null,"q\\"x":null,"constructor":6}'), JSON.parse('{"__proto__":{"polluted":true},"":null,"a,b":null,"q\\"x":null,"constructor":null}')]);
      expect(warnedKeys(log).sort()).toEqual(['hasOwnProperty', 'toString', 'valueOf']);
    }
  }, 300_000);
});
