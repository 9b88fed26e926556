import type { Clock } from '../../../infra/local/src/clock.js';

interface Pending {
  id: number;
  at: number;
  fn: () => void;
}

/** A clock tests move by hand: timers fire only inside advance(), in time order. */
export class ManualClock implements Clock {
  #now: number;
  #nextId = 1;
  #timers: Pending[] = [];

  constructor(start: number | string) {
    this.#now = typeof start === 'string' ? Date.parse(start) : start;
  }

  now(): number {
    return this.#now;
  }

  setTimeout(fn: () => void, ms: number): unknown {
    const id = this.#nextId++;
    this.#timers.push({ id, at: this.#now + Math.max(0, ms), fn });
    return id;
  }

  clearTimeout(handle: unknown): void {
    this.#timers = this.#timers.filter((t) => t.id !== handle);
  }

  /** Timers not yet fired. */
  get pending(): number {
    return this.#timers.length;
  }

  /** Moves time forward by `ms`, firing due timers in order and letting promises settle after each. */
  async advance(ms: number): Promise<void> {
    const target = this.#now + ms;
    await settle();
    for (let fired = 0; ; fired++) {
      // A timer that keeps re-arming itself at the same instant would otherwise hang the test.
      if (fired > 100_000) throw new Error('ManualClock: too many timers fired; is something re-arming at the same time?');
      const due = this.#timers.filter((t) => t.at <= target).sort((a, b) => a.at - b.at || a.id - b.id)[0];
      if (!due) break;
      this.#timers = this.#timers.filter((t) => t !== due);
      this.#now = Math.max(this.#now, due.at);
      due.fn();
      await settle();
    }
    this.#now = target;
    await settle();
  }
}

/** Lets pending promise chains (no real I/O) run to completion. */
export async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}
