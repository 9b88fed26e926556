/** A binary min-heap keyed by a number, for timers. */
export class MinHeap<T> {
  readonly #items: { key: number; value: T }[] = [];

  get size(): number {
    return this.#items.length;
  }

  peek(): { key: number; value: T } | undefined {
    return this.#items[0];
  }

  push(key: number, value: T): void {
    const items = this.#items;
    items.push({ key, value });
    let i = items.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      const p = items[parent] as { key: number; value: T };
      const c = items[i] as { key: number; value: T };
      if (p.key <= c.key) break;
      items[parent] = c;
      items[i] = p;
      i = parent;
    }
  }

  pop(): { key: number; value: T } | undefined {
    const items = this.#items;
    const top = items[0];
    const last = items.pop();
    if (top === undefined || last === undefined || items.length === 0) return top;
    items[0] = last;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let smallest = i;
      if (l < items.length && (items[l] as { key: number }).key < (items[smallest] as { key: number }).key) smallest = l;
      if (r < items.length && (items[r] as { key: number }).key < (items[smallest] as { key: number }).key) smallest = r;
      if (smallest === i) break;
      const tmp = items[i] as { key: number; value: T };
      items[i] = items[smallest] as { key: number; value: T };
      items[smallest] = tmp;
      i = smallest;
    }
    return top;
  }

  clear(): void {
    this.#items.length = 0;
  }
}
