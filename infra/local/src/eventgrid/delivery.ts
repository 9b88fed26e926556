import type { Clock } from '../clock.js';
import { describeError } from '../errors.js';
import type { Logger } from '../log.js';
import type { CursorStore, EventLog, LogEntry } from './event-log.js';
import type { EventRecord } from './filters.js';
import { afterFailure } from './retry-schedule.js';
import type { RetryPolicy } from './settings.js';

/** The outcome of one delivery attempt. `status` is the endpoint's answer, when there was one. */
export type AttemptResult = { ok: true } | { ok: false; status?: number; reason: string };

export interface Deliverable {
  event: EventRecord;
  /** Events of one subject are delivered in log order, one at a time. */
  subject: string;
  /** When the event entered Event Grid (ms), for its time to live. */
  publishedAt: number;
}

export interface SubscriptionDeliveryOptions {
  /** Names the subscription in logs, its cursor and its dead letters. */
  name: string;
  log: EventLog;
  cursors: CursorStore;
  /** The event a log entry becomes for this subscription (its schema, filtered); undefined to skip it. */
  select(entry: LogEntry): Deliverable | undefined;
  /** One attempt; `deliveryCount` is the number of attempts before this one. */
  deliver(event: EventRecord, deliveryCount: number): Promise<AttemptResult>;
  /** Answers that are not retried (the event is dead-lettered at once). */
  notRetried: ReadonlySet<number>;
  retryPolicy: RetryPolicy;
  /** EventGrid.retryDelayScale. */
  scale: number;
  /** Where an event goes when it is given up on. */
  deadLetter(event: EventRecord, why: string, deliveryCount: number): Promise<void>;
  clock: Clock;
  logger: Logger;
  /** Attempts in flight at once, across subjects. */
  maxConcurrent?: number;
  random?: () => number;
}

interface Item {
  entry: LogEntry;
  deliverable: Deliverable | undefined;
  failures: number;
  done: boolean;
}

/** Entries held in memory at once; the log holds the rest until these are delivered. */
const WINDOW = 5000;

/**
 * Delivers one subscription's events from its log, as Event Grid does: each matching event at
 * least once, retried on failure after Event Grid's (scaled) schedule until it is delivered or
 * its attempts or time to live run out, then dead-lettered. Events of one subject go in order,
 * one at a time (a retry holds back the subject's later events); other subjects are not held.
 *
 * The cursor (the position before which everything is done) is saved as it moves, so a restart
 * delivers again what was in flight: at least once, never lost.
 */
export class SubscriptionDelivery {
  readonly #o: SubscriptionDeliveryOptions;
  readonly #window: Item[] = [];
  readonly #subjects = new Map<string, Item[]>();
  readonly #ready: Item[] = [];
  readonly #timers = new Set<unknown>();
  readonly #active = new Set<Promise<void>>();
  #readPosition = 0;
  #reading = false;
  #readAgain = false;
  #stopped = true;
  #unwatch: (() => void) | undefined;

  constructor(options: SubscriptionDeliveryOptions) {
    this.#o = options;
  }

  /**
   * Starts from the saved cursor. A subscription seen for the first time starts at the end of the
   * log, as a new Event Grid subscription receives only events published after it was created.
   */
  async start(): Promise<void> {
    const { cursors, name, log } = this.#o;
    let cursor = cursors.get(name);
    if (cursor === undefined) {
      cursor = await log.end();
      cursors.set(name, cursor, true);
    }
    this.#readPosition = cursor;
    this.#stopped = false;
    this.#unwatch = log.watch(() => this.#pump());
    this.#pump();
  }

  /** The log this subscription reads. */
  get log(): EventLog {
    return this.#o.log;
  }

  /**
   * The first log position this subscription may still read: its saved cursor (a start after a
   * stop reads on from there), or where it reads next, whichever is lower; 0 before it has started.
   */
  neededFrom(): number {
    return Math.min(this.#readPosition, this.#o.cursors.get(this.#o.name) ?? this.#readPosition);
  }

  /** Stops attempting; waits (up to `graceMs`) for attempts in flight, then saves the cursor. */
  async stop(graceMs: number): Promise<void> {
    this.#stopped = true;
    this.#unwatch?.();
    for (const t of this.#timers) this.#o.clock.clearTimeout(t);
    this.#timers.clear();
    if (this.#active.size > 0) {
      let timer: NodeJS.Timeout | undefined;
      const grace = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, graceMs);
        timer.unref();
      });
      await Promise.race([Promise.allSettled([...this.#active]), grace]);
      clearTimeout(timer);
    }
    this.#o.cursors.flush();
  }

  #pump(): void {
    if (this.#stopped) return;
    if (this.#reading) {
      this.#readAgain = true;
      return;
    }
    this.#reading = true;
    void this.#read()
      .catch((err: unknown) => this.#o.logger.error(`Event Grid subscription '${this.#o.name}': cannot read its events: ${describeError(err)}`))
      .finally(() => {
        this.#reading = false;
        if (this.#readAgain) {
          this.#readAgain = false;
          this.#pump();
        }
      });
  }

  async #read(): Promise<void> {
    while (!this.#stopped && this.#window.length < WINDOW) {
      const entries = await this.#o.log.read(this.#readPosition);
      if (entries.length === 0) break;
      for (const entry of entries) {
        if (this.#window.length >= WINDOW) break;
        this.#readPosition = entry.next;
        let deliverable: Deliverable | undefined;
        try {
          deliverable = this.#o.select(entry);
        } catch (err) {
          this.#o.logger.warn(`Event Grid subscription '${this.#o.name}': an event at ${entry.position} is skipped: ${describeError(err)}`);
        }
        const item: Item = { entry, deliverable, failures: 0, done: deliverable === undefined };
        this.#window.push(item);
        if (!deliverable) continue;
        const queue = this.#subjects.get(deliverable.subject);
        if (queue) queue.push(item);
        else {
          this.#subjects.set(deliverable.subject, [item]);
          this.#ready.push(item);
        }
      }
      this.#advance();
      this.#dispatch();
    }
  }

  #dispatch(): void {
    const max = this.#o.maxConcurrent ?? 16;
    while (!this.#stopped && this.#active.size < max) {
      const item = this.#ready.shift();
      if (!item) return;
      const attempt = this.#attempt(item);
      this.#active.add(attempt);
      void attempt.finally(() => {
        this.#active.delete(attempt);
        this.#dispatch();
      });
    }
  }

  async #attempt(item: Item): Promise<void> {
    const o = this.#o;
    const deliverable = item.deliverable;
    if (!deliverable) return;
    let result: AttemptResult;
    try {
      result = await o.deliver(deliverable.event, item.failures);
    } catch (err) {
      result = { ok: false, reason: describeError(err) };
    }
    if (this.#stopped) return;
    if (result.ok) {
      this.#complete(item);
      return;
    }
    item.failures += 1;
    const id = String(deliverable.event['id']);
    const verdict = afterFailure({
      failedAttempts: item.failures,
      status: result.status,
      notRetried: o.notRetried,
      maxDeliveryAttempts: o.retryPolicy.maxDeliveryAttempts,
      publishedAt: deliverable.publishedAt,
      timeToLiveMs: o.retryPolicy.eventTimeToLiveInMinutes * 60_000,
      now: o.clock.now(),
      scale: o.scale,
      ...(o.random ? { random: o.random } : {}),
    });
    if (verdict.retry) {
      o.logger.warn(`Event Grid subscription '${o.name}': delivery ${item.failures} of event ${id} failed (${result.reason}); retrying in ${verdict.delayMs} ms.`);
      const timer = o.clock.setTimeout(() => {
        this.#timers.delete(timer);
        if (this.#stopped) return;
        this.#ready.push(item);
        this.#dispatch();
      }, verdict.delayMs);
      this.#timers.add(timer);
      return;
    }
    o.logger.error(`Event Grid subscription '${o.name}': event ${id} dead-lettered after ${item.failures} attempt(s): ${verdict.why}; last failure: ${result.reason}.`);
    try {
      await o.deadLetter(deliverable.event, `${verdict.why}; last failure: ${result.reason}`, item.failures);
    } catch (err) {
      o.logger.warn(`Event Grid subscription '${o.name}': cannot write the dead letter of event ${id}: ${describeError(err)}`);
    }
    this.#complete(item);
  }

  #complete(item: Item): void {
    item.done = true;
    const subject = item.deliverable?.subject;
    if (subject !== undefined) {
      const queue = this.#subjects.get(subject);
      queue?.shift();
      const next = queue?.[0];
      if (next) this.#ready.push(next);
      else this.#subjects.delete(subject);
    }
    const wasFull = this.#window.length >= WINDOW;
    this.#advance();
    this.#dispatch();
    if (wasFull) this.#pump();
  }

  /** Moves the cursor past the events that are done, in log order. */
  #advance(): void {
    let drop = 0;
    while (drop < this.#window.length && this.#window[drop]?.done) drop++;
    if (drop > 0) this.#window.splice(0, drop);
    const cursor = this.#window[0]?.entry.position ?? this.#readPosition;
    this.#o.cursors.set(this.#o.name, cursor);
  }
}
