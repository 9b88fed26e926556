/**
 * The built-in ONNX runner (MLflow no-code deployments' counterpart): tabular files feed the model
 * input of the same name from each column, images feed a 4-D input, and every row's prediction is
 * the first output's value. Problems with one file fail that file only.
 */
import { readFile } from 'node:fs/promises';
import ort from 'onnxruntime-node';
import { decodeImage, imageLayout, imageRow } from './images.js';
import type { ScoringLogger } from './protocol.js';
import { fileFormat, noRowsReason } from '../data/records.js';
import { type ColumnsDecision, type ColumnsProposal, type RowJoin, builtInColumns, clashingColumns, requiredInputColumns } from './columns.js';
import { type CellSource, type EncodedRows, type OutputFormat, RowEncoder, failedItem, roundFloat32, toJson } from './rows.js';
import { firstRowOf, readTabular } from './tabular.js';
import type { FailedItem, ScoringItem } from './types.js';

export { ONNX_COLUMNS } from './columns.js';

type Dim = number | string;
type Value = number | bigint | string | boolean;

const FEEDABLE = ['float32', 'float64', 'int64', 'int32', 'int16', 'int8', 'uint64', 'uint32', 'uint16', 'uint8', 'string', 'bool'] as const;
type FeedType = (typeof FEEDABLE)[number];

interface InputSpec {
  name: string;
  type: FeedType;
  /** Declared shape; dim 0 is the batch. An undeclared shape is taken as one value per row. */
  dims: readonly Dim[];
}

/** The rows one item contributes to one model input. */
interface InputData {
  /** Row values flattened, row after row; numbers of one value per row sit in a Float64Array. */
  data: Value[] | Float64Array;
  /** The shape of one row (the declared shape without the batch dim, symbolic dims resolved). */
  rowShape: number[];
}

interface Feed {
  /** Index of the item in the mini-batch. */
  index: number;
  rows: number;
  /** `row` of the first row for tabular items; undefined for images (their `row` is empty). */
  rowBase: number | undefined;
  inputs: Map<string, InputData>;
  /** The input rows and their columns, kept when the job joins them to the predictions. */
  table?: { columns: string[]; records: Record<string, unknown>[] } | undefined;
}

/** How the runner writes its rows: the predictions file's format, and what it copies from the input. */
export interface OnnxOutput {
  format: OutputFormat;
  join: RowJoin;
}

/** Thrown for a problem with one item; its message is the item's failure reason. */
class ItemError extends Error {}

/** Rows per session.run when the batch dim is free: bounded so one huge file cannot exhaust memory. */
const MAX_ELEMENTS_PER_RUN = 4_000_000;
const MAX_ROWS_PER_RUN = 65_536;

function describeType(type: FeedType): string {
  if (type === 'string') return 'a string';
  if (type === 'bool') return 'a boolean (true/false/1/0)';
  return type.startsWith('float') ? `a number (the input is ${type})` : `an integer in the ${type} range`;
}

function product(dims: readonly number[]): number {
  return dims.reduce((a, d) => a * d, 1);
}

function shown(value: unknown): string {
  const text = typeof value === 'string' ? JSON.stringify(value) : toJson(value);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

const INT_RANGES: Partial<Record<FeedType, [bigint, bigint]>> = {
  int64: [-(2n ** 63n), 2n ** 63n - 1n],
  uint64: [0n, 2n ** 64n - 1n],
  int32: [-(2n ** 31n), 2n ** 31n - 1n],
  uint32: [0n, 2n ** 32n - 1n],
  int16: [-(2n ** 15n), 2n ** 15n - 1n],
  uint16: [0n, 2n ** 16n - 1n],
  int8: [-128n, 127n],
  uint8: [0n, 255n],
};

/**
 * Whether a cell holds no value: no such key (a JSON Lines row without it), null (JSON, Parquet),
 * text of spaces only (an empty CSV cell), or a NaN number. Such a cell fails its item for every
 * input type but string, whose empty text is a value.
 */
function isMissing(value: unknown): boolean {
  return value === undefined || value === null || (typeof value === 'string' && value.trim() === '') || (typeof value === 'number' && Number.isNaN(value));
}

/**
 * Decimal number text: digits with an optional point and exponent, or inf / infinity in any case.
 * Not what Number() also takes (0x1F, 0b101, 0o7, "1_000"): text like that in a numeric column is
 * an error, never a number the user did not write. `nan` is text for a missing value and fails
 * like an empty cell.
 */
const DECIMAL = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;
const SPECIAL = /^([+-]?)(inf|infinity|nan)$/i;

function parseDecimal(text: string): number | undefined {
  if (DECIMAL.test(text)) return Number(text);
  const special = SPECIAL.exec(text);
  if (!special) return undefined;
  if ((special[2] as string).toLowerCase() === 'nan') return NaN;
  return special[1] === '-' ? -Infinity : Infinity;
}

/**
 * How a file's cells are decoded (see {@link convert}): CSV cells are all text, decoded by the
 * input's type; JSON Lines and Parquet values carry their own type, which must be the input's.
 */
type CellKind = 'text' | 'typed';

/**
 * Converts one cell to the input's element type; undefined when it cannot be. The one decoder of
 * cell values. For numeric inputs a value is a number (JSON, Parquet) or decimal text (CSV only:
 * a JSON string "218" is not a number, however it reads); booleans are not numbers. Boolean
 * inputs take booleans or 0/1, and true/false/1/0 text from CSV. String inputs take any value as
 * its text. A missing value ({@link isMissing}, or text reading as NaN) is never a number: it
 * fails, rather than be fed as NaN or 0 to a model that may not expect one (pandas would read NaN).
 */
function convert(value: unknown, type: FeedType, kind: CellKind): Value | undefined {
  switch (type) {
    case 'float32':
    case 'float64': {
      let n: number | undefined;
      if (typeof value === 'number') n = value;
      else if (typeof value === 'bigint') n = Number(value);
      else if (typeof value === 'string' && kind === 'text') n = parseDecimal(value.trim());
      return n === undefined || Number.isNaN(n) ? undefined : n;
    }
    case 'string':
      if (value === undefined || value === null) return undefined;
      if (typeof value === 'string') return value;
      if (typeof value === 'number' || typeof value === 'bigint' || typeof value === 'boolean') return String(value);
      return toJson(value);
    case 'bool':
      if (typeof value === 'boolean') return value;
      if (typeof value === 'number' || typeof value === 'bigint') return value === 1 || value === 1n ? true : value === 0 || value === 0n ? false : undefined;
      if (typeof value === 'string' && kind === 'text') {
        const text = value.trim().toLowerCase();
        if (text === 'true' || text === '1') return true;
        if (text === 'false' || text === '0') return false;
      }
      return undefined;
    default: {
      let int: bigint | undefined;
      if (typeof value === 'bigint') int = value;
      else if (typeof value === 'number' && Number.isInteger(value)) int = BigInt(value);
      else if (typeof value === 'string' && kind === 'text') {
        const text = value.trim();
        if (/^[+-]?\d+$/.test(text)) int = BigInt(text);
        else {
          // Integer columns with gaps are written as floats ("3.0") by pandas.
          const n = parseDecimal(text);
          if (n !== undefined && Number.isInteger(n)) int = BigInt(n);
        }
      }
      const range = INT_RANGES[type];
      if (int === undefined || !range || int < range[0] || int > range[1]) return undefined;
      return type === 'int64' || type === 'uint64' ? int : Number(int);
    }
  }
}

/** Why a cell could not be converted for an input: `where` names its column and row. */
function cellProblem(value: unknown, input: InputSpec, kind: CellKind, where: string): string {
  const numeric = input.type !== 'string' && input.type !== 'bool';
  const typedString = input.type !== 'string' && typeof value === 'string' && kind === 'typed';
  if (value === undefined) return `${where} has no value (the row has no such key; the model's input ${input.name} is ${input.type})`;
  if (isMissing(value) || (numeric && typeof value === 'string' && kind === 'text' && Number.isNaN(parseDecimal(value.trim())))) {
    const marker = typeof value === 'string' && value.trim() !== '' ? `${shown(value)} stands for a missing value; ` : '';
    return `${where} has no value (${marker}the model's input ${input.name} is ${input.type})`;
  }
  if (typedString) {
    return `${where}: ${shown(value)} is a string, not ${describeType(input.type)}; JSON Lines and Parquet values must have the input's type (write it without quotes)`;
  }
  return `${where}: ${shown(value)} is not ${describeType(input.type)}`;
}

/** Flattens a cell holding several values: an array, a typed array, or JSON array text (CSV only). */
function cellValues(value: unknown, kind: CellKind): unknown[] | undefined {
  if (Array.isArray(value)) return (value as unknown[]).flat(Infinity);
  if (ArrayBuffer.isView(value) && !(value instanceof DataView)) return Array.from(value as unknown as ArrayLike<unknown>);
  if (kind === 'text' && typeof value === 'string' && value.trim().startsWith('[')) {
    try {
      const parsed: unknown = JSON.parse(value);
      return Array.isArray(parsed) ? (parsed as unknown[]).flat(Infinity) : undefined;
    } catch {
      return undefined;
    }
  }
  return undefined;
}

/** Whether a cell may hold several values; plain numbers and text (the usual CSV cell) cannot. */
function mayHoldList(value: unknown, kind: CellKind): boolean {
  if (typeof value === 'string') {
    if (kind === 'typed') return false;
    const c = value.charCodeAt(0);
    return c === 91 /* [ */ || (c <= 32 && value.trimStart().startsWith('['));
  }
  return typeof value === 'object' && value !== null;
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/** The shape of one row given its value count, or an error text. */
function rowShapeFor(dims: readonly Dim[], count: number): number[] | string {
  const rest = dims.slice(1);
  const free = rest.filter((d) => typeof d !== 'number' || d <= 0).length;
  const known = product(rest.filter((d): d is number => typeof d === 'number' && d > 0));
  if (free === 0) return count === known ? (rest as number[]) : `expects ${known} value(s) per row, got ${count}`;
  if (free === 1 && known > 0 && count % known === 0 && count > 0) {
    return rest.map((d) => (typeof d === 'number' && d > 0 ? d : count / known));
  }
  return `has shape [${dims.join(',')}], which cannot be filled from ${count} value(s) per row`;
}

function valuesPerRow(dims: readonly Dim[]): number | undefined {
  const rest = dims.slice(1);
  return rest.every((d) => typeof d === 'number' && d > 0) ? product(rest as number[]) : undefined;
}

/** Half-precision bits to a number (Node 20 has no Float16Array). */
function halfToNumber(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >> 10) & 0x1f;
  const fraction = bits & 0x3ff;
  if (exponent === 0) return sign * 2 ** -14 * (fraction / 1024);
  if (exponent === 0x1f) return fraction ? NaN : sign * Infinity;
  return sign * 2 ** (exponent - 15) * (1 + fraction / 1024);
}

/** Reads value i of an output tensor as a JSON-ready value (written as CSV by formatValue: floats as formatFloat32 prints them). */
function outputReader(tensor: ort.Tensor): { json(i: number): unknown } {
  const data = tensor.data;
  switch (tensor.type) {
    case 'float32': {
      const d = data as Float32Array;
      return { json: (i) => roundFloat32(d[i] ?? NaN) };
    }
    case 'float16': {
      const d = data as Uint16Array;
      return { json: (i) => roundFloat32(halfToNumber(d[i] ?? 0)) };
    }
    case 'bool': {
      const d = data as Uint8Array;
      return { json: (i) => Boolean(d[i]) };
    }
    case 'string': {
      const d = data as string[];
      return { json: (i) => d[i] ?? '' };
    }
    case 'int64':
    case 'uint64': {
      const d = data as BigInt64Array | BigUint64Array;
      return { json: (i) => d[i] };
    }
    case 'float64':
    case 'int32':
    case 'int16':
    case 'int8':
    case 'uint32':
    case 'uint16':
    case 'uint8': {
      const d = data as ArrayLike<number>;
      return { json: (i) => d[i] };
    }
    default:
      throw new Error(`the model's first output has type ${tensor.type}, which the built-in runner cannot write`);
  }
}

/** Element types held as JavaScript numbers (int64 needs bigints, bool and string are not numbers). */
const NUMBER_TYPES: ReadonlySet<FeedType> = new Set<FeedType>(['float32', 'float64', 'int32', 'int16', 'int8', 'uint32', 'uint16', 'uint8']);

type NumberArray = Float32Array | Float64Array | Int32Array | Int16Array | Int8Array | Uint32Array | Uint16Array | Uint8Array;

function numberArray(type: FeedType, length: number): NumberArray {
  switch (type) {
    case 'float32':
      return new Float32Array(length);
    case 'int32':
      return new Int32Array(length);
    case 'int16':
      return new Int16Array(length);
    case 'int8':
      return new Int8Array(length);
    case 'uint32':
      return new Uint32Array(length);
    case 'uint16':
      return new Uint16Array(length);
    case 'uint8':
      return new Uint8Array(length);
    default:
      return new Float64Array(length);
  }
}

function typedArray(type: FeedType, values: Value[]): ort.Tensor.DataType {
  switch (type) {
    case 'int64':
      return BigInt64Array.from(values as bigint[]);
    case 'uint64':
      return BigUint64Array.from(values as bigint[]);
    case 'bool':
      return Uint8Array.from(values as boolean[], (v) => (v ? 1 : 0));
    case 'string':
      return values as string[];
    default: {
      const out = numberArray(type, values.length);
      out.set(values as number[]);
      return out;
    }
  }
}

/** Scores mini-batches with one loaded session; create one per worker. */
export class OnnxRunner {
  readonly #session: ort.InferenceSession;
  readonly #logger: ScoringLogger;
  readonly #inputs: InputSpec[];
  /** Set when the model cannot be fed at all: every item fails with it. */
  readonly #modelProblem: string | undefined;
  readonly #output: string;
  readonly #rows: OnnxOutput;
  /** Whether rows carry input values (join or key_field): the input rows are kept for them. */
  readonly #joins: boolean;

  constructor(session: ort.InferenceSession, logger: ScoringLogger, rows: OnnxOutput = { format: 'csv', join: {} }) {
    this.#session = session;
    this.#logger = logger;
    this.#rows = rows;
    this.#joins = rows.join.join !== undefined || rows.join.keyField !== undefined;
    const problems: string[] = [];
    this.#inputs = [];
    for (const meta of session.inputMetadata) {
      if (!meta.isTensor) {
        problems.push(`input ${meta.name} is not a tensor`);
        continue;
      }
      if (!(FEEDABLE as readonly string[]).includes(meta.type)) {
        problems.push(`input ${meta.name} has type ${meta.type}, which the built-in runner cannot feed`);
        continue;
      }
      this.#inputs.push({ name: meta.name, type: meta.type as FeedType, dims: meta.shape.length === 0 ? ['N'] : meta.shape });
    }
    const output = session.outputNames[0];
    if (output === undefined) problems.push('the model has no outputs');
    this.#output = output ?? '';
    this.#modelProblem = problems.length > 0 ? `the model cannot be used without a scoring script: ${problems.join('; ')}` : undefined;
  }

  /** A one-line description of the model's inputs and output, for the logs. */
  describe(): string {
    const inputs = this.#session.inputMetadata.map((m) => (m.isTensor ? `${m.name} ${m.type} [${m.shape.join(',')}]` : `${m.name} (not a tensor)`));
    return `inputs: ${inputs.join(', ')}; prediction from output ${this.#output}`;
  }

  /**
   * Scores the items; problems with a file become its failure, so this only throws for bugs.
   * `ready(index)`, if given, resolves when an item is here, with its content if it came in memory
   * (otherwise its file is read): each item is read as soon as it arrives rather than after the
   * whole mini-batch has downloaded. With `join: 'all'` the job's columns depend on the input:
   * `columns` decides them (see columns.ts), once the first rows are scored.
   */
  async score(
    items: readonly ScoringItem[],
    options: { ready?: (index: number) => Promise<Buffer | undefined>; columns?: ((proposal: ColumnsProposal) => Promise<ColumnsDecision>) | undefined } = {},
  ): Promise<EncodedRows> {
    const started = performance.now();
    const failures = new Map<number, string>();
    const feeds: Feed[] = [];
    await Promise.all(
      items.map(async (item, index) => {
        try {
          if (this.#modelProblem) throw new ItemError(this.#modelProblem);
          const bytes = await options.ready?.(index);
          feeds.push(await this.#feed(item, index, bytes));
        } catch (err) {
          failures.set(index, err instanceof ItemError ? err.message : `could not read the file: ${err instanceof Error ? err.message : String(err)}`);
        }
      }),
    );
    feeds.sort((a, b) => a.index - b.index);

    const predictions = new Map<number, unknown[]>();
    // Items whose rows have the same shapes can share session runs.
    const groups = new Map<string, Feed[]>();
    for (const feed of feeds) {
      const key = this.#inputs.map((i) => feed.inputs.get(i.name)?.rowShape.join('x') ?? '').join('|');
      groups.set(key, [...(groups.get(key) ?? []), feed]);
    }
    for (const group of groups.values()) {
      try {
        for (const [index, values] of await this.#run(group)) predictions.set(index, values);
      } catch (err) {
        if (group.length > 1) this.#logger.debug(`a shared model run failed (${err instanceof Error ? err.message : String(err)}); scoring its files one by one`);
        // Run each file alone, so one bad file does not fail the others.
        for (const feed of group) {
          try {
            for (const [index, values] of await this.#run([feed])) predictions.set(index, values);
          } catch (e) {
            failures.set(feed.index, `the model failed on this file: ${e instanceof Error ? e.message : String(e)}`);
          }
        }
      }
    }

    const scored = feeds.filter((f) => predictions.has(f.index) && !failures.has(f.index));
    const columns = await this.#columnsFor(scored, options.columns);
    const encoder = new RowEncoder(this.#rows.format, columns);
    // One string per item, joined once: building a million-row file this way keeps garbage low.
    const texts: string[] = [];
    const itemBytes: number[] = [];
    const failed: FailedItem[] = [];
    let succeeded = 0;
    let rows = 0;
    const feedOf = new Map(feeds.map((f) => [f.index, f]));
    items.forEach((item, index) => {
      const reason = failures.get(index);
      const values = predictions.get(index);
      const feed = feedOf.get(index);
      if (reason !== undefined || !values || !feed) {
        failed.push(failedItem(item, reason ?? 'the file was not scored'));
        itemBytes.push(0);
        return;
      }
      succeeded++;
      rows += values.length;
      const text = encoder.rows(
        columns.map((column) => this.#source(column, item, feed, values)),
        values.length,
      );
      texts.push(text);
      itemBytes.push(Buffer.byteLength(text));
    });
    this.#logger.debug(`scored ${rows} row(s) of ${succeeded} file(s) in ${Math.round(performance.now() - started)} ms; ${failed.length} file(s) failed`);
    return { text: texts.join(''), columns, succeeded, failed, itemBytes };
  }

  /**
   * The job's columns for these rows: fixed by the settings, or for `join: 'all'` decided by the job
   * from what the first scored file proposes (its columns), every file's columns being `seen`.
   */
  async #columnsFor(scored: readonly Feed[], decide: ((proposal: ColumnsProposal) => Promise<ColumnsDecision>) | undefined): Promise<string[]> {
    const join = this.#rows.join;
    if (join.join !== 'all') return builtInColumns(join);
    const first = scored[0];
    if (!first) return builtInColumns(join);
    const proposed = builtInColumns(join, first.table?.columns);
    const seen = [...new Set(scored.flatMap((f) => builtInColumns(join, f.table?.columns)))];
    if (!decide) return proposed;
    return (await decide({ proposed, seen })).columns;
  }

  /** Where column `column`'s values of an item's rows come from, by the column's name. */
  #source(column: string, item: ScoringItem, feed: Feed, values: readonly unknown[]): CellSource {
    const { keyField } = this.#rows.join;
    const records = feed.table?.records;
    const fromInput: CellSource = records
      ? (r) => {
          const record = records[r] as Record<string, unknown>;
          return Object.hasOwn(record, column) ? record[column] : undefined;
        }
      : undefined;
    if (column === keyField) return fromInput;
    switch (column) {
      case 'row': {
        const base = feed.rowBase;
        return base === undefined ? undefined : (r) => base + r;
      }
      case 'prediction':
        return (r) => values[r];
      case 'file_name':
        return () => item.name;
      default:
        return fromInput;
    }
  }

  async #feed(item: ScoringItem, index: number, bytes: Buffer | undefined): Promise<Feed> {
    const format = fileFormat(item.name);
    if ('unsupported' in format) throw new ItemError(format.unsupported);
    if ('image' in format) {
      if (this.#joins) throw new ItemError('join and key_field copy columns of tabular input (CSV, JSON Lines, Parquet); an image has none');
      const input = this.#imageInput();
      const image = decodeImage(bytes ?? (await readFile(item.localPath)), format.image);
      const layout = imageLayout(input.dims);
      if (typeof layout === 'string') throw new ItemError(`input ${input.name}: ${layout}`);
      const height = layout.height ?? image.height;
      const width = layout.width ?? image.width;
      const data = imageRow(image, layout, height, width, input.type !== 'uint8');
      const rowShape = layout.layout === 'nchw' ? [layout.channels, height, width] : [height, width, layout.channels];
      return { index, rows: 1, rowBase: undefined, inputs: new Map([[input.name, { data, rowShape }]]) };
    }

    const join = this.#rows.join;
    const required = requiredInputColumns(join);
    const rowBase = firstRowOf(item);
    // Parquet reads only the columns asked for; join: 'all' needs every one of them.
    const wanted = join.join === 'all' ? undefined : [...new Set([...this.#inputs.map((i) => i.name), ...required])];
    const table = await readTabular(item, format.tabular, { wanted, bytes });
    // A model needs rows; an empty file fails as an item, whether or not the job splits files.
    if (table.records.length === 0) throw new ItemError(noRowsReason(format.tabular, table.columns));
    // A JSON Lines row names its own columns, so a key is judged in every row (the first row
    // without it fails the item), whatever rows the item holds: split or not, the same reason.
    const perRow = format.tabular === 'jsonl';
    if (perRow) {
      for (let r = 0; r < table.records.length; r++) {
        const record = table.records[r] as Record<string, unknown>;
        const lacking = required.filter((c) => !Object.hasOwn(record, c));
        if (lacking.length > 0) throw new ItemError(`row ${rowBase + r} has no ${lacking.map((c) => `"${c}"`).join(', ')} (${lacking.includes(join.keyField ?? '') ? 'key_field, ' : ''}join)`);
      }
    }
    const absent = perRow ? [] : required.filter((c) => !table.columns.includes(c));
    if (absent.length > 0) {
      throw new ItemError(
        `${absent.map((c) => `column "${c}"`).join(', ')} ${absent.length === 1 ? 'is' : 'are'} missing (${absent.includes(join.keyField ?? '') ? 'key_field, ' : ''}join): the file's columns are ${table.columns.join(', ') || '(none)'}`,
      );
    }
    if (join.join === 'all') {
      const clash = clashingColumns(join, table.columns);
      if (clash.length > 0) throw new ItemError(`join "all" cannot copy ${clash.map((c) => `column "${c}"`).join(', ')}: the runner writes a column of that name itself (list the columns to copy in join.columns)`);
    }
    const inputs = new Map<string, InputData>();
    const only = this.#inputs.length === 1 ? this.#inputs[0] : undefined;
    const wide = only ? (valuesPerRow(only.dims) ?? 0) : 0;
    const kind: CellKind = format.tabular === 'csv' ? 'text' : 'typed';
    for (const input of this.#inputs) {
      let cells: (record: Record<string, unknown>) => unknown;
      if (perRow) {
        // A row without the input's key is that row's missing value (see #column), unless a
        // single wide input takes all of a row's values, as it takes a file's columns below.
        cells = wide > 1 ? (record) => (Object.hasOwn(record, input.name) ? record[input.name] : Object.keys(record).length === wide ? Object.values(record) : undefined) : (record) => record[input.name];
      } else if (table.columns.includes(input.name)) {
        cells = (record) => record[input.name];
      } else if (wide > 1 && wide === table.columns.length) {
        // A single wide input (e.g. float_input [N,4]) with no column of its name takes every column, in file order.
        cells = (record) => table.columns.map((c) => record[c]);
      } else {
        throw new ItemError(`column "${input.name}" is missing: the model's inputs are ${this.#inputs.map((i) => i.name).join(', ')}; the file's columns are ${table.columns.join(', ') || '(none)'}`);
      }
      inputs.set(input.name, this.#column(input, table.records, cells, { rowBase, kind }));
    }
    return { index, rows: table.records.length, rowBase, inputs, table: this.#joins ? table : undefined };
  }

  #imageInput(): InputSpec {
    const [input, ...others] = this.#inputs;
    if (!input || others.length > 0) {
      throw new ItemError(`images need a model with one 4-D image input; this model has ${this.#inputs.length} inputs (${this.#inputs.map((i) => i.name).join(', ')})`);
    }
    if (!['float32', 'float64', 'uint8'].includes(input.type)) throw new ItemError(`images need a float32, float64 or uint8 input; input ${input.name} is ${input.type}`);
    return input;
  }

  /**
   * One input's values from every record, each decoded by {@link convert}; the first cell it cannot
   * take fails the item, naming its column and row (see {@link cellProblem}).
   */
  #column(input: InputSpec, records: Record<string, unknown>[], cells: (record: Record<string, unknown>) => unknown, options: { rowBase: number; kind: CellKind }): InputData {
    const { rowBase, kind } = options;
    const data: Value[] = new Array<Value>();
    const where = (r: number): string => `column "${input.name}", row ${rowBase + r}`;
    const fail = (value: unknown, r: number): never => {
      throw new ItemError(cellProblem(value, input, kind, where(r)));
    };
    const push = (value: unknown, r: number): void => {
      data.push(convert(value, input.type, kind) ?? fail(value, r));
    };
    if (valuesPerRow(input.dims) === 1) {
      // The common case (one value per row and input) is the hot loop of tabular scoring: no
      // per-row allocations beyond the value itself, and numbers go straight into a typed array.
      const scalar = (r: number): unknown => {
        const cell = cells(records[r] as Record<string, unknown>);
        if (!mayHoldList(cell, kind)) return cell;
        const many = cellValues(cell, kind);
        return many && many.length === 1 ? many[0] : cell;
      };
      const rowShape = input.dims.slice(1).map(() => 1);
      if (NUMBER_TYPES.has(input.type)) {
        const numbers = new Float64Array(records.length);
        for (let r = 0; r < records.length; r++) {
          const value = scalar(r);
          numbers[r] = (convert(value, input.type, kind) ?? fail(value, r)) as number;
        }
        return { data: numbers, rowShape };
      }
      for (let r = 0; r < records.length; r++) push(scalar(r), r);
      return { data, rowShape };
    }
    let rowShape: number[] | undefined;
    for (let r = 0; r < records.length; r++) {
      const cell = cells(records[r] as Record<string, unknown>);
      if (cell === undefined || cell === null) fail(cell, r);
      const raw = cellValues(cell, kind) ?? [cell];
      const shape = rowShapeFor(input.dims, raw.length);
      if (typeof shape === 'string') throw new ItemError(`${where(r)}: the model's input ${input.name} ${shape}`);
      if (rowShape && !sameShape(rowShape, shape)) throw new ItemError(`${where(r)}: has ${raw.length} value(s), unlike the rows before it`);
      rowShape = shape;
      for (const value of raw) push(value, r);
    }
    // Only an item without rows has no shape, and those fail before they get here.
    return { data, rowShape: rowShape ?? input.dims.slice(1).map((d) => (typeof d === 'number' && d > 0 ? d : 1)) };
  }

  /** Runs the model over the feeds' rows, in chunks the declared batch dim allows. */
  async #run(feeds: readonly Feed[]): Promise<Map<number, unknown[]>> {
    const result = new Map<number, unknown[]>(feeds.map((f) => [f.index, []]));
    const total = feeds.reduce((n, f) => n + f.rows, 0);
    if (total === 0) return result;
    const first = feeds[0] as Feed;
    const shapes = this.#inputs.map((i) => first.inputs.get(i.name)?.rowShape ?? []);
    const elementsPerRow = shapes.reduce((n, shape) => n + product(shape), 0);
    const fixedBatch = this.#inputs.map((i) => i.dims[0]).find((d): d is number => typeof d === 'number' && d > 0);
    const chunk = fixedBatch ?? Math.max(1, Math.min(MAX_ROWS_PER_RUN, Math.floor(MAX_ELEMENTS_PER_RUN / Math.max(1, elementsPerRow))));

    // A cursor over (feed, row) in order, so no per-row objects are made.
    let feedAt = 0;
    let rowAt = 0;
    for (let start = 0; start < total; start += chunk) {
      const real = Math.min(chunk, total - start);
      // A fixed batch size is filled up by repeating the last row; those predictions are dropped.
      const size = fixedBatch ?? real;
      const segments: { feed: Feed; from: number; to: number }[] = [];
      for (let left = real; left > 0; ) {
        const feed = feeds[feedAt] as Feed;
        const take = Math.min(left, feed.rows - rowAt);
        if (take > 0) segments.push({ feed, from: rowAt, to: rowAt + take });
        left -= take;
        rowAt += take;
        if (rowAt >= feed.rows) {
          feedAt++;
          rowAt = 0;
        }
      }
      const tensors: Record<string, ort.Tensor> = {};
      this.#inputs.forEach((input, n) => {
        const shape = shapes[n] as number[];
        const perRow = product(shape);
        const datas = segments.map((g) => g.feed.inputs.get(input.name)?.data ?? []);
        const last = segments[segments.length - 1] as (typeof segments)[number];
        const lastData = datas[datas.length - 1] ?? [];
        let tensorData: ort.Tensor.DataType;
        if (NUMBER_TYPES.has(input.type) && datas.every((d) => d instanceof Float64Array)) {
          const out = numberArray(input.type, size * perRow);
          let at = 0;
          segments.forEach(({ from, to }, g) => {
            out.set((datas[g] as Float64Array).subarray(from * perRow, to * perRow), at);
            at += (to - from) * perRow;
          });
          for (let pad = real; pad < size; pad++, at += perRow) out.set((lastData as Float64Array).subarray((last.to - 1) * perRow, last.to * perRow), at);
          tensorData = out;
        } else {
          const values = new Array<Value>(size * perRow);
          let at = 0;
          segments.forEach(({ from, to }, g) => {
            const data = datas[g] as ArrayLike<Value>;
            for (let k = from * perRow; k < to * perRow; k++) values[at++] = data[k] as Value;
          });
          for (let pad = real; pad < size; pad++) for (let k = 0; k < perRow; k++) values[at++] = lastData[(last.to - 1) * perRow + k] as Value;
          tensorData = typedArray(input.type, values);
        }
        tensors[input.name] = new ort.Tensor(input.type, tensorData, [size, ...shape]);
      });
      const outputs = await this.#session.run(tensors, [this.#output], { logSeverityLevel: 4 });
      const tensor = outputs[this.#output];
      if (!tensor) throw new Error(`the model returned no output ${this.#output}`);
      const perRow = tensor.data.length / size;
      if (!Number.isInteger(perRow) || perRow < 1) {
        throw new Error(`output ${this.#output} has ${tensor.data.length} value(s) for a batch of ${size} row(s), so its rows cannot be told apart`);
      }
      const read = outputReader(tensor);
      let i = 0;
      for (const { feed, from, to } of segments) {
        const into = result.get(feed.index) as unknown[];
        for (let r = from; r < to; r++, i++) {
          into.push(perRow === 1 ? read.json(i) : Array.from({ length: perRow }, (_, k) => read.json(i * perRow + k)));
        }
      }
    }
    return result;
  }
}
