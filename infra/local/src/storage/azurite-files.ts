import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { FnHostError } from '../errors.js';

/** Azurite keeps its metadata (blobs, blocks, queues, tables, extents) in these LokiJS files. */
const LOKI_FILE = /^__azurite_db_.*\.json$/;

/**
 * Checks Azurite's LokiJS databases in `location` before Azurite is started on them. Azurite would
 * stop at a file that is not valid JSON with a bare parser message that names no file, and it
 * reads an empty file as an error too; either way the user must learn which file it is. Nothing
 * is repaired: a data folder whose storage cannot be read is not started, never started empty.
 */
export function checkAzuriteDatabases(location: string): void {
  if (!existsSync(location)) return;
  for (const name of readdirSync(location).filter((n) => LOKI_FILE.test(n)).sort()) {
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
