/**
 * `npm run bench`: the batch-endpoints benchmarks. Prints a table.
 *
 * (a) ONNX: N rows in F CSV files scored with the penguin model, max_concurrency_per_instance 2,
 *     invoke → Completed, against a bare script doing the same work (2 worker threads, same model,
 *     same files from Azurite). Then the same job with `join: "all"` (every input column copied
 *     beside each prediction) against the plain job, alternating in the same host.
 * (b) Trivial scorer over 1,000 and 10,000 files: overhead per mini-batch against a bare loop that
 *     lists the same folder, downloads the files to disk and calls the same run() on them, the
 *     host's peak RSS (each scenario in a fresh host), and the time from the invoke's 202 until the
 *     first mini-batch starts and until it completes (as for (c)).
 * (c) Scale: 100,000 small files (`--c-files`), trivial scorer, mini_batch_size 10 (`--c-mini-batch-size`;
 *     1 makes 100,000 mini-batches, past the 50,000 blocks of one blob), 4 lanes, against the same
 *     bare loop with 4 loops; also the time from the invoke's 202 until the first mini-batch starts and until
 *     it completes (from logs/job.log's per-mini-batch lines, on the same clock), and a check that
 *     predictions.csv has every file's row, in mini-batch order.
 * (p) The pipeline demo (`npm run demo -- --pipeline`: prepare → score → summarize on penguin CSV
 *     files with missing values), invoke → Completed, against its three steps' code run directly
 *     on the same data: the files downloaded to a local folder, prepare.js's run(), the cleaned
 *     files scored with onnxruntime-node on 2 worker threads, summarize.js's run(). Also per
 *     step: each step's started_at → completed_at in the job view against the same work bare.
 *
 * (b) and (c) also give CPU milliseconds per mini-batch of the host (its worker threads included),
 * its Azurite and the bench process (where the bare loops run), in the best job run and the best
 * bare run: on this 2-core machine both are CPU-bound, so the overhead is mostly the difference.
 * `FNHOST_AZURITE_CENSUS=FILE` in the environment has Azurite count its requests by kind into
 * FILE (JSON) when it exits (upload, job and bare runs together).
 *
 * Each scenario runs one uncounted warm-up pair (job, bare), then alternates job and bare runs and
 * keeps the best of each. Hosts keep their state in memory unless `--data` gives each a data
 * folder (Azurite then runs as a process of its own and saves to disk, as with `fnhost start`).
 */
import { readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { BlobServiceClient, type ContainerClient } from '@azure/storage-blob';
import { Command } from 'commander';
import type { BareScoreTask } from './lib/bare-score-worker.js';
import { BatchClient, type PipelineJobView } from './lib/batch-client.js';
import { ROOT, startLocalStack, type LocalStack } from './lib/local-stack.js';
import { PIPELINE_SCRIPTS, penguinCsvsWithMissing, pipelineInvokeBody, setUpPipelineDemo, stepSeconds } from './lib/pipeline-demo.js';
import { penguinRows, toCsv, uploadFiles } from './lib/sample-data.js';
import { FEATURES } from './train-penguins.js';

const program = new Command()
  .option('--rows <n>', 'rows for (a)', (v) => Number(v), 2_000_000)
  .option('--files <n>', 'files for (a)', (v) => Number(v), 100)
  .option('--small <list>', 'file counts for (b)', (v) => v.split(',').map(Number), [1000, 10000])
  .option('--only <which>', 'a, b, c, both (a and b), pipeline, or all', 'both')
  .option('--c-files <n>', 'files for (c)', (v) => Number(v), 100_000)
  .option('--c-mini-batch-size <n>', 'mini_batch_size for (c)', (v) => Number(v), 10)
  .option('--pipeline-files <n>', 'CSV files for (p); the demo has 8', (v) => Number(v), 8)
  .option('--pipeline-rows <n>', 'rows per file for (p); the demo has 250', (v) => Number(v), 250)
  .option('--repeat <n>', 'runs of each scenario, job and bare alternating; the best of each counts', (v) => Number(v), 3)
  .option('--warmup <n>', 'job and bare runs before those, not counted (the host, Azurite and the JIT warm up)', (v) => Number(v), 1)
  .option('--cpu-prof <dir>', "write CPU profiles of each scenario's host and Azurite processes into this folder (node --cpu-prof)")
  .option('--data', 'keep state in a fresh data folder, as `fnhost start` does by default (Azurite as its own process, saving to disk), instead of in memory', false)
  .parse();
const opts = program.opts<{
  rows: number;
  files: number;
  small: number[];
  only: string;
  repeat: number;
  warmup: number;
  data: boolean;
  pipelineFiles: number;
  pipelineRows: number;
  cFiles: number;
  cpuProf?: string;
  cMiniBatchSize: number;
}>();
const SCENARIOS: Record<string, string[]> = { a: ['a'], b: ['b'], c: ['c'], both: ['a', 'b'], pipeline: ['pipeline'], all: ['a', 'b', 'c', 'pipeline'] };
const scenarios = SCENARIOS[opts.only];
if (!scenarios) program.error(`--only must be one of ${Object.keys(SCENARIOS).join(', ')}`);

/** A fresh host for a scenario: in memory, or on a new data folder removed afterwards. */
async function freshStack(): Promise<LocalStack> {
  const nodeFlags = opts.cpuProf ? ['--cpu-prof', `--cpu-prof-dir=${opts.cpuProf}`] : [];
  if (!opts.data) return startLocalStack({ nodeFlags });
  const dataDir = await mkdtemp(join(tmpdir(), 'bench-data-'));
  const stack = await startLocalStack({ dataDir, nodeFlags });
  return {
    ...stack,
    async stop() {
      await stack.stop();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

const CONTAINER = 'azureml-blobstore';
const MODEL = join(ROOT, 'scripts', 'demo', 'model', 'penguins.onnx');

/** CPU seconds (user + system, all threads) a process has used so far; 0 once it is gone. */
function cpuSeconds(pid: number | undefined): number {
  try {
    // /proc/PID/stat: the command name may hold spaces, so fields are counted after its ")".
    const fields = readFileSync(`/proc/${String(pid)}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return 0;
  }
}

/**
 * The Azurite process serving `connection` (a child of the host, or its own process with `--data`):
 * the process holding the socket that listens on its blob port (/proc/net/tcp, then each process's
 * file descriptors).
 */
function azuritePid(connection: string): number | undefined {
  const port = Number(/BlobEndpoint=https?:\/\/[^:/]+:(\d+)/.exec(connection)?.[1]);
  if (!port) return undefined;
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  const inodes = new Set<string>();
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text = '';
    try {
      text = readFileSync(table, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      // local_address is ADDR:PORT; state 0A is LISTEN; the inode is the tenth field.
      if (f[1]?.endsWith(`:${hexPort}`) && f[3] === '0A' && f[9] !== undefined) inodes.add(`socket:[${f[9]}]`);
    }
  }
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      for (const fd of readdirSync(`/proc/${entry}/fd`)) {
        if (inodes.has(readlinkSync(`/proc/${entry}/fd/${fd}`))) return Number(entry);
      }
    } catch {
      // gone meanwhile, or not ours to read
    }
  }
  return undefined;
}

/** CPU seconds so far of the host, its Azurite and this process (where the bare loops run). */
interface CpuSample {
  host: number;
  azurite: number;
  bench: number;
}

function sampleCpu(stack: LocalStack, azurite: number | undefined): CpuSample {
  const own = process.cpuUsage();
  return { host: cpuSeconds(stack.child.pid), azurite: cpuSeconds(azurite), bench: (own.user + own.system) / 1e6 };
}

function cpuSpent(before: CpuSample, after: CpuSample): CpuSample {
  return { host: after.host - before.host, azurite: after.azurite - before.azurite, bench: after.bench - before.bench };
}

function peakRssMb(pid: number | undefined): number {
  const status = readFileSync(`/proc/${String(pid)}/status`, 'utf8');
  return Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024;
}

async function setup(stack: LocalStack, name: string, deployment: Record<string, unknown>, model: { type: 'onnx' | 'custom_model'; path: string }): Promise<BatchClient> {
  const client = new BatchClient(stack.url, stack.masterKey);
  await client.put(`models/${name}/versions/1`, model);
  await client.put(`endpoints/${name}`, {});
  await client.put(`endpoints/${name}/deployments/main`, { model: `azureml:${name}:1`, ...deployment });
  await client.put(`endpoints/${name}`, { defaults: { deployment_name: 'main' } });
  return client;
}

async function timeJob(client: BatchClient, endpoint: string, path: string, settings?: Record<string, unknown>): Promise<{ seconds: number; miniBatches: number; items: number }> {
  // The job's own completed_at ends the measurement, so polling can be as slow as a real client's
  // (a 50 ms poll would itself load the host) without blurring the figure.
  const started = Date.now();
  const job = await client.invoke(endpoint, { inputs: { data: { type: 'uri_folder', path } }, ...(settings ? { settings } : {}) });
  const done = await client.waitForJob(job.id, () => undefined, 500);
  if (done.status !== 'Completed') throw new Error(`job ${job.id} ended ${done.status}: ${JSON.stringify(done.error)}`);
  const completed = Date.parse(done.completed_at ?? '');
  if (Number.isNaN(completed)) throw new Error(`job ${job.id} has no completed_at`);
  return { seconds: (completed - started) / 1000, miniBatches: done.counts.mini_batches.total, items: done.counts.items.succeeded };
}

async function bareOnnx(connection: string, prefix: string): Promise<number> {
  const t0 = performance.now();
  const blobs = await listFolder(BlobServiceClient.fromConnectionString(connection).getContainerClient(CONTAINER), prefix);
  const shares = [blobs.filter((_, i) => i % 2 === 0), blobs.filter((_, i) => i % 2 === 1)];
  await Promise.all(
    shares.map(
      (share) =>
        new Promise<void>((resolve, reject) => {
          const worker = new Worker(new URL('./bench/bare-onnx-worker.js', import.meta.url), {
            workerData: { connection, container: CONTAINER, blobs: share, model: MODEL, features: [...FEATURES] },
          });
          worker.once('message', () => resolve());
          worker.once('error', reject);
        }),
    ),
  );
  return (performance.now() - t0) / 1000;
}

/** The body of one blob in a single GET (downloadToBuffer without a count makes a HEAD first). */
async function blobBytes(container: ContainerClient, name: string): Promise<Buffer> {
  const body = (await container.getBlobClient(name).download()).readableStreamBody;
  const chunks: Buffer[] = [];
  for await (const chunk of body ?? []) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** The blobs in a folder, listed as any scorer given a folder must (the SDK's default pages). */
async function listFolder(container: ContainerClient, prefix: string): Promise<string[]> {
  const blobs: string[] = [];
  for await (const blob of container.listBlobsFlat({ prefix })) blobs.push(blob.name);
  return blobs;
}

/**
 * The bare loop for (b): what any batch scorer over a folder must do, without the framework. It
 * lists the folder; two loops (max_concurrency_per_instance 2) take mini-batches of 10 files,
 * download them (in parallel) into a local folder, call the same trivial run() on the paths, and
 * delete the files.
 */
async function bareFileLoop(connection: string, prefix: string, count: number, shape: { loops: number; miniBatchSize: number } = { loops: 2, miniBatchSize: 10 }): Promise<number> {
  const container = BlobServiceClient.fromConnectionString(connection).getContainerClient(CONTAINER);
  const scorer = (await import(pathToFileURL(join(ROOT, 'scripts', 'bench', 'trivial-scorer.js')).href)) as { run(paths: string[]): unknown[] };
  const root = await mkdtemp(join(tmpdir(), 'bench-bare-'));
  const t0 = performance.now();
  const blobs = await listFolder(container, prefix);
  if (blobs.length !== count) throw new Error(`bare loop listed ${blobs.length} of ${count} files`);
  const batches: string[][] = [];
  for (let i = 0; i < blobs.length; i += shape.miniBatchSize) batches.push(blobs.slice(i, i + shape.miniBatchSize));
  let next = 0;
  let rows = 0;
  await Promise.all(
    Array.from({ length: shape.loops }, (_, loop) => loop).map(async (loop) => {
      const dir = join(root, String(loop));
      await mkdir(dir, { recursive: true });
      while (next < batches.length) {
        const batch = batches[next++] as string[];
        const paths = await Promise.all(
          batch.map(async (blob) => {
            const path = join(dir, blob.split('/').pop() as string);
            await writeFile(path, await blobBytes(container, blob));
            return path;
          }),
        );
        rows += scorer.run(paths).length;
        await Promise.all(paths.map((p) => rm(p)));
      }
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  await rm(root, { recursive: true, force: true });
  if (rows !== blobs.length) throw new Error(`bare loop scored ${rows} of ${blobs.length} files`);
  return seconds;
}

interface Row {
  scenario: string;
  files: number;
  'mini-batches': number;
  'job s': string;
  'bare s': string;
  ratio: string;
  'overhead ms/mini-batch': string;
  /** The host's peak during the first job in the fresh host, before repeats add their history. */
  'peak RSS MB': string;
  /** (b), (c): the invoke's 202 received → the first mini-batch started, and completed. */
  '202 → first mini-batch start s'?: string;
  '202 → first mini-batch done s'?: string;
  /** (b), (c): see cpuColumns. */
  'CPU ms/mini-batch job: host, Azurite, bench'?: string;
  'bare: host, Azurite, bench'?: string;
}

function row(scenario: string, files: number, job: { seconds: number; miniBatches: number }, bare: number, peakRss: number): Row {
  return {
    scenario,
    files,
    'mini-batches': job.miniBatches,
    'job s': job.seconds.toFixed(2),
    'bare s': bare.toFixed(2),
    ratio: (job.seconds / bare).toFixed(3),
    'overhead ms/mini-batch': (((job.seconds - bare) * 1000) / job.miniBatches).toFixed(1),
    'peak RSS MB': peakRss.toFixed(0),
  };
}

interface Timed {
  seconds: number;
}

/**
 * Runs the job and the bare script alternately: `--warmup` pairs first, not counted, then
 * `--repeat` pairs. On a shared 2-core machine single runs vary by ±15%; alternating runs and
 * keeping the best of each compares the two at their least disturbed. Peak RSS is the host's after
 * its first job.
 */
async function alternate<J extends Timed, B extends Timed>(label: string, stack: LocalStack, runJob: () => Promise<J>, runBare: () => Promise<B>): Promise<{ job: J; bare: B; peakRss: number; cpu: { job: CpuSample; bare: CpuSample } }> {
  const jobs: (J & { cpu: CpuSample })[] = [];
  const bares: (B & { cpu: CpuSample })[] = [];
  let peakRss = 0;
  const warmup = Math.max(0, opts.warmup);
  const azurite = azuritePid(stack.storageConnection);
  const measured = async <T extends Timed>(run: () => Promise<T>): Promise<T & { cpu: CpuSample }> => {
    const before = sampleCpu(stack, azurite);
    const result = await run();
    return { ...result, cpu: cpuSpent(before, sampleCpu(stack, azurite)) };
  };
  for (let r = 0; r < warmup + Math.max(1, opts.repeat); r++) {
    jobs.push(await measured(runJob));
    if (r === 0) peakRss = peakRssMb(stack.child.pid);
    bares.push(await measured(runBare));
  }
  const seconds = (list: Timed[]): string => list.map((v) => v.seconds.toFixed(2)).join(', ');
  const best = <T extends Timed>(list: T[]): T => list.reduce((a, b) => (b.seconds < a.seconds ? b : a));
  console.log(`${label}: warm-up job ${seconds(jobs.slice(0, warmup))} s, bare ${seconds(bares.slice(0, warmup))} s; runs: job ${seconds(jobs.slice(warmup))} s; bare ${seconds(bares.slice(warmup))} s`);
  const job = best(jobs.slice(warmup));
  const bare = best(bares.slice(warmup));
  return { job, bare, peakRss, cpu: { job: job.cpu, bare: bare.cpu } };
}

/**
 * The CPU columns of a (b) or (c) row: CPU milliseconds per mini-batch of the host, its Azurite
 * and the bench process, in the best job run / the best bare run (the bare loop runs in the bench
 * process; the job's bench CPU is its polling).
 */
function cpuColumns(miniBatches: number, cpu: { job: CpuSample; bare: CpuSample }): Pick<Row, 'CPU ms/mini-batch job: host, Azurite, bench' | 'bare: host, Azurite, bench'> {
  const per = (c: CpuSample): string => [c.host, c.azurite, c.bench].map((s) => ((s * 1000) / miniBatches).toFixed(1)).join(', ');
  return { 'CPU ms/mini-batch job: host, Azurite, bench': per(cpu.job), 'bare: host, Azurite, bench': per(cpu.bare) };
}

/** Seconds of `work`, for the bare runs (which return only their time). */
async function timed(work: () => Promise<number>): Promise<Timed> {
  return { seconds: await work() };
}

async function scenarioA(): Promise<Row[]> {
  const stack = await freshStack();
  try {
    const rowsPerFile = Math.ceil(opts.rows / opts.files);
    const all = penguinRows(rowsPerFile, 11);
    const csv = toCsv(all);
    const files: Record<string, string> = {};
    for (let f = 0; f < opts.files; f++) files[`bench/a/p-${String(f).padStart(4, '0')}.csv`] = csv;
    await uploadFiles(stack.storageConnection, CONTAINER, '', { 'models/penguins/penguins.onnx': readFileSync(MODEL) });
    await uploadFiles(stack.storageConnection, CONTAINER, '', files);
    const client = await setup(stack, 'bench-onnx', { settings: { max_concurrency_per_instance: 2, mini_batch_size: 10 } }, { type: 'onnx', path: 'azureml://datastores/workspaceblobstore/paths/models/penguins/penguins.onnx' });
    const { job, bare, peakRss } = await alternate(
      '(a)',
      stack,
      () => timeJob(client, 'bench-onnx', 'azureml://datastores/workspaceblobstore/paths/bench/a/'),
      () => timed(() => bareOnnx(stack.storageConnection, 'bench/a/')),
    );
    const plain = row(`(a) ONNX ${(rowsPerFile * opts.files).toLocaleString('en')} rows`, opts.files, job, bare.seconds, peakRss);
    // The same job copying every input column beside each prediction (join: "all"), against the
    // plain job in the same host: what carrying the inputs costs.
    const joined = await alternate(
      '(a) join "all" / plain job',
      stack,
      () => timeJob(client, 'bench-onnx', 'azureml://datastores/workspaceblobstore/paths/bench/a/', { join: 'all' }),
      () => timeJob(client, 'bench-onnx', 'azureml://datastores/workspaceblobstore/paths/bench/a/'),
    );
    return [plain, { ...row('(a) join "all" (bare s = the plain job)', opts.files, joined.job, joined.bare.seconds, joined.peakRss), 'overhead ms/mini-batch': '-' }];
  } finally {
    await stack.stop();
  }
}

async function scenarioB(count: number): Promise<Row> {
  const stack = await freshStack();
  try {
    const files: Record<string, string> = {};
    for (let f = 0; f < count; f++) files[`bench/b${count}/f-${String(f).padStart(6, '0')}.txt`] = `item ${f}\n`;
    await uploadFiles(stack.storageConnection, CONTAINER, '', { 'code/trivial/score.js': readFileSync(join(ROOT, 'scripts', 'bench', 'trivial-scorer.js'), 'utf8'), 'models/none/model.txt': 'unused' });
    await uploadFiles(stack.storageConnection, CONTAINER, '', files);
    const client = await setup(
      stack,
      `bench-trivial-${count}`,
      { code_configuration: { code: 'azureml://datastores/workspaceblobstore/paths/code/trivial/', scoring_script: 'score.js' }, settings: { max_concurrency_per_instance: 2, mini_batch_size: 10 } },
      { type: 'custom_model', path: 'azureml://datastores/workspaceblobstore/paths/models/none/' },
    );
    const { job, bare, peakRss, cpu } = await alternate(
      `(b) ${count} files`,
      stack,
      () => timeJobToFirst(client, `bench-trivial-${count}`, `azureml://datastores/workspaceblobstore/paths/bench/b${count}/`),
      () => timed(() => bareFileLoop(stack.storageConnection, `bench/b${count}/`, count)),
    );
    return { ...row('(b) trivial scorer', count, job, bare.seconds, peakRss), ...firstColumns(job), ...cpuColumns(job.miniBatches, cpu) };
  } finally {
    await stack.stop();
  }
}

interface ScaleJobTime extends Timed {
  miniBatches: number;
  /** Seconds from the invoke's 202 until the first mini-batch started, and until one completed. */
  firstStart: number;
  firstDone: number;
  id: string;
}

/**
 * A (b) or (c) job, invoke → Completed, with the times from the invoke's 202 to the first
 * mini-batch: each mini-batch's job.log line carries when it ended and how long it ran (both from
 * the host's clock, the bench's clock).
 */
async function timeJobToFirst(client: BatchClient, endpoint: string, path: string): Promise<ScaleJobTime> {
  const invokedAt = Date.now();
  const job = await client.invoke(endpoint, { inputs: { data: { type: 'uri_folder', path } } });
  const acceptedAt = Date.now();
  const done = await client.waitForJob(job.id, () => undefined, 500);
  if (done.status !== 'Completed') throw new Error(`job ${job.id} ended ${done.status}: ${JSON.stringify(done.error)}`);
  const log = await client.output(job.id, 'logs/job.log');
  let firstStart = Infinity;
  let firstDone = Infinity;
  for (const m of log.matchAll(/^(\S+) INFO \[mini-batch \d+ attempt \d+\] completed: .* in ([\d.]+) s/gm)) {
    const end = Date.parse(m[1] as string);
    firstDone = Math.min(firstDone, end);
    firstStart = Math.min(firstStart, end - Number(m[2]) * 1000);
  }
  return {
    seconds: (Date.parse(done.completed_at ?? '') - invokedAt) / 1000,
    miniBatches: done.counts.mini_batches.total,
    firstStart: (firstStart - acceptedAt) / 1000,
    firstDone: (firstDone - acceptedAt) / 1000,
    id: job.id,
  };
}

/** The row's columns of the time to the first mini-batch. */
function firstColumns(job: ScaleJobTime): Pick<Row, '202 → first mini-batch start s' | '202 → first mini-batch done s'> {
  return { '202 → first mini-batch start s': job.firstStart.toFixed(3), '202 → first mini-batch done s': job.firstDone.toFixed(3) };
}

async function scenarioC(): Promise<Row> {
  const stack = await freshStack();
  const count = opts.cFiles;
  const miniBatchSize = opts.cMiniBatchSize;
  try {
    const names = Array.from({ length: count }, (_, f) => `f-${String(f).padStart(7, '0')}.txt`);
    const files: Record<string, string> = {};
    for (const [f, name] of names.entries()) files[`bench/c/${name}`] = `item ${f}\n`;
    await uploadFiles(stack.storageConnection, CONTAINER, '', { 'code/trivial/score.js': readFileSync(join(ROOT, 'scripts', 'bench', 'trivial-scorer.js'), 'utf8'), 'models/none/model.txt': 'unused' });
    const uploadStarted = performance.now();
    await uploadFiles(stack.storageConnection, CONTAINER, '', files);
    console.log(`(c) uploaded ${count} files in ${((performance.now() - uploadStarted) / 1000).toFixed(1)} s`);
    const client = await setup(
      stack,
      'bench-scale',
      { code_configuration: { code: 'azureml://datastores/workspaceblobstore/paths/code/trivial/', scoring_script: 'score.js' }, settings: { max_concurrency_per_instance: 4, mini_batch_size: miniBatchSize } },
      { type: 'custom_model', path: 'azureml://datastores/workspaceblobstore/paths/models/none/' },
    );
    const { job, bare, peakRss, cpu } = await alternate(
      `(c) ${count} files`,
      stack,
      () => timeJobToFirst(client, 'bench-scale', 'azureml://datastores/workspaceblobstore/paths/bench/c/'),
      () => timed(() => bareFileLoop(stack.storageConnection, 'bench/c/', count, { loops: 4, miniBatchSize })),
    );
    // Never report a time for wrong output: every file's row, in mini-batch (file name) order.
    const predictions = await client.output(job.id, 'predictions.csv');
    const lines = predictions.split('\n').filter((l) => l !== '');
    if (lines.length !== count || lines.some((line, i) => !line.includes(names[i] as string))) {
      throw new Error(`(c) predictions.csv of job ${job.id} is not every file's row in order (${lines.length} rows of ${count})`);
    }
    console.log(`(c) predictions.csv: ${count} rows in order; first mini-batch started ${job.firstStart.toFixed(3)} s and completed ${job.firstDone.toFixed(3)} s after the invoke's 202`);
    return { ...row(`(c) trivial, ${miniBatchSize}/mini-batch, 4 lanes`, count, job, bare.seconds, peakRss), ...firstColumns(job), ...cpuColumns(job.miniBatches, cpu) };
  } finally {
    await stack.stop();
  }
}

/** A command script of the pipeline demo, as the job's command steps load it. */
interface CommandScript {
  run(inputs: Record<string, unknown>, outputs: Record<string, string>, context: Record<string, unknown>): Promise<void>;
}

async function commandScript(name: string): Promise<CommandScript> {
  return (await import(pathToFileURL(join(PIPELINE_SCRIPTS, name, `${name}.js`)).href)) as CommandScript;
}

/** What a command script's run() gets as `context` (lines logged are dropped: bare runs stay quiet). */
function bareContext(stepName: string, workDir: string): Record<string, unknown> {
  const quiet = (): void => undefined;
  return { logger: { debug: quiet, info: quiet, warning: quiet, error: quiet, critical: quiet }, environment: {}, workDir, stepName, jobId: 'bare', attempt: 1 };
}

interface PipelineJobTime extends Timed {
  miniBatches: number;
  /** ms since the epoch when the invoke request was sent, to place the first step's start. */
  invokedAt: number;
  job: PipelineJobView;
}

async function timePipelineJob(client: BatchClient, endpoint: string, dataPrefix: string): Promise<PipelineJobTime> {
  // As timeJob: the job's own completed_at ends the measurement, polled at a real client's pace.
  const invokedAt = Date.now();
  const started = await client.invoke<PipelineJobView>(endpoint, pipelineInvokeBody(dataPrefix, true));
  const job = await client.waitForJob<PipelineJobView>(started.id, () => undefined, 500);
  if (job.status !== 'Completed') throw new Error(`job ${job.id} ended ${job.status}: ${JSON.stringify(job.error)}`);
  if (job.steps.some((s) => s.reused)) throw new Error(`job ${job.id} reused steps; a timed job must run them all (force_rerun)`);
  const completed = Date.parse(job.completed_at ?? '');
  if (Number.isNaN(completed)) throw new Error(`job ${job.id} has no completed_at`);
  const score = job.steps.find((s) => s.name === 'score');
  return { seconds: (completed - invokedAt) / 1000, miniBatches: score?.counts?.mini_batches.total ?? 0, invokedAt, job };
}

interface BarePipelineTime extends Timed {
  steps: { download: number; prepare: number; score: number; summarize: number };
  summary: string;
}

/**
 * The bare run of the pipeline demo: the raw files downloaded from Azurite into a local folder
 * (16 at a time), prepare.js's run() on it, the cleaned CSV files scored with onnxruntime-node on
 * two worker threads (the score step's max_concurrency_per_instance; lib/bare-score-worker.ts),
 * predictions.csv and the job.json summarize.js reads written as the score step writes them, then
 * summarize.js's run(). Nothing is uploaded: the job's writing its outputs to storage is part of
 * its overhead.
 */
async function barePipeline(connection: string, prefix: string, files: number, scripts: { prepare: CommandScript; summarize: CommandScript }): Promise<BarePipelineTime> {
  const container = BlobServiceClient.fromConnectionString(connection).getContainerClient(CONTAINER);
  const root = await mkdtemp(join(tmpdir(), 'bench-pipeline-'));
  const dirs = { raw: join(root, 'raw'), clean: join(root, 'clean'), predictions: join(root, 'predictions'), summary: join(root, 'summary'), work: join(root, 'work') };
  for (const dir of Object.values(dirs)) await mkdir(dir, { recursive: true });
  try {
    const t0 = performance.now();
    const blobs = await listFolder(container, prefix);
    if (blobs.length !== files) throw new Error(`bare pipeline listed ${blobs.length} of ${files} files`);
    for (let i = 0; i < blobs.length; i += 16) {
      await Promise.all(blobs.slice(i, i + 16).map(async (blob) => writeFile(join(dirs.raw, blob.slice(prefix.length)), await blobBytes(container, blob))));
    }
    const t1 = performance.now();
    await scripts.prepare.run({ raw_data: dirs.raw, drop_missing: true }, { clean_data: dirs.clean }, bareContext('prepare', dirs.work));
    const t2 = performance.now();
    const cleaned = (await readdir(dirs.clean)).filter((n) => n.endsWith('.csv')).sort();
    const shares = [0, 1].map((w) => cleaned.filter((_, i) => i % 2 === w).map((n) => join(dirs.clean, n)));
    const lines = await Promise.all(
      shares.map(
        (share) =>
          new Promise<string>((resolve, reject) => {
            const task: BareScoreTask = { model: MODEL, features: [...FEATURES], files: share };
            const worker = new Worker(new URL('./lib/bare-score-worker.js', import.meta.url), { workerData: task });
            worker.once('message', (text: string) => resolve(text));
            worker.once('error', reject);
          }),
      ),
    );
    await writeFile(join(dirs.predictions, 'predictions.csv'), lines.join(''));
    await writeFile(join(dirs.predictions, 'job.json'), JSON.stringify({ columns: ['row', 'prediction', 'file_name'], settings: { output_file_name: 'predictions.csv' } }));
    const t3 = performance.now();
    await scripts.summarize.run({ predictions: dirs.predictions, class_column: 'prediction' }, { summary: dirs.summary }, bareContext('summarize', dirs.work));
    const t4 = performance.now();
    const s = (a: number, b: number): number => (b - a) / 1000;
    return { seconds: s(t0, t4), steps: { download: s(t0, t1), prepare: s(t1, t2), score: s(t2, t3), summarize: s(t3, t4) }, summary: await readFile(join(dirs.summary, 'summary.json'), 'utf8') };
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

async function scenarioPipeline(): Promise<{ row: Row; steps: Record<string, string | number>[] }> {
  const stack = await freshStack();
  try {
    const client = new BatchClient(stack.url, stack.masterKey);
    const dataPrefix = 'bench/pipeline/';
    const data = penguinCsvsWithMissing(opts.pipelineFiles, opts.pipelineRows);
    // The demo's components and deployment, with force_rerun: unchanged inputs would reuse every step.
    await setUpPipelineDemo(client, stack.storageConnection, { dataPrefix, files: data.files, endpoint: 'bench-pipeline', deployment: 'steps', miniBatchSize: 2, maxConcurrency: 2, forceRerun: true });
    const scripts = { prepare: await commandScript('prepare'), summarize: await commandScript('summarize') };
    const { job, bare, peakRss } = await alternate(
      '(p) pipeline',
      stack,
      () => timePipelineJob(client, 'bench-pipeline', dataPrefix),
      () => barePipeline(stack.storageConnection, dataPrefix, opts.pipelineFiles, scripts),
    );
    // Both must have computed the same thing, or the comparison means nothing.
    const jobSummary = await client.output(job.job.id, 'summary/summary.json');
    if (JSON.stringify(JSON.parse(jobSummary)) !== JSON.stringify(JSON.parse(bare.summary))) throw new Error(`job and bare summaries differ:\n${jobSummary}\n${bare.summary}`);

    const jobSteps = stepSeconds(job.job.steps);
    const inSteps = Object.values(jobSteps).reduce<number>((a, b) => a + (b ?? 0), 0);
    const firstStart = Date.parse(job.job.steps[0]?.started_at ?? '');
    // Three decimals: the bare steps take milliseconds.
    const f = (v: number | undefined): string => (v === undefined ? '-' : v.toFixed(3));
    const stepRow = (step: string, jobS: number | undefined, bareS: number | undefined, bareDetail: string): Record<string, string | number> => ({
      step,
      'job s': f(jobS),
      'bare s': f(bareS),
      'job - bare s': jobS === undefined ? '-' : f(jobS - (bareS ?? 0)),
      'bare is': bareDetail,
    });
    const steps = [
      stepRow('prepare (command)', jobSteps['prepare'], bare.steps.download + bare.steps.prepare, `download ${f(bare.steps.download)} + run() ${f(bare.steps.prepare)}`),
      stepRow(`score (parallel, ${job.miniBatches} mini-batches)`, jobSteps['score'], bare.steps.score, '2 threads: model, parse, score; write'),
      stepRow('summarize (command)', jobSteps['summarize'], bare.steps.summarize, 'run()'),
      stepRow('invoke → prepare starts', (firstStart - job.invokedAt) / 1000, undefined, '(no such work)'),
      stepRow('between steps, finalize', job.seconds - inSteps - (firstStart - job.invokedAt) / 1000, undefined, '(no such work)'),
      stepRow('total', job.seconds, bare.seconds, ''),
    ];
    const label = `(p) pipeline demo ${data.rows.toLocaleString('en')} rows, 3 steps`;
    return { row: { ...row(label, opts.pipelineFiles, job, bare.seconds, peakRss), 'overhead ms/mini-batch': '-' }, steps };
  } finally {
    await stack.stop();
  }
}

const rows: Row[] = [];
let pipelineSteps: Record<string, string | number>[] | undefined;
if (scenarios?.includes('a')) rows.push(...(await scenarioA()));
if (scenarios?.includes('b')) for (const count of opts.small) rows.push(await scenarioB(count));
if (scenarios?.includes('c')) rows.push(await scenarioC());
if (scenarios?.includes('pipeline')) {
  const p = await scenarioPipeline();
  rows.push(p.row);
  pipelineSteps = p.steps;
}
console.log(`\nbatch-endpoints benchmark (each scenario in a fresh fnhost + Azurite${opts.data ? ' on a data folder' : ', in memory'}; job s = invoke → Completed)\n`);
console.table(rows);
if (scenarios?.includes('a') || scenarios?.includes('b')) console.log('Aims: (a) ratio <= 1.15; (b) overhead <= 5 ms per mini-batch, peak RSS < 400 MB and flat as input grows.');
if (scenarios?.includes('c')) console.log('Aims: (c) overhead <= 3 ms per mini-batch, peak RSS < 250 MB.');
if (pipelineSteps) {
  console.log("\n(p) per step: job = the step's started_at → completed_at in the best job's view; bare = the same work in the best bare run");
  console.table(pipelineSteps);
}
