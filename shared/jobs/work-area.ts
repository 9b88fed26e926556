import type { ContainerClient } from '@azure/storage-blob';
import type { AppConfig } from '../config.js';
import { BatchError } from '../errors.js';
import { BlockIds, OutputFolder } from '../outputs/output-writer.js';
import { chunkOf, type MiniBatch } from '../planning/plan.js';
import { isNotFound, storageAccount } from '../storage/clients.js';
import { type JournalEntry, type JournalLine, isAck, readJournalLines } from './journal.js';
import { type RerunPlan, planRerun } from './rerun.js';

const JOURNAL = 'journal.jsonl';
/** The preamble's block: one per job, whoever writes it last (prepare may run twice) wins. */
const PREAMBLE_NONCE = '00000000';

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
   * Records one attempt's journal entry as a block of its own (see BlockIds: a duplicate execution
   * stages beside it, never over it). The orchestration's ack decides which copy counts.
   */
  async stageEntry(jobId: string, entry: JournalEntry): Promise<void> {
    const folder = new OutputFolder(await this.#ready(), `${jobId}/`);
    const nonce = entry.i < 0 ? PREAMBLE_NONCE : entry.n;
    await folder.stage(JOURNAL, new BlockIds(jobId).part('e', entry.i, entry.a, nonce), `${JSON.stringify(entry)}\n`);
  }

  /**
   * Records lines the orchestration collected (routine entries it carried, acks of entries staged
   * by activities) as one block. The block id comes from the content, so recording the same lines
   * again (an activity run twice) writes the same block.
   */
  async stageGroup(jobId: string, lines: readonly JournalLine[]): Promise<void> {
    if (lines.length === 0) return;
    const folder = new OutputFolder(await this.#ready(), `${jobId}/`);
    const text = lines.map((l) => `${JSON.stringify(isAck(l) ? l : { ...l, g: 1 })}\n`).join('');
    await folder.stage(JOURNAL, new BlockIds(jobId).group(text), text);
  }

  /**
   * Commits every block of the journal that is this job's and reads all its lines (see
   * readJournalLines for which of them count). Safe to repeat.
   */
  async readJournal(jobId: string): Promise<JournalLine[]> {
    const container = await this.#ready();
    const folder = new OutputFolder(container, `${jobId}/`);
    const ids = new BlockIds(jobId);
    const blocks = [...(await folder.blocks(JOURNAL))].filter(([id]) => ids.owns(id)).map(([id, bytes]) => ({ id, bytes }));
    await folder.commit(JOURNAL, blocks);
    const text = (await container.getBlobClient(folder.blobName(JOURNAL)).downloadToBuffer()).toString('utf8');
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
   * A rerun's plan from its parent's finished work area (scope `jobId`): its manifest, and its
   * committed journal read against every mini-batch of it (see planRerun). A job finished before its work
   * area was kept has none: an empty plan.
   */
  async rerunPlan(jobId: string, headerBytes: number): Promise<RerunPlan> {
    const batches = await this.plan(jobId);
    const lines = batches.length === 0 ? [] : await this.#committedJournal(jobId);
    return planRerun(batches, readJournalLines(lines, batches.map((b) => b.index)), headerBytes);
  }

  /**
   * The lines of a finished job's journal as its finalize committed them, read without writing
   * anything (a rerun that is refused changes nothing); none when there is no journal.
   */
  async #committedJournal(jobId: string): Promise<JournalLine[]> {
    const container = await this.#ready();
    let text: string;
    try {
      text = (await container.getBlobClient(`${jobId}/${JOURNAL}`).downloadToBuffer()).toString('utf8');
    } catch (err) {
      if (isNotFound(err)) return [];
      throw new BatchError('storage_failed', `Could not read the journal of ${jobId}.`, { cause: err });
    }
    return text
      .split('\n')
      .filter((line) => line !== '')
      .map((line) => JSON.parse(line) as JournalLine);
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
