#!/usr/bin/env -S node --heap-growing-percent=20
// The fnhost command (its flags: src/node-flags.ts). The host is TypeScript compiled to dist/ by `npm run build` (run by `npm install`).
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import v8 from 'node:v8';
import { fileURLToPath, pathToFileURL } from 'node:url';

const cli = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'dist', 'infra', 'local', 'src', 'cli.js');
if (!existsSync(cli)) {
  process.stderr.write(`fnhost: ${cli} is missing. Build it first: npm run build\n`);
  process.exit(1);
}
// V8 lets the old generation grow by up to 4x between full collections when allocation is heavy;
// a long batch job then holds ~100 MB of garbage. Growing 20% at a time keeps the peak near the
// live heap at no measurable cost (see infra/local/README.md). A flag of the user's own wins.
const own = [...process.execArgv, process.env.NODE_OPTIONS ?? ''].join(' ');
if (!own.includes('heap-growing-percent')) v8.setFlagsFromString('--heap-growing-percent=20');
await import(pathToFileURL(cli).href);
