import { createWriteStream, rmdirSync, unlinkSync } from 'node:fs';
import { mkdir, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import { dirname, join } from 'node:path';
import type { ContainerClient } from '@azure/storage-blob';
import { BatchError } from '../errors.js';
import type { Registry } from '../registry/registry.js';
import type { ModelDoc } from '../registry/types.js';
import { isNotFound } from '../storage/clients.js';

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
const SMALL_BLOB_BYTES = 4 * 1024 * 1024;

/**
 * Fetches `bytes` [start, end) of a blob, or all of it. Small blobs and ranges come back as bytes
 * (the scoring worker writes them where a script needs them, off the host's event loop, and the
 * built-in runner never needs a file at all); a large whole blob streams to `target`, a file in an
 * existing folder, and the result is undefined.
 */
export async function fetchBlob(
  container: ContainerClient,
  blob: string,
  target: string,
  range?: { start: number; end: number; prefix?: Buffer | undefined },
): Promise<Buffer | undefined> {
  const client = container.getBlobClient(blob);
  try {
    if (!range) {
      // One GET, resumed from where it broke off if the connection drops.
      const response = await client.download(0, undefined, { maxRetryRequests: 5 });
      const body = response.readableStreamBody;
      if (!body) throw new Error('the download returned no body');
      if ((response.contentLength ?? Infinity) <= SMALL_BLOB_BYTES) {
        const chunks: Buffer[] = [];
        for await (const chunk of body) chunks.push(chunk as Buffer);
        return Buffer.concat(chunks);
      }
      await pipeline(body, createWriteStream(target));
      return undefined;
    }
    const body = range.end > range.start ? await client.downloadToBuffer(range.start, range.end - range.start) : Buffer.alloc(0);
    return range.prefix ? Buffer.concat([range.prefix, body]) : body;
  } catch (err) {
    if (isNotFound(err)) throw new BatchError('input_not_found', `The input blob ${blob} no longer exists.`, { retryable: false });
    throw new BatchError('storage_failed', `Could not download ${blob}.`, { cause: err });
  }
}

/**
 * Removes a mini-batch's downloaded files and its folder. Deleting the known files directly is far
 * cheaper than a recursive delete; anything else left in the folder falls back to one.
 */
export async function cleanWorkDir(workDir: string, files: readonly string[]): Promise<void> {
  try {
    const folders = new Set<string>();
    for (const file of files) {
      try {
        unlinkSync(file);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      }
      if (dirname(file) !== workDir) folders.add(dirname(file));
    }
    for (const folder of folders) rmdirSync(folder);
    rmdirSync(workDir);
  } catch {
    await removeQuietly(workDir);
  }
}

export async function removeQuietly(path: string): Promise<void> {
  await rm(path, { recursive: true, force: true }).catch(() => undefined);
}
