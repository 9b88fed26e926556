#!/usr/bin/env node
// The batch-endpoints command (an `az ml`-shaped client of the API). The CLI is TypeScript compiled to dist/ by `npm run build` (run by `npm install`).
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const main = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'dist', 'cli', 'src', 'main.js');
if (!existsSync(main)) {
  process.stderr.write(`batch-endpoints: ${main} is missing. Build it first: npm run build\n`);
  process.exit(1);
}
await import(pathToFileURL(main).href);
