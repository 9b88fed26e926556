/**
 * The property behind split: cutting a file at the planner's record boundaries and reading each
 * range as a mini-batch does gives the records, row numbers and problems of reading it whole.
 */
import { Readable } from 'node:stream';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type RecordCut, cutRecords, readCsv, readJsonl } from '../../../shared/data/records.js';

const RUNS = 300;
const END = fc.constantFrom('\n', '\r\n', '\r', '\r\r\n');
/** Text with everything CSV must quote, multi-byte characters and whitespace. */
const TEXT = fc.string({ unit: fc.constantFrom('a', 'b', '1', ' ', '\t', ',', '"', '\n', '\r', 'é', '😀'), maxLength: 6 });

/** A CSV file, the records it holds, and (if one row has a field too many) which row that is. */
interface CsvCase {
  bytes: Buffer;
  records: Record<string, string>[];
  badRow: number | undefined;
}

const csvCase: fc.Arbitrary<CsvCase> = fc.integer({ min: 1, max: 4 }).chain((columns) =>
  fc
    .record({
      bom: fc.boolean(),
      headerEnd: END,
      rows: fc.array(
        fc.record({
          cells: fc.array(fc.record({ text: TEXT, quoted: fc.boolean() }), { minLength: columns, maxLength: columns }),
          blanksBefore: fc.array(END, { maxLength: 2 }),
          end: END,
        }),
        { maxLength: 12 },
      ),
      trailingEnd: fc.boolean(),
      blanksAfter: fc.array(END, { maxLength: 2 }),
      extraFieldAt: fc.option(fc.nat(), { nil: undefined }),
    })
    .map(({ bom, headerEnd, rows, trailingEnd, blanksAfter, extraFieldAt }): CsvCase => {
      const header = Array.from({ length: columns }, (_, c) => `c${c}`);
      // An unquoted empty field alone on its line would be a blank line, which is no record.
      const cell = (text: string, quoted: boolean): string => (quoted || /[",\r\n]/.test(text) || (columns === 1 && text === '') ? `"${text.replaceAll('"', '""')}"` : text);
      const badRow = extraFieldAt === undefined || rows.length === 0 ? undefined : extraFieldAt % rows.length;
      let text = `${bom ? '\uFEFF' : ''}${header.join(',')}${headerEnd}`;
      rows.forEach((row, r) => {
        const cells = row.cells.map((c) => cell(c.text, c.quoted));
        if (r === badRow) cells.push('extra');
        const last = r === rows.length - 1;
        text += `${row.blanksBefore.join('')}${cells.join(',')}${last && !trailingEnd ? '' : row.end}`;
      });
      if (trailingEnd || rows.length === 0) text += blanksAfter.join('');
      const records = rows.map((row) => Object.fromEntries(row.cells.map((c, i) => [header[i] as string, c.text])));
      return { bytes: Buffer.from(text), records, badRow };
    }),
);

/** A JSON Lines file, its records, and the row of the one line that is not a JSON object, if any. */
interface JsonlCase {
  bytes: Buffer;
  records: Record<string, unknown>[];
  badRow: number | undefined;
}

const JSON_TEXT = fc.string({ unit: fc.constantFrom('a', '"', '\\', '\n', '\r', '\u2028', '\uFEFF', 'é', '😀', ' ', ','), maxLength: 6 });
const jsonValue = fc.oneof(JSON_TEXT, fc.integer(), fc.boolean(), fc.constant(null), fc.array(fc.integer(), { maxLength: 3 }));
const PAD = fc.constantFrom('', ' ', '\t', ' \t ');

const jsonlCase: fc.Arbitrary<JsonlCase> = fc
  .record({
    bom: fc.boolean(),
    lines: fc.array(
      fc.record({
        value: fc.dictionary(fc.constantFrom('a', 'b', 'c'), jsonValue, { maxKeys: 3 }),
        padStart: PAD,
        padEnd: PAD,
        blanksBefore: fc.array(fc.tuple(PAD, END), { maxLength: 2 }),
        end: END,
      }),
      { maxLength: 12 },
    ),
    trailingEnd: fc.boolean(),
    bad: fc.option(fc.record({ at: fc.nat(), text: fc.constantFrom('{oops', '[1]', '"s"', 'nul', '\uFEFF{}') }), { nil: undefined }),
  })
  .map(({ bom, lines, trailingEnd, bad }): JsonlCase => {
    // Where the bad line is written, and the row the reader must name (not always the same: below).
    const badAt = bad === undefined || lines.length === 0 ? undefined : bad.at % lines.length;
    let badRow = badAt;
    const records = lines.map((l) => l.value);
    const first = lines[0];
    if (badRow === 0 && bad?.text.startsWith('\uFEFF') && !bom && first?.blanksBefore.length === 0 && first.padStart === '') {
      // Opening the file, that BOM is the file's own: the line is {} and nothing is wrong.
      badRow = undefined;
      records[0] = {};
    }
    let text = bom ? '\uFEFF' : '';
    lines.forEach((line, r) => {
      const json = r === badAt ? (bad?.text ?? '') : JSON.stringify(line.value);
      const last = r === lines.length - 1;
      text += `${line.blanksBefore.map(([pad, end]) => pad + end).join('')}${line.padStart}${json}${line.padEnd}${last && !trailingEnd ? '' : line.end}`;
    });
    return { bytes: Buffer.from(text), records, badRow };
  });

/** Chunk sizes to stream a file in; small ones split line ends (`\r|\n`) and characters. */
const CHUNKS = fc.array(fc.integer({ min: 1, max: 9 }), { minLength: 1, maxLength: 8 });
const MAX_ROWS = fc.integer({ min: 1, max: 5 });

/** The bytes as a stream of chunks of the given sizes, over and over. */
function chunked(bytes: Buffer, sizes: readonly number[]): Readable {
  const list: Buffer[] = [];
  for (let at = 0, k = 0; at < bytes.length; at += sizes[k++ % sizes.length] ?? 1) list.push(bytes.subarray(at, at + (sizes[k % sizes.length] ?? 1)));
  return Readable.from(list);
}

function whole(bytes: Buffer): Readable {
  return Readable.from([bytes]);
}

type Outcome = { records: Record<string, unknown>[] } | { error: string };

function outcome(read: () => { records: Record<string, unknown>[] }): Outcome {
  try {
    return { records: read().records };
  } catch (err) {
    return { error: (err as Error).message };
  }
}

function read(format: 'csv' | 'jsonl', bytes: Buffer, firstRow: number): { records: Record<string, unknown>[] } {
  return format === 'csv' ? readCsv(bytes, { firstRow }) : readJsonl(bytes, { firstRow });
}

/**
 * Reads every range of a cut as a mini-batch gets it (a CSV range after the file's header bytes),
 * until one fails: the records with their row numbers, and that failure.
 */
function readRanges(format: 'csv' | 'jsonl', bytes: Buffer, cut: RecordCut): { rows: number[]; records: Record<string, unknown>[]; error?: string } {
  const rows: number[] = [];
  const records: Record<string, unknown>[] = [];
  for (const range of cut.ranges) {
    const part = bytes.subarray(range.bytes.start, range.bytes.end);
    const got = outcome(() => read(format, format === 'csv' ? Buffer.concat([bytes.subarray(0, cut.headerEnd), part]) : part, range.rows.start));
    if ('error' in got) return { rows, records, error: got.error };
    // A range holds exactly the rows the planner says.
    expect(got.records).toHaveLength(range.rows.end - range.rows.start);
    got.records.forEach((record, i) => {
      rows.push(range.rows.start + i);
      records.push(record);
    });
  }
  return { rows, records };
}

async function checkSplit(format: 'csv' | 'jsonl', bytes: Buffer, expected: { records: Record<string, unknown>[]; badRow: number | undefined }, maxRows: number, sizes: number[]): Promise<void> {
  const wholeFile = outcome(() => read(format, bytes, 0));
  const cut = await cutRecords(format, whole(bytes), maxRows);
  // Streams split anywhere give the same boundaries.
  expect(await cutRecords(format, chunked(bytes, sizes), maxRows)).toEqual(cut);
  // Ranges are consecutive, none over maxRows, covering every record.
  expect(cut.records).toBe(expected.records.length);
  cut.ranges.forEach((range, k) => {
    expect(range.rows.start).toBe(k * maxRows);
    expect(range.rows.end - range.rows.start).toBeGreaterThan(0);
    expect(range.rows.end - range.rows.start).toBeLessThanOrEqual(maxRows);
  });
  expect(cut.ranges.at(-1)?.rows.end ?? 0).toBe(cut.records);

  const split = readRanges(format, bytes, cut);
  if (expected.badRow === undefined) {
    // The file as generated, read whole and read by ranges, row for row.
    expect(wholeFile).toEqual({ records: expected.records });
    expect(split.error).toBeUndefined();
    expect(split.records).toEqual(expected.records);
    expect(split.rows).toEqual(expected.records.map((_, i) => i));
  } else {
    // The bad record fails the file whole and the range holding it, with one reason naming its row.
    expect('error' in wholeFile && wholeFile.error).toMatch(new RegExp(`^row ${expected.badRow} `));
    expect(split.error).toBe('error' in wholeFile ? wholeFile.error : undefined);
    expect(split.records).toEqual(expected.records.slice(0, split.records.length));
    expect(split.rows).toEqual(split.records.map((_, i) => i));
  }
}

describe('split by rows reads what reading whole reads (property)', () => {
  it('CSV: any fields, line ends, blank lines, BOM, last line end or not, chunking and max_rows', async () => {
    await fc.assert(
      fc.asyncProperty(csvCase, MAX_ROWS, CHUNKS, async (file, maxRows, sizes) => checkSplit('csv', file.bytes, file, maxRows, sizes)),
      { numRuns: RUNS },
    );
  });

  it('JSON Lines: any values, line ends, padding, blank lines, BOM, chunking and max_rows', async () => {
    await fc.assert(
      fc.asyncProperty(jsonlCase, MAX_ROWS, CHUNKS, async (file, maxRows, sizes) => checkSplit('jsonl', file.bytes, file, maxRows, sizes)),
      { numRuns: RUNS },
    );
  });
});
