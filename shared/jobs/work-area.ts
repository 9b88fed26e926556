import type { ContainerClient } from '@azure/storage-blob';
import type { AppConfig } from '../config.js';
import { BatchError } from '../errors.js';
import { BlockIds, OutputFolder } from '../outputs/output-writer.js';
import { inOrderAtMost } from '../concurrency.js';
import { chunkOf, type MiniBatch } from '../planning/plan.js';
import { isNotFound, storageAccount } from '../storage/clients.js';
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
  /** Recently read manifest chunks; a chunk never changes once written. */
  readonly #chunks = new Map<string, MiniBatch[]>();

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

  #manifestBlob(jobId: string, chunk: number): string {
    return `${jobId}/manifest/chunk-${String(chunk).padStart(6, '0')}.jsonl`;
  }

  async writeManifest(jobId: string, chunk: number, batches: MiniBatch[]): Promise<void> {
    const container = await this.#ready();
    const text = batches.map((b) => JSON.stringify(b)).join('\n');
    await container.getBlockBlobClient(this.#manifestBlob(jobId, chunk)).upload(text, Buffer.byteLength(text), {
      blobHTTPHeaders: { blobContentType: 'application/x-ndjson' },
    });
  }

  async miniBatch(jobId: string, chunkSize: number, index: number): Promise<MiniBatch> {
    const chunk = chunkOf(index, chunkSize);
    const key = `${jobId}/${chunk}`;
    let batches = this.#chunks.get(key);
    if (!batches) {
      const container = await this.#ready();
      let text: string;
      try {
        text = (await container.getBlobClient(this.#manifestBlob(jobId, chunk)).downloadToBuffer()).toString('utf8');
      } catch (err) {
        if (isNotFound(err)) throw new BatchError('internal', `The manifest of job ${jobId} chunk ${chunk} is missing.`, { retryable: false });
        throw new BatchError('storage_failed', 'Could not read the mini-batch manifest.', { cause: err });
      }
      batches = text === '' ? [] : text.split('\n').map((line) => JSON.parse(line) as MiniBatch);
      this.#chunks.set(key, batches);
      // Keep a bounded number of chunks in memory.
      if (this.#chunks.size > 64) {
        const oldest = this.#chunks.keys().next().value;
        if (oldest !== undefined) this.#chunks.delete(oldest);
      }
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

  /** Every mini-batch of a job's plan (its manifest), in index order. */
  async plan(jobId: string): Promise<MiniBatch[]> {
    const container = await this.#ready();
    const batches: MiniBatch[] = [];
    for await (const blob of container.listBlobsFlat({ prefix: `${jobId}/manifest/` })) {
      const text = (await container.getBlobClient(blob.name).downloadToBuffer()).toString('utf8');
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
