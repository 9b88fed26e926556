/**
 * Reading the rows of a tabular item (CSV with a header, JSON Lines, Parquet) as records keyed by
 * column name, in file order. Errors are thrown with messages fit for the item's failure reason.
 */
import { readFile } from 'node:fs/promises';
import { extname } from 'node:path';
import { parse } from 'csv-parse/sync';
import { type AsyncBuffer, asyncBufferFromFile, parquetMetadataAsync, parquetReadObjects, parquetSchema } from 'hyparquet';
import type { ScoringItem } from './types.js';

/** The tabular formats the built-in runner reads. */
export type TabularKind = 'csv' | 'jsonl' | 'parquet';
/** The image formats the built-in runner decodes. */
export type ImageKind = 'png' | 'jpeg';

/** Listed in the failure reason of an unsupported file, so users see what would have worked. */
export const SUPPORTED_EXTENSIONS = ['.csv', '.jsonl', '.parquet', '.png', '.jpg', '.jpeg'] as const;

/** How the built-in runner reads a file, from its extension (case-insensitive). */
export function fileKind(path: string): { tabular: TabularKind } | { image: ImageKind } | { unsupported: string } {
  const ext = extname(path).toLowerCase();
  switch (ext) {
    case '.csv':
      return { tabular: 'csv' };
    case '.jsonl':
      return { tabular: 'jsonl' };
    case '.parquet':
      return { tabular: 'parquet' };
    case '.png':
      return { image: 'png' };
    case '.jpg':
    case '.jpeg':
      return { image: 'jpeg' };
    default:
      return { unsupported: ext === '' ? 'unsupported file type (the file has no extension)' : `unsupported file type ${ext}` };
  }
}

/** A tabular item's rows. */
export interface TabularData {
  /** Column names in file order (CSV header, Parquet schema, JSONL keys as first seen). */
  columns: string[];
  records: Record<string, unknown>[];
}

/**
 * Reads an item's rows, from `bytes` when its content is already in memory, else from its file.
 * Parquet honours `item.rows` (a range of the whole file); CSV and JSONL ranges arrive already cut
 * on their own. `wanted` limits the Parquet columns read when all of them exist (other formats
 * must be parsed whole anyway).
 */
export async function readTabular(item: ScoringItem, kind: TabularKind, options: { wanted?: readonly string[]; bytes?: Buffer | undefined } = {}): Promise<TabularData> {
  const { wanted, bytes } = options;
  switch (kind) {
    case 'csv':
      // csv-parse decodes bytes itself; handing it the Buffer saves decoding the file twice.
      return readCsv(bytes ?? (await readFile(item.localPath)));
    case 'jsonl':
      return readJsonl((bytes ?? (await readFile(item.localPath))).toString('utf8'));
    case 'parquet':
      return readParquet(item, wanted, bytes);
  }
}

/** Parses CSV text with a header row; every value stays a string (conversion happens per model input). */
export function readCsv(text: string | Buffer): TabularData {
  let columns: string[] = [];
  const records = parse<Record<string, string>>(text, {
    bom: true,
    skip_empty_lines: true,
    columns: (header: string[]) => {
      columns = header;
      return header;
    },
  });
  return { columns, records };
}

/** Parses JSON Lines (one object per line; blank lines skipped), naming the first bad line. */
export function readJsonl(text: string): TabularData {
  const records: Record<string, unknown>[] = [];
  const columns = new Set<string>();
  const lines = text.split('\n');
  lines.forEach((raw, i) => {
    const line = raw.trim();
    if (line === '') return;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch (err) {
      throw new Error(`line ${i + 1} is not valid JSON (${err instanceof Error ? err.message : String(err)})`);
    }
    if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error(`line ${i + 1} is not a JSON object`);
    const record = value as Record<string, unknown>;
    for (const key of Object.keys(record)) columns.add(key);
    records.push(record);
  });
  return { columns: [...columns], records };
}

async function readParquet(item: ScoringItem, wanted: readonly string[] | undefined, bytes: Buffer | undefined): Promise<TabularData> {
  // A copy into its own ArrayBuffer: the bytes may be a view of a larger (or shared) one.
  const file: AsyncBuffer = bytes ? new Uint8Array(bytes).buffer : await asyncBufferFromFile(item.localPath);
  const metadata = await parquetMetadataAsync(file);
  const columns = parquetSchema(metadata).children.map((c) => c.element.name);
  const subset = wanted && wanted.every((w) => columns.includes(w)) ? [...wanted] : undefined;
  const total = Number(metadata.num_rows);
  const rowStart = Math.max(0, Math.min(item.rows?.start ?? 0, total));
  const rowEnd = Math.max(rowStart, Math.min(item.rows?.end ?? total, total));
  if (rowEnd === rowStart) return { columns: subset ?? columns, records: [] };
  const records = await parquetReadObjects({ file, metadata, columns: subset, rowStart, rowEnd });
  return { columns: subset ?? columns, records };
}
