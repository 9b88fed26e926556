import { describe, expect, it } from 'vitest';
import { customDeployment, ds, readBlob, restartableProductApp, upload, waitForJob } from '../support/batch.js';
import { cleanupsAfterAll } from '../support/cleanups.js';
import { waitFor } from '../support/wait.js';

const cleanups = cleanupsAfterAll();

describe('batch job crash safety', () => {
  /**
   * Runs the same 30-file job twice on one storage, uninterrupted and then killed (kill -9) when
   * `killWhen` holds for its view; the host restarts on the same data and the job must end as the
   * reference did, byte for byte.
   */
  async function killedAndResumed(options: { extraEnv: Record<string, string>; killWhen: (job: { status: string; counts: { mini_batches: { succeeded: number } } }) => boolean }): Promise<void> {
    const { storage, start } = await restartableProductApp(cleanups, 'batch-crash-', options.extraEnv);
    const { host: first, api: firstApi } = await start();
    cleanups.push(() => first.kill());
    let api = firstApi;

    const files: Record<string, string> = {};
    for (let i = 0; i < 30; i++) files[`data/crash/f${String(i).padStart(2, '0')}.txt`] = `file ${i}\n${'x\n'.repeat(i)}`;
    await upload(storage.connectionString, files);
    await customDeployment(first, api, { endpoint: 'crashy', deployment: 'lines', script: 'slow-lines.js', settings: { mini_batch_size: 1, max_concurrency_per_instance: 2, environment_variables: { SLOW_MS: '200' } } });
    const invoke = async (out: string): Promise<string> => {
      const res = await api.call('POST', 'endpoints/crashy/jobs', { inputs: { text: { path: ds('data/crash/') } }, outputs: { out: { path: ds(out) } } });
      expect(res.status).toBe(202);
      return res.body.id as string;
    };

    // An uninterrupted run, for reference.
    const reference = await waitForJob(api, await invoke('out/reference/'));
    expect(reference.status).toBe('Completed');
    const expected = await readBlob(storage.connectionString, 'out/reference/predictions.csv');
    expect(expected.toString().trim().split('\n')).toHaveLength(30);

    const jobId = await invoke('out/crashed/');
    await waitFor(
      async () => {
        const { body } = await api.call('GET', `jobs/${jobId}`);
        return options.killWhen(body) ? body : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 5 },
    );
    await first.kill();

    const { host: second, api: secondApi } = await start(first.port);
    cleanups.push(() => second.stop());
    api = secondApi;
    const job = await waitForJob(api, jobId, 120_000);
    expect(job.status).toBe('Completed');
    expect(job.counts.items).toEqual({ total: 30, succeeded: 30, failed: 0 });
    expect(job.counts.mini_batches).toMatchObject({ total: 30, succeeded: 30 });
    const actual = await readBlob(storage.connectionString, 'out/crashed/predictions.csv');
    expect(actual.toString()).toBe(expected.toString());
    const report = (await readBlob(storage.connectionString, 'out/crashed/processed_mini_batches.csv')).toString().trim().split('\n');
    expect(report.slice(1).map((line) => Number(line.split(',')[0]))).toEqual(Array.from({ length: 30 }, (_, i) => i));
  }

  it('finishes a job after kill -9 and restart with a byte-identical predictions file', async () => {
    // Killed a third of the way in.
    await killedAndResumed({ extraEnv: {}, killWhen: (job) => job.counts.mini_batches.succeeded >= 10 });
  });

  it('finishes a job whose folder is listed page by page after kill -9 while it lists, byte-identical', async () => {
    // Pages of 3 files: prepare plans the first, the planner lists the other nine while lanes score.
    await killedAndResumed({ extraEnv: { BATCH_LIST_PAGE_SIZE: '3', BATCH_CHUNK_SIZE: '2' }, killWhen: (job) => job.status === 'Running' });
  });

  it('finishes a job of several segments after kill -9 while it composes its outputs, byte-identical', async () => {
    const { storage, start } = await restartableProductApp(cleanups, 'batch-crash-compose-', {}, { immediateProgress: false });
    const { host: first, api: firstApi } = await start();
    cleanups.push(() => first.kill());
    let api = firstApi;
    // 600 mini-batches: three segments of parts, composed at finalize.
    const count = 600;
    const files: Record<string, string> = {};
    for (let i = 0; i < count; i++) files[`data/compose/f${String(i).padStart(4, '0')}.txt`] = `file ${i}\n`;
    await upload(storage.connectionString, files);
    await customDeployment(first, api, { endpoint: 'composer', deployment: 'lines', script: 'slow-lines.js', settings: { mini_batch_size: 1, max_concurrency_per_instance: 2, environment_variables: { SLOW_MS: '0' } } });
    const invoke = async (out: string): Promise<string> => {
      const res = await api.call('POST', 'endpoints/composer/jobs', { inputs: { text: { path: ds('data/compose/') } }, outputs: { out: { path: ds(out) } } });
      expect(res.status).toBe(202);
      return res.body.id as string;
    };
    const reference = await waitForJob(api, await invoke('out/reference/'), 300_000);
    expect(reference.status).toBe('Completed');
    const expected = await readBlob(storage.connectionString, 'out/reference/predictions.csv');
    expect(expected.toString().trim().split('\n')).toHaveLength(count);
    // Every mini-batch's rows were where finalize looks for them: none had to run again.
    expect((await readBlob(storage.connectionString, 'out/reference/logs/job.log')).toString()).not.toContain('run again while finalizing');

    // The same job, killed as soon as it is finalizing (composing its outputs from the parts).
    const jobId = await invoke('out/crashed/');
    const seen = await waitFor(
      async () => {
        const { body } = await api.call('GET', `jobs/${jobId}`);
        return body.status === 'Finalizing' || body.status === 'Completed' ? (body.status as string) : undefined;
      },
      { timeoutMs: 300_000, intervalMs: 10 },
    );
    await first.kill();
    expect(seen).toBe('Finalizing');

    const { host: second, api: secondApi } = await start(first.port);
    cleanups.push(() => second.stop());
    api = secondApi;
    const job = await waitForJob(api, jobId, 300_000);
    expect(job.status).toBe('Completed');
    expect(job.counts.items).toEqual({ total: count, succeeded: count, failed: 0 });
    const actual = await readBlob(storage.connectionString, 'out/crashed/predictions.csv');
    expect(actual.equals(expected)).toBe(true);
    const report = (await readBlob(storage.connectionString, 'out/crashed/processed_mini_batches.csv')).toString().trim().split('\n');
    expect(report.slice(1).map((line) => Number(line.split(',')[0]))).toEqual(Array.from({ length: count }, (_, i) => i));
  });
});
