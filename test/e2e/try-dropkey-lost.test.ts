/**
 * Tester's probes of dropped-key warnings (commit b42cc53) when finalize runs a mini-batch again
 * because storage acknowledged and then lost one of its writes (fault proxy `drop`): the
 * mini-batch that dropped the key first loses its staged rows, and runs again while finalizing.
 * It must end with complete predictions written by name and the key warned about exactly once.
 * (The tester's second case, the first dropper's own journal record lost, no longer applies: the
 * warning is written by finalize from the job record, so that mini-batch's record is a routine one
 * carried by the orchestration.)
 * One lane, mini_batch_size 1: mini-batch 0 fixes the columns [a], mini-batch 1 drops `extra`
 * first, mini-batch 2 has it too.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Api, type Json, deploy, ds, ECHO_JSON_SCRIPT, startProductHostBehindProxy, upload, waitForJob } from '../support/batch.js';
import type { FaultProxy } from '../support/fault-proxy.js';
import { type FnHostProcess } from '../support/fnhost.js';
import { uniqueName } from '../support/ports.js';

let storage: { connectionString: string };
let proxy: FaultProxy;
let host: FnHostProcess;
let api: Api;
let stopHost: (() => Promise<void>) | undefined;

const PREDICTION_PARTS = /\/seg-\d+\/predictions$/;

const SCRIPT = ECHO_JSON_SCRIPT;

beforeAll(async () => {
  ({ host, api, storage, proxy, stop: stopHost } = await startProductHostBehindProxy({}, 'try-dropkey-lost-'));
  await upload(storage.connectionString, { 'code/dklost/score.js': SCRIPT });
}, 120_000);

afterAll(async () => {
  await stopHost?.();
});

async function job(): Promise<{ job: Json; predictions: string; log: string; warned: string[] }> {
  const endpoint = uniqueName('dkl');
  await deploy(api, {
    endpoint,
    deployment: 'dep',
    model: { name: 'dummy', version: '1', type: 'custom_model', path: ds('models/dummy/') },
    deploymentBody: { code_configuration: { code: ds('code/dklost/'), scoring_script: 'score.js' }, settings: { mini_batch_size: 1, max_concurrency_per_instance: 1 } },
  });
  const rows = [{ a: 0 }, { a: 1, extra: 1 }, { a: 2, extra: 2 }, { a: 3 }];
  await upload(storage.connectionString, Object.fromEntries(rows.map((r, i) => [`data/${endpoint}/f${i}.json`, JSON.stringify(r)])));
  const res = await api.call('POST', `endpoints/${endpoint}/jobs`, { inputs: { x: { path: ds(`data/${endpoint}/`) } } });
  expect(res.status, JSON.stringify(res.body)).toBe(202);
  const done = await waitForJob(api, res.body.id as string, 180_000);
  const get = async (file: string): Promise<string> => (await fetch(`${host.url}/api/jobs/${done.id}/outputs/${file}`, { headers: { 'x-functions-key': host.masterKey } })).text();
  const log = await get('logs/job.log');
  return { job: done, predictions: await get('predictions.csv'), log, warned: log.split('\n').filter((l) => l.includes('dropped from every row')) };
}

describe('a dropped key when finalize runs its mini-batch again', () => {
  it("the first dropper's staged rows are lost: run again while finalizing, the key warned once", async () => {
    const rule = proxy.fail({ service: 'blob', method: 'PUT', path: PREDICTION_PARTS, query: /comp=block&/, drop: true, times: 1, after: 1 });
    const r = await job();
    rule.cancel();
    expect(rule.hits).toBe(1);
    expect(r.job.status).toBe('Completed');
    expect(r.predictions).toBe('0\n1\n2\n3\n');
    expect(r.log).toContain('run again while finalizing');
    expect(r.warned).toHaveLength(1);
  }, 300_000);
});
