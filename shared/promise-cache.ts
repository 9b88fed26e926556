/**
 * A bounded map of promises by key: concurrent callers share one pending result, failures are not
 * kept (the next caller tries again), and the oldest entries go first when the map is full.
 */
export class PromiseCache<T> {
  readonly #entries = new Map<string, Promise<T>>();
  readonly #max: number;

  constructor(options: { max: number }) {
    this.#max = options.max;
  }

  get(key: string, make: () => Promise<T>): Promise<T> {
    const cached = this.#entries.get(key);
    if (cached) return cached;
    const created = make();
    this.#entries.set(key, created);
    created.catch(() => {
      if (this.#entries.get(key) === created) this.#entries.delete(key);
    });
    if (this.#entries.size > this.#max) {
      const oldest = this.#entries.keys().next().value;
      if (oldest !== undefined) this.#entries.delete(oldest);
    }
    return created;
  }

  delete(key: string): void {
    this.#entries.delete(key);
  }
}
