/**
 * How a job's prediction columns are formed. The built-in runner's are fixed. A scoring script's
 * come from what its run() returns: the keys of the first object of the first mini-batch that
 * returns rows fix the job's columns (JobRunner makes that one atomic decision per job), and every
 * row of every mini-batch is then written by name in that order: a missing key is an empty cell,
 * a key that is not a column is dropped (and warned about once). A result that is not an object
 * (a number, a string, an array) is the row `{ prediction: value }`.
 *
 * Kept free of onnxruntime so the host can use it without loading the native runtime.
 */

/** The columns of the built-in ONNX runner's rows: Azure ML's MLflow batch output layout. */
export const ONNX_COLUMNS: readonly string[] = ['row', 'prediction', 'file_name'];

/** The column a result that is not an object goes to. */
export const VALUE_COLUMN = 'prediction';

/** What one mini-batch's results suggest: the first row's keys, and every key any row has. */
export interface ColumnsProposal {
  proposed: string[];
  seen: string[];
}

/** The job's columns, and the keys this mini-batch is the first to see dropped (to warn about). */
export interface ColumnsDecision {
  columns: string[];
  warn: string[];
}

/** Whether a result is a row of named values (a plain object, not an array, typed array or date). */
export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !ArrayBuffer.isView(value) && !(value instanceof Date);
}

/** The keys of a result as a row: its own keys, or the value column for a result that is not an object. */
export function keysOf(result: unknown): string[] {
  return isRecord(result) ? Object.keys(result) : [VALUE_COLUMN];
}

/** The columns `results` would give a job that has none yet, and every key they use. */
export function proposeColumns(results: readonly unknown[]): ColumnsProposal {
  const seen = new Set<string>();
  for (const result of results) for (const key of keysOf(result)) seen.add(key);
  return { proposed: results.length > 0 ? keysOf(results[0]) : [], seen: [...seen] };
}

/** One result's values in `columns` order (undefined where it has no such key). */
export function valuesByName(result: unknown, columns: readonly string[]): unknown[] {
  if (!isRecord(result)) return columns.map((c) => (c === VALUE_COLUMN ? result : undefined));
  return columns.map((c) => (Object.hasOwn(result, c) ? result[c] : undefined));
}
