/**
 * The contract between the scoring activity and the scoring runtime (a worker-thread pool).
 * The activity downloads inputs (handing small ones over as bytes) and uploads outputs; the
 * runtime turns items into prediction rows.
 */

import type { ColumnsDecision, ColumnsProposal, KnownColumns } from './columns.js';

export type { ColumnsDecision, ColumnsProposal } from './columns.js';

export type LogLevel = 'debug' | 'info' | 'warning' | 'error' | 'critical';

/** What to score with; one pool (and one init per worker) per spec key. */
export interface ScorerSpec {
  /** Same key, same pool. The scoring activity uses the job id. */
  key: string;
  /** `onnx`: the built-in runner (optionally with a script); `script`: a custom scoring script. */
  kind: 'onnx' | 'script';
  /** Local folder holding the model's files (`context.modelDir`). */
  modelDir: string;
  /** For `onnx`: the .onnx file inside modelDir. */
  modelFile?: string | undefined;
  /** Absolute path of the ES module with init(context) and run(miniBatch, context). */
  scriptPath?: string | undefined;
  /** Local folder the script may write files to (`context.outputDir`); each worker gets its own sub-folder. */
  outputDir: string;
  /** Set in each worker's process.env before init (the deployment's environment_variables). */
  environment: Record<string, string>;
  loggingLevel: LogLevel;
  /** Worker threads in the pool: max_concurrency_per_instance. */
  maxConcurrency: number;
  /**
   * How rows are written: `fileName` (output_file_name) gives the format (see outputFormat); `join`
   * and `key_field` what the built-in runner copies from the input (see columns.ts). Absent: CSV,
   * nothing copied.
   */
  rows?: { fileName: string; join?: 'all' | { columns: string[] } | undefined; key_field?: string | undefined } | undefined;
}

/** One input item of a mini-batch: a file, or a row range of a tabular file. */
export interface ScoringItem {
  /** The item as users know it: the file's path relative to the input, e.g. "2024/a.csv". */
  name: string;
  /** Where its data is on this machine. */
  localPath: string;
  /**
   * For a row range: the index of the first row of this item within the original file (the `row`
   * column counts from here); defaults to `rows.start`.
   */
  rowOffset?: number | undefined;
  /**
   * For a row range: its rows [start, end) of the original file (0-based, header excluded), as the
   * planner cut them; failures of the item name them. CSV/JSONL ranges arrive cut into their own
   * content (CSV after the file's header bytes); Parquet ranges read these rows of the whole file.
   */
  rows?: { start: number; end: number } | undefined;
}

export interface ScoreRequest {
  items: ScoringItem[];
  /**
   * Per item, settles once its data is here, so scoring starts while the rest still download: the
   * built-in ONNX runner reads each item as it arrives, a script's run() waits for all of them.
   * A promise that resolves with bytes hands over the item's content: the worker writes it to
   * `localPath` itself when a script needs files (and removes it after the run), and the built-in
   * runner reads it from memory. One that resolves with nothing means the file is in place.
   * Omitted, every file is in place already. A rejection stops the mini-batch; its outcome is then
   * not meaningful and the caller reports the download's own error.
   */
  ready?: readonly Promise<Uint8Array | undefined>[] | undefined;
  /** retry_settings.timeout: the run is stopped and its worker replaced after this long. */
  timeoutMs: number;
  /**
   * The job's columns for a script's rows (see columns.ts): asked once run() has returned, with what
   * its results propose. Without it (rows that are not kept), the results' own proposal is used. A
   * rejection fails the mini-batch, retryably.
   */
  columns?: ((proposal: ColumnsProposal) => Promise<ColumnsDecision>) | undefined;
  /**
   * The job's columns as last known here, if fixed: a proposal they settle (see settledColumns) is
   * decided in the worker, without asking `columns`. Stale is safe: a key this copy does not know
   * was dropped is new to it, so the worker asks.
   */
  knownColumns?: KnownColumns | undefined;
}

export interface FailedItem {
  /** The item's name (its file), or null when a script returned fewer results than items without saying which. */
  file: string | null;
  /** For a row range: its rows [start, end) of the file (0-based, end exclusive, header excluded). */
  rows?: { start: number; end: number } | undefined;
  reason: string;
  /** How many items this line stands for (more than 1 only when file is null). */
  count?: number | undefined;
}

export interface ScoreResult {
  /**
   * Prediction rows, UTF-8, in the job's output format (CSV without a header, or JSON Lines; see
   * outputFormat), empty for summary_only-style scripts that return nothing. Bytes, not text: a
   * mini-batch's rows can run to megabytes, and bytes move from the worker without a copy and go
   * to storage as they are.
   */
  data: Buffer;
  /** Column names of the rows, in their order (the CSV itself has no header, as in Azure ML). */
  columns: string[];
  /** Bytes of each item's rows in `data`, in item order, when the rows can be told apart by item (see EncodedRows). */
  itemBytes?: number[] | undefined;
  succeeded: number;
  failed: FailedItem[];
  /** Files the script wrote under its output folder during this run, relative to that folder. */
  producedFiles: { localPath: string; name: string }[];
  logs: { level: LogLevel; message: string; time: string }[];
  seconds: number;
}

/** How a mini-batch ended, for the report and for retries. */
export type ScoreOutcome =
  | { status: 'completed'; result: ScoreResult }
  /** run() threw, or init failed: `retryable` says whether the same input may succeed again. */
  | { status: 'failed'; error: string; retryable: boolean; logs: ScoreResult['logs']; seconds: number }
  | { status: 'timeout'; error: string; logs: ScoreResult['logs']; seconds: number };

export interface ScoringRuntime {
  /** Scores one mini-batch; never throws for problems of the scorer or the data (see ScoreOutcome). */
  score(spec: ScorerSpec, request: ScoreRequest): Promise<ScoreOutcome>;
  /**
   * Starts the spec's workers and initialises them (model loaded, init() run) before the first
   * mini-batch arrives. The threads start at once; their initialisation waits for `ready` (the
   * spec's files being fetched), and a `ready` that rejects rejects this. Best effort: problems
   * show in the next mini-batch's logs and outcome.
   */
  warm(spec: ScorerSpec, options: { timeoutMs: number; ready?: Promise<unknown> | undefined }): Promise<void>;
  /** How many pools (one per spec key) are running. */
  pools(): number;
  /** Stops the pool of a spec key (the job finished). */
  release(key: string): Promise<void>;
  close(): Promise<void>;
}
