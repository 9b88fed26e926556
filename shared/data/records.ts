/**
 * What the app can score and what a record is. The planner (cutting tabular files into row ranges)
 * and the readers (feeding rows to a model) both ask this module and nothing else, so a file is the
 * same rows, with the same row numbers and the same problems, whether it is split or not.
 *
 * - A file's format comes from its extension alone ({@link fileFormat}).
 * - A CSV record is what csv-parse returns for {@link CSV_OPTIONS}: the first record is the header;
 *   blank lines are skipped; lines end with `\n`, `\r\n` or a lone `\r` (so `\r\r\n` is a line end
 *   and a blank line); a UTF-8 BOM opens the file or is part of the text; quoted fields may hold
 *   line ends. A record whose field count differs from the header's fails the file it is read in.
 * - A JSON Lines record is a line holding something other than spaces and tabs; lines end with
 *   `\n`, `\r\n` or a lone `\r` (JSON text cannot hold a raw CR or LF, so this never cuts one);
 *   a UTF-8 BOM at the very start of the file is dropped.
 * - Rows are numbered from 0 in file order, header excluded, and every reason names a row by that
 *   number (the `row` column of the predictions), never by its place in a range.
 */
import { isAscii } from 'node:buffer';
import { posix } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { CsvError, type Options as CsvOptions, parse as parseCsvStream } from 'csv-parse';
import { parse as parseCsv } from 'csv-parse/sync';

/** Tabular formats: their rows feed a model's inputs by column name. */
export type TabularFormat = 'csv' | 'jsonl' | 'parquet';
/** Image formats: each file is one row of a 4-D input. */
export type ImageFormat = 'png' | 'jpeg';
/** How a file is read, or why it cannot be. */
export type FileFormat = { tabular: TabularFormat } | { image: ImageFormat } | { unsupported: string };

/** Every extension the app reads (lower case, with the dot); the one list of them. */
const FORMATS: Readonly<Record<string, { tabular: TabularFormat } | { image: ImageFormat }>> = {
  '.csv': { tabular: 'csv' },
  '.jsonl': { tabular: 'jsonl' },
  '.ndjson': { tabular: 'jsonl' },
  '.parquet': { tabular: 'parquet' },
  '.png': { image: 'png' },
  '.jpg': { image: 'jpeg' },
  '.jpeg': { image: 'jpeg' },
};

const SUPPORTED = Object.keys(FORMATS).join(', ');

/**
 * How a file is read, from its name's extension, case-insensitively (`a/B.CSV` is CSV). A name
 * without an extension (`README`, a dotfile such as `.csv`, `data.`) is unsupported. The reason of
 * an unsupported file lists the supported extensions, e.g. `unsupported file type .txt (supported:
 * .csv, .jsonl, .ndjson, .parquet, .png, .jpg, .jpeg)`.
 */
export function fileFormat(name: string): FileFormat {
  const ext = posix.extname(name).toLowerCase();
  const known = Object.hasOwn(FORMATS, ext) ? FORMATS[ext] : undefined;
  if (known) return known;
  return { unsupported: ext === '' || ext === '.' ? `unsupported file type (the file has no extension; supported: ${SUPPORTED})` : `unsupported file type ${ext} (supported: ${SUPPORTED})` };
}

/**
 * The csv-parse options that define a CSV record, for the planner's scan and the reader alike.
 * Field counts are relaxed here so that only the reader judges them (by absolute row): the scan
 * then fails exactly on what makes the reader fail at the same place whatever the ranges.
 */
export const CSV_OPTIONS: Readonly<CsvOptions> = Object.freeze({
  bom: true,
  skip_empty_lines: true,
  record_delimiter: ['\r\n', '\n', '\r'],
  relax_column_count: true,
});

/** A file whose records cannot be told apart (a CSV quote never closed, say): its parser's message. */
export class RecordError extends Error {}

/**
 * Streams a CSV file through csv-parse and calls `onRecord` with the byte offset just after each
 * record's line end (a BOM counted), the header's first. Chunks may split the file anywhere.
 * Throws {@link RecordError} for a file csv-parse cannot parse; the source's errors as they are.
 */
export async function scanCsv(source: AsyncIterable<Uint8Array>, onRecord: (end: number) => void): Promise<void> {
  const parser = parseCsvStream({
    ...CSV_OPTIONS,
    // `context.bytes` is `info.bytes`; returning null drops the record rather than queueing it.
    on_record: (_record, context) => {
      onRecord(context.bytes);
      return null;
    },
  });
  // Nothing is pushed downstream, but the readable side must flow for the parser to end.
  parser.resume();
  try {
    await pipeline(source, parser);
  } catch (err) {
    if (err instanceof CsvError) throw new RecordError(err.message);
    throw err;
  }
}

const LF = 0x0a;
const CR = 0x0d;
const SPACE = 0x20;
const TAB = 0x09;
const BOM = [0xef, 0xbb, 0xbf] as const;

/** Receives a JSON Lines record: its bytes [start, contentEnd), then its line end up to `end`. */
export type JsonlRecordSink = (start: number, contentEnd: number, end: number) => void;

/**
 * Finds JSON Lines records in bytes pushed in chunks of any size (a `\r\n` may straddle two).
 * Offsets count from the first byte pushed. With `fileStart`, those bytes begin the file and a BOM
 * there is skipped; otherwise a BOM is just text.
 */
export class JsonlScanner {
  readonly #onRecord: JsonlRecordSink;
  /** The first bytes, held until there are enough to tell whether they are a BOM. */
  #head: Buffer[] | undefined;
  #offset = 0;
  #lineStart = 0;
  #blank = true;
  /** Where a `\r` ended the last chunk: its line's end depends on the next byte. */
  #crAt = -1;

  constructor(onRecord: JsonlRecordSink, options: { fileStart?: boolean } = {}) {
    this.#onRecord = onRecord;
    this.#head = options.fileStart === false ? undefined : [];
  }

  push(chunk: Uint8Array): void {
    if (!this.#head) {
      this.#scan(chunk);
      return;
    }
    this.#head.push(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
    if (this.#head.reduce((n, b) => n + b.length, 0) >= BOM.length) this.#flushHead();
  }

  /** The input is over: the last line, if it has no line end, is a record too. */
  end(): void {
    if (this.#head) this.#flushHead();
    if (this.#crAt >= 0) this.#line(this.#crAt, this.#offset);
    else if (this.#lineStart < this.#offset) this.#line(this.#offset, this.#offset);
    this.#crAt = -1;
  }

  #flushHead(): void {
    const head = Buffer.concat(this.#head ?? []);
    this.#head = undefined;
    if (head.length >= BOM.length && BOM.every((b, i) => head[i] === b)) {
      this.#offset = this.#lineStart = BOM.length;
      this.#scan(head.subarray(BOM.length));
    } else {
      this.#scan(head);
    }
  }

  #scan(chunk: Uint8Array): void {
    const base = this.#offset;
    const length = chunk.length;
    let i = 0;
    if (this.#crAt >= 0 && length > 0) {
      if (chunk[0] === LF) {
        this.#line(this.#crAt, base + 1);
        i = 1;
      } else {
        this.#line(this.#crAt, base);
      }
      this.#crAt = -1;
    }
    // Line ends are found with indexOf (native, fast); -2 means not looked for yet, -1 none left.
    let nextLf = -2;
    let nextCr = -2;
    while (i < length) {
      if (nextLf !== -1 && nextLf < i) nextLf = chunk.indexOf(LF, i);
      if (nextCr !== -1 && nextCr < i) nextCr = chunk.indexOf(CR, i);
      const stop = nextLf === -1 ? nextCr : nextCr === -1 ? nextLf : Math.min(nextLf, nextCr);
      const to = stop === -1 ? length : stop;
      // Most lines stop being blank at their first byte, so this loop is short.
      for (let k = i; this.#blank && k < to; k++) {
        const byte = chunk[k];
        if (byte !== SPACE && byte !== TAB) this.#blank = false;
      }
      if (stop === -1) break;
      if (chunk[stop] === LF) {
        this.#line(base + stop, base + stop + 1);
        i = stop + 1;
      } else if (stop + 1 < length) {
        const end = chunk[stop + 1] === LF ? stop + 2 : stop + 1;
        this.#line(base + stop, base + end);
        i = end;
      } else {
        this.#crAt = base + stop;
        i = length;
      }
    }
    this.#offset = base + length;
  }

  #line(contentEnd: number, end: number): void {
    if (!this.#blank) this.#onRecord(this.#lineStart, contentEnd, end);
    this.#lineStart = end;
    this.#blank = true;
  }
}

/** Streams a JSON Lines file (which starts at the source's first byte) through a {@link JsonlScanner}. */
export async function scanJsonl(source: AsyncIterable<Uint8Array>, onRecord: JsonlRecordSink): Promise<void> {
  const scanner = new JsonlScanner(onRecord);
  for await (const chunk of source) scanner.push(chunk);
  scanner.end();
}

/** Rows [start, end) of a file, 0-based, header excluded. */
export interface RowRange {
  start: number;
  end: number;
}

/** How a CSV or JSON Lines file is cut into ranges of records. */
export interface RecordCut {
  /** Records in the file (CSV: header excluded). */
  records: number;
  /** CSV: where the header's line ends (after any BOM and blank lines before it); the first range starts there. */
  headerEnd: number | undefined;
  /**
   * Consecutive ranges of at most `maxRows` records each: rows, and bytes [start, end) from the
   * end of the previous range's last record (JSON Lines: the file's first byte for the first
   * range, so a range of row 0 begins the file) to the end of its own last record's line end.
   */
  ranges: { rows: RowRange; bytes: RowRange }[];
}

/**
 * Scans a CSV or JSON Lines file once and cuts it into ranges of at most `maxRows` records
 * (a positive integer). Memory stays at one number per range however large the file. Throws
 * {@link RecordError} for a CSV file csv-parse cannot parse; the source's errors as they are.
 */
export async function cutRecords(format: 'csv' | 'jsonl', source: AsyncIterable<Uint8Array>, maxRows: number): Promise<RecordCut> {
  if (!Number.isInteger(maxRows) || maxRows < 1) throw new RangeError('maxRows must be a positive integer');
  const ends: number[] = [];
  let records = 0;
  let last = 0;
  let headerEnd: number | undefined;
  const record = (end: number): void => {
    records++;
    last = end;
    if (records % maxRows === 0) ends.push(end);
  };
  if (format === 'csv') {
    await scanCsv(source, (end) => {
      if (headerEnd === undefined) headerEnd = end;
      else record(end);
    });
  } else {
    await scanJsonl(source, (_start, _contentEnd, end) => record(end));
  }
  if (records % maxRows !== 0) ends.push(last);
  const ranges = ends.map((end, k) => ({
    rows: { start: k * maxRows, end: Math.min((k + 1) * maxRows, records) },
    bytes: { start: k === 0 ? (headerEnd ?? 0) : (ends[k - 1] as number), end },
  }));
  return { records, headerEnd, ranges };
}

/** A tabular item's rows. */
export interface TabularData {
  /** Column names in file order (CSV header, Parquet schema, JSON Lines keys as first seen). */
  columns: string[];
  records: Record<string, unknown>[];
}

/**
 * Why a header (or a Parquet schema: `where`) cannot be a file's schema, or undefined: a column
 * name given twice. Results would depend on which of the two a reader takes (pandas renames the
 * later ones `x.1`, JSON.parse keeps the last), so the file is refused rather than guessed at.
 * Names are compared exactly, as they key the records.
 */
export function duplicateColumnReason(header: readonly string[], where = 'the header'): string | undefined {
  const first = new Map<string, number>();
  for (let c = 0; c < header.length; c++) {
    const name = header[c] as string;
    const seen = first.get(name);
    if (seen !== undefined) return `${where} names column ${JSON.stringify(name)} twice (fields ${seen + 1} and ${c + 1}); every column name must be unique`;
    first.set(name, c);
  }
  return undefined;
}

/**
 * Parses CSV with its header into records keyed by column name; every value stays a string
 * (conversion happens per model input). `firstRow` is the row number of the first record (a
 * range's start). Throws for a file csv-parse cannot parse (its message), for a header naming a
 * column twice ({@link duplicateColumnReason}), and for a record whose field count differs from
 * the header's: `row 7 has 5 fields; the header has 6`.
 */
export function readCsv(input: string | Uint8Array, options: { firstRow?: number } = {}): TabularData {
  const firstRow = options.firstRow ?? 0;
  const rows = parseCsv(input, CSV_OPTIONS);
  const header = rows[0];
  if (!header) return { columns: [], records: [] };
  const duplicate = duplicateColumnReason(header);
  if (duplicate) throw new Error(duplicate);
  const records = new Array<Record<string, unknown>>(rows.length - 1);
  for (let r = 1; r < rows.length; r++) {
    const fields = rows[r] as string[];
    if (fields.length !== header.length) throw new Error(`row ${firstRow + r - 1} has ${plural(fields.length, 'field')}; the header has ${header.length}`);
    const record: Record<string, unknown> = {};
    for (let c = 0; c < header.length; c++) record[header[c] as string] = fields[c];
    records[r - 1] = record;
  }
  return { columns: header, records };
}

/**
 * Parses JSON Lines into records, one JSON object per record; `columns` are every key of any
 * record, as first seen. Each record names its own columns: a key a record lacks is that record's
 * missing value (the reader judges it per row, so a range gives the same reasons as its whole
 * file). A key repeated within one object follows JSON.parse: the last one wins. `firstRow` is the
 * row number of the first record; bytes of row 0 begin the file, so only then is a leading BOM
 * dropped. Throws for a record that is not JSON (`row 3 is not valid JSON (…)`) or not an object (`row 3 is not a
 * JSON object`).
 */
export function readJsonl(input: string | Uint8Array, options: { firstRow?: number } = {}): TabularData {
  const firstRow = options.firstRow ?? 0;
  const bytes = typeof input === 'string' ? Buffer.from(input) : Buffer.from(input.buffer, input.byteOffset, input.byteLength);
  const records: Record<string, unknown>[] = [];
  const columns = new Set<string>();
  // ASCII text (the usual case) has a character per byte: records are then slices of one decoded
  // string, which costs far less than decoding each record on its own.
  const text = isAscii(bytes) ? bytes.toString('latin1') : undefined;
  const scanner = new JsonlScanner(
    (start, contentEnd) => {
      const row = firstRow + records.length;
      let value: unknown;
      try {
        value = JSON.parse(text === undefined ? bytes.toString('utf8', start, contentEnd) : text.slice(start, contentEnd));
      } catch (err) {
        throw new Error(`row ${row} is not valid JSON (${err instanceof Error ? err.message : String(err)})`);
      }
      if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error(`row ${row} is not a JSON object`);
      const record = value as Record<string, unknown>;
      for (const key of Object.keys(record)) columns.add(key);
      records.push(record);
    },
    { fileStart: firstRow === 0 },
  );
  scanner.push(bytes);
  scanner.end();
  return { columns: [...columns], records };
}

/**
 * The header of a CSV file from its first bytes (`complete`: they are the whole file); undefined
 * when the header cannot be told from them (it may go on past them, or csv-parse cannot parse it),
 * the file has none, or it names a column twice (such a file fails as it is read, see {@link readCsv}).
 */
export function csvHeader(head: Uint8Array, complete: boolean): string[] | undefined {
  try {
    let end = 0;
    let header: string[] | undefined;
    parseCsv(Buffer.from(head.buffer, head.byteOffset, head.byteLength), {
      ...CSV_OPTIONS,
      to: 1,
      on_record: (record: string[], context) => {
        end = context.bytes;
        header ??= record;
        return null;
      },
    });
    // A header that runs to the end of bytes cut from a longer file may go on after them.
    if (!header || (!complete && end >= head.byteLength) || duplicateColumnReason(header)) return undefined;
    return header;
  } catch {
    return undefined;
  }
}

/**
 * Why an item without records cannot be scored (a model needs at least one row, as pandas-based
 * scoring does): `the file is empty` (no header either: no bytes, or only blank lines and a BOM),
 * `the file has no rows (only a header)` (CSV), `the file has no rows` (Parquet).
 */
export function noRowsReason(format: TabularFormat, columns: readonly string[]): string {
  if (format === 'parquet') return 'the file has no rows';
  return format === 'csv' && columns.length > 0 ? 'the file has no rows (only a header)' : 'the file is empty';
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}
