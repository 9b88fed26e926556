/**
 * What crosses between the scoring runtime (main thread) and its worker threads, and the context a
 * scoring script sees. Everything here must survive structured cloning.
 */
import type { MessagePort } from 'node:worker_threads';
import type { ColumnsDecision, ColumnsProposal, KnownColumns } from './columns.js';
import type { FailedItem, LogLevel, ScoreResult, ScoringItem } from './types.js';

export type LogEntry = ScoreResult['logs'][number];

/** Severity order; a log entry is kept when its rank is at least the spec's logging level. */
export const LOG_LEVELS: readonly LogLevel[] = ['debug', 'info', 'warning', 'error', 'critical'];

/** Position in {@link LOG_LEVELS}: higher is more severe. */
export function levelRank(level: LogLevel): number {
  return LOG_LEVELS.indexOf(level);
}

/** The logger handed to scoring scripts and used by the built-in runner. */
export interface ScoringLogger {
  debug(...args: unknown[]): void;
  info(...args: unknown[]): void;
  warning(...args: unknown[]): void;
  error(...args: unknown[]): void;
  critical(...args: unknown[]): void;
}

/**
 * The second argument of a script's `init(context)` and `run(miniBatch, context)`.
 * `session` and `ort` are set only for ONNX models (`kind: 'onnx'` with a script).
 */
export interface ScoringContext {
  modelDir: string;
  /** This worker's own output folder (`<outputDir>/worker-<threadId>`): names never clash across workers. */
  outputDir: string;
  logger: ScoringLogger;
  environment: Record<string, string>;
  /** The worker thread's id; a replaced worker (after a timeout) gets a new one. */
  workerId: number;
  session?: unknown;
  ort?: unknown;
}

/**
 * One mini-batch for a worker. `port` carries {@link WorkerEvent}s back while the task runs and,
 * for a `streamed` task, {@link ArrivalEvent}s in: its files are still downloading when it starts.
 */
export interface WorkerTask {
  items: ScoringItem[];
  port: MessagePort;
  streamed?: boolean | undefined;
  /** Only initialise the worker (load the model, run init()); its logs go to the next mini-batch. */
  warmup?: boolean | undefined;
  /** The host decides the job's columns: the worker sends a `columns` event and waits for the answer. */
  columns?: boolean | undefined;
  /** The job's columns if the host knows them fixed: the worker settles what they settle itself. */
  knownColumns?: KnownColumns | undefined;
}

/**
 * Sent to the worker for a streamed task: items are here (each with its bytes, or in place on
 * disk when `bytes` is absent), or a download failed. Items that land in the same turn of the
 * host's event loop travel in one message: every message wakes the worker thread.
 */
export type ArrivalEvent =
  | { type: 'ready'; items: { index: number; bytes?: Uint8Array | undefined }[] }
  | { type: 'abort'; error: string }
  /** The answer to the worker's `columns` event. */
  | ({ type: 'columns' } & (ColumnsDecision | { error: string }));

/**
 * Sent on the task's port. The runtime starts the timeout clock on `phase` (so time spent queued
 * for a busy pool does not count) and keeps `log` entries for the case where it must abandon the
 * worker before its reply arrives.
 */
export type WorkerEvent = { type: 'phase'; phase: 'init' | 'run' } | { type: 'log'; entry: LogEntry } | ({ type: 'columns' } & ColumnsProposal);

export type WorkerReply =
  | {
      status: 'completed';
      /** The rows (UTF-8, the job's output format) in their own ArrayBuffer, transferred rather than copied. */
      data: Uint8Array;
      columns: string[];
      itemBytes?: number[] | undefined;
      succeeded: number;
      failed: FailedItem[];
      producedFiles: { localPath: string; name: string }[];
      logs: LogEntry[];
      seconds: number;
    }
  | { status: 'failed'; error: string; retryable: boolean; logs: LogEntry[]; seconds: number }
  /** A bug in the runtime's own code in the worker (not the scorer's): the runtime throws for it. */
  | { status: 'internal'; error: string; logs: LogEntry[] };
