/**
 * A whole command step against real storage (Azurite): code and inputs downloaded, the script run
 * in a worker thread (compiled under dist/: build first with `npx tsc -p tsconfig.json`), outputs
 * uploaded, the work folder removed. Steps' scripts are uploaded as blobs, as users' code is.
 */
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BlobServiceClient, ContainerClient, type ContainerListBlobsOptions } from '@azure/storage-blob';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AppConfig, loadConfig } from '../../../shared/config.js';
import { folderContent } from '../../../shared/jobs/local-files.js';
import { type DataLocation, Registry } from '../../../shared/registry/registry.js';
import { type CommandStepOptions, type CommandStepResult, runCommandStep } from '../../../shared/steps/command-step.js';
import { startAzurite } from '../../support/azurite.js';
import { assertBuilt } from '../../support/compiled.js';
import { uniqueName } from '../../support/ports.js';

/** The step's script: reads its inputs, writes a folder output (nested) and a single-file output. */
const MAIN = `
import { readFile, readdir, stat, writeFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { describe } from './lib/describe.js';

export async function run(inputs, outputs, context) {
  if (inputs.mode === 'throw') throw Object.assign(new Error('the script gave up'), { retryable: false });
  const names = (await readdir(inputs.images, { recursive: true, withFileTypes: true }))
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath ?? e.path, e.name).substring(inputs.images.length + 1).split('\\\\').join('/'))
    .sort();
  const sizes = {};
  for (const name of names) sizes[name] = (await stat(join(inputs.images, name))).size;
  const table = await readFile(inputs.table, 'utf8');
  await writeFile(join(outputs.report, 'summary.json'), JSON.stringify({ table, tableName: inputs.table.split(/[\\\\/]/).pop(), sizes, threshold: inputs.threshold, optional: inputs.optional ?? null, workDir: context.workDir }));
  await mkdir(join(outputs.report, 'nested', 'deep'), { recursive: true });
  await writeFile(join(outputs.report, 'nested', 'deep', 'copy.csv'), table);
  await writeFile(join(outputs.model, 'model.txt'), describe(inputs.threshold));
  if (inputs.mode === 'two-models') await writeFile(join(outputs.model, 'extra.txt'), 'one too many');
  context.logger.info('wrote ' + names.length + ' sizes');
}
`;
const DESCRIBE = `export function describe(threshold) { return 'model at threshold ' + threshold; }\n`;
/** Above the 4 MB that are read into memory: this one streams to disk. */
const BIG = Buffer.alloc(5 * 1024 * 1024 + 3, 7);

let storage: { connectionString: string; stop: () => Promise<void> };
let config: AppConfig;
let registry: Registry;
let ws: ContainerClient;
const cacheDir = mkdtempSync(join(tmpdir(), 'command-step-'));
let executions = 0;

function at(path: string): DataLocation {
  return { datastore: registry.workspaceDatastore(), container: config.workspaceContainer, path };
}

async function put(blob: string, content: string | Buffer): Promise<void> {
  await ws.getBlockBlobClient(blob).upload(content, Buffer.byteLength(content));
}

async function text(blob: string): Promise<string> {
  return (await ws.getBlobClient(blob).downloadToBuffer()).toString('utf8');
}

async function blobsUnder(prefix: string): Promise<string[]> {
  const names: string[] = [];
  for await (const blob of ws.listBlobsFlat({ prefix })) names.push(blob.name);
  return names.sort();
}

/** A step over the standard data, with a work folder of its own; `overrides` replace any option. */
function step(out: string, overrides: Partial<CommandStepOptions> = {}): CommandStepOptions {
  return {
    registry,
    code: at('steps/code/'),
    entryScript: 'main.js',
    inputs: {
      table: { type: 'uri_file', location: at('data/table.csv') },
      images: { type: 'uri_folder', location: at('data/images') },
      threshold: { type: 'literal', value: 0.5 },
      optional: undefined,
    },
    outputs: {
      report: { type: 'uri_folder', location: at(`results/${out}/report/`) },
      model: { type: 'uri_file', location: at(`results/${out}/model/model.txt`) },
    },
    environment: {},
    timeoutMs: 60_000,
    workDir: join(cacheDir, 'work', `step-${++executions}`),
    cacheDir,
    jobId: 'job-1',
    stepName: 'train',
    attempt: 1,
    ...overrides,
  };
}

function failed(result: CommandStepResult): string {
  expect(result.status).toBe('failed');
  expect(result.retryable).toBe(false);
  expect(result.outputs).toEqual({ report: { files: 0, bytes: 0 }, model: { files: 0, bytes: 0 } });
  return result.error ?? '';
}

beforeAll(async () => {
  assertBuilt('shared/steps', 'shared');
  storage = await startAzurite();
  config = loadConfig({ AzureWebJobsStorage: storage.connectionString, BATCH_TABLE_PREFIX: uniqueName('t').replace(/[^a-z0-9]/g, '') });
  registry = new Registry({ config });
  ws = BlobServiceClient.fromConnectionString(storage.connectionString).getContainerClient(config.workspaceContainer);
  await ws.createIfNotExists();
  await put('steps/code/main.js', MAIN);
  await put('steps/code/lib/describe.js', DESCRIBE);
  await put('data/table.csv', 'x,y\n1,2\n');
  await put('data/images/one.txt', 'one');
  await put('data/images/a/b/two.txt', 'two!');
  await put('data/images/a/big.bin', BIG);
});

afterAll(async () => {
  await storage?.stop();
  rmSync(cacheDir, { recursive: true, force: true });
});

describe('runCommandStep (Azurite)', () => {
  it('downloads the inputs (a nested folder included), runs the script and uploads its outputs to the right blobs', async () => {
    const t0 = Date.parse('2026-01-02T03:04:05.000Z');
    let calls = 0;
    // The first reading starts the step; every later one is 7 s on.
    const now = (): Date => new Date(calls++ === 0 ? t0 : t0 + 7000);
    const options = step('run-1', { now, codeContent: (await folderContent(registry, at('steps/code/'), { file: false })).key });
    const result = await runCommandStep(options);
    expect(result).toMatchObject({ status: 'completed', retryable: false, seconds: 7 });
    expect(result.error).toBeUndefined();

    expect(await blobsUnder('results/run-1/')).toEqual(['results/run-1/model/model.txt', 'results/run-1/report/nested/deep/copy.csv', 'results/run-1/report/summary.json']);
    const summary = JSON.parse(await text('results/run-1/report/summary.json')) as { table: string; tableName: string; sizes: Record<string, number>; threshold: number; optional: null; workDir: string };
    expect(summary).toMatchObject({ table: 'x,y\n1,2\n', tableName: 'table.csv', threshold: 0.5, optional: null });
    expect(summary.sizes).toEqual({ 'a/b/two.txt': 4, 'a/big.bin': BIG.length, 'one.txt': 3 });
    expect(await text('results/run-1/report/nested/deep/copy.csv')).toBe('x,y\n1,2\n');
    expect(await text('results/run-1/model/model.txt')).toBe('model at threshold 0.5');
    const summaryBytes = Buffer.byteLength(await text('results/run-1/report/summary.json'));
    expect(result.outputs).toEqual({ report: { files: 2, bytes: summaryBytes + 8 }, model: { files: 1, bytes: 22, file: 'results/run-1/model/model.txt' } });

    const logged = result.logs.map((l) => `${l.level}: ${l.message}`);
    expect(logged).toEqual([
      'info: input \'table\': 1 file, 8 bytes from azureml://datastores/workspaceblobstore/paths/data/table.csv',
      `info: input 'images': 3 files, ${BIG.length + 7} bytes from azureml://datastores/workspaceblobstore/paths/data/images`,
      'info: wrote 3 sizes',
      `info: output 'report': 2 files, ${summaryBytes + 8} bytes to azureml://datastores/workspaceblobstore/paths/results/run-1/report/`,
      'info: output \'model\': 1 file, 22 bytes to azureml://datastores/workspaceblobstore/paths/results/run-1/model/model.txt',
    ]);
    expect(result.logs[0]?.time).toBe('2026-01-02T03:04:12.000Z');

    // The work folder (inputs, outputs, the script's scratch folder) is gone; the code stays cached by content.
    expect(summary.workDir.startsWith(options.workDir)).toBe(true);
    expect(existsSync(options.workDir)).toBe(false);
    expect(readdirSync(join(cacheDir, 'step-code'))).toEqual([options.codeContent]);
  });

  it('downloads a code folder once per content, however many steps run it', async () => {
    const before = readdirSync(join(cacheDir, 'step-code'));
    const results = await Promise.all([step('run-2a'), step('run-2b')].map((o) => runCommandStep(o)));
    expect(results.map((r) => r.status)).toEqual(['completed', 'completed']);
    expect(readdirSync(join(cacheDir, 'step-code'))).toEqual(before);
    expect(await text('results/run-2b/model/model.txt')).toBe('model at threshold 0.5');
  });

  it('runs each execution on its own copy of the code: what a script writes next to itself reaches neither the cache nor the next run', async () => {
    // Fails if an earlier run's file is beside it, then leaves one there.
    await put(
      'steps/code-4/main.js',
      "import { existsSync, writeFileSync } from 'node:fs';\n" +
        'export function run() {\n' +
        "  const beside = new URL('./left-behind.txt', import.meta.url);\n" +
        "  if (existsSync(beside)) throw new Error('an earlier run left a file beside the script');\n" +
        "  writeFileSync(beside, 'mine');\n" +
        '}\n',
    );
    const code = at('steps/code-4/');
    const key = (await folderContent(registry, code, { file: false })).key;
    for (const out of ['run-9a', 'run-9b']) {
      const result = await runCommandStep(step(out, { code, codeContent: key, inputs: {}, outputs: {} }));
      expect(result).toMatchObject({ status: 'completed', retryable: false, outputs: {} });
    }
    expect(readdirSync(join(cacheDir, 'step-code', key)).sort()).toEqual(['.complete', 'main.js', 'package.json']);
  });

  it('fails, uploading nothing, when a uri_file output holds more than one file', async () => {
    const options = step('run-3');
    options.inputs['mode'] = { type: 'literal', value: 'two-models' };
    const error = failed(await runCommandStep(options));
    expect(error).toBe("Output 'model' is a uri_file: the step must write exactly one file into its output folder, and it wrote 2 files (extra.txt, model.txt).");
    expect(await blobsUnder('results/run-3/')).toEqual([]);
    expect(existsSync(options.workDir)).toBe(false);
  });

  it('reports a script that fails, uploading nothing', async () => {
    const options = step('run-4');
    options.inputs['mode'] = { type: 'literal', value: 'throw' };
    const result = await runCommandStep(options);
    expect(failed(result)).toBe('the script gave up');
    expect(result.logs.some((l) => l.level === 'error' && l.message.startsWith('run() failed: Error: the script gave up'))).toBe(true);
    expect(await blobsUnder('results/run-4/')).toEqual([]);
    expect(existsSync(options.workDir)).toBe(false);
  });

  it('fails non-retryably, naming the input, when an input has no data', async () => {
    const noFolder = step('run-5', { inputs: { images: { type: 'uri_folder', location: at('data/nothing-here/') } } });
    expect(failed(await runCommandStep(noFolder))).toBe("Input 'images': no files under azureml://datastores/workspaceblobstore/paths/data/nothing-here/.");
    expect(existsSync(noFolder.workDir)).toBe(false);
    const noFile = step('run-5', { inputs: { table: { type: 'uri_file', location: at('data/missing.csv') } } });
    expect(failed(await runCommandStep(noFile))).toBe("Input 'table': no file at azureml://datastores/workspaceblobstore/paths/data/missing.csv.");
    expect(existsSync(noFile.workDir)).toBe(false);
  });

  it('fails non-retryably when an input file is rewritten between the listing and its download', async () => {
    await put('rewrite/images/one.txt', 'first version');
    await put('rewrite/images/deep/two.txt', 'two');
    const rewriting = new RewritingRegistry(config, storage.connectionString, async () => {
      await put('rewrite/images/deep/two.txt', 'second version');
    });
    const options = step('run-6', { registry: rewriting });
    options.inputs['images'] = { type: 'uri_folder', location: at('rewrite/images/') };
    const result = await runCommandStep(options);
    expect(rewriting.rewrites).toBe(1);
    expect(failed(result)).toBe(
      "Input 'images' (azureml://datastores/workspaceblobstore/paths/rewrite/images/) changed while the step downloaded it; a step reads each file as the version it listed.",
    );
    expect(result.logs.at(-1)).toMatchObject({ level: 'error', message: result.error });
    expect(await blobsUnder('results/run-6/')).toEqual([]);
    expect(existsSync(options.workDir)).toBe(false);
  });

  it('fails non-retryably when the code changed after the job pinned its content', async () => {
    await put('steps/code-2/main.js', 'export function run() {}\n');
    const pinned = (await folderContent(registry, at('steps/code-2/'), { file: false })).key;
    await put('steps/code-2/main.js', 'export function run() { /* changed */ }\n');
    const options = step('run-7', { code: at('steps/code-2/'), codeContent: pinned });
    const error = failed(await runCommandStep(options));
    expect(error).toBe(
      "The step's code (azureml://datastores/workspaceblobstore/paths/steps/code-2/) changed after the job was invoked; a job runs with the content it was invoked with. Invoke a new job to use the new code.",
    );
    expect(existsSync(options.workDir)).toBe(false);
    expect(readdirSync(join(cacheDir, 'step-code'))).not.toContain(pinned);
  });

  it('times out, keeping the logs, and removes the work folder', async () => {
    await put('steps/code-3/slow.js', "export async function run(i, o, context) { context.logger.info('waiting'); setInterval(() => {}, 1000); await new Promise(() => {}); }\n");
    const options = step('run-8', { code: at('steps/code-3/'), entryScript: 'slow.js', timeoutMs: 500 });
    const result = await runCommandStep(options);
    expect(result).toMatchObject({ status: 'timeout', retryable: true, outputs: { report: { files: 0, bytes: 0 }, model: { files: 0, bytes: 0 } } });
    expect(result.logs.map((l) => l.message)).toContain('waiting');
    expect(existsSync(options.workDir)).toBe(false);
  });
});

/**
 * The registry, except that listing a folder under `rewrite/` rewrites a blob there once the
 * listing is complete: the download that follows finds a newer version than the one listed.
 */
class RewritingRegistry extends Registry {
  rewrites = 0;
  readonly #connection: string;
  readonly #rewrite: () => Promise<void>;

  constructor(config: AppConfig, connection: string, rewrite: () => Promise<void>) {
    super({ config });
    this.#connection = connection;
    this.#rewrite = rewrite;
  }

  override open(location: DataLocation): ContainerClient {
    if (!location.path.startsWith('rewrite/')) return super.open(location);
    // Runs once a listing is complete (an arrow function: `this` stays this registry).
    const listingDone = async (): Promise<void> => {
      this.rewrites++;
      await this.#rewrite();
    };
    return new (class extends ContainerClient {
      override listBlobsFlat(options?: ContainerListBlobsOptions): ReturnType<ContainerClient['listBlobsFlat']> {
        const inner = super.listBlobsFlat(options);
        async function* listed(): AsyncGenerator<Awaited<ReturnType<typeof inner.next>>['value']> {
          for await (const blob of inner) yield blob;
          await listingDone();
        }
        return Object.assign(listed(), { byPage: inner.byPage.bind(inner) }) as unknown as ReturnType<ContainerClient['listBlobsFlat']>;
      }
    })(this.#connection, location.container);
  }
}
