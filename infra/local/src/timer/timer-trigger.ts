import type { Clock } from '../clock.js';
import type { Logger } from '../log.js';
import type { Invoker } from '../worker/invoker.js';
import type { WorkerRuntime } from '../worker/worker-runtime.js';

export class TimerSubsystem {
  constructor(
    private readonly options: { runtime: WorkerRuntime; invoker: Invoker; logger: Logger; clock: Clock; dataDir: string | undefined },
  ) {}
  start(): Promise<void> {
    return Promise.resolve();
  }
  stop(_graceMs: number): Promise<void> {
    return Promise.resolve();
  }
}
