import { describe, expect, it } from 'vitest';
import { parseDataUri } from '../../../shared/data/data-uri.js';
import { exceedsThreshold, mergeSettings, parallelismOf } from '../../../shared/jobs/settings.js';
import { chunkCount, chunkLayout, chunkOf, chunkTarget, chunkRange, rowRanges, toMiniBatches } from '../../../shared/planning/plan.js';
import { deploymentSettings } from '../../../shared/schemas/resources.js';

const items = (n: number) => Array.from({ length: n }, (_, i) => ({ name: `f${i}.csv`, blob: `in/f${i}.csv`, size: 1 }));

describe('mini-batch planning', () => {
  it('groups items in order into mini-batches of mini_batch_size', () => {
    const batches = toMiniBatches(items(25), 10);
    expect(batches.map((b) => b.items.length)).toEqual([10, 10, 5]);
    expect(batches.map((b) => b.index)).toEqual([0, 1, 2]);
    expect(batches[2]?.items[0]?.name).toBe('f20.csv');
    expect(() => toMiniBatches(items(1), 0)).toThrow();
  });

  it('cuts mini-batches into equal chunks, the same number per lane, none over the maximum', () => {
    // Chunks aim at ∛(2 × mini-batches per lane), at least 32, at most the configured maximum.
    expect(chunkTarget(1000, 2, 200)).toBe(32);
    expect(chunkTarget(10, 1, 200)).toBe(32);
    expect(chunkTarget(1_000_000, 2, 200)).toBe(100);
    expect(chunkTarget(100_000_000, 1, 200)).toBe(200);
    expect(chunkTarget(1000, 2, 8)).toBe(8);
    expect(chunkLayout(1000, 2, chunkTarget(1000, 2, 200))).toEqual({ chunkSize: 32, chunks: 32, lanes: 2 });
    expect(chunkLayout(100, 2, 200)).toEqual({ chunkSize: 50, chunks: 2, lanes: 2 });
    expect(chunkLayout(150, 2, 200)).toEqual({ chunkSize: 75, chunks: 2, lanes: 2 });
    expect(chunkLayout(1001, 2, 200)).toEqual({ chunkSize: 167, chunks: 6, lanes: 2 });
    // Fewer mini-batches than lanes: one mini-batch per chunk, one chunk per lane.
    expect(chunkLayout(3, 8, 200)).toEqual({ chunkSize: 1, chunks: 3, lanes: 3 });
    expect(chunkLayout(0, 2, 200)).toEqual({ chunkSize: 200, chunks: 0, lanes: 0 });
    for (const [n, lanes, max] of [[1, 1, 1], [999, 3, 50], [12345, 7, 200], [10, 4, 3]] as const) {
      const layout = chunkLayout(n, lanes, max);
      expect(layout.chunkSize).toBeLessThanOrEqual(max);
      expect(chunkCount(n, layout.chunkSize)).toBe(layout.chunks);
      const perLane = Array.from({ length: layout.lanes }, (_, lane) => {
        let total = 0;
        for (let c = lane; c < layout.chunks; c += layout.lanes) total += chunkRange(c, layout.chunkSize, n).end - chunkRange(c, layout.chunkSize, n).start;
        return total;
      });
      expect(perLane.reduce((a, b) => a + b, 0)).toBe(n);
      // Lanes differ by at most one chunk's rounding.
      expect(Math.max(...perLane) - Math.min(...perLane)).toBeLessThanOrEqual(layout.chunkSize);
    }
  });

  it('splits mini-batches into bounded chunks', () => {
    expect(chunkCount(1001, 500)).toBe(3);
    expect(chunkRange(2, 500, 1001)).toEqual({ start: 1000, end: 1001 });
    expect(chunkOf(999, 500)).toBe(1);
  });

  it('cuts row ranges', () => {
    expect(rowRanges(10, 4)).toEqual([
      { start: 0, end: 4 },
      { start: 4, end: 8 },
      { start: 8, end: 10 },
    ]);
    expect(rowRanges(0, 4)).toEqual([]);
  });
});

describe('settings', () => {
  const base = deploymentSettings.parse({ mini_batch_size: 4, environment_variables: { A: '1', B: '2' } });

  it('merges job overrides field by field', () => {
    const merged = mergeSettings(base, { error_threshold: 3, retry_settings: { timeout: 5 }, environment_variables: { B: 'x' } });
    expect(merged).toMatchObject({ mini_batch_size: 4, error_threshold: 3, retry_settings: { max_retries: 3, timeout: 5 }, environment_variables: { A: '1', B: 'x' } });
    expect(mergeSettings(base, undefined)).toEqual(base);
  });

  it('computes parallelism and the error threshold', () => {
    expect(parallelismOf({ ...base, max_concurrency_per_instance: 3 }, 2)).toBe(6);
    expect(exceedsThreshold(5, -1)).toBe(false);
    expect(exceedsThreshold(5, 5)).toBe(false);
    expect(exceedsThreshold(6, 5)).toBe(true);
    expect(exceedsThreshold(1, 0)).toBe(true);
  });
});

describe('data paths', () => {
  it('parses datastore URIs, blob URLs and data assets', () => {
    expect(parseDataUri('azureml://datastores/workspaceblobstore/paths/data/x/', 'p')).toEqual({ kind: 'datastore', datastore: 'workspaceblobstore', path: 'data/x/' });
    expect(parseDataUri('https://acct1.blob.core.windows.net/c1/a/b.csv', 'p')).toMatchObject({ kind: 'blob-url', account: 'acct1', container: 'c1', path: 'a/b.csv' });
    expect(parseDataUri('http://127.0.0.1:10000/devstoreaccount1/c1/a.csv', 'p')).toMatchObject({ kind: 'blob-url', account: 'devstoreaccount1', container: 'c1', path: 'a.csv' });
    expect(parseDataUri('azureml:heart:3', 'p')).toEqual({ kind: 'asset', name: 'heart', version: '3' });
    expect(parseDataUri('azureml:heart@latest', 'p')).toEqual({ kind: 'asset', name: 'heart', version: 'latest' });
  });

  it('refuses other paths, naming the field', () => {
    expect(() => parseDataUri('/etc/passwd', 'inputs.x.path')).toThrow(/inputs\.x\.path/);
    expect(() => parseDataUri('azureml://datastores/ws/paths/../secret', 'p')).toThrow(/segments are not allowed/);
    expect(() => parseDataUri('ftp://x/y', 'p')).toThrow();
  });
});
