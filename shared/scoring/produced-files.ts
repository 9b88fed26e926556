/**
 * Which files a scoring script wrote into its output folder: the folder is listed before and
 * after a run, and new or changed files are the run's products.
 */
import { readdirSync, statSync } from 'node:fs';
import { join, relative, sep } from 'node:path';

/** Relative path (with `/`) to a fingerprint of the file's size and modification time. */
export type FolderSnapshot = Map<string, string>;

/**
 * Lists the files under `root` (recursively) with their fingerprints; a missing folder is empty.
 * Synchronous: it runs on a scoring worker before and after every mini-batch, where a round trip
 * through the thread pool would cost more than the (usually empty) listing.
 */
export function snapshotFolder(root: string): FolderSnapshot {
  const snapshot: FolderSnapshot = new Map();
  let entries: string[];
  try {
    entries = readdirSync(root, { recursive: true, encoding: 'utf8' });
  } catch (err) {
    // A script may delete its own folder; nothing in it is then a product.
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return snapshot;
    throw err;
  }
  for (const entry of entries.sort()) {
    const path = join(root, entry);
    try {
      const info = statSync(path);
      if (!info.isFile()) continue;
      snapshot.set(relative(root, path).split(sep).join('/'), `${info.size}:${info.mtimeMs}`);
    } catch {
      // Deleted between listing and stat: not a product either.
    }
  }
  return snapshot;
}

/** Files in `after` that are new or changed since `before`, in name order. */
export function producedFiles(root: string, before: FolderSnapshot, after: FolderSnapshot): { localPath: string; name: string }[] {
  const files: { localPath: string; name: string }[] = [];
  for (const [name, fingerprint] of after) {
    if (before.get(name) !== fingerprint) files.push({ localPath: join(root, ...name.split('/')), name });
  }
  return files;
}
