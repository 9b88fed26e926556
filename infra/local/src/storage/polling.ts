import type { Clock } from '../clock.js';

/**
 * The host's randomized exponential backoff for polling an empty queue: starting at `minMs`,
 * each empty poll roughly doubles the wait (±20 %), capped at `maxMs`; finding work resets it.
 */
export class RandomizedBackoff {
  readonly #minMs: number;
  readonly #maxMs: number;
  readonly #random: () => number;
  #current: number;
  #exponent = 1;

  /** @param random a source of numbers in [0, 1); injectable so tests get fixed delays. */
  constructor(options: { minMs: number; maxMs: number; random?: () => number }) {
    this.#minMs = Math.max(0, options.minMs);
    this.#maxMs = Math.max(this.#minMs, options.maxMs);
    this.#random = options.random ?? Math.random;
    this.#current = this.#minMs;
  }

  /** The delay before the next poll, given whether the last poll found work. */
  next(foundWork: boolean): number {
    if (foundWork) {
      this.#current = this.#minMs;
      this.#exponent = 1;
      return this.#current;
    }
    if (this.#current === this.#maxMs) return this.#current;
    const factor = 0.8 + this.#random() * 0.4;
    const candidate = this.#minMs + factor * 2 ** (this.#exponent - 1) * this.#minMs;
    if (candidate < this.#maxMs) {
      this.#current = candidate;
      this.#exponent += 1;
    } else {
      this.#current = this.#maxMs;
    }
    return Math.round(this.#current);
  }
}

/**
 * Counts work in progress so a listener can hold back new work (batch thresholds, parallelism)
 * and stop() can wait for what is running.
 */
export class InFlight {
  #count = 0;
  #waiters: { limit: number; resolve: () => void }[] = [];

  get size(): number {
    return this.#count;
  }

  /** Counts `work` until it settles; never rejects (callers handle their own errors). */
  track(work: Promise<unknown>): void {
    this.#count += 1;
    void work
      .catch(() => undefined)
      .finally(() => {
        this.#count -= 1;
        const ready = this.#waiters.filter((w) => this.#count <= w.limit);
        this.#waiters = this.#waiters.filter((w) => this.#count > w.limit);
        for (const w of ready) w.resolve();
      });
  }

  /** Resolves once at most `limit` pieces of work are in progress. */
  atMost(limit: number): Promise<void> {
    if (this.#count <= limit) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push({ limit, resolve }));
  }

  /** Resolves true when nothing is in progress, or false when `timeoutMs` passes first. */
  drained(clock: Clock, timeoutMs: number): Promise<boolean> {
    if (this.#count === 0) return Promise.resolve(true);
    return within(clock, this.atMost(0), timeoutMs);
  }
}

/** Resolves true when `work` settles within `timeoutMs` on the clock, false otherwise. */
export async function within(clock: Clock, work: Promise<unknown>, timeoutMs: number): Promise<boolean> {
  let handle: unknown;
  const timeout = new Promise<boolean>((resolve) => {
    handle = clock.setTimeout(() => resolve(false), Math.max(0, timeoutMs));
  });
  try {
    return await Promise.race([work.then(
      () => true,
      () => true,
    ), timeout]);
  } finally {
    clock.clearTimeout(handle);
  }
}

/**
 * One self-rescheduling loop driven by the injected clock: `tick` runs, then returns the delay
 * until it should run again. stop() cancels the pending timer; a tick already running finishes.
 */
export class PollLoop {
  readonly #clock: Clock;
  readonly #tick: () => Promise<number>;
  readonly #onError: (err: unknown) => number;
  #handle: unknown;
  #stopped = false;
  #running: Promise<void> | undefined;

  constructor(options: { clock: Clock; tick: () => Promise<number>; onError: (err: unknown) => number }) {
    this.#clock = options.clock;
    this.#tick = options.tick;
    this.#onError = options.onError;
  }

  get stopped(): boolean {
    return this.#stopped;
  }

  start(delayMs = 0): void {
    this.#schedule(delayMs);
  }

  /** Runs the tick now instead of waiting for the timer (e.g. when work is known to be waiting). */
  wake(): void {
    if (this.#stopped || this.#running) return;
    this.#clock.clearTimeout(this.#handle);
    this.#schedule(0);
  }

  /** Stops scheduling; resolves when a tick that is running has returned. */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#clock.clearTimeout(this.#handle);
    await this.#running;
  }

  #schedule(delayMs: number): void {
    if (this.#stopped) return;
    this.#handle = this.#clock.setTimeout(() => {
      this.#running = this.#run().finally(() => {
        this.#running = undefined;
      });
    }, delayMs);
  }

  async #run(): Promise<void> {
    let delay: number;
    try {
      delay = await this.#tick();
    } catch (err) {
      delay = this.#onError(err);
    }
    this.#schedule(delay);
  }
}
