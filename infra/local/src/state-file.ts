/**
 * fnhost's small JSON state files in a data folder (the host lock, Azurite's state, the keys):
 * read and checked against their schema in one way, so that each says the same thing when it has
 * been damaged from outside. Callers decide what a damaged file means for them.
 */
import { readFileSync } from 'node:fs';
import type { z } from 'zod';
import { describeError } from './errors.js';

/** What is in a state file: nothing (no such file), its checked value, or why it cannot be used. */
export type StateFileRead<T> = { found: false } | { found: true; value: T } | { found: true; problem: string };

export function readStateFile<T>(path: string, schema: z.ZodType<T>): StateFileRead<T> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { found: false };
    throw err;
  }
  if (text.trim() === '') return { found: true, problem: 'the file is empty' };
  try {
    const parsed = schema.safeParse(JSON.parse(text));
    if (parsed.success) return { found: true, value: parsed.data };
    return { found: true, problem: parsed.error.issues.map((i) => `${i.path.join('.') || 'file'}: ${i.message}`).join('; ') };
  } catch (err) {
    return { found: true, problem: `not valid JSON: ${describeError(err)}` };
  }
}
