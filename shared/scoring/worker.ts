/**
 * The piscina worker module of the scoring runtime. Each worker thread serves one ScorerSpec
 * (its `workerData`) and initialises once, lazily on its first task: environment, own output
 * folder, the ONNX session and/or the scoring script's `init(context)`. Tasks are mini-batches.
 */
import { mkdirSync, rmSync, rmdirSync, writeFileSync } from 'node:fs';
import { mkdir, readdir } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { basename, dirname, isAbsolute, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { format } from 'node:util';
import { threadId, workerData } from 'node:worker_threads';
import type ort from 'onnxruntime-node';
import { move, transferableSymbol, valueSymbol } from 'piscina';
import { errorMessage } from '../errors.js';
import { type FolderSnapshot, producedFiles, snapshotFolder } from './produced-files.js';
import { type ColumnsDecision, type ColumnsProposal, proposeColumns, rowJoinOf, settledColumns } from './columns.js';
import type { ArrivalEvent, LogEntry, ScoringContext, WorkerEvent, WorkerReply, WorkerTask } from './protocol.js';
import { levelRank } from './protocol.js';
import { exportedFunction, installScriptConsole } from './script-thread.js';
import { type EncodedRows, RowEncoder, describeFailedItem, encodeScriptRows, outputFormat, scriptResultRows } from './rows.js';
import type { LogLevel, ScorerSpec, ScoringItem } from './types.js';

const spec = workerData as ScorerSpec;
const threshold = levelRank(spec.loggingLevel);

/** The task whose logs are being collected; logs made between tasks wait for the next one. */
let current: { entries: LogEntry[]; port: WorkerTask['port'] } | undefined;
const between: LogEntry[] = [];

function log(level: LogLevel, args: unknown[]): void {
  if (levelRank(level) < threshold) return;
  const entry: LogEntry = { level, message: format(...args), time: new Date().toISOString() };
  if (!current) {
    between.push(entry);
    return;
  }
  current.entries.push(entry);
  // Streamed too, so the runtime still has the logs of a run it must abandon at the timeout.
  current.port.postMessage({ type: 'log', entry } satisfies WorkerEvent);
}

const logger = installScriptConsole(log);

/** An error whose message is the whole story (no stack needed) and which must not be retried. */
class SetupError extends Error {
  readonly retryable = false;
}

/** A streamed task's download failed: the caller reports that error, not this one. */
class DownloadError extends Error {}

/** When each item of a task is here. */
interface Arrivals {
  /**
   * Resolves when item `index` is here: with its bytes if it came in memory and this worker does
   * not need files, otherwise once its file is in place. Rejects if the mini-batch's downloads failed.
   */
  ready(index: number): Promise<Buffer | undefined>;
  /** Resolves when every item is here. */
  all(): Promise<void>;
  /** Stops listening and removes the files this worker wrote (the task is over). */
  stop(): void;
}

/** `first` and the folders below it down to `last` (what `mkdirSync(last, { recursive })` made). */
function foldersBetween(first: string, last: string): string[] {
  const out: string[] = [];
  for (let folder = last; folder.length >= first.length; folder = dirname(folder)) {
    out.push(folder);
    if (folder === first) break;
  }
  return out;
}

const ARRIVED: Arrivals = { ready: () => Promise.resolve(undefined), all: () => Promise.resolve(), stop: () => undefined };

/**
 * Follows a streamed task's {@link ArrivalEvent}s; a task that is not streamed has everything
 * already. Scripts are handed paths, so bytes that arrive for them are written to the item's file
 * here, on the worker, rather than on the host's event loop.
 */
function arrivals(task: WorkerTask): Arrivals {
  if (!task.streamed) return ARRIVED;
  const needsFiles = spec.scriptPath !== undefined;
  const written: string[] = [];
  // Folders this task made for its files, removed with them (deepest first) when it ends.
  const folders: string[] = [];
  const made = new Set<string>();
  const waits = task.items.map(() => {
    let settle: { resolve(bytes: Buffer | undefined): void; reject(err: Error): void } = { resolve: () => undefined, reject: () => undefined };
    const promise = new Promise<Buffer | undefined>((resolve, reject) => (settle = { resolve, reject }));
    // Nobody may be waiting when a download fails; that must not count as an unhandled rejection.
    promise.catch(() => undefined);
    return { promise, ...settle };
  });
  const arrived = (index: number, data: Uint8Array | undefined): void => {
    const wait = waits[index];
    const item = task.items[index];
    if (!wait || !item) return;
    // Structured cloning delivers a plain Uint8Array; the Buffer view shares its memory.
    const bytes = data ? Buffer.from(data.buffer, data.byteOffset, data.byteLength) : undefined;
    if (!bytes || !needsFiles) {
      wait.resolve(bytes);
      return;
    }
    try {
      const folder = dirname(item.localPath);
      if (!made.has(folder)) {
        const first = mkdirSync(folder, { recursive: true });
        made.add(folder);
        if (first !== undefined) folders.push(...foldersBetween(first, folder));
      }
      writeFileSync(item.localPath, bytes);
      written.push(item.localPath);
      wait.resolve(undefined);
    } catch (err) {
      wait.reject(new DownloadError(`could not write ${item.name} to local disk: ${errorMessage(err)}`));
    }
  };
  const onMessage = (event: ArrivalEvent): void => {
    if (event.type === 'abort') {
      for (const wait of waits) wait.reject(new DownloadError(`an input of this mini-batch could not be downloaded: ${event.error}`));
      return;
    }
    if (event.type === 'ready') for (const item of event.items) arrived(item.index, item.bytes);
  };
  task.port.on('message', onMessage);
  return {
    ready: (index) => waits[index]?.promise ?? Promise.resolve(undefined),
    all: async () => {
      await Promise.all(waits.map((w) => w.promise));
    },
    stop: () => {
      task.port.off('message', onMessage);
      for (const path of written) rmSync(path, { force: true });
      // A folder still holding something (a file the host streamed there, or one the script
      // left) stays for the host to clear.
      for (const folder of folders.sort((a, b) => b.length - a.length)) {
        try {
          rmdirSync(folder);
        } catch {
          // not empty, or gone already
        }
      }
    },
  };
}

interface Scorer {
  /** The folder whose new files are the run's products (scripts only). */
  outputDir: string | undefined;
  /** Runs the scorer's own code: what it throws is the mini-batch's failure. */
  invoke(items: ScoringItem[], arrived: Arrivals): Promise<unknown>;
  /**
   * The runtime's part, turning invoke's output into rows of the job's format: what it throws is a
   * bug of ours, except a {@link ColumnsError} (the host could not settle the job's columns: retry).
   */
  rows(output: unknown, task: WorkerTask, arrived: Arrivals): Promise<EncodedRows> | EncodedRows;
}

/** The host could not settle the job's columns (storage trouble): the mini-batch may be run again. */
class ColumnsError extends Error {}

/** The job's columns for these results: asked of the host when it decides them (see columns.ts). */
function askColumns(task: WorkerTask, proposal: ColumnsProposal): Promise<ColumnsDecision> {
  if (!task.columns) return Promise.resolve({ columns: proposal.proposed });
  const settled = settledColumns(task.knownColumns, proposal);
  if (settled) return Promise.resolve(settled);
  return new Promise((resolve, reject) => {
    const onMessage = (event: ArrivalEvent): void => {
      if (event.type !== 'columns') return;
      task.port.off('message', onMessage);
      if ('error' in event) reject(new ColumnsError(`could not settle the job's columns: ${event.error}`));
      else resolve({ columns: event.columns });
    };
    task.port.on('message', onMessage);
    task.port.postMessage({ type: 'columns', ...proposal } satisfies WorkerEvent);
  });
}

async function modelPath(): Promise<string> {
  if (spec.modelFile) return isAbsolute(spec.modelFile) ? spec.modelFile : join(spec.modelDir, spec.modelFile);
  const candidates = (await readdir(spec.modelDir, { recursive: true })).filter((f) => f.toLowerCase().endsWith('.onnx')).sort();
  const [only, ...more] = candidates;
  if (only === undefined) throw new SetupError(`the model folder has no .onnx file`);
  if (more.length > 0) throw new SetupError(`the model folder has several .onnx files (${candidates.join(', ')}); name one as the model file`);
  return join(spec.modelDir, only);
}

function scriptResults(output: unknown): unknown[] {
  if (output === undefined || output === null) return [];
  if (Array.isArray(output)) return output as unknown[];
  if (typeof output === 'object' && Symbol.iterator in output) return Array.from(output as Iterable<unknown>);
  throw new SetupError(`run() must return an array (one element per succeeded file), it returned ${typeof output === 'object' ? 'an object' : `a ${typeof output}`}`);
}

let ready: Promise<Scorer> | undefined;
/** The output folder as it was after the previous task; new files since are the next task's products. */
let known: FolderSnapshot = new Map();

async function initialise(): Promise<Scorer> {
  const format = outputFormat(spec.rows?.fileName ?? '');
  for (const [name, value] of Object.entries(spec.environment)) process.env[name] = value;
  const outputDir = join(spec.outputDir, `worker-${threadId}`);
  await mkdir(outputDir, { recursive: true });
  const context: ScoringContext = { modelDir: spec.modelDir, outputDir, logger, environment: { ...spec.environment }, workerId: threadId };

  let session: ort.InferenceSession | undefined;
  if (spec.kind === 'onnx') {
    // Loaded only here, so script-only workers start without the native runtime.
    const { default: ort } = await import('onnxruntime-node');
    const path = await modelPath();
    const threads = Math.max(1, Math.floor(availableParallelism() / Math.max(1, spec.maxConcurrency)));
    try {
      // Workers share the machine's cores, so each session gets its share, not all of them.
      // Native error logs are silenced: a failing run reaches the item's failure reason instead.
      session = await ort.InferenceSession.create(path, { intraOpNumThreads: threads, interOpNumThreads: 1, logSeverityLevel: 4 });
    } catch (err) {
      throw new SetupError(`could not load the ONNX model ${basename(path)}: ${errorMessage(err)}`);
    }
    context.session = session;
    context.ort = ort;
  }

  if (spec.scriptPath) {
    // Files already there come from an earlier process (thread ids repeat after a restart), not from this worker.
    known = snapshotFolder(outputDir);
    let module: Record<string, unknown>;
    try {
      module = (await import(pathToFileURL(spec.scriptPath).href)) as Record<string, unknown>;
    } catch (err) {
      logger.error('could not load the scoring script:', err);
      throw new SetupError(`could not load the scoring script ${basename(spec.scriptPath)}: ${errorMessage(err)}`);
    }
    const init = exportedFunction(module, 'init');
    const run = exportedFunction(module, 'run');
    if (!run) throw new SetupError(`the scoring script ${basename(spec.scriptPath)} does not export a run(miniBatch, context) function`);
    if (init) {
      try {
        await init(context);
      } catch (err) {
        logger.error('init() failed:', err);
        throw new SetupError(`init() failed: ${errorMessage(err)}`);
      }
    }
    logger.debug(`worker ${threadId} initialised the scoring script ${basename(spec.scriptPath)}`);
    return {
      outputDir,
      invoke: async (items, arrived) => {
        // run() gets the whole mini-batch at once, as in Azure ML.
        await arrived.all();
        return scriptResults(await run(items.map((i) => i.localPath), context));
      },
      rows: async (output, task) => {
        const results = output as unknown[];
        // Only rows can fix the job's columns: a mini-batch that returned none has nothing to say.
        const decision = results.length > 0 ? await askColumns(task, proposeColumns(results)) : { columns: [] };
        const result = scriptResultRows(results, task.items, decision.columns);
        for (const warning of result.warnings) logger.warning(warning);
        const encoded = encodeScriptRows(new RowEncoder(format, result.columns), result, task.items.length);
        return { ...encoded, columns: result.columns, succeeded: result.succeeded, failed: result.failed };
      },
    };
  }

  if (!session) throw new SetupError('a custom model needs a scoring script (code_configuration.scoring_script)');
  const { OnnxRunner } = await import('./onnx-runner.js');
  const runner = new OnnxRunner(session, logger, { format, join: rowJoinOf(spec.rows ?? {}) });
  logger.info(`worker ${threadId} loaded the model: ${runner.describe()}`);
  return {
    outputDir: undefined,
    // The runner turns every data or model problem into a failed item, so whatever escapes it is a bug.
    invoke: () => Promise.resolve(undefined),
    // Each file is parsed as soon as it is in place, while the rest still download.
    rows: (_output, task, arrived) => runner.score(task.items, { ready: (index) => arrived.ready(index), columns: (proposal) => askColumns(task, proposal) }),
  };
}

function seconds(started: number): number {
  return Math.round(performance.now() - started) / 1000;
}

/** The reply with its rows' bytes transferred to the main thread rather than copied. */
function transferred(reply: WorkerReply): WorkerReply {
  if (reply.status !== 'completed' || reply.data.byteLength === 0) return reply;
  // piscina unwraps this on the main thread: the caller receives `reply` itself.
  return move({ [transferableSymbol]: [reply.data.buffer], [valueSymbol]: reply }) as unknown as WorkerReply;
}

/** Scores one mini-batch on this worker. */
export default async function scoreTask(task: WorkerTask): Promise<WorkerReply> {
  return transferred(await scoreOne(task));
}

async function scoreOne(task: WorkerTask): Promise<WorkerReply> {
  const started = performance.now();
  const entries = between.splice(0);
  current = { entries, port: task.port };
  const post = (event: WorkerEvent): void => task.port.postMessage(event);
  const arrived = arrivals(task);
  try {
    if (!ready) {
      post({ type: 'phase', phase: 'init' });
      ready = initialise();
    }
    let scorer: Scorer;
    try {
      scorer = await ready;
    } catch (err) {
      if (task.warmup) {
        between.unshift(...entries);
        return { status: 'failed', error: errorMessage(err), retryable: false, logs: [], seconds: seconds(started) };
      }
      // The same failure for every run on this worker: init is not tried again.
      return { status: 'failed', error: errorMessage(err), retryable: false, logs: entries, seconds: seconds(started) };
    }
    if (task.warmup) {
      // What init logged belongs to the first mini-batch this worker runs.
      between.unshift(...entries);
      return { status: 'completed', data: new Uint8Array(0), columns: [], succeeded: 0, failed: [], producedFiles: [], logs: [], seconds: seconds(started) };
    }

    post({ type: 'phase', phase: 'run' });
    let output: unknown;
    let failure: WorkerReply | undefined;
    try {
      output = await scorer.invoke(task.items, arrived);
    } catch (err) {
      if (!(err instanceof SetupError || err instanceof DownloadError)) logger.error('run() failed:', err);
      const retryable = !(typeof err === 'object' && err !== null && (err as { retryable?: unknown }).retryable === false);
      failure = { status: 'failed', error: errorMessage(err), retryable, logs: entries, seconds: seconds(started) };
    }
    try {
      let produced: { localPath: string; name: string }[] = [];
      if (scorer.outputDir) {
        const after = snapshotFolder(scorer.outputDir);
        produced = producedFiles(scorer.outputDir, known, after);
        // Taken after failed runs too: a failed run's files are dropped, its retry writes them again.
        known = after;
      }
      if (failure) return failure;
      let result: EncodedRows;
      try {
        result = await scorer.rows(output, task, arrived);
      } catch (err) {
        if (err instanceof ColumnsError) return { status: 'failed', error: err.message, retryable: true, logs: entries, seconds: seconds(started) };
        if (spec.kind !== 'script') throw err;
        // What run() returned cannot be written (a circular value, a toJSON that throws): the
        // script's mistake, reported and retried as run()'s own failures are, not as ours.
        const error = `run() returned a result that cannot be written as a row: ${errorMessage(err)}`;
        logger.error(error);
        return { status: 'failed', error, retryable: true, logs: entries, seconds: seconds(started) };
      }
      // The job's log names every failed item too, beside errors.jsonl.
      for (const failed of result.failed) logger.warning(`item failed: ${describeFailedItem(failed)}`);
      return {
        status: 'completed',
        // TextEncoder gives the bytes their own ArrayBuffer (never a shared pool slab), so they can move.
        data: new TextEncoder().encode(result.text),
        columns: result.columns,
        itemBytes: result.itemBytes,
        succeeded: result.succeeded,
        failed: result.failed,
        producedFiles: produced,
        logs: entries,
        seconds: seconds(started),
      };
    } catch (err) {
      return { status: 'internal', error: err instanceof Error ? (err.stack ?? err.message) : String(err), logs: entries };
    }
  } finally {
    arrived.stop();
    current = undefined;
  }
}
