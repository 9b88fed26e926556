/**
 * Which files a scoring script wrote into its output folder: the folder is listed before and
 * after a run, and new or changed files are the run's products.
 */
import { readdir, stat } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';

/** Relative path (with `/`) to a fingerprint of the file's size and modification time. */
export type FolderSnapshot = Map<string, string>;

/** Lists the files under `root` (recursively) with their fingerprints; a missing folder is empty. */
export async function snapshotFolder(root: string): Promise<FolderSnapshot> {
  const snapshot: FolderSnapshot = new Map();
  let entries: string[];
  try {
    entries = await readdir(root, { recursive: true });
  } catch (err) {
    // A script may delete its own folder; nothing in it is then a product.
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return snapshot;
    throw err;
  }
  for (const entry of entries.sort()) {
    const path = join(root, entry);
    try {
      const info = await stat(path);
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
