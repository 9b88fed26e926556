import { resolve } from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import { z } from 'zod';
import { FnHostError, describeError } from './errors.js';
import { FNHOST_VERSION, FnHost, type HostOptions } from './host.js';
import { Logger, flushLogLines } from './log.js';
import { stopAzuriteFor } from './storage/azurite-service.js';
import { stopLockHolder } from './host-lock.js';

const optionsSchema = z.object({
  scriptRoot: z.string().min(1),
  port: z.number().int().min(0).max(65535),
  host: z.string().min(1),
  data: z.string().min(1),
  inMemory: z.boolean(),
  azurite: z.boolean(),
  blobPort: z.number().int().min(0).max(65535),
  queuePort: z.number().int().min(0).max(65535),
  tablePort: z.number().int().min(0).max(65535),
  verbose: z.boolean(),
  durableSchema: z.number().int().min(0).max(3),
  shutdownGrace: z.number().int().min(0),
  auth: z.boolean(),
});

function int(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n)) throw new InvalidArgumentError('must be an integer');
  return n;
}

/** Turns parsed CLI flags into host options; the only place CLI input is validated. */
export function hostOptionsFrom(raw: unknown): HostOptions {
  const o = optionsSchema.parse(raw);
  const scriptRoot = resolve(o.scriptRoot);
  return {
    scriptRoot,
    port: o.port,
    bindHost: o.host,
    dataDir: o.inMemory ? undefined : resolve(scriptRoot, o.data),
    azurite: o.azurite,
    azuritePorts: { blob: o.blobPort, queue: o.queuePort, table: o.tablePort },
    logLevel: o.verbose ? 'debug' : 'information',
    durableSchemaVersion: o.durableSchema,
    shutdownGraceMs: o.shutdownGrace * 1000,
    enforceKeys: o.auth,
  };
}

async function start(raw: unknown): Promise<void> {
  const options = hostOptionsFrom(raw);
  // The storage-lost callback can fire while FnHost.start is still returning.
  const running: { host?: FnHost } = {};
  let lost = false;
  let stopping = false;
  let pending: { why: string; code: number } | undefined;
  /** Stops the host and exits: 0 when asked to (a signal), 1 when its storage went away. */
  const shutdown = (why: string, code: number): void => {
    const host = running.host;
    if (host === undefined) {
      // Still starting: it stops as soon as it has started (it prints its address before start
      // returns). A second signal meanwhile ends it at once, as the default action would have.
      if (pending !== undefined) process.exit(1);
      pending = { why, code };
      return;
    }
    if (stopping) return;
    stopping = true;
    host.logger.info(`${why}: stopping (waiting up to ${options.shutdownGraceMs / 1000}s for running functions)`);
    host.stop().then(
      () => process.exit(code),
      (err: unknown) => {
        flushLogLines();
        process.stderr.write(`fnhost: error while stopping: ${describeError(err)}\n`);
        process.exit(1);
      },
    );
  };
  // A host without storage only fails: it stops, and says why (the host has logged the cause).
  const storageLost = (): void => {
    lost = true;
    if (running.host !== undefined) shutdown('Storage is gone', 1);
  };
  // Handlers before the start: a signal while it starts must stop the host cleanly (its Azurite
  // included), not end the process with the default action.
  process.on('SIGINT', () => shutdown('SIGINT received', 0));
  process.on('SIGTERM', () => shutdown('SIGTERM received', 0));
  running.host = await FnHost.start({ ...options, onStorageLost: storageLost });
  if (lost) shutdown('Storage is gone', 1);
  else if (pending) shutdown(pending.why, pending.code);
}

const stopOptionsSchema = z.object({ scriptRoot: z.string().min(1), data: z.string().min(1) });

/**
 * `fnhost stop`: stops the host running on a data folder (as Ctrl+C would, which also stops its
 * Azurite), and the Azurite a host that died left running (after a crash, say). Stopping only the
 * Azurite of a live host would leave that host running with every storage call failing.
 */
async function stop(raw: unknown): Promise<void> {
  const o = stopOptionsSchema.parse(raw);
  const dataDir = resolve(resolve(o.scriptRoot), o.data);
  const say = (line: string): boolean => process.stdout.write(`${line}\n`);
  const hostOutcome = await stopLockHolder({ dataDir, log: say });
  if (hostOutcome.kind === 'stopped') say(`Stopped fnhost ${hostOutcome.pid} on ${dataDir}.`);
  else if (hostOutcome.kind === 'stale') say(`fnhost ${hostOutcome.pid} on ${dataDir} was no longer running; removed its lock file.`);
  const outcome = await stopAzuriteFor({ dataDir, logger: new Logger() });
  if (outcome.kind === 'stopped') say(`Stopped Azurite ${outcome.pid} for ${dataDir}; its data is saved.`);
  else if (outcome.kind === 'stale') say(`Azurite ${outcome.pid} for ${dataDir} was no longer running; removed its state file.`);
  else if (hostOutcome.kind !== 'stopped') say(`No Azurite is running for ${dataDir}.`);
}

export async function main(argv: string[]): Promise<void> {
  const program = new Command();
  program.name('fnhost').description('Run an Azure Functions (Node.js v4) + Durable Functions app on one machine').version(FNHOST_VERSION);
  program
    .command('start')
    .description('start the app in --script-root and serve it over HTTP')
    .option('--script-root <dir>', 'the app folder (package.json, host.json)', '.')
    .option('-p, --port <port>', 'HTTP port', int, 7071)
    .option('--host <address>', 'address to listen on', '127.0.0.1')
    .option('--data <dir>', 'folder for durable state, Azurite data and keys (relative to the script root)', '.data')
    .option('--in-memory', 'keep no state past the process (Azurite in memory, the task hub in a private temporary database)', false)
    .option('--no-azurite', 'do not start Azurite; use whatever AzureWebJobsStorage names')
    .option('--blob-port <port>', 'Azurite blob port (0 = any free port)', int, 10000)
    .option('--queue-port <port>', 'Azurite queue port (0 = any free port)', int, 10001)
    .option('--table-port <port>', 'Azurite table port (0 = any free port)', int, 10002)
    .option('--durable-schema <n>', 'replay schema offered to durable-functions (0=V1 … 3=V4)', int, 3)
    .option('--shutdown-grace <seconds>', 'how long to wait for running functions on stop', int, 10)
    .option('--no-auth', 'do not check keys: every request has admin access, like `func start` without --enableAuth')
    .option('--verbose', "show the host's own tracing", false)
    .action(async (opts: Record<string, unknown>) => {
      await start(opts);
    });
  program
    .command('stop')
    .description('stop the fnhost running on a data folder and its Azurite, or the Azurite a host that crashed left running')
    .option('--script-root <dir>', 'the app folder', '.')
    .option('--data <dir>', 'the data folder (relative to the script root)', '.data')
    .action(async (opts: Record<string, unknown>) => {
      await stop(opts);
    });
  await program.parseAsync(argv);
}

main(process.argv).catch((err: unknown) => {
  const message = err instanceof FnHostError ? err.message : describeError(err);
  flushLogLines();
  process.stderr.write(`fnhost: ${message}\n`);
  process.exit(1);
});
