/**
 * The scoring runtime: one piscina pool of worker threads per scorer (spec key), each worker
 * initialised once, mini-batches run with a timeout that terminates a stuck worker.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { MessageChannel } from 'node:worker_threads';
import { Piscina } from 'piscina';
import { BatchError, errorMessage } from '../errors.js';
import type { ArrivalEvent, LogEntry, WorkerEvent, WorkerReply, WorkerTask } from './protocol.js';
import type { ScoreOutcome, ScoreRequest, ScorerSpec, ScoringRuntime } from './types.js';

/** Options of {@link createScoringRuntime}; the defaults suit the app. */
export interface ScoringRuntimeOptions {
  /** Path or file URL of the compiled worker module; by default `worker.js` next to this module. */
  workerFile?: string | URL | undefined;
  /**
   * A pool nobody has used for this long is stopped (default 5 minutes). Jobs release their pool
   * when they end, but only on the instance that finalizes them; in Azure other instances that ran
   * the job's mini-batches would otherwise keep its workers and model sessions forever.
   */
  idleReleaseMs?: number | undefined;
  /** The clock for idle times (milliseconds); `performance.now` by default. */
  now?: (() => number) | undefined;
  /**
   * Each scoring thread's V8 young generation in MB (`resourceLimits.maxYoungGenerationSizeMb`;
   * V8 makes it two semi-spaces of a third each and a large-object space); default 12. Uncapped,
   * V8 grows a thread's semi-spaces up to 16 MB under steady allocation, so a long job's threads
   * held more than a short one's (10 → 17 MB of heap each in bench (c), 10,000 against 100,000
   * files). Tensors live outside the heap, so ONNX scoring does not feel the cap; a script that
   * makes much short-lived garbage does (a tester's script building 400,000 objects a mini-batch:
   * ~105 ms uncapped, ~160-215 ms at 12): raise it for such scripts (BATCH_SCORING_YOUNG_GENERATION_MB).
   */
  youngGenerationMb?: number | undefined;
}

interface Pool {
  pool: Piscina<WorkerTask, WorkerReply>;
  /** The spec the pool's workers were initialised with: a changed spec needs new workers. */
  fingerprint: string;
  /** Errors of workers that died between tasks, handed to the next mini-batch's logs. */
  notes: LogEntry[];
  /** Tasks running or queued on the pool. */
  active: number;
  lastUsed: number;
}

/** What one task on a worker came to. */
type TaskOutcome = ScoreOutcome | { status: 'released'; logs: LogEntry[] };

/** For a worker that waits for a whole mini-batch: landed bytes sent on before the rest has landed. */
const WHOLE_FLUSH_BYTES = 1024 * 1024;

/** See ScoringRuntimeOptions.youngGenerationMb. */
const DEFAULT_YOUNG_GENERATION_MB = 12;

function secondsText(ms: number): string {
  return String(Number((ms / 1000).toFixed(3)));
}

function round(seconds: number): number {
  return Math.round(seconds * 1000) / 1000;
}

class PiscinaScoringRuntime implements ScoringRuntime {
  readonly #workerFile: string;
  readonly #pools = new Map<string, Pool>();
  /** Pools being destroyed; runs still on them end as failed (retryable), not as errors. */
  readonly #retired = new WeakSet<Piscina<WorkerTask, WorkerReply>>();
  readonly #idleReleaseMs: number;
  readonly #youngGenerationMb: number;
  readonly #now: () => number;
  #sweeper: NodeJS.Timeout | undefined;

  constructor(options: ScoringRuntimeOptions) {
    const file = options.workerFile ?? new URL('./worker.js', import.meta.url);
    this.#workerFile = file instanceof URL || file.startsWith('file:') ? fileURLToPath(file) : file;
    this.#idleReleaseMs = options.idleReleaseMs ?? 5 * 60_000;
    this.#youngGenerationMb = options.youngGenerationMb ?? DEFAULT_YOUNG_GENERATION_MB;
    this.#now = options.now ?? (() => performance.now());
  }

  async score(spec: ScorerSpec, request: ScoreRequest): Promise<ScoreOutcome> {
    const entry = await this.#poolFor(spec);
    const earlier = entry.notes.splice(0);
    const outcome = await this.#execute(
      entry,
      // A script's run() gets the whole mini-batch at once: its files need not reach the worker one by one.
      { items: request.items, ready: request.ready, columns: request.columns, knownColumns: request.knownColumns, whole: spec.kind === 'script' },
      request.timeoutMs,
    );
    if (outcome.status === 'released') {
      return { status: 'failed', error: 'the scorer was released while this mini-batch ran', retryable: true, logs: [...earlier, ...outcome.logs], seconds: 0 };
    }
    return outcome.status === 'completed'
      ? { status: 'completed', result: { ...outcome.result, logs: [...earlier, ...outcome.result.logs] } }
      : { ...outcome, logs: [...earlier, ...outcome.logs] };
  }

  async warm(spec: ScorerSpec, options: { timeoutMs: number; ready?: Promise<unknown> | undefined }): Promise<void> {
    // The pool starts its threads as it is made; they boot while `ready` (the files) is awaited.
    const entry = await this.#poolFor(spec);
    await options.ready;
    const threads = Math.max(1, Math.floor(spec.maxConcurrency));
    const outcomes = await Promise.all(Array.from({ length: threads }, () => this.#execute(entry, { items: [], warmup: true }, options.timeoutMs)));
    // A worker that failed or timed out while warming up says so in the next mini-batch's logs.
    for (const outcome of outcomes) {
      if (outcome.status === 'timeout' || outcome.status === 'released') entry.notes.push(...outcome.logs);
      if (outcome.status === 'timeout') entry.notes.push({ level: 'error', message: `warming up a scoring worker: ${outcome.error}`, time: new Date().toISOString() });
    }
  }

  /** Runs one task on the pool with the timeout; what the scorer does wrong is an outcome, not an error. */
  async #execute(
    entry: Pool,
    task: Partial<Pick<ScoreRequest, 'ready' | 'columns' | 'knownColumns'>> & {
      items: WorkerTask['items'];
      warmup?: boolean;
      /** The worker waits for every item before it scores: arrivals travel together (see below). */
      whole?: boolean;
    },
    timeoutMs: number,
  ): Promise<TaskOutcome> {
    const called = performance.now();
    const { pool } = entry;
    entry.active++;
    entry.lastUsed = this.#now();
    // setTimeout treats anything above 2^31-1 ms as 1 ms; no positive finite limit means none.
    const limit = Number.isFinite(timeoutMs) && timeoutMs > 0 ? Math.min(timeoutMs, 2 ** 31 - 1) : undefined;
    const { port1, port2 } = new MessageChannel();
    const streamed: LogEntry[] = [];
    const controller = new AbortController();
    let startedAt: number | undefined;
    let expired: 'init' | 'run' | undefined;
    let timer: NodeJS.Timeout | undefined;
    port1.on('message', (event: WorkerEvent) => {
      if (event.type === 'log') {
        streamed.push(event.entry);
        return;
      }
      if (event.type === 'columns') {
        const { type: _type, ...proposal } = event;
        const decide = task.columns ?? ((p) => Promise.resolve({ columns: p.proposed }));
        decide(proposal).then(
          (decision) => port1.postMessage({ type: 'columns', ...decision } satisfies ArrivalEvent),
          (err: unknown) => port1.postMessage({ type: 'columns', error: errorMessage(err) } satisfies ArrivalEvent),
        );
        return;
      }
      // The clock starts when a worker takes the task (queueing for a busy pool is not the
      // scorer's fault) and restarts for run() after a first-time init: each gets the full timeout.
      startedAt ??= performance.now();
      clearTimeout(timer);
      if (limit === undefined) return;
      timer = setTimeout(() => {
        expired = event.phase;
        controller.abort(new Error('timeout'));
      }, limit);
    });
    const seconds = (): number => round((performance.now() - (startedAt ?? called)) / 1000);
    // Arrivals queue on the port until the worker listens; once the task is over they go nowhere.
    // Every message wakes the worker thread and costs the event loop ~50 µs, so items that land in
    // one turn travel together; for a worker that waits for all of them, items travel together
    // until all have landed or WHOLE_FLUSH_BYTES are waiting (the worker writes a script's files as
    // they come, so large ones still reach the disk while the rest download).
    const landed: { index: number; bytes?: Uint8Array | undefined }[] = [];
    let waiting = task.ready?.length ?? 0;
    let landedBytes = 0;
    const post = (): void => {
      landedBytes = 0;
      if (landed.length > 0) port1.postMessage({ type: 'ready', items: landed.splice(0) } satisfies ArrivalEvent);
    };
    task.ready?.forEach((arrived, index) => {
      void arrived.then(
        (bytes) => {
          waiting--;
          if (task.whole) {
            landed.push({ index, bytes });
            landedBytes += bytes?.byteLength ?? 0;
            if (waiting === 0 || landedBytes >= WHOLE_FLUSH_BYTES) post();
            return;
          }
          if (landed.length === 0) setImmediate(post);
          landed.push({ index, bytes });
        },
        (err: unknown) => {
          // What landed before the failure still counts: it goes first.
          post();
          port1.postMessage({ type: 'abort', error: errorMessage(err) } satisfies ArrivalEvent);
        },
      );
    });

    let reply: WorkerReply;
    try {
      const { ready, columns, whole: _whole, ...rest } = task;
      reply = await pool.run({ ...rest, streamed: ready !== undefined, columns: columns !== undefined, port: port2 }, { signal: controller.signal, transferList: [port2] });
    } catch (err) {
      if (expired) {
        // piscina has terminated the worker; the pool starts a fresh one (with a fresh init) when needed.
        const what = expired === 'init' ? 'init()' : 'mini-batch';
        return { status: 'timeout', error: `${what} exceeded the ${secondsText(timeoutMs)} s timeout`, logs: streamed, seconds: seconds() };
      }
      if (this.#retired.has(pool)) return { status: 'released', logs: streamed };
      // The worker died under the script (process.exit, an uncaught exception, out of memory).
      return { status: 'failed', error: `the scoring worker stopped: ${errorMessage(err)}`, retryable: true, logs: streamed, seconds: seconds() };
    } finally {
      clearTimeout(timer);
      port1.close();
      entry.active--;
      entry.lastUsed = this.#now();
    }

    switch (reply.status) {
      case 'completed': {
        const { status: _status, data, ...result } = reply;
        return { status: 'completed', result: { ...result, data: Buffer.from(data.buffer, data.byteOffset, data.byteLength) } };
      }
      case 'failed':
        return reply;
      case 'internal':
        throw new BatchError('internal', `The scoring runtime failed in its worker: ${reply.error}`);
      default:
        throw new BatchError('internal', `The scoring worker sent an unknown reply: ${JSON.stringify(reply)}`);
    }
  }

  /** Stops pools nobody has used for idleReleaseMs. */
  #sweep(): void {
    const now = this.#now();
    for (const [key, entry] of this.#pools) {
      if (entry.active === 0 && now - entry.lastUsed >= this.#idleReleaseMs) {
        this.#pools.delete(key);
        this.#destroy(entry.pool).catch(() => undefined);
      }
    }
    if (this.#pools.size === 0) {
      clearInterval(this.#sweeper);
      this.#sweeper = undefined;
    }
  }

  async release(key: string): Promise<void> {
    const entry = this.#pools.get(key);
    if (!entry) return;
    this.#pools.delete(key);
    await this.#destroy(entry.pool);
  }

  pools(): number {
    return this.#pools.size;
  }

  async close(): Promise<void> {
    clearInterval(this.#sweeper);
    this.#sweeper = undefined;
    const pools = [...this.#pools.values()];
    this.#pools.clear();
    await Promise.all(pools.map((p) => this.#destroy(p.pool)));
  }

  async #destroy(pool: Piscina<WorkerTask, WorkerReply>): Promise<void> {
    this.#retired.add(pool);
    await pool.destroy();
  }

  async #poolFor(spec: ScorerSpec): Promise<Pool> {
    const fingerprint = JSON.stringify(spec);
    const existing = this.#pools.get(spec.key);
    if (existing?.fingerprint === fingerprint) return existing;
    if (existing) {
      // Same key, different scorer: its workers were initialised for the old one.
      this.#pools.delete(spec.key);
      await this.#destroy(existing.pool);
      const raced = this.#pools.get(spec.key);
      if (raced?.fingerprint === fingerprint) return raced;
    }
    if (!existsSync(this.#workerFile)) {
      throw new BatchError('internal', `The scoring worker module ${this.#workerFile} is missing; build the app (tsc -p tsconfig.json).`);
    }
    const threads = Math.max(1, Math.floor(spec.maxConcurrency));
    const pool = new Piscina<WorkerTask, WorkerReply>({
      filename: this.#workerFile,
      workerData: spec,
      // Every worker starts with the pool (booting a thread takes ~40-100 ms, best spent while the
      // job is still planned) and is kept: each initialises once and serves the job to its end.
      minThreads: threads,
      maxThreads: threads,
      idleTimeout: Infinity,
      // Atomics.wait between tasks would freeze timers and I/O a script leaves running.
      atomics: 'disabled',
      resourceLimits: { maxYoungGenerationSizeMb: this.#youngGenerationMb },
    });
    const entry: Pool = { pool, fingerprint, notes: [], active: 0, lastUsed: this.#now() };
    // A worker lost outside a task (a script's timer that throws) must not crash the host; the next
    // mini-batch's logs say what happened. piscina replaces the worker.
    pool.on('error', (err: unknown) => {
      entry.notes.push({ level: 'error', message: `a scoring worker stopped between mini-batches: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`, time: new Date().toISOString() });
    });
    this.#pools.set(spec.key, entry);
    // Sweep a few times per idle period; the timer never keeps the process alive.
    this.#sweeper ??= setInterval(() => this.#sweep(), Math.max(10, Math.floor(this.#idleReleaseMs / 4))).unref();
    return entry;
  }
}

/** Creates the runtime; one per process is enough (pools are per spec key). */
export function createScoringRuntime(options: ScoringRuntimeOptions = {}): ScoringRuntime {
  return new PiscinaScoringRuntime(options);
}
