/**
 * Build step after `tsc` (`npm run build`): writes the Logic Apps / Power Automate custom
 * connector to infra/azure/connector/: `apiDefinition.swagger.json` (OpenAPI 2.0, generated from
 * the same zod schemas as /api/openapi.json) and `apiProperties.json`, with placeholders for the
 * app's host and the Microsoft Entra tenant and client (see infra/azure/README.md).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { CONNECTOR_PLACEHOLDERS, connectorDefinition, connectorProperties } from '../shared/openapi/connector.js';

/** The repository root: two levels up when this runs compiled (dist/scripts), one when a test imports the source. */
const ROOT = basename(resolve(import.meta.dirname, '..')) === 'dist' ? resolve(import.meta.dirname, '..', '..') : resolve(import.meta.dirname, '..');

export const CONNECTOR_DIR = join(ROOT, 'infra', 'azure', 'connector');

/** The connector files, by name, as `npm run build` writes them. */
export function connectorFiles(): Record<string, string> {
  const text = (value: unknown): string => `${JSON.stringify(value, null, 2)}\n`;
  return {
    'apiDefinition.swagger.json': text(connectorDefinition({ host: CONNECTOR_PLACEHOLDERS.host })),
    'apiProperties.json': text(connectorProperties()),
  };
}

if (process.argv[1] && resolve(process.argv[1]) === resolve(import.meta.filename)) {
  mkdirSync(CONNECTOR_DIR, { recursive: true });
  for (const [name, content] of Object.entries(connectorFiles())) {
    writeFileSync(join(CONNECTOR_DIR, name), content);
    process.stdout.write(`wrote ${join('infra', 'azure', 'connector', name)}\n`);
  }
}
