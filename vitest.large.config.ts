import { defineConfig } from 'vitest/config';
import { runOptions } from './vitest.config.js';

/**
 * `npm run test:large`: the tests at scale (test/large/), which take minutes and so stay out of
 * `npm test` (README, "Tests at scale").
 */
export default defineConfig({ test: { include: ['test/large/**/*.test.ts'], ...runOptions } });
