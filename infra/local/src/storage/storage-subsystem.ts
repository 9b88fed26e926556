import { join } from 'node:path';
import type { Clock } from '../clock.js';
import type { AppConfig } from '../config/app-config.js';
import { describeError } from '../errors.js';
import type { Logger } from '../log.js';
import type { BindingRegistry } from '../worker/bindings.js';
import type { Invoker } from '../worker/invoker.js';
import type { RegisteredFunction, WorkerRuntime } from '../worker/worker-runtime.js';
import { BlobInputBinding, BlobOutputBinding } from './blob-bindings.js';
import { BlobReceipts } from './blob-receipts.js';
import { BlobListener } from './blob-trigger.js';
import { StorageClients } from './connections.js';
import { QueueOutputBinding } from './queue-output.js';
import { QueueListener } from './queue-trigger.js';
import { TableInputBinding, TableOutputBinding } from './table-bindings.js';

export interface StorageSubsystemOptions {
  runtime: WorkerRuntime;
  invoker: Invoker;
  bindings: BindingRegistry;
  logger: Logger;
  clock: Clock;
  config: AppConfig;
  dataDir: string | undefined;
}

/** How often blob triggers scan their containers. */
const BLOB_SCAN_INTERVAL_MS = 2000;

interface Listener {
  readonly fn: RegisteredFunction;
  start(): void;
  stop(graceMs: number): Promise<void>;
}

/**
 * Azure Storage for the app: blob, queue and table bindings (registered on construction, so the
 * host's check for unsupported bindings sees them) and the queue and blob triggers (started by
 * start(), once the app settings are in process.env).
 */
export class StorageSubsystem {
  readonly #o: StorageSubsystemOptions;
  readonly #clients = new StorageClients();
  #listeners: Listener[] = [];
  #queueListeners: QueueListener[] = [];

  constructor(options: StorageSubsystemOptions) {
    this.#o = options;
    const deps = { clients: this.#clients, clock: options.clock };
    options.bindings.addInput(new BlobInputBinding(deps));
    options.bindings.addOutput(new BlobOutputBinding(deps));
    options.bindings.addOutput(
      new QueueOutputBinding({
        ...deps,
        sent: (connectionString, queueName) => {
          for (const l of this.#queueListeners) {
            if (l.queueName === queueName && l.connectionString === connectionString) l.wake();
          }
        },
      }),
    );
    options.bindings.addInput(new TableInputBinding(deps));
    options.bindings.addOutput(new TableOutputBinding(deps));
  }

  /**
   * Starts one listener per queue- and blob-triggered function. A function whose trigger is
   * misconfigured is reported and left out, as the host marks it "in error" and runs the rest.
   */
  async start(): Promise<void> {
    const { runtime, invoker, logger, clock, config, dataDir } = this.#o;
    const listeners: Listener[] = [];
    for (const fn of runtime.functionsWithTrigger('queueTrigger')) {
      this.#create(fn, () => new QueueListener({ fn, invoker, clients: this.#clients, logger, clock, queues: config.host.queues }), listeners);
    }
    const blobFunctions = runtime.functionsWithTrigger('blobTrigger');
    if (blobFunctions.length > 0) {
      const receipts = await BlobReceipts.open(dataDir ? join(dataDir, 'blob-receipts.jsonl') : undefined, logger);
      for (const fn of blobFunctions) {
        if (fn.trigger['source'] === 'EventGrid') {
          logger.info(`Function '${fn.name}': fnhost scans the container instead of waiting for Event Grid notifications.`);
        }
        this.#create(
          fn,
          () =>
            new BlobListener({
              fn,
              invoker,
              clients: this.#clients,
              logger,
              clock,
              receipts,
              maxDequeueCount: config.host.queues.maxDequeueCount,
              pollIntervalMs: BLOB_SCAN_INTERVAL_MS,
              maxParallelism: config.host.blobs.maxDegreeOfParallelism,
            }),
          listeners,
        );
      }
    }
    this.#listeners = listeners;
    this.#queueListeners = listeners.filter((l): l is QueueListener => l instanceof QueueListener);
    for (const listener of listeners) listener.start();
  }

  /** Stops polling and waits (up to `graceMs` in all) for triggered invocations in progress. */
  async stop(graceMs: number): Promise<void> {
    const listeners = this.#listeners;
    this.#listeners = [];
    this.#queueListeners = [];
    await Promise.all(listeners.map((l) => l.stop(graceMs)));
  }

  #create(fn: RegisteredFunction, make: () => Listener, into: Listener[]): void {
    try {
      into.push(make());
    } catch (err) {
      this.#o.logger.error(`The '${fn.name}' function is in error: ${describeError(err)}`);
    }
  }
}
