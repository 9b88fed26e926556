/**
 * Local files into the workspace datastore, and output folders out of a datastore, as `az ml`
 * does: the CLI reaches the datastore's storage account itself (the API serves no uploads), with a
 * connection string of that account (`--storage-connection-string`, AZURE_STORAGE_CONNECTION_STRING,
 * or the profile; fnhost prints its own at start) or else the user's Entra identity
 * (@azure/identity's DefaultAzureCredential: `az login`, environment, managed identity).
 *
 * Where an upload goes is keyed by its content, as Azure ML's `LocalUpload/{hash}/{name}`: the same
 * files give the same place, so uploading again rewrites nothing a running job reads (a blob that
 * is already there with the same MD5 is left alone), and other content never lands on it.
 */
import { createHash } from 'node:crypto';
import { createReadStream, readdirSync, readFileSync, statSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { basename, dirname, join, relative, sep } from 'node:path';
import type { BlobServiceClient, ContainerClient } from '@azure/storage-blob';
import cliProgress from 'cli-progress';
import { WORKSPACE_DATASTORE } from '../../shared/registry/registry.js';
import { datastoreUri, parseDataUri } from '../../shared/data/data-uri.js';
import type { ApiClient } from './client.js';
import { CliError } from './errors.js';

/** The folder uploads go under, as Azure ML names it. */
export const UPLOAD_FOLDER = 'LocalUpload';

interface DatastoreView {
  name: string;
  account_name: string;
  container_name: string;
  endpoint: string;
  protocol: string;
}

interface LocalFile {
  /** Path relative to the uploaded folder, with `/` (the file's own name for a single file). */
  rel: string;
  abs: string;
  size: number;
  md5: Buffer;
}

/** A local file or folder (its files, recursively, in name order). */
function localFiles(path: string): { files: LocalFile[]; folder: boolean } {
  let stat;
  try {
    stat = statSync(path);
  } catch {
    throw new CliError(`${path}: no such file or folder.`);
  }
  const describe = (abs: string, rel: string): LocalFile => {
    const content = readFileSync(abs);
    return { rel, abs, size: content.length, md5: createHash('md5').update(content).digest() };
  };
  if (stat.isFile()) return { files: [describe(path, basename(path))], folder: false };
  const files = readdirSync(path, { recursive: true, withFileTypes: true })
    .filter((d) => d.isFile())
    .map((d) => join(d.parentPath, d.name))
    .sort()
    .map((abs) => describe(abs, relative(path, abs).split(sep).join('/')));
  if (files.length === 0) throw new CliError(`${path}: the folder holds no files; there is nothing to upload.`);
  return { files, folder: true };
}

/** The content key of an upload: every file's relative name and MD5 (so a rename is new content too). */
function contentKey(files: LocalFile[]): string {
  const hash = createHash('sha256');
  for (const f of files) hash.update(`${f.rel}\0${f.md5.toString('hex')}\n`);
  return hash.digest('hex').substring(0, 32);
}

/** Opens datastores' containers with the user's credentials; one per datastore name. */
export class DatastoreAccess {
  readonly #containers = new Map<string, Promise<ContainerClient>>();

  constructor(
    readonly api: ApiClient,
    readonly options: { progress: boolean },
  ) {}

  container(name: string): Promise<ContainerClient> {
    let found = this.#containers.get(name);
    if (!found) {
      found = this.#open(name);
      this.#containers.set(name, found);
    }
    return found;
  }

  async #open(name: string): Promise<ContainerClient> {
    const datastore = await this.api.get<DatastoreView>(`datastores/${encodeURIComponent(name)}`);
    const { BlobServiceClient } = await import('@azure/storage-blob');
    const connection = this.api.connection.storageConnectionString;
    let service: BlobServiceClient;
    if (connection !== undefined) {
      service = BlobServiceClient.fromConnectionString(connection);
      if (service.accountName !== datastore.account_name) {
        throw new CliError(`The storage connection string is for account '${service.accountName}', but datastore '${name}' is in account '${datastore.account_name}'.`);
      }
    } else {
      const { DefaultAzureCredential } = await import('@azure/identity');
      service = new BlobServiceClient(`${datastore.protocol}://${datastore.account_name}.blob.${datastore.endpoint}`, new DefaultAzureCredential());
    }
    const container = service.getContainerClient(datastore.container_name);
    // The app's own container may not exist yet on a fresh local host; creating it needs rights
    // on the account that uploading does not, so a refusal here is left to the upload to report.
    await container.createIfNotExists().catch(() => undefined);
    return container;
  }

  /**
   * Uploads a local file or folder to the workspace datastore (skipping blobs already there with
   * the same MD5) and answers with its `azureml://` URI: a folder's ends with `/`.
   */
  async upload(localPath: string): Promise<{ uri: string; type: 'uri_file' | 'uri_folder'; files: number; bytes: number }> {
    const { files, folder } = localFiles(localPath);
    const prefix = `${UPLOAD_FOLDER}/${contentKey(files)}/${basename(localPath.replace(/[/\\]+$/, ''))}`;
    const container = await this.container(WORKSPACE_DATASTORE);
    const total = files.reduce((n, f) => n + f.size, 0);
    const bar = this.options.progress
      ? new cliProgress.SingleBar(
          { format: `Uploading ${localPath} {bar} {percentage}% | {value}/{total} bytes | {files} files`, stream: process.stderr, noTTYOutput: true, notTTYSchedule: 2000, hideCursor: true },
          cliProgress.Presets.shades_classic,
        )
      : undefined;
    bar?.start(total, 0, { files: `0/${files.length}` });
    let done = 0;
    let filesDone = 0;
    const credited = new Map<string, number>();
    try {
      const queue = [...files];
      const worker = async (): Promise<void> => {
        for (let file = queue.shift(); file; file = queue.shift()) {
          const blob = container.getBlockBlobClient(folder ? `${prefix}/${file.rel}` : prefix);
          const existing = await blob.getProperties().catch((err: unknown) => {
            if ((err as { statusCode?: number }).statusCode === 404) return undefined;
            throw err;
          });
          const same = existing?.contentMD5 !== undefined && Buffer.from(existing.contentMD5).equals(file.md5);
          if (!same) {
            const abs = file.abs;
            await blob.uploadStream(createReadStream(abs), 4 * 1024 * 1024, 4, {
              blobHTTPHeaders: { blobContentMD5: file.md5 },
              onProgress: ({ loadedBytes }) => {
                done += loadedBytes - (credited.get(abs) ?? 0);
                credited.set(abs, loadedBytes);
                bar?.update(done);
              },
            });
          }
          done += file.size - (credited.get(file.abs) ?? 0);
          credited.set(file.abs, file.size);
          filesDone += 1;
          bar?.update(done, { files: `${filesDone}/${files.length}` });
        }
      };
      await Promise.all(Array.from({ length: Math.min(4, files.length) }, worker));
    } catch (err) {
      throw new CliError(`Upload of ${localPath} failed: ${(err as Error).message.split('\n')[0] ?? ''}`);
    } finally {
      bar?.stop();
    }
    return { uri: datastoreUri(WORKSPACE_DATASTORE, folder ? `${prefix}/` : prefix), type: folder ? 'uri_folder' : 'uri_file', files: files.length, bytes: total };
  }

  /** The files under a datastore folder URI, relative to it (for downloads of outputs whose file names only storage knows). */
  async listFolder(uri: string): Promise<string[]> {
    const parsed = parseDataUri(uri, 'path');
    if (parsed.kind !== 'datastore') throw new CliError(`Cannot list ${uri}: only azureml://datastores/... folders can be listed.`);
    const container = await this.container(parsed.datastore);
    const prefix = parsed.path === '' || parsed.path.endsWith('/') ? parsed.path : `${parsed.path}/`;
    const names: string[] = [];
    for await (const blob of container.listBlobsFlat({ prefix })) names.push(blob.name.substring(prefix.length));
    return names.filter((n) => n !== '' && !n.endsWith('/'));
  }
}

/** Makes the folder a downloaded file goes into. */
export async function ensureParent(file: string): Promise<void> {
  await mkdir(dirname(file), { recursive: true });
}
