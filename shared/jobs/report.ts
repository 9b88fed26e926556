/**
 * The job's report records, written and read in one place: a row of `processed_mini_batches.csv`
 * (one per mini-batch, its final attempt) and a line of `errors.jsonl` (one per failed item). The
 * runner writes them into the journal as each attempt ends and finalize joins the accepted ones into
 * the two files; the web page's routes read the files back with the parsers here, so the timeline
 * and the failure breakdown are exactly what the files say.
 */
import { parse } from 'csv-parse/sync';
import { stringify } from 'csv-stringify/sync';
import type { FailedItem } from '../scoring/types.js';

/**
 * The report's columns. `started_at` (ISO 8601, when the final attempt started) came last, later:
 * rows of jobs begun before it have none.
 */
export const REPORT_COLUMNS = ['mini_batch_id', 'attempts', 'items', 'succeeded', 'failed', 'seconds', 'status', 'error', 'started_at'] as const;
export const REPORT_HEADER = `${REPORT_COLUMNS.join(',')}\n`;

/** A mini-batch's final attempt, as the report shows it. `seconds` is its wall time, download and scoring. */
export interface ReportRow {
  index: number;
  attempt: number;
  items: number;
  succeeded: number;
  failed: number;
  seconds: number;
  /** completed, failed or timeout. */
  status: string;
  error: string;
  startedAt: string | undefined;
}

const MAX_ERROR = 1000;

/** Text cut to `max` characters (an error kept in a report or a job record). */
export function truncate(text: string, max = MAX_ERROR): string {
  return text.length <= max ? text : `${text.substring(0, max - 1)}…`;
}

/** A report row, as CSV text ending in a newline. */
export function reportRow(row: ReportRow): string {
  return stringify([[row.index, row.attempt, row.items, row.succeeded, row.failed, row.seconds.toFixed(3), row.status, row.error, row.startedAt ?? '']], { record_delimiter: '\n' });
}

/** The rows of a report file (header first), by column name; rows from before `started_at` have it undefined. */
export function parseReport(text: string): ReportRow[] {
  const records = parse<Record<string, string | undefined>>(text, { columns: true, skip_empty_lines: true, relax_column_count: true });
  return records.map((r) => ({
    index: Number(r['mini_batch_id']),
    attempt: Number(r['attempts']),
    items: Number(r['items']),
    succeeded: Number(r['succeeded']),
    failed: Number(r['failed']),
    seconds: Number(r['seconds']),
    status: r['status'] ?? '',
    error: r['error'] ?? '',
    startedAt: r['started_at'] || undefined,
  }));
}

/**
 * A line of `errors.jsonl`: `{"mini_batch":3,"file":"big.csv","rows":{"start":10,"end":20},"reason":"…"}`
 * (`rows` only for a row range, 0-based, end exclusive; `count` only for an unnamed line of several).
 */
export interface ErrorRecord {
  mini_batch: number;
  file: string | null;
  rows?: { start: number; end: number };
  reason: string;
  count?: number;
}

/** errors.jsonl lines of a mini-batch's failed items. */
export function errorLines(index: number, failed: readonly FailedItem[]): string {
  return failed
    .map((f) => {
      const record: ErrorRecord = { mini_batch: index, file: f.file, ...(f.rows ? { rows: { start: f.rows.start, end: f.rows.end } } : {}), reason: f.reason, ...(f.count && f.count > 1 ? { count: f.count } : {}) };
      return `${JSON.stringify(record)}\n`;
    })
    .join('');
}

/** The records of an errors.jsonl file. */
export function parseErrorLines(text: string): ErrorRecord[] {
  return text
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => JSON.parse(line) as ErrorRecord);
}

/** Failed items grouped by reason, most first: each reason's count of items and its first few items. */
export interface FailureReason {
  reason: string;
  count: number;
  samples: { mini_batch: number; file: string | null; rows?: { start: number; end: number } }[];
}

/** How many sample items each reason shows. */
export const FAILURE_SAMPLES = 5;

/** The breakdown of failure reasons (a line with `count` stands for that many items). */
export function failureBreakdown(records: readonly ErrorRecord[]): { items: number; reasons: FailureReason[] } {
  const byReason = new Map<string, FailureReason>();
  let items = 0;
  for (const r of records) {
    const n = r.count ?? 1;
    items += n;
    let entry = byReason.get(r.reason);
    if (!entry) {
      entry = { reason: r.reason, count: 0, samples: [] };
      byReason.set(r.reason, entry);
    }
    entry.count += n;
    if (entry.samples.length < FAILURE_SAMPLES) entry.samples.push({ mini_batch: r.mini_batch, file: r.file, ...(r.rows ? { rows: r.rows } : {}) });
  }
  return { items, reasons: [...byReason.values()].sort((a, b) => b.count - a.count || a.reason.localeCompare(b.reason)) };
}
