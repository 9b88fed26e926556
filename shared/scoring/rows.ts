/**
 * Turning what a scorer returns into prediction rows: value formatting, the CSV text, and the
 * accounting of which items succeeded or failed. Pure functions, so the same input always gives
 * byte-identical output.
 */
import { basename } from 'node:path';
import { isRecord, proposeColumns, valuesByName } from './columns.js';
import type { FailedItem, ScoringItem } from './types.js';

/** A float32 with up to 7 significant digits: enough to identify it, and stable across runs. */
export function formatFloat32(x: number): string {
  if (!Number.isFinite(x)) return String(x);
  return String(Number(x.toPrecision(7)));
}

/** A float32 as the number {@link formatFloat32} prints, for JSON arrays. */
export function roundFloat32(x: number): number {
  return Number.isFinite(x) ? Number(x.toPrecision(7)) : x;
}

function jsonReplacer(_key: string, value: unknown): unknown {
  if (typeof value === 'bigint') return Number.isSafeInteger(Number(value)) ? Number(value) : value.toString();
  if (ArrayBuffer.isView(value) && !(value instanceof DataView)) return Array.from(value as unknown as ArrayLike<number | bigint>);
  return value;
}

/** JSON that also accepts bigints and typed arrays (both appear in model outputs and Parquet data). */
export function toJson(value: unknown): string {
  return JSON.stringify(value, jsonReplacer) ?? '';
}

/** One CSV cell: strings as they are, numbers as `String(n)`, empty for null, JSON for structures. */
export function formatValue(value: unknown): string {
  switch (typeof value) {
    case 'string':
      return value;
    case 'number':
    case 'bigint':
    case 'boolean':
      return String(value);
    case 'undefined':
      return '';
    case 'object':
      if (value === null) return '';
      if (value instanceof Date) return Number.isNaN(value.getTime()) ? '' : value.toISOString();
      return toJson(value);
    default:
      // Functions and symbols have no data to show; their name beats an empty cell.
      return String(value);
  }
}

const NEEDS_QUOTES = /[",\n\r]/;

/** One RFC 4180 cell: quoted when it holds a comma, quote, `\n` or `\r`. */
export function csvCell(value: string): string {
  return NEEDS_QUOTES.test(value) ? `"${value.replaceAll('"', '""')}"` : value;
}

/**
 * RFC 4180 CSV without a header, `\n` line endings; empty text for no rows. Cells holding a comma,
 * quote, `\n` or `\r` are quoted. This is the hot path of every mini-batch (a million rows cost
 * csv-stringify ~0.7 s); a unit test holds it to csv-stringify's output.
 */
export function toCsv(rows: readonly (readonly string[])[]): string {
  return rows.map((row) => `${row.map(csvCell).join(',')}\n`).join('');
}

/**
 * The format of a predictions file, from its name (`output_file_name`): `.jsonl` or `.ndjson` is
 * JSON Lines, one object per prediction with the job's columns as named fields; anything else is
 * CSV without a header (Azure ML's append_row), one line per prediction.
 */
export type OutputFormat = 'csv' | 'jsonl';

export function outputFormat(fileName: string): OutputFormat {
  return /\.(jsonl|ndjson)$/i.test(fileName) ? 'jsonl' : 'csv';
}

/** The Content-Type a predictions file of the format is stored with. */
export function outputContentType(format: OutputFormat): string {
  return format === 'jsonl' ? 'application/x-ndjson' : 'text/csv; charset=utf-8';
}

/** Where one column's value of row `r` comes from (undefined: the column has no value there). */
export type CellSource = ((r: number) => unknown) | undefined;

/**
 * Writes prediction rows in a format, each value under its column's name: the caller gives one
 * source per column of `columns`, looked up by name (never a value's place in some other list).
 * CSV cells are {@link formatValue} quoted as RFC 4180 wants; JSON Lines values are JSON
 * ({@link toJson}: bigints and typed arrays included; a missing value, NaN or ±Infinity is null).
 */
export class RowEncoder {
  readonly format: OutputFormat;
  readonly columns: readonly string[];
  /** JSON Lines: `{"a":`, `,"b":`, … per column. */
  readonly #keys: string[];
  /** CSV cells of strings seen before (class labels and file names repeat on every row). */
  readonly #cells = new Map<string, string>();

  constructor(format: OutputFormat, columns: readonly string[]) {
    this.format = format;
    this.columns = [...columns];
    this.#keys = columns.map((c, i) => `${i === 0 ? '{' : ','}${JSON.stringify(c)}:`);
  }

  /** The text of rows [0, count), `sources[k]` giving column k's values. */
  rows(sources: readonly CellSource[], count: number): string {
    if (sources.length !== this.columns.length) throw new Error(`${sources.length} value sources for ${this.columns.length} columns`);
    const lines = new Array<string>(count);
    for (let r = 0; r < count; r++) lines[r] = this.row(sources, r);
    return lines.join('');
  }

  /** One row's line (with its line end). */
  row(sources: readonly CellSource[], r: number): string {
    let line = '';
    if (this.format === 'jsonl') {
      for (let k = 0; k < sources.length; k++) {
        const value = sources[k]?.(r);
        line += `${this.#keys[k] as string}${value === undefined ? 'null' : toJson(value)}`;
      }
      return `${line === '' ? '{' : line}}\n`;
    }
    for (let k = 0; k < sources.length; k++) {
      const value = sources[k]?.(r);
      line += k === 0 ? this.#cell(value) : `,${this.#cell(value)}`;
    }
    return `${line}\n`;
  }

  /** The line of one row given as values in column order. */
  values(values: readonly unknown[]): string {
    return this.row(
      values.map((v) => () => v),
      0,
    );
  }

  /** A CSV header line of the columns (`csv_header`); JSON Lines names its fields in every line. */
  header(): string {
    return this.format === 'csv' ? toCsv([this.columns]) : '';
  }

  #cell(value: unknown): string {
    if (typeof value !== 'string') return csvCell(formatValue(value));
    let cell = this.#cells.get(value);
    if (cell === undefined) {
      cell = csvCell(value);
      if (this.#cells.size < 10_000) this.#cells.set(value, cell);
    }
    return cell;
  }
}

/**
 * The header line a predictions file starts with: the CSV header of its columns with `csv_header:
 * true` (once the columns are known), else none (''; JSON Lines names its fields on every line).
 * The one rule for the file finalize writes and for where a rerun finds its parent's rows in it.
 */
export function predictionsHeader(settings: { output_file_name: string; csv_header?: boolean | undefined }, columns: readonly string[] | undefined): string {
  if (settings.csv_header !== true || !columns) return '';
  return new RowEncoder(outputFormat(settings.output_file_name), columns).header();
}

/** Prediction rows of a mini-batch in the job's output format, with the item accounting that goes with them. */
export interface EncodedRows {
  /** The rows' text (CSV or JSON Lines, see {@link OutputFormat}). */
  text: string;
  columns: string[];
  succeeded: number;
  failed: FailedItem[];
  /**
   * Bytes of each item's rows in `text`, in item order (0 for an item without rows), when every
   * item's rows are together and in item order; what a rerun needs to reuse the rows of single
   * items. Undefined when the rows cannot be told apart by item.
   */
  itemBytes?: number[] | undefined;
}

/** Prediction rows of a mini-batch with the item accounting that goes with them. */
export interface RowsResult {
  /** Each row's values in `columns` order, as the results held them (formatted when written). */
  rows: unknown[][];
  /** For each row, the index of the item it belongs to, when every result named its item. */
  owners?: number[] | undefined;
  columns: string[];
  succeeded: number;
  failed: FailedItem[];
  /** What the job log should say about these results (a miscount that cannot be attributed). */
  warnings: string[];
}

/**
 * The failure of one item: `file` is its name, `rows` its row range when it is one. Every place
 * that fails an item builds it here, so a file or range is named the same way everywhere.
 */
export function failedItem(item: { name: string; rows?: { start: number; end: number } | undefined }, reason: string): FailedItem {
  return item.rows ? { file: item.name, rows: { start: item.rows.start, end: item.rows.end }, reason } : { file: item.name, reason };
}

/** A failure as one line of text for logs: `big.csv (rows 10-19): reason`, rows inclusive. */
export function describeFailedItem(failed: FailedItem): string {
  const what = failed.file ?? `${plural(failed.count ?? 1, 'item')} not named`;
  return `${what}${failed.rows ? ` (rows ${failed.rows.start}-${failed.rows.end - 1})` : ''}: ${failed.reason}`;
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

/**
 * Which item a result names through `file_name` or `file`, if any. A name identifies an item only
 * when no other item of the mini-batch has it: the row ranges of one file share its name (and
 * base name), so only their local paths tell them apart.
 */
function attributor(items: readonly ScoringItem[]): (result: unknown) => number | undefined {
  const exact = new Map<string, number | null>();
  const byBase = new Map<string, number | null>();
  const claim = (map: Map<string, number | null>, key: string, i: number): void => {
    map.set(key, map.has(key) && map.get(key) !== i ? null : i);
  };
  items.forEach((item, i) => {
    claim(exact, item.name, i);
    claim(exact, item.localPath, i);
    // Scripts often report the base name; it identifies an item only when no other item shares it.
    for (const base of new Set([basename(item.name), basename(item.localPath)])) claim(byBase, base, i);
  });
  return (result) => {
    if (!isRecord(result)) return undefined;
    const named = result['file_name'] ?? result['file'];
    if (typeof named !== 'string') return undefined;
    const found = exact.has(named) ? exact.get(named) : byBase.get(basename(named));
    return found ?? undefined;
  };
}

/**
 * Accounts for what a script's `run()` returned for a mini-batch, as Azure ML does: each element is
 * one succeeded item. When every element names its item (`file_name` or `file`), items nobody
 * named are the failed ones; otherwise a shortfall is one line for the missing count, and a surplus
 * (more elements than items, none naming its item) is warned about: it cannot be told which items
 * they belong to. Rows are written by name in the job's `columns` (see columns.ts), never by the
 * position of a value in its object.
 */
export function scriptResultRows(results: readonly unknown[], items: readonly ScoringItem[], columns: readonly string[] = proposeColumns(results).proposed): RowsResult {
  // A result with none of the job's columns would be an empty row: it is not written, and the
  // item it stands for counts as failed (an empty row passed off as a prediction would be wrong).
  const values = results.map((r) => valuesByName(r, columns));
  const unusable = values.map((v) => columns.length > 0 && v.every((cell) => cell === undefined));
  const rows = values.filter((_, k) => !unusable[k]);
  const noColumns = `run() returned a result with none of the job's columns (${columns.join(', ')})`;
  const failed: FailedItem[] = [];
  const warnings: string[] = [];
  let succeeded: number;

  const attribute = attributor(items);
  const owners = results.map(attribute);
  let rowOwners: number[] | undefined;
  if (results.length > 0 && owners.every((o) => o !== undefined)) {
    rowOwners = owners.filter((o, k): o is number => o !== undefined && !unusable[k]);
    const named = new Set(rowOwners);
    const emptyOnly = new Set(owners.filter((_, k) => unusable[k]));
    succeeded = named.size;
    items.forEach((item, i) => {
      if (!named.has(i)) failed.push(failedItem(item, emptyOnly.has(i) ? `${noColumns} for this file` : 'run() returned no result for this file'));
    });
  } else if (results.length === 0) {
    // Nothing came back, so every item is known to have failed.
    succeeded = 0;
    for (const item of items) failed.push(failedItem(item, 'run() returned no result for this file'));
  } else {
    const usable = rows.length;
    const dropped = results.length - usable;
    succeeded = Math.min(usable, items.length);
    const missing = items.length - usable;
    if (missing > 0) {
      const reason = `run() returned ${plural(results.length, 'result')} for ${plural(items.length, 'item')}${dropped > 0 ? `, ${dropped} of them with none of the job's columns (${columns.join(', ')})` : ''}`;
      failed.push({ file: null, reason, count: missing });
    }
    if (usable > items.length) {
      warnings.push(
        `run() returned ${plural(usable, 'result')} for ${plural(items.length, 'item')} without naming each result's file (file_name): all ${plural(usable, 'row')} are written, and ${plural(items.length, 'item')} counted as succeeded`,
      );
    }
  }
  return { rows, owners: rowOwners, columns: [...columns], succeeded, failed, warnings };
}

/**
 * A script's rows in the job's format, with each item's share of the bytes when the rows of every
 * item are together and in item order (see {@link EncodedRows.itemBytes}).
 */
export function encodeScriptRows(encoder: RowEncoder, result: RowsResult, items: number): Pick<EncodedRows, 'text' | 'itemBytes'> {
  const lines = result.rows.map((values) => encoder.values(values));
  const owners = result.owners;
  let itemBytes: number[] | undefined;
  // No rows at all is every item's share told apart too: none.
  if (lines.length === 0) itemBytes = new Array<number>(items).fill(0);
  else if (owners && owners.every((o, k) => k === 0 || o >= (owners[k - 1] as number))) {
    itemBytes = new Array<number>(items).fill(0);
    lines.forEach((line, k) => {
      const owner = owners[k] as number;
      itemBytes![owner] = (itemBytes![owner] ?? 0) + Buffer.byteLength(line);
    });
  }
  return { text: lines.join(''), itemBytes };
}
