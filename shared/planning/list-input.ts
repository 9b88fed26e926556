import { Readable } from 'node:stream';
import type { ContainerClient } from '@azure/storage-blob';
import { parquetMetadataAsync } from 'hyparquet';
import { RecordError, type TabularFormat, cutRecords, fileFormat } from '../data/records.js';
import { BatchError } from '../errors.js';
import type { ResolvedData } from '../registry/registry.js';
import { isNotFound, isVersionChanged } from '../storage/clients.js';
import { type ListedPage, fastListPage, quotedEtag } from '../storage/fast-read.js';
import type { SplitSettings } from '../schemas/resources.js';
import { type PlanItem, rowRanges } from './plan.js';
import { inOrderAtMost } from '../concurrency.js';
import type { ListedFile } from '../schemas/jobs.js';

/**
 * Lists a job's input as plan items. A folder contributes the blobs directly inside it (nested
 * folders are not explored, as in Azure ML), in the storage's listing order (see
 * {@link listFolderPage}); a file contributes itself. With `split`, tabular files with records
 * become row ranges, found by scanning each file once; every other file, and a tabular file
 * without records or that cannot be parsed, stays whole.
 */
export async function listInput(input: ResolvedData, split: SplitSettings | undefined, listed?: readonly ListedFile[]): Promise<PlanItem[]> {
  if (listed) return expand(input, await fileList(input, listed), split);
  if (input.type === 'uri_file') return expand(input, await single(input), split);
  const items: PlanItem[] = [];
  let marker = '';
  do {
    const page = await listFolderPage(input, split, { marker, pageSize: LIST_PAGE_SIZE });
    items.push(...page.items);
    marker = page.marker;
  } while (marker !== '');
  return items;
}

/**
 * One page of a folder input's plan items: the files among at most `pageSize` listed entries from
 * `marker` ('' for the first page), expanded into row ranges with `split`, and the marker of the
 * next page ('' after the last). Pages follow Blob storage's listing order (lexicographic by name),
 * which is therefore the order of a folder's items in every job, however it was listed: all at
 * once, or page by page while scoring runs (see JobRunner.planPages).
 */
export async function listFolderPage(input: ResolvedData, split: SplitSettings | undefined, page: { marker: string; pageSize: number }): Promise<{ items: PlanItem[]; marker: string }> {
  const prefix = folderPrefix(input.path);
  let listed: ListedPage;
  try {
    listed = (await fastListPage(input.container, prefix, page)) ?? (await sdkListPage(input.container, prefix, page));
  } catch (err) {
    if (isNotFound(err)) throw new BatchError('input_not_found', `The input container of ${input.uri} does not exist.`, { details: { input: input.uri } });
    throw new BatchError('storage_failed', `Could not list the input ${input.uri}.`, { cause: err });
  }
  const files = listed.blobs.filter((b) => isFileIn(prefix, b.name)).map((b) => ({ name: b.name.substring(prefix.length), blob: b.name, size: b.size, etag: b.etag }));
  return { items: await expand(input, files, split), marker: listed.marker };
}

/** Files as plan items: themselves, or with `split` a tabular file's row ranges. */
async function expand(input: ResolvedData, files: PlanItem[], split: SplitSettings | undefined): Promise<PlanItem[]> {
  if (!split) return files;
  const items: PlanItem[] = [];
  for (const file of files) {
    const format = fileFormat(file.name);
    if (!('tabular' in format)) {
      items.push(file);
      continue;
    }
    items.push(...(await splitFile(input.container, file, format.tabular, split.max_rows)));
  }
  return items;
}

async function single(input: ResolvedData): Promise<PlanItem[]> {
  const blob = input.container.getBlobClient(input.path);
  try {
    const props = await blob.getProperties();
    const name = input.path.split('/').pop() ?? input.path;
    return [{ name, blob: input.path, size: props.contentLength ?? 0, etag: props.etag }];
  } catch (err) {
    if (isNotFound(err)) throw new BatchError('input_not_found', `The input file ${input.uri} does not exist.`, { details: { input: input.uri } });
    throw new BatchError('storage_failed', `Could not read the input ${input.uri}.`, { cause: err });
  }
}

/** Entries per page when a folder is listed whole (Blob storage's largest page). */
const LIST_PAGE_SIZE = 5000;

/** How many files of a file list are looked up at once. */
const FILE_LIST_LOOKUPS = 16;

/**
 * A file list's items: exactly the files it names, in the folder `input.path`, each pinned to the
 * ETag it names (or, without one, to the version there now). Only sizes are looked up, each asking
 * for that version: a file that is gone or was rewritten stays an item with its ETag, so reading it
 * fails its items as any input changed since listing does, and the rest of the job runs. Which
 * files count (not a folder's own marker, nor a folder) is decided as for a folder listing.
 */
async function fileList(input: ResolvedData, listed: readonly ListedFile[]): Promise<PlanItem[]> {
  const prefix = folderPrefix(input.path);
  const lookups = listed
    .map((f) => ({ ...f, blob: `${prefix}${f.name}` }))
    .filter((f) => isFileIn(prefix, f.blob))
    .map((f) => async (): Promise<PlanItem> => {
      try {
        const props = await input.container.getBlobClient(f.blob).getProperties(f.etag ? { conditions: { ifMatch: quotedEtag(f.etag) } } : {});
        return { name: f.name, blob: f.blob, size: props.contentLength ?? 0, etag: f.etag ?? props.etag };
      } catch (err) {
        // Gone, or not the version named: reading it fails its items with the reason.
        if (isNotFound(err) || isVersionChanged(err)) return { name: f.name, blob: f.blob, size: 0, etag: f.etag ?? GONE_ETAG };
        throw new BatchError('storage_failed', `Could not read ${f.name} of the input ${input.uri}.`, { cause: err });
      }
    });
  const items = await Promise.all(inOrderAtMost(lookups, FILE_LIST_LOOKUPS));
  return items.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/**
 * The ETag a listed file without one gets when it is not there at all: no blob has it, so reading
 * the file fails as gone even if a file of that name is written later.
 */
const GONE_ETAG = '0x0';

/** The blob-name prefix of a folder path: itself, ending with "/" (or "" for a container's root). */
export function folderPrefix(path: string): string {
  return path === '' || path.endsWith('/') ? path : `${path}/`;
}

/** Whether a listed blob is a file of the folder (not the folder's own marker, nor a folder). */
export function isFileIn(prefix: string, blobName: string): boolean {
  return blobName !== prefix && !blobName.endsWith('/');
}

/** One page of the listing through the SDK, where {@link fastListPage} cannot (same markers). */
async function sdkListPage(container: ContainerClient, prefix: string, page: { marker: string; pageSize: number }): Promise<ListedPage> {
  const pages = container.listBlobsByHierarchy('/', { prefix }).byPage({ maxPageSize: page.pageSize, ...(page.marker ? { continuationToken: page.marker } : {}) });
  const next = await pages.next();
  if (next.done) return { blobs: [], marker: '' };
  const blobs = next.value.segment.blobItems.map((entry) => ({ name: entry.name, size: entry.properties.contentLength ?? 0, etag: entry.properties.etag ?? '' }));
  return { blobs, marker: next.value.continuationToken ?? '' };
}

/** The conditions that read exactly the listed version of an item. */
function listedVersion(item: PlanItem): { conditions: { ifMatch?: string } } {
  return { conditions: item.etag ? { ifMatch: quotedEtag(item.etag) } : {} };
}

/** A blob's bytes (the listed version) as a stream, for one pass over a large file. */
async function stream(container: ContainerClient, file: PlanItem): Promise<AsyncIterable<Uint8Array>> {
  const body = (await container.getBlobClient(file.blob).download(0, undefined, listedVersion(file))).readableStreamBody;
  return (body as AsyncIterable<Uint8Array> | undefined) ?? Readable.from([]);
}

/** The row count in a Parquet file's metadata, or undefined when the file is not Parquet. */
async function parquetRows(container: ContainerClient, item: PlanItem): Promise<number | undefined> {
  const { size } = item;
  const client = container.getBlobClient(item.blob);
  let storageFailure: { error: unknown } | undefined;
  const file = {
    byteLength: size,
    async slice(start: number, end?: number): Promise<ArrayBuffer> {
      const stop = end ?? size;
      try {
        const buffer = await client.downloadToBuffer(start, stop - start, listedVersion(item));
        return buffer.buffer.slice(buffer.byteOffset, buffer.byteOffset + buffer.byteLength) as ArrayBuffer;
      } catch (err) {
        storageFailure = { error: err };
        throw err;
      }
    },
  };
  try {
    return Number((await parquetMetadataAsync(file)).num_rows);
  } catch {
    if (storageFailure) throw storageFailure.error;
    // Not readable as Parquet: scoring reports that on the whole file, as without split.
    return undefined;
  }
}

/**
 * A tabular file as row ranges of at most `maxRows` rows, cut at the record boundaries that
 * shared/data/records.ts defines (the readers use the same). A file with no records, or one that
 * cannot be parsed, stays one whole-file item: scoring then fails it with the same reason as
 * without split, rather than the file vanishing or failing the whole job.
 */
async function splitFile(container: ContainerClient, file: PlanItem, format: TabularFormat, maxRows: number): Promise<PlanItem[]> {
  try {
    if (format === 'parquet') {
      const rows = await parquetRows(container, file);
      if (!rows) return [file];
      return rowRanges(rows, maxRows).map((r) => ({ ...file, kind: format, rows: r }));
    }
    if (file.size === 0) return [file];
    const cut = await cutRecords(format, await stream(container, file), maxRows);
    if (cut.records === 0) return [file];
    return cut.ranges.map((r) => ({ ...file, kind: format, rows: r.rows, bytes: r.bytes, ...(format === 'csv' ? { headerEnd: cut.headerEnd } : {}) }));
  } catch (err) {
    // Gone or rewritten since it was listed: it stays whole, and reading it fails its item with
    // the same reason as without split.
    if (err instanceof RecordError || isNotFound(err) || isVersionChanged(err)) return [file];
    throw new BatchError('storage_failed', `Could not read ${file.name} to split it into row ranges.`, { cause: err });
  }
}
