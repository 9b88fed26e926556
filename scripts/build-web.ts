/**
 * Build step after `tsc -p tsconfig.web.json` (`npm run build`): puts the web page's static files
 * beside its compiled modules in dist/web/: index.html and styles.css from web/, and uPlot's ES
 * module and stylesheet from node_modules/uplot (the page loads nothing from anywhere else).
 */
import { copyFileSync, mkdirSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';

/** The repository root: two levels up when this runs compiled (dist/scripts), one when a test imports the source. */
const ROOT = basename(resolve(import.meta.dirname, '..')) === 'dist' ? resolve(import.meta.dirname, '..', '..') : resolve(import.meta.dirname, '..');

/** Where the page's files go (functions/handlers/web.ts serves them). */
export const WEB_DIST = join(ROOT, 'dist', 'web');

/** Copies the static files; the compiled modules are already in dist/web/js. */
export function buildWeb(): string[] {
  const copies: [string, string][] = [
    [join(ROOT, 'web', 'index.html'), 'index.html'],
    [join(ROOT, 'web', 'styles.css'), 'styles.css'],
    [join(ROOT, 'node_modules', 'uplot', 'dist', 'uPlot.esm.js'), join('vendor', 'uPlot.esm.js')],
    [join(ROOT, 'node_modules', 'uplot', 'dist', 'uPlot.min.css'), join('vendor', 'uPlot.min.css')],
  ];
  mkdirSync(join(WEB_DIST, 'vendor'), { recursive: true });
  for (const [from, to] of copies) copyFileSync(from, join(WEB_DIST, to));
  return copies.map(([, to]) => join('dist', 'web', to));
}

if (process.argv[1] && resolve(process.argv[1]) === resolve(import.meta.filename)) {
  for (const file of buildWeb()) process.stdout.write(`wrote ${file}\n`);
}
