/**
 * How a job's prediction columns are formed. The built-in runner's are fixed. A scoring script's
 * come from what its run() returns: the keys of the first object of the first mini-batch that
 * returns rows fix the job's columns (JobRunner makes that one atomic decision per job), and every
 * row of every mini-batch is then written by name in that order: a missing key is an empty cell,
 * a key that is not a column is dropped (the job record lists it, and finalize warns about it
 * once). A result that is not an object (a number, a string, an array) is the row
 * `{ prediction: value }`.
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

/** The job's columns, as the job record fixed them. */
export interface ColumnsDecision {
  columns: string[];
}

/** The job's columns once fixed, and the keys dropped from its rows so far (both from the job record). */
export interface KnownColumns {
  columns: readonly string[];
  dropped: readonly string[];
}

/** The keys a proposal has seen that are neither among `known`'s columns nor dropped before. */
export function newKeys(known: KnownColumns, proposal: ColumnsProposal): string[] {
  return proposal.seen.filter((k) => !known.columns.includes(k) && !known.dropped.includes(k));
}

/**
 * The decision for a proposal when the job's columns are already fixed and it sees no key that is
 * new: those columns. Otherwise undefined: only the job record can decide (fix the columns, or
 * record a new key as dropped). The host and the scoring worker both use it: the
 * worker settles what it can without a round trip, with the columns its task was given.
 */
export function settledColumns(known: KnownColumns | undefined, proposal: ColumnsProposal): ColumnsDecision | undefined {
  if (known === undefined || newKeys(known, proposal).length > 0) return undefined;
  return { columns: [...known.columns] };
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

/**
 * What the built-in runner copies from each input row (deployment and job settings `join` and
 * `key_field`): `join` lists input columns written beside each prediction (`'all'`: every column
 * of the input, as the first scored file has them), `keyField` names the input column whose value
 * replaces `row` (written under the key's own name).
 */
export interface RowJoin {
  join?: 'all' | { columns: string[] } | undefined;
  keyField?: string | undefined;
}

/** The columns the built-in runner writes itself, after `row` (or the key): they can be no input's joined column. */
const PREDICTION_COLUMNS: readonly string[] = ['prediction', 'file_name'];

/**
 * The built-in runner's columns: `[row or key, prediction, file_name, ...joined]`. Joined columns
 * are `join.columns` in their order, or for `join: 'all'` `inputColumns` (the first scored file's, in
 * file order); the key column is written once, first. Without `join` or `keyField` this is
 * {@link ONNX_COLUMNS}: Azure ML's MLflow layout is kept, the input's columns follow it.
 */
export function builtInColumns(rows: RowJoin, inputColumns: readonly string[] = []): string[] {
  const first = rows.keyField ?? 'row';
  const joined = rows.join === undefined ? [] : rows.join === 'all' ? inputColumns : rows.join.columns;
  return [first, ...PREDICTION_COLUMNS, ...joined.filter((c) => c !== rows.keyField)];
}

/**
 * The input columns a join or key needs before any file is read (`'all'` needs none): each must be
 * in every scored file.
 */
export function requiredInputColumns(rows: RowJoin): string[] {
  const listed = rows.join !== undefined && rows.join !== 'all' ? rows.join.columns : [];
  return [...(rows.keyField === undefined ? [] : [rows.keyField]), ...listed.filter((c) => c !== rows.keyField)];
}

/**
 * The input columns of a file that `join: 'all'` cannot copy under their own name, because the
 * runner writes a column of that name itself (`prediction`, `file_name`, and `row` when there is
 * no key): such a file fails its item rather than write two columns of one name.
 */
export function clashingColumns(rows: RowJoin, inputColumns: readonly string[]): string[] {
  const own = [rows.keyField === undefined ? 'row' : undefined, ...PREDICTION_COLUMNS].filter((c): c is string => c !== undefined);
  return inputColumns.filter((c) => own.includes(c));
}

/**
 * Why `join`/`key_field` cannot be used as given (a field name and a message), or undefined:
 * they need the built-in runner (a script's results are not rows of its input), and a listed
 * column or key may not take the name of a column the runner writes itself.
 */
export function rowJoinProblem(rows: RowJoin, options: { script: boolean; field: string }): { field: string; message: string } | undefined {
  const { field } = options;
  if (options.script && rows.join !== undefined) return { field: `${field}.join`, message: "join copies input rows beside the built-in runner's predictions; a scoring script's results are not rows of its input (return the columns you need from run())" };
  if (options.script && rows.keyField !== undefined) return { field: `${field}.key_field`, message: "key_field replaces the built-in runner's row column; a scoring script returns its own columns (return the key from run())" };
  if (rows.keyField !== undefined && PREDICTION_COLUMNS.includes(rows.keyField)) return { field: `${field}.key_field`, message: `"${rows.keyField}" is a column the runner writes itself; choose the input's key column` };
  if (rows.join !== undefined && rows.join !== 'all') {
    const clash = clashingColumns(rows, rows.join.columns);
    if (clash.length > 0) return { field: `${field}.join.columns`, message: `${clash.map((c) => `"${c}"`).join(', ')} ${clash.length === 1 ? 'is a column' : 'are columns'} the runner writes itself` };
  }
  return undefined;
}

/** The join settings of a job's settings (`join`, `key_field`). */
export function rowJoinOf(settings: { join?: RowJoin['join']; key_field?: string | undefined }): RowJoin {
  return { join: settings.join, keyField: settings.key_field };
}

/**
 * The job log's warning about the keys a job dropped from its rows (JobState.dropped_columns), or
 * undefined when it dropped none. Written once, by finalize, from the job record: the record is
 * what decided the rows, so the warning cannot be lost with a mini-batch's log (a crash, a
 * timeout, a retry) nor said twice. `whose` says what had the keys (`run() returned`, `the input
 * has`); `firstIn` names the mini-batch that met each key first, where the record says.
 */
export function droppedKeysWarning(whose: string, columns: readonly string[], dropped: readonly string[], firstIn: readonly { column: string; mini_batch: number }[] = []): string | undefined {
  if (dropped.length === 0) return undefined;
  const where = dropped.map((k) => firstIn.find((d) => d.column === k)?.mini_batch).filter((i): i is number => i !== undefined);
  const first = where.length === 0 ? '' : `; first met in mini-batch${where.length === 1 ? '' : 'es'} ${[...new Set(where)].sort((a, b) => a - b).join(', ')}`;
  const one = dropped.length === 1;
  return `${whose} ${one ? 'a key' : 'keys'} that ${one ? 'is' : 'are'} not among the job's columns (${columns.join(', ')}): ${dropped.join(', ')}; dropped from every row (said once per job${first})`;
}
