import type { ContainerClient } from '@azure/storage-blob';
import { parse } from 'csv-parse';
import { parquetMetadataAsync } from 'hyparquet';
import { BatchError } from '../errors.js';
import type { ResolvedData } from '../registry/registry.js';
import { isNotFound } from '../storage/clients.js';
import { type ListedBlob, fastList } from '../storage/fast-read.js';
import type { SplitSettings } from '../schemas/resources.js';
import { type PlanItem, rowRanges, tabularKind } from './plan.js';

/**
 * Lists a job's input as plan items. A folder contributes the blobs directly inside it (nested
 * folders are not explored, as in Azure ML); a file contributes itself. With `split`, tabular files
 * become row ranges, found by scanning each file once.
 */
export async function listInput(input: ResolvedData, split: SplitSettings | undefined): Promise<PlanItem[]> {
  const files = input.type === 'uri_file' ? await single(input) : await folder(input);
  if (!split) return files;
  const items: PlanItem[] = [];
  for (const file of files) {
    const kind = tabularKind(file.name);
    if (!kind) {
      items.push(file);
      continue;
    }
    items.push(...(await splitFile(input.container, file, kind, split.max_rows)));
  }
  return items;
}

async function single(input: ResolvedData): Promise<PlanItem[]> {
  const blob = input.container.getBlobClient(input.path);
  try {
    const props = await blob.getProperties();
    const name = input.path.split('/').pop() ?? input.path;
    return [{ name, blob: input.path, size: props.contentLength ?? 0 }];
  } catch (err) {
    if (isNotFound(err)) throw new BatchError('input_not_found', `The input file ${input.uri} does not exist.`, { details: { input: input.uri } });
    throw new BatchError('storage_failed', `Could not read the input ${input.uri}.`, { cause: err });
  }
}

const LIST_PAGE_SIZE = 1000;

/** The blob-name prefix of a folder path: itself, ending with "/" (or "" for a container's root). */
export function folderPrefix(path: string): string {
  return path === '' || path.endsWith('/') ? path : `${path}/`;
}

/** Whether a listed blob is a file of the folder (not the folder's own marker, nor a folder). */
export function isFileIn(prefix: string, blobName: string): boolean {
  return blobName !== prefix && !blobName.endsWith('/');
}

async function folder(input: ResolvedData): Promise<PlanItem[]> {
  const prefix = folderPrefix(input.path);
  let listed: ListedBlob[];
  try {
    listed = (await fastList(input.container, prefix)) ?? (await sdkList(input.container, prefix));
  } catch (err) {
    if (isNotFound(err)) throw new BatchError('input_not_found', `The input container of ${input.uri} does not exist.`, { details: { input: input.uri } });
    throw new BatchError('storage_failed', `Could not list the input ${input.uri}.`, { cause: err });
  }
  const items = listed.filter((b) => isFileIn(prefix, b.name)).map((b) => ({ name: b.name.substring(prefix.length), blob: b.name, size: b.size }));
  return items.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** The listing through the SDK, where {@link fastList} cannot. */
async function sdkList(container: ContainerClient, prefix: string): Promise<ListedBlob[]> {
  const listed: ListedBlob[] = [];
  // Pages of 1,000 keep the parsed listing small however large the folder.
  for await (const page of container.listBlobsByHierarchy('/', { prefix }).byPage({ maxPageSize: LIST_PAGE_SIZE })) {
    for (const entry of page.segment.blobItems) listed.push({ name: entry.name, size: entry.properties.contentLength ?? 0 });
  }
  return listed;
}

/** Ends of the rows of a CSV file (byte offsets), the first being the header's end. */
async function csvRowEnds(container: ContainerClient, blob: string): Promise<number[]> {
  const download = await container.getBlobClient(blob).download();
  const body = download.readableStreamBody;
  if (!body) return [];
  const ends: number[] = [];
  const parser = parse({ info: true, bom: true, relax_column_count: true });
  body.pipe(parser);
  for await (const record of parser as AsyncIterable<{ info: { bytes: number } }>) ends.push(record.info.bytes);
  return ends;
}

/** Ends of the non-empty lines of a JSONL file (byte offsets). */
async function jsonlLineEnds(container: ContainerClient, blob: string): Promise<{ start: number; end: number }[]> {
  const download = await container.getBlobClient(blob).download();
  const body = download.readableStreamBody;
  if (!body) return [];
  const lines: { start: number; end: number }[] = [];
  let offset = 0;
  let lineStart = 0;
  let blank = true;
  for await (const chunk of body as AsyncIterable<Buffer>) {
    for (let i = 0; i < chunk.length; i++) {
      const byte = chunk[i] as number;
      if (byte === 0x0a) {
        if (!blank) lines.push({ start: lineStart, end: offset + i + 1 });
        lineStart = offset + i + 1;
        blank = true;
      } else if (byte !== 0x0d && byte !== 0x20 && byte !== 0x09) {
        blank = false;
      }
    }
    offset += chunk.length;
  }
  if (!blank) lines.push({ start: lineStart, end: offset });
  return lines;
}

async function parquetRows(container: ContainerClient, blob: string, size: number): Promise<number> {
  const client = container.getBlobClient(blob);
  const file = {
    byteLength: size,
    async slice(start: number, end?: number): Promise<ArrayBuffer> {
      const stop = end ?? size;
      const buffer = await client.downloadToBuffer(start, stop - start);
      return buffer.buffer.slice(buffer.byteOffset, buffer.byteOffset + buffer.byteLength) as ArrayBuffer;
    },
  };
  const metadata = await parquetMetadataAsync(file);
  return Number(metadata.num_rows);
}

async function splitFile(container: ContainerClient, file: PlanItem, kind: 'csv' | 'jsonl' | 'parquet', maxRows: number): Promise<PlanItem[]> {
  try {
    if (kind === 'csv') {
      const ends = await csvRowEnds(container, file.blob);
      const headerEnd = ends[0] ?? 0;
      const rowEnds = ends.slice(1);
      return rowRanges(rowEnds.length, maxRows).map((r) => ({
        ...file,
        kind,
        rows: r,
        headerEnd,
        bytes: { start: r.start === 0 ? headerEnd : (rowEnds[r.start - 1] as number), end: rowEnds[r.end - 1] as number },
      }));
    }
    if (kind === 'jsonl') {
      const lines = await jsonlLineEnds(container, file.blob);
      return rowRanges(lines.length, maxRows).map((r) => ({
        ...file,
        kind,
        rows: r,
        bytes: { start: (lines[r.start] as { start: number }).start, end: (lines[r.end - 1] as { end: number }).end },
      }));
    }
    const rows = await parquetRows(container, file.blob, file.size);
    return rowRanges(rows, maxRows).map((r) => ({ ...file, kind, rows: r }));
  } catch (err) {
    if (err instanceof BatchError) throw err;
    throw new BatchError('input_not_found', `Could not read ${file.name} to split it into row ranges: ${(err as Error).message}`, {
      cause: err,
      retryable: false,
    });
  }
}
