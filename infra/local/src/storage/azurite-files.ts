import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { FnHostError } from '../errors.js';

/** Azurite keeps its metadata (blobs, blocks, queues, tables, extents) in these LokiJS files. */
const LOKI_FILE = /^__azurite_db_.*\.json$/;

/**
 * The databases Azurite writes when it starts (each service creates and saves its own before it
 * listens), in the order it starts them. It never removes one, so a folder that holds some of
 * them held all of them once.
 */
export const AZURITE_DATABASES = [
  '__azurite_db_blob__.json',
  '__azurite_db_blob_extent__.json',
  '__azurite_db_queue__.json',
  '__azurite_db_queue_extent__.json',
  '__azurite_db_table__.json',
] as const;

/**
 * Checks Azurite's LokiJS databases in `location` before Azurite is started on them. Azurite would
 * stop at a file that is not valid JSON with a bare parser message that names no file, and it
 * reads an empty file as an error too; either way the user must learn which file it is. Nothing
 * is repaired: a data folder whose storage cannot be read is not started, never started empty.
 */
export function checkAzuriteDatabases(location: string, options: { interruptedStart?: boolean } = {}): void {
  if (!existsSync(location)) return;
  const names = readdirSync(location);
  const present = AZURITE_DATABASES.filter((n) => names.includes(n));
  // One missing while others are there: a file was deleted, or only part of the folder was copied
  // or restored. Azurite would start that service empty, as if its blobs, queues or tables had never
  // been. Only an Azurite that died during its first start leaves a folder like this legitimately.
  const missing = AZURITE_DATABASES.filter((n) => !names.includes(n));
  if (present.length > 0 && missing.length > 0 && options.interruptedStart !== true) {
    const files = missing.map((n) => join(location, n));
    const what = files.length > 1 ? `databases ${files.join(', ')} are` : `database ${files.join('')} is`;
    const saves = files.filter((f) => existsSync(`${f}~`)).map((f) => ` ${f}~ is a save that was interrupted before it took that name; it may be a good copy.`);
    throw new FnHostError(
      'ERR_CONFIG',
      `Azurite's ${what} missing while ${present.join(', ')} ${present.length > 1 ? 'are' : 'is'} there: the folder ${location} ` +
        `is half-written (a file was deleted, or only part of the folder was copied or restored). fnhost will not start on it, ` +
        `because Azurite would start that storage empty.${saves.join('')} Restore it from a backup, or move ${location} away to start with empty storage.`,
      { details: { file: files[0] } },
    );
  }
  for (const name of names.filter((n) => LOKI_FILE.test(n)).sort()) {
    const file = join(location, name);
    const problem = lokiProblem(readFileSync(file, 'utf8'));
    if (problem === undefined) continue;
    const interrupted = existsSync(`${file}~`)
      ? ` ${file}~ is a save that was interrupted before it replaced the file; it may be a good copy.`
      : '';
    throw new FnHostError(
      'ERR_CONFIG',
      `Azurite's database ${file} is not usable (${problem}): it is corrupt or was only partly written. ` +
        `fnhost will not start on it, because Azurite would fail on it or the storage would start empty.${interrupted} ` +
        `Restore the file from a backup, or move ${location} away to start with empty storage.`,
      { details: { file } },
    );
  }
}

/** Why a LokiJS database text cannot be loaded, or undefined when it can. */
export function lokiProblem(text: string): string | undefined {
  if (text.trim() === '') return 'the file is empty';
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    return `not valid JSON: ${(err as Error).message}`;
  }
  if (typeof parsed !== 'object' || parsed === null || !Array.isArray((parsed as { collections?: unknown }).collections)) {
    return 'not a LokiJS database: it has no "collections" list';
  }
  return undefined;
}
