/**
 * The job journal: what each mini-batch attempt contributes to the reports (report row, error
 * lines, log lines) and what it staged (its part of the predictions file), and which of those
 * records the orchestration accepted. Finalizing a job trusts only accepted records, and checks
 * that every mini-batch the orchestration ran has one, so nothing a duplicate or stale execution
 * wrote, and no record lost in storage, can slip into the outputs unnoticed.
 *
 * Pure functions over parsed lines; storing them is JobWorkArea's business.
 */
import type { StagedPart } from '../outputs/output-writer.js';

/** How one attempt at a mini-batch ended, as the reports show it. */
export type AttemptStatus = 'completed' | 'failed' | 'timeout';

/** One attempt's record, written by the execution that made the attempt. */
export interface JournalEntry {
  /** Mini-batch index; -1 is the job's own preamble (its first log lines). */
  i: number;
  /** Attempt number, from 1. */
  a: number;
  /** Nonce of the activity execution that wrote it (see BlockIds). */
  n: string;
  status: AttemptStatus;
  items: number;
  succeeded: number;
  failed: number;
  /** Its part of the predictions file, if it produced rows. */
  part?: StagedPart | undefined;
  /** A rerun's mini-batch: its parts in order (rows copied from the parent and new ones), instead of `part`. */
  parts?: StagedPart[] | undefined;
  /**
   * Bytes of each item's rows in its part, in item order (0 for an item without rows), recorded
   * when some of its items failed and the rows can be told apart by item: a rerun reuses the rows
   * of the items that succeeded from the part (see shared/jobs/rerun.ts).
   */
  item_bytes?: number[] | undefined;
  /** Its processed_mini_batches.csv row, errors.jsonl lines and job.log lines. */
  report: string;
  errors: string;
  log: string;
}

/** The orchestration's word that attempt `a` of mini-batch `i`, by execution `n`, happened; `final` when it was the last. */
export interface JournalAck {
  ack: { i: number; a: number; n: string; final: boolean };
}

/**
 * A line of the journal: an entry an activity staged itself (`g` absent), or a line of a group the
 * orchestration recorded: a routine entry carried through the orchestration (`g: 1`, accepted and
 * final by being there) or an ack of an entry staged elsewhere.
 */
export type JournalLine = (JournalEntry & { g?: 1 | undefined }) | JournalAck;

/** An entry's parts of the predictions file, in order (see JournalEntry.part and parts). */
export function entryParts(entry: JournalEntry): StagedPart[] {
  return entry.parts ?? (entry.part ? [entry.part] : []);
}

export function isAck(line: JournalLine): line is JournalAck {
  return 'ack' in line;
}

/** The attempts of one mini-batch that the orchestration accepted, oldest first; the last one is final. */
export interface AcceptedMiniBatch {
  index: number;
  attempts: JournalEntry[];
  final: JournalEntry;
  /** Attempts the orchestration retried (with an entry or without: an activity that threw writes none). */
  retries: number;
}

export interface JournalReading {
  /** The job's preamble entries (index -1). */
  preamble: JournalEntry[];
  /** Every expected mini-batch that has a final accepted record, in index order. */
  accepted: AcceptedMiniBatch[];
  /** Expected mini-batches without one (lost, or never recorded), with the attempt a re-run should use. */
  missing: { index: number; attempt: number }[];
}

function key(i: number, a: number, n: string): string {
  return `${i}/${a}/${n}`;
}

/**
 * Reads the journal's lines against the mini-batches the orchestration ran (`expected`, ascending):
 * an attempt counts only when a group line carries it or acknowledges it; among an attempt's
 * copies (an activity that ran twice) the acknowledged execution's is taken.
 */
export function readJournalLines(lines: readonly JournalLine[], expected: Iterable<number>): JournalReading {
  const own = new Map<string, JournalEntry>();
  const accepted = new Map<number, Map<number, { entry: JournalEntry | undefined; final: boolean }>>();
  const preamble: JournalEntry[] = [];
  const accept = (i: number, a: number, entry: JournalEntry | undefined, final: boolean): void => {
    let attempts = accepted.get(i);
    if (!attempts) {
      attempts = new Map<number, { entry: JournalEntry | undefined; final: boolean }>();
      accepted.set(i, attempts);
    }
    const seen = attempts.get(a);
    // A group recorded twice (its activity ran twice) says the same thing again.
    if (!seen || (!seen.entry && entry)) attempts.set(a, { entry, final: final || (seen?.final ?? false) });
  };
  const acks: JournalAck['ack'][] = [];
  for (const line of lines) {
    if (isAck(line)) acks.push(line.ack);
    else if (line.i < 0) preamble.push(line);
    else if (line.g === 1) accept(line.i, line.a, line, true);
    else own.set(key(line.i, line.a, line.n), line);
  }
  for (const ack of acks) accept(ack.i, ack.a, own.get(key(ack.i, ack.a, ack.n)), ack.final);

  const result: JournalReading = { preamble, accepted: [], missing: [] };
  for (const index of expected) {
    const attempts = accepted.get(index);
    const sorted = attempts ? [...attempts.entries()].sort((x, y) => x[0] - y[0]) : [];
    const last = sorted[sorted.length - 1];
    const entries = sorted.map(([, v]) => v.entry).filter((e): e is JournalEntry => e !== undefined);
    if (!last || !last[1].final || !last[1].entry) {
      result.missing.push({ index, attempt: (last?.[0] ?? 0) + 1 });
      continue;
    }
    result.accepted.push({ index, attempts: entries, final: last[1].entry, retries: sorted.filter(([, v]) => !v.final).length });
  }
  return result;
}

/**
 * The mini-batch indexes a job's lanes ran, from their compact accounts: lane `l` of `lanes` runs
 * chunks l, l + lanes, …; the first `done` of its chunks ran whole, the next one its first
 * `partial` mini-batches, and later ones none.
 */
export function ranIndexes(layout: { lanes: number; chunkSize: number; miniBatches: number }, ran: readonly { done: number; partial: number }[]): number[] {
  const out: number[] = [];
  ran.forEach((lane, l) => {
    for (let k = 0; k <= lane.done; k++) {
      const chunk = l + k * layout.lanes;
      const start = chunk * layout.chunkSize;
      if (start >= layout.miniBatches) break;
      const end = Math.min(start + layout.chunkSize, layout.miniBatches);
      const count = k < lane.done ? end - start : Math.min(lane.partial, end - start);
      for (let i = start; i < start + count; i++) out.push(i);
    }
  });
  return out.sort((a, b) => a - b);
}
