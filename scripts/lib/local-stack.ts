/**
 * Starts this app under fnhost (with its own Azurite) as a child process, the way a user runs it,
 * and reads back what a client needs: the URL, the master key and the storage connection string.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { FNHOST_NODE_FLAGS } from '../../infra/local/src/node-flags.js';

/**
 * The repository: three levels up when this runs compiled (dist/scripts/lib), two when a test
 * imports the source (scripts/lib). The app the host serves is this repository either way.
 */
export const ROOT = ((): string => {
  const compiled = resolve(import.meta.dirname, '..', '..', '..');
  return existsSync(join(compiled, 'infra', 'local', 'bin', 'fnhost.js')) ? compiled : resolve(import.meta.dirname, '..', '..');
})();

export interface LocalStack {
  url: string;
  masterKey: string;
  storageConnection: string;
  child: ChildProcess;
  output(): string;
  /** SIGTERM, and wait: the host stops its work and its Azurite (which saves its data). */
  stop(): Promise<void>;
  /** SIGKILL, no cleanup: a crash. `group` kills the host's whole process group (see `detached`). */
  kill(options?: { group?: boolean }): Promise<void>;
}

export async function freePort(): Promise<number> {
  return new Promise((done, fail) => {
    const server = createServer();
    server.once('error', fail);
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as { port: number }).port;
      server.close(() => done(port));
    });
  });
}

export interface StackOptions {
  port?: number;
  /** State folder; undefined keeps everything in memory. */
  dataDir?: string | undefined;
  env?: Record<string, string>;
  /** Echo the host's log lines. */
  echo?: boolean;
  /** More `fnhost start` options. */
  args?: string[];
  /** Start the host as the leader of a process group of its own, so a kill can take the group. */
  detached?: boolean;
}

export async function startLocalStack(options: StackOptions = {}): Promise<LocalStack> {
  const port = options.port ?? (await freePort());
  const args = [...FNHOST_NODE_FLAGS, join(ROOT, 'infra', 'local', 'bin', 'fnhost.js'), 'start', '--script-root', ROOT, '--port', String(port), '--blob-port', '0', '--queue-port', '0', '--table-port', '0'];
  args.push(...(options.dataDir ? ['--data', options.dataDir] : ['--in-memory']), ...(options.args ?? []));
  const child = spawn(process.execPath, args, {
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: options.detached === true,
    env: { ...process.env, AzureWebJobsStorage: 'UseDevelopmentStorage=true', FUNCTIONS_WORKER_RUNTIME: 'node', ...options.env },
  });
  let out = '';
  const onData = (chunk: Buffer): void => {
    out += chunk.toString();
    if (options.echo) process.stdout.write(chunk);
  };
  child.stdout?.on('data', onData);
  child.stderr?.on('data', onData);
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  await new Promise<void>((ok, fail) => {
    const timer = setInterval(() => {
      if (out.includes('is listening on')) {
        clearInterval(timer);
        ok();
      }
    }, 25);
    void exited.then((code) => {
      clearInterval(timer);
      fail(new Error(`fnhost exited (${String(code)}) before it was ready:\n${out}`));
    });
  });
  const masterKey = /Master key: (\S+)/.exec(out)?.[1] ?? '';
  const storageConnection = /Storage \(AzureWebJobsStorage\): (\S+)/.exec(out)?.[1] ?? '';
  return {
    url: `http://127.0.0.1:${port}`,
    masterKey,
    storageConnection,
    child,
    output: () => out,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      await exited;
    },
    async kill(how = {}) {
      if (child.exitCode !== null || child.signalCode !== null) return;
      if (how.group && child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
      else child.kill('SIGKILL');
      await exited;
    },
  };
}

/**
 * `fnhost stop --data DIR`: stops the Azurite a data folder's host left running (a killed host
 * leaves it running, as Azure Storage outlives a crashed Functions host).
 */
export async function stopStorage(dataDir: string): Promise<string> {
  return new Promise((done, fail) => {
    execFile(process.execPath, [join(ROOT, 'infra', 'local', 'bin', 'fnhost.js'), 'stop', '--data', dataDir], (err, stdout, stderr) => (err ? fail(new Error(`${err.message}\n${stderr}`)) : done(stdout)));
  });
}
