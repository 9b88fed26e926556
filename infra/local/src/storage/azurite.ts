import { type ChildProcess, fork } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { type Clock, systemClock } from '../clock.js';
import { FnHostError } from '../errors.js';
import type { Logger } from '../log.js';
import { AZURITE_PRELOAD } from './azurite-preload.js';

/** The well-known development storage account Azurite serves. */
export const DEV_ACCOUNT = 'devstoreaccount1';
export const DEV_KEY = 'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==';

/**
 * A storage connection string as fnhost prints it: Azurite's (its well-known, public key) as it
 * is, so that tools and tests can use it; any other account's key or SAS as `<redacted>`, since
 * a host started with `--no-azurite` against a real account must not print that account's key.
 */
export function printableConnection(connection: string): string {
  return connection
    .split(';')
    .map((part) => {
      const at = part.indexOf('=');
      const name = at > 0 ? part.slice(0, at).trim().toLowerCase() : '';
      const value = at > 0 ? part.slice(at + 1).trim() : '';
      if (name === 'accountkey' && value !== DEV_KEY) return `${part.slice(0, at)}=<redacted>`;
      if (name === 'sharedaccesssignature') return `${part.slice(0, at)}=<redacted>`;
      // An endpoint URL may carry a SAS in its query.
      if (name.endsWith('endpoint') && value.includes('?')) return `${part.slice(0, at)}=${value.slice(0, value.indexOf('?'))}?<redacted>`;
      return part;
    })
    .join(';');
}

export interface AzuritePorts {
  blob: number;
  queue: number;
  table: number;
}

/** Storage the host started or found: where it listens, and how to stop it. */
export interface StorageEmulator {
  readonly host: string;
  readonly ports: AzuritePorts;
  readonly connectionString: string;
  /** Shuts it down, saving its data, and waits until it has exited. */
  stop(): Promise<void>;
  /** Calls `gone` (once) if it exits while in use, other than by stop(). */
  watch(gone: (why: string) => void): void;
}

export interface AzuriteOptions {
  ports: AzuritePorts;
  host?: string;
  logger: Logger;
  clock?: Clock;
}

/** A connection string for the development account on the given endpoints. */
export function devConnectionString(host: string, ports: AzuritePorts): string {
  return [
    'DefaultEndpointsProtocol=http',
    `AccountName=${DEV_ACCOUNT}`,
    `AccountKey=${DEV_KEY}`,
    `BlobEndpoint=http://${host}:${ports.blob}/${DEV_ACCOUNT}`,
    `QueueEndpoint=http://${host}:${ports.queue}/${DEV_ACCOUNT}`,
    `TableEndpoint=http://${host}:${ports.table}/${DEV_ACCOUNT}`,
  ].join(';');
}

/** Azurite's own command line script. */
export function azuriteCli(): string {
  const require = createRequire(import.meta.url);
  return join(dirname(require.resolve('azurite/package.json')), 'dist', 'src', 'azurite.js');
}

/** Azurite's arguments; `location` undefined keeps its data in memory. */
export function azuriteArgs(options: { host: string; ports: AzuritePorts; location: string | undefined }): string[] {
  const { host, ports } = options;
  return [
    '--blobHost', host, '--blobPort', String(ports.blob),
    '--queueHost', host, '--queuePort', String(ports.queue),
    '--tableHost', host, '--tablePort', String(ports.table),
    '--skipApiVersionCheck', '--loose', '--disableTelemetry', '--silent',
    ...(options.location === undefined ? ['--inMemoryPersistence'] : ['--location', options.location]),
  ];
}

/**
 * Node.js options that load the preload (see azurite-preload.ts). A host started with `--cpu-prof`
 * (`npm run bench -- --cpu-prof DIR`) has its Azurite profiled into the same folder too (not under
 * its `--cpu-prof-name`, which would name both files alike).
 */
export function azuriteExecArgv(hostFlags: readonly string[] = process.execArgv): string[] {
  const profiling: string[] = [];
  for (let i = 0; i < hostFlags.length; i++) {
    const flag = hostFlags[i] as string;
    if (flag === '--cpu-prof' || /^--cpu-prof-(dir|interval)=/.test(flag)) profiling.push(flag);
    else if ((flag === '--cpu-prof-dir' || flag === '--cpu-prof-interval') && i + 1 < hostFlags.length) profiling.push(flag, hostFlags[++i] as string);
  }
  return [...profiling, '--import', `data:text/javascript,${encodeURIComponent(AZURITE_PRELOAD)}`];
}

interface ReadyMessage {
  fnhost: 'ready';
  ports: AzuritePorts;
  host: string;
}

function isReady(message: unknown): message is ReadyMessage {
  return typeof message === 'object' && message !== null && (message as { fnhost?: unknown }).fnhost === 'ready';
}

/**
 * Waits for the preload's "ready" message (all three services listen). An exit first, or no
 * answer within `timeoutMs`, is an error whose message carries what Azurite printed.
 */
export async function waitForAzurite(options: { child: ChildProcess; output: () => string; clock: Clock; timeoutMs: number }): Promise<ReadyMessage> {
  const { child, clock } = options;
  return new Promise<ReadyMessage>((resolve, reject) => {
    const done = (): void => {
      clock.clearTimeout(timer);
      child.off('message', onMessage);
      child.off('exit', onExit);
    };
    const onMessage = (message: unknown): void => {
      if (!isReady(message)) return;
      done();
      resolve(message);
    };
    const onExit = (code: number | null, signal: NodeJS.Signals | null): void => {
      done();
      reject(new FnHostError('ERR_CONFIG', `Azurite exited (${signal ?? `code ${String(code)}`}) before it was ready:\n${options.output().trim()}`));
    };
    const timer = clock.setTimeout(() => {
      done();
      child.kill('SIGTERM');
      reject(new FnHostError('ERR_CONFIG', `Azurite was not ready within ${options.timeoutMs / 1000} s:\n${options.output().trim()}`));
    }, options.timeoutMs);
    child.on('message', onMessage);
    child.once('exit', onExit);
  });
}

/**
 * Azurite in memory, as a child process of the host: for `--in-memory` runs (nothing has to
 * survive the host) and for tests that need storage of their own. It runs apart from the host so
 * storage keeps its own CPU and event loop, and the preload makes it exit when the host dies,
 * even by SIGKILL, because the IPC channel closes. Azurite for a data folder is `AzuriteService`.
 */
export class AzuriteProcess implements StorageEmulator {
  readonly ports: AzuritePorts;
  readonly host: string;
  readonly #child: ChildProcess;
  readonly #clock: Clock;
  #stopping = false;

  private constructor(init: { child: ChildProcess; host: string; ports: AzuritePorts; clock: Clock }) {
    this.#child = init.child;
    this.#clock = init.clock;
    this.host = init.host;
    this.ports = init.ports;
  }

  /**
   * Calls `listener` with each finished blob write Azurite reports (azurite-preload.ts), for the
   * Event Grid storage topic; in memory they come over IPC, as nothing has to outlive the host.
   */
  onBlobWrite(listener: (record: unknown) => void): void {
    this.#child.on('message', (message: unknown) => {
      if (typeof message === 'object' && message !== null && (message as { fnhost?: unknown }).fnhost === 'blob-write') {
        listener((message as { record?: unknown }).record);
      }
    });
  }

  /**
   * How this Azurite answers List Blobs from now on (azurite-listing.ts): `off` with Azurite's own
   * code, `index` with the name index and Azurite's XML, `on` (the default) with both replacements.
   * For benchmarks and tests that list the same blobs both ways. Resolves once Azurite has switched.
   */
  async setListing(mode: 'off' | 'index' | 'on', timeoutMs = 10_000): Promise<void> {
    const child = this.#child;
    await new Promise<void>((resolve, reject) => {
      const done = (): void => {
        this.#clock.clearTimeout(timer);
        child.off('message', onMessage);
      };
      const onMessage = (message: unknown): void => {
        const m = message as { fnhost?: unknown; mode?: unknown; error?: unknown } | null;
        if (typeof m !== 'object' || m === null || m.fnhost !== 'listing' || m.mode !== mode) return;
        done();
        if (typeof m.error === 'string') reject(new FnHostError('ERR_INTERNAL', `Azurite could not switch its listing to ${mode}: ${m.error}`));
        else resolve();
      };
      const timer = this.#clock.setTimeout(() => {
        done();
        reject(new FnHostError('ERR_INTERNAL', `Azurite did not switch its listing to ${mode} within ${timeoutMs / 1000} s`));
      }, timeoutMs);
      child.on('message', onMessage);
      child.send({ fnhost: 'listing', mode });
    });
  }

  get connectionString(): string {
    return devConnectionString(this.host, this.ports);
  }

  /** The Azurite process's id (benchmarks read its CPU time). */
  get pid(): number | undefined {
    return this.#child.pid;
  }

  static async start(options: AzuriteOptions): Promise<AzuriteProcess> {
    const host = options.host ?? '127.0.0.1';
    const clock = options.clock ?? systemClock;
    const child = fork(azuriteCli(), azuriteArgs({ host, ports: options.ports, location: undefined }), {
      execArgv: azuriteExecArgv(),
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    });
    let output = '';
    const collect = (chunk: Buffer): void => {
      // Only start-up output is kept (for an error message); after that it is drained.
      if (output.length < 64_000) output += chunk.toString();
    };
    child.stdout?.on('data', collect);
    child.stderr?.on('data', collect);
    const ready = await waitForAzurite({ child, output: () => output, clock, timeoutMs: 60_000 });
    options.logger.debug(`Azurite listening: blob ${ready.ports.blob}, queue ${ready.ports.queue}, table ${ready.ports.table}`);
    return new AzuriteProcess({ child, host, ports: ready.ports, clock });
  }

  watch(gone: (why: string) => void): void {
    const child = this.#child;
    const report = (code: number | null, signal: NodeJS.Signals | null): void => {
      if (!this.#stopping) gone(`exited (${signal ?? `code ${String(code)}`})`);
    };
    if (child.exitCode !== null || child.signalCode !== null) report(child.exitCode, child.signalCode);
    else child.once('exit', report);
  }

  /** Asks Azurite to shut down and waits for it. */
  async stop(timeoutMs = 10_000): Promise<void> {
    this.#stopping = true;
    const child = this.#child;
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    if (child.connected) child.send('shutdown');
    else child.kill('SIGTERM');
    const timer = this.#clock.setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    await exited;
    this.#clock.clearTimeout(timer);
  }
}
