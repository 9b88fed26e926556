/**
 * Reading the rows of a tabular item (CSV with a header, JSON Lines, Parquet) as records keyed by
 * column name, in file order. What a record is, and the wording of a bad one's reason, is decided
 * in shared/data/records.ts; this adds where the bytes come from and Parquet. Errors are thrown
 * with messages fit for the item's failure reason.
 */
import { readFile } from 'node:fs/promises';
import { type AsyncBuffer, asyncBufferFromFile, parquetMetadataAsync, parquetReadObjects, parquetSchema } from 'hyparquet';
import { type TabularData, type TabularFormat, csvHeader, duplicateColumnReason, readCsv, readJsonl } from '../data/records.js';
import type { ScoringItem } from './types.js';

export type { TabularData } from '../data/records.js';

/** The row number (the `row` column) of an item's first row: its range's start, else 0. */
export function firstRowOf(item: ScoringItem): number {
  return item.rowOffset ?? item.rows?.start ?? 0;
}

/**
 * Reads an item's rows, from `bytes` when its content is already in memory, else from its file.
 * Parquet honours `item.rows` (a range of the whole file); CSV and JSONL ranges arrive already cut
 * on their own (CSV after the file's header bytes). `wanted` limits the Parquet columns read when
 * all of them exist (other formats must be parsed whole anyway).
 */
export async function readTabular(item: ScoringItem, format: TabularFormat, options: { wanted?: readonly string[]; bytes?: Buffer | undefined } = {}): Promise<TabularData> {
  const { wanted, bytes } = options;
  switch (format) {
    case 'csv':
      // csv-parse decodes bytes itself; handing it the Buffer saves decoding the file twice.
      return readCsv(bytes ?? (await readFile(item.localPath)), { firstRow: firstRowOf(item) });
    case 'jsonl':
      return readJsonl(bytes ?? (await readFile(item.localPath)), { firstRow: firstRowOf(item) });
    case 'parquet':
      return readParquet(item, wanted, bytes);
  }
}

async function readParquet(item: ScoringItem, wanted: readonly string[] | undefined, bytes: Buffer | undefined): Promise<TabularData> {
  // A copy into its own ArrayBuffer: the bytes may be a view of a larger (or shared) one.
  const file: AsyncBuffer = bytes ? new Uint8Array(bytes).buffer : await asyncBufferFromFile(item.localPath);
  const metadata = await parquetMetadataAsync(file);
  const columns = parquetSchema(metadata).children.map((c) => c.element.name);
  // One rule with CSV: a schema naming a column twice is refused, never read first- or last-wins.
  const duplicate = duplicateColumnReason(columns, 'the schema');
  if (duplicate) throw new Error(duplicate);
  const subset = wanted && wanted.every((w) => columns.includes(w)) ? [...wanted] : undefined;
  const total = Number(metadata.num_rows);
  const rowStart = Math.max(0, Math.min(item.rows?.start ?? 0, total));
  const rowEnd = Math.max(rowStart, Math.min(item.rows?.end ?? total, total));
  if (rowEnd === rowStart) return { columns: subset ?? columns, records: [] };
  const records = await parquetReadObjects({ file, metadata, columns: subset, rowStart, rowEnd });
  return { columns: subset ?? columns, records };
}

/** How much of a CSV or JSON Lines file {@link storedColumns} reads. */
export const COLUMNS_HEAD_BYTES = 64 * 1024;

/**
 * The columns of a tabular file in storage, read without downloading it (bytes [start, end) come
 * from `read`): a CSV file's header from its first {@link COLUMNS_HEAD_BYTES}, a Parquet file's
 * schema from its footer, a JSON Lines file's keys only when the whole file is that small (any row
 * may have keys of its own). Undefined when they cannot be told that way: the file is then checked
 * as it is scored.
 */
export async function storedColumns(format: TabularFormat, size: number, read: (start: number, end: number) => Promise<Uint8Array>): Promise<string[] | undefined> {
  if (size === 0) return undefined;
  switch (format) {
    case 'csv':
      return csvHeader(await read(0, Math.min(size, COLUMNS_HEAD_BYTES)), size <= COLUMNS_HEAD_BYTES);
    case 'jsonl':
      if (size > COLUMNS_HEAD_BYTES) return undefined;
      try {
        return readJsonl(await read(0, size)).columns;
      } catch {
        return undefined;
      }
    case 'parquet': {
      const file: AsyncBuffer = {
        byteLength: size,
        slice: async (start, end) => {
          const bytes = await read(start, end ?? size);
          return new Uint8Array(bytes).buffer;
        },
      };
      try {
        return parquetSchema(await parquetMetadataAsync(file)).children.map((c) => c.element.name);
      } catch {
        return undefined;
      }
    }
  }
}
