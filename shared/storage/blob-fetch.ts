/**
 * Reaching a blob container from any thread, and fetching scoring inputs from it. Kept apart from
 * clients.ts so that scoring workers load only the Blob SDK (the identity library loads only for a
 * datastore that uses it).
 */
import { createWriteStream } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { BlobServiceClient, type ContainerClient } from '@azure/storage-blob';
import { BatchError } from '../errors.js';

/** How to reach a blob container, in a form that crosses to a worker thread. */
export type ContainerAccess =
  | { kind: 'connection'; connection: string; container: string }
  | { kind: 'identity'; accountUrl: string; clientId?: string | undefined; container: string };

const services = new Map<string, Promise<BlobServiceClient>>();

async function serviceOf(access: ContainerAccess): Promise<BlobServiceClient> {
  if (access.kind === 'connection') return BlobServiceClient.fromConnectionString(access.connection);
  const { DefaultAzureCredential } = await import('@azure/identity');
  return new BlobServiceClient(access.accountUrl, new DefaultAzureCredential(access.clientId ? { managedIdentityClientId: access.clientId } : {}));
}

/** The container `access` names; clients are created once per account and thread, then shared. */
export async function openContainer(access: ContainerAccess): Promise<ContainerClient> {
  const key = access.kind === 'connection' ? `c|${access.connection}` : `i|${access.accountUrl}|${access.clientId ?? ''}`;
  let service = services.get(key);
  if (!service) {
    service = serviceOf(access);
    services.set(key, service);
    service.catch(() => services.delete(key));
  }
  return (await service).getContainerClient(access.container);
}

/** Where one scoring item's data is in its container. */
export interface ItemSource {
  blob: string;
  /** Only bytes [start, end) of the blob: a CSV or JSONL row range. */
  range?: { start: number; end: number } | undefined;
  /** For a CSV range: where the header line ends; the header goes in front of the range. */
  headerEnd?: number | undefined;
}

/** Blobs up to this size are read whole into memory; larger ones stream to disk. */
const SMALL_BLOB_BYTES = 4 * 1024 * 1024;

function isNotFound(err: unknown): boolean {
  return (err as { statusCode?: number }).statusCode === 404;
}

/** Options of {@link fetchItem}. */
export interface FetchOptions {
  /** The local file a large blob streams to. */
  target: string;
  /** Called before anything is written to `target` (to create its folder). */
  beforeWrite: () => Promise<void>;
  /** CSV header lines shared between the ranges of one file in a mini-batch. */
  headers: Map<string, Promise<Buffer>>;
}

/**
 * Fetches one item. Small blobs and ranges come back as bytes; a large whole blob streams to
 * `options.target` and the result is undefined.
 */
export async function fetchItem(container: ContainerClient, source: ItemSource, options: FetchOptions): Promise<Buffer | undefined> {
  const { target, headers } = options;
  const client = container.getBlobClient(source.blob);
  try {
    const { range } = source;
    if (!range) {
      // One GET, resumed from where it broke off if the connection drops.
      const response = await client.download(0, undefined, { maxRetryRequests: 5 });
      const body = response.readableStreamBody;
      if (!body) throw new Error('the download returned no body');
      if ((response.contentLength ?? Infinity) <= SMALL_BLOB_BYTES) {
        const chunks: Buffer[] = [];
        for await (const chunk of body) chunks.push(chunk as Buffer);
        return Buffer.concat(chunks);
      }
      await options.beforeWrite();
      await pipeline(body, createWriteStream(target));
      return undefined;
    }
    let prefix: Buffer | undefined;
    if (source.headerEnd) {
      let header = headers.get(source.blob);
      if (!header) {
        header = client.downloadToBuffer(0, source.headerEnd);
        headers.set(source.blob, header);
      }
      prefix = await header;
    }
    const body = range.end > range.start ? await client.downloadToBuffer(range.start, range.end - range.start) : Buffer.alloc(0);
    return prefix ? Buffer.concat([prefix, body]) : body;
  } catch (err) {
    if (isNotFound(err)) throw new BatchError('input_not_found', `The input blob ${source.blob} no longer exists.`, { retryable: false });
    throw new BatchError('storage_failed', `Could not download ${source.blob}.`, { cause: err });
  }
}
