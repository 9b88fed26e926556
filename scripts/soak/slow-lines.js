// The soak's scoring script: deterministic rows (file name, line count, first line) after SLOW_MS
// per mini-batch, so a job runs long enough to be killed at any moment of it.
import { readFile } from 'node:fs/promises';
import { basename } from 'node:path';

export function init() {}

export async function run(miniBatch) {
  await new Promise((r) => setTimeout(r, Number(process.env.SLOW_MS ?? 300)));
  const rows = [];
  for (const file of miniBatch) {
    const text = await readFile(file, 'utf8');
    rows.push({ file: basename(file), lines: text.split('\n').filter(Boolean).length, first: text.split('\n')[0] });
  }
  return rows;
}
