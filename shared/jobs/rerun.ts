/**
 * Reruns (`POST /api/jobs/{id}/rerun`): a new job that scores only what its parent did not score,
 * and reuses the parent's predictions for the rest without reading them: each reused range is
 * copied server-side (Put Block From URL) from the parent's predictions file into a block of the
 * rerun's (of its segment's part blob, composed into its file at finalize like any job's). The
 * rerun's plan is the parent's (same mini-batches, same items, same order), so its predictions come
 * out as one clean run's would.
 *
 * Where each mini-batch's rows sit in the parent's file comes from the parent's journal (one blob
 * per segment, read in order: the file is its header, then each segment's rows): its
 * accepted records, in mini-batch order, name each part's exact length (and, for a mini-batch some
 * of whose items failed, each item's share: `item_bytes`). A mini-batch is reused whole when it
 * completed with nothing failed; item by item when its record has `item_bytes` and names each
 * failed item; otherwise it is scored again whole. Pure functions; reading and writing storage is
 * JobRunner's and JobsService's.
 */
import type { DataLocation } from '../registry/registry.js';
import type { ByteRange, MiniBatch, MiniBatchReuse, PlanItem } from '../planning/plan.js';
import { type JournalEntry, type JournalReading, entryParts } from './journal.js';

/** How much of a rerun is reused and how much is scored anew (the job view shows it). */
export interface RerunCounts {
  reused: { mini_batches: number; items: number };
  scored: { mini_batches: number; items: number };
}

/** Where a rerun reads the rows it reuses: its parent's predictions file, as it was when the rerun was made. */
export interface RerunSource {
  location: DataLocation;
  file: string;
  /** The file's version (ETag) and length then: a copy from another version is refused. */
  etag: string;
  bytes: number;
}

/** A job's link to the job it reruns (`rerun_of` in its spec). */
export interface RerunOf extends RerunCounts {
  job: string;
  /** The parent's scope in the work area (its journal and manifest). */
  scope: string;
  /** Whether the caller allowed another model or scoring code than the parent's (`force`). */
  force: boolean;
  /** Absent when no row is reused (a summary_only job, or a parent without predictions rows). */
  source?: RerunSource | undefined;
  /** The length of the parent's CSV header line (`csv_header`), before its first rows. */
  header_bytes: number;
  /**
   * The parent's columns, when it had fixed them: the rerun's from the start, since the rows it
   * copies are written under them (its new rows are written by name into the same columns, and its
   * header is the parent's even when no new row comes).
   */
  columns?: string[] | undefined;
  /**
   * The parent's segment size (its `segment_size`): where its journal is, one blob per segment;
   * absent for a parent prepared before segments (one journal blob).
   */
  segment_size?: number | undefined;
}

/** A parent's mini-batches with what each reuses, and the length its predictions file must have. */
export interface RerunPlan extends RerunCounts {
  batches: MiniBatch[];
  /** header + every accepted part: the parent's predictions file's length. */
  expectedBytes: number;
}

function sameRows(a: PlanItem['rows'], b: { start: number; end: number } | undefined): boolean {
  return a === undefined ? b === undefined : b !== undefined && a.start === b.start && a.end === b.end;
}

/**
 * The items of a mini-batch its record says failed, by index; undefined when they cannot all be
 * named (a script's shortfall without file names, a line that names no item of the mini-batch).
 */
export function failedItemsOf(entry: JournalEntry, batch: MiniBatch): Set<number> | undefined {
  const failed = new Set<number>();
  for (const line of entry.errors.split('\n')) {
    if (line === '') continue;
    const error = JSON.parse(line) as { file: string | null; rows?: { start: number; end: number } };
    if (error.file === null) return undefined;
    const index = batch.items.findIndex((item, i) => !failed.has(i) && item.name === error.file && sameRows(item.rows, error.rows));
    if (index < 0) return undefined;
    failed.add(index);
  }
  return failed;
}

/**
 * Plans a rerun from its parent's mini-batches (every one, in index order), the reading of its
 * journal against all of them, and the length of its predictions file's header (`csv_header`).
 */
export function planRerun(parent: readonly MiniBatch[], reading: JournalReading, headerBytes: number): RerunPlan {
  const plan = emptyRerunPlan(headerBytes);
  extendRerunPlan(plan, parent, reading);
  return plan;
}

/** A plan of no mini-batch yet, for a predictions file whose rows start after `headerBytes`. */
export function emptyRerunPlan(headerBytes: number): RerunPlan {
  return { batches: [], expectedBytes: headerBytes, reused: { mini_batches: 0, items: 0 }, scored: { mini_batches: 0, items: 0 } };
}

/**
 * Adds the parent's next mini-batches (in index order, after every one `plan` holds) and the
 * reading of their journal to `plan`: a job's journal is read segment by segment (see
 * JobWorkArea.rerunPlan), and each segment's rows follow the ones before it in the file.
 */
export function extendRerunPlan(plan: RerunPlan, batches: readonly MiniBatch[], reading: JournalReading): void {
  const finals = new Map(reading.accepted.map((m) => [m.index, m.final]));
  let at = plan.expectedBytes;
  for (const batch of [...batches].sort((a, b) => a.index - b.index)) {
    const final = finals.get(batch.index);
    const bytes = final ? entryParts(final).reduce((n, p) => n + p.bytes, 0) : 0;
    let reuse: MiniBatchReuse | undefined;
    if (final?.status === 'completed' && final.failed === 0) {
      reuse = { rows: { start: at, end: at + bytes } };
    } else if (final?.item_bytes && final.item_bytes.length === batch.items.length) {
      const failed = failedItemsOf(final, batch);
      if (failed) {
        let from = at;
        reuse = {
          items: final.item_bytes.map((n, i) => {
            const range = { start: from, end: from + n };
            from += n;
            return failed.has(i) ? null : range;
          }),
        };
      }
    }
    at += bytes;
    const scored = reuse === undefined ? batch.items.length : 'items' in reuse ? reuse.items.filter((r) => r === null).length : 0;
    plan.reused.items += batch.items.length - scored;
    plan.scored.items += scored;
    if (scored === 0) plan.reused.mini_batches++;
    else plan.scored.mini_batches++;
    plan.batches.push({ ...batch, ...(reuse ? { reuse } : {}) });
  }
  plan.expectedBytes = at;
}

/** The items of a rerun's mini-batch to score anew, by their index in the mini-batch. */
export function itemsToScore(batch: MiniBatch): number[] {
  const reuse = batch.reuse;
  if (!reuse) return batch.items.map((_, i) => i);
  if ('rows' in reuse) return [];
  return reuse.items.flatMap((r, i) => (r === null ? [i] : []));
}

/**
 * One piece of a rerun's mini-batch's rows, in order: a range copied from the parent, or bytes of
 * the new rows (not to be confused with a job's segments of mini-batches, `segment_size`).
 */
export type RerunPiece = { copy: ByteRange } | { data: Buffer };

/**
 * A rerun's mini-batch's parts in item order: reused ranges (adjacent ones merged into one copy)
 * and the new rows of the scored items, cut by `itemBytes` (each scored item's share of `data`,
 * in the order of `scored`). Also each item's bytes, for the rerun's own journal (a rerun of the
 * rerun). Undefined when the new rows cannot be placed: they come from items that are not next to
 * each other and `itemBytes` does not say which rows are whose.
 */
export function composeRerun(batch: MiniBatch, scored: readonly number[], data: Buffer, itemBytes: readonly number[] | undefined): { pieces: RerunPiece[]; itemBytes: number[] | undefined } | undefined {
  const reuse = batch.reuse;
  if (!reuse) return { pieces: data.length > 0 ? [{ data }] : [], itemBytes: itemBytes ? [...itemBytes] : undefined };
  if ('rows' in reuse) return { pieces: [{ copy: reuse.rows }], itemBytes: undefined };
  const contiguous = scored.every((s, k) => k === 0 || s === (scored[k - 1] as number) + 1);
  if (!itemBytes && !contiguous) return undefined;
  // Shares that do not add up to the rows are no way to cut them.
  if (itemBytes && (itemBytes.length !== scored.length || itemBytes.reduce((n, b) => n + b, 0) !== data.length)) return undefined;
  const pieces: RerunPiece[] = [];
  const perItem: (number | undefined)[] = [];
  let cut = 0;
  let k = 0;
  reuse.items.forEach((range) => {
    if (range) {
      perItem.push(range.end - range.start);
      const last = pieces[pieces.length - 1];
      if (last && 'copy' in last && last.copy.end === range.start) last.copy = { start: last.copy.start, end: range.end };
      else if (range.end > range.start) pieces.push({ copy: { ...range } });
      return;
    }
    // Without per-item bytes the scored items are one run: all the new rows go where the first one is.
    const n = itemBytes ? (itemBytes[k] ?? 0) : k === 0 ? data.length : 0;
    k++;
    // One item scored anew: all the new rows are its own.
    perItem.push(itemBytes || scored.length === 1 ? n : undefined);
    if (n > 0) pieces.push({ data: data.subarray(cut, cut + n) });
    cut += n;
  });
  const known = perItem.filter((n): n is number => n !== undefined);
  return { pieces, itemBytes: known.length === perItem.length ? known : undefined };
}
