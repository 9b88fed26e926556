import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, readdir, rename, rm, rmdir, stat, writeFile } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import { dirname, join } from 'node:path';
import type { ContainerClient } from '@azure/storage-blob';
import { BatchError } from '../errors.js';
import type { DataLocation, Registry } from '../registry/registry.js';
import type { ModelDoc } from '../registry/types.js';
import { isNotFound, isVersionChanged } from '../storage/clients.js';
import { fastRead, quotedEtag } from '../storage/fast-read.js';

/** The file a folder filled by {@link fillOnce} holds once it is complete (not one of its files). */
export const FILLED_MARKER = '.complete';
const inFlight = new Map<string, Promise<void>>();

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * Runs `fill` once per folder (across concurrent callers), writing into a temp folder first. Also
 * used for other content-keyed folders (a command step's code: shared/steps/step-files.ts).
 */
export async function fillOnce(folder: string, fill: (into: string) => Promise<void>): Promise<void> {
  if (await exists(join(folder, FILLED_MARKER))) return;
  let pending = inFlight.get(folder);
  if (!pending) {
    pending = (async () => {
      const temp = `${folder}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
      await mkdir(temp, { recursive: true });
      try {
        await fill(temp);
      } catch (err) {
        await rm(temp, { recursive: true, force: true }).catch(() => undefined);
        throw err;
      }
      await writeFile(join(temp, FILLED_MARKER), new Date().toISOString());
      await rm(folder, { recursive: true, force: true });
      await mkdir(dirname(folder), { recursive: true });
      await rename(temp, folder);
    })().finally(() => inFlight.delete(folder));
    inFlight.set(folder, pending);
  }
  await pending;
}

/** A blob of a model or code folder as listed: its path below the folder, its ETag and size. */
interface TreeBlob {
  blob: string;
  relative: string;
  etag: string;
  size: number;
}

/** Every blob under `prefix` (recursively), with the ETag that identifies its content. */
async function listTree(container: ContainerClient, prefix: string): Promise<TreeBlob[]> {
  const files: TreeBlob[] = [];
  for await (const blob of container.listBlobsFlat({ prefix })) {
    const relative = blob.name.substring(prefix.length);
    if (relative === '' || relative.endsWith('/')) continue;
    files.push({ blob: blob.name, relative, etag: blob.properties.etag ?? '', size: blob.properties.contentLength ?? 0 });
  }
  return files.sort((a, b) => (a.relative < b.relative ? -1 : a.relative > b.relative ? 1 : 0));
}

/**
 * Downloads the listed blobs into `into`, each only if it still has the listed ETag: the folder
 * then holds exactly the content its cache key names. A blob changed since the listing fails the
 * download (retryable), and the next attempt lists again.
 */
export async function downloadTree(container: ContainerClient, files: readonly TreeBlob[], into: string): Promise<void> {
  for (const file of files) {
    const target = join(into, ...file.relative.split('/'));
    await mkdir(dirname(target), { recursive: true });
    await container.getBlobClient(file.blob).downloadToFile(target, 0, undefined, { conditions: file.etag ? { ifMatch: file.etag } : {} });
  }
}

/**
 * What a folder of files is, as a cache key: a hash of where it is and of every file's path, size
 * and ETag. A model registered again under the same name and version, a folder rewritten in place,
 * or the same path on another account all get another key; the same content always the same one.
 */
function contentKey(container: ContainerClient, files: readonly TreeBlob[]): string {
  // The account and container by name: a URL's host and port can differ for the same container
  // (an emulator restarted on other ports), and account names are unique.
  const hash = createHash('sha256').update(`${container.accountName}/${container.containerName}`);
  for (const f of files) hash.update(`\n${f.relative}\n${f.size}\n${f.etag}`);
  return hash.digest('hex').substring(0, 32);
}

/** What a model or code folder holds, as listed: its files, and the key that names that content. */
export interface FolderContent {
  files: TreeBlob[];
  /** See {@link contentKey}. */
  key: string;
}

/**
 * Lists what a location holds: the blob itself when it names one (a single-file model), else every
 * blob under it as a folder. Empty when nothing is there.
 */
export async function folderContent(registry: Registry, location: DataLocation, options: { file?: boolean } = {}): Promise<FolderContent> {
  const container = registry.open(location);
  const path = location.path;
  let files: TreeBlob[] = [];
  if (options.file !== false && path !== '' && !path.endsWith('/')) {
    try {
      const props = await container.getBlobClient(path).getProperties();
      files = [{ blob: path, relative: path.substring(path.lastIndexOf('/') + 1), etag: props.etag ?? '', size: props.contentLength ?? 0 }];
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
  }
  if (files.length === 0) files = await listTree(container, path === '' || path.endsWith('/') ? path : `${path}/`);
  return { files, key: contentKey(container, files) };
}

function changed(what: string): BatchError {
  return new BatchError('scoring_setup_failed', `${what} changed after the job was invoked; a job runs with the content it was invoked with. Invoke a new job to use the new content.`, { retryable: false });
}

/**
 * The model's files on this machine, downloaded once per content (see {@link contentKey}; never per
 * name and version, which can be reused: a model version deleted and registered again elsewhere is
 * other content). `location` and `expected` are the job's copies of where the model was and what
 * it held at invoke: a model rewritten since fails the job's mini-batches rather than mix models.
 */
export async function localModel(registry: Registry, model: ModelDoc, location: DataLocation, expected: string | undefined, cacheDir: string): Promise<{ modelDir: string; modelFile: string | undefined }> {
  const container = registry.open(location);
  let folder: string;
  try {
    const content = await folderContent(registry, location);
    if (content.files.length === 0) throw new BatchError('scoring_setup_failed', `The model ${model.name}:${model.version} has no files at ${model.path}.`);
    if (expected !== undefined && content.key !== expected) throw changed(`The model ${model.name}:${model.version} (${model.path})`);
    folder = join(cacheDir, 'models', content.key);
    await fillOnce(folder, (into) => downloadTree(container, content.files, into));
  } catch (err) {
    if (err instanceof BatchError) throw err;
    if (isPreconditionFailed(err) && expected !== undefined) throw changed(`The model ${model.name}:${model.version} (${model.path})`);
    throw new BatchError('storage_failed', `Could not download model ${model.name}:${model.version}.`, { cause: err });
  }
  const entries = (await readdir(folder, { recursive: true })).map(String).filter((e) => e !== FILLED_MARKER).sort();
  const onnx = entries.find((e) => e.endsWith('model.onnx')) ?? entries.find((e) => e.endsWith('.onnx'));
  return { modelDir: folder, modelFile: onnx ? join(folder, onnx) : undefined };
}

/** The folder {@link localCode} fills with a job's (or run's, `jobId` a run scope) scoring code. */
export function localCodeFolder(cacheDir: string, jobId: string): string {
  return join(cacheDir, 'code', jobId);
}

/**
 * A job's scoring code on this machine, in a folder of the job's own (scripts may write next to
 * themselves), checked against the content the job was invoked with (`expected`).
 */
export async function localCode(registry: Registry, location: DataLocation, codeUri: string, expected: string | undefined, jobId: string, cacheDir: string): Promise<string> {
  const folder = localCodeFolder(cacheDir, jobId);
  const container = registry.open(location);
  try {
    await fillOnce(folder, async (into) => {
      const content = await folderContent(registry, location, { file: false });
      if (expected !== undefined && content.key !== expected) throw changed(`The scoring code (${codeUri})`);
      await downloadTree(container, content.files, into);
      // Scoring scripts are ES modules whatever their extension.
      await writeFile(join(into, 'package.json'), JSON.stringify({ type: 'module' }));
    });
  } catch (err) {
    if (err instanceof BatchError) throw err;
    if (isPreconditionFailed(err) && expected !== undefined) throw changed(`The scoring code (${codeUri})`);
    throw new BatchError('storage_failed', `Could not download the scoring code from ${codeUri}.`, { cause: err });
  }
  return folder;
}

function isPreconditionFailed(err: unknown): boolean {
  return (err as { statusCode?: number }).statusCode === 412;
}

/** Blobs up to this size are read whole into memory; larger ones stream to disk. */
export const SMALL_BLOB_BYTES = 4 * 1024 * 1024;

/** Bytes [start, end) of a blob (a plain GET where possible, else through the SDK). */
async function readRange(container: ContainerClient, blob: string, start: number, end: number, etag: string | undefined): Promise<Buffer> {
  if (end <= start) return Buffer.alloc(0);
  const range = { start, end };
  return (
    (await fastRead(container, blob, { range, maxBytes: end - start, etag })) ??
    (await container.getBlobClient(blob).downloadToBuffer(start, end - start, { conditions: etag ? { ifMatch: quotedEtag(etag) } : {} }))
  );
}

/**
 * What a failed input read means for its item: not there, changed since it was listed, or storage
 * trouble. Decided by status: a conditional read of a blob that does not exist may be answered 412
 * (the condition names a version no blob has) as well as 404, so a 412 is followed by one
 * unconditional look: 404 then means the file is not there (never there, as a file-list input
 * naming a missing file, or deleted since), anything else that it was rewritten.
 */
async function inputError(container: ContainerClient, blob: string, err: unknown): Promise<BatchError> {
  if (err instanceof BatchError) return err;
  const notThere = (): BatchError => new BatchError('input_not_found', `The input file ${blob} was not found (it is not in storage).`, { retryable: false });
  if (isNotFound(err)) return notThere();
  if (isVersionChanged(err)) {
    const exists = await container
      .getBlobClient(blob)
      .getProperties()
      .then(
        () => true,
        (lookup: unknown) => !isNotFound(lookup),
      );
    if (!exists) return notThere();
    return new BatchError('input_changed', `The input blob ${blob} was rewritten after the job listed it; a job scores the files as they were when it started. Invoke a new job to score the new content.`, {
      retryable: false,
    });
  }
  return new BatchError('storage_failed', `Could not download ${blob}.`, { cause: err });
}

/** Bytes [start, end) of the listed version (`etag`) of a blob; failures as {@link fetchBlob}'s. */
export async function readInputRange(container: ContainerClient, blob: string, start: number, end: number, etag: string | undefined): Promise<Buffer> {
  try {
    return await readRange(container, blob, start, end, etag);
  } catch (err) {
    throw await inputError(container, blob, err);
  }
}

/**
 * Fetches a blob, or bytes [start, end) of it (after `prefix`, a CSV header line). Small blobs and
 * ranges come back as bytes (the scoring worker writes them where a script needs them, off the
 * host's event loop, and the built-in runner never needs a file at all); a large whole blob streams
 * to `target`, a file in an existing folder, and the result is undefined, unless `inMemory`.
 * `size`, the blob's size when listed, spares large blobs a first attempt at reading into memory.
 */
export async function fetchBlob(
  container: ContainerClient,
  blob: string,
  target: string,
  options: { range?: { start: number; end: number; prefix?: Buffer | undefined }; inMemory?: boolean; size?: number; etag?: string | undefined } = {},
): Promise<Buffer | undefined> {
  const { range, etag } = options;
  try {
    if (range) {
      const body = await readRange(container, blob, range.start, range.end, etag);
      return range.prefix ? Buffer.concat([range.prefix, body]) : body;
    }
    const maxBytes = options.inMemory ? Number.MAX_SAFE_INTEGER : SMALL_BLOB_BYTES;
    if ((options.size ?? 0) <= maxBytes) {
      const fast = await fastRead(container, blob, { maxBytes, etag });
      if (fast) return fast;
    }
    // One GET, resumed from where it broke off if the connection drops.
    const response = await container.getBlobClient(blob).download(0, undefined, { maxRetryRequests: 5, conditions: etag ? { ifMatch: quotedEtag(etag) } : {} });
    const body = response.readableStreamBody;
    if (!body) throw new Error('the download returned no body');
    if ((response.contentLength ?? Infinity) <= maxBytes) {
      const chunks: Buffer[] = [];
      for await (const chunk of body) chunks.push(chunk as Buffer);
      return Buffer.concat(chunks);
    }
    await mkdir(dirname(target), { recursive: true });
    await pipeline(body, createWriteStream(target));
    return undefined;
  } catch (err) {
    throw await inputError(container, blob, err);
  }
}

/**
 * Removes the files this thread downloaded for a mini-batch and their folders (the scoring worker
 * removes the ones it wrote), or with `everything` the whole folder, whoever wrote in it.
 */
export async function cleanWorkDir(workDir: string, files: readonly string[], options: { everything?: boolean } = {}): Promise<void> {
  if (options.everything) {
    await removeQuietly(workDir);
    return;
  }
  if (files.length === 0) return;
  await Promise.all(files.map((file) => rm(file, { force: true })));
  const folders = new Set<string>();
  for (const file of files) {
    for (let folder = dirname(file); folder.startsWith(workDir); folder = dirname(folder)) folders.add(folder);
  }
  // Deepest first; a folder still holding something (a script's own file) is left for the job's end.
  for (const folder of [...folders].sort((a, b) => b.length - a.length)) await rmdir(folder).catch(() => undefined);
}

export async function removeQuietly(path: string): Promise<void> {
  await rm(path, { recursive: true, force: true }).catch(() => undefined);
}
