import { existsSync, readdirSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';

export const ROOT = resolve(import.meta.dirname, '..', '..');

/**
 * Throws unless every TypeScript source in the given folders (relative to the repository) has a
 * compiled module under dist/ at least as new: worker threads load the compiled modules, so tests
 * of TypeScript sources that start workers would otherwise run stale code.
 */
export function assertBuilt(...folders: string[]): void {
  for (const folder of folders) {
    for (const file of readdirSync(join(ROOT, folder)).filter((f) => f.endsWith('.ts'))) {
      const js = join(ROOT, 'dist', folder, file.replace(/\.ts$/, '.js'));
      if (!existsSync(js) || statSync(js).mtimeMs < statSync(join(ROOT, folder, file)).mtimeMs) {
        throw new Error(`${js} is missing or older than its source: run \`npx tsc -p tsconfig.json\` before these tests`);
      }
    }
  }
}
