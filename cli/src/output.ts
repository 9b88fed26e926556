/**
 * `--output json|yaml|table`, as `az ml` prints results: JSON by default, YAML, or a table of a
 * few columns chosen per kind of resource (nested values are shown as compact JSON).
 */
import { stringify } from 'yaml';

export const OUTPUT_FORMATS = ['json', 'yaml', 'table'] as const;
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];

/** A table column: its heading and how to read it from one item. */
export type Column = [heading: string, read: (item: Record<string, unknown>) => unknown];

export const field =
  (...path: string[]) =>
  (item: Record<string, unknown>): unknown =>
    path.reduce<unknown>((v, k) => (typeof v === 'object' && v !== null ? (v as Record<string, unknown>)[k] : undefined), item);

function cell(value: unknown): string {
  if (value === undefined || value === null) return '';
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  return JSON.stringify(value);
}

export function table(items: Record<string, unknown>[], columns: Column[]): string {
  const rows = items.map((item) => columns.map(([, read]) => cell(read(item)).replace(/\s+/g, ' ')));
  const headings = columns.map(([h]) => h);
  const widths = headings.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string => cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ').trimEnd();
  return [line(headings), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}

/** Formats a result (one item or a list) for stdout. */
export function render(value: unknown, format: OutputFormat, columns: Column[]): string {
  if (format === 'json') return JSON.stringify(value, null, 2);
  if (format === 'yaml') return stringify(value).trimEnd();
  const items = (Array.isArray(value) ? value : [value]).filter((v): v is Record<string, unknown> => typeof v === 'object' && v !== null);
  return table(items, columns);
}
