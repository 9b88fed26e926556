import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { CSV_OPTIONS, JsonlScanner, RecordError, cutRecords, fileFormat, noRowsReason, readCsv, duplicateColumnReason,
  readJsonl } from '../../../shared/data/records.js';

const SUPPORTED = '.csv, .jsonl, .ndjson, .parquet, .png, .jpg, .jpeg';

/** The bytes as a stream of chunks of the given sizes, over and over. */
function chunks(bytes: Buffer, sizes: readonly number[] = [bytes.length || 1]): Readable {
  const list: Buffer[] = [];
  for (let at = 0, k = 0; at < bytes.length; at += sizes[k++ % sizes.length] ?? 1) list.push(bytes.subarray(at, at + (sizes[k % sizes.length] ?? 1)));
  return Readable.from(list);
}

/** The byte offsets where each record ends (CSV: the header first), from a cut of one row per range. */
async function ends(format: 'csv' | 'jsonl', text: string | Buffer, sizes?: number[]): Promise<number[]> {
  const cut = await cutRecords(format, chunks(Buffer.from(text), sizes), 1);
  return [...(cut.headerEnd === undefined ? [] : [cut.headerEnd]), ...cut.ranges.map((r) => r.bytes.end)];
}

/** Reads every range of a cut the way a mini-batch gets it: CSV ranges after the header's bytes. */
async function readByRanges(format: 'csv' | 'jsonl', text: string, maxRows: number): Promise<{ rows: number[]; records: Record<string, unknown>[] }> {
  const bytes = Buffer.from(text);
  const cut = await cutRecords(format, chunks(bytes), maxRows);
  const rows: number[] = [];
  const records: Record<string, unknown>[] = [];
  for (const range of cut.ranges) {
    const part = bytes.subarray(range.bytes.start, range.bytes.end);
    const table = format === 'csv' ? readCsv(Buffer.concat([bytes.subarray(0, cut.headerEnd), part]), { firstRow: range.rows.start }) : readJsonl(part, { firstRow: range.rows.start });
    table.records.forEach((record, i) => {
      rows.push(range.rows.start + i);
      records.push(record);
    });
  }
  return { rows, records };
}

describe('file formats', () => {
  it('come from the extension alone, case-insensitively, with .ndjson as JSON Lines', () => {
    expect(fileFormat('a.csv')).toEqual({ tabular: 'csv' });
    expect(fileFormat('2024/Jan/A.CSV')).toEqual({ tabular: 'csv' });
    expect(fileFormat('b.jsonl')).toEqual({ tabular: 'jsonl' });
    expect(fileFormat('b.ndjson')).toEqual({ tabular: 'jsonl' });
    expect(fileFormat('B.NDJSON')).toEqual({ tabular: 'jsonl' });
    expect(fileFormat('p.Parquet')).toEqual({ tabular: 'parquet' });
    expect(fileFormat('i.PNG')).toEqual({ image: 'png' });
    expect(fileFormat('i.jpg')).toEqual({ image: 'jpeg' });
    expect(fileFormat('i.jpeg')).toEqual({ image: 'jpeg' });
    // A dotfile's name is not its extension; a hidden file with one is still that format.
    expect(fileFormat('.hidden.csv')).toEqual({ tabular: 'csv' });
    expect(fileFormat('dir/.csv')).toEqual({ unsupported: `unsupported file type (the file has no extension; supported: ${SUPPORTED})` });
    expect(fileFormat('README')).toEqual({ unsupported: `unsupported file type (the file has no extension; supported: ${SUPPORTED})` });
    expect(fileFormat('data.csv/README')).toEqual({ unsupported: `unsupported file type (the file has no extension; supported: ${SUPPORTED})` });
    expect(fileFormat('data.')).toEqual({ unsupported: `unsupported file type (the file has no extension; supported: ${SUPPORTED})` });
    expect(fileFormat('a.csv.gz')).toEqual({ unsupported: `unsupported file type .gz (supported: ${SUPPORTED})` });
    expect(fileFormat('notes.TXT')).toEqual({ unsupported: `unsupported file type .txt (supported: ${SUPPORTED})` });
    // Not an own property of the table, whatever the prototype holds.
    expect(fileFormat('x.constructor')).toEqual({ unsupported: `unsupported file type .constructor (supported: ${SUPPORTED})` });
  });
});

describe('CSV records', () => {
  it('is one csv-parse options object: blank lines skipped, every line end, a BOM, relaxed field counts', () => {
    expect(CSV_OPTIONS).toEqual({ bom: true, skip_empty_lines: true, record_delimiter: ['\r\n', '\n', '\r'], relax_column_count: true });
    expect(Object.isFrozen(CSV_OPTIONS)).toBe(true);
  });

  for (const [name, eol] of [
    ['\\n', '\n'],
    ['\\r\\n', '\r\n'],
    ['a lone \\r', '\r'],
    ['\\r\\r\\n', '\r\r\n'],
  ] as const) {
    it(`ends records at ${name}, keeps line ends inside quotes, and cuts after each record's line end`, async () => {
      const text = `a,b${eol}1,"x${eol}y"${eol}${eol}2,z${eol}`;
      expect(readCsv(text).records).toEqual([
        { a: '1', b: `x${eol}y` },
        { a: '2', b: 'z' },
      ]);
      // \r\r\n is a lone \r (the line end) and then \r\n (a blank line, skipped).
      const end = eol === '\r\r\n' ? 1 : eol.length;
      const header = 3 + end;
      const first = `a,b${eol}1,"x${eol}y"`.length + end;
      const second = `a,b${eol}1,"x${eol}y"${eol}${eol}2,z`.length + end;
      expect(await ends('csv', text)).toEqual([header, first, second]);
      expect(await readByRanges('csv', text, 1)).toEqual({ rows: [0, 1], records: readCsv(text).records });
    });
  }

  it('counts a BOM in byte offsets, drops it from the header, and reads multi-byte text', async () => {
    const text = '\uFEFFé,b\n"ü\n",2\n3,4';
    expect(readCsv(text)).toEqual({ columns: ['é', 'b'], records: [{ é: 'ü\n', b: '2' }, { é: '3', b: '4' }] });
    // BOM 3 bytes + `é,b\n` 5; `"ü\n",2\n` 8 (ü is 2 bytes); `3,4` 3 with no line end.
    expect(await ends('csv', text)).toEqual([8, 16, 19]);
    expect(await readByRanges('csv', text, 1)).toEqual({ rows: [0, 1], records: readCsv(text).records });
  });

  it('gives the same boundaries however the bytes are chunked, a \\r\\n split between chunks included', async () => {
    const text = 'a,b\r\n1,2\r\n3,"4\r\n5"\r\r\n6,7\r8,9';
    const whole = await ends('csv', text);
    for (const sizes of [[1], [2], [3], [4], [5], [1, 2, 3], [7, 1]]) expect(await ends('csv', text, sizes)).toEqual(whole);
  });

  it('numbers the rows of a file with blank lines as without split (penguins gaps.csv)', async () => {
    const gaps = 'island,bill_length_mm,bill_depth_mm,flipper_length_mm,body_mass_g,sex\n\nBiscoe,45.1,14.5,215,5000,female\n\nDream,39.5,16.7,178,3250,female\n\nTorgersen,38.9,17.8,181,3625,female\n\nBiscoe,50,15.2,218,5700,male\n\n';
    const cut = await cutRecords('csv', chunks(Buffer.from(gaps)), 2);
    expect(cut.records).toBe(4);
    expect(cut.ranges.map((r) => r.rows)).toEqual([
      { start: 0, end: 2 },
      { start: 2, end: 4 },
    ]);
    const split = await readByRanges('csv', gaps, 2);
    expect(split.rows).toEqual([0, 1, 2, 3]);
    expect(split.records).toEqual(readCsv(gaps).records);
    expect(split.records.map((r) => r['island'])).toEqual(['Biscoe', 'Dream', 'Torgersen', 'Biscoe']);
  });

  it('finds no records in an empty, blank, BOM-only or header-only file', async () => {
    for (const text of ['', '\n\n', '\r\n\r', '\uFEFF', 'a,b', 'a,b\n', '\uFEFFa,b\r\n\r\n']) {
      const cut = await cutRecords('csv', chunks(Buffer.from(text)), 3);
      expect(cut.records).toBe(0);
      expect(cut.ranges).toEqual([]);
      const table = readCsv(text);
      expect(table.records).toEqual([]);
      expect(noRowsReason('csv', table.columns)).toBe(text.includes('a,b') ? 'the file has no rows (only a header)' : 'the file is empty');
    }
    expect(noRowsReason('parquet', ['x'])).toBe('the file has no rows');
  });

  it('names a record with the wrong field count by its row in the file, with or without a range', () => {
    const text = 'a,b\n1,2\n3\n4,5,6\n';
    expect(() => readCsv(text)).toThrow(/^row 1 has 1 field; the header has 2$/);
    // The same record read as the first row of a range starting at row 1.
    expect(() => readCsv('a,b\n3\n', { firstRow: 1 })).toThrow(/^row 1 has 1 field; the header has 2$/);
    expect(() => readCsv('a,b\n4,5,6\n', { firstRow: 2 })).toThrow(/^row 2 has 3 fields; the header has 2$/);
  });

  it('fails the scan exactly where reading the whole file fails: an unclosed quote', async () => {
    const text = 'a,b\n1,2\n3,"4\n5,6\n';
    let scanError: unknown;
    await cutRecords('csv', chunks(Buffer.from(text), [3]), 1).catch((err: unknown) => (scanError = err));
    expect(scanError).toBeInstanceOf(RecordError);
    expect(() => readCsv(text)).toThrow((scanError as Error).message);
    expect((scanError as Error).message).toMatch(/^Quote Not Closed/);
  });
});

describe('JSON Lines records', () => {
  for (const [name, eol] of [
    ['\\n', '\n'],
    ['\\r\\n', '\r\n'],
    ['a lone \\r', '\r'],
    ['\\r\\r\\n', '\r\r\n'],
  ] as const) {
    it(`ends records at ${name} and skips blank and whitespace-only lines`, async () => {
      const text = `{"a":1}${eol}${eol} \t${eol}  {"a":"x\\ny"} ${eol}{"b":true}`;
      const table = readJsonl(text);
      expect(table).toEqual({ columns: ['a', 'b'], records: [{ a: 1 }, { a: 'x\ny' }, { b: true }] });
      const cut = await cutRecords('jsonl', chunks(Buffer.from(text)), 1);
      expect(cut.records).toBe(3);
      // The first range begins the file; each next one where the one before ended.
      expect(cut.ranges.map((r) => r.bytes.start)).toEqual([0, ...cut.ranges.slice(0, -1).map((r) => r.bytes.end)]);
      expect(cut.ranges.at(-1)?.bytes.end).toBe(Buffer.byteLength(text));
      expect(await readByRanges('jsonl', text, 2)).toEqual({ rows: [0, 1, 2], records: table.records });
      for (const sizes of [[1], [2], [3], [1, 4]]) expect(await ends('jsonl', text, sizes)).toEqual(await ends('jsonl', text));
    });
  }

  it('drops a BOM only at the start of the file, even when it arrives split over chunks', async () => {
    const bytes = Buffer.from('\uFEFF{"a":1}\n{"a":2}\n');
    for (const sizes of [[1], [2], [bytes.length]]) {
      const found: [number, number, number][] = [];
      const scanner = new JsonlScanner((start, contentEnd, end) => found.push([start, contentEnd, end]));
      for await (const chunk of chunks(bytes, sizes)) scanner.push(chunk);
      scanner.end();
      expect(found).toEqual([
        [3, 10, 11],
        [11, 18, 19],
      ]);
    }
    expect(readJsonl(bytes).records).toEqual([{ a: 1 }, { a: 2 }]);
    // Past the file's start a BOM is text, and JSON does not allow it there.
    expect(() => readJsonl('{"a":1}\n\uFEFF{"a":2}\n')).toThrow(/^row 1 is not valid JSON/);
    expect(() => readJsonl('\uFEFF{"a":2}\n', { firstRow: 1 })).toThrow(/^row 1 is not valid JSON/);
  });

  it('finds no records in an empty or blank file', async () => {
    for (const text of ['', '\n', ' \t\r\n\r', '\uFEFF', '\uFEFF\n \n']) {
      expect((await cutRecords('jsonl', chunks(Buffer.from(text)), 2)).records).toBe(0);
      const table = readJsonl(text);
      expect(table.records).toEqual([]);
      expect(noRowsReason('jsonl', table.columns)).toBe('the file is empty');
    }
  });

  it('names a bad record by its row in the file, with or without a range', () => {
    expect(() => readJsonl('{"a":1}\n\n{"a":2}\n{oops\n')).toThrow(/^row 2 is not valid JSON \(/);
    expect(() => readJsonl('\n{oops\n', { firstRow: 2 })).toThrow(/^row 2 is not valid JSON \(/);
    expect(() => readJsonl('{"a":1}\r\n[1,2]\r\n')).toThrow(/^row 1 is not a JSON object$/);
  });

  it('refuses a header naming a column twice: a header is the schema, so no reader picks one of the two', () => {
    expect(duplicateColumnReason(['a', 'b', 'c'])).toBeUndefined();
    expect(duplicateColumnReason(['a', 'b', 'a', 'a'])).toBe('the header names column "a" twice (fields 1 and 3); every column name must be unique');
    expect(duplicateColumnReason(['x', 'x'], 'the schema')).toMatch(/^the schema names column "x" twice/);
    // Names are compared exactly: "X" and "x " are other columns than "x".
    expect(readCsv('x,X,x \n1,2,3\n').records).toEqual([{ x: '1', X: '2', 'x ': '3' }]);
    expect(() => readCsv('x,y,x\n1,2,3\n')).toThrow('the header names column "x" twice (fields 1 and 3); every column name must be unique');
    expect(() => readCsv('x,y,x\n', { firstRow: 5 })).toThrow(/names column "x" twice/);
  });
});

describe('csvHeader', () => {
  it('reads the header from the first bytes only when it ends within them', async () => {
    const { csvHeader } = await import('../../../shared/data/records.js');
    const bytes = (text: string): Uint8Array => Buffer.from(text);
    expect(csvHeader(bytes('\ufeff\nid,x\n1,2'), false)).toEqual(['id', 'x']);
    // A header naming a column twice has no columns to tell: the file fails as it is read.
    expect(csvHeader(bytes('id,x,x\n1,2,3'), false)).toBeUndefined();
    expect(csvHeader(bytes('id,x,"y\nz"\r\n1'), false)).toEqual(['id', 'x', 'y\nz']);
    expect(csvHeader(bytes('id,x,y'), false)).toBeUndefined();
    expect(csvHeader(bytes('id,x,y'), true)).toEqual(['id', 'x', 'y']);
    expect(csvHeader(bytes('id,"x'), false)).toBeUndefined();
    expect(csvHeader(bytes(''), true)).toBeUndefined();
  });
});
