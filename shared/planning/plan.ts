/**
 * Mini-batch planning: pure functions from the listed input to mini-batches and chunks.
 * Deterministic (same input listing ⇒ same plan), which is what makes outputs reproducible.
 */

import type { TabularFormat } from '../data/records.js';

/** One unit of work: a file, or a row range of a tabular file. */
export interface PlanItem {
  /** Path relative to the input folder, as users know it. */
  name: string;
  /** Blob name in the input container. */
  blob: string;
  size: number;
  /**
   * The version of the blob that was listed (its ETag): every read of the item asks for exactly
   * this version, so a file rewritten while the job runs fails its items ("changed after the job
   * planned it") instead of mixing rows of two versions, or cutting the new one at the old one's
   * record boundaries.
   */
  etag?: string | undefined;
  /** For a row range: rows [start, end) of the file (0-based, header excluded). */
  rows?: { start: number; end: number } | undefined;
  /** For a CSV/JSONL row range: its bytes [start, end), and (CSV) where the header line ends. */
  bytes?: { start: number; end: number } | undefined;
  headerEnd?: number | undefined;
  kind?: TabularFormat | undefined;
}

export interface MiniBatch {
  index: number;
  items: PlanItem[];
  /** A rerun's mini-batch: what it reuses of its parent's predictions (see shared/jobs/rerun.ts). */
  reuse?: MiniBatchReuse | undefined;
}

/** Bytes [start, end) of a file. */
export interface ByteRange {
  start: number;
  end: number;
}

/**
 * What a rerun's mini-batch reuses of its parent's rows: all of them (`rows`: the mini-batch's
 * bytes of the parent's predictions file), or item by item (`items`: an item's bytes, or null for
 * an item scored anew).
 */
export type MiniBatchReuse = { rows: ByteRange } | { items: (ByteRange | null)[] };

export interface Plan {
  miniBatches: number;
  items: number;
  chunks: number;
  chunkSize: number;
}

/** Groups items into mini-batches of `miniBatchSize` items, in order. */
export function toMiniBatches(items: PlanItem[], miniBatchSize: number): MiniBatch[] {
  if (!Number.isInteger(miniBatchSize) || miniBatchSize < 1) throw new RangeError('miniBatchSize must be a positive integer');
  const batches: MiniBatch[] = [];
  for (let i = 0; i < items.length; i += miniBatchSize) {
    batches.push({ index: batches.length, items: items.slice(i, i + miniBatchSize) });
  }
  return batches;
}

/** Mini-batch index range [start, end) of chunk `chunk`. */
export function chunkRange(chunk: number, chunkSize: number, miniBatches: number): { start: number; end: number } {
  const start = chunk * chunkSize;
  return { start, end: Math.min(start + chunkSize, miniBatches) };
}

export function chunkOf(index: number, chunkSize: number): number {
  return Math.floor(index / chunkSize);
}

export function chunkCount(miniBatches: number, chunkSize: number): number {
  return Math.ceil(miniBatches / chunkSize);
}

/**
 * How a job's mini-batches are cut into chunks (one sub-orchestration and one manifest blob each).
 * Lane k of `lanes` runs chunks k, k + lanes, …, so the chunk count is a multiple of the lanes
 * (every lane gets the same share) and chunks are as equal as possible, none over `maxChunk`
 * (which bounds each chunk's orchestration history).
 */
export function chunkLayout(miniBatches: number, lanes: number, maxChunk: number): { chunkSize: number; chunks: number; lanes: number } {
  if (miniBatches <= 0) return { chunkSize: maxChunk, chunks: 0, lanes: 0 };
  const lanesWanted = Math.max(1, Math.floor(lanes));
  const perLane = Math.ceil(miniBatches / (lanesWanted * maxChunk));
  const chunkSize = Math.ceil(miniBatches / Math.min(miniBatches, lanesWanted * perLane));
  const chunks = chunkCount(miniBatches, chunkSize);
  return { chunkSize, chunks, lanes: Math.min(lanesWanted, chunks) };
}

/**
 * Chunks with fewer mini-batches than this cost more to start (a sub-orchestration, a manifest
 * read, the lane's episode) than replaying their own history saves.
 */
const CHUNK_FLOOR = 32;

/**
 * The chunk size to aim for. Durable replays an orchestration's whole history at each step, so a
 * chunk of c mini-batches replays ~c²/2 of them in all and a lane of C chunks ~C²/2 chunk events:
 * the sum is least for c ≈ ∛(2 × mini-batches per lane), and never below {@link CHUNK_FLOOR} or
 * above `maxChunk`: 32 up to 16,384 mini-batches per lane, 100 at 500,000.
 */
export function chunkTarget(miniBatches: number, lanes: number, maxChunk: number): number {
  const perLane = miniBatches / Math.max(1, Math.floor(lanes));
  return Math.max(1, Math.min(maxChunk, Math.max(CHUNK_FLOOR, Math.ceil(Math.cbrt(2 * perLane)))));
}

/** Splits a file of `rowCount` rows into ranges of at most `maxRows`. */
export function rowRanges(rowCount: number, maxRows: number): { start: number; end: number }[] {
  const ranges: { start: number; end: number }[] = [];
  for (let start = 0; start < rowCount; start += maxRows) ranges.push({ start, end: Math.min(start + maxRows, rowCount) });
  return ranges;
}


/** Items per chunk to aim for while a listing streams in (the chunk size is fixed before the total is known). */
const STREAM_CHUNK_ITEMS = 320;

/**
 * The chunk size (mini-batches) of a job planned page by page, fixed when its first page is
 * planned: about {@link STREAM_CHUNK_ITEMS} items (32 mini-batches of 10), at least 1 and at most
 * {@link CHUNK_FLOOR} (whichever is less, or `maxChunk`), so lanes get work in small steps and
 * what waits for a chunk to fill stays small.
 */
export function streamChunkSize(miniBatchSize: number, maxChunk: number): number {
  return Math.max(1, Math.min(maxChunk, CHUNK_FLOOR, Math.ceil(STREAM_CHUNK_ITEMS / Math.max(1, miniBatchSize))));
}

/** Where a job planned page by page stands (see {@link planPage}). */
export interface StreamedPlan {
  /** Mini-batches in the chunks written so far (always whole chunks until the listing ends). */
  miniBatches: number;
  chunks: number;
  /** Items in those chunks. */
  items: number;
  /** Listed items not yet in a written chunk, in order (fewer than a chunk's worth). */
  pending: PlanItem[];
}

/**
 * Plans one more page of a listing: the pending items and the page's items, in order, cut into
 * mini-batches of `miniBatchSize` and chunks of `chunkSize` mini-batches, numbered on from `plan`.
 * Only whole chunks are emitted until `last`, when the rest is too (its last mini-batch and chunk
 * may be short). Pure: however a listing is paged, the chunks emitted are exactly those of
 * {@link toMiniBatches} over the whole listing, cut every `chunkSize`.
 */
export function planPage(
  plan: StreamedPlan,
  page: readonly PlanItem[],
  options: { miniBatchSize: number; chunkSize: number; last: boolean },
): { plan: StreamedPlan; chunks: { chunk: number; batches: MiniBatch[] }[] } {
  const items = [...plan.pending, ...page];
  const perChunk = options.miniBatchSize * options.chunkSize;
  const whole = options.last ? items.length : items.length - (items.length % perChunk);
  const chunks: { chunk: number; batches: MiniBatch[] }[] = [];
  let miniBatches = plan.miniBatches;
  for (let at = 0; at < whole; at += perChunk) {
    const batches = toMiniBatches(items.slice(at, Math.min(at + perChunk, whole)), options.miniBatchSize).map((b) => ({ ...b, index: b.index + miniBatches }));
    miniBatches += batches.length;
    chunks.push({ chunk: plan.chunks + chunks.length, batches });
  }
  return {
    plan: { miniBatches, chunks: plan.chunks + chunks.length, items: plan.items + whole, pending: items.slice(whole) },
    chunks,
  };
}
