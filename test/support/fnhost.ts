import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { FNHOST_NODE_FLAGS } from '../../infra/local/src/node-flags.js';
import { type LocalSettings, appFolderWithSettings } from '../../scripts/lib/local-stack.js';
import { type TestAzurite, startAzurite } from './azurite.js';
import type { Cleanups } from './cleanups.js';
import { freePort } from './ports.js';

const ROOT = resolve(import.meta.dirname, '..', '..');
const BIN = join(ROOT, 'infra', 'local', 'bin', 'fnhost.js');

export interface FnHostProcess {
  url: string;
  port: number;
  /** The master key the host printed at start. */
  masterKey: string;
  /** The storage connection string the host printed (when it started Azurite). */
  storageConnection: string;
  dataDir: string | undefined;
  /** Everything the host printed so far. */
  output(): string;
  /** SIGTERM and wait for exit; resolves with the exit code. */
  stop(): Promise<number | null>;
  /** SIGKILL, no cleanup: the crash case. `group` kills the host's whole process group. */
  kill(options?: { group?: boolean }): Promise<void>;
  exited: Promise<number | null>;
}

export interface StartOptions {
  appDir: string;
  /** Keep state in this folder (so a restart resumes); default: in memory. */
  dataDir?: string;
  port?: number;
  env?: Record<string, string>;
  /** Extra CLI flags. */
  args?: string[];
  /** Use this storage instead of starting Azurite. */
  storageConnection?: string;
  /** Start it as the leader of a process group of its own (so `kill({ group: true })` reaches all of it). */
  detached?: boolean;
  /**
   * Run `appDir` with this local.settings.json instead of its own (e.g. the product app with the
   * example's Event Grid subscriptions): the host serves a temporary folder linking the app's files
   * (scripts/lib/local-stack.ts, appFolderWithSettings), removed when the host exits.
   */
  localSettings?: LocalSettings;
}

/**
 * Starts fnhost as a separate process, the way a user would, and waits until it listens. A port
 * picked here can be taken (by any process's outgoing connection) before the host binds it; then
 * the start is tried again on another.
 */
export async function startFnHost(options: StartOptions): Promise<FnHostProcess> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await startOnce(options, options.port ?? (await freePort()));
    } catch (err) {
      if (options.port !== undefined || attempt >= 3 || !/Port \d+ is unavailable/.test(String(err))) throw err;
    }
  }
}

async function startOnce(options: StartOptions, port: number): Promise<FnHostProcess> {
  const app = options.localSettings ? appFolderWithSettings(options.appDir, options.localSettings) : undefined;
  const args = [...FNHOST_NODE_FLAGS, BIN, 'start', '--script-root', app?.path ?? options.appDir, '--port', String(port), '--blob-port', '0', '--queue-port', '0', '--table-port', '0'];
  if (options.dataDir) args.push('--data', options.dataDir);
  else args.push('--in-memory');
  if (options.storageConnection) args.push('--no-azurite');
  args.push(...(options.args ?? []));
  const env: NodeJS.ProcessEnv = { ...process.env, ...options.env };
  if (options.storageConnection) env['AzureWebJobsStorage'] = options.storageConnection;
  const child: ChildProcess = spawn(process.execPath, args, { env, stdio: ['ignore', 'pipe', 'pipe'], detached: options.detached === true });
  let output = '';
  child.stdout?.on('data', (c: Buffer) => {
    output += c.toString();
  });
  child.stderr?.on('data', (c: Buffer) => {
    output += c.toString();
  });
  const exited = new Promise<number | null>((resolveExit) =>
    child.once('exit', (code) => {
      app?.remove();
      resolveExit(code);
    }),
  );
  await new Promise<void>((resolveReady, reject) => {
    const timer = setTimeout(() => reject(new Error(`fnhost did not start in time:\n${output}`)), 60_000);
    const check = (): void => {
      if (output.includes('is listening on')) {
        clearTimeout(timer);
        resolveReady();
      }
    };
    child.stdout?.on('data', check);
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`fnhost exited with ${String(code)} before it was ready:\n${output}`));
    });
  });
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    masterKey: /Master key: (\S+)/.exec(output)?.[1] ?? '',
    storageConnection: /Storage \(AzureWebJobsStorage\): (\S+)/.exec(output)?.[1] ?? options.storageConnection ?? '',
    dataDir: options.dataDir,
    output: () => output,
    exited,
    async stop() {
      if (child.exitCode !== null) return child.exitCode;
      child.kill('SIGTERM');
      return exited;
    },
    async kill(how = {}) {
      if (child.exitCode === null && child.signalCode === null) {
        if (how.group && child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
        else child.kill('SIGKILL');
      }
      await exited;
    },
  };
}

/**
 * `fnhost stop --data DIR`: stops the Azurite a data folder's host left running (a host killed by
 * a test leaves it, as a crashed host would). Resolves with what the command printed.
 */
export async function stopStorage(dataDir: string): Promise<string> {
  return new Promise((resolveStop, reject) => {
    execFile(process.execPath, [BIN, 'stop', '--data', dataDir], (err, stdout, stderr) => (err ? reject(new Error(`${err.message}\n${stderr}`)) : resolveStop(stdout)));
  });
}

/**
 * Whether a process is still running. An Azurite whose host was killed belongs to init when it
 * exits, and init may take a second or more to reap it: a zombie has exited, though signal 0
 * still reaches it.
 */
export function processRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return !existsSync('/proc/self/stat');
  }
}

/** A temporary folder removed by the returned cleanup. */
export function tempDir(prefix: string): { path: string; remove: () => void } {
  const path = mkdtempSync(join(tmpdir(), prefix));
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}

/**
 * A data folder for hosts that keep their state in it (`dataDir`), with the Azurite such a host
 * starts there: at cleanup that Azurite is stopped (`fnhost stop --data`; a killed host leaves it
 * running), then the folder removed.
 */
export function hostDataFolder(cleanups: Cleanups, prefix: string): string {
  const dir = tempDir(prefix);
  cleanups.push(dir.remove);
  cleanups.push(() => stopStorage(dir.path).catch(() => undefined));
  return dir.path;
}

/**
 * State for a host a test kills and starts again: an Azurite of the test's own (storage outlives
 * the host, as Azure Storage outlives a Functions host; pass it as `storageConnection`) and a data
 * folder for the host's task hub (`dataDir`), both removed by `cleanups`.
 */
export async function azuriteAndDataFolder(cleanups: Cleanups, prefix: string): Promise<{ storage: TestAzurite; dataDir: string }> {
  const storage = await startAzurite();
  cleanups.push(storage.stop);
  const data = tempDir(prefix);
  cleanups.push(data.remove);
  return { storage, dataDir: data.path };
}

/** The pid of the Azurite a host started in data folder `dataDir` (from its azurite.json). */
export function azuritePid(dataDir: string): number {
  return (JSON.parse(readFileSync(join(dataDir, 'azurite.json'), 'utf8')) as { pid: number }).pid;
}

/** Runs the fnhost CLI with `args` to its end (for starts that must fail); resolves with its exit code and all it printed. */
export async function runFnHost(args: string[]): Promise<{ code: number | null; output: string }> {
  const child = spawn(process.execPath, [...FNHOST_NODE_FLAGS, BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout?.on('data', (c: Buffer) => (output += c.toString()));
  child.stderr?.on('data', (c: Buffer) => (output += c.toString()));
  const code = await new Promise<number | null>((r) => child.once('exit', r));
  return { code, output };
}

export const TEST_APP = join(ROOT, 'test', 'fixtures', 'fnhost-app');
/** This repository's own app (built to dist/). */
export const PRODUCT_APP = ROOT;
export const MASTER_KEY = 'test-master-key';
export const SYSTEM_KEYS = { durabletask_extension: 'test-durable-key', eventgrid_extension: 'test-eventgrid-key' };
export const HOST_KEY = 'test-host-key';
