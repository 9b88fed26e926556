/**
 * Starts this app under fnhost (with its own Azurite) as a child process, the way a user runs it,
 * and reads back what a client needs: the URL, the master key and the storage connection string.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { FNHOST_NODE_FLAGS } from '../../infra/local/src/node-flags.js';
import { freePort } from './ports.js';

/**
 * The repository: three levels up when this runs compiled (dist/scripts/lib), two when a test
 * imports the source (scripts/lib). The app the host serves is this repository either way.
 */
export const ROOT = ((): string => {
  const compiled = resolve(import.meta.dirname, '..', '..', '..');
  return existsSync(join(compiled, 'infra', 'local', 'bin', 'fnhost.js')) ? compiled : resolve(import.meta.dirname, '..', '..');
})();

/**
 * local.settings.json as fnhost reads it: app settings (`Values`), `Keys`, and fnhost's `EventGrid`
 * section (storage subscriptions to the app's Event Grid functions, local topics; see
 * infra/local/README.md, "Event Grid").
 */
export interface LocalSettings {
  IsEncrypted?: boolean;
  Values?: Record<string, string>;
  Keys?: Record<string, unknown>;
  EventGrid?: {
    retryDelayScale?: number;
    storageSubscriptions?: Record<string, unknown>[];
    topics?: { name: string; key?: string; subscriptions?: Record<string, unknown>[] }[];
  };
}

/** The settings this repository ships as an example (blobCreated subscribed, job events to a local topic). */
export const EXAMPLE_SETTINGS = join(ROOT, 'local.settings.json.example');

export function readLocalSettings(path: string = EXAMPLE_SETTINGS): LocalSettings {
  return JSON.parse(readFileSync(path, 'utf8').replace(/^\uFEFF/, '')) as LocalSettings;
}

/**
 * `settings` with one more webhook subscription on the local topic `topic` (which must be declared).
 * A copy: `settings` is left as it is.
 */
export function withTopicSubscription(settings: LocalSettings, topic: string, subscription: Record<string, unknown>): LocalSettings {
  const copy = structuredClone(settings);
  const declared = copy.EventGrid?.topics?.find((t) => t.name === topic);
  if (!declared) throw new Error(`local settings declare no EventGrid topic '${topic}'`);
  declared.subscriptions = [...(declared.subscriptions ?? []), subscription];
  return copy;
}

/**
 * An app folder that runs `appDir` with other local settings. fnhost reads local.settings.json
 * from the app folder only, and a checkout's own local.settings.json is its developer's; so the
 * host is started on a temporary folder that links every entry of `appDir` (package.json,
 * host.json, dist/, node_modules/, …) except local.settings.json and .data, and holds `settings`
 * as its local.settings.json. Node loads modules by their real paths, so it is the same app, the
 * same build and the same packages.
 */
export function appFolderWithSettings(appDir: string, settings: LocalSettings): { path: string; remove: () => void } {
  const path = mkdtempSync(join(tmpdir(), 'fnhost-app-'));
  for (const entry of readdirSync(appDir)) {
    if (entry === 'local.settings.json' || entry === '.data') continue;
    symlinkSync(join(appDir, entry), join(path, entry));
  }
  writeFileSync(join(path, 'local.settings.json'), `${JSON.stringify(settings, null, 2)}\n`);
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}

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
  /** More Node.js flags for the host process (e.g. `--cpu-prof`), after fnhost's own. */
  nodeFlags?: string[];
  /**
   * Run the app with this local.settings.json (see appFolderWithSettings), e.g. the example's
   * Event Grid subscriptions and topic. Default: the checkout's own local.settings.json, if any,
   * as `npm start` reads it.
   */
  localSettings?: LocalSettings;
}

export async function startLocalStack(options: StackOptions = {}): Promise<LocalStack> {
  const port = options.port ?? (await freePort());
  const app = options.localSettings ? appFolderWithSettings(ROOT, options.localSettings) : undefined;
  const args = [...FNHOST_NODE_FLAGS, ...(options.nodeFlags ?? []), join(ROOT, 'infra', 'local', 'bin', 'fnhost.js'), 'start', '--script-root', app?.path ?? ROOT, '--port', String(port), '--blob-port', '0', '--queue-port', '0', '--table-port', '0'];
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
  const exited = new Promise<number | null>((r) =>
    child.once('exit', (code) => {
      app?.remove();
      r(code);
    }),
  );
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
