/**
 * `npm run soak`: the crash soak (scripts/lib/soak.ts). Kills fnhost at random moments of a batch
 * job and checks that every job still completes exactly as an undisturbed one. Prints a line per
 * trial and "N of N held"; exits non-zero if any trial did not hold.
 */
import { Command, InvalidArgumentError } from 'commander';
import { runSoak } from './lib/soak.js';

function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError('must be a whole number');
  return n;
}

const program = new Command()
  .name('soak')
  .description('Kill fnhost (SIGKILL) during batch jobs and check each job completes as an undisturbed run')
  .option('--trials <n>', 'trials', positiveInt, 20)
  .option('--seed <n>', 'seed for the kill moments (default: from the clock; printed, to repeat a run)', positiveInt)
  .option('--keep-failed', 'keep the data folder of a trial that did not hold', false)
  .parse();
const opts = program.opts<{ trials: number; seed?: number; keepFailed: boolean }>();

const report = await runSoak({ trials: opts.trials, seed: opts.seed ?? Date.now() % 2_147_483_647, keepFailed: opts.keepFailed });
process.exitCode = report.held === report.trials.length ? 0 : 1;
