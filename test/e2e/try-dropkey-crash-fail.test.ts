/**
 * Tester's probe of "a dropped key's warning survives a crash" (commit b42cc53): as
 * e2e/dropped-key-crash, the host is SIGKILLed after the job record names mini-batch 1 as the
 * first to drop `extra` and before mini-batch 1 is recorded (the fault proxy holds its output
 * block open). After the restart mini-batch 1 fails for good (its script throws: a flag file now
 * exists; max_retries 0), and mini-batch 2 drops `extra` from its row too. The job log must still
 * say, once, that `extra` was dropped.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ds, deploy, readBlob, restartableProductAppBehindProxy, upload, waitForJob } from '../support/batch.js';
import { cleanupsAfterAll } from '../support/cleanups.js';
import { waitFor } from '../support/wait.js';

const cleanups = cleanupsAfterAll();
const flags = mkdtempSync(join(tmpdir(), 'try-dropkey-crash-fail-'));
cleanups.push(() => rmSync(flags, { recursive: true, force: true }));

const SCRIPT = `
import { readFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
export function init() {}
export async function run(miniBatch) {
  const out = [];
  for (const file of miniBatch) {
    const v = JSON.parse(await readFile(file, 'utf8'));
    if (v.a === 1 && existsSync(join(process.env.FLAGS, 'broken'))) throw new Error('broken after the restart');
    out.push(v);
  }
  return out;
}
`;

describe('a host killed after a key is dropped; the dropping mini-batch then fails for good', () => {
  it('still warns about the key that a later mini-batch dropped', async () => {
    const { storage, proxy, start } = await restartableProductAppBehindProxy(cleanups, 'try-dropkey-crash-fail-');
    let { host, api } = await start();
    cleanups.push(() => host.kill());
    await upload(storage.connectionString, {
      'code/dkcf/score.js': SCRIPT,
      'models/dummy/model.txt': 'unused',
      'data/dkcf/f0.json': JSON.stringify({ a: 0 }),
      'data/dkcf/f1.json': JSON.stringify({ a: 1, extra: 1 }),
      'data/dkcf/f2.json': JSON.stringify({ a: 2, extra: 2 }),
    });
    await deploy(api, {
      endpoint: 'dkcf',
      deployment: 'echo',
      model: { name: 'dummy', version: '1', type: 'custom_model', path: ds('models/dummy/') },
      deploymentBody: {
        code_configuration: { code: ds('code/dkcf/'), scoring_script: 'score.js' },
        settings: { mini_batch_size: 1, max_concurrency_per_instance: 1, retry_settings: { max_retries: 0, timeout: 30 }, environment_variables: { FLAGS: flags } },
      },
    });
    const held = proxy.fail({ service: 'blob', method: 'PUT', path: /\/seg-\d+\/predictions$/, query: /comp=block(&|$)/, hang: true, times: 1, after: 1 });
    const res = await api.call('POST', 'endpoints/dkcf/jobs', { inputs: { x: { path: ds('data/dkcf/') } }, outputs: { score: { path: ds('out/dkcf/') } } });
    expect(res.status, JSON.stringify(res.body)).toBe(202);
    const jobId = res.body.id as string;
    await waitFor(() => (held.hits > 0 ? true : undefined), { timeoutMs: 60_000, intervalMs: 20, what: "mini-batch 1's output block" });
    await host.kill();
    writeFileSync(join(flags, 'broken'), 'x');
    ({ host, api } = await start(host.port));
    const job = await waitForJob(api, jobId, 120_000);
    const log = (await readBlob(storage.connectionString, 'out/dkcf/logs/job.log')).toString();
    expect(job.counts.items).toEqual({ total: 3, succeeded: 2, failed: 1 });
    expect((await readBlob(storage.connectionString, 'out/dkcf/predictions.csv')).toString()).toBe('0\n2\n');
    expect(log.split('\n').filter((l) => l.includes('dropped from every row'))).toHaveLength(1);
  }, 300_000);
});
