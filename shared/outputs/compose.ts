import { createHash } from 'node:crypto';
import { BlobSASPermissions, type BlockBlobClient, StorageSharedKeyCredential } from '@azure/storage-blob';
import { inOrderAtMost } from '../concurrency.js';
import { BatchError } from '../errors.js';

/**
 * Server-side composition of one blob from pieces: blobs (whole, or ranges of them) copied with
 * Put Block From URL, and small inline texts (a header line) staged with Put Block. Nothing passes
 * through the app but block ids. This is how a job's outputs grow past a blob's 50,000 committed
 * blocks: each segment of mini-batches is committed to a part blob of its own, and the output is
 * composed of the parts (Azure Storage copies within the service; fnhost's Azurite adds the
 * operation, see infra/local/README.md).
 */

/** Committed blocks a block blob holds (Azure Blob storage). */
export const MAX_COMMITTED_BLOCKS = 50_000;
/**
 * The most bytes one Put Block From URL copies here. Azure allows more per block; 100 MiB keeps
 * every copy well inside a request's time limit, and 50,000 blocks of it is ~4.8 TiB per level.
 */
export const MAX_COPY_BYTES = 100 * 1024 * 1024;

/** A piece of a composed blob: a whole blob of `bytes` bytes, or a text staged as is. */
export type ComposeSource =
  | {
      blob: BlockBlobClient;
      bytes: number;
      /** What the blob holds (e.g. a hash of its committed block list), so a block id names its content. */
      key: string;
    }
  | { text: string };

export interface ComposeOptions {
  contentType: string;
  /** Where intermediate blobs go when there are more pieces than a blob holds blocks (level, index). */
  scratch: (level: number, index: number) => BlockBlobClient;
  /** Requests at once. */
  concurrency?: number;
  /** For tests: the block limit to compose under (default MAX_COMMITTED_BLOCKS). */
  maxBlocks?: number;
  /** Metadata of the composed blob (not of intermediate blobs): the owning job's id of an output. */
  metadata?: Record<string, string> | undefined;
}

interface Piece {
  id: string;
  copy?: { blob: BlockBlobClient; offset: number; count: number } | undefined;
  text?: Buffer | undefined;
}

/** Ids of one blob have one length: 'c-' and 40 hex digits of a hash of what the block holds. */
function blockId(what: string): string {
  return Buffer.from(`c-${createHash('sha256').update(what).digest('hex').substring(0, 40)}`, 'utf8').toString('base64');
}

/**
 * A URL Put Block From URL can read `blob` at: a read SAS (for an hour) when the client holds the
 * account key, or the client's own URL when it already carries a SAS (a SAS connection string).
 * The source is read with its own authorization only, in Azure as in fnhost's Azurite.
 */
async function readableUrl(blob: BlockBlobClient): Promise<string> {
  if (blob.credential instanceof StorageSharedKeyCredential) {
    const now = Date.now();
    return blob.generateSasUrl({ permissions: BlobSASPermissions.parse('r'), startsOn: new Date(now - 5 * 60_000), expiresOn: new Date(now + 3_600_000) });
  }
  if (new URL(blob.url).searchParams.has('sig')) return blob.url;
  throw new BatchError('configuration', 'Outputs are composed server-side from parts in the app storage, which needs an account key or a SAS to grant read access to them.', {
    retryable: false,
  });
}

/** The blocks `sources` become; an id names the block's place and content, so no id occurs twice. */
function piecesOf(sources: readonly ComposeSource[]): Piece[] {
  const out: Piece[] = [];
  for (const source of sources) {
    if ('text' in source) {
      const text = Buffer.from(source.text, 'utf8');
      if (text.length > 0) out.push({ id: blockId(`${out.length}:text:${createHash('sha256').update(text).digest('hex')}`), text });
      continue;
    }
    for (let offset = 0; offset < source.bytes; offset += MAX_COPY_BYTES) {
      const count = Math.min(MAX_COPY_BYTES, source.bytes - offset);
      out.push({ id: blockId(`${out.length}:copy:${source.key}:${source.bytes}:${offset}:${count}`), copy: { blob: source.blob, offset, count } });
    }
  }
  return out;
}

/**
 * Makes `target` exactly the concatenation of `sources`, in order (an empty blob for none). Safe to
 * repeat: block ids are made from what each block holds, so staging again rewrites the same block.
 * More pieces than a blob holds blocks are first composed into intermediate blobs (`scratch`),
 * MAX_COMMITTED_BLOCKS at a time, and those into the target: no cap on the size of what is composed.
 */
export async function composeBlob(target: BlockBlobClient, sources: readonly ComposeSource[], options: ComposeOptions, level = 0): Promise<void> {
  const maxBlocks = options.maxBlocks ?? MAX_COMMITTED_BLOCKS;
  const concurrency = options.concurrency ?? 16;
  const pieces = piecesOf(sources);
  if (pieces.length > maxBlocks) {
    const groups: ComposeSource[] = [];
    for (let start = 0, index = 0; start < pieces.length; start += maxBlocks, index++) {
      const group = pieces.slice(start, start + maxBlocks);
      const blob = options.scratch(level, index);
      await stageAndCommit(blob, group, { contentType: 'application/octet-stream', concurrency });
      const bytes = group.reduce((n, p) => n + (p.copy?.count ?? p.text?.length ?? 0), 0);
      groups.push({ blob, bytes, key: createHash('sha256').update(group.map((p) => p.id).join(',')).digest('hex') });
    }
    await composeBlob(target, groups, options, level + 1);
    return;
  }
  await stageAndCommit(target, pieces, { contentType: options.contentType, concurrency, metadata: options.metadata });
}

async function stageAndCommit(
  target: BlockBlobClient,
  pieces: readonly Piece[],
  options: { contentType: string; concurrency: number; metadata?: Record<string, string> | undefined },
): Promise<void> {
  const headers = { blobHTTPHeaders: { blobContentType: options.contentType }, ...(options.metadata ? { metadata: options.metadata } : {}) };
  try {
    if (pieces.length === 0) {
      await target.upload('', 0, headers);
      return;
    }
    const urls = new Map<BlockBlobClient, Promise<string>>();
    const url = (blob: BlockBlobClient): Promise<string> => {
      let found = urls.get(blob);
      if (!found) urls.set(blob, (found = readableUrl(blob)));
      return found;
    };
    const stages = pieces.map((piece) => async (): Promise<void> => {
      if (piece.text) await target.stageBlock(piece.id, piece.text, piece.text.length);
      else if (piece.copy) await target.stageBlockFromURL(piece.id, await url(piece.copy.blob), piece.copy.offset, piece.copy.count);
    });
    await Promise.all(inOrderAtMost(stages, options.concurrency));
    await target.commitBlockList(
      pieces.map((p) => p.id),
      headers,
    );
  } catch (err) {
    if (err instanceof BatchError) throw err;
    throw new BatchError('storage_failed', `Storage failed while composing ${target.name}.`, { cause: err });
  }
}
