import { mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { producedFiles, snapshotFolder } from '../../../shared/scoring/produced-files.js';

const dir = mkdtempSync(join(tmpdir(), 'scoring-produced-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('files a run produced', () => {
  it('reports new and changed files, in nested folders, by relative name', () => {
    writeFileSync(join(dir, 'old.txt'), 'old');
    writeFileSync(join(dir, 'changed.txt'), 'v1');
    utimesSync(join(dir, 'changed.txt'), new Date(2020, 0, 1), new Date(2020, 0, 1));
    const before = snapshotFolder(dir);
    mkdirSync(join(dir, 'sub'));
    writeFileSync(join(dir, 'sub', 'new.csv'), 'a,b\n');
    writeFileSync(join(dir, 'changed.txt'), 'v2');
    const after = snapshotFolder(dir);
    expect(producedFiles(dir, before, after)).toEqual([
      { localPath: join(dir, 'changed.txt'), name: 'changed.txt' },
      { localPath: join(dir, 'sub', 'new.csv'), name: 'sub/new.csv' },
    ]);
    expect(producedFiles(dir, after, snapshotFolder(dir))).toEqual([]);
  });

  it('treats a missing folder as empty', () => {
    expect(snapshotFolder(join(dir, 'nope')).size).toBe(0);
  });
});
