import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { fileFormat, readCsv, readJsonl } from '../../../shared/data/records.js';
import { readTabular } from '../../../shared/scoring/tabular.js';
import { FEATURES, penguinRows, writePenguinParquet } from '../../fixtures/scoring/models.js';

const dir = mkdtempSync(join(tmpdir(), 'scoring-tabular-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('tabular files', () => {
  it('tells file formats from extensions, case-insensitively', () => {
    expect(fileFormat('/a/b.CSV')).toEqual({ tabular: 'csv' });
    expect(fileFormat('b.jsonl')).toEqual({ tabular: 'jsonl' });
    expect(fileFormat('b.parquet')).toEqual({ tabular: 'parquet' });
    expect(fileFormat('b.JPEG')).toEqual({ image: 'jpeg' });
    expect(fileFormat('b.jpg')).toEqual({ image: 'jpeg' });
    expect(fileFormat('b.png')).toEqual({ image: 'png' });
    expect(fileFormat('b.xyz')).toEqual({ unsupported: 'unsupported file type .xyz (supported: .csv, .jsonl, .ndjson, .parquet, .png, .jpg, .jpeg)' });
    expect(fileFormat('README')).toEqual({ unsupported: 'unsupported file type (the file has no extension; supported: .csv, .jsonl, .ndjson, .parquet, .png, .jpg, .jpeg)' });
  });

  it('reads CSV with its header (BOM and blank lines tolerated, quoted fields kept)', () => {
    const t = readCsv('\uFEFFa,b\n1,"x,y"\n\n2,z\n');
    expect(t.columns).toEqual(['a', 'b']);
    expect(t.records).toEqual([
      { a: '1', b: 'x,y' },
      { a: '2', b: 'z' },
    ]);
    expect(() => readCsv('a,b\n1,2,3\n')).toThrow();
  });

  it('reads JSON Lines, naming the row that is not an object', () => {
    const t = readJsonl('{"a":1,"b":[1,2]}\n\n{"c":true}\n');
    expect(t.columns).toEqual(['a', 'b', 'c']);
    expect(t.records).toEqual([{ a: 1, b: [1, 2] }, { c: true }]);
    expect(() => readJsonl('{"a":1}\n\n{oops\n')).toThrow(/^row 1 is not valid JSON/);
    expect(() => readJsonl('[1,2]\n')).toThrow(/^row 0 is not a JSON object$/);
  });

  it('reads a Parquet row range across row groups, and only the wanted columns', async () => {
    const rows = penguinRows(25, 3);
    const path = join(dir, 'p.parquet');
    writePenguinParquet(path, rows, 10);
    const all = await readTabular({ name: 'p.parquet', localPath: path }, 'parquet');
    expect(all.columns).toEqual(['island', ...FEATURES]);
    expect(all.records).toHaveLength(25);
    const part = await readTabular({ name: 'p.parquet', localPath: path, rows: { start: 8, end: 17 }, rowOffset: 8 }, 'parquet', { wanted: [...FEATURES] });
    expect(part.columns).toEqual([...FEATURES]);
    expect(part.records.map((r) => FEATURES.map((f) => r[f]))).toEqual(rows.slice(8, 17));
    const past = await readTabular({ name: 'p.parquet', localPath: path, rows: { start: 30, end: 40 } }, 'parquet');
    expect(past.records).toEqual([]);
  });

  it('fails on a file that is not Parquet', async () => {
    const path = join(dir, 'fake.parquet');
    writeFileSync(path, 'not parquet at all');
    await expect(readTabular({ name: 'fake.parquet', localPath: path }, 'parquet')).rejects.toThrow();
  });
});
