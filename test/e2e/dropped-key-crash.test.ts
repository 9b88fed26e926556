/**
 * A key dropped from the rows is warned about by the mini-batch that dropped it first. The job
 * record says it was dropped before that mini-batch's log reaches the journal, so a host killed in
 * between loses the run that would have warned: the run made again after the restart must warn.
 * The fault proxy holds the mini-batch's first output block open, which catches the host after the
 * job record names the key and before the orchestration records the mini-batch.
 */
import { describe, expect, it } from 'vitest';
import { deploy, ds, ECHO_JSON_SCRIPT, readBlob, restartableProductAppBehindProxy, upload, waitForJob } from '../support/batch.js';
import { cleanupsAfterAll } from '../support/cleanups.js';
import { waitFor } from '../support/wait.js';

const cleanups = cleanupsAfterAll();

const SCRIPT = ECHO_JSON_SCRIPT;

describe('a host killed after a key is dropped and before its mini-batch is recorded', () => {
  it('warns about the key in the run made again after the restart, once', async () => {
    const { storage, proxy, start } = await restartableProductAppBehindProxy(cleanups, 'dropped-key-crash-');
    let { host, api } = await start();
    cleanups.push(() => host.kill());
    await upload(storage.connectionString, {
      'code/dropcrash/score.js': SCRIPT,
      'models/dummy/model.txt': 'unused',
      // One mini-batch: the first result fixes the columns (a), the second brings a key to drop.
      'data/dropcrash/f0.json': JSON.stringify({ a: 1 }),
      'data/dropcrash/f1.json': JSON.stringify({ a: 2, extra: 3 }),
    });
    await deploy(api, {
      endpoint: 'dropcrash',
      deployment: 'echo',
      model: { name: 'dummy', version: '1', type: 'custom_model', path: ds('models/dummy/') },
      deploymentBody: { code_configuration: { code: ds('code/dropcrash/'), scoring_script: 'score.js' }, settings: { mini_batch_size: 2 } },
    });
    const held = proxy.fail({ service: 'blob', method: 'PUT', path: /\/out\/dropcrash\//, query: /comp=block(&|$)/, hang: true, times: 1 });
    const res = await api.call('POST', 'endpoints/dropcrash/jobs', { inputs: { x: { path: ds('data/dropcrash/') } }, outputs: { score: { path: ds('out/dropcrash/') } } });
    expect(res.status, JSON.stringify(res.body)).toBe(202);
    const jobId = res.body.id as string;
    await waitFor(() => (held.hits > 0 ? true : undefined), { timeoutMs: 60_000, intervalMs: 20, what: "the mini-batch's output block" });
    // The job record already names the dropped key: the columns are decided before rows are staged.
    const before = await api.call('GET', `jobs/${jobId}`);
    expect(before.body.columns).toEqual(['a']);

    await host.kill();
    ({ host, api } = await start(host.port));
    const job = await waitForJob(api, jobId, 120_000);
    expect(job.status, JSON.stringify(job.error)).toBe('Completed');
    expect(job.counts.items).toEqual({ total: 2, succeeded: 2, failed: 0 });
    expect((await readBlob(storage.connectionString, 'out/dropcrash/predictions.csv')).toString()).toBe('1\n2\n');
    const log = (await readBlob(storage.connectionString, 'out/dropcrash/logs/job.log')).toString();
    const warnings = log.split('\n').filter((l) => l.includes('dropped from every row'));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain('(a): extra; dropped from every row');
  }, 300_000);
});
