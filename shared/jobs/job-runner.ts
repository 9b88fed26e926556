import { join } from 'node:path';
import { stringify } from 'csv-stringify/sync';
import type { AppConfig } from '../config.js';
import { BatchError, errorMessage } from '../errors.js';
import { listInput } from '../planning/list-input.js';
import { type MiniBatch, chunkCount, itemLabel, toMiniBatches } from '../planning/plan.js';
import type { OutputFolder } from '../outputs/output-writer.js';
import type { Registry, ResolvedData } from '../registry/registry.js';
import { isTerminalJob } from '../schemas/jobs.js';
import type { FailedItem, ScoreOutcome, ScoringItem, ScoringRuntime } from '../scoring/types.js';
import type { JobStore } from './job-store.js';
import { outputFiles, outputFolderOf } from './jobs-service.js';
import { downloadBlob, localCode, localModel, removeQuietly } from './local-files.js';
import { parallelismOf } from './settings.js';
import type { JobWorkArea } from './work-area.js';
import { ERRORS_FILE, type Job, type JobCounts, type JobError, LOG_FILE, REPORT_FILE, SUMMARY_FILE, emptyCounts } from './types.js';

/** What the orchestration needs to run a prepared job (small values only). */
export interface PreparedJob {
  status: 'ready' | 'failed' | 'canceled';
  miniBatches: number;
  items: number;
  chunks: number;
  chunkSize: number;
  parallelism: number;
  maxRetries: number;
  errorThreshold: number;
  progressIntervalSeconds: number;
  error?: JobError | undefined;
}

export interface MiniBatchInput {
  jobId: string;
  chunkSize: number;
  index: number;
  attempt: number;
}

/** The outcome of one attempt at a mini-batch. */
export interface MiniBatchResult {
  index: number;
  status: 'completed' | 'failed' | 'timeout' | 'canceled';
  items: number;
  succeeded: number;
  failed: number;
  /** Whether running the mini-batch again may succeed. */
  retryable: boolean;
  seconds: number;
  error?: string | undefined;
  columns?: string[] | undefined;
}

export interface FinalizeInput {
  jobId: string;
  outcome: 'Completed' | 'Failed' | 'Canceled';
  counts: JobCounts;
  error?: JobError | undefined;
  columns?: string[] | undefined;
}

const REPORT_HEADER = 'mini_batch_id,attempts,items,succeeded,failed,seconds,status,error\n';
const MAX_ERROR = 1000;

function truncate(text: string, max = MAX_ERROR): string {
  return text.length <= max ? text : `${text.substring(0, max - 1)}…`;
}

function reportRow(row: { index: number; attempt: number; items: number; succeeded: number; failed: number; seconds: number; status: string; error: string }): string {
  return stringify([[row.index, row.attempt, row.items, row.succeeded, row.failed, row.seconds.toFixed(3), row.status, row.error]], { record_delimiter: '\n' });
}

function errorLines(index: number, failed: FailedItem[]): string {
  return failed.map((f) => `${JSON.stringify({ mini_batch: index, file: f.file, reason: f.reason, ...(f.count && f.count > 1 ? { count: f.count } : {}) })}\n`).join('');
}

/** Sums two sets of counts (totals are the larger of the two: they are the plan's, not summed). */
export function addCounts(a: JobCounts, b: JobCounts): JobCounts {
  return {
    mini_batches: {
      total: Math.max(a.mini_batches.total, b.mini_batches.total),
      succeeded: a.mini_batches.succeeded + b.mini_batches.succeeded,
      failed: a.mini_batches.failed + b.mini_batches.failed,
      retried: a.mini_batches.retried + b.mini_batches.retried,
    },
    items: {
      total: Math.max(a.items.total, b.items.total),
      succeeded: a.items.succeeded + b.items.succeeded,
      failed: a.items.failed + b.items.failed,
    },
  };
}

/**
 * The work behind the job orchestration's activities: preparing the plan, scoring one mini-batch
 * and staging its outputs, recording progress, and finishing the job. Each method is safe to run
 * more than once (activities run at least once).
 */
export class JobRunner {
  readonly #config: AppConfig;
  readonly #registry: Registry;
  readonly #store: JobStore;
  readonly #workArea: JobWorkArea;
  readonly #runtime: ScoringRuntime;
  readonly #now: () => Date;
  readonly #jobs = new Map<string, { job: Job; readAt: number }>();
  /** Where a job reads and writes, resolved once per job (datastores do not move under a job). */
  readonly #places = new Map<string, Promise<{ folder: OutputFolder; input: ResolvedData }>>();

  constructor(options: {
    config: AppConfig;
    registry: Registry;
    store: JobStore;
    workArea: JobWorkArea;
    runtime: ScoringRuntime;
    now?: () => Date;
  }) {
    this.#config = options.config;
    this.#registry = options.registry;
    this.#store = options.store;
    this.#workArea = options.workArea;
    this.#runtime = options.runtime;
    this.#now = options.now ?? (() => new Date());
  }

  /** The job, re-read at most once a second: mini-batches check for cancellation this way. */
  async #job(jobId: string): Promise<Job> {
    const cached = this.#jobs.get(jobId);
    const now = Date.now();
    if (cached && now - cached.readAt < 1000) return cached.job;
    const job = await this.#store.get(jobId);
    if (!job) throw new BatchError('not_found', `Job '${jobId}' does not exist.`, { retryable: false });
    this.#jobs.set(jobId, { job, readAt: now });
    if (this.#jobs.size > 256) {
      const oldest = this.#jobs.keys().next().value;
      if (oldest !== undefined) this.#jobs.delete(oldest);
    }
    return job;
  }

  #placesOf(job: Job): Promise<{ folder: OutputFolder; input: ResolvedData }> {
    let places = this.#places.get(job.spec.id);
    if (!places) {
      places = (async () => ({
        folder: await outputFolderOf(this.#registry, job.spec),
        input: await this.#registry.resolveData(job.spec.input.uri, 'inputs', job.spec.input.type),
      }))();
      places.catch(() => this.#places.delete(job.spec.id));
      this.#places.set(job.spec.id, places);
      if (this.#places.size > 256) {
        const oldest = this.#places.keys().next().value;
        if (oldest !== undefined) this.#places.delete(oldest);
      }
    }
    return places;
  }

  async prepare(jobId: string): Promise<PreparedJob> {
    const job = await this.#job(jobId);
    const spec = job.spec;
    const base: PreparedJob = {
      status: 'ready',
      miniBatches: 0,
      items: 0,
      chunks: 0,
      chunkSize: this.#config.chunkSize,
      parallelism: parallelismOf(spec.settings, spec.resources.instance_count),
      maxRetries: spec.settings.retry_settings.max_retries,
      errorThreshold: spec.settings.error_threshold,
      progressIntervalSeconds: this.#config.progressIntervalSeconds,
    };
    const started = await this.#store.update(jobId, (s) =>
      s.status === 'NotStarted' ? { ...s, status: 'Preparing', started_at: this.#now().toISOString() } : undefined,
    );
    if (started?.status === 'Canceling' || started?.status === 'Canceled') return { ...base, status: 'canceled' };

    let batches: MiniBatch[];
    try {
      const { input } = await this.#placesOf(job);
      const items = await listInput(input, spec.split);
      if (items.length === 0) {
        return { ...base, status: 'failed', error: { code: 'input_not_found', message: `The input ${spec.input.uri} contains no files to score.` } };
      }
      batches = toMiniBatches(items, spec.settings.mini_batch_size);
    } catch (err) {
      if (err instanceof BatchError && !err.retryable) {
        return { ...base, status: 'failed', error: { code: err.code, message: err.message } };
      }
      throw err;
    }
    const chunks = chunkCount(batches.length, this.#config.chunkSize);
    for (let c = 0; c < chunks; c++) {
      await this.#workArea.writeManifest(jobId, c, batches.slice(c * this.#config.chunkSize, (c + 1) * this.#config.chunkSize));
    }
    const items = batches.reduce((n, b) => n + b.items.length, 0);
    const { folder } = await this.#placesOf(job);
    await folder.ensureContainer();
    await this.#workArea.stageJournal(jobId, {
      i: -1,
      report: '',
      errors: '',
      log: `${this.#now().toISOString()} INFO job ${jobId}: ${items} item(s) in ${batches.length} mini-batch(es) of up to ${spec.settings.mini_batch_size}, ${base.parallelism} in flight, deployment ${spec.endpoint}/${spec.deployment}, model ${spec.model.name}:${spec.model.version}\n`,
    });
    const counts = emptyCounts();
    counts.mini_batches.total = batches.length;
    counts.items.total = items;
    const state = await this.#store.update(jobId, (s) => {
      if (isTerminalJob(s.status)) return undefined;
      return { ...s, status: s.status === 'Canceling' ? 'Canceling' : 'Running', counts, chunks };
    });
    if (state?.status === 'Canceling') return { ...base, status: 'canceled', miniBatches: batches.length, items, chunks };
    return { ...base, miniBatches: batches.length, items, chunks };
  }

  /** Scores one mini-batch and stages its outputs. Scorer problems are results, not exceptions. */
  async scoreMiniBatch(input: MiniBatchInput): Promise<MiniBatchResult> {
    const job = await this.#job(input.jobId);
    const spec = job.spec;
    const batch = await this.#workArea.miniBatch(input.jobId, input.chunkSize, input.index);
    const base = { index: input.index, items: batch.items.length, succeeded: 0, failed: 0, seconds: 0 };
    if (job.state.status === 'Canceling' || job.state.status === 'Canceled') {
      return { ...base, status: 'canceled', retryable: false };
    }
    const { folder } = await this.#placesOf(job);
    const workDir = join(this.#config.cacheDir, 'work', input.jobId, `mb-${input.index}-a${input.attempt}`);
    const started = process.hrtime.bigint();
    let outcome: ScoreOutcome;
    try {
      const model = await localModel(this.#registry, spec.model, this.#config.cacheDir);
      const scriptPath = spec.code_configuration
        ? join(await localCode(this.#registry, spec.code_configuration.code, input.jobId, this.#config.cacheDir), ...spec.code_configuration.scoring_script.split('/'))
        : undefined;
      const items = await this.#download(input.jobId, batch, workDir);
      outcome = await this.#runtime.score(
        {
          key: input.jobId,
          kind: spec.model.type === 'onnx' ? 'onnx' : 'script',
          modelDir: model.modelDir,
          modelFile: model.modelFile,
          scriptPath,
          outputDir: join(this.#config.cacheDir, 'outputs', input.jobId),
          environment: spec.settings.environment_variables,
          loggingLevel: spec.settings.logging_level,
          maxConcurrency: spec.settings.max_concurrency_per_instance,
        },
        { items, timeoutMs: spec.settings.retry_settings.timeout * 1000 },
      );
    } catch (err) {
      // Setup problems (a missing scoring script, a model without an .onnx file) fail the items.
      if (err instanceof BatchError && !err.retryable) {
        outcome = { status: 'failed', error: err.message, retryable: false, logs: [], seconds: 0 };
      } else {
        await removeQuietly(workDir);
        throw err;
      }
    }
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    await removeQuietly(workDir);
    return this.#record(folder, input, batch, outcome, seconds);
  }

  async #download(jobId: string, batch: MiniBatch, workDir: string): Promise<ScoringItem[]> {
    const job = await this.#job(jobId);
    const { input } = await this.#placesOf(job);
    const headers = new Map<string, Buffer>();
    const items: ScoringItem[] = [];
    let n = 0;
    const work = batch.items.map(async (item) => {
      // One folder per item keeps file names as they are (scripts often use the base name).
      const local = join(workDir, String(n++), item.name.split('/').pop() ?? 'item');
      if (item.bytes && item.kind !== 'parquet') {
        let prefix: Buffer | undefined;
        if (item.kind === 'csv' && item.headerEnd) {
          let header = headers.get(item.blob);
          if (!header) {
            header = await input.container.getBlobClient(item.blob).downloadToBuffer(0, item.headerEnd);
            headers.set(item.blob, header);
          }
          prefix = header;
        }
        await downloadBlob(input.container, item.blob, local, { start: item.bytes.start, end: item.bytes.end, prefix });
        return { name: item.name, localPath: local, rowOffset: item.rows?.start };
      }
      await downloadBlob(input.container, item.blob, local);
      return { name: item.name, localPath: local, rowOffset: item.rows?.start, rows: item.kind === 'parquet' ? item.rows : undefined };
    });
    for (const item of await Promise.all(work)) items.push(item);
    return items;
  }

  async #record(
    folder: OutputFolder,
    input: MiniBatchInput,
    batch: MiniBatch,
    outcome: ScoreOutcome,
    seconds: number,
  ): Promise<MiniBatchResult> {
    const job = await this.#job(input.jobId);
    const spec = job.spec;
    const items = batch.items.length;
    const logs = outcome.status === 'completed' ? outcome.result.logs : outcome.logs;
    const logText = logs.map((l) => `${l.time} ${l.level.toUpperCase()} [mini-batch ${input.index} attempt ${input.attempt}] ${l.message}\n`).join('');
    let result: MiniBatchResult;
    let errors: string;
    if (outcome.status === 'completed') {
      const r = outcome.result;
      const failedCount = r.failed.reduce((n, f) => n + (f.count ?? 1), 0);
      if (spec.settings.output_action === 'append_row') await folder.stage(spec.settings.output_file_name, input.index, r.csv);
      for (const produced of r.producedFiles) await folder.uploadFile(produced.name, produced.localPath);
      errors = errorLines(input.index, r.failed);
      result = {
        index: input.index,
        status: 'completed',
        items,
        succeeded: Math.min(r.succeeded, items),
        failed: Math.min(failedCount, items),
        retryable: false,
        seconds,
        columns: r.columns,
      };
    } else {
      // Setup failures already say what failed (init(), loading the script or the model).
      const reason =
        outcome.status === 'timeout' || /^(init\(\)|run\(\)|could not load|the scoring|the model)/i.test(outcome.error)
          ? outcome.error
          : `run() failed: ${outcome.error}`;
      errors = errorLines(input.index, batch.items.map((i) => ({ file: itemLabel(i), reason: truncate(reason) })));
      result = {
        index: input.index,
        status: outcome.status,
        items,
        succeeded: 0,
        failed: items,
        retryable: outcome.status === 'timeout' ? true : outcome.retryable,
        seconds,
        error: truncate(outcome.error),
      };
    }
    await this.#workArea.stageJournal(input.jobId, {
      i: input.index,
      report: reportRow({ ...result, attempt: input.attempt, status: result.status, error: result.error ?? '' }),
      errors,
      log: `${logText}${this.#now().toISOString()} INFO [mini-batch ${input.index} attempt ${input.attempt}] ${result.status}: ${result.succeeded}/${items} item(s) succeeded in ${seconds.toFixed(3)} s${result.error ? `: ${result.error}` : ''}\n`,
    });
    return result;
  }

  /** Records a mini-batch whose activity itself kept failing (the report must still show it). */
  async recordFailure(input: MiniBatchInput & { error: string }): Promise<{ items: number }> {
    const batch = await this.#workArea.miniBatch(input.jobId, input.chunkSize, input.index);
    const reason = truncate(input.error);
    await this.#workArea.stageJournal(input.jobId, {
      i: input.index,
      report: reportRow({ index: input.index, attempt: input.attempt, items: batch.items.length, succeeded: 0, failed: batch.items.length, seconds: 0, status: 'failed', error: reason }),
      errors: errorLines(input.index, batch.items.map((i) => ({ file: itemLabel(i), reason }))),
      log: `${this.#now().toISOString()} ERROR [mini-batch ${input.index} attempt ${input.attempt}] failed: ${reason}\n`,
    });
    return { items: batch.items.length };
  }

  /** Writes the counts of a running job, so GET /jobs/{id} shows them move. */
  async progress(input: { jobId: string; counts: JobCounts }): Promise<void> {
    await this.#store.update(input.jobId, (s) =>
      s.status === 'Running' || s.status === 'Canceling' ? { ...s, counts: { ...input.counts, mini_batches: { ...input.counts.mini_batches, total: s.counts.mini_batches.total }, items: { ...input.counts.items, total: s.counts.items.total } } } : undefined,
    );
  }

  /** Commits the outputs in mini-batch order, writes the summary, and ends the job. */
  async finalize(input: FinalizeInput): Promise<{ status: string }> {
    const job = await this.#store.get(input.jobId);
    if (!job) throw new BatchError('not_found', `Job '${input.jobId}' does not exist.`, { retryable: false });
    if (isTerminalJob(job.state.status)) return { status: job.state.status };
    await this.#store.update(input.jobId, (s) => (isTerminalJob(s.status) ? undefined : { ...s, status: 'Finalizing' }));
    const spec = job.spec;
    const folder = await outputFolderOf(this.#registry, spec);
    await folder.ensureContainer();
    if (spec.settings.output_action === 'append_row') {
      await folder.commit(spec.settings.output_file_name, { contentType: 'text/csv; charset=utf-8' });
    }
    const journal = await this.#workArea.readJournal(input.jobId);
    const entries = journal.filter((e) => e.i >= 0);
    await folder.upload(REPORT_FILE, REPORT_HEADER + entries.map((e) => e.report).join(''), 'text/csv; charset=utf-8');
    await folder.upload(ERRORS_FILE, entries.map((e) => e.errors).join(''), 'application/x-ndjson');

    const counts: JobCounts = {
      mini_batches: { ...input.counts.mini_batches, total: Math.max(input.counts.mini_batches.total, job.state.counts.mini_batches.total) },
      items: { ...input.counts.items, total: Math.max(input.counts.items.total, job.state.counts.items.total) },
    };
    let status = input.outcome;
    let error = input.error;
    if (status === 'Completed' && counts.items.succeeded === 0 && counts.items.failed > 0) {
      status = 'Failed';
      error = {
        code: 'no_item_succeeded',
        message: `No mini-batch item succeeded: ${counts.items.failed} item(s) failed. Each failure and its reason is in ${ERRORS_FILE}; the per-mini-batch report is ${REPORT_FILE}.`,
      };
    }
    const completedAt = this.#now().toISOString();
    const final = await this.#store.update(input.jobId, (s) => ({
      ...s,
      status,
      completed_at: completedAt,
      counts,
      error,
      columns: input.columns ?? s.columns,
    }));
    const files = outputFiles(spec);
    const summary = {
      id: spec.id,
      endpoint: spec.endpoint,
      deployment: spec.deployment,
      model: `${spec.model.name}:${spec.model.version}`,
      status,
      error: error ?? null,
      counts,
      columns: input.columns ?? final?.columns ?? null,
      settings: spec.settings,
      input: spec.input,
      output: { uri: spec.output.uri, files: Object.fromEntries(Object.entries(files).map(([k, f]) => [k, `${spec.output.uri}${f}`])) },
      created_at: spec.created_at,
      started_at: final?.started_at ?? null,
      completed_at: completedAt,
    };
    await folder.upload(SUMMARY_FILE, `${JSON.stringify(summary, null, 2)}\n`, 'application/json');
    await folder.upload(
      LOG_FILE,
      `${journal.map((e) => e.log).join('')}${completedAt} INFO job ${spec.id} ${status}: ${counts.items.succeeded} item(s) succeeded, ${counts.items.failed} failed, ${counts.mini_batches.retried} retr${counts.mini_batches.retried === 1 ? 'y' : 'ies'}${error ? `; ${error.message}` : ''}\n`,
      'text/plain; charset=utf-8',
    );
    await this.#runtime.release(spec.id).catch(() => undefined);
    await removeQuietly(join(this.#config.cacheDir, 'code', spec.id));
    await removeQuietly(join(this.#config.cacheDir, 'outputs', spec.id));
    await removeQuietly(join(this.#config.cacheDir, 'work', spec.id));
    await this.#workArea.clear(spec.id).catch(() => undefined);
    this.#jobs.delete(spec.id);
    this.#places.delete(spec.id);
    return { status };
  }
}

export function describeFailure(err: unknown): string {
  return truncate(errorMessage(err));
}
