/**
 * A Map that holds at most `max` entries: setting a new key when it is full drops the entry set
 * longest ago (insertion order; setting a key again does not move it). For caches of things that
 * never change once made (a manifest chunk, a signed URL), where the oldest is the least likely
 * to be asked for again.
 */
export class BoundedMap<K, V> extends Map<K, V> {
  readonly #max: number;

  constructor(max: number) {
    super();
    if (!Number.isInteger(max) || max < 1) throw new RangeError(`BoundedMap max must be a positive integer, not ${max}`);
    this.#max = max;
  }

  override set(key: K, value: V): this {
    super.set(key, value);
    while (this.size > this.#max) {
      const oldest = this.keys().next();
      if (oldest.done) break;
      this.delete(oldest.value);
    }
    return this;
  }
}
