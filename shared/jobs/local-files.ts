import { mkdir, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { ContainerClient } from '@azure/storage-blob';
import { BatchError } from '../errors.js';
import type { Registry } from '../registry/registry.js';
import type { ModelDoc } from '../registry/types.js';

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

export async function removeQuietly(path: string): Promise<void> {
  await rm(path, { recursive: true, force: true }).catch(() => undefined);
}
