import { describe, expect, it } from 'vitest';
import { planTrials, seededRandom } from '../../../scripts/lib/soak.js';

describe('the crash soak plan', () => {
  it('draws the same kill moments from the same seed, and others from another', () => {
    const a = planTrials({ trials: 20, seed: 42, referenceMs: 5000 });
    expect(planTrials({ trials: 20, seed: 42, referenceMs: 5000 })).toEqual(a);
    expect(planTrials({ trials: 20, seed: 43, referenceMs: 5000 })).not.toEqual(a);
    const random = seededRandom(1);
    const draws = Array.from({ length: 1000 }, () => random());
    expect(Math.min(...draws)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...draws)).toBeLessThan(1);
    expect(new Set(draws).size).toBe(1000);
  });

  it('kills early, mid-run and while finalizing even in a three-trial soak', () => {
    expect(planTrials({ trials: 3, seed: 9, referenceMs: 5000 }).map((p) => p.kind)).toEqual(['early', 'running', 'finalizing']);
  });

  it('keeps each kind of kill within its part of the job, and kills process groups as well as hosts', () => {
    const plans = planTrials({ trials: 400, seed: 5, referenceMs: 6000 });
    const of = (kind: string): number[] => plans.filter((p) => p.kind === kind).map((p) => p.delayMs);
    expect(Math.max(...of('early'))).toBeLessThanOrEqual(1000);
    expect(Math.min(...of('early'))).toBeLessThan(100);
    expect(Math.min(...of('running'))).toBeGreaterThanOrEqual(1000);
    expect(Math.max(...of('running'))).toBeLessThanOrEqual(6000);
    expect(Math.max(...of('running'))).toBeGreaterThan(5500);
    expect(Math.max(...of('finalizing'))).toBeLessThanOrEqual(30);
    const groups = plans.filter((p) => p.group).length;
    expect(groups).toBeGreaterThan(150);
    expect(groups).toBeLessThan(250);
  });
});
