/**
 * Tester's probes of caches and reusable names (commit fdb4137: every bounded cache one BoundedMap,
 * manifest chunk cache 16 per host): two jobs for one output folder, a job re-invoked with
 * identical inputs, a deployment deleted and made again under its name with another script (the
 * same code folder rewritten in place), a model version deleted and registered again with other
 * content at the same path, and several jobs at once with many chunks each (more chunks in flight
 * than the chunk cache holds). The script writes, per file, the file's text, what init() read
 * from the model folder, and a tag of the script's version.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Api, type Json, deleteFolder, ds, readBlob, startProductHost, upload, waitForJob } from '../support/batch.js';
import { type FnHostProcess } from '../support/fnhost.js';

let host: FnHostProcess;
let api: Api;

const SCRIPT = (tag: string): string => `
import { readFile } from 'node:fs/promises';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
let model = '';
export function init(context) {
  const files = readdirSync(context.modelDir, { recursive: true }).filter((f) => f.endsWith('.txt')).sort();
  model = files.map((f) => readFileSync(join(context.modelDir, f), 'utf8').trim()).join('+');
}
export async function run(miniBatch) {
  const out = [];
  for (const file of miniBatch) out.push({ v: (await readFile(file, 'utf8')).trim(), model, tag: '${tag}' });
  return out;
}
`;

async function put(path: string, body: unknown): Promise<Json> {
  const res = await api.call('PUT', path, body);
  if (res.status >= 300) throw new Error(`PUT ${path}: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body;
}

async function run(endpoint: string, input: string, out: string, extra: Record<string, unknown> = {}): Promise<Json> {
  const res = await api.call('POST', `endpoints/${endpoint}/jobs`, { inputs: { x: { path: ds(input) } }, outputs: { score: { path: ds(out) } }, ...extra });
  if (res.status !== 202) throw new Error(`invoke: ${res.status} ${JSON.stringify(res.body)}`);
  return waitForJob(api, res.body.id as string, 240_000);
}

const rows = (n: number, model: string, tag: string, prefix = 'x'): string => Array.from({ length: n }, (_, i) => `${prefix}${i},${model},${tag}\n`).join('');

beforeAll(async () => {
  ({ host, api } = await startProductHost({ BATCH_CHUNK_SIZE: '4' }));
  const files: Record<string, string> = { 'models/cn/model.txt': 'M1', 'code/cn/score.js': SCRIPT('s1') };
  for (let i = 0; i < 20; i++) files[`data/cn20/f${String(i).padStart(2, '0')}.txt`] = `x${i}`;
  await upload(host.storageConnection, files);
  await put('models/cn/versions/1', { type: 'custom_model', path: ds('models/cn/') });
  await put('endpoints/cnx', {});
  await put('endpoints/cnx/deployments/dep', { model: 'azureml:cn:1', code_configuration: { code: ds('code/cn/'), scoring_script: 'score.js' }, settings: { mini_batch_size: 2, max_concurrency_per_instance: 2 } });
  await put('endpoints/cnx', { defaults: { deployment_name: 'dep' } });
}, 120_000);

afterAll(async () => {
  await host?.stop();
});

describe('caches and names that come back', () => {
  it('two jobs for one output folder: 409 while the first owns it; after it is emptied the second writes its own rows', async () => {
    const first = await run('cnx', 'data/cn20/', 'out/cn-same/');
    expect(first.status).toBe('Completed');
    const refused = await api.call('POST', 'endpoints/cnx/jobs', { inputs: { x: { path: ds('data/cn20/') } }, outputs: { score: { path: ds('out/cn-same/') } } });
    expect(refused.status, JSON.stringify(refused.body)).toBe(409);
    expect(JSON.stringify(refused.body)).toContain(first.id);
    await deleteFolder(host.storageConnection, 'out/cn-same/');
    const files: Record<string, string> = {};
    for (let i = 0; i < 6; i++) files[`data/cn6/g${i}.txt`] = `y${i}`;
    await upload(host.storageConnection, files);
    const second = await run('cnx', 'data/cn6/', 'out/cn-same/');
    expect(second.status).toBe('Completed');
    expect((await readBlob(host.storageConnection, 'out/cn-same/predictions.csv')).toString()).toBe(rows(6, 'M1', 's1', 'y'));
    const old = await api.call('GET', `jobs/${first.id}/outputs/predictions.csv`);
    expect(old.status).toBe(410);
    const mb = await api.call('GET', `jobs/${second.id}/mini-batches`);
    expect(JSON.stringify(mb.body)).not.toContain('f1');
  }, 300_000);

  it('the same inputs invoked again: a new job with the same rows', async () => {
    const a = await run('cnx', 'data/cn20/', 'out/cn-again-a/');
    const b = await run('cnx', 'data/cn20/', 'out/cn-again-b/');
    expect(a.id).not.toBe(b.id);
    expect((await readBlob(host.storageConnection, 'out/cn-again-b/predictions.csv')).toString()).toBe(rows(20, 'M1', 's1'));
    expect((await readBlob(host.storageConnection, 'out/cn-again-a/predictions.csv')).toString()).toBe(rows(20, 'M1', 's1'));
  }, 300_000);

  it('deployment deleted and made again under its name with the code folder rewritten in place: the new script runs', async () => {
    await run('cnx', 'data/cn20/', 'out/cn-redeploy-1/');
    await put('endpoints/cnx', { defaults: { deployment_name: null } }).catch(() => undefined);
    const del = await api.call('DELETE', 'endpoints/cnx/deployments/dep');
    expect([200, 202, 204], JSON.stringify(del.body)).toContain(del.status);
    await upload(host.storageConnection, { 'code/cn/score.js': SCRIPT('s2') });
    await put('endpoints/cnx/deployments/dep', { model: 'azureml:cn:1', code_configuration: { code: ds('code/cn/'), scoring_script: 'score.js' }, settings: { mini_batch_size: 2, max_concurrency_per_instance: 2 } });
    await put('endpoints/cnx', { defaults: { deployment_name: 'dep' } });
    const job = await run('cnx', 'data/cn20/', 'out/cn-redeploy-2/');
    expect(job.status).toBe('Completed');
    expect((await readBlob(host.storageConnection, 'out/cn-redeploy-2/predictions.csv')).toString()).toBe(rows(20, 'M1', 's2'));
  }, 300_000);

  it('model version deleted and registered again with other content at the same path: the new content is used', async () => {
    await upload(host.storageConnection, { 'models/cm/model.txt': 'A1', 'code/cm/score.js': SCRIPT('m') });
    await put('models/cm/versions/1', { type: 'custom_model', path: ds('models/cm/') });
    await put('endpoints/cmx', {});
    const body = { model: 'azureml:cm:1', code_configuration: { code: ds('code/cm/'), scoring_script: 'score.js' }, settings: { mini_batch_size: 2, max_concurrency_per_instance: 2 } };
    await put('endpoints/cmx/deployments/dep', body);
    await put('endpoints/cmx', { defaults: { deployment_name: 'dep' } });
    expect((await run('cmx', 'data/cn20/', 'out/cm-1/')).status).toBe('Completed');
    expect((await readBlob(host.storageConnection, 'out/cm-1/predictions.csv')).toString()).toBe(rows(20, 'A1', 'm'));
    // Delete the deployment (the version is in use), the version, and rewrite the model in place with the same length.
    await put('endpoints/cmx', { defaults: { deployment_name: null } }).catch(() => undefined);
    const d1 = await api.call('DELETE', 'endpoints/cmx/deployments/dep');
    const d2 = await api.call('DELETE', 'models/cm/versions/1');
    expect([d1.status, d2.status].every((s) => [200, 202, 204].includes(s)), JSON.stringify([d1.body, d2.body])).toBe(true);
    await upload(host.storageConnection, { 'models/cm/model.txt': 'B2' });
    await put('models/cm/versions/1', { type: 'custom_model', path: ds('models/cm/') });
    await put('endpoints/cmx/deployments/dep', body);
    await put('endpoints/cmx', { defaults: { deployment_name: 'dep' } });
    expect((await run('cmx', 'data/cn20/', 'out/cm-2/')).status).toBe('Completed');
    expect((await readBlob(host.storageConnection, 'out/cm-2/predictions.csv')).toString()).toBe(rows(20, 'B2', 'm'));
    // And a second file added to the model folder (same version name again).
    await put('endpoints/cmx', { defaults: { deployment_name: null } }).catch(() => undefined);
    await api.call('DELETE', 'endpoints/cmx/deployments/dep');
    await api.call('DELETE', 'models/cm/versions/1');
    await upload(host.storageConnection, { 'models/cm/sub/extra.txt': 'C3' });
    await put('models/cm/versions/1', { type: 'custom_model', path: ds('models/cm/') });
    await put('endpoints/cmx/deployments/dep', body);
    await put('endpoints/cmx', { defaults: { deployment_name: 'dep' } });
    expect((await run('cmx', 'data/cn20/', 'out/cm-3/')).status).toBe('Completed');
    expect((await readBlob(host.storageConnection, 'out/cm-3/predictions.csv')).toString()).toBe(rows(20, 'B2+C3', 'm'));
  }, 300_000);

  it('four jobs at once, 30 chunks each (more than the 16-chunk cache): every job writes its own rows in order', async () => {
    const files: Record<string, string> = {};
    for (const k of [0, 1, 2, 3]) for (let i = 0; i < 120; i++) files[`data/cnmany${k}/f${String(i).padStart(3, '0')}.txt`] = `j${k}-${i}`;
    await upload(host.storageConnection, files);
    const jobs = await Promise.all([0, 1, 2, 3].map((k) => run('cnx', `data/cnmany${k}/`, `out/cnmany${k}/`, { settings: { mini_batch_size: 1 } })));
    for (const [k, job] of jobs.entries()) {
      expect(job.status).toBe('Completed');
      const expected = Array.from({ length: 120 }, (_, i) => `j${k}-${i},M1,s2\n`).join('');
      expect((await readBlob(host.storageConnection, `out/cnmany${k}/predictions.csv`)).toString()).toBe(expected);
    }
  }, 600_000);
});
