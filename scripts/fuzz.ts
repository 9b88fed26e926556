/**
 * `npm run fuzz -- [--seed N] [--runs N]`: starts fnhost with its own Azurite (in memory), and sends
 * generated requests to every route of the API, checking for each that it gets no 5xx, that every
 * 4xx is problem+json naming a field, and that a rejected request leaves storage as it was
 * (scripts/lib/fuzz.ts). Default: 10,000 requests, a random seed (printed, to replay a failure).
 */
import { Command } from 'commander';
import { createFixtures, fuzz } from './lib/fuzz.js';
import { startLocalStack } from './lib/local-stack.js';

const program = new Command()
  .name('fuzz')
  .option('--seed <n>', 'fast-check seed (default: random)', (v) => Number.parseInt(v, 10))
  .option('--runs <n>', 'generated requests', (v) => Number.parseInt(v, 10), 10_000)
  .option('--echo', "echo the host's log")
  .parse();
const opts = program.opts<{ seed?: number; runs: number; echo?: boolean }>();
const seed = opts.seed ?? Math.floor(Math.random() * 2 ** 31);

console.log(`fuzz: seed ${seed}, ${opts.runs} requests (replay: npm run fuzz -- --seed ${seed} --runs ${opts.runs})`);
const stack = await startLocalStack({ echo: opts.echo === true });
let code = 0;
try {
  const target = { url: stack.url, key: stack.masterKey, storageConnection: stack.storageConnection };
  await createFixtures(target);
  const stats = await fuzz(target, {
    runs: opts.runs,
    seed,
    onProgress: (s) => console.log(`  ${s.requests} requests, ${(s.ms / 1000).toFixed(1)} s`),
  });
  console.log(`fuzz: ${stats.requests} requests in ${(stats.ms / 1000).toFixed(1)} s, all properties held (seed ${seed})`);
  console.log(`  by status: ${JSON.stringify(stats.byStatus)}`);
  console.log(`  by route: ${JSON.stringify(stats.byRoute)}`);
} catch (err) {
  code = 1;
  console.error(`fuzz: FAILED with seed ${seed}\n${err instanceof Error ? err.message : String(err)}`);
} finally {
  await stack.stop();
}
process.exit(code);
