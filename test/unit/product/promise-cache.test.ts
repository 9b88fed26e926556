import { describe, expect, it } from 'vitest';
import { PromiseCache } from '../../../shared/promise-cache.js';

describe('promise cache', () => {
  it('shares one pending result, forgets failures, expires after ttlMs and drops the oldest when full', async () => {
    let now = 0;
    let made = 0;
    const cache = new PromiseCache<number>({ max: 2, ttlMs: 1000, now: () => now });
    const make = (value: number) => () => {
      made++;
      return Promise.resolve(value);
    };
    const [a, b] = await Promise.all([cache.get('a', make(1)), cache.get('a', make(2))]);
    expect([a, b, made]).toEqual([1, 1, 1]);

    now = 999;
    expect(await cache.get('a', make(3))).toBe(1);
    now = 1000;
    expect(await cache.get('a', make(4))).toBe(4);

    await expect(cache.get('bad', () => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    expect(await cache.get('bad', make(5))).toBe(5);

    // 'a' is the oldest of three entries, so it went.
    await cache.get('c', make(6));
    expect(await cache.get('a', make(7))).toBe(7);
  });
});
