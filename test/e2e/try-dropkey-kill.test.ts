/**
 * Tester's probe of "a dropped key's warning survives a crash" (commit b42cc53) with two lanes and
 * several keys: fnhost on a data folder is SIGKILLed at several moments (during prepare, mid-job
 * twice, right as the last mini-batches run) and restarted on the same folder and port. Keys:
 * `once` (one mini-batch), `many` (every 5th file: many mini-batches), `pair` (two files of two
 * mini-batches on different lanes), `late` (the last file). Every file's object starts with `id`,
 * `a`, and the other keys come only on odd files (never first in a mini-batch of 2), so whichever
 * lane fixes the columns they are [id, a]. The script is deterministic.
 * Checks: predictions.csv exactly the by-name rows in file order, each dropped key warned exactly
 * once, counts complete.
 */
import { describe, expect, it } from 'vitest';
import { deploy, ds, ECHO_JSON_SCRIPT, readBlob, startProductHost, upload, waitForJob } from '../support/batch.js';
import { cleanupsAfterAll } from '../support/cleanups.js';
import { hostDataFolder } from '../support/fnhost.js';
import { waitFor } from '../support/wait.js';

const cleanups = cleanupsAfterAll();

const SCRIPT = ECHO_JSON_SCRIPT;

const COUNT = 120;

function value(i: number): Record<string, unknown> {
  const v: Record<string, unknown> = { id: i, a: `v${i}` };
  if (i === 7) v['once'] = 1;
  if (i % 10 === 3) v['many'] = i;
  if (i === 51 || i === 93) v['pair'] = i;
  if (i === COUNT - 1) v['late'] = 'x';
  return v;
}

describe('kill -9 at several moments, two lanes, several dropped keys', () => {
  it('predictions by name in order, each dropped key warned exactly once', async () => {
    const dataDir = hostDataFolder(cleanups, 'try-dropkey-kill-');
    const start = (port?: number): ReturnType<typeof startProductHost> => startProductHost({ BATCH_SEGMENT_SIZE: '8', BATCH_CHUNK_SIZE: '4' }, { dataDir, port });
    let { host, api } = await start();
    cleanups.push(() => host.kill());
    const files: Record<string, string> = { 'code/dkkill/score.js': SCRIPT, 'models/dummy/model.txt': 'unused' };
    for (let i = 0; i < COUNT; i++) files[`data/dkkill/f${String(i).padStart(3, '0')}.json`] = JSON.stringify(value(i));
    await upload(host.storageConnection, files);
    await deploy(api, {
      endpoint: 'dkkill',
      deployment: 'echo',
      model: { name: 'dummy', version: '1', type: 'custom_model', path: ds('models/dummy/') },
      deploymentBody: {
        code_configuration: { code: ds('code/dkkill/'), scoring_script: 'score.js' },
        settings: { mini_batch_size: 2, max_concurrency_per_instance: 2, environment_variables: { SLOW_MS: '40' } },
      },
    });
    const res = await api.call('POST', 'endpoints/dkkill/jobs', { inputs: { x: { path: ds('data/dkkill/') } }, outputs: { score: { path: ds('out/dkkill/') } } });
    expect(res.status, JSON.stringify(res.body)).toBe(202);
    const jobId = res.body.id as string;
    const kills: string[] = [];
    const killAndRestart = async (why: string): Promise<void> => {
      const { body } = await api.call('GET', `jobs/${jobId}`);
      kills.push(`${why}: ${body?.status} ${JSON.stringify(body?.counts?.mini_batches)}`);
      await host.kill();
      ({ host, api } = await start(host.port));
    };
    await new Promise((r) => setTimeout(r, 150));
    await killAndRestart('150 ms after the 202');
    for (const threshold of [5, 25, 56]) {
      await waitFor(
        async () => {
          const { body } = await api.call('GET', `jobs/${jobId}`);
          return (body?.counts?.mini_batches?.succeeded ?? 0) >= threshold ? true : undefined;
        },
        { timeoutMs: 180_000, intervalMs: 10, what: `${threshold} mini-batches` },
      );
      await killAndRestart(`${threshold} mini-batches`);
    }
    const job = await waitForJob(api, jobId, 300_000);
    expect(job.status, JSON.stringify(job.error)).toBe('Completed');
    expect(job.columns).toEqual(['id', 'a']);
    expect(job.counts.items).toEqual({ total: COUNT, succeeded: COUNT, failed: 0 });
    const expected = Array.from({ length: COUNT }, (_, i) => `${i},v${i}\n`).join('');
    expect((await readBlob(host.storageConnection, 'out/dkkill/predictions.csv')).toString()).toBe(expected);
    const log = (await readBlob(host.storageConnection, 'out/dkkill/logs/job.log')).toString();
    const warnings = log.split('\n').filter((l) => l.includes('dropped from every row'));
    const warned = warnings.flatMap((l) => (/\): (.*); dropped from every row/.exec(l)?.[1] ?? '').split(', '));
    expect(warned.sort()).toEqual(['late', 'many', 'once', 'pair']);
  }, 900_000);
});
