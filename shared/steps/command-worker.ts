/**
 * The worker-thread module of the command runner. A thread runs exactly one script's
 * `run(inputs, outputs, context)` and ends: every run gets a fresh thread, so module state (a
 * counter, a cache, a patched global) never carries over to the next run. Its `workerData` is a
 * {@link CommandWorkerData}; it sends {@link CommandWorkerMessage}s to the runner.
 */
import { pathToFileURL } from 'node:url';
import { format } from 'node:util';
import { parentPort, workerData } from 'node:worker_threads';
import { errorMessage } from '../errors.js';
import { exportedFunction, installScriptConsole } from '../scoring/script-thread.js';
import type { CommandContext, CommandLogger, CommandWorkerData, CommandWorkerMessage, CommandWorkerReply, LogEntry, LogLevel } from './command-protocol.js';

const data = workerData as CommandWorkerData;
const port = parentPort;
if (!port) throw new Error('the command worker must run in a worker thread');

function send(message: CommandWorkerMessage): void {
  port?.postMessage(message);
}

function log(level: LogLevel, args: unknown[]): void {
  const entry: LogEntry = { level, message: format(...args), time: new Date().toISOString() };
  // Each entry goes out at once: a run stopped at its timeout keeps what it logged until then.
  send({ type: 'log', entry });
}

// Direct writes to process.stdout/stderr and the console's other methods (table, dir, assert, …)
// reach the runner through the thread's stdio, which it reads into the step's logs too.
const logger: CommandLogger = installScriptConsole(log);

/** Where the script is: what a thread with nothing left to do was waiting for. */
let phase: 'loading' | 'running' | 'done' = 'loading';

// The thread's event loop ran dry while the script still awaited something: a promise nothing can
// settle any more (no timer, I/O or other work is left). Said at once rather than at the timeout,
// and not retried: the same code waits the same way.
process.on('beforeExit', () => {
  if (phase === 'done') return;
  const what = phase === 'loading' ? `the entry script ${data.entryScript} never finished loading` : 'run() never finished';
  phase = 'done';
  send({ type: 'done', reply: { status: 'failed', error: `${what}: it awaits a promise that nothing is left to settle`, retryable: false } });
});

async function runScript(): Promise<CommandWorkerReply> {
  // Before the module loads: scripts read their settings at import time.
  for (const [name, value] of Object.entries(data.environment)) process.env[name] = value;
  let module: Record<string, unknown>;
  try {
    module = (await import(pathToFileURL(data.scriptPath).href)) as Record<string, unknown>;
  } catch (err) {
    logger.error('could not load the entry script:', err);
    // The same code fails the same way on every attempt.
    return { status: 'failed', error: `could not load the entry script ${data.entryScript}: ${errorMessage(err)}`, retryable: false };
  }
  const run = exportedFunction(module, 'run');
  if (!run) return { status: 'failed', error: `the entry script ${data.entryScript} does not export a run(inputs, outputs, context) function`, retryable: false };
  const context: CommandContext = {
    logger,
    environment: { ...data.environment },
    workDir: data.workDir,
    stepName: data.stepName,
    jobId: data.jobId,
    attempt: data.attempt,
  };
  phase = 'running';
  try {
    // Sync or async alike; the value is ignored: a step's results are the files it writes.
    await run(data.inputs, data.outputs, context);
  } catch (err) {
    logger.error('run() failed:', err);
    // As for scoring scripts: a script says an error is permanent with `retryable = false`.
    const retryable = !(typeof err === 'object' && err !== null && (err as { retryable?: unknown }).retryable === false);
    return { status: 'failed', error: errorMessage(err), retryable };
  }
  return { status: 'completed' };
}

/**
 * Resolves once the runner has received everything written to the stream so far, or after a
 * second at most (a script that broke its stdout must not keep its result from the runner).
 */
function flushed(stream: NodeJS.WriteStream): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, 1000);
    const done = (): void => {
      clearTimeout(timer);
      resolve();
    };
    try {
      stream.write('', done);
    } catch {
      done();
    }
  });
}

void runScript()
  .catch((err: unknown): CommandWorkerReply => ({ status: 'failed', error: `the command worker failed: ${errorMessage(err)}`, retryable: true }))
  .then(async (reply) => {
    // The runner ends this thread as soon as `done` arrives; stdio still in flight would be lost.
    await Promise.all([flushed(process.stdout), flushed(process.stderr)]);
    if (phase === 'done') return;
    phase = 'done';
    send({ type: 'done', reply });
  });
