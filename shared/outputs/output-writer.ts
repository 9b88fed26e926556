import type { ContainerClient } from '@azure/storage-blob';
import { BatchError } from '../errors.js';
import { isNotFound } from '../storage/clients.js';

const BLOCK = /^b-(\d{12})$/;

/** A block id per mini-batch index; -1 is the header. Equal length for every id, as Blob storage requires. */
export function blockId(index: number): string {
  return Buffer.from(`b-${String(index + 1).padStart(12, '0')}`).toString('base64');
}

function indexOfBlock(name: string): number | undefined {
  const m = BLOCK.exec(Buffer.from(name, 'base64').toString('utf8'));
  return m ? Number(m[1]) - 1 : undefined;
}

function storageError(action: string, err: unknown): BatchError {
  return new BatchError('storage_failed', `Storage failed while ${action}.`, { cause: err });
}

/**
 * Writes a job's outputs into its output folder without moving data through the orchestration:
 * each mini-batch stages its part of a file as a block whose id comes from its index; finishing the
 * job commits the blocks in index order. A retried mini-batch restages the same id, so the result
 * is the same whether or not anything ran twice.
 */
export class OutputFolder {
  readonly container: ContainerClient;
  /** Blob name prefix of the folder, ending with "/" (or empty for the container root). */
  readonly prefix: string;

  constructor(container: ContainerClient, prefix: string) {
    this.container = container;
    this.prefix = prefix === '' || prefix.endsWith('/') ? prefix : `${prefix}/`;
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

  async ensureContainer(): Promise<void> {
    try {
      await this.container.createIfNotExists();
    } catch (err) {
      throw storageError('creating the output container', err);
    }
  }

  /** Stages mini-batch `index`'s part of `file` (nothing for empty content). */
  async stage(file: string, index: number, content: string | Buffer): Promise<void> {
    const body = typeof content === 'string' ? Buffer.from(content, 'utf8') : content;
    if (body.length === 0) return;
    try {
      await this.container.getBlockBlobClient(this.blobName(file)).stageBlock(blockId(index), body, body.length);
    } catch (err) {
      throw storageError(`staging part ${index} of ${file}`, err);
    }
  }

  /**
   * Commits the staged parts of `file` in index order (with `header` first, if given) and returns
   * how many parts it holds. Safe to repeat: parts committed earlier are kept.
   */
  async commit(file: string, options: { header?: string; contentType?: string } = {}): Promise<number> {
    const blob = this.container.getBlockBlobClient(this.blobName(file));
    try {
      if (options.header) await blob.stageBlock(blockId(-1), Buffer.from(options.header), Buffer.byteLength(options.header));
      let names: string[] = [];
      try {
        const list = await blob.getBlockList('all');
        names = [...(list.committedBlocks ?? []), ...(list.uncommittedBlocks ?? [])].map((b) => b.name ?? '');
      } catch (err) {
        if (!isNotFound(err)) throw err;
      }
      const indexes = [...new Set(names.map(indexOfBlock).filter((i): i is number => i !== undefined))].sort((a, b) => a - b);
      const headers = options.contentType ? { blobHTTPHeaders: { blobContentType: options.contentType } } : {};
      if (indexes.length === 0) {
        await blob.upload('', 0, headers);
        return 0;
      }
      await blob.commitBlockList(indexes.map(blockId), headers);
      return indexes.filter((i) => i >= 0).length;
    } catch (err) {
      throw storageError(`committing ${file}`, err);
    }
  }

  async upload(file: string, content: string | Buffer, contentType: string): Promise<void> {
    const body = typeof content === 'string' ? Buffer.from(content, 'utf8') : content;
    try {
      await this.container.getBlockBlobClient(this.blobName(file)).upload(body, body.length, { blobHTTPHeaders: { blobContentType: contentType } });
    } catch (err) {
      throw storageError(`writing ${file}`, err);
    }
  }

  async uploadFile(file: string, localPath: string): Promise<void> {
    try {
      await this.container.getBlockBlobClient(this.blobName(file)).uploadFile(localPath);
    } catch (err) {
      throw storageError(`uploading ${file}`, err);
    }
  }
}
