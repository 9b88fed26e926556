import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { FnHostError } from '../../../infra/local/src/errors.js';
import { AZURITE_DATABASES, checkAzuriteDatabases, lokiProblem } from '../../../infra/local/src/storage/azurite-files.js';
import { readAzuriteState } from '../../../infra/local/src/storage/azurite-service.js';
import { tempDir } from '../../support/fnhost.js';

const dirs: { remove: () => void }[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) d.remove();
});

function folder(): string {
  const dir = tempDir('azurite-files-');
  dirs.push(dir);
  return dir.path;
}

const LOKI = JSON.stringify({ filename: 'x', collections: [{ name: '$TABLES_COLLECTION$', data: [{ table: 'jobs' }] }] });

describe("Azurite's LokiJS databases", () => {
  it('accepts a LokiJS database and tells what is wrong with anything else', () => {
    expect(lokiProblem(LOKI)).toBeUndefined();
    expect(lokiProblem('')).toBe('the file is empty');
    expect(lokiProblem(' \n')).toBe('the file is empty');
    expect(lokiProblem(LOKI.slice(0, LOKI.length / 2))).toMatch(/^not valid JSON: /);
    expect(lokiProblem('{"filename":"x"}')).toBe('not a LokiJS database: it has no "collections" list');
    expect(lokiProblem('null')).toBe('not a LokiJS database: it has no "collections" list');
  });

  it('passes a folder of good databases, a folder without any, and a folder that does not exist', () => {
    const dir = folder();
    expect(() => checkAzuriteDatabases(join(dir, 'none-yet'))).not.toThrow();
    expect(() => checkAzuriteDatabases(dir)).not.toThrow();
    for (const name of AZURITE_DATABASES) writeFileSync(join(dir, name), LOKI);
    mkdirSync(join(dir, '__blobstorage__'));
    writeFileSync(join(dir, '__blobstorage__', 'extent'), 'binary data, not a database');
    expect(() => checkAzuriteDatabases(dir)).not.toThrow();
  });

  it('refuses a half-written database, naming the file', () => {
    const dir = folder();
    for (const name of AZURITE_DATABASES) writeFileSync(join(dir, name), LOKI);
    const table = join(dir, '__azurite_db_table__.json');
    writeFileSync(table, LOKI.slice(0, 40));
    let error: unknown;
    try {
      checkAzuriteDatabases(dir);
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(FnHostError);
    expect((error as FnHostError).message).toContain(`Azurite's database ${table} is not usable (not valid JSON: `);
    expect((error as FnHostError).message).toContain(`move ${dir} away to start with empty storage`);
    expect((error as FnHostError).details).toEqual({ file: table });
  });

  it('refuses an empty database and points at an interrupted save that may be a good copy', () => {
    const dir = folder();
    for (const name of AZURITE_DATABASES) writeFileSync(join(dir, name), LOKI);
    const queue = join(dir, '__azurite_db_queue__.json');
    writeFileSync(queue, '');
    writeFileSync(`${queue}~`, LOKI);
    expect(() => checkAzuriteDatabases(dir)).toThrow(`${queue} is not usable (the file is empty)`);
    expect(() => checkAzuriteDatabases(dir)).toThrow(`${queue}~ is a save that was interrupted`);
  });
});

describe("the Azurite state file", () => {
  const good = { version: 1, pid: 4242, token: 'a'.repeat(48), location: '/data/azurite', startedAt: '2026-01-01T00:00:00.000Z', status: 'ready', host: '127.0.0.1', ports: { blob: 1, queue: 2, table: 3 } };

  it('reads a state file, and no file as none', () => {
    const dir = folder();
    const path = join(dir, 'azurite.json');
    expect(readAzuriteState(path)).toBeUndefined();
    writeFileSync(path, JSON.stringify(good));
    expect(readAzuriteState(path)).toEqual(good);
  });

  it('refuses a damaged state file, naming it, rather than guessing that no Azurite serves the folder', () => {
    const dir = folder();
    const path = join(dir, 'azurite.json');
    writeFileSync(path, JSON.stringify(good).slice(0, 30));
    expect(() => readAzuriteState(path)).toThrow(`The storage state file ${path} is not usable (not valid JSON: `);
    writeFileSync(path, JSON.stringify({ ...good, pid: 'x' }));
    expect(() => readAzuriteState(path)).toThrow(/is not usable \(pid: .*\)\. It records which Azurite serves this data folder/);
  });
});
