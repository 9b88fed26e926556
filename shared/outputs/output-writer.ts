import { createHash, randomBytes } from 'node:crypto';
import type { ContainerClient } from '@azure/storage-blob';
import { BatchError } from '../errors.js';
import { isNotFound } from '../storage/clients.js';
import { type CopySource, fastStageBlock } from '../storage/fast-read.js';

/** A block staged for a file: its id and its exact length, as the writer recorded them. */
export interface StagedPart {
  id: string;
  bytes: number;
}

/**
 * Block ids for one job's parts of assembled files. Every id names the job (a hash of its id), so
 * two jobs can never address the same block, and the part's place in the file; parts staged by
 * each execution of an activity also carry a random nonce, so a duplicate execution (activities
 * run at least once) stages a block of its own instead of overwriting another's. Blob storage wants
 * every id of a blob to have the same length: all ids made here are 41 characters before base64.
 */
export class BlockIds {
  readonly #tag: string;

  constructor(jobId: string) {
    this.#tag = createHash('sha256').update(jobId).digest('hex').substring(0, 12);
  }

  /** A new id for part `index` (mini-batch index; -1 for a preamble) staged by attempt `attempt`. */
  part(kind: 'p' | 'e', index: number, attempt: number, nonce: string): string {
    // Ids of one blob must be of one length: a nonce not made by newNonce is hashed to its shape.
    const n = /^[0-9a-f]{8}$/.test(nonce) ? nonce : createHash('sha256').update(nonce).digest('hex').substring(0, 8);
    return encode(`${kind}-${this.#tag}-${String(index + 1).padStart(12, '0')}-${String(attempt).padStart(4, '0').slice(-4)}-${n}`);
  }

  /** The id of a group of journal lines: the same lines always get the same id (restaging is harmless). */
  group(content: string): string {
    return encode(`g-${this.#tag}-${createHash('sha256').update(content).digest('hex').substring(0, 26)}`);
  }

  /** Whether a block id is one of this job's. */
  owns(id: string): boolean {
    const text = Buffer.from(id, 'base64').toString('utf8');
    return text.length === 41 && text.substring(1, 15) === `-${this.#tag}-`;
  }
}

/** A fresh nonce for one execution of an activity: 8 hex digits. */
export function newNonce(): string {
  return randomBytes(4).toString('hex');
}

function encode(text: string): string {
  return Buffer.from(text, 'utf8').toString('base64');
}

/**
 * The metadata name under which every output blob this app writes records the job that wrote it.
 * Output folders are named by their users and can be reused (a folder emptied and claimed by a new
 * job), so a file's name says nothing about whose it is: this does (see shared/jobs/output-access.ts).
 */
export const OWNER_METADATA = 'batch_job_id';

/** The metadata that marks a blob as written by job `owner` (none when no owner is known). */
export function ownerMetadata(owner: string | undefined): { metadata?: Record<string, string> } {
  return owner === undefined ? {} : { metadata: { [OWNER_METADATA]: owner } };
}

function storageError(action: string, err: unknown): BatchError {
  return new BatchError('storage_failed', `Storage failed while ${action}.`, { cause: err });
}

/**
 * Writes a job's outputs into its output folder without moving data through the orchestration:
 * each mini-batch stages its part of a file as a block (see {@link BlockIds}) and reports the
 * block's id and length; finishing the job checks those records against the blob's block list and
 * commits exactly the recorded blocks, in mini-batch order. Nothing is ever committed that no
 * record names, and a record whose block is missing or of another length is found before commit.
 */
export class OutputFolder {
  readonly container: ContainerClient;
  /** Blob name prefix of the folder, ending with "/" (or empty for the container root). */
  readonly prefix: string;
  /** The job whose files these are: every file committed or uploaded here carries its id ({@link OWNER_METADATA}). */
  readonly owner: string | undefined;

  constructor(container: ContainerClient, prefix: string, owner?: string) {
    this.container = container;
    this.prefix = prefix === '' || prefix.endsWith('/') ? prefix : `${prefix}/`;
    this.owner = owner;
  }

  blobName(file: string): string {
    return `${this.prefix}${file}`;
  }

  async exists(file: string): Promise<boolean> {
    try {
      return await this.container.getBlobClient(this.blobName(file)).exists();
    } catch (err) {
      if (isNotFound(err)) return false;
      throw storageError(`checking ${file}`, err);
    }
  }

  /** Whether anything at all is stored under the folder (nested folders included). */
  async hasAnyFile(): Promise<boolean> {
    try {
      for await (const page of this.container.listBlobsFlat({ prefix: this.prefix }).byPage({ maxPageSize: 1 })) {
        if (page.segment.blobItems.length > 0) return true;
      }
      return false;
    } catch (err) {
      if (isNotFound(err)) return false;
      throw storageError('listing the output folder', err);
    }
  }

  async ensureContainer(): Promise<void> {
    try {
      await this.container.createIfNotExists();
    } catch (err) {
      throw storageError('creating the output container', err);
    }
  }

  /** Stages one part of `file` under `id` and returns what was staged (nothing for empty content). */
  async stage(file: string, id: string, content: string | Buffer): Promise<StagedPart | undefined> {
    const body = typeof content === 'string' ? Buffer.from(content, 'utf8') : content;
    if (body.length === 0) return undefined;
    try {
      // A mini-batch stages a block of each output file: the plain PUT spares the event loop the SDK's pipeline.
      if (!(await fastStageBlock(this.container, this.blobName(file), id, body))) await this.container.getBlockBlobClient(this.blobName(file)).stageBlock(id, body, body.length);
    } catch (err) {
      throw storageError(`staging a part of ${file}`, err);
    }
    return { id, bytes: body.length };
  }

  /**
   * Stages bytes [start, end) of another blob as one part of `file` under `id`, server-side (Put
   * Block From URL): nothing passes through this process. Nothing is staged for an empty range.
   * Which version of the source is read is the caller's to check (see the rerun's source pin).
   */
  async stageFrom(file: string, id: string, source: CopySource, range: { start: number; end: number }): Promise<StagedPart | undefined> {
    const bytes = range.end - range.start;
    if (bytes <= 0) return undefined;
    try {
      await this.container.getBlockBlobClient(this.blobName(file)).stageBlockFromURL(id, source.url, range.start, bytes, source.authorization ? { sourceAuthorization: source.authorization } : {});
    } catch (err) {
      throw storageError(`copying a part of ${file}`, err);
    }
    return { id, bytes };
  }

  /** The blocks of `file` that exist (staged or committed), by id, with their lengths. */
  async blocks(file: string): Promise<Map<string, number>> {
    const found = new Map<string, number>();
    try {
      const list = await this.container.getBlockBlobClient(this.blobName(file)).getBlockList('all');
      // Committed first, so a block staged again since (same id) shows its newest length.
      for (const block of [...(list.committedBlocks ?? []), ...(list.uncommittedBlocks ?? [])]) {
        if (block.name) found.set(block.name, block.size);
      }
    } catch (err) {
      if (!isNotFound(err)) throw storageError(`listing the parts of ${file}`, err);
    }
    return found;
  }

  /**
   * The records whose block is not in `blocks` (see {@link blocks}) with exactly the recorded
   * length: the parts that were lost or replaced since they were recorded.
   */
  static missing<T extends { part: StagedPart }>(records: readonly T[], blocks: ReadonlyMap<string, number>): T[] {
    return records.filter((r) => blocks.get(r.part.id) !== r.part.bytes);
  }

  /**
   * Commits `file` as exactly `parts`, in the order given (an empty file for none). Safe to repeat:
   * a part committed by an earlier call is still found by its id.
   */
  async commit(file: string, parts: readonly StagedPart[], options: { contentType?: string } = {}): Promise<void> {
    const blob = this.container.getBlockBlobClient(this.blobName(file));
    const headers = { ...(options.contentType ? { blobHTTPHeaders: { blobContentType: options.contentType } } : {}), ...ownerMetadata(this.owner) };
    try {
      if (parts.length === 0) await blob.upload('', 0, headers);
      else await blob.commitBlockList(parts.map((p) => p.id), headers);
    } catch (err) {
      throw storageError(`committing ${file}`, err);
    }
  }

  async upload(file: string, content: string | Buffer, contentType: string): Promise<void> {
    const body = typeof content === 'string' ? Buffer.from(content, 'utf8') : content;
    try {
      await this.container.getBlockBlobClient(this.blobName(file)).upload(body, body.length, { blobHTTPHeaders: { blobContentType: contentType }, ...ownerMetadata(this.owner) });
    } catch (err) {
      throw storageError(`writing ${file}`, err);
    }
  }

  async uploadFile(file: string, localPath: string): Promise<void> {
    try {
      await this.container.getBlockBlobClient(this.blobName(file)).uploadFile(localPath, ownerMetadata(this.owner));
    } catch (err) {
      throw storageError(`uploading ${file}`, err);
    }
  }
}
