/**
 * Issue 15's large job, over HTTP on fnhost: more mini-batches than a blob has committed blocks
 * (50,000). One CSV of 50,010 tiny rows, `split` into one-row ranges with `mini_batch_size: 1`, is
 * 50,010 mini-batches without 50,010 blobs; a script echoes each mini-batch's row back, so
 * predictions.csv must hold every input row exactly once, in input order, and the report one row
 * per mini-batch.
 *
 * It takes ~25 minutes on the 2-core machine (README, "Tests at scale"), so it is not part of
 * `npm test`: `npm run test:large` runs it (vitest.large.config.ts).
 */
import { parse } from 'csv-parse/sync';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Api, customDeployment, ds, invoke, jobOutput, startBatchHost, upload, waitForJob } from '../support/batch.js';
import { type FnHostProcess } from '../support/fnhost.js';

/** Past the 50,000 committed blocks a blob can hold. */
const ROWS = 50_010;
const JOB_TIMEOUT_MS = 90 * 60_000;

let host: FnHostProcess;
let api: Api;

beforeAll(async () => {
  ({ host, api } = await startBatchHost());
});

afterAll(async () => {
  await host?.stop();
});

/** The index of the first element where `actual` differs from `expected` (-1 when none): a compact failure for 50,000-row files. */
function firstDifference<A, E>(actual: A[], expected: E[], same: (a: A, e: E) => boolean): number {
  for (let i = 0; i < Math.max(actual.length, expected.length); i++) {
    if (i >= actual.length || i >= expected.length || !same(actual[i] as A, expected[i] as E)) return i;
  }
  return -1;
}

/** Where the job's time went, for the README's record (host and test share the machine's clock). */
function timeline(invokedAt: number, report: Record<string, string>[], completedAt: string): string {
  const since = (t: number): string => `${((t - invokedAt) / 1000).toFixed(1)} s`;
  const starts = report.map((r) => Date.parse(r['started_at'] ?? ''));
  const ends = report.map((r, i) => (starts[i] as number) + Number(r['seconds']) * 1000);
  const first = starts.reduce((a, b) => Math.min(a, b), Infinity);
  const last = ends.reduce((a, b) => Math.max(a, b), -Infinity);
  return `${ROWS} mini-batches; after the invoke: first mini-batch started ${since(first)}, last ended ${since(last)}, Completed ${since(Date.parse(completedAt))}`;
}

describe('a job of more than 50,000 mini-batches', () => {
  it(
    'scores every row once, writes its predictions in input order and reports every mini-batch',
    async () => {
      const ids = Array.from({ length: ROWS }, (_, i) => `r${String(i).padStart(6, '0')}`);
      await upload(host.storageConnection, { 'data/large/rows.csv': `id\n${ids.join('\n')}\n` });
      await customDeployment(host, api, {
        endpoint: 'large',
        deployment: 'echo',
        script: 'echo-rows.js',
        // A generous timeout: no load on this machine makes a one-row echo time out and retry.
        settings: { mini_batch_size: 1, max_concurrency_per_instance: 4, retry_settings: { max_retries: 3, timeout: 600 } },
        split: { by: 'rows', max_rows: 1 },
      });

      const invokedAt = Date.now();
      const job = await invoke(api, 'large', { inputs: { data: { type: 'uri_folder', path: ds('data/large/') } } });
      const done = await waitForJob(api, job.id as string, JOB_TIMEOUT_MS);

      expect(done.status, JSON.stringify(done.error)).toBe('Completed');
      expect(done.counts.mini_batches).toEqual({ total: ROWS, succeeded: ROWS, failed: 0, retried: 0 });
      expect(done.counts.items).toEqual({ total: ROWS, succeeded: ROWS, failed: 0 });
      expect(done.columns).toEqual(['file_name', 'rows']);

      // Every row, once, in input order: row i of predictions.csv is the i-th input row (beside the
      // path the script was given, which is what it returns as file_name).
      const predictions: string[][] = parse(await jobOutput(host, job.id as string, 'predictions.csv'));
      expect(predictions.length).toBe(ROWS);
      const wrongRow = firstDifference(predictions, ids, (row, id) => row.length === 2 && row[0]?.endsWith('/rows.csv') === true && row[1] === id);
      expect(wrongRow, `predictions.csv row ${wrongRow}: ${JSON.stringify(predictions[wrongRow])}, expected …/rows.csv,${ids[wrongRow]}`).toBe(-1);

      // One report row per mini-batch, in mini-batch order, each its one item scored on the first attempt.
      const report = parse<Record<string, string>>(await jobOutput(host, job.id as string, 'processed_mini_batches.csv'), { columns: true });
      expect(report.length).toBe(ROWS);
      const expectedReport = ids.map((_, i) => ({ mini_batch_id: String(i), attempts: '1', items: '1', succeeded: '1', failed: '0', status: 'completed' }));
      const wrongReport = firstDifference(report, expectedReport, (r, e) => Object.entries(e).every(([k, v]) => r[k] === v));
      expect(wrongReport, `processed_mini_batches.csv row ${wrongReport}: ${JSON.stringify(report[wrongReport])}`).toBe(-1);
      console.log(`large job: ${timeline(invokedAt, report, String(done.completed_at))}`);

      expect(await jobOutput(host, job.id as string, 'errors.jsonl')).toBe('');
    },
    JOB_TIMEOUT_MS + 10 * 60_000,
  );
});
