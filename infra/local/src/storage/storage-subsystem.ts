import type { Clock } from '../clock.js';
import type { AppConfig } from '../config/app-config.js';
import type { Logger } from '../log.js';
import type { BindingRegistry } from '../worker/bindings.js';
import type { Invoker } from '../worker/invoker.js';
import type { WorkerRuntime } from '../worker/worker-runtime.js';

export interface StorageSubsystemOptions {
  runtime: WorkerRuntime;
  invoker: Invoker;
  bindings: BindingRegistry;
  logger: Logger;
  clock: Clock;
  config: AppConfig;
  dataDir: string | undefined;
}

export class StorageSubsystem {
  constructor(private readonly options: StorageSubsystemOptions) {}
  start(): Promise<void> {
    return Promise.resolve();
  }
  stop(_graceMs: number): Promise<void> {
    return Promise.resolve();
  }
}
