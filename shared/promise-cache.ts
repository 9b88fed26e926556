import { BoundedMap } from './bounded-map.js';

/**
 * A bounded map of promises by key: concurrent callers share one pending result, failures are not
 * kept (the next caller tries again), the oldest entries go first when the map is full, and with
 * `ttlMs` an entry older than that is made again.
 */
export class PromiseCache<T> {
  readonly #entries: BoundedMap<string, { value: Promise<T>; at: number }>;
  readonly #ttlMs: number;
  readonly #now: () => number;

  constructor(options: { max: number; ttlMs?: number | undefined; now?: (() => number) | undefined }) {
    this.#entries = new BoundedMap(options.max);
    this.#ttlMs = options.ttlMs ?? Infinity;
    this.#now = options.now ?? Date.now;
  }

  get(key: string, make: () => Promise<T>): Promise<T> {
    const now = this.#now();
    const cached = this.#entries.get(key);
    if (cached && now - cached.at < this.#ttlMs) return cached.value;
    const entry = { value: make(), at: now };
    this.#entries.set(key, entry);
    entry.value.catch(() => {
      if (this.#entries.get(key) === entry) this.#entries.delete(key);
    });
    return entry.value;
  }

  delete(key: string): void {
    this.#entries.delete(key);
  }
}
