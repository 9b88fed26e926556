/**
 * Tester's probe of "fnhost in memory: its Event Grid log keeps only events a subscription may
 * still read" (commit 64b4eb8): with the example's local settings (blob writes to fnhost's Azurite
 * are BlobCreated events for the app's `blobCreated`), many blob writes nobody's rule wants, before
 * and between matching ones, must not cost a trigger rule any file: each batch makes one job of
 * exactly its files, and those jobs complete.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readLocalSettings } from '../../scripts/lib/local-stack.js';
import { type Api, type Json, deploy, ds, startProductHost, upload, waitForJob } from '../support/batch.js';
import { type FnHostProcess } from '../support/fnhost.js';
import { waitFor } from '../support/wait.js';

const ENDPOINT = 'egnoise';
let host: FnHostProcess;
let api: Api;

const SCRIPT = `
import { readFile } from 'node:fs/promises';
import { basename } from 'node:path';
export function init() {}
export async function run(miniBatch) {
  const out = [];
  for (const file of miniBatch) out.push({ file_name: basename(file), text: (await readFile(file, 'utf8')).trim() });
  return out;
}
`;

beforeAll(async () => {
  ({ host, api } = await startProductHost({}, { localSettings: readLocalSettings() }));
  await upload(host.storageConnection, { 'models/dummy/model.txt': 'unused', 'code/egnoise/score.js': SCRIPT });
  await deploy(api, {
    endpoint: ENDPOINT,
    deployment: 'echo',
    model: { name: 'dummy', version: '1', type: 'custom_model', path: ds('models/dummy/') },
    deploymentBody: { code_configuration: { code: ds('code/egnoise/'), scoring_script: 'score.js' }, settings: { mini_batch_size: 2 } },
  });
}, 120_000);

afterAll(async () => {
  await host?.stop();
});

async function noise(tag: string, count: number): Promise<void> {
  for (let start = 0; start < count; start += 100) {
    const files: Record<string, string> = {};
    for (let i = start; i < Math.min(count, start + 100); i++) files[`noise/${tag}/n${i}.txt`] = `noise ${i}`;
    await upload(host.storageConnection, files);
  }
}

async function ruleJobs(): Promise<Json[]> {
  const res = await api.call('GET', `endpoints/${ENDPOINT}/jobs?top=100`);
  return (res.body.value as Json[]).filter((j) => j.tags?.trigger === 'incoming').reverse();
}

describe('blob-created triggers in memory after many unwanted blob writes', () => {
  it('each batch of matching files makes one job of exactly those files, which completes', async () => {
    const put = await api.call('PUT', `endpoints/${ENDPOINT}/triggers/incoming`, {
      source: { datastore: 'workspaceblobstore', path_prefix: 'incoming/', suffixes: ['.json'] },
      batching: { window_seconds: 2, max_files: 100 },
    });
    expect([200, 201], JSON.stringify(put.body)).toContain(put.status);
    await noise('a', 700);
    await upload(host.storageConnection, { 'incoming/one.json': '1', 'incoming/two.json': '2', 'incoming/three.json': '3' });
    const [first] = await waitFor(async () => ((await ruleJobs()).length >= 1 ? ruleJobs() : undefined), { timeoutMs: 60_000, intervalMs: 200, what: 'the first triggered job' });
    const firstDone = await waitForJob(api, first.id as string, 120_000);
    expect(firstDone.status, JSON.stringify(firstDone.error)).toBe('Completed');
    expect((firstDone.inputs.input_data.files as { name: string }[]).map((f) => f.name).sort()).toEqual(['one.json', 'three.json', 'two.json']);

    // Noise again, with matching files between its batches.
    await noise('b', 300);
    await upload(host.storageConnection, { 'incoming/four.json': '4' });
    await noise('c', 400);
    await upload(host.storageConnection, { 'incoming/five.json': '5' });
    await noise('d', 200);
    const jobs = await waitFor(
      async () => {
        const all = await ruleJobs();
        const files = all.slice(1).flatMap((j) => (j.inputs.input_data.files as { name: string }[]).map((f) => f.name));
        return files.includes('four.json') && files.includes('five.json') ? all : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 200, what: 'jobs of four.json and five.json' },
    );
    const later = jobs.slice(1);
    expect(later.flatMap((j) => (j.inputs.input_data.files as { name: string }[]).map((f) => f.name)).sort()).toEqual(['five.json', 'four.json']);
    for (const j of later) expect((await waitForJob(api, j.id as string, 120_000)).status).toBe('Completed');
  }, 300_000);
});
