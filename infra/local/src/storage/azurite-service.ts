import { type ChildProcess, fork } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, fstatSync, mkdirSync, openSync, readSync, realpathSync, unlinkSync } from 'node:fs';
import { request } from 'node:http';
import { join, resolve } from 'node:path';
import { z } from 'zod';
import { type Clock, systemClock } from '../clock.js';
import { FnHostError } from '../errors.js';
import type { Logger } from '../log.js';
import { HAS_PROC, commandLine, pidAlive } from '../processes.js';
import { type AzuritePorts, type StorageEmulator, azuriteArgs, azuriteCli, azuriteExecArgv, devConnectionString, waitForAzurite } from './azurite.js';
import { checkAzuriteDatabases } from './azurite-files.js';
import { readStateFile } from '../state-file.js';

/** Where, inside a data folder, Azurite keeps its data, its state file and its output. */
export function azuritePaths(dataDir: string): { location: string; state: string; log: string; blobEvents: string } {
  return {
    location: join(dataDir, 'azurite'),
    state: join(dataDir, 'azurite.json'),
    log: join(dataDir, 'azurite.log'),
    // Azurite appends a line per finished blob write (azurite-preload.ts) for the Event Grid storage topic.
    blobEvents: join(dataDir, 'eventgrid', 'storage-events.jsonl'),
  };
}

const portsSchema = z.object({ blob: z.number().int().positive(), queue: z.number().int().positive(), table: z.number().int().positive() });

/** The state file the preload writes (azurite-preload.ts): Azurite's lock and address. */
const stateSchema = z.object({
  version: z.literal(1),
  pid: z.number().int().positive(),
  token: z.string().min(16),
  location: z.string().min(1),
  startedAt: z.string(),
  status: z.enum(['starting', 'ready']),
  host: z.string().optional(),
  ports: portsSchema.optional(),
});
export type AzuriteState = z.infer<typeof stateSchema>;

/**
 * Reads the state file; undefined when there is none. A file that cannot be read is an error, not
 * "no Azurite": without it nobody can tell whether an Azurite still serves this folder, and a
 * second one on the same files would overwrite the first one's saves.
 */
export function readAzuriteState(path: string): AzuriteState | undefined {
  const read = readStateFile(path, stateSchema);
  if (!read.found) return undefined;
  if ('value' in read) return read.value;
  const problem = read.problem;
  throw new FnHostError(
    'ERR_CONFIG',
    `The storage state file ${path} is not usable (${problem}). It records which Azurite serves this data folder. ` +
      'If no Azurite is running for this folder, delete the file and start again.',
    { details: { file: path } },
  );
}

/** Removes the state file if it still says what `state` says (another start may have replaced it). */
function removeState(path: string, state: AzuriteState): void {
  try {
    if (readAzuriteState(path)?.token === state.token) unlinkSync(path);
  } catch {
    // gone already, or replaced: either way not ours to remove
  }
}

/**
 * Whether `pid` runs Azurite. After a machine restart the recorded pid may belong to anything;
 * where the command line can be read (Linux) that tells them apart. Elsewhere assume it is, which
 * errs on the side of waiting and refusing rather than starting a second Azurite on the files.
 */
function runsAzurite(pid: number): boolean {
  if (!HAS_PROC) return true;
  return commandLine(pid)?.includes('azurite') ?? false;
}

export function samePath(a: string, b: string): boolean {
  try {
    return realpathSync(a) === realpathSync(b);
  } catch {
    return resolve(a) === resolve(b);
  }
}

type Answer = { kind: 'ours'; pid: number; location: string } | { kind: 'stopping' } | { kind: 'other' } | { kind: 'none' };

/** Asks one port who serves it: only the instance that holds `token` answers 200. */
async function identify(options: { host: string; port: number; token: string }): Promise<Answer> {
  return new Promise<Answer>((done) => {
    const req = request(
      { host: options.host, port: options.port, path: '/__fnhost__/identity', method: 'GET', agent: false, timeout: 3000, headers: { 'x-fnhost-token': options.token } },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => {
          if (res.statusCode === 503) return done({ kind: 'stopping' });
          if (res.statusCode !== 200) return done({ kind: 'other' });
          try {
            const me = z.object({ pid: z.number(), location: z.string() }).parse(JSON.parse(body));
            done({ kind: 'ours', pid: me.pid, location: me.location });
          } catch {
            done({ kind: 'other' });
          }
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', () => done({ kind: 'none' }));
    req.end();
  });
}

async function postShutdown(options: { host: string; port: number; token: string }): Promise<boolean> {
  return new Promise<boolean>((done) => {
    const req = request(
      { host: options.host, port: options.port, path: '/__fnhost__/shutdown', method: 'POST', agent: false, timeout: 3000, headers: { 'x-fnhost-token': options.token } },
      (res) => {
        res.resume();
        res.on('end', () => done(res.statusCode === 202));
      },
    );
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', () => done(false));
    req.end();
  });
}

function sleep(clock: Clock, ms: number): Promise<void> {
  return new Promise((r) => clock.setTimeout(r, ms));
}

/**
 * Runs `work` with the event loop held open. The clock's timers do not hold it (a host must be
 * able to exit with timers pending), so a wait made only of them would let `fnhost` exit midway,
 * before Azurite has answered or saved.
 */
async function holdingOpen<T>(work: () => Promise<T>): Promise<T> {
  const hold = setInterval(() => undefined, 1_000_000);
  try {
    return await work();
  } finally {
    clearInterval(hold);
  }
}

export interface ServiceOptions {
  /** The data folder (absolute). */
  dataDir: string;
  logger: Logger;
  clock?: Clock;
  /** How long to wait for an Azurite that is starting, saving or stopping. */
  settleMs?: number;
}

/**
 * Azurite for a data folder, as a service of its own: it runs in its own session (a kill of the
 * host, or of the host's whole process group, does not reach it), so every write it acknowledged
 * is still there when the host comes back; the next `fnhost start` on the folder reattaches to
 * it. It stops on `fnhost stop`, on SIGINT/SIGTERM to the host, or when its data folder is gone.
 */
export class AzuriteService implements StorageEmulator {
  readonly pid: number;
  readonly host: string;
  readonly ports: AzuritePorts;
  /** True when the host found it running (a previous host died without stopping it). */
  readonly reattached: boolean;
  readonly startedAt: string;
  readonly #token: string;
  readonly #child: ChildProcess | undefined;
  readonly #clock: Clock;
  readonly #logger: Logger;
  #stopped = false;

  private constructor(init: { pid: number; host: string; ports: AzuritePorts; token: string; reattached: boolean; startedAt: string; child: ChildProcess | undefined; clock: Clock; logger: Logger }) {
    this.pid = init.pid;
    this.host = init.host;
    this.ports = init.ports;
    this.reattached = init.reattached;
    this.startedAt = init.startedAt;
    this.#token = init.token;
    this.#child = init.child;
    this.#clock = init.clock;
    this.#logger = init.logger;
  }

  get connectionString(): string {
    return devConnectionString(this.host, this.ports);
  }

  /**
   * The Azurite still serving `dataDir`, or undefined when none is. It must be the one the state
   * file names: that pid, answering the recorded ports with the recorded token, for this folder.
   * One that is alive but starting, saving or stopping is waited for (up to `settleMs`), so two
   * Azurites never work on one folder; a state file left by one that is gone is removed.
   */
  static async attach(options: ServiceOptions): Promise<AzuriteService | undefined> {
    return (await AzuriteService.find(options)).service;
  }

  /**
   * attach(), and whether the Azurite that last served the folder died before it was ready (so
   * the folder may hold only the databases of the services it had started).
   */
  static async find(options: ServiceOptions): Promise<{ service: AzuriteService | undefined; interruptedStart: boolean }> {
    return holdingOpen(() => AzuriteService.#attach(options));
  }

  static async #attach(options: ServiceOptions): Promise<{ service: AzuriteService | undefined; interruptedStart: boolean }> {
    const clock = options.clock ?? systemClock;
    const paths = azuritePaths(options.dataDir);
    const deadline = clock.now() + (options.settleMs ?? 20_000);
    const none = { service: undefined, interruptedStart: false };
    for (;;) {
      const state = readAzuriteState(paths.state);
      if (!state) return none;
      if (!pidAlive(state.pid) || !runsAzurite(state.pid)) {
        options.logger.info(`Azurite ${state.pid} named in ${paths.state} no longer runs (killed, or the machine restarted); storage starts again from its saved data.`);
        removeState(paths.state, state);
        return { service: undefined, interruptedStart: state.status === 'starting' };
      }
      if (state.status === 'ready' && state.host !== undefined && state.ports !== undefined) {
        const { host, ports } = state;
        const answers = await Promise.all([ports.blob, ports.queue, ports.table].map((port) => identify({ host, port, token: state.token })));
        if (answers.every((a) => a.kind === 'ours' && a.pid === state.pid)) {
          const location = (answers[0] as { location: string }).location;
          if (!samePath(location, paths.location)) {
            // The folder was copied from one whose Azurite still runs: that one serves its own.
            options.logger.info(`${paths.state} names the Azurite of ${location}; starting one for this folder.`);
            removeState(paths.state, state);
            return none;
          }
          const service = new AzuriteService({ pid: state.pid, host, ports, token: state.token, reattached: true, startedAt: state.startedAt, child: undefined, clock, logger: options.logger });
          return { service, interruptedStart: false };
        }
      }
      if (clock.now() > deadline) {
        const where = state.ports ? ` on ports ${state.ports.blob}/${state.ports.queue}/${state.ports.table}` : '';
        throw new FnHostError(
          'ERR_CONFIG',
          `Azurite ${state.pid} (named in ${paths.state}) is running but does not answer${where}. ` +
            `Stop it (fnhost stop --data ${options.dataDir}, or kill ${state.pid}) and start again.`,
        );
      }
      await sleep(clock, 200);
    }
  }

  /**
   * Starts Azurite for `dataDir` in a session of its own. Its databases are checked first: a
   * folder whose storage cannot be read is refused, never started empty.
   */
  static async start(options: ServiceOptions & { ports: AzuritePorts; host?: string; interruptedStart?: boolean }): Promise<AzuriteService> {
    const clock = options.clock ?? systemClock;
    const host = options.host ?? '127.0.0.1';
    const paths = azuritePaths(options.dataDir);
    mkdirSync(paths.location, { recursive: true });
    checkAzuriteDatabases(paths.location, { interruptedStart: options.interruptedStart ?? false });
    const token = randomBytes(24).toString('hex');
    // Its output goes to a file: a pipe to the host would break when the host dies, and Azurite
    // would fail writing to it.
    const logFd = openSync(paths.log, 'a');
    const logStart = fstatSync(logFd).size;
    let child: ChildProcess;
    try {
      child = fork(azuriteCli(), azuriteArgs({ host, ports: options.ports, location: paths.location }), {
        execArgv: azuriteExecArgv(),
        stdio: ['ignore', logFd, logFd, 'ipc'],
        detached: true,
        cwd: options.dataDir,
        env: { ...process.env, FNHOST_AZURITE_STATE: paths.state, FNHOST_AZURITE_TOKEN: token, FNHOST_BLOB_EVENTS: paths.blobEvents },
      });
    } finally {
      closeSync(logFd);
    }
    const ready = await waitForAzurite({ child, output: () => readFrom(paths.log, logStart), clock, timeoutMs: 120_000 });
    // From here on it lives on its own: the host neither waits for it nor takes it down by dying.
    child.disconnect();
    child.unref();
    const pid = child.pid ?? 0;
    return new AzuriteService({ pid, host: ready.host, ports: ready.ports, token, reattached: false, startedAt: new Date(clock.now()).toISOString(), child, clock, logger: options.logger });
  }

  /** Asks it to shut down (it saves its databases) and waits until the process has gone. */
  async stop(timeoutMs = 30_000): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    await holdingOpen(() => this.#stop(timeoutMs));
  }

  async #stop(timeoutMs: number): Promise<void> {
    const asked = await postShutdown({ host: this.host, port: this.ports.blob, token: this.#token });
    if (!asked && pidAlive(this.pid) && runsAzurite(this.pid)) process.kill(this.pid, 'SIGTERM');
    const deadline = this.#clock.now() + timeoutMs;
    while (this.#running()) {
      if (this.#clock.now() > deadline) {
        this.#logger.warn(`Azurite ${this.pid} did not stop within ${timeoutMs / 1000} s; it is left running.`);
        return;
      }
      await sleep(this.#clock, 50);
    }
  }

  /**
   * Calls `gone` once, at once, if this Azurite exits while the host uses it (anything can kill
   * it: a user, the OOM killer, a `kill` meant for another process). The host cannot carry on
   * without storage, but it must say so rather than fail every storage call without a word. An
   * Azurite this host started is watched by its exit; one it reattached to is not its child, so
   * its pid is looked at every `intervalMs`.
   */
  watch(gone: (why: string) => void, intervalMs = 1000): void {
    let reported = false;
    const report = (why: string): void => {
      if (this.#stopped || reported) return;
      reported = true;
      gone(why);
    };
    this.#child?.once('exit', (code, signal) => report(`exited (${signal ?? `code ${String(code)}`})`));
    const look = (): void => {
      if (this.#stopped || reported) return;
      if (!this.#running()) {
        report('is no longer running');
        return;
      }
      this.#clock.setTimeout(look, intervalMs);
    };
    this.#clock.setTimeout(look, intervalMs);
  }

  #running(): boolean {
    // A child of this process stays a zombie (and "alive" to kill 0) until Node reaps it.
    if (this.#child) return this.#child.exitCode === null && this.#child.signalCode === null;
    return pidAlive(this.pid);
  }
}

function readFrom(path: string, offset: number): string {
  try {
    const fd = openSync(path, 'r');
    try {
      const size = Math.min(fstatSync(fd).size - offset, 64_000);
      if (size <= 0) return '';
      const buffer = Buffer.alloc(size);
      readSync(fd, buffer, 0, size, offset);
      return buffer.toString('utf8');
    } finally {
      closeSync(fd);
    }
  } catch {
    return '';
  }
}

export type StopOutcome = { kind: 'stopped'; pid: number } | { kind: 'stale'; pid: number } | { kind: 'none' };

/** `fnhost stop`: stops the Azurite serving `dataDir`, if one does. */
export async function stopAzuriteFor(options: ServiceOptions): Promise<StopOutcome> {
  const paths = azuritePaths(options.dataDir);
  const state = readAzuriteState(paths.state);
  if (!state) return { kind: 'none' };
  if (!pidAlive(state.pid) || !runsAzurite(state.pid)) {
    removeState(paths.state, state);
    return { kind: 'stale', pid: state.pid };
  }
  // Undefined: it was stopping already and has exited (saving) while attach waited for it.
  const service = await AzuriteService.attach(options);
  await service?.stop();
  return { kind: 'stopped', pid: state.pid };
}
