import { describe, expect, it } from 'vitest';
import { runSoak } from '../../scripts/lib/soak.js';

/**
 * A short run of `npm run soak` (scripts/lib/soak.ts): fnhost is SIGKILLed once in the first
 * second after the invoke's 202, once mid-run and once while the job finalizes, and started again
 * on the same data folder; each job must complete exactly as the undisturbed reference, with
 * nothing repaired at finalize. The seed varies from run to run (SOAK_SEED repeats one); the
 * failure message carries it and every trial's line.
 */
describe('crash soak', () => {
  it('every job killed at a random moment completes as an undisturbed one', async () => {
    const seed = Number(process.env['SOAK_SEED'] ?? Date.now() % 2_147_483_647);
    const lines: string[] = [];
    const report = await runSoak({ trials: 3, seed, log: (line) => lines.push(line) });
    const story = lines.join('\n');
    expect(report.trials.map((t) => t.plan.kind), story).toEqual(['early', 'running', 'finalizing']);
    expect(report.trials[0]!.plan.delayMs, story).toBeLessThanOrEqual(1000);
    expect(report.trials.map((t) => t.repairs), story).toEqual([0, 0, 0]);
    expect(report.trials.filter((t) => !t.held).map((t) => `trial ${t.trial}: ${t.outcome}`), story).toEqual([]);
    expect(report.held, story).toBe(3);
    expect(lines.at(-1)).toBe('3 of 3 held');
  }, 900_000);
});
