#!/usr/bin/env node
// The fnhost command. The host is TypeScript compiled to dist/ by `npm run build` (run by `npm install`).
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const cli = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'dist', 'infra', 'local', 'src', 'cli.js');
if (!existsSync(cli)) {
  process.stderr.write(`fnhost: ${cli} is missing. Build it first: npm run build\n`);
  process.exit(1);
}
await import(pathToFileURL(cli).href);
