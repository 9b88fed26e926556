/**
 * A command step's files on this machine: its code (cached per content), its inputs (downloaded
 * as the versions listed) and its outputs (uploaded from the folders the script wrote).
 */
import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import { cp, lstat, mkdir, readdir, stat, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { ContainerClient } from '@azure/storage-blob';
import { inOrderAtMost } from '../concurrency.js';
import { datastoreUri, encodePath } from '../data/data-uri.js';
import { BatchError } from '../errors.js';
import { ownerMetadata } from '../outputs/output-writer.js';
import { FILLED_MARKER, downloadTree, fetchBlob, fillOnce, folderContent } from '../jobs/local-files.js';
import type { DataLocation, Registry } from '../registry/registry.js';
import { isNotFound, isVersionChanged } from '../storage/clients.js';

/** Blobs downloaded (or uploaded) at once by one step, all its inputs (or outputs) together. */
const TRANSFERS_AT_ONCE = 8;

/** A location as users wrote it: the datastore URI, or the blob URL when it is another container. */
export function describeLocation(location: DataLocation): string {
  const { datastore } = location;
  if (location.container === datastore.container_name) return datastoreUri(datastore.name, location.path);
  return `${datastore.protocol}://${datastore.account_name}.blob.${datastore.endpoint}/${location.container}/${encodePath(location.path)}`;
}

/**
 * A name usable as one local folder name: the name itself when it is a plain identifier (what
 * component inputs and outputs are), else a readable stem with a hash that keeps names apart.
 */
export function localName(name: string): string {
  if (/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$/.test(name)) return name;
  const stem = name.replace(/[^A-Za-z0-9_.-]/g, '_').replace(/^[.]+/, '_').substring(0, 60);
  return `${stem}-${createHash('sha256').update(name).digest('hex').substring(0, 8)}`;
}

/** `relative` (a blob's path below a folder, "/"-separated) under `root`, or undefined if it would leave it. */
function localPathOf(root: string, relative: string): string | undefined {
  const segments = relative.split('/').filter((s) => s !== '');
  if (segments.length === 0 || segments.some((s) => s === '.' || s === '..')) return undefined;
  return join(root, ...segments);
}

function codeChanged(code: DataLocation): BatchError {
  return new BatchError(
    'scoring_setup_failed',
    `The step's code (${describeLocation(code)}) changed after the job was invoked; a job runs with the content it was invoked with. Invoke a new job to use the new code.`,
    { retryable: false },
  );
}

/**
 * The step's code folder on this machine, downloaded once per content into
 * `<cacheDir>/step-code/<content key>` (see folderContent: the same files at the same place are
 * the same key, so steps and jobs running the same code share one copy; a folder rewritten in place
 * is another key). `expected`, the key pinned when the job was invoked, must still be the content:
 * code changed since fails non-retryably. Scripts are ES modules whatever their extension.
 */
export async function localStepCode(registry: Registry, code: DataLocation, expected: string | undefined, cacheDir: string): Promise<string> {
  const container = registry.open(code);
  try {
    const content = await folderContent(registry, code, { file: false });
    if (content.files.length === 0) {
      throw new BatchError('scoring_setup_failed', `The step's code folder ${describeLocation(code)} has no files.`, { retryable: false });
    }
    if (expected !== undefined && content.key !== expected) throw codeChanged(code);
    // A blob name is any string: one with a "." or ".." segment would land outside the folder.
    const outside = content.files.find((file) => localPathOf(cacheDir, file.relative) === undefined);
    if (outside) {
      throw new BatchError('scoring_setup_failed', `The step's code folder ${describeLocation(code)} holds ${outside.blob}, a name that cannot be a local path (a "." or ".." segment).`, {
        retryable: false,
      });
    }
    const folder = join(cacheDir, 'step-code', content.key);
    await fillOnce(folder, async (into) => {
      await downloadTree(container, content.files, into);
      await writeFile(join(into, 'package.json'), JSON.stringify({ type: 'module' }));
    });
    return folder;
  } catch (err) {
    if (err instanceof BatchError) throw err;
    // A file rewritten between the listing and its download: against a pinned key that is a
    // change; without one, the next attempt lists again.
    if (isVersionChanged(err) && expected !== undefined) throw codeChanged(code);
    throw new BatchError('storage_failed', `Could not download the step's code from ${describeLocation(code)}.`, { cause: err });
  }
}

/**
 * A copy of the cached code (`cached`, from {@link localStepCode}) at `into`, for one execution:
 * scripts may write next to themselves (the scoring code's folder is the job's own for the same
 * reason), and what one run leaves there must reach neither the cache nor a step running beside
 * it. Where the file system can, the copy shares the cached files' blocks until either is written.
 */
export async function copyStepCode(cached: string, into: string): Promise<void> {
  const marker = join(cached, FILLED_MARKER);
  await cp(cached, into, { recursive: true, mode: constants.COPYFILE_FICLONE, filter: (source) => source !== marker });
}

/** A step input that is data, as the step is given it. */
export interface DataInput {
  type: 'uri_file' | 'uri_folder';
  location: DataLocation;
}

/** One blob to download for an input. */
interface InputBlob {
  input: string;
  container: ContainerClient;
  blob: string;
  target: string;
  etag: string;
  size: number;
}

/** What an input download failure means for the step, naming the input. */
function inputError(name: string, location: DataLocation, err: unknown): BatchError {
  if (err instanceof BatchError) {
    if (err.code === 'input_changed') {
      return new BatchError('input_changed', `Input '${name}' (${describeLocation(location)}) changed while the step downloaded it; a step reads each file as the version it listed.`, {
        retryable: false,
        cause: err,
      });
    }
    if (err.code === 'input_not_found') {
      return new BatchError('input_not_found', `Input '${name}' (${describeLocation(location)}) lost a file while the step downloaded it: ${err.message}`, { retryable: false, cause: err });
    }
    return err;
  }
  if (isNotFound(err)) return new BatchError('input_not_found', `Input '${name}': nothing is at ${describeLocation(location)}.`, { retryable: false, cause: err });
  return new BatchError('storage_failed', `Could not list input '${name}' at ${describeLocation(location)}.`, { cause: err });
}

/**
 * Lists a data input: a `uri_file` input's blob, or every blob under a `uri_folder` input
 * (recursively, as Azure ML mounts the whole folder), each with the ETag it has now. `into` is the
 * input's own local folder. Returns the path the script gets and the blobs to download there.
 */
async function listInput(registry: Registry, name: string, input: DataInput, into: string): Promise<{ path: string; blobs: InputBlob[] }> {
  const container = registry.open(input.location);
  const path = input.location.path;
  if (input.type === 'uri_file') {
    if (path === '' || path.endsWith('/')) {
      throw new BatchError('input_not_found', `Input '${name}' is a uri_file, but ${describeLocation(input.location)} names a folder.`, { retryable: false });
    }
    const props = await container
      .getBlobClient(path)
      .getProperties()
      .catch((err: unknown) => {
        if (isNotFound(err)) throw new BatchError('input_not_found', `Input '${name}': no file at ${describeLocation(input.location)}.`, { retryable: false, cause: err });
        throw inputError(name, input.location, err);
      });
    // The file keeps its name: scripts often go by it (its extension, at least).
    const target = join(into, basename(path));
    return { path: target, blobs: [{ input: name, container, blob: path, target, etag: props.etag ?? '', size: props.contentLength ?? 0 }] };
  }
  const content = await folderContent(registry, input.location, { file: false }).catch((err: unknown) => {
    throw inputError(name, input.location, err);
  });
  if (content.files.length === 0) {
    throw new BatchError('input_not_found', `Input '${name}': no files under ${describeLocation(input.location)}.`, { retryable: false });
  }
  const blobs = content.files.map((file) => {
    const target = localPathOf(into, file.relative);
    if (!target) {
      throw new BatchError('unprocessable', `Input '${name}': the blob ${file.blob} has a name that cannot be a local path (a "." or ".." segment).`, { retryable: false });
    }
    return { input: name, container, blob: file.blob, target, etag: file.etag, size: file.size };
  });
  return { path: into, blobs };
}

/** An input on this machine: the path the script gets, and what was downloaded for it. */
export interface LocalInput {
  path: string;
  files: number;
  bytes: number;
}

/**
 * Downloads the data inputs, each into its own folder under `root` (`<root>/<input name>/`): a
 * `uri_file` input as its file (base name kept), a `uri_folder` input as the whole folder, nested
 * folders included. Every blob is downloaded only if it still has the ETag listed: a file rewritten
 * meanwhile fails the step (`input_changed`, non-retryable) rather than give the script a mix of
 * versions. Missing data fails (`input_not_found`, non-retryable) naming the input.
 */
export async function downloadInputs(registry: Registry, inputs: Record<string, DataInput>, root: string): Promise<Record<string, LocalInput>> {
  const names = Object.keys(inputs);
  const listed = await Promise.allSettled(names.map((name) => listInput(registry, name, inputs[name] as DataInput, join(root, localName(name)))));
  const failure = listed.find((l) => l.status === 'rejected');
  if (failure) throw failure.reason;
  const lists = listed.map((l) => (l as PromiseFulfilledResult<{ path: string; blobs: InputBlob[] }>).value);
  const blobs = lists.flatMap((l) => l.blobs);
  // Once one download has failed, the step has failed: the others not started yet are skipped.
  let failed = false;
  const downloads = inOrderAtMost(
    blobs.map((b) => async (): Promise<void> => {
      if (failed) return;
      try {
        await mkdir(dirname(b.target), { recursive: true });
        // Small blobs come back as bytes; larger ones stream to the target themselves.
        const bytes = await fetchBlob(b.container, b.blob, b.target, { size: b.size, etag: b.etag });
        if (bytes) await writeFile(b.target, bytes);
      } catch (err) {
        failed = true;
        throw inputError(b.input, (inputs[b.input] as DataInput).location, err);
      }
    }),
    TRANSFERS_AT_ONCE,
  );
  // Every download has settled before this returns: none writes into a folder being removed.
  const settled = await Promise.allSettled(downloads);
  const error = settled.find((s) => s.status === 'rejected');
  if (error) throw error.reason;
  const local: Record<string, LocalInput> = {};
  names.forEach((name, n) => {
    const list = lists[n] as { path: string; blobs: InputBlob[] };
    local[name] = { path: list.path, files: list.blobs.length, bytes: list.blobs.reduce((sum, b) => sum + b.size, 0) };
  });
  return local;
}

/** A step output: where it goes, and whether it is one file or a folder. */
export interface DataOutput {
  type: 'uri_folder' | 'uri_file';
  location: DataLocation;
}

/** A file the script wrote into an output folder: its local path and its path below the folder ("/"-separated). */
export interface WrittenFile {
  path: string;
  relative: string;
  bytes: number;
}

/**
 * Every file under `folder`, nested folders included, sorted by relative path. A symbolic link to
 * a file counts as that file; one to a folder is not followed (it could lead anywhere, even back).
 */
export async function writtenFiles(folder: string): Promise<WrittenFile[]> {
  const found: WrittenFile[] = [];
  const walk = async (dir: string, prefix: string): Promise<void> => {
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      const relative = `${prefix}${entry.name}`;
      if (entry.isDirectory()) await walk(path, `${relative}/`);
      else if (entry.isFile()) found.push({ path, relative, bytes: (await lstat(path)).size });
      else if (entry.isSymbolicLink()) {
        const target = await stat(path).catch(() => undefined);
        if (target?.isFile()) found.push({ path, relative, bytes: target.size });
      }
    }
  };
  await walk(folder, '');
  return found.sort((a, b) => (a.relative < b.relative ? -1 : a.relative > b.relative ? 1 : 0));
}

/** What was uploaded for one output. */
export interface UploadedOutput {
  files: number;
  bytes: number;
  /** A uri_file output's blob: its place, or for a place that is a folder, the file the script wrote in it. */
  file?: string | undefined;
}

/** The blob each written file goes to, checked before anything is uploaded. */
function placesOf(name: string, output: DataOutput, files: readonly WrittenFile[]): { file: WrittenFile; blob: string }[] {
  const path = output.location.path;
  if (output.type === 'uri_folder') {
    const prefix = path === '' || path.endsWith('/') ? path : `${path}/`;
    return files.map((file) => ({ file, blob: `${prefix}${file.relative}` }));
  }
  const [only, ...more] = files;
  if (!only || more.length > 0) {
    const wrote = files.length === 0 ? 'nothing' : `${files.length} files (${files.map((f) => f.relative).join(', ')})`;
    throw new BatchError('unprocessable', `Output '${name}' is a uri_file: the step must write exactly one file into its output folder, and it wrote ${wrote}.`, {
      retryable: false,
    });
  }
  // A uri_file output given a folder (a place of the job's own, no path named) keeps the name the
  // script gave its file, so what reads it next sees its extension.
  return [{ file: only, blob: path === '' || path.endsWith('/') ? `${path}${only.relative}` : path }];
}

async function uploadOne(container: ContainerClient, blob: string, localPath: string, owner: string): Promise<void> {
  const client = container.getBlockBlobClient(blob);
  const options = ownerMetadata(owner);
  try {
    await client.uploadFile(localPath, options);
  } catch (err) {
    // A datastore's container may not exist yet (a new one for outputs): made on first use, as the
    // job's output container is, rather than checked before every step.
    if (!isNotFound(err)) throw err;
    await container.createIfNotExists();
    await client.uploadFile(localPath, options);
  }
}

/**
 * Uploads what the script wrote into each output's local folder (`locals[name]`): for a
 * `uri_folder` output every file, nested paths kept, under the location's folder; for a `uri_file`
 * output the one file the folder must hold, to the location's path. Every output is checked before
 * anything is uploaded, so a step that broke the rule for one output writes none.
 */
export async function uploadOutputs(registry: Registry, outputs: Record<string, DataOutput>, locals: Record<string, string>, owner: string): Promise<Record<string, UploadedOutput>> {
  const names = Object.keys(outputs);
  const planned = await Promise.all(
    names.map(async (name) => {
      const output = outputs[name] as DataOutput;
      const places = placesOf(name, output, await writtenFiles(locals[name] as string));
      return { name, output, container: registry.open(output.location), places };
    }),
  );
  const uploads = planned.flatMap(({ name, output, container, places }) =>
    places.map(({ file, blob }) => async (): Promise<void> => {
      try {
        await uploadOne(container, blob, file.path, owner);
      } catch (err) {
        throw new BatchError('storage_failed', `Could not upload ${file.relative} of output '${name}' to ${describeLocation({ ...output.location, path: blob })}.`, { cause: err });
      }
    }),
  );
  const settled = await Promise.allSettled(inOrderAtMost(uploads, TRANSFERS_AT_ONCE));
  const error = settled.find((s) => s.status === 'rejected');
  if (error) throw error.reason;
  const uploaded: Record<string, UploadedOutput> = {};
  for (const { name, output, places } of planned) {
    uploaded[name] = { files: places.length, bytes: places.reduce((sum, p) => sum + p.file.bytes, 0), ...(output.type === 'uri_file' ? { file: places[0]?.blob } : {}) };
  }
  return uploaded;
}
