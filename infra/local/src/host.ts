import { createServer as createNetServer } from 'node:net';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { type Clock, systemClock } from './clock.js';
import { type AppConfig, loadAppConfig } from './config/app-config.js';
import { type DurableHttpResponse, DurableEngine } from './durable/engine.js';
import { DurableClientBinding, OrchestrationClientBinding } from './durable/client-binding.js';
import { DurableHttpApi } from './durable/http-api.js';
import type { DurableHttpRequestJson } from './durable/actions.js';
import { SqliteTaskHubStore } from './durable/store/sqlite-store.js';
import { FnHostError, describeError } from './errors.js';
import { FileEventLog, MemoryEventLog } from './eventgrid/event-log.js';
import { type BlobWriteFeed, EventGridSubsystem } from './eventgrid/eventgrid-subsystem.js';
import { EventGridWebhook } from './eventgrid/webhook.js';
import { AdminApi } from './http/admin.js';
import { HttpTriggerRouter } from './http/http-trigger.js';
import { KeyStore, readKeysFile } from './http/keys.js';
import { HostServer, type WebhookHandler } from './http/server.js';
import { type LogLevel, type LogSink, Logger } from './log.js';
import { AzuriteProcess, type AzuritePorts, type StorageEmulator, devConnectionString, printableConnection } from './storage/azurite.js';
import { AzuriteService, azuritePaths } from './storage/azurite-service.js';
import { identifyStorage, storageVerdict } from './storage/storage-identity.js';
import { HostLock } from './host-lock.js';
import { WORKER_STARTED, functionsListing, hostInstanceId, lockLeaseLine } from './startup-lines.js';
import { StorageSubsystem } from './storage/storage-subsystem.js';
import { TimerSubsystem } from './timer/timer-trigger.js';
import { BindingRegistry } from './worker/bindings.js';
import { settleFunctionStates } from './worker/function-states.js';
import { Invoker } from './worker/invoker.js';
import { loadEntryPoints } from './worker/loader.js';
import { installCoreModule } from './worker/module-hook.js';
import { WorkerRuntime } from './worker/worker-runtime.js';

export const FNHOST_VERSION = '0.1.0';
/** The Functions host version fnhost reports to the library (HTTP streaming needs ≥ 4.28). */
const HOST_VERSION = '4.1044.0';

export interface HostOptions {
  /** The app folder: package.json, host.json, local.settings.json. */
  scriptRoot: string;
  port: number;
  /** Address to listen on. */
  bindHost: string;
  /** Folder for durable state, Azurite data and keys; undefined keeps everything in memory. */
  dataDir: string | undefined;
  /** Start Azurite when the storage connection is development storage or loopback. */
  azurite: boolean;
  azuritePorts: AzuritePorts;
  logLevel: LogLevel;
  logSink?: LogSink;
  clock?: Clock;
  /** Replay schema offered to durable-functions: 0 = V1 … 3 = V4. */
  durableSchemaVersion: number;
  /** How long stop() waits for invocations in progress. */
  shutdownGraceMs: number;
  /**
   * Check function, host and master keys (the default, as in Azure). False lets every request in
   * with admin access, as `func start` does without --enableAuth.
   */
  enforceKeys?: boolean;
  /**
   * Called (once) when the Azurite fnhost uses exits while the host runs (killed by a user, the
   * OOM killer, a `kill` meant for another process). The host has logged an error by then; the
   * CLI stops it. Without it the host only logs.
   */
  onStorageLost?: (why: string) => void;
}

/** Something that runs beside the HTTP server: triggers that poll, timers. */
export interface Subsystem {
  start(): Promise<void>;
  stop(graceMs: number): Promise<void>;
}

function isLoopbackStorage(connection: string): boolean {
  if (/UseDevelopmentStorage=true/i.test(connection)) return true;
  const endpoint = /BlobEndpoint=([^;]+)/i.exec(connection)?.[1];
  if (!endpoint) return false;
  try {
    const host = new URL(endpoint).hostname;
    return host === '127.0.0.1' || host === 'localhost' || host === '::1' || host === '[::1]';
  } catch {
    return false;
  }
}

function portsFrom(connection: string, fallback: AzuritePorts): AzuritePorts {
  const port = (name: string, d: number): number => {
    const endpoint = new RegExp(`${name}Endpoint=([^;]+)`, 'i').exec(connection)?.[1];
    if (!endpoint) return d;
    try {
      return Number(new URL(endpoint).port) || d;
    } catch {
      return d;
    }
  };
  return { blob: port('Blob', fallback.blob), queue: port('Queue', fallback.queue), table: port('Table', fallback.table) };
}

async function portInUse(port: number, host: string): Promise<boolean> {
  if (port === 0) return false;
  return new Promise((resolve) => {
    const server = createNetServer();
    server.once('error', () => resolve(true));
    server.listen(port, host, () => server.close(() => resolve(false)));
  });
}

/**
 * Storage already listening on ports fnhost wants, asked who it is (storage-identity.ts): storage
 * of another data folder or of another process is refused, with a message saying whose it is;
 * an emulator fnhost did not start is used as it is. Resolves whether the first port is in use.
 */
async function checkRunningStorage(init: { ports: number[]; dataDir: string | undefined; named: boolean; logger: Logger }): Promise<boolean> {
  const used: boolean[] = [];
  for (const port of init.ports) {
    if (!(await portInUse(port, '127.0.0.1'))) {
      used.push(false);
      continue;
    }
    used.push(true);
    const identity = await identifyStorage({ host: '127.0.0.1', port });
    const verdict = storageVerdict({ port, identity, dataDir: init.dataDir, named: init.named });
    if ('refuse' in verdict) throw verdict.refuse;
    // One line is enough: the three ports of one emulator say the same.
    if (verdict.note !== undefined && used.filter(Boolean).length === 1) init.logger.info(verdict.note);
  }
  return used[0] ?? false;
}

/**
 * The storage the app uses when it names development storage. With a data folder that is the
 * folder's own Azurite, running as a service that outlives the host (AzuriteService): the one a
 * previous host left running is reattached, else one is started. In memory it is a child process
 * that ends with the host. Storage already listening on the wanted ports is used as it is when it
 * is an emulator of the user's own; another folder's or another process's is refused.
 */
async function startStorage(init: { options: HostOptions; logger: Logger; clock: Clock; given: string | undefined }): Promise<{ azurite: StorageEmulator | undefined; storage: string }> {
  const { options, logger, clock, given } = init;
  const wanted = given && !/UseDevelopmentStorage=true/i.test(given) ? portsFrom(given, options.azuritePorts) : options.azuritePorts;
  let interruptedStart = false;
  if (options.dataDir) {
    const found = await AzuriteService.find({ dataDir: options.dataDir, logger, clock });
    interruptedStart = found.interruptedStart;
    const service = found.service;
    if (service) {
      const { ports } = service;
      logger.info(`Azurite for ${options.dataDir} is still running (pid ${service.pid}, since ${service.startedAt}); reattached to it (blob ${ports.blob}, queue ${ports.queue}, table ${ports.table}).`);
      const ignored = (['blob', 'queue', 'table'] as const).filter((k) => wanted[k] !== 0 && wanted[k] !== ports[k]);
      if (ignored.length > 0) {
        logger.warn(`Azurite keeps the ports it was started with; the ${ignored.join('/')} port(s) asked for apply after \`fnhost stop --data ${options.dataDir}\`.`);
      }
      return { azurite: service, storage: service.connectionString };
    }
  }
  const ports = [...new Set([wanted.blob, wanted.queue, wanted.table])].filter((p) => p !== 0);
  const blobInUse = await checkRunningStorage({ ports: wanted.blob === 0 ? [] : ports, dataDir: options.dataDir, named: false, logger });
  if (blobInUse) return { azurite: undefined, storage: devConnectionString('127.0.0.1', wanted) };
  const azurite = options.dataDir
    ? await AzuriteService.start({ dataDir: options.dataDir, ports: wanted, logger, clock, interruptedStart })
    : await AzuriteProcess.start({ ports: wanted, logger, clock });
  const started = azurite.ports;
  const kind = options.dataDir ? `for ${options.dataDir}, running on its own until \`fnhost stop\` or Ctrl+C` : 'in memory';
  logger.info(`Azurite started (${kind}; blob ${started.blob}, queue ${started.queue}, table ${started.table})`);
  return { azurite, storage: azurite.connectionString };
}

/**
 * The blob writes of the Azurite fnhost runs, for the Event Grid storage topic: the journal file
 * Azurite appends to for a data folder (it outlives the host, so writes made while the host was
 * down are read when it comes back), or the writes it sends over IPC in memory. Storage fnhost did
 * not start has no such feed.
 */
function blobWriteFeed(azurite: StorageEmulator | undefined, options: { dataDir: string | undefined; clock: Clock; logger: Logger }): BlobWriteFeed | undefined {
  if (!azurite) return undefined;
  const blobEndpoint = `http://${azurite.host}:${azurite.ports.blob}`;
  if (azurite instanceof AzuriteService && options.dataDir) {
    return { log: new FileEventLog({ path: azuritePaths(options.dataDir).blobEvents, clock: options.clock, logger: options.logger }), blobEndpoint };
  }
  if (azurite instanceof AzuriteProcess) {
    const log = new MemoryEventLog();
    azurite.onBlobWrite((record) => void log.append([record]));
    return { log, blobEndpoint };
  }
  return undefined;
}

/**
 * Each topic's endpoint and key go into the environment (FNHOST_EVENTGRID_<TOPIC>_ENDPOINT and
 * _KEY), and app settings from local.settings.json that refer to them as `%NAME%` get their
 * values: the endpoint holds the port, which is known only once the server listens, so a setting
 * cannot spell it out.
 */
function exposeTopics(env: Record<string, string>, values: Record<string, string>): void {
  Object.assign(process.env, env);
  for (const [k, v] of Object.entries(values)) {
    // Only settings that still hold their local.settings.json value: the environment wins, as always.
    if (process.env[k] !== v || !v.includes('%FNHOST_EVENTGRID_')) continue;
    process.env[k] = v.replace(/%(FNHOST_EVENTGRID_\w+)%/g, (whole, name: string) => env[name] ?? whole);
  }
}

async function defaultHttpCall(request: DurableHttpRequestJson): Promise<DurableHttpResponse> {
  if (request.tokenSource) {
    throw new FnHostError('ERR_NOT_IMPLEMENTED', 'fnhost cannot obtain managed identity tokens for callHttp (tokenSource).');
  }
  const response = await fetch(request.uri, {
    method: request.method,
    headers: request.headers ?? {},
    ...(request.content === undefined ? {} : { body: request.content }),
  });
  const headers: Record<string, string> = {};
  response.headers.forEach((v, k) => {
    headers[k] = v;
  });
  return { statusCode: response.status, headers, content: await response.text() };
}

/**
 * fnhost: runs an unmodified Azure Functions (Node.js v4 model) app with Durable Functions on one
 * machine. See infra/local/README.md.
 */
export class FnHost {
  readonly logger: Logger;
  readonly runtime: WorkerRuntime;
  readonly config: AppConfig;
  readonly engine: DurableEngine;
  readonly keys: KeyStore;
  /** Base URL of the HTTP server, e.g. http://127.0.0.1:7071 */
  readonly url: string;
  readonly storageConnection: string | undefined;

  readonly #options: HostOptions;
  readonly #server: HostServer;
  readonly #rpcServer: HostServer;
  readonly #store: SqliteTaskHubStore;
  readonly #azurite: StorageEmulator | undefined;
  readonly #subsystems: Subsystem[];
  readonly #invoker: Invoker;
  readonly #uninstall: () => void;
  readonly #lock: HostLock | undefined;
  #stopped = false;

  private constructor(init: {
    options: HostOptions;
    logger: Logger;
    runtime: WorkerRuntime;
    config: AppConfig;
    engine: DurableEngine;
    keys: KeyStore;
    url: string;
    server: HostServer;
    rpcServer: HostServer;
    store: SqliteTaskHubStore;
    azurite: StorageEmulator | undefined;
    subsystems: Subsystem[];
    invoker: Invoker;
    uninstall: () => void;
    storageConnection: string | undefined;
    lock: HostLock | undefined;
  }) {
    this.#options = init.options;
    this.logger = init.logger;
    this.runtime = init.runtime;
    this.config = init.config;
    this.engine = init.engine;
    this.keys = init.keys;
    this.url = init.url;
    this.#server = init.server;
    this.#rpcServer = init.rpcServer;
    this.#store = init.store;
    this.#azurite = init.azurite;
    this.#subsystems = init.subsystems;
    this.#invoker = init.invoker;
    this.#uninstall = init.uninstall;
    this.storageConnection = init.storageConnection;
    this.#lock = init.lock;
  }

  /**
   * The Azurite the app's storage is served by has gone. Every storage call would now fail, one
   * by one, each with a connection error naming no cause; the cause is said once, here.
   */
  #storageLost(why: string): void {
    if (this.#stopped) return;
    const emulator = this.#azurite;
    const which = emulator instanceof AzuriteService ? `Azurite ${emulator.pid} for ${this.#options.dataDir ?? 'this host'}` : 'The in-memory Azurite';
    const restart = this.#options.dataDir
      ? 'Start fnhost again: it starts Azurite from the data it saved (writes of the last few seconds may be lost).'
      : 'Start fnhost again (in memory, its storage is empty again).';
    this.logger.error(`${which} ${why} while the host was running: the app has no storage any more, so fnhost stops. ${restart}`);
    this.#options.onStorageLost?.(why);
  }

  /** Starts the host; resolves once the app is loaded and the server listens. */
  static async start(options: HostOptions): Promise<FnHost> {
    const logger = new Logger({ minLevel: options.logLevel, ...(options.logSink ? { sink: options.logSink } : {}) });
    const clock = options.clock ?? systemClock;
    const startedAt = clock.now();
    const config = await loadAppConfig(options.scriptRoot);

    // App settings, as `func` does: local.settings.json Values become environment variables
    // unless the environment already sets them.
    for (const [k, v] of Object.entries(config.values)) {
      if (process.env[k] === undefined) process.env[k] = v;
    }
    process.env['FUNCTIONS_WORKER_RUNTIME'] ??= 'node';
    process.env['AzureWebJobsScriptRoot'] ??= config.scriptRoot;

    // The task hub is opened (and checked) before storage starts: a damaged data folder is refused
    // before anything runs.
    // One host per data folder: a second would run the same activities and triggers on the same
    // task hub and storage. The lock is taken before anything in the folder is read or started.
    const lock = options.dataDir ? HostLock.acquire({ dataDir: options.dataDir, shutdownGraceMs: options.shutdownGraceMs, logger, clock }) : undefined;
    let store: SqliteTaskHubStore;
    try {
      // A keys file that cannot be read is refused now, before Azurite is started for nothing.
      if (options.dataDir) readKeysFile(join(options.dataDir, 'keys.json'));
      const hub = config.host.durable.hubName;
      store = new SqliteTaskHubStore({
        path: options.dataDir ? join(options.dataDir, 'durable', `${hub}.sqlite`) : ':memory:',
        hubName: hub,
      });
    } catch (err) {
      lock?.release();
      throw err;
    }
    const hub = config.host.durable.hubName;

    let azurite: StorageEmulator | undefined;
    let storage = process.env['AzureWebJobsStorage'];
    if (options.azurite && (storage === undefined || storage === '' || isLoopbackStorage(storage))) {
      const given = storage;
      try {
        ({ azurite, storage } = await startStorage({ options, logger, clock, given }));
      } catch (err) {
        store.close();
        lock?.release();
        throw err;
      }
      // The app sees an explicit connection string naming the instance in use, so any port works
      // for it (a reattached Azurite keeps the ports it was started with).
      for (const [k, v] of Object.entries(process.env)) {
        if (v !== undefined && (/^\s*UseDevelopmentStorage=true\s*$/i.test(v) || (given && v === given))) process.env[k] = storage;
      }
      process.env['AzureWebJobsStorage'] = storage;
    }

    const runtime = new WorkerRuntime({ logger, hostVersion: HOST_VERSION });
    const uninstall = installCoreModule(runtime.coreApi);
    const cleanupOnFailure: (() => Promise<void>)[] = [];
    cleanupOnFailure.push(async () => {
      uninstall();
      await azurite?.stop();
    });
    cleanupOnFailure.push(() => Promise.resolve(store.close()));
    cleanupOnFailure.push(() => Promise.resolve(lock?.release()));
    try {
      await loadEntryPoints({
        scriptRoot: config.scriptRoot,
        entryPattern: config.entryPattern,
        isEsm: config.isEsm,
        runtime,
        logger,
      });
      if (runtime.functions.size === 0) {
        logger.warn('No functions were registered. Do your entry files call app.http(), df.app.orchestration(), ...?');
      }
      const capabilities = runtime.programmingModel?.getCapabilities
        ? await runtime.programmingModel.getCapabilities({})
        : {};
      const streamUri = capabilities['HttpUri'];
      // App settings are in the environment by now (local.settings.json Values merged above).
      settleFunctionStates(runtime, { env: process.env, logger, httpStreaming: streamUri !== undefined });

      const keys = KeyStore.load({
        file: options.dataDir ? join(options.dataDir, 'keys.json') : undefined,
        settings: config.keys,
        functionNames: [...runtime.functions.values()].map((f) => f.name),
        enforced: options.enforceKeys ?? true,
      });
      if (!keys.enforced) {
        logger.warn('Keys are not checked (--no-auth): every request has admin access, as with `func start` without --enableAuth.');
      }

      const bindings = new BindingRegistry();
      const invoker = new Invoker({
        runtime,
        bindings,
        logger,
        clock,
        functionTimeoutMs: config.host.functionTimeoutMs,
      });

      const engine = new DurableEngine({
        store,
        runtime,
        invoker,
        logger,
        clock,
        maxConcurrentActivityFunctions: config.host.durable.maxConcurrentActivityFunctions,
        maxConcurrentOrchestratorFunctions: config.host.durable.maxConcurrentOrchestratorFunctions,
        maxConcurrentEntityFunctions: config.host.durable.maxConcurrentEntityFunctions,
        schemaVersion: options.durableSchemaVersion,
        httpCall: defaultHttpCall,
      });

      let publicBase = '';
      let rpcBase = '';
      const durableApi = new DurableHttpApi({
        engine,
        store,
        clock,
        hubName: hub,
        publicBaseUrl: () => `${publicBase}/runtime/webhooks/durabletask`,
        systemKey: keys.systemKey('durabletask_extension'),
      });
      const clientBinding = {
        hubName: hub,
        publicBaseUrl: () => `${publicBase}/runtime/webhooks/durabletask`,
        rpcBaseUrl: () => rpcBase,
        systemKey: keys.systemKey('durabletask_extension'),
        managementUrls: (id: string) => durableApi.managementUrls(id),
      };
      bindings.addInput(new DurableClientBinding(clientBinding));
      bindings.addInput(new OrchestrationClientBinding(clientBinding));

      const eventGrid = new EventGridSubsystem({
        settings: config.eventGrid,
        runtime,
        invoker,
        logger,
        clock,
        dataDir: options.dataDir,
        blobWrites: blobWriteFeed(azurite, { dataDir: options.dataDir, clock, logger }),
        masterKey: keys.keys.master,
      });
      const storageSubsystem = new StorageSubsystem({ runtime, invoker, bindings, logger, clock, config, dataDir: options.dataDir });
      const timers = new TimerSubsystem({ runtime, invoker, logger, clock, dataDir: options.dataDir });

      for (const fn of runtime.functions.values()) {
        if (fn.error !== undefined) continue;
        const missing = bindings.unsupported(fn);
        if (missing.length > 0) logger.warn(`Function "${fn.name}": fnhost does not support ${missing.join(', ')}.`);
      }

      const httpTriggers = new HttpTriggerRouter({
        // Disabled functions keep their routes: they answer 404, or run for an admin caller.
        functions: runtime.functionsWithTrigger('httpTrigger', { includeDisabled: true }),
        invoker,
        keys,
        logger,
        streamUri,
      });
      const durableHandler: WebhookHandler = { handle: (req, path) => durableApi.handle(req, path) };
      const eventGridWebhook = new EventGridWebhook({ functions: runtime.functionsWithTrigger('eventGridTrigger'), invoker, keys });
      const admin = new AdminApi({ runtime, invoker, keys, version: FNHOST_VERSION, durableStats: () => ({ ...engine.stats }) });
      const server = new HostServer({
        routePrefix: config.host.routePrefix,
        httpTriggers,
        webhooks: new Map<string, { handler: WebhookHandler; systemKeyName: string | undefined }>([
          ['durabletask', { handler: durableHandler, systemKeyName: 'durabletask_extension' }],
          // The Event Grid webhook checks its key itself: it must answer 404 for unknown functions after auth.
          ['eventgrid', { handler: { handle: (req) => eventGridWebhook.handle(req) }, systemKeyName: undefined }],
        ]),
        // Custom topics take publishes with their own keys.
        runtime: new Map<string, WebhookHandler>([['eventgrid', { handle: (req, path) => eventGrid.handle(req, path) }]]),
        admin,
        keys,
        logger,
      });
      // DurableClient calls rpcBaseUrl without keys, like the extension's local RPC endpoint.
      const rpcServer = new HostServer({
        routePrefix: '\u0000',
        httpTriggers: new HttpTriggerRouter({ functions: [], invoker, keys, logger, streamUri: undefined }),
        webhooks: new Map<string, { handler: WebhookHandler; systemKeyName: string | undefined }>([
          ['durabletask', { handler: durableHandler, systemKeyName: undefined }],
        ]),
        admin: { handle: () => Promise.resolve({ status: 404 }) },
        keys,
        logger,
      });

      const appStartContext = {
        get hookData() {
          return runtime.appLevelOnlyHookData;
        },
        get appHookData() {
          return runtime.appHookData;
        },
        functionAppDirectory: config.scriptRoot,
      };
      await runtime.executeHooks('appStart', appStartContext);
      runtime.closeRegistration();

      const port = await server.listen(options.port, options.bindHost);
      cleanupOnFailure.push(() => server.close(0));
      const rpcPort = await rpcServer.listen(0, '127.0.0.1');
      cleanupOnFailure.push(() => rpcServer.close(0));
      const shownHost = options.bindHost === '0.0.0.0' || options.bindHost === '::' ? '127.0.0.1' : options.bindHost;
      publicBase = `http://${shownHost}:${port}`;
      rpcBase = `http://127.0.0.1:${rpcPort}/runtime/webhooks/durabletask/`;
      // durable-functions rewrites management URLs to localhost:7071 unless this is set.
      process.env['WEBSITE_HOSTNAME'] = `${shownHost}:${port}`;

      exposeTopics(eventGrid.environment(publicBase), config.values);

      engine.start();
      await storageSubsystem.start();
      await timers.start();
      await eventGrid.start();

      const host = new FnHost({
        options,
        logger,
        runtime,
        config,
        engine,
        keys,
        url: publicBase,
        server,
        rpcServer,
        store,
        azurite,
        subsystems: [storageSubsystem, timers, eventGrid],
        invoker,
        uninstall,
        storageConnection: storage,
        lock,
      });
      host.#printStartup(clock.now() - startedAt);
      azurite?.watch((why) => host.#storageLost(why));
      return host;
    } catch (err) {
      for (const cleanup of cleanupOnFailure.reverse()) {
        await cleanup().catch(() => undefined);
      }
      throw err;
    }
  }

  /**
   * What `func start` prints once the host runs, in its order: the worker line, the host's start
   * lines, the "Functions:" listing, then the lock-lease line that tools such as VS Code's
   * Azure Functions tasks wait for. fnhost's own lines (keys, storage, address) come before the
   * lock lease, so everything is printed once a tool stops waiting.
   */
  #printStartup(startupMs: number): void {
    const log = this.logger;
    log.info(WORKER_STARTED);
    log.info(`Host started (${startupMs}ms)`);
    log.info('Job host started');
    const listing = functionsListing(this.runtime.functions.values(), {
      baseUrl: this.url,
      routePrefix: this.config.host.routePrefix,
      // With keys checked, a function-level URL without its key would only answer 401.
      keyFor: (fn) => {
        const level = fn.trigger['authLevel'];
        return this.keys.enforced && typeof level === 'string' && level.toLowerCase() === 'function' ? this.keys.functionKey(fn.name) : undefined;
      },
    });
    const lines = [...listing, '', `Master key: ${this.keys.keys.master}`];
    if (this.storageConnection) lines.push(`Storage (AzureWebJobsStorage): ${printableConnection(this.storageConnection)}`);
    lines.push('');
    log.info(lines.join('\n'));
    log.info(`fnhost ${FNHOST_VERSION} is listening on ${this.url}`);
    log.info(lockLeaseLine(hostInstanceId(process.env, hostname())));
  }

  /**
   * Stops taking work, lets invocations in progress finish (within the grace period), runs
   * appTerminate hooks, closes the task hub and stops Azurite.
   */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    const grace = this.#options.shutdownGraceMs;
    // Shutdown cancels the waits between retries, as the host's cancellation token does.
    this.#invoker.stop();
    await Promise.all([this.#server.close(grace), this.#rpcServer.close(grace)]);
    for (const s of this.#subsystems) await s.stop(grace).catch((err: unknown) => this.logger.warn(describeError(err)));
    await this.engine.stop(grace);
    const runtime = this.runtime;
    const terminateContext = {
      get hookData() {
        return runtime.appLevelOnlyHookData;
      },
      get appHookData() {
        return runtime.appHookData;
      },
    };
    try {
      await this.runtime.executeHooks('appTerminate', terminateContext);
    } catch (err) {
      this.logger.warn(`An appTerminate hook failed: ${describeError(err)}`);
    }
    this.#store.close();
    this.#uninstall();
    try {
      await this.#azurite?.stop();
    } finally {
      this.#lock?.release();
    }
  }
}
