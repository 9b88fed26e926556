import { configDefaults, defineConfig } from 'vitest/config';
import type { InlineConfig } from 'vitest/node';

/** How every test run runs (`npm test`, and `npm run test:large` with vitest.large.config.ts). */
export const runOptions: InlineConfig = {
  pool: 'forks',
  maxWorkers: 2,
  testTimeout: 120_000,
  hookTimeout: 120_000,
  reporters: ['default'],
};

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // The tests at scale take minutes: `npm run test:large` (README, "Tests at scale").
    exclude: [...configDefaults.exclude, 'test/large/**'],
    ...runOptions,
  },
});
