import type { ContainerClient } from '@azure/storage-blob';
import type { AppConfig } from '../config.js';
import { BatchError } from '../errors.js';
import { OutputFolder } from '../outputs/output-writer.js';
import { chunkOf, type MiniBatch } from '../planning/plan.js';
import { isNotFound, storageAccount } from '../storage/clients.js';

const JOURNAL = 'journal.jsonl';
/** Block indexes from here up hold groups of entries (mini-batch indexes stay far below). */
const GROUP_BLOCKS = 500_000_000_000;

/** One mini-batch's share of processed_mini_batches.csv, errors.jsonl and the job log. */
export interface JournalEntry {
  i: number;
  report: string;
  errors: string;
  log: string;
}

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
   * Records what one mini-batch contributes to the small report files (its report row, error lines
   * and log lines) as one block of the job's journal: one storage call per mini-batch instead of
   * three. A retry replaces its block. Index -1 is the job's own preamble.
   */
  async stageJournal(jobId: string, entry: JournalEntry): Promise<void> {
    const folder = new OutputFolder(await this.#ready(), `${jobId}/`);
    await folder.stage(JOURNAL, entry.i, `${JSON.stringify(entry)}\n`);
  }

  /**
   * Records several mini-batches' entries as one block, for mini-batches whose entry is routine
   * (first attempt, completed, nothing failed or logged): the orchestration collects those and a
   * single storage call stands for many mini-batches. Its block id comes from its first entry, in a
   * range of ids of its own, so it never replaces a mini-batch's own block; restaging the same
   * entries (an activity run twice) writes the same block.
   */
  async stageJournalGroup(jobId: string, entries: readonly JournalEntry[]): Promise<void> {
    const first = entries[0];
    if (!first) return;
    const folder = new OutputFolder(await this.#ready(), `${jobId}/`);
    await folder.stage(JOURNAL, GROUP_BLOCKS + first.i, entries.map((e) => `${JSON.stringify(e)}\n`).join(''));
  }

  /** Commits and reads the journal, in mini-batch order. Safe to repeat. */
  async readJournal(jobId: string): Promise<JournalEntry[]> {
    const container = await this.#ready();
    const folder = new OutputFolder(container, `${jobId}/`);
    await folder.commit(JOURNAL);
    const text = (await container.getBlobClient(folder.blobName(JOURNAL)).downloadToBuffer()).toString('utf8');
    // Grouped entries come after every single one in the blob; sorting puts each in its place.
    return text
      .split('\n')
      .filter((line) => line !== '')
      .map((line) => JSON.parse(line) as JournalEntry)
      .sort((a, b) => a.i - b.i);
  }

  /** Deletes the job's working files (its outputs live elsewhere). */
  async clear(jobId: string): Promise<void> {
    const container = await this.#ready();
    for await (const blob of container.listBlobsFlat({ prefix: `${jobId}/` })) {
      await container.deleteBlob(blob.name).catch(() => undefined);
    }
    for (const key of [...this.#chunks.keys()]) if (key.startsWith(`${jobId}/`)) this.#chunks.delete(key);
  }
}
