/**
 * Tester's probe of commit 64b4eb8 under kill -9: fnhost on a data folder (its Azurite outlives the
 * host) runs a scoring script whose keys vary between mini-batches (columns settled in the worker
 * or by the host, output blocks staged with a plain PUT, log lines written once per turn); the
 * host is SIGKILLed twice mid-job and restarted on the same folder. The job must end exactly as an
 * uninterrupted run: predictions, errors.jsonl and the report byte for byte, and each dropped key
 * warned about once in logs/job.log.
 */
import { describe, expect, it } from 'vitest';
import { deploy, ds, ECHO_JSON_SCRIPT, readBlob, startProductHost, upload, waitForJob } from '../support/batch.js';
import { cleanupsAfterAll } from '../support/cleanups.js';
import { hostDataFolder } from '../support/fnhost.js';
import { waitFor } from '../support/wait.js';

const cleanups = cleanupsAfterAll();

const SCRIPT = ECHO_JSON_SCRIPT;

const COUNT = 150;

/** File i's result: keys vary; every 10th brings a key no mini-batch had before (dropped, warned once). */
function value(i: number): Record<string, unknown> {
  const v: Record<string, unknown> = i % 3 === 0 ? { b: i, a: `v${i}` } : i % 3 === 1 ? { a: `v${i}`, b: i * 2 } : { a: `only${i}` };
  if (i % 10 === 5) v[`new${i}`] = i;
  if (i % 7 === 6) v['b'] = undefined; // JSON drops it: a missing key
  return v;
}

describe('kill -9 of fnhost on a data folder while keys vary between mini-batches', () => {
  it('ends byte-identical to an uninterrupted run, each dropped key warned once', async () => {
    const dataDir = hostDataFolder(cleanups, 'try-speed-crash-');
    const env = { BATCH_SEGMENT_SIZE: '8', BATCH_CHUNK_SIZE: '4' };
    const start = (port?: number): ReturnType<typeof startProductHost> => startProductHost(env, { dataDir, port });
    let { host, api } = await start();
    cleanups.push(() => host.kill());
    const files: Record<string, string> = { 'code/crashcols/score.js': SCRIPT, 'models/dummy/model.txt': 'unused' };
    for (let i = 0; i < COUNT; i++) files[`data/crashcols/f${String(i).padStart(3, '0')}.json`] = JSON.stringify(value(i));
    await upload(host.storageConnection, files);
    await deploy(api, {
      endpoint: 'crashcols',
      deployment: 'echo',
      model: { name: 'dummy', version: '1', type: 'custom_model', path: ds('models/dummy/') },
      deploymentBody: {
        code_configuration: { code: ds('code/crashcols/'), scoring_script: 'score.js' },
        // One lane: mini-batch 0 fixes the columns in every run, so runs compare byte for byte.
        settings: { mini_batch_size: 1, max_concurrency_per_instance: 1, environment_variables: { SLOW_MS: '25' } },
      },
    });
    const invoke = async (out: string): Promise<string> => {
      const res = await api.call('POST', 'endpoints/crashcols/jobs', { inputs: { x: { path: ds('data/crashcols/') } }, outputs: { score: { path: ds(out) } } });
      expect(res.status, JSON.stringify(res.body)).toBe(202);
      return res.body.id as string;
    };
    const read = async (name: string): Promise<string> => (await readBlob(host.storageConnection, name)).toString();
    const warned = (log: string): string[] =>
      log
        .split('\n')
        .filter((l) => l.includes('dropped from every row'))
        .flatMap((l) => (/\): (.*); dropped from every row/.exec(l)?.[1] ?? '').split(', '));
    const newKeys = Array.from({ length: COUNT }, (_, i) => i)
      .filter((i) => i % 10 === 5)
      .map((i) => `new${i}`);

    const reference = await waitForJob(api, await invoke('out/reference/'), 300_000);
    expect(reference.status, JSON.stringify(reference.error)).toBe('Completed');
    expect(reference.columns).toEqual(['b', 'a']);
    const expected = {
      predictions: await read('out/reference/predictions.csv'),
      report: (await read('out/reference/processed_mini_batches.csv')).split('\n').map((l) => l.split(',')[0]),
    };
    expect(expected.predictions.trim().split('\n')).toHaveLength(COUNT);
    expect(warned(await read('out/reference/logs/job.log')).sort()).toEqual([...newKeys].sort());

    const jobId = await invoke('out/crashed/');
    for (const threshold of [15, 70]) {
      await waitFor(
        async () => {
          const { body } = await api.call('GET', `jobs/${jobId}`);
          return (body?.counts?.mini_batches?.succeeded ?? 0) >= threshold ? true : undefined;
        },
        { timeoutMs: 180_000, intervalMs: 20, what: `${threshold} mini-batches` },
      );
      await host.kill();
      ({ host, api } = await start(host.port));
    }
    const job = await waitForJob(api, jobId, 300_000);
    expect(job.status, JSON.stringify(job.error)).toBe('Completed');
    expect(job.columns).toEqual(['b', 'a']);
    expect(job.counts.items).toEqual({ total: COUNT, succeeded: COUNT, failed: 0 });
    expect(await read('out/crashed/predictions.csv')).toBe(expected.predictions);
    expect((await read('out/crashed/processed_mini_batches.csv')).split('\n').map((l) => l.split(',')[0])).toEqual(expected.report);
    expect(warned(await read('out/crashed/logs/job.log')).sort()).toEqual([...newKeys].sort());
  }, 900_000);
});
