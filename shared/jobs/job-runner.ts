import { createHash } from 'node:crypto';
import { join } from 'node:path';
import type { AppConfig, BookkeepingRetry } from '../config.js';
import { BatchError, errorMessage } from '../errors.js';
import { listFolderPage, listInput } from '../planning/list-input.js';
import { type MiniBatch, type PlanItem, chunkLayout, chunkRange, chunkTarget, planPage, streamChunkSize, toMiniBatches } from '../planning/plan.js';
import { jobSizeProblem } from '../limits.js';
import { BlockIds, OutputFolder, type StagedPart, newNonce, ownerMetadata } from '../outputs/output-writer.js';
import type { Registry, ResolvedData } from '../registry/registry.js';
import { isTerminalJob } from '../schemas/jobs.js';
import { type KnownColumns, builtInColumns, droppedKeysWarning, newKeys, rowJoinOf, settledColumns } from '../scoring/columns.js';
import { failedItem, outputContentType, outputFormat, predictionsHeader } from '../scoring/rows.js';
import type { ColumnsDecision, ColumnsProposal, ScoreOutcome, ScorerSpec, ScoringItem, ScoringRuntime } from '../scoring/types.js';
import type { JobStore } from './job-store.js';
import { outputFiles } from './jobs-service.js';
import { SMALL_BLOB_BYTES, cleanWorkDir, fetchBlob, localCode, localCodeFolder, localModel, readInputRange, removeQuietly } from './local-files.js';
import { inOrderAtMost } from '../concurrency.js';
import { PromiseCache } from '../promise-cache.js';
import { exceedsThreshold, parallelismOf } from './settings.js';
import { JobWorkArea, type PlanIndex, SEGMENTS_AT_ONCE, type SegmentFile, unlistedRest } from './work-area.js';
import { type ComposeSource, composeBlob } from '../outputs/compose.js';
import { type AttemptStatus, type JournalEntry, type JournalLine, entryParts, ranIndexes, readJournalLines } from './journal.js';
import { type RerunOf, type RerunPiece, composeRerun, itemsToScore } from './rerun.js';
import { isNotFound } from '../storage/clients.js';
import { type CopySource, copySource } from '../storage/fast-read.js';
import { redactSecrets } from '../redact.js';
import { REPORT_HEADER, errorLines, reportRow, truncate } from './report.js';
import { resolveEnvironment } from '../schemas/environment.js';
import {
  ERRORS_FILE,
  type Job,
  type JobCounts,
  type JobError,
  type JobState,
  LOG_FILE,
  type ParallelWork,
  REPORT_FILE,
  SUMMARY_FILE,
  type StepState,
  emptyCounts,
  isPipelineSpec,
} from './types.js';

/**
 * Which run of the mini-batch engine an activity is about: a job run as one (`step` absent: jobs
 * created before pipelines, on the `batchJob` orchestrator), or a parallel step of a `steps` job.
 */
export interface EngineRef {
  jobId: string;
  step?: string | undefined;
}

/** What the orchestration needs to run a prepared job (small values only). */
export interface PreparedJob {
  status: 'ready' | 'failed' | 'canceled';
  miniBatches: number;
  items: number;
  chunks: number;
  chunkSize: number;
  /** Mini-batches in flight: instance_count × max_concurrency_per_instance. */
  parallelism: number;
  /** Sub-orchestrations running chunks side by side, one mini-batch at a time each (≤ parallelism). */
  lanes: number;
  maxRetries: number;
  errorThreshold: number;
  progressIntervalSeconds: number;
  /** How bookkeeping activities retry (from the configuration, fixed for the job here). */
  bookkeeping: BookkeepingRetry;
  error?: JobError | undefined;
  /**
   * The input is still being listed: `miniBatches`, `items` and `chunks` are the first page's whole
   * chunks, and the planner orchestration (planPages) lists the rest while the lanes score.
   */
  streamed?: true | undefined;
}

export interface MiniBatchInput extends EngineRef {
  chunkSize: number;
  index: number;
  attempt: number;
  /** retry_settings.max_retries: an attempt past it is the last, so its failed items count. */
  maxRetries: number;
  /**
   * The mini-batch this lane runs next, if any: its inputs are fetched while this one is scored,
   * so a lane does not wait on storage between mini-batches. Only a hint: whichever activity runs
   * that mini-batch fetches anything not prefetched on its own host.
   */
  next?: number | undefined;
  /**
   * The caller collects routine journal entries (see {@link MiniBatchResult.journal}) and records
   * them in groups, so a routine mini-batch makes one storage write (its predictions), not two.
   */
  deferJournal?: boolean | undefined;
  /**
   * Finalizing found this mini-batch's recorded outputs missing and runs it again: it runs whatever
   * the job's state (cancellation and the error threshold were settled when it first ran).
   */
  repair?: boolean | undefined;
}

/** The outcome of one attempt at a mini-batch. */
export interface MiniBatchResult {
  index: number;
  attempt: number;
  /** The execution's nonce: the journal entry it staged is acknowledged by (index, attempt, nonce). */
  nonce: string;
  /**
   * `skipped`: not run, because the job's failures already exceed the error threshold (`stop:
   * 'threshold'`) or the job was halted (`stop: 'halted'`); `canceled`: not run, the job is canceling.
   */
  status: 'completed' | 'failed' | 'timeout' | 'canceled' | 'skipped';
  stop?: 'threshold' | 'halted' | undefined;
  items: number;
  succeeded: number;
  failed: number;
  /** Whether running the mini-batch again may succeed. */
  retryable: boolean;
  seconds: number;
  error?: string | undefined;
  /** The job's items failed for good so far, this mini-batch included (for the error threshold). */
  jobFailures: number;
  /** The mini-batch's journal entry, left for the caller to record (only with `deferJournal`). */
  journal?: JournalEntry | undefined;
}

/** What one lane ran, compactly: see {@link ranIndexes}. */
export interface LaneRan {
  done: number;
  partial: number;
}

export interface FinalizeInput extends EngineRef {
  outcome: 'Completed' | 'Failed' | 'Canceled';
  /** The orchestration's counts, shown while finalizing (the final ones come from the journal). */
  counts: JobCounts;
  error?: JobError | undefined;
  /** How the plan was cut and what each lane ran: which mini-batches must have accepted records. */
  layout: { lanes: number; chunkSize: number; miniBatches: number };
  ran: LaneRan[];
  /** Whether mini-batches whose records or parts are missing may still be run again (else the job fails). */
  mayRepair: boolean;
}

/** What finalizing came to: the job's final status, or mini-batches to run again first. */
export type FinalizeResult = { status: 'Completed' | 'Failed' | 'Canceled' } | { status: 'repair'; repair: { index: number; attempt: number }[] };

/** What finalizing found in one segment, and its pieces of the outputs (see JobRunner.#finalizeSegment). */
interface SegmentOutcome {
  missing: { index: number; attempt: number }[];
  /** Its accepted records' counts (totals are the job's). */
  counts: JobCounts;
  /** Preamble entries (in the journal of a job prepared before segments). */
  preamble: JournalEntry[];
  pieces: Partial<Record<SegmentFile, ComposeSource>>;
  /** A job prepared before segments: the predictions parts staged on the file, to commit as they are. */
  committed?: StagedPart[] | undefined;
}

/** The values of ascending `sorted` within [range.start, range.end) (all of them without a range). */
function sliceSorted(sorted: readonly number[], range: { start: number; end: number } | undefined): number[] {
  if (!range) return [...sorted];
  const first = (v: number): number => {
    let lo = 0;
    let hi = sorted.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((sorted[mid] as number) < v) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  };
  return sorted.slice(first(range.start), first(range.end));
}

/** More missing mini-batches than this are not repaired: something is badly wrong, and the job fails. */
const MAX_REPAIRS = 100;

/** Inputs of a mini-batch fetched ahead of its activity, by item; undefined where not prefetched. */
interface Prefetched {
  at: number;
  bytes: number;
  items: (Promise<Buffer | undefined> | undefined)[];
}

/** Prefetched inputs nobody claimed (a canceled lane, a mini-batch run elsewhere) are dropped after this. */
const PREFETCH_TTL_MS = 60_000;

/** Where a job reads and writes: its spec's own copies of the locations (never looked up by name). */
interface Places {
  folder: OutputFolder;
  input: ResolvedData;
}

/**
 * One run of the engine as an activity sees it: the job, what the run scores (`work`), its state
 * (the job's own, or its step's read as a job's), and `scope`: what its work area, blocks, pool and
 * caches are keyed by (the job id, or `<job id>/<step>`), so two parallel steps of one job never
 * address the same thing.
 */
interface EngineRun {
  ref: EngineRef;
  scope: string;
  job: Job;
  work: ParallelWork;
  state: JobState;
}

/** A step's record read as the engine's state. */
function engineState(step: StepState): JobState {
  return { ...step, status: step.status === 'Skipped' ? 'Canceled' : step.status, counts: step.counts ?? emptyCounts() };
}

/** Where a run's prefetched mini-batch lives in the cache ('#' cannot occur in a scope). */
function prefetchKey(scope: string, index: number | string): string {
  return `${scope}#${index}`;
}

/** How the job's log names where it came from: the deployment, when it came through an endpoint. */
function deploymentOf(job: Job): string {
  return job.spec.endpoint ? `deployment ${job.spec.endpoint}/${job.spec.deployment}, ` : '';
}

/**
 * What a step runs: for a model deployment's job the job's own work; for a pipeline's parallel step
 * its component's, with its input as bound when it started and its output where the job put it.
 */
function stepWork(job: Job, stepName: string, step: StepState): ParallelWork {
  const spec = job.spec;
  if (!isPipelineSpec(spec)) return spec;
  const found = spec.pipeline.steps.find((s) => s.name === stepName);
  if (!found || found.type !== 'parallel') throw new BatchError('internal', `Job '${spec.id}' has no parallel step '${stepName}'.`, { retryable: false });
  if (!step.input) throw new BatchError('internal', `Step '${stepName}' of job '${spec.id}' has no input bound yet.`, { retryable: false });
  const target = found.outputs[found.append_row_to];
  if (!target) throw new BatchError('internal', `Step '${stepName}' of job '${spec.id}' has no output '${found.append_row_to}'.`, { retryable: false });
  return { ...found.work, input: step.input, output: { name: found.append_row_to, uri: target.uri, location: target.location } };
}

/** The parent a run reruns, if it is a rerun (a model deployment's job made by POST /jobs/{id}/rerun). */
function rerunOf(run: EngineRun): RerunOf | undefined {
  return isPipelineSpec(run.job.spec) ? undefined : run.job.spec.rerun_of;
}

/** A rerun's mini-batch has no items to score: it only copies its parent's rows. */
class NothingToScore extends Error {}

/** The scope of an engine run (see EngineRun). */
export function engineScope(ref: EngineRef): string {
  return ref.step === undefined ? ref.jobId : `${ref.jobId}/${ref.step}`;
}

interface ScorerFiles {
  model: { modelDir: string; modelFile: string | undefined };
  scriptPath: string | undefined;
}

/** How long one planPages call lists before it hands back (the planner orchestration calls again). */
const PLAN_BUDGET_MS = 15_000;
/** How long awaitPlan waits for a chunk before the lane asks again. */
const AWAIT_PLAN_MS = 2_000;
/** How often awaitPlan looks at the plan index when no planner on this host wakes it. */
const PLAN_POLL_MS = 250;

/** How a run's plan stands, as lanes and the planner orchestration see it (counts only). */
export interface PlanProgress {
  /** Chunks planned so far, and their mini-batches and items (all of them once `done`). */
  chunks: number;
  miniBatches: number;
  items: number;
  done: boolean;
  /** Why listing stopped before the input's end (see PlanIndex.stopped). */
  stopped?: PlanIndex['stopped'];
  error?: JobError | undefined;
}

/** Wakes awaitPlan calls on this host when planPages moves their run's plan on. */
class PlanSignals {
  readonly #waiters = new Map<string, Set<() => void>>();

  /** Resolves at the next notify for `scope`, or after `ms`. */
  wait(scope: string, ms: number): Promise<void> {
    return new Promise((resolve) => {
      const waiters = this.#waiters.get(scope) ?? new Set<() => void>();
      this.#waiters.set(scope, waiters);
      const wake = (): void => {
        clearTimeout(timer);
        waiters.delete(wake);
        if (waiters.size === 0 && this.#waiters.get(scope) === waiters) this.#waiters.delete(scope);
        resolve();
      };
      const timer = setTimeout(wake, ms);
      waiters.add(wake);
    });
  }

  notify(scope: string): void {
    for (const wake of [...(this.#waiters.get(scope) ?? [])]) wake();
  }
}

function planProgress(index: PlanIndex): PlanProgress {
  return {
    chunks: index.chunks,
    miniBatches: index.miniBatches,
    items: index.items,
    done: index.done,
    ...(index.stopped ? { stopped: index.stopped } : {}),
    ...(index.error ? { error: index.error } : {}),
  };
}
/** Inputs of one mini-batch downloaded at the same time. */
const FETCHES_AT_ONCE = 16;

/** The bytes an item's fetch holds in memory, or undefined for one that streams to disk. */
function inMemorySize(item: PlanItem): number | undefined {
  if (item.bytes && item.kind !== 'parquet') return item.bytes.end - item.bytes.start + (item.headerEnd ?? 0);
  return item.size <= SMALL_BLOB_BYTES ? item.size : undefined;
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
  readonly #runs: PromiseCache<EngineRun>;
  readonly #places = new PromiseCache<Places>({ max: 256 });
  readonly #scorers = new PromiseCache<ScorerFiles>({ max: 256 });
  readonly #models = new PromiseCache<ScorerFiles['model']>({ max: 256 });
  /** Upcoming mini-batches' inputs, keyed `${jobId}/${index}`. */
  readonly #prefetched = new Map<string, Prefetched>();
  readonly #plans = new PlanSignals();
  #prefetchedBytes = 0;

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
    this.#runs = new PromiseCache<EngineRun>({ max: 256, ttlMs: 1000, now: () => this.#now().getTime() });
  }

  /**
   * An engine run (the job, and the step's record for a step), re-read at most once a second:
   * mini-batches check for cancellation this way. Concurrent mini-batches of a run share one read.
   */
  #run(ref: EngineRef): Promise<EngineRun> {
    const scope = engineScope(ref);
    return this.#runs.get(scope, async () => {
      const job = await this.#store.get(ref.jobId);
      if (!job) throw new BatchError('not_found', `Job '${ref.jobId}' does not exist.`, { retryable: false });
      if (ref.step === undefined) {
        if (isPipelineSpec(job.spec)) throw new BatchError('internal', `Job '${ref.jobId}' runs as steps; name the step.`, { retryable: false });
        return { ref, scope, job, work: job.spec, state: job.state };
      }
      const step = await this.#store.getStep(ref.jobId, ref.step);
      if (!step) throw new BatchError('internal', `Step '${ref.step}' of job '${ref.jobId}' has no record.`, { retryable: false });
      return { ref, scope, job, work: stepWork(job, ref.step, step), state: engineState(step) };
    });
  }

  /**
   * The run as a mini-batch must see it: one cached from before prepare ended (NotStarted or
   * Preparing, no segment_size yet) is read again, since where a mini-batch stages depends on it.
   */
  async #preparedRun(ref: EngineRef): Promise<EngineRun> {
    const run = await this.#run(ref);
    if (run.state.segment_size !== undefined || (run.state.status !== 'NotStarted' && run.state.status !== 'Preparing')) return run;
    this.#runs.delete(run.scope);
    return this.#run(ref);
  }

  /** Changes the engine's state: the job's, or its step's (see JobStore.update). */
  async #update(ref: EngineRef, mutate: (state: JobState) => JobState | undefined): Promise<JobState | undefined> {
    if (ref.step === undefined) return this.#store.update(ref.jobId, (s) => mutate(s));
    const next = await this.#store.updateStep(ref.jobId, ref.step, (step) => {
      const changed = mutate(engineState(step));
      return changed ? { ...step, ...changed } : undefined;
    });
    return next ? engineState(next) : undefined;
  }

  /** Whether the run, or the job it belongs to, is being canceled (or was). */
  static #canceling(run: EngineRun): boolean {
    const statuses = [run.state.status, run.job.state.status];
    return statuses.includes('Canceling') || statuses.includes('Canceled');
  }

  /** What the scoring runtime runs for a run: the same spec (and so the same pool) every time. */
  #scorerSpec(run: EngineRun, files: ScorerFiles): ScorerSpec {
    const work = run.work;
    return {
      key: run.scope,
      kind: work.model.type === 'onnx' ? 'onnx' : 'script',
      modelDir: files.model.modelDir,
      modelFile: files.model.modelFile,
      scriptPath: files.scriptPath,
      outputDir: join(this.#config.cacheDir, 'outputs', ...run.scope.split('/')),
      environment: resolveEnvironment(work.settings.environment_variables),
      loggingLevel: work.settings.logging_level,
      maxConcurrency: work.settings.max_concurrency_per_instance,
      rows: { fileName: work.settings.output_file_name, join: work.settings.join, key_field: work.settings.key_field },
    };
  }

  /**
   * Fetches the model and code and starts the scoring workers while the job is still being planned,
   * so the first mini-batches do not wait for them. Best effort: the mini-batches do the same work
   * again if this fails, and report what went wrong.
   */
  async #warmUp(run: EngineRun): Promise<void> {
    // The threads start once the model is here (at once, for a model fetched before), and boot
    // while the code is fetched; their init() waits for all of the files.
    const spec = this.#scorerSpec(run, { model: await this.#localModel(run), scriptPath: this.#scriptPath(run) });
    await this.#runtime.warm(spec, { timeoutMs: run.work.settings.retry_settings.timeout * 1000, ready: this.#scorerFiles(run) });
  }

  /** The model and scoring script on this machine, fetched once per run (the two side by side: the job's first mini-batch waits for both). */
  #scorerFiles(run: EngineRun): Promise<ScorerFiles> {
    const work = run.work;
    return this.#scorers.get(run.scope, async () => {
      const code = work.code_configuration;
      const [model] = await Promise.all([
        this.#localModel(run),
        code && work.code_location ? localCode(this.#registry, work.code_location, code.code, work.code_content, run.scope, this.#config.cacheDir) : undefined,
      ]);
      return { model, scriptPath: this.#scriptPath(run) };
    });
  }

  /** The model on this machine, fetched once per run (the scoring workers can start once it is). */
  #localModel(run: EngineRun): Promise<ScorerFiles['model']> {
    const work = run.work;
    return this.#models.get(run.scope, () => localModel(this.#registry, work.model, work.model_location, work.model_content, this.#config.cacheDir));
  }

  /** Where the run's scoring script is on this machine once localCode has fetched it (known before it has). */
  #scriptPath(run: EngineRun): string | undefined {
    const code = run.work.code_configuration;
    if (!code || !run.work.code_location) return undefined;
    return join(localCodeFolder(this.#config.cacheDir, run.scope), ...code.scoring_script.split('/'));
  }

  #placesOf(run: EngineRun): Promise<Places> {
    return this.#places.get(run.scope, () =>
      Promise.resolve({
        folder: new OutputFolder(this.#registry.open(run.work.output.location), run.work.output.location.path, run.ref.jobId),
        input: this.#registry.reopen(run.work.input.location, run.work.input.type, run.work.input.uri),
      }),
    );
  }

  async prepare(ref: EngineRef): Promise<PreparedJob> {
    const run = await this.#run(ref);
    const { jobId } = ref;
    const spec = run.work;
    const base: PreparedJob = {
      status: 'ready',
      miniBatches: 0,
      items: 0,
      chunks: 0,
      chunkSize: this.#config.maxChunkSize,
      parallelism: parallelismOf(spec.settings, spec.resources.instance_count),
      lanes: 0,
      maxRetries: spec.settings.retry_settings.max_retries,
      errorThreshold: spec.settings.error_threshold,
      progressIntervalSeconds: this.#config.progressIntervalSeconds,
      bookkeeping: this.#config.bookkeepingRetry,
    };
    const started = await this.#update(ref, (s) =>
      s.status === 'NotStarted' ? { ...s, status: 'Preparing', started_at: this.#now().toISOString() } : undefined,
    );
    if (started?.status === 'Canceling' || started?.status === 'Canceled' || JobRunner.#canceling(run)) return { ...base, status: 'canceled' };

    // Not awaited: loading the model overlaps listing and planning.
    this.#warmUp(run).catch(() => undefined);
    let index: PlanIndex;
    try {
      // A second execution of prepare finds the first one's plan, which stands.
      index = (await this.#workArea.readPlan(run.scope))?.index ?? (await this.#firstPlan(run, base.parallelism));
    } catch (err) {
      if (err instanceof BatchError && !err.retryable) {
        return { ...base, status: 'failed', error: { code: err.code, message: err.message } };
      }
      throw err;
    }
    if (index.stopped === 'failed') return { ...base, status: 'failed', error: index.error };
    const { chunkSize, chunks, lanes, miniBatches, items } = index;
    const pending = index.done ? 0 : index.pending.length;
    const { folder } = await this.#placesOf(run);
    await folder.ensureContainer();
    const where = ref.step === undefined ? '' : ` step ${ref.step},`;
    const planned = index.done
      ? `${items} item(s) in ${miniBatches} mini-batch(es) of up to ${spec.settings.mini_batch_size}`
      : `input listed page by page while scoring runs (${items + pending} item(s) in the first page); mini-batches of up to ${spec.settings.mini_batch_size}`;
    await this.#workArea.stagePreamble(
      run.scope,
      0,
      `${this.#now().toISOString()} INFO job ${jobId}:${where} ${planned}, ${base.parallelism} in flight, ${deploymentOf(run.job)}model ${spec.model.name}:${spec.model.version}\n`,
      this.#config.segmentSize,
    );
    const counts = emptyCounts();
    counts.mini_batches.total = miniBatches + Math.ceil(pending / spec.settings.mini_batch_size);
    counts.items.total = items + pending;
    const rerun = rerunOf(run);
    // The built-in runner's columns are known now (but for join "all": the input's); a script's are
    // fixed by its first rows; a rerun's are its parent's (the rows it copies have them).
    const columns = rerun?.columns ?? (spec.code_configuration || spec.settings.join === 'all' ? undefined : builtInColumns(rowJoinOf(spec.settings)));
    const state = await this.#update(ref, (s) => {
      if (isTerminalJob(s.status)) return undefined;
      return { ...s, status: s.status === 'Canceling' ? 'Canceling' : 'Running', counts, chunks, failures: 0, segment_size: this.#config.segmentSize, ...(columns ? { columns } : {}) };
    });
    // Mini-batches must see this state (segment_size above all: where they stage), not the one
    // read when prepare began.
    this.#runs.delete(run.scope);
    const plan = { ...base, miniBatches, items, chunks, chunkSize, lanes, ...(index.done ? {} : { streamed: true as const }) };
    if (state?.status === 'Canceling') return { ...plan, status: 'canceled' };
    // Each lane's first mini-batch is fetched while the orchestration starts the lanes, so it scores
    // as soon as it arrives (where prepare and scoring share a process, as in fnhost; elsewhere the
    // prefetch goes unclaimed and expires).
    for (let lane = 0; lane < Math.min(lanes, chunks); lane++) {
      const first = chunkRange(lane, chunkSize, miniBatches).start;
      if (first < miniBatches) this.#prefetch(run, chunkSize, first);
    }
    return plan;
  }

  /**
   * Plans a run for the first time and records its plan index. A folder whose listing has more than
   * one page (BATCH_LIST_PAGE_SIZE) is planned from its first page only, in chunks of a size fixed
   * now (streamChunkSize); planPages lists the rest while the lanes score. Anything else is planned
   * whole: a file, a file list, a rerun (its parent's plan) and a folder of one page, cut so every
   * lane gets the same share (chunkLayout).
   */
  async #firstPlan(run: EngineRun, parallelism: number): Promise<PlanIndex> {
    const spec = run.work;
    const { input } = await this.#placesOf(run);
    const nonce = newNonce();
    const rerun = rerunOf(run);
    let items: PlanItem[];
    let batches: MiniBatch[] | undefined;
    if (rerun) {
      // A rerun's plan is its parent's, with what each mini-batch reuses (see shared/jobs/rerun.ts).
      batches = (await this.#workArea.rerunPlan(rerun.scope, rerun.header_bytes, rerun.segment_size)).batches;
      items = batches.flatMap((b) => b.items);
      // A parent that stopped before its folder was listed to the end: the rerun lists on from where
      // it stopped, in the parent's chunks (whole ones, so the mini-batches to come follow on).
      const parent = (await this.#workArea.readPlan(rerun.scope))?.index;
      if (parent && unlistedRest(parent)) {
        return this.#createPlan(run, {
          miniBatches: batches.length,
          chunks: parent.chunks,
          items: items.length,
          pending: parent.pending,
          chunkSize: parent.chunkSize,
          lanes: Math.max(1, Math.floor(parallelism)),
          marker: parent.marker,
          done: false,
          files: parent.files,
          writers: parent.chunks > 0 ? [{ first: 0, nonce }] : [],
        }, Array.from({ length: parent.chunks }, (_, chunk) => ({ chunk, batches: batches?.slice(chunk * parent.chunkSize, (chunk + 1) * parent.chunkSize) ?? [] })));
      }
    } else if (spec.input.type === 'uri_file' || spec.input.files) {
      items = await listInput(input, spec.split, spec.input.files);
    } else {
      let page = await listFolderPage(input, spec.split, { marker: '', pageSize: this.#config.listPageSize });
      // Pages of subfolders only say nothing yet.
      while (page.items.length === 0 && page.marker !== '') page = await listFolderPage(input, spec.split, { marker: page.marker, pageSize: this.#config.listPageSize });
      items = page.items;
      if (page.marker !== '') {
        const files = new Set(items.map((i) => i.blob)).size;
        // A first page already past a job-size cap fails the job before anything is scored.
        const firstTooLarge = jobSizeProblem(this.#config.limits, { files, miniBatches: Math.ceil(items.length / spec.settings.mini_batch_size) });
        if (firstTooLarge) throw new BatchError(firstTooLarge.code, firstTooLarge.message, { retryable: false });
        const chunkSize = streamChunkSize(spec.settings.mini_batch_size, this.#config.maxChunkSize);
        const first = planPage({ miniBatches: 0, chunks: 0, items: 0, pending: [] }, items, { miniBatchSize: spec.settings.mini_batch_size, chunkSize, last: false });
        const index: PlanIndex = {
          ...first.plan,
          chunkSize,
          lanes: Math.max(1, Math.floor(parallelism)),
          marker: page.marker,
          done: false,
          files,
          writers: first.chunks.length > 0 ? [{ first: 0, nonce }] : [],
        };
        return this.#createPlan(run, index, first.chunks);
      }
    }
    if (items.length === 0) throw new BatchError('input_not_found', `The input ${spec.input.uri} contains no files to score.`, { retryable: false });
    batches ??= toMiniBatches(items, spec.settings.mini_batch_size);
    // Found before any scoring: a job over a limit would otherwise fail only at finalize.
    const tooLarge = jobSizeProblem(this.#config.limits, { files: new Set(items.map((i) => i.blob)).size, miniBatches: batches.length });
    if (tooLarge) throw new BatchError(tooLarge.code, tooLarge.message, { retryable: false });
    const target = chunkTarget(batches.length, parallelism, this.#config.maxChunkSize);
    const { chunkSize, chunks, lanes } = chunkLayout(batches.length, parallelism, target);
    const index: PlanIndex = {
      miniBatches: batches.length,
      chunks,
      items: items.length,
      pending: [],
      chunkSize,
      lanes,
      marker: '',
      done: true,
      files: new Set(items.map((i) => i.blob)).size,
      writers: [{ first: 0, nonce }],
    };
    return this.#createPlan(run, index, Array.from({ length: chunks }, (_, chunk) => ({ chunk, batches: (batches ?? []).slice(chunk * chunkSize, (chunk + 1) * chunkSize) })));
  }

  /** Records a run's first plan, or, when another execution of prepare recorded one first, returns that. */
  async #createPlan(run: EngineRun, index: PlanIndex, chunks: { chunk: number; batches: MiniBatch[] }[]): Promise<PlanIndex> {
    if ((await this.#workArea.advancePlan(run.scope, undefined, index, chunks)) !== undefined) return index;
    const recorded = await this.#workArea.readPlan(run.scope);
    if (!recorded) throw new BatchError('storage_failed', `The plan of job ${run.ref.jobId} was recorded and is gone.`);
    return recorded.index;
  }

  /**
   * Lists more of a run's input folder, page by page, for about {@link PLAN_BUDGET_MS}: each page is
   * planned on from where the plan index stands (planPage: whole chunks, the rest pending), its
   * chunks written, the index moved on (only if no other execution moved it first) and the job's
   * totals updated, so lanes waiting in awaitPlan go on at once. The last page plans the rest.
   * Listing stops early when the job is canceling, halted or over its error threshold, and fails
   * the job (halting it) when the input cannot be listed or exceeds a job's limits. Safe to repeat.
   */
  async planPages(ref: EngineRef): Promise<PlanProgress> {
    const started = this.#now().getTime();
    const scope = engineScope(ref);
    for (;;) {
      const recorded = await this.#workArea.readPlan(scope);
      if (!recorded) throw new BatchError('internal', `Job ${ref.jobId} has no plan to list on.`, { retryable: false });
      let { index, etag } = recorded;
      while (!index.done) {
        if (this.#now().getTime() - started >= PLAN_BUDGET_MS) return planProgress(index);
        const run = await this.#run(ref);
        const spec = run.work;
        const stop = JobRunner.#canceling(run) ? 'canceled' : run.state.halt ? 'halted' : exceedsThreshold(run.state.failures ?? 0, spec.settings.error_threshold) ? 'threshold' : undefined;
        let next: PlanIndex;
        let chunks: { chunk: number; batches: MiniBatch[] }[] = [];
        if (stop) {
          // Where the listing stopped stays recorded (marker, pending): a rerun lists on from there.
          next = { ...index, done: true, stopped: stop };
        } else {
          const { input } = await this.#placesOf(run);
          let page: { items: PlanItem[]; marker: string } | undefined;
          let failure: BatchError | undefined;
          try {
            // No marker left (a rerun taking over a listing that stopped after its last page): only the pending items remain.
            page = index.marker === '' ? { items: [], marker: '' } : await listFolderPage(input, spec.split, { marker: index.marker, pageSize: this.#config.listPageSize });
          } catch (err) {
            if (!(err instanceof BatchError) || err.retryable) throw err;
            failure = err;
          }
          const last = page?.marker === '';
          const planned = page ? planPage(index, page.items, { miniBatchSize: spec.settings.mini_batch_size, chunkSize: index.chunkSize, last }) : undefined;
          const files = index.files + new Set(page?.items.map((i) => i.blob)).size;
          failure ??= planned ? jobSizeProblem(this.#config.limits, { files, miniBatches: planned.plan.miniBatches + Math.ceil(planned.plan.pending.length / spec.settings.mini_batch_size) }) : undefined;
          if (failure || !page || !planned) {
            const error = { code: failure?.code ?? 'internal', message: failure?.message ?? 'The input could not be listed.' };
            next = { ...index, done: true, stopped: 'failed', error };
          } else {
            chunks = planned.chunks;
            const writer = newNonce();
            next = { ...index, ...planned.plan, marker: page.marker, done: last, files, writers: chunks.length > 0 ? [...index.writers, { first: index.chunks, nonce: writer }] : index.writers };
          }
        }
        const written = await this.#workArea.advancePlan(scope, { etag }, next, chunks);
        if (written === undefined) {
          // Another execution moved the plan on: read where it stands and go on from there.
          break;
        }
        index = next;
        etag = written;
        this.#plans.notify(scope);
        if (index.stopped === 'failed' && index.error) await this.halt({ ...ref, error: index.error });
        await this.#update(ref, (s) => {
          if (isTerminalJob(s.status)) return undefined;
          const pendingBatches = Math.ceil(index.pending.length / spec.settings.mini_batch_size);
          return {
            ...s,
            chunks: index.chunks,
            counts: {
              mini_batches: { ...s.counts.mini_batches, total: index.miniBatches + pendingBatches },
              items: { ...s.counts.items, total: index.items + index.pending.length },
            },
          };
        });
        if (index.done && !index.stopped) {
          await this.#workArea.stagePreamble(
            scope,
            1,
            `${this.#now().toISOString()} INFO job ${ref.jobId}${ref.step === undefined ? '' : ` step ${ref.step}`}: input listed: ${index.items} item(s) of ${index.files} file(s) in ${index.miniBatches} mini-batch(es)\n`,
            run.state.segment_size,
          );
        }
      }
      if (index.done) return planProgress(index);
    }
  }

  /**
   * How a run's plan stands, for a lane that has run every chunk it knew of: returns as soon as the
   * plan has `chunk` or is done, or after {@link AWAIT_PLAN_MS} (the lane asks again). planPages on
   * this host wakes it at once; one on another host is seen within {@link PLAN_POLL_MS}. A lane
   * never waits on a job that is canceling or halted (`stopped`), nor on a planner that has ended
   * (`options.plannerEnded`) while the plan index says the listing goes on: storage lost the
   * index's last update, so the job is halted with that error rather than left running forever.
   */
  async awaitPlan(input: EngineRef & { chunk: number }, options: { plannerEnded: () => Promise<boolean> }): Promise<PlanProgress> {
    const scope = engineScope(input);
    const deadline = this.#now().getTime() + AWAIT_PLAN_MS;
    for (;;) {
      const recorded = await this.#workArea.readPlan(scope);
      if (!recorded) throw new BatchError('internal', `Job ${input.jobId} has no plan.`, { retryable: false });
      const { index } = recorded;
      if (index.done || input.chunk < index.chunks) return planProgress(index);
      const run = await this.#run(input);
      if (JobRunner.#canceling(run)) return { ...planProgress(index), done: true, stopped: 'canceled' };
      if (run.state.halt) return { ...planProgress(index), done: true, stopped: 'halted' };
      const left = deadline - this.#now().getTime();
      if (left <= 0) {
        if (!(await options.plannerEnded())) return planProgress(index);
        // Read again: the planner may have recorded its last page since the read above.
        const again = (await this.#workArea.readPlan(scope))?.index ?? index;
        if (again.done || input.chunk < again.chunks) return planProgress(again);
        const error: JobError = {
          code: 'storage_failed',
          message: `The input's listing ended, but the plan index holds only ${again.chunks} chunk(s) (${again.files} file(s)) and says the listing goes on: storage lost its last update, so the job cannot know the rest of its mini-batches. Invoke the endpoint again.`,
        };
        await this.halt({ ...input, error });
        return { ...planProgress(again), done: true, stopped: 'failed', error };
      }
      await this.#plans.wait(scope, Math.min(left, PLAN_POLL_MS));
    }
  }

  /** Scores one mini-batch and stages its outputs. Scorer problems are results, not exceptions. */
  async scoreMiniBatch(input: MiniBatchInput): Promise<MiniBatchResult> {
    const run = await this.#run(input);
    const spec = run.work;
    const full = await this.#workArea.miniBatch(run.scope, input.chunkSize, input.index);
    // A rerun scores only the items its parent did not; the rest of its rows are copied.
    const scored = itemsToScore(full);
    const batch: MiniBatch = full.reuse ? { index: full.index, items: scored.map((i) => full.items[i] as PlanItem) } : full;
    // Each execution has its own nonce: what it stages and its work folder are its alone, even
    // when the same attempt runs twice (activities run at least once).
    const nonce = newNonce();
    const base = { index: input.index, attempt: input.attempt, nonce, items: full.items.length, succeeded: 0, failed: 0, seconds: 0, jobFailures: run.state.failures ?? 0 };
    if (!input.repair) {
      if (JobRunner.#canceling(run)) {
        return { ...base, status: 'canceled', retryable: false };
      }
      // Another lane may have halted the job, or taken it over its error threshold, since this lane last heard.
      if (run.state.halt) return { ...base, status: 'skipped', stop: 'halted', retryable: false };
      if (exceedsThreshold(base.jobFailures, spec.settings.error_threshold)) {
        return { ...base, status: 'skipped', stop: 'threshold', retryable: false };
      }
    }
    const { folder } = await this.#placesOf(run);
    const workDir = join(this.#config.cacheDir, 'work', ...run.scope.split('/'), `mb-${input.index}-a${input.attempt}-${nonce}`);
    const startedAt = this.#now().toISOString();
    const started = process.hrtime.bigint();
    const elapsed = (): number => Number(process.hrtime.bigint() - started) / 1e9;
    const phases = { download: 0, scoring: 0 };
    // Files this thread wrote; the scoring worker removes the ones it writes itself.
    const downloaded: string[] = [];
    let outcome: ScoreOutcome;
    try {
      if (batch.items.length === 0) throw new NothingToScore();
      const files = await this.#scorerFiles(run);
      const { items, arrivals } = await this.#download(run, batch, workDir);
      // Every download settles before the mini-batch ends, so none writes into a cleaned-up folder.
      const landed = Promise.allSettled(arrivals).then((settled) => {
        phases.download = elapsed();
        if (input.next !== undefined) this.#prefetch(run, input.chunkSize, input.next);
        settled.forEach((s, n) => {
          if (s.status === 'fulfilled' && s.value === undefined) downloaded.push((items[n] as ScoringItem).localPath);
        });
        const failed = settled.find((s) => s.status === 'rejected');
        if (failed) throw failed.reason;
      });
      // Scoring starts while the files download; the runner reads each as it lands.
      const scored = this.#runtime.score(this.#scorerSpec(run, files), {
        items,
        ready: arrivals,
        timeoutMs: spec.settings.retry_settings.timeout * 1000,
        columns: spec.settings.output_action === 'append_row' ? (proposal) => this.#columns(input, proposal) : undefined,
        knownColumns: knownColumns(run.state),
      });
      // A failed download decides the mini-batch's fate, whatever the scorer made of the rest.
      const [downloads, scoring] = await Promise.allSettled([landed, scored]);
      if (downloads.status === 'rejected') throw downloads.reason;
      if (scoring.status === 'rejected') throw scoring.reason;
      outcome = scoring.value;
      phases.scoring = elapsed() - phases.download;
    } catch (err) {
      // Setup problems (a missing scoring script, a model without an .onnx file) fail the items.
      if (err instanceof NothingToScore) {
        outcome = { status: 'completed', result: { data: Buffer.alloc(0), columns: [], succeeded: 0, failed: [], producedFiles: [], logs: [], seconds: 0, itemBytes: [] } };
      } else if (err instanceof BatchError && !err.retryable) {
        // An input that is gone or was rewritten fails the mini-batch it belongs to; say so, rather
        // than let each of its items read as if its own file had the problem.
        const error = err.code === 'input_not_found' || err.code === 'input_changed' ? `an input of this mini-batch could not be read: ${err.message}` : err.message;
        outcome = { status: 'failed', error, retryable: false, logs: [], seconds: 0 };
      } else {
        await cleanWorkDir(workDir, downloaded, { everything: true });
        throw err;
      }
    }
    const seconds = elapsed();
    // A worker that ran to the end removed what it wrote; one stopped midway (a timeout) did not.
    await cleanWorkDir(workDir, downloaded, { everything: outcome.status !== 'completed' });
    return this.#record(folder, input, nonce, batch, outcome, { seconds, startedAt, ...phases }, full.reuse ? { full, scored } : undefined);
  }

  /**
   * The job's columns, for a mini-batch whose run() returned rows: fixed by the first mini-batch
   * that asks (one atomic update of the job record; later ones read it), so every mini-batch writes
   * the same columns in the same order. Keys `seen` that are not among them are dropped: those no
   * mini-batch dropped before are added to the record's dropped_columns in the same update, with
   * this mini-batch (`ref.index`) in dropped_by. Finalize warns about them, once, from the record.
   */
  async #columns(ref: EngineRef & { index: number }, proposal: ColumnsProposal): Promise<ColumnsDecision> {
    const settled = settledColumns(knownColumns((await this.#run(ref)).state), proposal);
    if (settled) return settled;
    const state = await this.#update(ref, (s) => {
      const columns = s.columns ?? proposal.proposed;
      const dropped = s.dropped_columns ?? [];
      const fresh = newKeys({ columns, dropped }, proposal);
      if (s.columns && fresh.length === 0) return undefined;
      const by = [...(s.dropped_by ?? []), ...fresh.map((column) => ({ column, mini_batch: ref.index }))];
      return { ...s, columns, dropped_columns: [...dropped, ...fresh], dropped_by: by };
    });
    this.#runs.delete(engineScope(ref));
    const columns = state?.columns;
    if (!columns) throw new BatchError('internal', `Job '${ref.jobId}' has no columns after fixing them.`);
    return { columns };
  }

  /**
   * Starts downloading a mini-batch's items: the items with their local paths under `workDir`, and
   * per item a promise that settles when its data is here, with its bytes if they were read into
   * memory (see {@link ScoreRequest.ready}) or with nothing once a large file is in place on disk.
   */
  async #download(run: EngineRun, batch: MiniBatch, workDir: string): Promise<{ items: ScoringItem[]; arrivals: Promise<Buffer | undefined>[] }> {
    const { input } = await this.#placesOf(run);
    const headers = new Map<string, Promise<Buffer>>();
    const items: ScoringItem[] = [];
    // Files keep their base names (scripts often use them); only names that occur more than once
    // in the mini-batch (row ranges of one file, same name in two folders) get a folder each.
    const baseOf = (item: PlanItem): string => item.name.split('/').pop() || 'item';
    const seen = new Map<string, number>();
    for (const item of batch.items) seen.set(baseOf(item), (seen.get(baseOf(item)) ?? 0) + 1);
    // Folders are made by whoever writes a file there: the scoring worker for the bytes it is
    // sent, fetchBlob for a large file it streams to disk.
    const locals = batch.items.map((item, n) => {
      const base = baseOf(item);
      return seen.get(base) === 1 ? join(workDir, base) : join(workDir, String(n), base);
    });
    // In item order, a bounded number at a time: the first items land first (scoring starts on
    // them), and a mini-batch of thousands of files never opens thousands of connections.
    const early = this.#claimPrefetch(run.scope, batch.index);
    const fetches = batch.items.map((item, n) => async (): Promise<Buffer | undefined> => {
      const ahead = early?.[n];
      if (ahead) {
        try {
          return await ahead;
        } catch {
          // A prefetch that failed is tried again here, where its failure counts.
        }
      }
      return this.#fetchItem(input, item, locals[n] as string, headers);
    });
    const arrivals = inOrderAtMost(fetches, FETCHES_AT_ONCE);
    // Whoever waits on the arrivals sees a failure; this keeps an unwatched one from crashing the host.
    for (const arrival of arrivals) arrival.catch(() => undefined);
    batch.items.forEach((item, n) => {
      items.push({ name: item.name, localPath: locals[n] as string, rowOffset: item.rows?.start, rows: item.rows });
    });
    return { items, arrivals };
  }

  /** Fetches one item: see {@link fetchBlob}. CSV row ranges get the file's header line first. */
  #fetchItem(input: ResolvedData, item: PlanItem, local: string, headers: Map<string, Promise<Buffer>>, options?: { inMemory?: boolean }): Promise<Buffer | undefined> {
    if (item.bytes && item.kind !== 'parquet') {
      const { start, end } = item.bytes;
      if (item.kind === 'csv' && item.headerEnd) {
        let header = headers.get(item.blob);
        if (!header) {
          header = readInputRange(input.container, item.blob, 0, item.headerEnd, item.etag);
          headers.set(item.blob, header);
        }
        return header.then((prefix) => fetchBlob(input.container, item.blob, local, { range: { start, end, prefix }, etag: item.etag }));
      }
      return fetchBlob(input.container, item.blob, local, { range: { start, end }, etag: item.etag });
    }
    return fetchBlob(input.container, item.blob, local, { size: item.size, etag: item.etag, ...options });
  }

  /**
   * Starts fetching mini-batch `index`'s inputs into memory for the activity that runs it next,
   * within the prefetch budget: only items that would be read into memory anyway, and nothing if
   * the budget is spent. Failures are left for that activity to retry.
   */
  #prefetch(run: EngineRun, chunkSize: number, index: number): void {
    const budget = this.#config.prefetchBytes;
    if (budget <= 0) return;
    const key = prefetchKey(run.scope, index);
    if (this.#prefetched.has(key)) return;
    this.#dropStalePrefetches();
    const started = (async (): Promise<void> => {
      const [batch, { input }] = await Promise.all([this.#workArea.miniBatch(run.scope, chunkSize, index), this.#placesOf(run)]);
      // A rerun's mini-batch reads only some of its items: the activity fetches those itself.
      if (batch.reuse) return;
      const sizes = batch.items.map(inMemorySize);
      const bytes = sizes.reduce<number>((sum, size) => sum + (size ?? 0), 0);
      if (bytes === 0 || this.#prefetchedBytes + bytes > budget || this.#prefetched.has(key)) return;
      const headers = new Map<string, Promise<Buffer>>();
      const entry: Prefetched = { at: this.#now().getTime(), bytes, items: [] };
      const tasks = batch.items.map((item, n) => (sizes[n] === undefined ? undefined : () => this.#fetchItem(input, item, '', headers, { inMemory: true })));
      const fetching = inOrderAtMost(tasks.filter((t) => t !== undefined), FETCHES_AT_ONCE);
      let next = 0;
      entry.items = tasks.map((t) => (t ? fetching[next++] : undefined));
      // Whoever claims them sees failures; unclaimed ones must not crash the host.
      for (const p of fetching) p.catch(() => undefined);
      this.#prefetched.set(key, entry);
      this.#prefetchedBytes += bytes;
    })();
    started.catch(() => undefined);
  }

  /** Takes mini-batch `index`'s prefetched inputs, if any, out of the cache. */
  #claimPrefetch(scope: string, index: number): Prefetched['items'] | undefined {
    const key = prefetchKey(scope, index);
    const entry = this.#prefetched.get(key);
    if (!entry) return undefined;
    this.#prefetched.delete(key);
    this.#prefetchedBytes -= entry.bytes;
    return entry.items;
  }

  #dropStalePrefetches(scope?: string): void {
    const oldest = this.#now().getTime() - PREFETCH_TTL_MS;
    for (const [key, entry] of this.#prefetched) {
      if (entry.at < oldest || (scope !== undefined && key.startsWith(prefetchKey(scope, '')))) {
        this.#prefetched.delete(key);
        this.#prefetchedBytes -= entry.bytes;
      }
    }
  }

  async #record(
    folder: OutputFolder,
    input: MiniBatchInput,
    nonce: string,
    batch: MiniBatch,
    outcome: ScoreOutcome,
    timing: { seconds: number; startedAt: string; download: number; scoring: number },
    rerun?: { full: MiniBatch; scored: number[] },
  ): Promise<MiniBatchResult> {
    const { seconds } = timing;
    const run = await this.#preparedRun(input);
    const spec = run.work;
    const items = rerun ? rerun.full.items.length : batch.items.length;
    const reused = items - batch.items.length;
    const logs = outcome.status === 'completed' ? outcome.result.logs : outcome.logs;
    const logText = logs.map((l) => `${l.time} ${l.level.toUpperCase()} [mini-batch ${input.index} attempt ${input.attempt}] ${l.message}\n`).join('');
    const ids = new BlockIds(run.scope);
    const segmentSize = run.state.segment_size;
    let result: MiniBatchResult;
    let errors: string;
    let part: StagedPart | undefined;
    let itemBytes: number[] | undefined;
    let parts: StagedPart[] | undefined;
    if (outcome.status === 'completed' && rerun && spec.settings.output_action === 'append_row') {
      const composed = composeRerun(rerun.full, rerun.scored, outcome.result.data, outcome.result.itemBytes);
      if (composed) {
        parts = await this.#stageRerun(run, await this.#rowsTarget(run, folder, input.index), input, nonce, composed.pieces);
        itemBytes = composed.itemBytes;
      } else {
        outcome = {
          status: 'failed',
          error: "the scoring script's rows cannot be told apart by file, so they cannot be placed between the rows this rerun reuses: return file_name with each result, in the order of the files",
          retryable: false,
          logs: outcome.result.logs,
          seconds: outcome.result.seconds,
        };
      }
    }
    if (outcome.status === 'completed') {
      const r = outcome.result;
      const failedCount = r.failed.reduce((n, f) => n + (f.count ?? 1), 0);
      // The rows and produced files go up side by side; the journal entry that names them after.
      const [staged] = await Promise.all([
        spec.settings.output_action === 'append_row' && !rerun
          ? this.#rowsTarget(run, folder, input.index).then((target) => target.folder.stage(target.file, ids.part('p', input.index, input.attempt, nonce), r.data))
          : undefined,
        ...r.producedFiles.map((produced) => folder.uploadFile(produced.name, produced.localPath)),
      ]);
      part = staged;
      errors = errorLines(input.index, r.failed);
      // What a rerun needs to reuse the rows of the items that succeeded here (never for a routine entry: nothing failed).
      if (!rerun && failedCount > 0 && staged && r.itemBytes?.length === items) itemBytes = r.itemBytes;
      result = {
        index: input.index,
        attempt: input.attempt,
        nonce,
        status: 'completed',
        items,
        succeeded: Math.min(r.succeeded + reused, items),
        failed: Math.min(failedCount, items),
        retryable: false,
        seconds,
        jobFailures: run.state.failures ?? 0,
      };
    } else {
      // Setup failures already say what failed (init(), loading the script or the model).
      const reason =
        outcome.status === 'timeout' || /^(init\(\)|run\(\)|could not load|the scoring|the model|an input of this mini-batch)/i.test(outcome.error)
          ? outcome.error
          : `run() failed: ${outcome.error}`;
      errors = errorLines(input.index, batch.items.map((i) => failedItem(i, truncate(reason))));
      // A rerun's reused rows stand whatever became of the items it scored anew.
      if (rerun && !parts && spec.settings.output_action === 'append_row') {
        const composed = composeRerun(rerun.full, rerun.scored, Buffer.alloc(0), rerun.scored.map(() => 0));
        if (composed) {
          parts = await this.#stageRerun(run, await this.#rowsTarget(run, folder, input.index), input, nonce, composed.pieces);
          itemBytes = composed.itemBytes;
        }
      }
      result = {
        index: input.index,
        attempt: input.attempt,
        nonce,
        status: outcome.status,
        items,
        succeeded: reused,
        failed: items - reused,
        retryable: outcome.status === 'timeout' ? true : outcome.retryable,
        seconds,
        error: truncate(outcome.error),
        jobFailures: run.state.failures ?? 0,
      };
    }
    const repairNote = input.repair
      ? `${this.#now().toISOString()} WARNING [mini-batch ${input.index} attempt ${input.attempt}] run again while finalizing: the outputs it had recorded were lost in storage\n`
      : '';
    const entry: JournalEntry = {
      i: input.index,
      a: input.attempt,
      n: nonce,
      status: result.status as AttemptStatus,
      items,
      succeeded: result.succeeded,
      failed: result.failed,
      part,
      ...(parts ? { parts } : {}),
      ...(itemBytes && result.failed > 0 ? { item_bytes: itemBytes } : {}),
      report: reportRow({ ...result, attempt: input.attempt, status: result.status, error: result.error ?? '', startedAt: timing.startedAt }),
      errors,
      log: `${repairNote}${logText}${this.#now().toISOString()} INFO [mini-batch ${input.index} attempt ${input.attempt}] ${result.status}: ${result.succeeded}/${items} item(s) succeeded${rerun ? ` (${reused} reused from job ${rerunOf(run)?.job ?? '?'}, ${batch.items.length} scored anew)` : ''} in ${seconds.toFixed(3)} s (download ${timing.download.toFixed(3)} s, scoring ${timing.scoring.toFixed(3)} s)${result.error ? `: ${result.error}` : ''}\n`,
    };
    // A routine entry (small: a report row and one log line) travels back through the orchestration,
    // which records many in one write; any other is staged here, and the orchestration acknowledges it.
    const routine = input.deferJournal === true && result.status === 'completed' && errors === '' && logText === '';
    if (routine) result.journal = entry;
    else await this.#workArea.stageEntry(run.scope, entry, segmentSize);
    const final = result.status === 'completed' || !result.retryable || input.attempt > input.maxRetries;
    // A repair re-runs a mini-batch whose failures were counted when it first ran.
    if (final && result.failed > 0 && !input.repair) result.jobFailures = await this.#addFailures(input, result.failed);
    return result;
  }

  /**
   * Where mini-batch `index` stages its rows: its segment's part blob in the work area (composed
   * into the output file at finalize), or, for a job prepared before segments, the file itself.
   */
  async #rowsTarget(run: EngineRun, folder: OutputFolder, index: number): Promise<{ folder: OutputFolder; file: string }> {
    const segmentSize = run.state.segment_size;
    if (segmentSize === undefined) return { folder, file: run.work.settings.output_file_name };
    return { folder: await this.#workArea.parts(run.scope), file: JobWorkArea.partName(Math.floor(index / segmentSize), 'predictions') };
  }

  /**
   * Stages a rerun's mini-batch's pieces in order where its rows go (`target`, see #rowsTarget):
   * ranges of the parent's predictions file copied server-side, and the new rows. The parent's
   * file must still be the version the rerun was made from, before and after the copies (an ETag
   * never comes back, so a copy in between read it too).
   */
  async #stageRerun(run: EngineRun, target: { folder: OutputFolder; file: string }, input: MiniBatchInput, nonce: string, pieces: RerunPiece[]): Promise<StagedPart[]> {
    const source = rerunOf(run)?.source;
    const { folder, file } = target;
    const ids = new BlockIds(run.scope);
    const copies = pieces.some((s) => 'copy' in s);
    let from: CopySource | undefined;
    let pinned: (() => Promise<void>) | undefined;
    if (copies) {
      if (!source) throw new BatchError('internal', `Job '${run.job.spec.id}' reuses rows but names no source.`, { retryable: false });
      const parent = new OutputFolder(this.#registry.open(source.location), source.location.path);
      const blob = parent.container.getBlobClient(parent.blobName(source.file));
      pinned = async () => {
        let etag: string | undefined;
        try {
          etag = (await blob.getProperties()).etag;
        } catch (err) {
          if (!isNotFound(err)) throw new BatchError('storage_failed', `Could not read ${source.file} of job ${rerunOf(run)?.job ?? ''}.`, { cause: err });
        }
        if (etag !== source.etag) throw new BatchError('source_changed', `${source.file} of job ${rerunOf(run)?.job ?? ''} changed (or was deleted) since this rerun was made, so its rows cannot be reused.`, { retryable: false });
      };
      await pinned();
      from = await copySource(parent.container, parent.blobName(source.file));
    }
    const staged = await Promise.all(
      pieces.map((piece, k) => {
        const id = ids.part('p', input.index, input.attempt, `${nonce}:${k}`);
        return 'copy' in piece ? folder.stageFrom(file, id, from as CopySource, piece.copy) : folder.stage(file, id, piece.data);
      }),
    );
    if (pinned) await pinned();
    return staged.filter((p): p is StagedPart => p !== undefined);
  }

  /** Records a mini-batch whose activity itself kept failing (the report must still show it). */
  async recordFailure(input: MiniBatchInput & { error: string }): Promise<{ items: number; jobFailures: number; nonce: string }> {
    const scope = engineScope(input);
    const [batch, run] = await Promise.all([this.#workArea.miniBatch(scope, input.chunkSize, input.index), this.#preparedRun(input)]);
    const reason = truncate(input.error);
    const nonce = newNonce();
    const items = batch.items.length;
    await this.#workArea.stageEntry(scope, {
      i: input.index,
      a: input.attempt,
      n: nonce,
      status: 'failed',
      items,
      succeeded: 0,
      failed: items,
      report: reportRow({ index: input.index, attempt: input.attempt, items, succeeded: 0, failed: items, seconds: 0, status: 'failed', error: reason, startedAt: this.#now().toISOString() }),
      errors: errorLines(input.index, batch.items.map((i) => failedItem(i, reason))),
      log: `${this.#now().toISOString()} ERROR [mini-batch ${input.index} attempt ${input.attempt}] failed: ${reason}\n`,
    }, run.state.segment_size);
    return { items, jobFailures: await this.#addFailures(input, items), nonce };
  }

  /** Records journal lines an orchestration collected: routine entries and acks (see JobWorkArea.stageGroup). */
  async recordJournal(input: EngineRef & { lines: JournalLine[] }): Promise<void> {
    const run = await this.#preparedRun(input);
    await this.#workArea.stageGroup(run.scope, input.lines, run.state.segment_size);
  }

  /**
   * Halts the job: part of it failed in a way that must stop the rest (a lane could not record its
   * work). Lanes' next mini-batches see it and stop; the first halt's reason is the job's error.
   */
  async halt(input: EngineRef & { error: JobError }): Promise<void> {
    await this.#update(input, (s) => (s.halt || isTerminalJob(s.status) ? undefined : { ...s, halt: input.error }));
    this.#runs.delete(engineScope(input));
  }

  /**
   * Adds items that failed for good to the job's running total and returns the new total. It is the
   * last step of a mini-batch, after its outputs are stored; only a crash between the two could
   * count a mini-batch twice, which at worst stops a job at its threshold a little early.
   */
  async #addFailures(ref: EngineRef, items: number): Promise<number> {
    const state = await this.#update(ref, (s) => ({ ...s, failures: (s.failures ?? 0) + items }));
    // Mini-batches that start next must see the new total.
    this.#runs.delete(engineScope(ref));
    return state?.failures ?? items;
  }

  /**
   * Writes one lane's counts (its finished chunks and the running one) beside the job, so
   * GET /jobs/{id} shows them move. Lanes write their own rows: no lane waits for another.
   */
  async progress(input: EngineRef & { lane: number; counts: JobCounts }): Promise<void> {
    const run = await this.#run(input);
    if (run.state.status !== 'Running' && run.state.status !== 'Canceling') return;
    await this.#store.writeLaneCounts(input, input.lane, input.counts);
  }

  /**
   * Reads one segment's journal against the mini-batches the lanes ran in it, finds the ones whose
   * record or predictions part is missing, and, when none is, writes the segment's pieces of each
   * output: its accepted predictions parts committed to its part blob, and its report rows, error
   * lines and log lines as blobs of their own (a job prepared before segments keeps its texts in
   * memory, and its predictions parts are the file's own staged blocks). Safe to repeat.
   */
  async #finalizeSegment(run: EngineRun, folder: OutputFolder, at: { segment: number; segmentSize: number | undefined; expected: number[] }): Promise<SegmentOutcome> {
    const spec = run.work;
    const appendRow = spec.settings.output_action === 'append_row';
    const parts = await this.#workArea.parts(run.scope);
    const legacy = at.segmentSize === undefined;
    const predictions = legacy ? spec.settings.output_file_name : JobWorkArea.partName(at.segment, 'predictions');
    const where = legacy ? folder : parts;
    const [lines, blocks] = await Promise.all([
      this.#workArea.readJournal(run.scope, JobWorkArea.journalOf(at.segmentSize, at.segment * (at.segmentSize ?? 0))),
      appendRow ? where.blocks(predictions) : new Map<string, number>(),
    ]);
    const reading = readJournalLines(lines, at.expected);
    // A rerun's mini-batch records several parts (rows copied from its parent and new ones).
    const staged = reading.accepted.flatMap((m) => entryParts(m.final).map((part) => ({ index: m.index, attempt: m.final.a, part })));
    const lost = appendRow ? OutputFolder.missing(staged, blocks).map((p) => ({ index: p.index, attempt: p.attempt + 1 })) : [];
    const missing = [...reading.missing, ...lost].sort((a, b) => a.index - b.index);
    const finals = reading.accepted.map((m) => m.final);
    const counts = emptyCounts();
    counts.mini_batches.succeeded = finals.filter((e) => e.status === 'completed').length;
    counts.mini_batches.failed = finals.length - counts.mini_batches.succeeded;
    counts.mini_batches.retried = reading.accepted.reduce((n, m) => n + m.retries, 0);
    counts.items.succeeded = finals.reduce((n, e) => n + e.succeeded, 0);
    counts.items.failed = finals.reduce((n, e) => n + e.failed, 0);
    const texts: Record<Exclude<SegmentFile, 'predictions'>, string> = {
      report: finals.map((e) => e.report).join(''),
      errors: redactSecrets(finals.map((e) => e.errors).join('')),
      log: redactSecrets(reading.accepted.flatMap((m) => m.attempts.map((e) => e.log)).join('')),
    };
    const outcome: SegmentOutcome = { missing, counts, preamble: reading.preamble, pieces: {} };
    if (legacy) {
      // The whole job in one segment: its texts go up as inline pieces, its rows are the file's own blocks.
      for (const [kind, text] of Object.entries(texts) as [Exclude<SegmentFile, 'predictions'>, string][]) outcome.pieces[kind] = { text };
      if (appendRow && missing.length === 0) outcome.committed = staged.map((p) => p.part);
      return outcome;
    }
    const keyOf = (text: string): string => createHash('sha256').update(text).digest('hex');
    const writes: Promise<void>[] = [];
    // With a mini-batch missing the predictions are never written (no file with a gap); the
    // reports still are, saying what is there.
    if (appendRow && staged.length > 0 && missing.length === 0) {
      const list = staged.map((p) => p.part);
      writes.push(parts.commit(predictions, list));
      outcome.pieces.predictions = {
        blob: parts.container.getBlockBlobClient(parts.blobName(predictions)),
        bytes: list.reduce((n, p) => n + p.bytes, 0),
        key: keyOf(list.map((p) => `${p.id}:${p.bytes}`).join(',')),
      };
    }
    for (const [kind, text] of Object.entries(texts) as [Exclude<SegmentFile, 'predictions'>, string][]) {
      if (text === '') continue;
      const name = JobWorkArea.partName(at.segment, kind);
      writes.push(parts.upload(name, text, 'application/octet-stream'));
      outcome.pieces[kind] = { blob: parts.container.getBlockBlobClient(parts.blobName(name)), bytes: Buffer.byteLength(text), key: keyOf(text) };
    }
    await Promise.all(writes);
    return outcome;
  }

  /**
   * Finishes the job. First it checks the outputs against the records: every mini-batch the lanes
   * ran (`input.ran`) must have an accepted journal record, and every record's part of the
   * predictions file must be stored with the recorded length. Mini-batches that fail the check are
   * handed back to be run again (`repair`) while `input.mayRepair`; after that the job fails
   * (`output_incomplete`) rather than commit a file with a gap. Then it commits exactly the
   * recorded parts in mini-batch order, writes the reports and summary (counts from the accepted
   * records, not from what anyone remembers), and ends the job. Safe to repeat.
   */
  async finalize(input: FinalizeInput): Promise<FinalizeResult> {
    this.#runs.delete(engineScope(input));
    const run = await this.#run(input);
    const job = run.job;
    if (isTerminalJob(run.state.status)) return { status: run.state.status as 'Completed' | 'Failed' | 'Canceled' };
    // Every lane has ended, so the job's scoring threads go now rather than after finalize: the
    // host's peak is then finalize's reading of the journals, not that on top of idle threads. A
    // repair round starts them again.
    await this.#runtime.release(run.scope).catch(() => undefined);
    const totals = (s: JobState): JobCounts => ({
      mini_batches: { ...input.counts.mini_batches, total: Math.max(input.counts.mini_batches.total, s.counts.mini_batches.total) },
      items: { ...input.counts.items, total: Math.max(input.counts.items.total, s.counts.items.total) },
    });
    // While it finalizes, the job shows the counts the lanes reached (their progress rows stop).
    const state = (await this.#update(input, (s) => (isTerminalJob(s.status) ? undefined : { ...s, status: 'Finalizing', counts: totals(s) }))) ?? run.state;
    const spec = run.work;
    const { folder } = await this.#placesOf(run);
    await folder.ensureContainer();
    const file = spec.settings.output_file_name;
    const appendRow = spec.settings.output_action === 'append_row';
    const segmentSize = state.segment_size;
    // The plan index knows how many mini-batches were planned in the end (a plan listed page by
    // page may have stopped early); a job prepared before plan indexes has only the layout.
    const layout = { ...input.layout, miniBatches: (await this.#workArea.readPlan(run.scope))?.index.miniBatches ?? input.layout.miniBatches };
    const expected = ranIndexes(layout, input.ran);
    // Segment by segment (a job prepared before segments is one segment), a few at a time: memory
    // holds a few segments' journals, never the whole job's.
    const segmentCount = segmentSize === undefined ? 1 : Math.ceil(layout.miniBatches / segmentSize);
    const readings = Array.from({ length: segmentCount }, (_, segment) => () =>
      this.#finalizeSegment(run, folder, { segment, segmentSize, expected: sliceSorted(expected, segmentSize === undefined ? undefined : { start: segment * segmentSize, end: (segment + 1) * segmentSize }) }),
    );
    // Side by side, and awaited together (neither can fail unobserved while the other runs).
    const [preamble, segments] = await Promise.all([
      segmentSize === undefined ? [] : this.#workArea.readJournal(run.scope, JobWorkArea.journalOf(segmentSize, -1)),
      Promise.all(inOrderAtMost(readings, SEGMENTS_AT_ONCE)),
    ]);
    // The preamble's entries in the order they were made (prepare's, then the listing's end).
    const preambleLog = [...readJournalLines(preamble, []).preamble, ...segments.flatMap((g) => g.preamble)]
      .sort((x, y) => x.a - y.a)
      .map((e) => e.log)
      .join('');
    const missing = segments.flatMap((g) => g.missing);
    if (missing.length > 0 && input.mayRepair && missing.length <= MAX_REPAIRS) return { status: 'repair', repair: missing };

    let status = input.outcome;
    let error = input.error;
    const counts: JobCounts = {
      mini_batches: {
        total: totals(state).mini_batches.total,
        succeeded: segments.reduce((n, g) => n + g.counts.mini_batches.succeeded, 0),
        failed: segments.reduce((n, g) => n + g.counts.mini_batches.failed, 0),
        // Retries the orchestration made; a mini-batch run again because its outputs were lost in
        // storage is not one (an undisturbed run would not have retried it).
        retried: segments.reduce((n, g) => n + g.counts.mini_batches.retried, 0),
      },
      items: {
        total: totals(state).items.total,
        succeeded: segments.reduce((n, g) => n + g.counts.items.succeeded, 0),
        failed: segments.reduce((n, g) => n + g.counts.items.failed, 0),
      },
    };
    if (missing.length > 0) {
      status = 'Failed';
      const shown = missing.slice(0, 20).map((m) => m.index).join(', ');
      error = {
        code: 'output_incomplete',
        message: `The outputs of ${missing.length} mini-batch(es) (${shown}${missing.length > 20 ? ', …' : ''}) were lost in storage and could not be recovered by running them again; ${appendRow ? `${file} was not written rather than written with a gap` : 'the reports leave them out'}.`,
        details: { mini_batches: missing.map((m) => m.index) },
      };
    } else if (status === 'Completed' && counts.items.succeeded === 0 && counts.items.failed > 0) {
      status = 'Failed';
      error = {
        code: 'no_item_succeeded',
        message: `No mini-batch item succeeded: ${counts.items.failed} item(s) failed. Each failure and its reason is in ${ERRORS_FILE}; the per-mini-batch report is ${REPORT_FILE}.`,
      };
    }
    const completedAt = this.#now().toISOString();
    const columns = state.columns;
    const files = outputFiles(spec);
    const summary = {
      id: job.spec.id,
      ...(input.step === undefined ? {} : { step: input.step }),
      endpoint: job.spec.endpoint,
      deployment: job.spec.deployment,
      model: `${spec.model.name}:${spec.model.version}`,
      status,
      error: error ?? null,
      counts,
      columns: columns ?? null,
      settings: spec.settings,
      input: { name: spec.input.name, type: spec.input.type, path: spec.input.path, uri: spec.input.uri },
      output: { uri: spec.output.uri, files: Object.fromEntries(Object.entries(files).map(([k, f]) => [k, `${spec.output.uri}${f}`])) },
      created_at: job.spec.created_at,
      started_at: state.started_at ?? null,
      completed_at: completedAt,
    };
    // Keys dropped from the rows, said once, from the record that decided the rows.
    const dropped = droppedKeysWarning(spec.code_configuration ? 'run() returned' : 'the input has', state.columns ?? [], state.dropped_columns ?? [], state.dropped_by);
    const droppedLine = dropped === undefined ? '' : `${completedAt} WARNING ${dropped}\n`;
    const lastLine = `${droppedLine}${completedAt} INFO job ${job.spec.id}${input.step === undefined ? '' : ` step ${input.step}`} ${status}: ${counts.items.succeeded} item(s) succeeded, ${counts.items.failed} failed, ${counts.mini_batches.retried} retr${counts.mini_batches.retried === 1 ? 'y' : 'ies'}${error ? `; ${error.message}` : ''}\n`;
    // Each file is its segments' pieces in order (redacted piece by piece: a secret never spans
    // two lines, and pieces are whole lines). Every output is in place before the job says it is
    // done: a client that sees the final status can read them all, so they go up side by side.
    const pieces = (kind: SegmentFile): ComposeSource[] => segments.flatMap((g) => (g.pieces[kind] ? [g.pieces[kind]] : []));
    const compose = async (name: string, kind: SegmentFile, sources: ComposeSource[], contentType: string): Promise<void> => {
      const parts = await this.#workArea.parts(run.scope);
      await composeBlob(folder.container.getBlockBlobClient(folder.blobName(name)), sources, {
        contentType,
        ...ownerMetadata(folder.owner),
        scratch: (level, index) => parts.container.getBlockBlobClient(parts.blobName(`compose/${kind}/${level}-${index}`)),
      });
    };
    // The predictions: the header line (`csv_header`, once the columns are final) first, then
    // every segment's rows; a job prepared before segments commits its staged blocks after it.
    const predictions = async (): Promise<void> => {
      const header = predictionsHeader(spec.settings, columns);
      const contentType = outputContentType(outputFormat(file));
      if (segmentSize !== undefined) return compose(file, 'predictions', [{ text: header }, ...pieces('predictions')], contentType);
      const staged = header === '' ? undefined : await folder.stage(file, new BlockIds(run.scope).part('p', -1, 0, '00000000'), header);
      await folder.commit(file, [...(staged ? [staged] : []), ...(segments[0]?.committed ?? [])], { contentType });
    };
    await Promise.all([
      appendRow && missing.length === 0 ? predictions() : undefined,
      compose(REPORT_FILE, 'report', [{ text: REPORT_HEADER }, ...pieces('report')], 'text/csv; charset=utf-8'),
      compose(ERRORS_FILE, 'errors', pieces('errors'), 'application/x-ndjson'),
      folder.upload(SUMMARY_FILE, redactSecrets(`${JSON.stringify(summary, null, 2)}\n`), 'application/json'),
      compose(LOG_FILE, 'log', [{ text: redactSecrets(preambleLog) }, ...pieces('log'), { text: redactSecrets(lastLine) }], 'text/plain; charset=utf-8'),
    ]);
    await this.#update(input, (s) => ({ ...s, status, completed_at: completedAt, counts, error }));
    const local = run.scope.split('/');
    await this.#runtime.release(run.scope).catch(() => undefined);
    await removeQuietly(join(this.#config.cacheDir, 'code', ...local));
    await removeQuietly(join(this.#config.cacheDir, 'outputs', ...local));
    await removeQuietly(join(this.#config.cacheDir, 'work', ...local));
    // The plan and the journals stay: a rerun of this job reads them (shared/jobs/rerun.ts). The
    // segment parts the outputs were composed of go (a rerun copies from the outputs themselves).
    await this.#workArea.clearParts(run.scope).catch(() => undefined);
    this.#runs.delete(run.scope);
    this.#places.delete(run.scope);
    this.#scorers.delete(run.scope);
    this.#models.delete(run.scope);
    this.#dropStalePrefetches(run.scope);
    return { status };
  }
}

export function describeFailure(err: unknown): string {
  return truncate(errorMessage(err));
}

/** The columns a job record has fixed, if any (a cached record's are final: they never change once fixed). */
function knownColumns(state: Pick<JobState, 'columns' | 'dropped_columns'>): KnownColumns | undefined {
  if (!state.columns) return undefined;
  return { columns: state.columns, dropped: state.dropped_columns ?? [] };
}
