import { describe, expect, it } from 'vitest';
import { stringify } from 'csv-stringify/sync';
import { proposeColumns } from '../../../shared/scoring/columns.js';
import { RowEncoder, describeFailedItem, failedItem, formatFloat32, formatValue, outputFormat, scriptResultRows, toCsv } from '../../../shared/scoring/rows.js';
import type { ScoringItem } from '../../../shared/scoring/types.js';

/** A script's rows as the CSV cells they are written as. */
const cells = (result: { rows: unknown[][] }): string[][] => result.rows.map((row) => row.map(formatValue));

function items(...names: string[]): ScoringItem[] {
  return names.map((name, i) => ({ name, localPath: `/work/mb-0/${i}/${name.split('/').pop()}` }));
}

describe('formatting', () => {
  it('prints values as Azure ML users expect in a CSV cell', () => {
    expect(formatValue('a')).toBe('a');
    expect(formatValue(1.5)).toBe('1.5');
    expect(formatValue(0.1 + 0.2)).toBe(String(0.1 + 0.2));
    expect(formatValue(12n)).toBe('12');
    expect(formatValue(true)).toBe('true');
    expect(formatValue(null)).toBe('');
    expect(formatValue(undefined)).toBe('');
    expect(formatValue(new Date('2024-01-02T03:04:05Z'))).toBe('2024-01-02T03:04:05.000Z');
    expect(formatValue([1, 'x', 2n])).toBe('[1,"x",2]');
    expect(formatValue({ a: 1 })).toBe('{"a":1}');
    expect(formatValue(new Float64Array([1, 2]))).toBe('[1,2]');
  });

  it('gives float32 values 7 significant digits, so they print the same every time', () => {
    const x = new Float32Array([0.1, 1 / 3, 123456.789, 1e-8, -2.5])[0] as number;
    expect(formatFloat32(x)).toBe('0.1');
    expect(Array.from(new Float32Array([1 / 3, 123456.789, 1e-8, -2.5]), formatFloat32)).toEqual(['0.3333333', '123456.8', '1e-8', '-2.5']);
    expect(formatFloat32(NaN)).toBe('NaN');
    expect(formatFloat32(-Infinity)).toBe('-Infinity');
  });

  it('writes RFC 4180 CSV with \\n line endings and no header', () => {
    const csv = toCsv([
      ['plain', 'with,comma', 'with "quote"', 'two\nlines', 'carriage\rreturn', ''],
      ['1', '2', '3', '4', '5', '6'],
    ]);
    expect(csv).toBe('plain,"with,comma","with ""quote""","two\nlines","carriage\rreturn",\n1,2,3,4,5,6\n');
    expect(toCsv([])).toBe('');
  });

  it('writes exactly what csv-stringify writes for the same rows', () => {
    // A seeded generator over the characters that matter to CSV quoting.
    let seed = 42;
    const next = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    const alphabet = ['a', 'Z', '1', ' ', ',', '"', '\n', '\r', ';', '\t', 'é', '\u2028'];
    const rows = Array.from({ length: 500 }, () => Array.from({ length: 1 + next(4) }, () => Array.from({ length: next(6) }, () => alphabet[next(alphabet.length)]).join('')));
    expect(toCsv(rows)).toBe(stringify(rows, { record_delimiter: '\n', quoted_match: /\r/ }));
  });
});

describe('accounting for what run() returned', () => {
  it('fills the job\'s columns by name: a missing key is an empty cell, a key that is no column is dropped (case 4a)', () => {
    const results = [
      { file_name: 'a.txt', score: 0.1, label: 'cat' },
      { label: 'dog', score: 0.2, file_name: 'b.txt' },
      { file_name: 'c.txt', score: 0.3 },
      { file_name: 'd.txt', score: 0.4, label: 'fox', extra: 'surprise' },
    ];
    expect(proposeColumns(results)).toEqual({ proposed: ['file_name', 'score', 'label'], seen: ['file_name', 'score', 'label', 'extra'] });
    // Each mini-batch alone (mini_batch_size 1) with the job's columns fixed by the first.
    const columns = ['file_name', 'score', 'label'];
    const csv = results.map((result, n) => toCsv(cells(scriptResultRows([result], items(`${'abcd'[n]}.txt`), columns)))).join('');
    expect(csv).toBe('a.txt,0.1,cat\nb.txt,0.2,dog\nc.txt,0.3,\nd.txt,0.4,fox\n');
    // A result that is not an object is the row { prediction: value }.
    expect(cells(scriptResultRows([7], items('a'), ['prediction', 'x']))).toEqual([['7', '']]);
    // One with none of the job's columns is no row at all: its item fails, saying why.
    const none = scriptResultRows([{ prediction: 1 }], items('a'), ['x']);
    expect(cells(none)).toEqual([]);
    expect(none.succeeded).toBe(0);
    expect(none.failed).toEqual([{ file: null, reason: "run() returned 1 result for 1 item, 1 of them with none of the job's columns (x)", count: 1 }]);
    const named = scriptResultRows([{ file_name: 'a', x: 1 }, { file_name: 'b', y: 2 }, 42], items('a', 'b', 'c'), ['file_name', 'x']);
    expect(cells(named)).toEqual([['a', '1'], ['b', '']]);
    const partly = scriptResultRows([{ file_name: 'a', x: 1 }, { file_name: 'b', y: 2 }], items('a', 'b'), ['x']);
    expect(cells(partly)).toEqual([['1']]);
    expect(partly.succeeded).toBe(1);
    expect(partly.failed).toEqual([{ file: 'b', reason: "run() returned a result with none of the job's columns (x) for this file" }]);
  });

  it('warns when run() returns more results than items without naming their files (case 4b)', () => {
    const r = scriptResultRows([1, 2, 3], items('a', 'b'));
    expect(r.succeeded).toBe(2);
    expect(r.rows).toHaveLength(3);
    expect(r.warnings).toEqual([expect.stringContaining('run() returned 3 results for 2 items without naming')]);
    expect(scriptResultRows([1, 2], items('a', 'b')).warnings).toEqual([]);
    expect(scriptResultRows([{ file_name: 'a' }, { file_name: 'a' }, { file_name: 'b' }], items('a', 'b')).warnings).toEqual([]);
  });

  it('writes every row by column name, in the order of the first object, whatever each object\'s key order', () => {
    const r = scriptResultRows(
      [
        { file: 'a.txt', score: 0.5, label: 'x' },
        { label: 'y', file: 'b.txt', score: 2 },
      ],
      items('a.txt', 'b.txt'),
    );
    expect(r.columns).toEqual(['file', 'score', 'label']);
    expect(cells(r)).toEqual([
      ['a.txt', '0.5', 'x'],
      ['b.txt', '2', 'y'],
    ]);
    expect(r.succeeded).toBe(2);
    expect(r.failed).toEqual([]);
  });

  it('puts strings and numbers in one prediction column and counts a shortfall without naming files', () => {
    const r = scriptResultRows(['cat', 3, 4.25], items('a', 'b', 'c', 'd', 'e'));
    expect(r.columns).toEqual(['prediction']);
    expect(cells(r)).toEqual([['cat'], ['3'], ['4.25']]);
    expect(r.succeeded).toBe(3);
    expect(r.failed).toEqual([{ file: null, reason: 'run() returned 3 results for 5 items', count: 2 }]);
  });

  it('names the failed files when every result says which file it belongs to', () => {
    const batch = items('2024/a.csv', '2024/b.csv', 'c.csv');
    // By item name, by local path and by base name.
    const r = scriptResultRows([{ file_name: '2024/a.csv', y: 1 }, { file_name: batch[2]!.localPath, y: 2 }, { file: 'a.csv', y: 3 }], batch);
    expect(r.succeeded).toBe(2);
    expect(r.failed).toEqual([{ file: '2024/b.csv', reason: 'run() returned no result for this file' }]);
    expect(r.rows).toHaveLength(3);
  });

  it('falls back to counting when a result names no known file, or a base name is ambiguous', () => {
    const r = scriptResultRows([{ file_name: 'other.txt' }], items('a.txt', 'b.txt'));
    expect(r.failed).toEqual([{ file: null, reason: 'run() returned 1 result for 2 items', count: 1 }]);
    const twins = items('x/same.txt', 'y/same.txt');
    const ambiguous = scriptResultRows([{ file_name: 'same.txt' }], twins);
    expect(ambiguous.failed).toEqual([{ file: null, reason: 'run() returned 1 result for 2 items', count: 1 }]);
  });

  it('tells the row ranges of one file apart only by their local paths; a shared name falls back to counting', () => {
    const ranges: ScoringItem[] = [
      { name: 'big.csv', localPath: '/w/0/big.csv', rows: { start: 0, end: 3 } },
      { name: 'big.csv', localPath: '/w/1/big.csv', rows: { start: 3, end: 6 } },
      { name: 'small.csv', localPath: '/w/small.csv' },
    ];
    // The usual Azure ML pattern, file_name: basename(path): two results for big.csv cannot say which range.
    const byBase = scriptResultRows([{ file_name: 'big.csv' }, { file_name: 'big.csv' }, { file_name: 'small.csv' }], ranges);
    expect(byBase.succeeded).toBe(3);
    expect(byBase.failed).toEqual([]);
    const oneMissing = scriptResultRows([{ file_name: 'big.csv' }, { file_name: 'small.csv' }], ranges);
    expect(oneMissing.succeeded).toBe(2);
    expect(oneMissing.failed).toEqual([{ file: null, reason: 'run() returned 2 results for 3 items', count: 1 }]);
    // Local paths name each range exactly.
    const byPath = scriptResultRows([{ file_name: '/w/1/big.csv' }, { file_name: '/w/small.csv' }], ranges);
    expect(byPath.failed).toEqual([{ file: 'big.csv', rows: { start: 0, end: 3 }, reason: 'run() returned no result for this file' }]);
  });

  it('fails every file by name when nothing came back', () => {
    const r = scriptResultRows([], items('a', 'b'));
    expect(cells(r)).toEqual([]);
    expect(r.succeeded).toBe(0);
    expect(r.failed).toEqual([
      { file: 'a', reason: 'run() returned no result for this file' },
      { file: 'b', reason: 'run() returned no result for this file' },
    ]);
  });

  it('names a failed row range by its file and rows, as every failure of an item does', () => {
    const range = { name: 'big.csv', localPath: '/work/mb-0/0/big.csv', rows: { start: 20, end: 30 } };
    const r = scriptResultRows([{ file_name: 'a.csv', y: 1 }], [{ name: 'a.csv', localPath: '/work/mb-0/a.csv' }, range]);
    expect(r.failed).toEqual([{ file: 'big.csv', rows: { start: 20, end: 30 }, reason: 'run() returned no result for this file' }]);
    expect(failedItem(range, 'x')).toEqual({ file: 'big.csv', rows: { start: 20, end: 30 }, reason: 'x' });
    expect(failedItem({ name: 'a.csv' }, 'x')).toStrictEqual({ file: 'a.csv', reason: 'x' });
    expect(describeFailedItem(failedItem(range, 'boom'))).toBe('big.csv (rows 20-29): boom');
    expect(describeFailedItem({ file: null, reason: 'run() returned 1 result for 3 items', count: 2 })).toBe('2 items not named: run() returned 1 result for 3 items');
  });

  it('never counts more successes than items', () => {
    const r = scriptResultRows([1, 2, 3], items('a'));
    expect(r.succeeded).toBe(1);
    expect(r.failed).toEqual([]);
    expect(r.rows).toHaveLength(3);
  });
});

describe('RowEncoder', () => {
  it('writes each value under its column, as CSV cells or as JSON Lines fields', () => {
    const sources = [(r: number) => r, (r: number) => (r === 0 ? 'a,"b"' : NaN), () => undefined, () => 2n ** 70n, () => new Float32Array([0.5, 1])];
    const columns = ['row', 'prediction', 'missing', 'big', 'vector'];
    expect(new RowEncoder('csv', columns).rows(sources, 2)).toBe('0,"a,""b""",,1180591620717411303424,"[0.5,1]"\n1,NaN,,1180591620717411303424,"[0.5,1]"\n');
    const lines = new RowEncoder('jsonl', columns).rows(sources, 2).split('\n');
    expect(lines.pop()).toBe('');
    expect(lines.map((l) => JSON.parse(l) as unknown)).toEqual([
      { row: 0, prediction: 'a,"b"', missing: null, big: '1180591620717411303424', vector: [0.5, 1] },
      { row: 1, prediction: null, missing: null, big: '1180591620717411303424', vector: [0.5, 1] },
    ]);
    expect(new RowEncoder('csv', ['a', 'b,c']).header()).toBe('a,"b,c"\n');
    expect(() => new RowEncoder('csv', columns).rows(sources.slice(1), 1)).toThrow(/sources for 5 columns/);
  });

  it('takes the format from output_file_name', () => {
    expect(['p.csv', 'p.jsonl', 'P.NDJSON', 'p.txt', 'p.jsonl.csv'].map(outputFormat)).toEqual(['csv', 'jsonl', 'jsonl', 'csv', 'csv']);
  });
});
