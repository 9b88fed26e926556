/**
 * One command step of a pipeline job, on the host: fetch the code and inputs, run the script
 * (command-runner.ts), upload its outputs, clean up. Free of Durable and Functions types; the
 * activity that calls it decides what a result means for the job.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { BatchError, errorMessage } from '../errors.js';
import { removeQuietly } from '../jobs/local-files.js';
import type { DataLocation, Registry } from '../registry/registry.js';
import type { CommandInputValue, LiteralValue, LogEntry, LogLevel } from './command-protocol.js';
import { type CommandResult, runCommand } from './command-runner.js';
import { type DataInput, type DataOutput, type LocalInput, type UploadedOutput, copyStepCode, describeLocation, downloadInputs, localName, localStepCode, uploadOutputs } from './step-files.js';

/** An input of a command step: data at a location, a literal, or undefined for an optional input left out. */
export type CommandStepInput = DataInput | { type: 'literal'; value: LiteralValue } | undefined;

/** An output of a command step: a folder, or a single file (the script then writes exactly one file). */
export type CommandStepOutput = DataOutput;

export interface CommandStepOptions {
  registry: Registry;
  /** The step's code folder, as the job resolved it at invoke. */
  code: DataLocation;
  /**
   * The code folder's content key pinned when the job was invoked (`folderContent(...).key`); code
   * that has changed since fails the step non-retryably. Undefined: whatever is there now.
   */
  codeContent?: string | undefined;
  /** The module whose `run(inputs, outputs, context)` is the step, relative to the code folder ("/"-separated). */
  entryScript: string;
  inputs: Record<string, CommandStepInput>;
  outputs: Record<string, CommandStepOutput>;
  /** The component's `environment_variables`. */
  environment: Record<string, string>;
  /** Milliseconds the script may run (the component's `limits.timeout` × 1000); see {@link CommandRequest.timeoutMs}. */
  timeoutMs: number;
  /**
   * A local folder of this execution alone (the caller makes it unique with a nonce: an activity
   * may run twice at once). Holds `code/` (this execution's copy of the code), `inputs/<name>`,
   * `outputs/<name>` and `work/` (the script's `context.workDir`); removed when the step ends,
   * however it ends.
   */
  workDir: string;
  /** Where downloaded code is cached across steps and jobs (`<cacheDir>/step-code/<content key>`): the app's `cacheDir`. */
  cacheDir: string;
  jobId: string;
  stepName: string;
  /** 1-based attempt number (`context.attempt`). */
  attempt: number;
  /** The clock for the step's seconds and the entries it and the runner write; `new Date()` by default. */
  now?: (() => Date) | undefined;
  /** The compiled worker module; see {@link runCommand}. */
  workerFile?: string | URL | undefined;
  /** Aborted when the step is canceled: the script is stopped (see CommandRequest.signal). */
  signal?: AbortSignal | undefined;
}

export interface CommandStepResult {
  /** `failed` also covers the step's data: missing or changed inputs, changed code, an output that breaks its type. */
  status: CommandResult['status'];
  error?: string;
  /** Whether running the step again may succeed (see {@link CommandResult.retryable}); false when completed. */
  retryable: boolean;
  /** The step's log: what it fetched, what the script logged, what it uploaded. */
  logs: LogEntry[];
  /** Seconds the whole step took by `now`: downloads, the run, uploads. */
  seconds: number;
  /** Per output, what was uploaded: every output is listed, with zeros unless the step completed. */
  outputs: Record<string, UploadedOutput>;
}

function round(seconds: number): number {
  return Math.round(seconds * 1000) / 1000;
}

/** Both settled; the first failure (in argument order) is thrown. Nothing is left running behind it. */
async function bothSettled<A, B>(a: Promise<A>, b: Promise<B>): Promise<[A, B]> {
  const [x, y] = await Promise.allSettled([a, b]);
  if (x.status === 'rejected') throw x.reason;
  if (y.status === 'rejected') throw y.reason;
  return [x.value, y.value];
}

/**
 * Runs one command step: downloads its code (once per content) and its data inputs (as the
 * versions listed), runs the script in a worker of its own, and after a completed run uploads what
 * it wrote to each output. Problems of the step's code and data are results with `retryable`;
 * storage trouble that outlasts the SDK's retries is thrown (a retryable `BatchError`), as the
 * scoring activity does. The work folder is removed in every case.
 */
export async function runCommandStep(options: CommandStepOptions): Promise<CommandStepResult> {
  const now = options.now ?? (() => new Date());
  const started = now().getTime();
  const seconds = (): number => round((now().getTime() - started) / 1000);
  const logs: LogEntry[] = [];
  const note = (level: LogLevel, message: string): void => {
    logs.push({ level, message, time: now().toISOString() });
  };
  const nothing: Record<string, UploadedOutput> = {};
  for (const name of Object.keys(options.outputs)) nothing[name] = { files: 0, bytes: 0 };
  const folders = { inputs: join(options.workDir, 'inputs'), outputs: join(options.workDir, 'outputs'), work: join(options.workDir, 'work') };

  try {
    await mkdir(options.workDir, { recursive: true });
    const data: Record<string, DataInput> = {};
    for (const [name, input] of Object.entries(options.inputs)) if (input && input.type !== 'literal') data[name] = input;
    const [cachedCode, local] = await bothSettled(
      localStepCode(options.registry, options.code, options.codeContent, options.cacheDir),
      downloadInputs(options.registry, data, folders.inputs),
    );
    for (const [name, got] of Object.entries(local)) note('info', `input '${name}': ${describe(got)} from ${describeLocation((data[name] as DataInput).location)}`);

    const codeDir = join(options.workDir, 'code');
    await copyStepCode(cachedCode, codeDir);

    const inputs: Record<string, CommandInputValue> = {};
    for (const [name, input] of Object.entries(options.inputs)) {
      inputs[name] = input === undefined ? undefined : input.type === 'literal' ? input.value : local[name]?.path;
    }
    const outputDirs: Record<string, string> = {};
    for (const name of Object.keys(options.outputs)) outputDirs[name] = join(folders.outputs, localName(name));

    const run = await runCommand({
      codeDir,
      entryScript: options.entryScript,
      inputs,
      outputs: outputDirs,
      environment: options.environment,
      workDir: folders.work,
      stepName: options.stepName,
      jobId: options.jobId,
      attempt: options.attempt,
      timeoutMs: options.timeoutMs,
      now,
      workerFile: options.workerFile,
      signal: options.signal,
    });
    logs.push(...run.logs);
    if (run.status !== 'completed') {
      return { status: run.status, error: run.error ?? run.status, retryable: run.retryable, logs, seconds: seconds(), outputs: nothing };
    }
    const uploaded = await uploadOutputs(options.registry, options.outputs, outputDirs, options.jobId);
    for (const [name, sent] of Object.entries(uploaded)) {
      const output = options.outputs[name] as DataOutput;
      note('info', `output '${name}': ${describe(sent)} to ${describeLocation(output.location)}`);
    }
    return { status: 'completed', retryable: false, logs, seconds: seconds(), outputs: uploaded };
  } catch (err) {
    // The step's own data or code is at fault: running it again gives the same answer.
    if (err instanceof BatchError && !err.retryable) {
      note('error', err.message);
      return { status: 'failed', error: err.message, retryable: false, logs, seconds: seconds(), outputs: nothing };
    }
    if (err instanceof BatchError) throw err;
    throw new BatchError('internal', `The command step ${options.stepName} failed: ${errorMessage(err)}`, { cause: err });
  } finally {
    await removeQuietly(options.workDir);
  }
}

function describe(counts: Pick<LocalInput, 'files' | 'bytes'>): string {
  return `${counts.files} file${counts.files === 1 ? '' : 's'}, ${counts.bytes} bytes`;
}
