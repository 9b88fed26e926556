import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { FnHostError } from '../../../infra/local/src/errors.js';
import { KeyStore } from '../../../infra/local/src/http/keys.js';
import { Logger, type LogRecord } from '../../../infra/local/src/log.js';
import { AZURITE_DATABASES, checkAzuriteDatabases } from '../../../infra/local/src/storage/azurite-files.js';
import { BlobReceipts } from '../../../infra/local/src/storage/blob-receipts.js';
import { FileStatusStore } from '../../../infra/local/src/timer/timer-trigger.js';
import { tempDir } from '../../support/fnhost.js';

/** The files of a data folder a user may find damaged: each is refused naming it, or read safely. */

const dirs: { remove: () => void }[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) d.remove();
});

function folder(): string {
  const dir = tempDir('fnhost-data-files-');
  dirs.push(dir);
  return dir.path;
}

function recording(): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  return { logger: new Logger({ sink: (r: LogRecord) => lines.push(r.message) }), lines };
}

const load = (file: string): KeyStore => KeyStore.load({ file, settings: undefined, functionNames: ['hello'] });

describe('keys.json', () => {
  it('is generated on the first start and read back unchanged on the next', () => {
    const file = join(folder(), 'keys.json');
    const first = load(file);
    const written = readFileSync(file, 'utf8');
    expect(JSON.parse(written)).toEqual(first.keys);
    expect(load(file).keys).toEqual(first.keys);
    expect(readFileSync(file, 'utf8')).toBe(written);
  });

  it.each([
    ['cut short', (text: string) => text.slice(0, text.length / 2), /\(not valid JSON: /],
    ['empty', () => '', /\(the file is empty\)/],
    ['of the wrong shape', () => JSON.stringify({ master: 42 }), /\(master: /],
  ])('refuses a file %s, naming it, and leaves it for the user to restore (no new keys over it)', (_what, damage, problem) => {
    const file = join(folder(), 'keys.json');
    load(file);
    const damaged = damage(readFileSync(file, 'utf8'));
    writeFileSync(file, damaged);
    let error: unknown;
    try {
      load(file);
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(FnHostError);
    expect((error as FnHostError).message).toContain(`The keys file ${file} is not usable (`);
    expect((error as FnHostError).message).toMatch(problem);
    expect((error as FnHostError).message).toContain('delete it to have new keys generated');
    expect(readFileSync(file, 'utf8')).toBe(damaged);
  });
});

describe('blob receipts', () => {
  it('keeps a receipt recorded after a line a stopped host cut short, and warns about the cut one', async () => {
    const file = join(folder(), 'blob-receipts.jsonl');
    writeFileSync(file, `${JSON.stringify({ f: 'onBlob', b: 'in/a.txt', e: '"1"' })}\n{"f":"onBlob","b":"in/b.t`);
    const { logger, lines } = recording();
    const receipts = await BlobReceipts.open(file, logger);
    expect(receipts.has('onBlob', 'in/a.txt', '"1"')).toBe(true);
    expect(lines.join('\n')).toContain(`${file}: 1 unreadable line(s) skipped (line 2); the blobs they recorded will be processed again.`);
    await receipts.add('onBlob', 'in/c.txt', '"3"');
    // The next start reads the new receipt: it was not glued onto the cut line.
    const again = await BlobReceipts.open(file, recording().logger);
    expect(again.has('onBlob', 'in/a.txt', '"1"')).toBe(true);
    expect(again.has('onBlob', 'in/c.txt', '"3"')).toBe(true);
    expect(again.has('onBlob', 'in/b.txt', '"2"')).toBe(false);
  });
});

describe("Azurite's databases", () => {
  const LOKI = JSON.stringify({ filename: 'x', collections: [] });

  it('refuses a folder from which one database is missing while the others are there, naming it', () => {
    const dir = folder();
    for (const name of AZURITE_DATABASES) writeFileSync(join(dir, name), LOKI);
    expect(() => checkAzuriteDatabases(dir)).not.toThrow();
    const queue = join(dir, '__azurite_db_queue__.json');
    // Azurite would start the queue service empty, every message gone.
    writeFileSync(`${queue}~`, LOKI);
    rmSync(queue);
    let error: unknown;
    try {
      checkAzuriteDatabases(dir);
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(FnHostError);
    expect((error as FnHostError).message).toContain(`Azurite's database ${queue} is missing while`);
    expect((error as FnHostError).message).toContain(`${queue}~ is a save that was interrupted`);
    expect((error as FnHostError).details).toEqual({ file: queue });
  });

  it('accepts the same folder when the Azurite that wrote it died during its first start', () => {
    const dir = folder();
    writeFileSync(join(dir, '__azurite_db_blob__.json'), LOKI);
    expect(() => checkAzuriteDatabases(dir)).toThrow(/are missing while __azurite_db_blob__.json is there/);
    expect(() => checkAzuriteDatabases(dir, { interruptedStart: true })).not.toThrow();
  });
});

describe('timer status files', () => {
  it('reads a damaged status as none, and says what that costs', async () => {
    const dir = folder();
    const { logger, lines } = recording();
    const store = new FileStatusStore(dir, logger);
    writeFileSync(store.fileFor('Nightly'), '{"Last":"2024-01-01T');
    expect(await store.read('Nightly')).toBeUndefined();
    expect(lines.join('\n')).toContain(`The timer status ${store.fileFor('Nightly')} is not usable (not valid JSON: `);
    expect(lines.join('\n')).toContain("'Nightly' starts without it");
  });
});
