import { MAX_FILE_LIST_CHARS } from '../schemas/jobs.js';

/**
 * The batching state of one trigger rule, kept by a durable entity (orchestrations/triggers.ts)
 * keyed by the rule's uid. Operations run one at a time, so there is no race between files: each
 * file joins the open batch, or opens the next one. Pure: the entity wrapper only loads and stores
 * the state.
 *
 * A batch is handed out exactly once: to the orchestration whose file filled it (`add` returns it
 * closed), or to the orchestration that opened it, when its window ends (`close`). Orchestrations
 * record what an entity answered in their history, so the one that got a batch makes its job even
 * if the host stops on the way.
 */

export interface BatchFile {
  /** See writeKey: one per blob version. */
  key: string;
  /** The blob's name in the rule's container. */
  blob: string;
  etag: string;
  /**
   * The account and container the event reported it in (events.ts's `containerUrl`): a job scores
   * it only if that is still the rule's datastore's container when the job is made.
   */
  container?: string;
  /**
   * The event's `data.sequencer`: events of one blob name are ordered by it (compared as strings of
   * equal length, see {@link newerWrite}); absent when the event had none.
   */
  sequencer?: string;
}

/**
 * Whether `candidate` was written after `current` (both the same blob): by their sequencers, as
 * Azure documents them (strings compared once padded to equal length); when either has none, by
 * arrival (the candidate arrived later).
 */
export function newerWrite(candidate: Pick<BatchFile, 'sequencer'>, current: Pick<BatchFile, 'sequencer'>): boolean {
  const a = candidate.sequencer;
  const b = current.sequencer;
  if (!a || !b) return true;
  const width = Math.max(a.length, b.length);
  return a.padStart(width, '0') >= b.padStart(width, '0');
}

export interface ClosedBatch {
  id: string;
  files: BatchFile[];
}

export interface BatcherState {
  /** Batches opened so far (the next one's number). */
  seq: number;
  open: { id: string; files: BatchFile[]; chars: number } | null;
  /**
   * Keys of files in recently closed batches: a file that comes again (its dedup record was made,
   * but the delivery that made it died before it was known to have started) is not batched twice.
   */
  recent: string[];
}

export interface AddResult {
  /** The batch the file is in; null when it was already batched. */
  batch: string | null;
  /** This file opened its batch: its orchestration keeps the window and closes it. */
  opened: boolean;
  /** Batches this file closed (its own when it filled it, the open one when it had no room). */
  closed: ClosedBatch[];
}

export interface AddInput {
  rule: string;
  file: BatchFile;
  maxFiles: number;
}

/** How many keys of closed batches are remembered. */
export const RECENT_KEYS = 500;

export function emptyBatcher(): BatcherState {
  return { seq: 0, open: null, recent: [] };
}

/** The batch id (and the Idempotency-Key of its job): the rule's uid and the batch's number. */
export function batchId(rule: string, seq: number): string {
  return `tb-${rule}-${seq}`;
}

/** Characters a file takes in a job's file list (as fileListChars counts them). */
function charsOf(file: BatchFile): number {
  return file.blob.length + file.etag.length + 24;
}

function closeOpen(state: BatcherState): { state: BatcherState; closed: ClosedBatch | null } {
  if (!state.open) return { state, closed: null };
  const closed = { id: state.open.id, files: state.open.files };
  const recent = [...state.recent, ...closed.files.map((f) => f.key)].slice(-RECENT_KEYS);
  return { state: { ...state, open: null, recent }, closed };
}

export function addFile(state: BatcherState, input: AddInput): { state: BatcherState; result: AddResult } {
  const { file } = input;
  if (state.recent.includes(file.key) || state.open?.files.some((f) => f.key === file.key)) {
    return { state, result: { batch: null, opened: false, closed: [] } };
  }
  // Another version of a file already in the open batch: a job lists each file once, and reads
  // the version written last (by sequencer, not by arrival: events can come out of order). The
  // one left out counts as batched.
  const same = state.open?.files.findIndex((f) => f.blob === file.blob) ?? -1;
  if (state.open && same >= 0) {
    const current = state.open.files[same] as BatchFile;
    if (!newerWrite(file, current)) {
      return { state: { ...state, recent: [...state.recent, file.key].slice(-RECENT_KEYS) }, result: { batch: state.open.id, opened: false, closed: [] } };
    }
    const older = current;
    const files = state.open.files.map((f, i) => (i === same ? file : f));
    const open = { ...state.open, files, chars: state.open.chars - charsOf(older) + charsOf(file) };
    return { state: { ...state, open, recent: [...state.recent, older.key].slice(-RECENT_KEYS) }, result: { batch: open.id, opened: false, closed: [] } };
  }
  const closed: ClosedBatch[] = [];
  let next = state;
  // No room for its name in the open batch's file list: that batch closes now, and this file opens the next.
  if (next.open && next.open.chars + charsOf(file) > MAX_FILE_LIST_CHARS) {
    const done = closeOpen(next);
    next = done.state;
    if (done.closed) closed.push(done.closed);
  }
  let opened = false;
  if (!next.open) {
    next = { ...next, seq: next.seq + 1, open: { id: batchId(input.rule, next.seq), files: [], chars: 0 } };
    opened = true;
  }
  const open = next.open as NonNullable<BatcherState['open']>;
  next = { ...next, open: { ...open, files: [...open.files, file], chars: open.chars + charsOf(file) } };
  const batch = open.id;
  if ((next.open?.files.length ?? 0) >= Math.max(1, input.maxFiles)) {
    const done = closeOpen(next);
    next = done.state;
    if (done.closed) closed.push(done.closed);
  }
  return { state: next, result: { batch, opened, closed } };
}

/** Closes `batch` if it is still open (its window ended); null when it was closed already (it filled up). */
export function closeBatch(state: BatcherState, batch: string): { state: BatcherState; result: ClosedBatch | null } {
  if (state.open?.id !== batch) return { state, result: null };
  const done = closeOpen(state);
  return { state: done.state, result: done.closed };
}
