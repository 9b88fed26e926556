import { describe, expect, it } from 'vitest';
import { BoundedMap } from '../../../shared/bounded-map.js';

describe('bounded map', () => {
  it('holds at most max entries, dropping the one set longest ago', () => {
    const map = new BoundedMap<string, number>(2);
    map.set('a', 1).set('b', 2);
    // Setting a key again changes its value, not its age.
    map.set('a', 10);
    map.set('c', 3);
    expect([...map]).toEqual([
      ['b', 2],
      ['c', 3],
    ]);
    map.delete('b');
    map.set('d', 4);
    expect([...map.keys()]).toEqual(['c', 'd']);
    expect(map.size).toBe(2);
  });

  it('refuses a bound that is not a positive integer', () => {
    expect(() => new BoundedMap(0)).toThrow(RangeError);
    expect(() => new BoundedMap(1.5)).toThrow(RangeError);
  });
});
