/**
 * Tester's probe: kill -9 of fnhost, twice, while a folder of many pages is being listed (and
 * scored); restarted on the same data, the job must end exactly as an uninterrupted run did:
 * predictions byte for byte, the report's mini-batches once each, the log's listing lines.
 */
import { describe, expect, it } from 'vitest';
import { customDeployment, ds, readBlob, restartableProductApp, upload, waitForJob } from '../support/batch.js';
import { cleanupsAfterAll } from '../support/cleanups.js';
import { waitFor } from '../support/wait.js';

const cleanups = cleanupsAfterAll();

const COUNT = 400;

describe('kill -9 while a folder is listed page by page', () => {
  it('ends byte-identical to an uninterrupted run after two kills mid-listing', async () => {
    const { storage, start } = await restartableProductApp(cleanups, 'try-stream-crash-', { BATCH_LIST_PAGE_SIZE: '2', BATCH_CHUNK_SIZE: '2', BATCH_SEGMENT_SIZE: '4' });
    let { host, api } = await start();
    cleanups.push(() => host.kill());
    const files: Record<string, string> = {};
    for (let i = 0; i < COUNT; i++) files[`data/crash/f ${String(i).padStart(3, '0')}%.txt`] = `file ${i}\n${'x\n'.repeat(i % 7)}`;
    for (const chunk of Array.from({ length: Math.ceil(Object.keys(files).length / 100) }, (_, i) => Object.entries(files).slice(i * 100, i * 100 + 100))) await upload(storage.connectionString, Object.fromEntries(chunk));
    await customDeployment(host, api, { endpoint: 'crashy', deployment: 'lines', script: 'slow-lines.js', settings: { mini_batch_size: 2, max_concurrency_per_instance: 2, environment_variables: { SLOW_MS: '30' } } });
    const invoke = async (out: string): Promise<string> => {
      const res = await api.call('POST', 'endpoints/crashy/jobs', { inputs: { text: { path: ds('data/crash/') } }, outputs: { out: { path: ds(out) } } });
      expect(res.status).toBe(202);
      return res.body.id as string;
    };
    const plan = async (jobId: string): Promise<{ done: boolean; items: number; pending: unknown[] } | undefined> => {
      try {
        return JSON.parse((await readBlob(storage.connectionString, `${jobId}/batchscoring/plan.json`, 'batch-jobs')).toString());
      } catch {
        return undefined;
      }
    };
    const listedSoFar = (p: { items: number; pending: unknown[] }): number => p.items + p.pending.length;

    const reference = await waitForJob(api, await invoke('out/reference/'), 300_000);
    expect(reference.status).toBe('Completed');
    const expected = {
      predictions: (await readBlob(storage.connectionString, 'out/reference/predictions.csv')).toString(),
      report: (await readBlob(storage.connectionString, 'out/reference/processed_mini_batches.csv')).toString(),
      log: (await readBlob(storage.connectionString, 'out/reference/logs/job.log')).toString(),
    };
    expect(expected.predictions.trim().split('\n')).toHaveLength(COUNT);

    const jobId = await invoke('out/crashed/');
    const kills: number[] = [];
    for (const threshold of [30, 150]) {
      const at = await waitFor(
        async () => {
          const p = await plan(jobId);
          return p && !p.done && listedSoFar(p) >= threshold ? listedSoFar(p) : undefined;
        },
        { timeoutMs: 120_000, intervalMs: 5, what: `${threshold} files listed` },
      );
      await host.kill();
      kills.push(at);
      ({ host, api } = await start(host.port));
    }
    cleanups.push(() => host.stop());
    const job = await waitForJob(api, jobId, 300_000);
    expect(kills.every((k) => k < COUNT), JSON.stringify(kills)).toBe(true);
    expect(job.status, JSON.stringify(job.error)).toBe('Completed');
    expect(job.counts.items).toEqual({ total: COUNT, succeeded: COUNT, failed: 0 });
    expect(job.counts.mini_batches).toMatchObject({ total: COUNT / 2, succeeded: COUNT / 2, failed: 0 });
    expect((await readBlob(storage.connectionString, 'out/crashed/predictions.csv')).toString()).toBe(expected.predictions);
    const report = (await readBlob(storage.connectionString, 'out/crashed/processed_mini_batches.csv')).toString().trim().split('\n').slice(1);
    expect(report.map((line) => Number(line.split(',')[0]))).toEqual(Array.from({ length: COUNT / 2 }, (_, i) => i));
    const log = (await readBlob(storage.connectionString, 'out/crashed/logs/job.log')).toString();
    expect(log).toMatch(/input listed page by page while scoring runs/);
    expect(log).toMatch(new RegExp(`input listed: ${COUNT} item\\(s\\) of ${COUNT} file\\(s\\) in ${COUNT / 2} mini-batch\\(es\\)`));
  }, 900_000);
});
