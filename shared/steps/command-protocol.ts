/**
 * What crosses between the command runner (host thread) and its worker thread, and what a command
 * step's script sees. Everything here must survive structured cloning.
 */
import type { LogEntry, ScoringLogger } from '../scoring/protocol.js';

export type { LogEntry } from '../scoring/protocol.js';
export type { LogLevel } from '../scoring/types.js';

/** A literal input of a command step, typed as the component declares it. */
export type LiteralValue = string | number | boolean;

/**
 * One input as the script receives it: the absolute local path of a `uri_file` (the file) or
 * `uri_folder` (the folder), a literal, or undefined for an optional input left out.
 */
export type CommandInputValue = string | LiteralValue | undefined;

/** The logger handed to command scripts: the scoring script logger's five levels. */
export type CommandLogger = ScoringLogger;

/** The third argument of a command script's `run(inputs, outputs, context)`. */
export interface CommandContext {
  logger: CommandLogger;
  /** The step's `environment_variables`, also set in `process.env` before the module loaded. */
  environment: Record<string, string>;
  /** An empty local folder of this run's own for scratch files; removed when the step ends. */
  workDir: string;
  stepName: string;
  jobId: string;
  /** 1 for the first attempt of the step, 2 for its first retry, … */
  attempt: number;
}

/** One run of a command script, as both the runner's caller and the worker thread see it. */
export interface CommandRun {
  /** The module to run, relative to the code folder, with "/" separators (`src/main.js`). */
  entryScript: string;
  /**
   * Input name → value: the local path of a `uri_file`/`uri_folder` input, a typed literal, or
   * undefined for an optional input left out.
   */
  inputs: Record<string, CommandInputValue>;
  /** Output name → absolute local folder the script writes that output to. */
  outputs: Record<string, string>;
  /** Set in the worker's `process.env` before the module loads (`environment_variables`). */
  environment: Record<string, string>;
  /** `context.workDir`: a local folder for the script's scratch files. */
  workDir: string;
  stepName: string;
  jobId: string;
  /** 1-based attempt number of the step (`context.attempt`). */
  attempt: number;
}

/** The worker's `workerData`: everything it needs to load the module and call `run` once. */
export interface CommandWorkerData extends CommandRun {
  /** Absolute path of the module to import. */
  scriptPath: string;
}

/** How the script's run ended, as the worker saw it. */
export type CommandWorkerReply = { status: 'completed' } | { status: 'failed'; error: string; retryable: boolean };

/**
 * Sent by the worker on its parent port, in order: log entries as they are made (so the runner
 * keeps them when it must terminate the worker at the timeout), then one `done`.
 */
export type CommandWorkerMessage = { type: 'log'; entry: LogEntry } | { type: 'done'; reply: CommandWorkerReply };
