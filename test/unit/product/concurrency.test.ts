import { describe, expect, it } from 'vitest';
import { inOrderAtMost } from '../../../shared/concurrency.js';

describe('inOrderAtMost', () => {
  it('runs at most n at once, starts them in order, and keeps going past failures', async () => {
    let running = 0;
    let most = 0;
    const started: number[] = [];
    const tasks = Array.from({ length: 12 }, (_, i) => async (): Promise<number> => {
      started.push(i);
      running++;
      most = Math.max(most, running);
      await new Promise((resolve) => setTimeout(resolve, 5 + (i % 3) * 5));
      running--;
      if (i === 4) throw new Error('task 4 failed');
      return i * 10;
    });
    const settled = await Promise.allSettled(inOrderAtMost(tasks, 3));
    expect(most).toBe(3);
    expect(started).toEqual([...Array(12).keys()]);
    expect(settled.map((s) => (s.status === 'fulfilled' ? s.value : (s.reason as Error).message))).toEqual([0, 10, 20, 30, 'task 4 failed', 50, 60, 70, 80, 90, 100, 110]);
  });
});
