import { createWriteStream } from 'node:fs';
import { mkdir, readdir, rename, rm, rmdir, stat, writeFile } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import { dirname, join } from 'node:path';
import type { ContainerClient } from '@azure/storage-blob';
import { BatchError } from '../errors.js';
import type { Registry } from '../registry/registry.js';
import type { ModelDoc } from '../registry/types.js';
import { isNotFound } from '../storage/clients.js';
import { fastRead } from '../storage/fast-read.js';

const MARKER = '.complete';
const inFlight = new Map<string, Promise<void>>();

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

/** Runs `fill` once per folder (across concurrent callers), writing into a temp folder first. */
async function once(folder: string, fill: (into: string) => Promise<void>): Promise<void> {
  if (await exists(join(folder, MARKER))) return;
  let pending = inFlight.get(folder);
  if (!pending) {
    pending = (async () => {
      const temp = `${folder}.tmp-${process.pid}-${Date.now()}`;
      await rm(temp, { recursive: true, force: true });
      await mkdir(temp, { recursive: true });
      await fill(temp);
      await writeFile(join(temp, MARKER), new Date().toISOString());
      await rm(folder, { recursive: true, force: true });
      await mkdir(dirname(folder), { recursive: true });
      await rename(temp, folder);
    })().finally(() => inFlight.delete(folder));
    inFlight.set(folder, pending);
  }
  await pending;
}

/** Downloads every blob under `prefix` (recursively) into `into`, keeping relative paths. */
async function downloadTree(container: ContainerClient, prefix: string, into: string): Promise<string[]> {
  const files: string[] = [];
  for await (const blob of container.listBlobsFlat({ prefix })) {
    const relative = blob.name.substring(prefix.length);
    if (relative === '' || relative.endsWith('/')) continue;
    const target = join(into, ...relative.split('/'));
    await mkdir(dirname(target), { recursive: true });
    await container.getBlobClient(blob.name).downloadToFile(target);
    files.push(relative);
  }
  return files;
}

/** The model's files on this machine, downloaded once per model version (versions are immutable). */
export async function localModel(registry: Registry, model: ModelDoc, cacheDir: string): Promise<{ modelDir: string; modelFile: string | undefined }> {
  const folder = join(cacheDir, 'models', model.name, model.version);
  const resolved = await registry.resolveData(model.path, 'model.path');
  try {
    await once(folder, async (into) => {
      const single = resolved.path !== '' && !resolved.path.endsWith('/') && (await resolved.container.getBlobClient(resolved.path).exists());
      if (single) {
        const name = resolved.path.split('/').pop() ?? 'model';
        await resolved.container.getBlobClient(resolved.path).downloadToFile(join(into, name));
      } else {
        const prefix = resolved.path === '' || resolved.path.endsWith('/') ? resolved.path : `${resolved.path}/`;
        const files = await downloadTree(resolved.container, prefix, into);
        if (files.length === 0) throw new BatchError('scoring_setup_failed', `The model ${model.name}:${model.version} has no files at ${model.path}.`);
      }
    });
  } catch (err) {
    if (err instanceof BatchError) throw err;
    throw new BatchError('storage_failed', `Could not download model ${model.name}:${model.version}.`, { cause: err });
  }
  const entries = (await readdir(folder, { recursive: true })).map(String).sort();
  const onnx = entries.find((e) => e.endsWith('model.onnx')) ?? entries.find((e) => e.endsWith('.onnx'));
  return { modelDir: folder, modelFile: onnx ? join(folder, onnx) : undefined };
}

/** A job's scoring code on this machine (per job: code folders may change between jobs). */
export async function localCode(registry: Registry, codeUri: string, jobId: string, cacheDir: string): Promise<string> {
  const folder = join(cacheDir, 'code', jobId);
  const resolved = await registry.resolveData(codeUri, 'code_configuration.code', 'uri_folder');
  try {
    await once(folder, async (into) => {
      const prefix = resolved.path === '' || resolved.path.endsWith('/') ? resolved.path : `${resolved.path}/`;
      await downloadTree(resolved.container, prefix, into);
      // Scoring scripts are ES modules whatever their extension.
      await writeFile(join(into, 'package.json'), JSON.stringify({ type: 'module' }));
    });
  } catch (err) {
    if (err instanceof BatchError) throw err;
    throw new BatchError('storage_failed', `Could not download the scoring code from ${codeUri}.`, { cause: err });
  }
  return folder;
}

/** Blobs up to this size are read whole into memory; larger ones stream to disk. */
export const SMALL_BLOB_BYTES = 4 * 1024 * 1024;

/** Bytes [start, end) of a blob (a plain GET where possible, else through the SDK). */
export async function readRange(container: ContainerClient, blob: string, start: number, end: number): Promise<Buffer> {
  if (end <= start) return Buffer.alloc(0);
  const range = { start, end };
  return (await fastRead(container, blob, { range, maxBytes: end - start })) ?? (await container.getBlobClient(blob).downloadToBuffer(start, end - start));
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
  options: { range?: { start: number; end: number; prefix?: Buffer | undefined }; inMemory?: boolean; size?: number } = {},
): Promise<Buffer | undefined> {
  const { range } = options;
  try {
    if (range) {
      const body = await readRange(container, blob, range.start, range.end);
      return range.prefix ? Buffer.concat([range.prefix, body]) : body;
    }
    const maxBytes = options.inMemory ? Number.MAX_SAFE_INTEGER : SMALL_BLOB_BYTES;
    if ((options.size ?? 0) <= maxBytes) {
      const fast = await fastRead(container, blob, { maxBytes });
      if (fast) return fast;
    }
    // One GET, resumed from where it broke off if the connection drops.
    const response = await container.getBlobClient(blob).download(0, undefined, { maxRetryRequests: 5 });
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
    if (isNotFound(err)) throw new BatchError('input_not_found', `The input blob ${blob} no longer exists.`, { retryable: false });
    throw new BatchError('storage_failed', `Could not download ${blob}.`, { cause: err });
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
