import { errorMessage } from '../errors.js';
import type { JobStore } from '../jobs/job-store.js';
import { isTerminalJob } from '../schemas/jobs.js';
import type { EventPublisher } from './publisher.js';

/** What the dispatcher needs of the job store (its outbox rows and marks). */
export type EventOutboxStore = Pick<JobStore, 'pendingEvents' | 'deleteEvent' | 'lastEvent' | 'markedJobs' | 'unmark' | 'discardEvents' | 'get'>;

/** Time as the dispatcher sees it; tests pass one they drive, so a retry never means a real wait. */
export interface Clock {
  now(): Date;
  sleep(ms: number): Promise<void>;
}

export const systemClock: Clock = {
  now: () => new Date(),
  sleep: (ms) =>
    new Promise((resolve) => {
      setTimeout(resolve, ms).unref();
    }),
};

/** How failed publishes are retried in the process that recorded the events; the sweep takes over after the last attempt. */
export interface RetryPolicy {
  /** Attempts in all. */
  attempts: number;
  /** Wait before the first retry; doubling from there. */
  firstDelayMs: number;
  maxDelayMs: number;
}

/** About 4 minutes of retries (1, 2, 4 … 60 s), then the periodic sweep retries every minute. */
export const DEFAULT_RETRY: RetryPolicy = { attempts: 9, firstDelayMs: 1000, maxDelayMs: 60_000 };

/** The wait after the `failures`-th failed attempt in a row. */
export function retryDelayMs(policy: RetryPolicy, failures: number): number {
  return Math.min(policy.maxDelayMs, policy.firstDelayMs * 2 ** Math.max(0, failures - 1));
}

/**
 * A sweep leaves alone events younger than this: they were just recorded, and the process that
 * recorded them publishes them (a job's first event waits for its orchestration to start, and is
 * dropped if the invocation is undone).
 */
export const SWEEP_GRACE_MS = 60_000;

/** What a sweep did. */
export interface SweepResult {
  published: number;
  /** Jobs whose events could not be published this time. */
  failed: number;
  /** Marks dropped: jobs with nothing left to publish, ever. */
  finished: number;
}

/**
 * Publishes recorded job events (the outbox rows JobStore writes with each transition) to the
 * topic, each job's in the order of its transitions, deleting each row once the topic accepted
 * it. A job's events are published one at a time: the next is sent only after the topic accepted
 * the one before (so even two processes draining one job never send a later event before an
 * earlier one is accepted). Publishing never touches a job's state or outputs, and a failure only
 * delays the events: they stay in the outbox and are retried, here with backoff, then by the
 * sweep (a timer function) that also finds events a crashed process left behind.
 */
export class JobEventsDispatcher {
  readonly #store: EventOutboxStore;
  readonly #publisher: EventPublisher;
  readonly #clock: Clock;
  readonly #retry: RetryPolicy;
  readonly #log: (message: string) => void;
  /** Jobs being published in this process; `again`: more was recorded meanwhile. */
  readonly #running = new Map<string, { again: boolean; done: Promise<void> }>();

  constructor(options: { store: EventOutboxStore; publisher: EventPublisher; clock?: Clock; retry?: RetryPolicy; log?: (message: string) => void }) {
    this.#store = options.store;
    this.#publisher = options.publisher;
    this.#clock = options.clock ?? systemClock;
    this.#retry = options.retry ?? DEFAULT_RETRY;
    this.#log = options.log ?? ((message) => console.warn(message));
  }

  /**
   * Publishes a job's events in the background (never awaited by the work that recorded them),
   * retrying failures with backoff. A kick while the job is being published makes it look again.
   */
  kick(jobId: string): void {
    const running = this.#running.get(jobId);
    if (running) {
      running.again = true;
      return;
    }
    const entry = { again: false, done: Promise.resolve() };
    this.#running.set(jobId, entry);
    entry.done = this.#loop(jobId, entry);
  }

  async #loop(jobId: string, entry: { again: boolean }): Promise<void> {
    let failures = 0;
    for (;;) {
      entry.again = false;
      try {
        await this.drain(jobId);
        failures = 0;
        if (!entry.again) break;
      } catch (err) {
        failures++;
        if (failures >= this.#retry.attempts) {
          this.#log(`job ${jobId}: events not published after ${failures} attempts (${errorMessage(err)}); the sweep will retry them`);
          break;
        }
        await this.#clock.sleep(retryDelayMs(this.#retry, failures));
      }
    }
    // Synchronously after the last look: a kick from now on starts a new loop.
    this.#running.delete(jobId);
  }

  /** Resolves when no job is being published in the background (for tests and shutdown). */
  async idle(): Promise<void> {
    while (this.#running.size > 0) await Promise.all([...this.#running.values()].map((e) => e.done));
  }

  /**
   * Publishes a job's recorded events once, in order, each removed from the outbox after the topic
   * accepted it; stops at the first failure (thrown). Returns how many were published.
   */
  async drain(jobId: string): Promise<number> {
    const events = await this.#store.pendingEvents(jobId);
    for (const recorded of events) {
      await this.#publisher.publish([recorded.event]);
      await this.#store.deleteEvent(jobId, recorded.seq);
    }
    return events.length;
  }

  /**
   * Finds events left behind (a process that crashed, or ran out of retries) and publishes them:
   * every job marked as having events, except those this process is publishing now and those
   * whose events are younger than SWEEP_GRACE_MS. A job whose record is gone (an invocation undone
   * half way) has its events dropped unpublished; a job that has ended and has nothing left to
   * publish loses its mark. After three jobs in a row fail, the topic is taken to be down and the
   * rest wait for the next sweep.
   */
  async sweep(): Promise<SweepResult> {
    const result: SweepResult = { published: 0, failed: 0, finished: 0 };
    let failedInRow = 0;
    const old = (time: string): boolean => this.#clock.now().getTime() - Date.parse(time) >= SWEEP_GRACE_MS;
    for (const { jobId, since, etag } of await this.#store.markedJobs()) {
      if (failedInRow >= 3) {
        result.failed++;
        continue;
      }
      if (this.#running.has(jobId)) continue;
      try {
        const pending = await this.#store.pendingEvents(jobId);
        const oldest = pending[0];
        // Marked or recorded just now: the recording process is on it (or the job is being created).
        if (!old(since) || (oldest && !old(oldest.recordedAt))) continue;
        if (!(await this.#store.get(jobId))) {
          await this.#store.discardEvents(jobId);
          continue;
        }
        if (oldest) {
          result.published += await this.drain(jobId);
          failedInRow = 0;
        }
        const last = await this.#store.lastEvent(jobId);
        if (last && isTerminalJob(last.status) && (await this.#store.pendingEvents(jobId)).length === 0) {
          await this.#store.unmark(jobId, etag);
          result.finished++;
        }
      } catch (err) {
        failedInRow++;
        result.failed++;
        this.#log(`job ${jobId}: events not published by the sweep (${errorMessage(err)})`);
      }
    }
    return result;
  }
}
