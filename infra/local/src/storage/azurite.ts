import { type ChildProcess, fork } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { FnHostError } from '../errors.js';
import type { Logger } from '../log.js';

/** The well-known development storage account Azurite serves. */
export const DEV_ACCOUNT = 'devstoreaccount1';
export const DEV_KEY = 'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==';

export interface AzuritePorts {
  blob: number;
  queue: number;
  table: number;
}

export interface AzuriteOptions {
  /** Folder for Azurite's data; undefined keeps everything in memory. */
  location: string | undefined;
  ports: AzuritePorts;
  host?: string;
  logger: Logger;
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

/**
 * Preloaded into the Azurite child process (as a data: URL, so it needs no file of its own).
 * - Azurite looks blobs and blocks up in LokiJS with queries such as {accountName, containerName,
 *   name}. Loki uses an index only for the query's first key, and every blob shares the account,
 *   so each lookup scans every blob: at 10,000 blobs a download costs ~10 ms of Azurite's one
 *   thread. Moving the indexed `name`/`blobName` key first makes it a binary search. The AND of the
 *   same conditions is the same result, so behaviour does not change.
 * - When fnhost dies, even by SIGKILL, the IPC channel closes; Azurite then shuts down the way it
 *   does on SIGTERM, so its database is written out.
 * - Azurite keeps timers alive after closing its servers; exit as soon as all three services
 *   report "successfully closed" (their databases are saved by then) instead of hanging.
 * - Azurite routes every request by compiling each operation's URI template (a hundred or so) anew,
 *   about 0.2 ms of its one thread per request. Templates are immutable once compiled, so each is
 *   compiled once.
 */
const PRELOAD = `
import { createRequire } from 'node:module';
try {
  const { Resultset } = createRequire(process.argv[1])('lokijs');
  const selective = ['name', 'blobName'];
  const find = Resultset.prototype.find;
  Resultset.prototype.find = function (query, firstOnly) {
    if (!this.filterInitialized && query && typeof query === 'object' && !Array.isArray(query)) {
      const keys = Object.keys(query);
      const key = keys.length > 1 && selective.find((k) => k in query && (query[k] === null || typeof query[k] !== 'object') && this.collection.binaryIndices[k]);
      if (key && keys[0] !== key) query = { [key]: query[key], ...query };
    }
    return find.call(this, query, firstOnly);
  };
} catch (err) {
  console.error('fnhost: could not speed up Azurite lookups: ' + err);
}
try {
  const require = createRequire(process.argv[1]);
  const id = require.resolve('uri-templates');
  const compile = require(id);
  const compiled = new Map();
  const cached = function (template) {
    let parsed = compiled.get(template);
    if (parsed === undefined) compiled.set(template, (parsed = compile(template)));
    return parsed;
  };
  cached.prototype = compile.prototype;
  require.cache[id].exports = cached;
} catch (err) {
  console.error('fnhost: could not speed up Azurite routing: ' + err);
}
let closed = 0;
const log = console.log.bind(console);
console.log = (...args) => {
  log(...args);
  if (typeof args[0] === 'string' && args[0].includes('successfully closed') && ++closed === 3) {
    setImmediate(() => process.exit(0));
  }
};
const fallbackExit = () => setTimeout(() => process.exit(0), 15000).unref();
process.on('disconnect', () => { process.emit('SIGTERM', 'SIGTERM'); fallbackExit(); });
process.on('message', (m) => { if (m === 'shutdown') fallbackExit(); });
`;

/**
 * Azurite running in a child process. It runs apart from the host so storage keeps its own CPU and
 * event loop; the watchdog preload makes it shut down cleanly (flushing its database) when the
 * host dies, even by SIGKILL, because the IPC channel closes.
 */
export class AzuriteProcess {
  readonly ports: AzuritePorts;
  readonly host: string;
  readonly #child: ChildProcess;

  private constructor(child: ChildProcess, host: string, ports: AzuritePorts) {
    this.#child = child;
    this.host = host;
    this.ports = ports;
  }

  get connectionString(): string {
    return devConnectionString(this.host, this.ports);
  }

  static async start(options: AzuriteOptions): Promise<AzuriteProcess> {
    const require = createRequire(import.meta.url);
    const cli = join(dirname(require.resolve('azurite/package.json')), 'dist', 'src', 'azurite.js');
    const host = options.host ?? '127.0.0.1';
    const args = [
      '--blobHost', host, '--blobPort', String(options.ports.blob),
      '--queueHost', host, '--queuePort', String(options.ports.queue),
      '--tableHost', host, '--tablePort', String(options.ports.table),
      '--skipApiVersionCheck', '--loose', '--disableTelemetry', '--silent',
    ];
    if (options.location) {
      mkdirSync(options.location, { recursive: true });
      args.push('--location', options.location);
    } else {
      args.push('--inMemoryPersistence');
    }
    const child = fork(cli, args, {
      execArgv: ['--import', `data:text/javascript,${encodeURIComponent(PRELOAD)}`],
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    });
    const ports = await new Promise<AzuritePorts>((resolve, reject) => {
      const found: Partial<AzuritePorts> = {};
      let output = '';
      const onData = (chunk: Buffer): void => {
        output += chunk.toString();
        for (const m of output.matchAll(/Azurite (Blob|Queue|Table) service is successfully listening at http:\/\/[^:]+:(\d+)/g)) {
          found[(m[1] as string).toLowerCase() as keyof AzuritePorts] = Number(m[2]);
        }
        if (found.blob && found.queue && found.table) {
          child.stdout?.off('data', onData);
          resolve(found as AzuritePorts);
        }
      };
      child.stdout?.on('data', onData);
      child.stderr?.on('data', (c: Buffer) => {
        output += c.toString();
      });
      child.once('exit', (code) => {
        reject(
          new FnHostError('ERR_CONFIG', `Azurite exited with code ${String(code)} before it was ready:\n${output.trim()}`),
        );
      });
    });
    child.stdout?.resume();
    child.stderr?.resume();
    options.logger.debug(`Azurite listening: blob ${ports.blob}, queue ${ports.queue}, table ${ports.table}`);
    return new AzuriteProcess(child, host, ports);
  }

  /** Asks Azurite to shut down and waits for it (it persists its database on the way out). */
  async stop(timeoutMs = 10_000): Promise<void> {
    const child = this.#child;
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    if (child.connected) child.send('shutdown');
    else child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    await exited;
    clearTimeout(timer);
  }
}
