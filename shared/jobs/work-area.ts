import type { ContainerClient } from '@azure/storage-blob';
import type { AppConfig } from '../config.js';
import { BoundedMap } from '../bounded-map.js';
import { BatchError } from '../errors.js';
import { BlockIds, OutputFolder } from '../outputs/output-writer.js';
import { inOrderAtMost } from '../concurrency.js';
import { chunkOf, type MiniBatch, type StreamedPlan } from '../planning/plan.js';
import { isConflict, isNotFound, storageAccount } from '../storage/clients.js';
import type { JobError } from './types.js';
import { type JournalEntry, type JournalLine, isAck, readJournalLines } from './journal.js';
import { type RerunPlan, emptyRerunPlan, extendRerunPlan } from './rerun.js';

/** The journal of jobs prepared before segments (`JobState.segment_size` unset): one blob. */
const LEGACY_JOURNAL = 'journal.jsonl';
/** Mini-batches per segment at most (see shared/limits.ts); a job's own is its `segment_size`. */
export { SEGMENT_SIZE } from '../limits.js';
/** Segments read at once (finalize, a rerun's plan): memory holds a few segments' journals, never a job's. */
export const SEGMENTS_AT_ONCE = 8;
/** The preamble's block: one per job, whoever writes it last (prepare may run twice) wins. */
const PREAMBLE_NONCE = '00000000';

/** Chunk manifests written at once. */
const MANIFEST_WRITES = 8;

/**
 * A job's plan as far as it is listed (`{scope}/plan.json`): how the listing stands, and which
 * execution wrote each chunk's manifest. Chunk blobs are named by their writer, so two executions
 * planning the same page never write the same blob, and only the one this index records is read.
 */
export interface PlanIndex extends StreamedPlan {
  /** Mini-batches per chunk (every chunk but the last has this many). */
  chunkSize: number;
  /** Lanes that run the chunks (lane k runs chunks k, k + lanes, …). */
  lanes: number;
  /** Where the listing goes on ('' once it reached the folder's end; kept when it stopped early, for a rerun). */
  marker: string;
  /** Whether every mini-batch is planned (the listing ended, or stopped: see `stopped`). */
  done: boolean;
  /** Files listed so far (a file split into row ranges counts once). */
  files: number;
  /** Chunks from `first` on (up to the next entry's) were written by the execution `nonce`. */
  writers: { first: number; nonce: string }[];
  /** Why the listing stopped before its end: the job is canceling, halted, over its error threshold, or listing failed (`error`). */
  stopped?: 'canceled' | 'halted' | 'threshold' | 'failed' | undefined;
  error?: JobError | undefined;
}

/**
 * Whether a plan stopped before its folder was listed to the end (canceled, failed, halted while
 * listing), leaving files no mini-batch holds: a rerun lists on from its marker and pending items.
 */
export function unlistedRest(index: PlanIndex): boolean {
  return (!index.done || index.stopped !== undefined) && (index.marker !== '' || index.pending.length > 0);
}

/** The writer of `chunk` in a plan index. */
function writerOf(index: PlanIndex, chunk: number): string {
  let writer = index.writers[0]?.nonce ?? '';
  for (const w of index.writers) if (w.first <= chunk) writer = w.nonce;
  return writer;
}

async function streamText(body: NodeJS.ReadableStream | undefined): Promise<string> {
  const parts: Buffer[] = [];
  if (body) for await (const part of body) parts.push(Buffer.isBuffer(part) ? part : Buffer.from(part));
  return Buffer.concat(parts).toString('utf8');
}

/** The outputs a segment has a piece of. */
export type SegmentFile = 'predictions' | 'report' | 'errors' | 'log';

/**
 * The job's working area in the app's own storage: the mini-batch manifest, one JSONL blob per
 * chunk, so an activity reads its mini-batch by index while only counts travel through the
 * orchestration.
 */
export class JobWorkArea {
  readonly #container: ContainerClient;
  #ensured = false;
  /**
   * Recently read manifest chunks; a chunk never changes once written. Each lane works through one
   * chunk at a time (and prefetches into the next), so a few per lane is plenty; holding 64 kept
   * ~20,000 items of a large job alive for nothing.
   */
  readonly #chunks = new BoundedMap<string, MiniBatch[]>(16);
  /** Plan indexes read (null: a job prepared before them); re-read while a chunk asked for is not in it yet. */
  readonly #plans = new BoundedMap<string, PlanIndex | null>(256);

  constructor(options: { config: AppConfig }) {
    this.#container = storageAccount(options.config.storageConnection).container(
      `${options.config.tablePrefix.toLowerCase()}batch-jobs`,
    );
  }

  async #ready(): Promise<ContainerClient> {
    if (!this.#ensured) {
      await this.#container.createIfNotExists();
      this.#ensured = true;
    }
    return this.#container;
  }

  /** A chunk's manifest blob: named by the execution that wrote it (see PlanIndex.writers), or as before plan indexes. */
  #manifestBlob(jobId: string, chunk: number, writer?: string): string {
    return `${jobId}/manifest/chunk-${String(chunk).padStart(6, '0')}${writer === undefined ? '' : `-${writer}`}.jsonl`;
  }

  #planBlob(jobId: string): string {
    return `${jobId}/plan.json`;
  }

  /** The plan index of a job (scope `jobId`) and its ETag, or undefined for a job prepared before plan indexes. */
  async readPlan(jobId: string): Promise<{ index: PlanIndex; etag: string } | undefined> {
    const container = await this.#ready();
    try {
      const response = await container.getBlobClient(this.#planBlob(jobId)).download();
      const text = await streamText(response.readableStreamBody);
      return { index: JSON.parse(text) as PlanIndex, etag: response.etag ?? '' };
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw new BatchError('storage_failed', `Could not read the plan of job ${jobId}.`, { cause: err });
    }
  }

  /**
   * Moves a job's plan on from `from` (undefined: creates it) to `next`, whose newest writer
   * (`next.writers`' last entry, this execution's nonce) wrote `chunks` first. The chunks go under
   * that writer's name, and the index only if it is still `from`: of two executions planning the
   * same page (activities run at least once) exactly one is recorded, and the chunks anyone reads
   * are always those the index names, never a rival's written over them. Returns the new ETag, or
   * undefined when another execution moved the plan first.
   */
  async advancePlan(jobId: string, from: { etag: string } | undefined, next: PlanIndex, chunks: readonly { chunk: number; batches: MiniBatch[] }[]): Promise<string | undefined> {
    const container = await this.#ready();
    const writer = next.writers.at(-1)?.nonce;
    const writes = chunks.map(({ chunk, batches }) => async () => {
      const text = batches.map((b) => JSON.stringify(b)).join('\n');
      await container.getBlockBlobClient(this.#manifestBlob(jobId, chunk, writer)).upload(text, Buffer.byteLength(text), {
        blobHTTPHeaders: { blobContentType: 'application/x-ndjson' },
      });
    });
    await Promise.all(inOrderAtMost(writes, MANIFEST_WRITES));
    const text = JSON.stringify(next);
    try {
      const written = await container.getBlockBlobClient(this.#planBlob(jobId)).upload(text, Buffer.byteLength(text), {
        blobHTTPHeaders: { blobContentType: 'application/json' },
        conditions: from ? { ifMatch: from.etag } : { ifNoneMatch: '*' },
      });
      this.#plans.set(jobId, next);
      return written.etag ?? '';
    } catch (err) {
      if (isConflict(err)) return undefined;
      throw new BatchError('storage_failed', `Could not record the plan of job ${jobId}.`, { cause: err });
    }
  }

  /** The manifest blob of `chunk` as the job's plan index names it (re-read while it is still being listed). */
  async #chunkBlob(jobId: string, chunk: number): Promise<string> {
    let index = this.#plans.get(jobId);
    if (index === undefined || (index !== null && chunk >= index.chunks && !index.done)) {
      index = (await this.readPlan(jobId))?.index ?? null;
      this.#plans.set(jobId, index);
    }
    if (index === null) return this.#manifestBlob(jobId, chunk);
    if (chunk >= index.chunks) throw new BatchError('internal', `Chunk ${chunk} of job ${jobId} is not planned.`, { retryable: false });
    return this.#manifestBlob(jobId, chunk, writerOf(index, chunk));
  }

  async miniBatch(jobId: string, chunkSize: number, index: number): Promise<MiniBatch> {
    const chunk = chunkOf(index, chunkSize);
    const key = `${jobId}/${chunk}`;
    let batches = this.#chunks.get(key);
    if (!batches) {
      const container = await this.#ready();
      let text: string;
      try {
        text = (await container.getBlobClient(await this.#chunkBlob(jobId, chunk)).downloadToBuffer()).toString('utf8');
      } catch (err) {
        if (err instanceof BatchError) throw err;
        if (isNotFound(err)) throw new BatchError('internal', `The manifest of job ${jobId} chunk ${chunk} is missing.`, { retryable: false });
        throw new BatchError('storage_failed', 'Could not read the mini-batch manifest.', { cause: err });
      }
      batches = text === '' ? [] : text.split('\n').map((line) => JSON.parse(line) as MiniBatch);
      this.#chunks.set(key, batches);
    }
    const found = batches.find((b) => b.index === index);
    if (!found) throw new BatchError('internal', `Mini-batch ${index} is not in the manifest of job ${jobId}.`, { retryable: false });
    return found;
  }

  /**
   * The journal blob of mini-batch `index` (-1: the preamble) of a job laid out in segments of
   * `segmentSize` mini-batches, or the one journal of a job prepared before segments (undefined).
   */
  static journalOf(segmentSize: number | undefined, index: number): string {
    if (segmentSize === undefined) return LEGACY_JOURNAL;
    return index < 0 ? 'journal/preamble.jsonl' : `journal/${JobWorkArea.segmentName(Math.floor(index / segmentSize))}.jsonl`;
  }

  static segmentName(segment: number): string {
    return `seg-${String(segment).padStart(8, '0')}`;
  }

  /** A segment's part blob of one output, in the job's parts folder (see parts). */
  static partName(segment: number, kind: SegmentFile): string {
    return `${JobWorkArea.segmentName(segment)}/${kind}`;
  }

  /** The folder of a job's segment parts (`seg-…/<file>`) and composition scratch blobs. */
  async parts(jobId: string): Promise<OutputFolder> {
    return new OutputFolder(await this.#ready(), `${jobId}/parts/`);
  }

  /**
   * Records one attempt's journal entry as a block of its own (see BlockIds: a duplicate execution
   * stages beside it, never over it), in its segment's journal. The orchestration's ack decides
   * which copy counts.
   */
  async stageEntry(jobId: string, entry: JournalEntry, segmentSize: number | undefined): Promise<void> {
    const folder = new OutputFolder(await this.#ready(), `${jobId}/`);
    const nonce = entry.i < 0 ? PREAMBLE_NONCE : entry.n;
    await folder.stage(JobWorkArea.journalOf(segmentSize, entry.i), new BlockIds(jobId).part('e', entry.i, entry.a, nonce), `${JSON.stringify(entry)}\n`);
  }

  /**
   * Records a line of the job's preamble (its log's first lines): `order` 0 is prepare's, 1 the
   * listing's end (finalize writes them in that order). Each has a block of its own, whoever
   * writes it last (prepare or the planner may run twice) wins.
   */
  async stagePreamble(jobId: string, order: number, log: string, segmentSize: number | undefined): Promise<void> {
    await this.stageEntry(jobId, { i: -1, a: order, n: '', status: 'completed', items: 0, succeeded: 0, failed: 0, report: '', errors: '', log }, segmentSize);
  }

  /**
   * Records lines the orchestration collected (routine entries it carried, acks of entries staged
   * by activities) as one block per segment they belong to. The block id comes from the content,
   * so recording the same lines again (an activity run twice) writes the same block.
   */
  async stageGroup(jobId: string, lines: readonly JournalLine[], segmentSize: number | undefined): Promise<void> {
    if (lines.length === 0) return;
    const folder = new OutputFolder(await this.#ready(), `${jobId}/`);
    const bySegment = new Map<string, string>();
    for (const line of lines) {
      const journal = JobWorkArea.journalOf(segmentSize, isAck(line) ? line.ack.i : line.i);
      bySegment.set(journal, (bySegment.get(journal) ?? '') + `${JSON.stringify(isAck(line) ? line : { ...line, g: 1 })}\n`);
    }
    const ids = new BlockIds(jobId);
    await Promise.all([...bySegment].map(([journal, text]) => folder.stage(journal, ids.group(text), text)));
  }

  /**
   * Commits every block of a journal blob (see journalOf) that is this job's and reads all its
   * lines (see readJournalLines for which of them count). Safe to repeat.
   */
  async readJournal(jobId: string, journal: string): Promise<JournalLine[]> {
    const container = await this.#ready();
    const folder = new OutputFolder(container, `${jobId}/`);
    const ids = new BlockIds(jobId);
    const blocks = [...(await folder.blocks(journal))].filter(([id]) => ids.owns(id)).map(([id, bytes]) => ({ id, bytes }));
    await folder.commit(journal, blocks);
    const text = (await container.getBlobClient(folder.blobName(journal)).downloadToBuffer()).toString('utf8');
    return text
      .split('\n')
      .filter((line) => line !== '')
      .map((line) => JSON.parse(line) as JournalLine);
  }

  /** Every mini-batch of a job's plan (its manifest, the chunks its plan index names), in index order. */
  async plan(jobId: string): Promise<MiniBatch[]> {
    const container = await this.#ready();
    const planned = await this.readPlan(jobId);
    const names: string[] = [];
    if (planned) {
      for (let chunk = 0; chunk < planned.index.chunks; chunk++) names.push(this.#manifestBlob(jobId, chunk, writerOf(planned.index, chunk)));
    } else {
      for await (const blob of container.listBlobsFlat({ prefix: `${jobId}/manifest/` })) names.push(blob.name);
    }
    const batches: MiniBatch[] = [];
    for (const name of names) {
      const text = (await container.getBlobClient(name).downloadToBuffer()).toString('utf8');
      if (text !== '') batches.push(...text.split('\n').map((line) => JSON.parse(line) as MiniBatch));
    }
    return batches.sort((a, b) => a.index - b.index);
  }

  /**
   * A rerun's plan from its parent's finished work area (scope `jobId`, laid out in segments of
   * `segmentSize` mini-batches, or undefined for a job prepared before segments): its manifest,
   * and its committed journals read against every mini-batch of it (see planRerun), a few segments
   * at a time and in order, so memory holds a few segments' journals, never the job's. A job
   * finished before its work area was kept has none: an empty plan.
   */
  async rerunPlan(jobId: string, headerBytes: number, segmentSize: number | undefined): Promise<RerunPlan> {
    const batches = await this.plan(jobId);
    const plan = emptyRerunPlan(headerBytes);
    if (batches.length === 0) return plan;
    const size = segmentSize ?? batches.length;
    const segments: MiniBatch[][] = [];
    for (const batch of batches) {
      const segment = Math.floor(batch.index / size);
      (segments[segment] ??= []).push(batch);
    }
    const readings = [...segments.entries()].map(([segment, members = []]) => async () => {
      const lines = await this.#committedJournal(jobId, JobWorkArea.journalOf(segmentSize, segment * size));
      return { members, reading: readJournalLines(lines, members.map((b) => b.index)) };
    });
    const pending = inOrderAtMost(readings, SEGMENTS_AT_ONCE);
    // Each is awaited in order below; a later one failing first must not go unhandled meanwhile.
    for (const next of pending) next.catch(() => undefined);
    for (const next of pending) {
      const { members, reading } = await next;
      extendRerunPlan(plan, members, reading);
    }
    return plan;
  }

  /**
   * The lines of one journal blob of a finished job (see journalOf) as its finalize committed
   * them, read without writing anything (a rerun that is refused changes nothing); none when there
   * is no such blob.
   */
  async #committedJournal(jobId: string, journal: string): Promise<JournalLine[]> {
    const container = await this.#ready();
    let text: string;
    try {
      text = (await container.getBlobClient(`${jobId}/${journal}`).downloadToBuffer()).toString('utf8');
    } catch (err) {
      if (isNotFound(err)) return [];
      throw new BatchError('storage_failed', `Could not read the journal of ${jobId}.`, { cause: err });
    }
    return text
      .split('\n')
      .filter((line) => line !== '')
      .map((line) => JSON.parse(line) as JournalLine);
  }

  /** Deletes the job's working files (its outputs live elsewhere), several at a time. */
  async clear(jobId: string): Promise<void> {
    await this.#deleteUnder(`${jobId}/`);
    for (const key of [...this.#chunks.keys()]) if (key.startsWith(`${jobId}/`)) this.#chunks.delete(key);
    this.#plans.delete(jobId);
  }

  /**
   * Deletes a finished job's segment parts and composition scratch blobs (see parts): its outputs
   * were composed from them. Its plan and journals stay, for a rerun (shared/jobs/rerun.ts).
   */
  async clearParts(jobId: string): Promise<void> {
    await this.#deleteUnder(`${jobId}/parts/`);
  }

  async #deleteUnder(prefix: string): Promise<void> {
    const container = await this.#ready();
    const names: string[] = [];
    for await (const blob of container.listBlobsFlat({ prefix })) names.push(blob.name);
    await Promise.all(inOrderAtMost(names.map((name) => () => container.deleteBlob(name).then(() => undefined, () => undefined)), 16));
  }
}
