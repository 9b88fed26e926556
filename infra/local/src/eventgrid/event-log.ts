import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { appendFile, open, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Clock } from '../clock.js';
import { describeError } from '../errors.js';
import type { Logger } from '../log.js';

/**
 * Where events wait for delivery: an append-only log read by position. Each subscription keeps
 * the position up to which everything has been delivered (its cursor, CursorStore); on a restart
 * it reads on from there, so an event is delivered at least once even when the host stopped in
 * the middle. In a data folder the log is a JSON-lines file, whose position is a byte offset;
 * in memory it is an array, whose position is an index.
 */

export interface LogEntry {
  /** Where the entry starts: unique and increasing within a log. */
  position: number;
  /** Where the next entry starts. */
  next: number;
  value: unknown;
}

export interface EventLog {
  /** Entries from `position` on (at most about `maxBytes` of them), in order. */
  read(position: number, maxBytes?: number): Promise<LogEntry[]>;
  /** The position after the last entry. */
  end(): Promise<number>;
  /** Appends entries; resolves once they are stored (flushed to disk for a file). */
  append(values: unknown[]): Promise<void>;
  /** Calls `listener` when entries may have been added; returns a function that stops it. */
  watch(listener: () => void): () => void;
}

/**
 * A log in the host's memory. Entries nobody can still read are dropped (see `retainFrom`), so a
 * host that runs long, writing blobs that no subscription wants, does not keep every write: a
 * 100,000-file upload kept ~100 MB of records in the host.
 */
export class MemoryEventLog implements EventLog {
  /** Entries from position `#base` on. */
  #entries: unknown[] = [];
  #base = 0;
  readonly #listeners = new Set<() => void>();
  /**
   * The first position any reader may still read (the least of their cursors), set by whoever
   * knows the readers; entries before it are dropped. Unset, every entry is kept.
   */
  retainFrom: (() => number) | undefined;

  read(position: number, maxBytes = 1 << 20): Promise<LogEntry[]> {
    const out: LogEntry[] = [];
    let bytes = 0;
    const end = this.#base + this.#entries.length;
    for (let i = Math.max(position, this.#base); i < end && bytes < maxBytes; i++) {
      out.push({ position: i, next: i + 1, value: this.#entries[i - this.#base] });
      bytes += 1000;
    }
    return Promise.resolve(out);
  }

  end(): Promise<number> {
    return Promise.resolve(this.#base + this.#entries.length);
  }

  append(values: unknown[]): Promise<void> {
    this.#entries.push(...values);
    this.#trim();
    for (const l of this.#listeners) l();
    return Promise.resolve();
  }

  /** Drops what no reader can read any more, once that is at least half of what is kept (amortized). */
  #trim(): void {
    if (this.retainFrom === undefined) return;
    const drop = Math.min(this.retainFrom(), this.#base + this.#entries.length) - this.#base;
    if (drop < 64 || drop * 2 < this.#entries.length) return;
    this.#entries = this.#entries.slice(drop);
    this.#base += drop;
  }

  watch(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }
}

/** How often a file log is looked at for lines another process (Azurite) appended. */
const FILE_POLL_MS = 200;

export class FileEventLog implements EventLog {
  readonly #path: string;
  readonly #clock: Clock;
  readonly #logger: Logger;
  readonly #listeners = new Set<() => void>();
  #appends: Promise<void> = Promise.resolve();
  #timer: unknown;
  #lastSize = -1;
  /** Positions of lines already reported as unreadable, so each is reported once. */
  readonly #reported = new Set<number>();

  constructor(options: { path: string; clock: Clock; logger: Logger }) {
    this.#path = options.path;
    this.#clock = options.clock;
    this.#logger = options.logger;
    mkdirSync(dirname(this.#path), { recursive: true });
  }

  get path(): string {
    return this.#path;
  }

  async #size(): Promise<number> {
    try {
      return (await stat(this.#path)).size;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 0;
      throw err;
    }
  }

  async end(): Promise<number> {
    return this.#size();
  }

  async read(position: number, maxBytes = 1 << 20): Promise<LogEntry[]> {
    const size = await this.#size();
    if (size <= position) return [];
    const handle = await open(this.#path, 'r');
    try {
      // Only whole lines count: the last one may still be being written.
      for (let want = Math.min(maxBytes, size - position); ; want = Math.min(want * 2, size - position)) {
        const buffer = Buffer.alloc(want);
        const { bytesRead } = await handle.read(buffer, 0, want, position);
        const chunk = buffer.subarray(0, bytesRead);
        const lastNewline = chunk.lastIndexOf(10);
        if (lastNewline < 0) {
          if (want >= size - position) return [];
          continue;
        }
        return this.#parse(chunk.subarray(0, lastNewline + 1), position);
      }
    } finally {
      await handle.close();
    }
  }

  #parse(chunk: Buffer, start: number): LogEntry[] {
    const entries: LogEntry[] = [];
    let offset = 0;
    while (offset < chunk.length) {
      const newline = chunk.indexOf(10, offset);
      const line = chunk.subarray(offset, newline).toString('utf8');
      const position = start + offset;
      offset = newline + 1;
      if (line.trim() === '') continue;
      try {
        entries.push({ position, next: start + offset, value: JSON.parse(line) });
      } catch {
        // A line cut when a writer was killed mid-append; the writer starts the next on a line of its own.
        if (!this.#reported.has(position)) {
          this.#reported.add(position);
          this.#logger.warn(`${this.#path}: an unreadable line at byte ${position} is skipped (cut short when its writer stopped?).`);
        }
      }
    }
    return entries;
  }

  append(values: unknown[]): Promise<void> {
    const text = values.map((v) => `${JSON.stringify(v)}\n`).join('');
    // Appends are chained so lines never interleave; each is flushed to disk before it counts,
    // because a publisher was told 200 only once its events would survive a machine reset.
    const done = this.#appends.then(async () => {
      const handle = await open(this.#path, 'a');
      try {
        await handle.appendFile(text, 'utf8');
        await handle.datasync();
      } finally {
        await handle.close();
      }
    });
    this.#appends = done.catch(() => undefined);
    return done.then(() => {
      for (const l of this.#listeners) l();
    });
  }

  watch(listener: () => void): () => void {
    this.#listeners.add(listener);
    if (this.#listeners.size === 1) this.#poll();
    return () => {
      this.#listeners.delete(listener);
      if (this.#listeners.size === 0 && this.#timer !== undefined) {
        this.#clock.clearTimeout(this.#timer);
        this.#timer = undefined;
      }
    };
  }

  /** Another process appends to the file (Azurite's journal), so its size is looked at. */
  #poll(): void {
    this.#timer = this.#clock.setTimeout(() => {
      void this.#size()
        .then((size) => {
          if (size !== this.#lastSize) {
            this.#lastSize = size;
            for (const l of this.#listeners) l();
          }
        })
        .catch((err: unknown) => this.#logger.warn(`Cannot read ${this.#path}: ${describeError(err)}`))
        .finally(() => {
          if (this.#listeners.size > 0) this.#poll();
        });
    }, FILE_POLL_MS);
  }
}

/** Appends a line to a JSON-lines file (dead letters); failures are the caller's to log. */
export async function appendJsonLine(path: string, value: unknown): Promise<void> {
  mkdirSync(dirname(path), { recursive: true });
  await appendFile(path, `${JSON.stringify(value)}\n`, 'utf8');
}

/**
 * Each subscription's cursor: the position in its log before which every event has been
 * delivered (or given up on). Kept in one small JSON file, replaced atomically; in memory without
 * a data folder. Saving lags delivery a little (saves are coalesced), which only means a few
 * events are delivered again after a crash: at least once, as Event Grid promises.
 */
export class CursorStore {
  readonly #path: string | undefined;
  readonly #cursors: Record<string, number>;
  readonly #clock: Clock;
  readonly #logger: Logger;
  #timer: unknown;

  constructor(options: { path: string | undefined; clock: Clock; logger: Logger }) {
    this.#path = options.path;
    this.#clock = options.clock;
    this.#logger = options.logger;
    this.#cursors = {};
    if (!this.#path) return;
    let text: string;
    try {
      text = readFileSync(this.#path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    try {
      const parsed = JSON.parse(text) as unknown;
      if (typeof parsed === 'object' && parsed !== null) {
        for (const [k, v] of Object.entries(parsed)) if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) this.#cursors[k] = v;
      }
    } catch (err) {
      // Written by rename, so it is whole; if it is damaged anyway, starting over from the end would
      // lose events silently, so the host refuses to start and says which file.
      throw new Error(`${this.#path} is not valid JSON (${describeError(err)}): it records which Event Grid events were delivered. Delete it to deliver only new events.`);
    }
  }

  get(name: string): number | undefined {
    return this.#cursors[name];
  }

  /** Sets a cursor; `now` saves at once (a new subscription's starting point), else soon. */
  set(name: string, position: number, now = false): void {
    if (this.#cursors[name] === position) return;
    this.#cursors[name] = position;
    if (now) this.flush();
    else if (this.#timer === undefined) {
      this.#timer = this.#clock.setTimeout(() => {
        this.#timer = undefined;
        this.flush();
      }, 100);
    }
  }

  flush(): void {
    if (this.#timer !== undefined) {
      this.#clock.clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    const path = this.#path;
    if (!path) return;
    try {
      mkdirSync(dirname(path), { recursive: true });
      const temp = `${path}.tmp`;
      writeFileSync(temp, `${JSON.stringify(this.#cursors, null, 2)}\n`);
      renameSync(temp, path);
    } catch (err) {
      this.#logger.warn(`Cannot save Event Grid delivery positions to ${path}: ${describeError(err)} (events may be delivered again after a restart).`);
    }
  }
}
