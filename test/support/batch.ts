import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { BlobServiceClient } from '@azure/storage-blob';
import { expect } from 'vitest';
import type { SplitSettings } from '../../shared/schemas/resources.js';
import { type TestAzurite, startAzurite } from './azurite.js';
import { type FaultProxy, startFaultProxy } from './fault-proxy.js';
import type { Cleanups } from './cleanups.js';
import { type FnHostProcess, PRODUCT_APP, type StartOptions, azuriteAndDataFolder, startFnHost, tempDir } from './fnhost.js';
import { waitFor } from './wait.js';

const ROOT = resolve(import.meta.dirname, '..', '..');
export const WORKSPACE_CONTAINER = 'azureml-blobstore';
import { PENGUIN_MODEL } from './penguins.js';

export { PENGUIN_MODEL };

export const ds = (path: string): string => `azureml://datastores/workspaceblobstore/paths/${path}`;

/** JSON read from a response; tests assert on its shape. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Json = any;

export interface Api {
  call(method: string, path: string, body?: unknown, headers?: Record<string, string>): Promise<{ status: number; body: Json; headers: Headers }>;
}

/** A client of the product API on a test host, with the host's master key, or with `credential` (e.g. `{ authorization: 'Bearer …' }`) instead. */
export function apiOf(host: FnHostProcess, credential: Record<string, string> = { 'x-functions-key': host.masterKey }): Api {
  return {
    async call(method, path, body, headers = {}) {
      const res = await fetch(`${host.url}/api/${path}`, {
        method,
        headers: { ...credential, ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...headers },
        ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
      });
      const text = await res.text();
      let parsed: unknown = text;
      try {
        parsed = text ? JSON.parse(text) : undefined;
      } catch {
        // keep text
      }
      return { status: res.status, body: parsed, headers: res.headers };
    },
  };
}

/** Uploads files into the workspace datastore's container. */
export async function upload(connection: string, files: Record<string, string | Buffer>): Promise<void> {
  const container = BlobServiceClient.fromConnectionString(connection).getContainerClient(WORKSPACE_CONTAINER);
  await container.createIfNotExists();
  await Promise.all(
    Object.entries(files).map(([name, content]) => {
      const body = typeof content === 'string' ? Buffer.from(content) : content;
      return container.getBlockBlobClient(name).upload(body, body.length);
    }),
  );
}

/** Deletes every blob under `prefix` in the workspace datastore's container (as a user emptying a folder would); returns how many. */
export async function deleteFolder(connection: string, prefix: string): Promise<number> {
  const container = BlobServiceClient.fromConnectionString(connection).getContainerClient(WORKSPACE_CONTAINER);
  let deleted = 0;
  for await (const blob of container.listBlobsFlat({ prefix })) {
    await container.deleteBlob(blob.name);
    deleted++;
  }
  return deleted;
}

/** A blob's metadata in the workspace datastore's container. */
export async function blobMetadata(connection: string, name: string): Promise<Record<string, string>> {
  return (await BlobServiceClient.fromConnectionString(connection).getContainerClient(WORKSPACE_CONTAINER).getBlobClient(name).getProperties()).metadata ?? {};
}

/** A blob's bytes, from the workspace datastore's container or (`container`) another, such as the work area's `batch-jobs`. */
export async function readBlob(connection: string, name: string, container = WORKSPACE_CONTAINER): Promise<Buffer> {
  return BlobServiceClient.fromConnectionString(connection).getContainerClient(container).getBlobClient(name).downloadToBuffer();
}

/**
 * Names of the blobs under `prefix` in the app's own work area (the `batch-jobs` container of
 * BATCH_TABLE_PREFIX '': plans, journals, segment parts), for tests of what a job keeps there.
 */
export async function workAreaBlobs(connection: string, prefix: string): Promise<string[]> {
  const names: string[] = [];
  for await (const blob of BlobServiceClient.fromConnectionString(connection).getContainerClient('batch-jobs').listBlobsFlat({ prefix })) names.push(blob.name);
  return names;
}

export function fixtureScript(name: string): string {
  return readFileSync(join(ROOT, 'test', 'fixtures', 'scripts', name), 'utf8');
}

export const TERMINAL = ['Completed', 'Failed', 'Canceled'];

/** Polls a job until it ends. */
export async function waitForJob(api: Api, id: string, timeoutMs = 90_000): Promise<Json> {
  return waitFor(
    async () => {
      const { body } = await api.call('GET', `jobs/${id}`);
      return TERMINAL.includes(body?.status) ? body : undefined;
    },
    { timeoutMs, intervalMs: 100, what: `job ${id}` },
  );
}

/** Registers a model, an endpoint and a deployment (made the default unless told otherwise). */
export async function deploy(
  api: Api,
  options: { endpoint: string; deployment: string; model: { name: string; version: string; type: 'onnx' | 'custom_model'; path: string }; deploymentBody?: Record<string, unknown>; makeDefault?: boolean },
): Promise<void> {
  const put = async (path: string, body: unknown): Promise<void> => {
    const res = await api.call('PUT', path, body);
    if (res.status >= 300) throw new Error(`PUT ${path}: ${res.status} ${JSON.stringify(res.body)}`);
  };
  const existing = await api.call('GET', `models/${options.model.name}/versions/${options.model.version}`);
  if (existing.status === 404) await put(`models/${options.model.name}/versions/${options.model.version}`, { type: options.model.type, path: options.model.path });
  await put(`endpoints/${options.endpoint}`, {});
  await put(`endpoints/${options.endpoint}/deployments/${options.deployment}`, {
    model: `azureml:${options.model.name}:${options.model.version}`,
    ...options.deploymentBody,
  });
  if (options.makeDefault !== false) await put(`endpoints/${options.endpoint}`, { defaults: { deployment_name: options.deployment } });
}

/** Invokes an endpoint and returns the job (202), or throws with the problem. */
export async function invoke(api: Api, endpoint: string, body: unknown, headers: Record<string, string> = {}): Promise<Json> {
  const res = await api.call('POST', `endpoints/${endpoint}/jobs`, body, headers);
  if (res.status !== 202) throw new Error(`invoke ${endpoint}: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body;
}

/** Deploys a fixture scoring script (test/fixtures/scripts) as a `custom_model` deployment (uploads `models/dummy/model.txt` too), with `split` when given. */
export async function customDeployment(
  host: FnHostProcess,
  api: Api,
  options: { endpoint: string; deployment: string; script: string; settings?: Record<string, unknown>; split?: SplitSettings; makeDefault?: boolean },
): Promise<void> {
  const codeDir = `code/${options.endpoint}-${options.deployment}-${Date.now().toString(36)}/`;
  await upload(host.storageConnection, { [`${codeDir}score.js`]: fixtureScript(options.script), 'models/dummy/model.txt': 'a model file the custom scripts ignore' });
  await deploy(api, {
    endpoint: options.endpoint,
    deployment: options.deployment,
    model: { name: 'dummy', version: '1', type: 'custom_model', path: ds('models/dummy/') },
    deploymentBody: { code_configuration: { code: ds(codeDir), scoring_script: 'score.js' }, settings: options.settings ?? {}, ...(options.split ? { split: options.split } : {}) },
    ...(options.makeDefault === undefined ? {} : { makeDefault: options.makeDefault }),
  });
}

/** Uploads text files under `prefix`, the i-th with i + 1 lines; returns the folder's URI. */
export async function textFiles(host: FnHostProcess, prefix: string, names: string[]): Promise<string> {
  const files: Record<string, string> = {};
  names.forEach((n, i) => {
    files[`${prefix}${n}`] = Array.from({ length: i + 1 }, (_, k) => `line ${k}`).join('\n') + '\n';
  });
  await upload(host.storageConnection, files);
  return ds(prefix);
}

/** Calls the API and expects `status`; returns the body. The failure message shows the body. */
export async function expectStatus(api: Api, method: string, path: string, body: unknown, status: number, headers: Record<string, string> = {}): Promise<Json> {
  const res = await api.call(method, path, body, headers);
  expect(res.status, `${method} ${path}: ${JSON.stringify(res.body)}`).toBe(status);
  return res.body;
}

/** The fields a problem+json body names: each of `errors[].field` (400s), and `field` (a 404 names the field that referred to what is missing). */
export function problemFields(body: Json): string[] {
  const listed = ((body?.errors as { field?: unknown }[] | undefined) ?? []).map((e) => e.field);
  return [...listed, body?.field].filter((f): f is string => typeof f === 'string');
}

/** Calls the API and expects a problem+json answer with `status`, naming `field` when given; returns the body. */
export async function expectProblem(api: Api, method: string, path: string, body: unknown, status: number, field?: string): Promise<Json> {
  const res = await api.call(method, path, body);
  expect(res.status, `${method} ${path}: ${JSON.stringify(res.body)}`).toBe(status);
  expect(res.headers.get('content-type')).toContain('application/problem+json');
  if (field !== undefined) expect(problemFields(res.body), JSON.stringify(res.body)).toContain(field);
  return res.body;
}

/** A job's output file as text, through `GET /api/jobs/{id}/outputs/{file}` (throws unless 200). */
export async function jobOutput(host: FnHostProcess, jobId: string, file: string): Promise<string> {
  const res = await fetch(`${host.url}/api/jobs/${jobId}/outputs/${file}`, { headers: { 'x-functions-key': host.masterKey } });
  if (res.status !== 200) throw new Error(`GET outputs/${file} of ${jobId}: ${res.status}`);
  return res.text();
}

export interface ProductHostOptions extends Omit<StartOptions, 'appDir' | 'env'> {
  /** Set BATCH_PROGRESS_INTERVAL_SECONDS '0' (default true); false leaves the app's own interval. */
  immediateProgress?: boolean;
}

/**
 * fnhost serving this app (PRODUCT_APP), and a client of its API with the master key. Defaults, each
 * overridden by `env`: AzureWebJobsStorage 'UseDevelopmentStorage=true' (the host starts Azurite, in
 * memory or in `dataDir`; `storageConnection` replaces it) and BATCH_PROGRESS_INTERVAL_SECONDS '0'
 * (progress written at once; `immediateProgress: false` leaves it out). Other options go to
 * startFnHost as given. The caller stops the host.
 */
export async function startProductHost(env: Record<string, string> = {}, options: ProductHostOptions = {}): Promise<{ host: FnHostProcess; api: Api }> {
  const { immediateProgress = true, ...start } = options;
  const defaults: Record<string, string> = { AzureWebJobsStorage: 'UseDevelopmentStorage=true', ...(immediateProgress ? { BATCH_PROGRESS_INTERVAL_SECONDS: '0' } : {}) };
  const host = await startFnHost({ ...start, appDir: PRODUCT_APP, env: { ...defaults, ...env } });
  return { host, api: apiOf(host) };
}

/**
 * For tests that kill the product app (SIGKILL) and start it again on the same state: an Azurite of
 * the test's own and a data folder (azuriteAndDataFolder, removed by `cleanups`), and `start(port)`,
 * which starts startProductHost(env, options) on them; after a kill, pass the killed host's port so
 * the URLs the test holds stay valid. The caller stops or kills each host it starts.
 */
export async function restartableProductApp(
  cleanups: Cleanups,
  prefix: string,
  env: Record<string, string> = {},
  options: ProductHostOptions = {},
): Promise<{ storage: TestAzurite; dataDir: string; start: (port?: number) => Promise<{ host: FnHostProcess; api: Api }> }> {
  const { storage, dataDir } = await azuriteAndDataFolder(cleanups, prefix);
  return { storage, dataDir, start: (port) => startProductHost(env, { ...options, dataDir, storageConnection: storage.connectionString, port }) };
}

/**
 * Like restartableProductApp, with all of the host's storage reached through a fault proxy
 * (fault-proxy.ts) in front of the test's Azurite, stopped by `cleanups`: the test fails or holds
 * the requests it names, then kills and restarts the host on the same state.
 */
export async function restartableProductAppBehindProxy(
  cleanups: Cleanups,
  prefix: string,
  env: Record<string, string> = {},
): Promise<{ storage: TestAzurite; dataDir: string; proxy: FaultProxy; start: (port?: number) => Promise<{ host: FnHostProcess; api: Api }> }> {
  const { storage, dataDir } = await azuriteAndDataFolder(cleanups, prefix);
  const proxy = await startFaultProxy(storage.connectionString);
  cleanups.push(() => proxy.stop());
  return { storage, dataDir, proxy, start: (port) => startProductHost(env, { dataDir, storageConnection: proxy.connectionString, port }) };
}

/**
 * A scoring script that returns each file of its mini-batch parsed as JSON, in order, after waiting
 * SLOW_MS (an environment variable of the deployment, default 0) milliseconds.
 */
export const ECHO_JSON_SCRIPT = `
import { readFile } from 'node:fs/promises';
export function init() {}
export async function run(miniBatch) {
  await new Promise((r) => setTimeout(r, Number(process.env.SLOW_MS ?? 0)));
  const out = [];
  for (const file of miniBatch) out.push(JSON.parse(await readFile(file, 'utf8')));
  return out;
}
`;

/**
 * startProductHost with the defaults, and the penguin model (`models/penguins/penguins.onnx`) and a
 * placeholder custom model (`models/dummy/model.txt`) uploaded.
 */
export async function startBatchHost(): Promise<{ host: FnHostProcess; api: Api }> {
  const started = await startProductHost();
  await upload(started.host.storageConnection, {
    'models/penguins/penguins.onnx': readFileSync(PENGUIN_MODEL),
    'models/dummy/model.txt': 'a model file the custom scripts ignore',
  });
  return started;
}

/**
 * The product app (startProductHost) with all of its storage reached through a fault proxy
 * (fault-proxy.ts) over an Azurite of its own, for tests that fail the storage requests they name:
 * bookkeeping retried quickly (BATCH_BOOKKEEPING_RETRY_MS '100', BATCH_BOOKKEEPING_ATTEMPTS '3'), a
 * model cache folder of its own (BATCH_CACHE_DIR, named from `cachePrefix`), and the placeholder
 * custom model `models/dummy/model.txt` uploaded. `env` adds to or overrides these. `stop()` stops
 * the host, the proxy and Azurite, and removes the cache folder; a failed start undoes itself.
 */
export async function startProductHostBehindProxy(
  env: Record<string, string>,
  cachePrefix: string,
): Promise<{ host: FnHostProcess; api: Api; storage: TestAzurite; proxy: FaultProxy; stop: () => Promise<void> }> {
  const cache = tempDir(cachePrefix);
  let storage: TestAzurite | undefined;
  let proxy: FaultProxy | undefined;
  let host: FnHostProcess | undefined;
  const stop = async (): Promise<void> => {
    await host?.stop();
    await proxy?.stop();
    await storage?.stop();
    cache.remove();
  };
  try {
    storage = await startAzurite();
    proxy = await startFaultProxy(storage.connectionString);
    const started = await startProductHost({ BATCH_CACHE_DIR: cache.path, BATCH_BOOKKEEPING_RETRY_MS: '100', BATCH_BOOKKEEPING_ATTEMPTS: '3', ...env }, { storageConnection: proxy.connectionString });
    host = started.host;
    await upload(storage.connectionString, { 'models/dummy/model.txt': 'unused' });
    return { ...started, storage, proxy, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
