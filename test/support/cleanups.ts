import { afterAll } from 'vitest';

/** What a test file (or describe block) undoes after its tests: hosts, Azurites, folders. */
export type Cleanups = (() => Promise<unknown> | void)[];

/**
 * A list of cleanups run after all tests of the file (or of the describe block it is called in),
 * last added first, so a host is stopped before the storage and the folder it used go. Call it
 * where vitest takes hooks: at module level or in a describe callback.
 */
export function cleanupsAfterAll(): Cleanups {
  const cleanups: Cleanups = [];
  afterAll(async () => {
    for (const c of cleanups.reverse()) await c();
  });
  return cleanups;
}
