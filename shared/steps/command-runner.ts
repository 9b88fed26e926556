/**
 * Runs one command step's script: `run(inputs, outputs, context)` of an ES module, in a worker
 * thread of its own that ends with the run (see command-worker.ts), under a timeout that
 * terminates the thread. Knows nothing of storage: inputs are local paths and literals, outputs
 * local folders (see command-step.ts for the whole step).
 */
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { dirname, isAbsolute, join, relative, resolve } from 'node:path';
import type { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { BatchError, errorMessage } from '../errors.js';
import type { CommandRun, CommandWorkerData, CommandWorkerMessage, LogEntry, LogLevel } from './command-protocol.js';

/** One run of a command script; the runner makes `workDir` and the output folders if missing. */
export interface CommandRequest extends CommandRun {
  /** Absolute local folder holding the step's code. */
  codeDir: string;
  /**
   * Milliseconds the run may take, from the worker's start (module loading included) to the end of
   * `run`; then its thread is terminated. Zero, negative or not finite: no limit.
   */
  timeoutMs: number;
  /**
   * The clock for the entries the runner itself writes (stdio lines, its own notes); `new Date()`
   * by default. The script's own entries carry the worker's time.
   */
  now?: (() => Date) | undefined;
  /** Path or file URL of the compiled worker module; see {@link commandWorkerFile}. */
  workerFile?: string | URL | undefined;
  /** Aborted: the step was canceled; the script's thread is stopped and the run ends `canceled`. */
  signal?: AbortSignal | undefined;
}

/** How a run ended. Problems of the script are results, never exceptions. */
export interface CommandResult {
  status: 'completed' | 'failed' | 'timeout' | 'canceled';
  /** Why it failed or timed out. */
  error?: string;
  /**
   * Whether running the step again may succeed: a throw is unless the error carries
   * `retryable = false`; a module that does not load or has no `run` is not; a timeout is.
   * False when completed.
   */
  retryable: boolean;
  /** What the script logged (logger, console, stdout/stderr) and what the runner noted, in order; every level. */
  logs: LogEntry[];
  /** Wall-clock seconds from the worker's start to its end (millisecond precision). */
  seconds: number;
}

/**
 * The compiled worker module: `command-worker.js` beside this module, or, when this module runs as
 * TypeScript source (tests), the one `tsc -p tsconfig.json` wrote under dist/: a worker thread
 * cannot load TypeScript.
 */
export function commandWorkerFile(): string {
  const here = fileURLToPath(import.meta.url);
  if (here.endsWith('.ts')) return resolve(dirname(here), '..', '..', 'dist', 'shared', 'steps', 'command-worker.js');
  return join(dirname(here), 'command-worker.js');
}

function round(seconds: number): number {
  return Math.round(seconds * 1000) / 1000;
}

function secondsText(ms: number): string {
  return String(Number((ms / 1000).toFixed(3)));
}

/** The entry script's absolute path, or undefined when it would lie outside the code folder. */
function scriptPathOf(codeDir: string, entryScript: string): string | undefined {
  if (entryScript === '' || isAbsolute(entryScript)) return undefined;
  const path = resolve(codeDir, ...entryScript.split('/'));
  const inside = relative(resolve(codeDir), path);
  return inside === '' || inside.startsWith('..') || isAbsolute(inside) ? undefined : path;
}

/**
 * Turns what a worker writes to its stdout or stderr into log entries, a line each (a line still
 * open when the run ends becomes one too).
 */
function stdioLines(stream: Readable, level: LogLevel, now: () => Date, add: (entry: LogEntry) => void): () => void {
  let pending = '';
  stream.setEncoding('utf8');
  stream.on('data', (chunk: string) => {
    const lines = (pending + chunk).split(/\r?\n/);
    pending = lines.pop() ?? '';
    for (const line of lines) add({ level, message: line, time: now().toISOString() });
  });
  return () => {
    if (pending !== '') add({ level, message: pending, time: now().toISOString() });
    pending = '';
  };
}

/**
 * Runs `run(inputs, outputs, context)` of `entryScript` in a fresh worker thread and waits for it
 * to end, fail or time out; the thread is gone when this resolves. Throws only for problems of the
 * app itself (the worker module not built), never for the script's.
 */
export async function runCommand(request: CommandRequest): Promise<CommandResult> {
  const file = request.workerFile ?? commandWorkerFile();
  const workerFile = file instanceof URL || file.startsWith('file:') ? fileURLToPath(file) : file;
  if (!existsSync(workerFile)) {
    throw new BatchError('internal', `The command worker module ${workerFile} is missing; build the app (tsc -p tsconfig.json).`);
  }
  const now = request.now ?? (() => new Date());
  const logs: LogEntry[] = [];
  const note = (level: LogLevel, message: string): void => {
    logs.push({ level, message, time: now().toISOString() });
  };
  const refuse = (error: string): CommandResult => {
    note('error', error);
    return { status: 'failed', error, retryable: false, logs, seconds: 0 };
  };
  const scriptPath = scriptPathOf(request.codeDir, request.entryScript);
  if (!scriptPath) return refuse(`the entry script ${request.entryScript} is not a path inside the code folder`);
  if (!existsSync(scriptPath)) return refuse(`the entry script ${request.entryScript} is not in the code folder`);
  await Promise.all([request.workDir, ...Object.values(request.outputs)].map((folder) => mkdir(folder, { recursive: true })));

  const { entryScript, inputs, outputs, environment, workDir, stepName, jobId, attempt } = request;
  const workerData: CommandWorkerData = { scriptPath, entryScript, inputs, outputs, environment, workDir, stepName, jobId, attempt };
  const started = performance.now();
  const seconds = (): number => round((performance.now() - started) / 1000);
  let worker: Worker;
  try {
    // stdout/stderr: true keeps the script's direct writes off the host's own streams.
    worker = new Worker(workerFile, { workerData, stdout: true, stderr: true });
  } catch (err) {
    throw new BatchError('internal', `Could not start a command worker: ${errorMessage(err)}`, { cause: err });
  }

  let settled = false;
  let ended = 0;
  const add = (entry: LogEntry): void => {
    if (!settled) logs.push(entry);
  };
  // A direct write to stderr is rarely an error by intent (Node's own warnings go there).
  const endStdout = stdioLines(worker.stdout, 'info', now, add);
  const endStderr = stdioLines(worker.stderr, 'warning', now, add);

  const outcome = await new Promise<Omit<CommandResult, 'logs' | 'seconds'>>((resolveOutcome) => {
    let timer: NodeJS.Timeout | undefined;
    const settle = (result: Omit<CommandResult, 'logs' | 'seconds'>): void => {
      if (settled) return;
      clearTimeout(timer);
      endStdout();
      endStderr();
      settled = true;
      ended = seconds();
      resolveOutcome(result);
    };
    // setTimeout treats anything above 2^31-1 ms as 1 ms; no positive finite limit means none.
    const limit = Number.isFinite(request.timeoutMs) && request.timeoutMs > 0 ? Math.min(request.timeoutMs, 2 ** 31 - 1) : undefined;
    if (limit !== undefined) {
      timer = setTimeout(() => {
        const error = `the step exceeded its ${secondsText(request.timeoutMs)} s timeout; its worker was stopped`;
        note('error', error);
        settle({ status: 'timeout', error, retryable: true });
      }, limit);
    }
    const abort = (): void => {
      note('warning', 'the step was canceled; its worker was stopped');
      settle({ status: 'canceled', error: 'canceled', retryable: false });
    };
    if (request.signal?.aborted) abort();
    request.signal?.addEventListener('abort', abort, { once: true });
    worker.on('message', (message: CommandWorkerMessage) => {
      if (message.type === 'log') add(message.entry);
      else if (message.type === 'done') settle(message.reply.status === 'completed' ? { status: 'completed', retryable: false } : message.reply);
    });
    // The thread died under the script: an exception thrown where nothing catches it (a timer),
    // process.exit(), running out of memory. Another attempt may well succeed.
    worker.on('error', (err: unknown) => {
      const error = `the command worker stopped: ${errorMessage(err)}`;
      if (!settled) note('error', error);
      settle({ status: 'failed', error, retryable: true });
    });
    worker.on('exit', (code) => {
      const error = `the command worker exited (code ${code}) before run() finished`;
      if (!settled) note('error', error);
      settle({ status: 'failed', error, retryable: true });
    });
  });
  // Whatever the script left running (timers, sockets, a loop that never ends) ends with its thread.
  await worker.terminate();
  return { ...outcome, logs, seconds: ended };
}
