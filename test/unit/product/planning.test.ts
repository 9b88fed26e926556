import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseDataUri } from '../../../shared/data/data-uri.js';
import { exceedsThreshold, mergeSettings, parallelismOf } from '../../../shared/jobs/settings.js';
import { type StreamedPlan, chunkCount, chunkLayout, chunkOf, chunkTarget, chunkRange, planPage, rowRanges, streamChunkSize, toMiniBatches } from '../../../shared/planning/plan.js';
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

describe('planning a listing page by page', () => {
  it('gives exactly the chunks of planning the whole listing at once, however it is paged', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 120 }),
        fc.array(fc.integer({ min: 0, max: 30 }), { maxLength: 12 }),
        fc.integer({ min: 1, max: 7 }),
        fc.integer({ min: 1, max: 5 }),
        (total, cuts, miniBatchSize, chunkSize) => {
          const all = items(total);
          // Pages of arbitrary sizes (empty ones too), the rest in a last page.
          const pages: (typeof all)[] = [];
          let at = 0;
          for (const cut of cuts) {
            pages.push(all.slice(at, at + cut));
            at = Math.min(total, at + cut);
          }
          pages.push(all.slice(at));
          let plan: StreamedPlan = { miniBatches: 0, chunks: 0, items: 0, pending: [] };
          const chunks: { chunk: number; batches: ReturnType<typeof toMiniBatches> }[] = [];
          pages.forEach((page, p) => {
            const next = planPage(plan, page, { miniBatchSize, chunkSize, last: p === pages.length - 1 });
            // Until the last page, only whole chunks are emitted, and fewer than a chunk's items wait.
            if (p < pages.length - 1) {
              expect(next.chunks.every((c) => c.batches.length === chunkSize && c.batches.every((b) => b.items.length === miniBatchSize))).toBe(true);
              expect(next.plan.pending.length).toBeLessThan(miniBatchSize * chunkSize);
            }
            chunks.push(...next.chunks);
            plan = next.plan;
          });
          const whole = toMiniBatches(all, miniBatchSize);
          expect(chunks.map((c) => c.chunk)).toEqual(Array.from({ length: chunkCount(whole.length, chunkSize) }, (_, i) => i));
          expect(chunks.flatMap((c) => c.batches)).toEqual(whole);
          chunks.forEach((c) => expect(c.batches.map((b) => b.index)).toEqual(whole.slice(chunkRange(c.chunk, chunkSize, whole.length).start, chunkRange(c.chunk, chunkSize, whole.length).end).map((b) => b.index)));
          expect(plan).toEqual({ miniBatches: whole.length, chunks: chunkCount(whole.length, chunkSize), items: total, pending: [] });
        },
      ),
      { numRuns: 300 },
    );
  });

  it('sizes streamed chunks at about 320 items, within 1 and the chunk maximum', () => {
    expect(streamChunkSize(10, 200)).toBe(32);
    expect(streamChunkSize(1, 200)).toBe(32);
    expect(streamChunkSize(100, 200)).toBe(4);
    expect(streamChunkSize(1000, 200)).toBe(1);
    expect(streamChunkSize(10, 2)).toBe(2);
  });
});
