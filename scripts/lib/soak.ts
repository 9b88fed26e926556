/**
 * The crash soak: does a batch job come out exactly as an undisturbed one when fnhost is killed
 * (SIGKILL) at a random moment of it and started again on the same data folder?
 *
 * A reference job runs once, undisturbed. Then each trial starts fnhost with this app on a fresh
 * data folder, deploys the same scorer, invokes the same job, SIGKILLs the host (or its whole
 * process group) at a moment drawn from the seed — within the first second after the 202, in the
 * middle of the run, or while it finalizes — starts it again on the folder and waits for the job
 * to end. A trial holds when the job completed with predictions byte-identical to the
 * reference's, the same counts (API and job.json), and nothing repaired: with storage that keeps
 * every write it acknowledged, finalize has no lost outputs to run again.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { BlobServiceClient } from '@azure/storage-blob';
import { ApiError, BatchClient, type JobView } from './batch-client.js';
import { type LocalStack, ROOT, startLocalStack, stopStorage } from './local-stack.js';
import { freePort } from './ports.js';
import { uploadFiles } from './sample-data.js';

const CONTAINER = 'azureml-blobstore';
const OUTPUT = 'soak/out/';
const TERMINAL = ['Completed', 'Failed', 'Canceled'];
/** What finalize logs for each mini-batch whose recorded outputs storage lost (shared/jobs/job-runner.ts). */
const REPAIR_MARK = 'run again while finalizing';
// Progress is written at every chunk end, so more storage writes are in flight at any kill.
const ENV = { BATCH_PROGRESS_INTERVAL_SECONDS: '0' };

const ds = (path: string): string => `azureml://datastores/workspaceblobstore/paths/${path}`;

export type KillKind = 'early' | 'running' | 'finalizing';

export interface TrialPlan {
  kind: KillKind;
  /** early/running: ms after the 202; finalizing: ms after Finalizing was first seen. */
  delayMs: number;
  /** Kill the host's whole process group rather than the host alone. */
  group: boolean;
}

export interface SoakOptions {
  trials: number;
  seed: number;
  /** Receives a line per trial and the summary. */
  log?: (line: string) => void;
  /** Keep the data folder of a trial that did not hold, for a post-mortem (its path is printed). */
  keepFailed?: boolean;
  /** Input files (each one line more than the last), two per mini-batch. */
  files?: number;
  /** Sleep per mini-batch in the scoring script. */
  slowMs?: number;
}

export interface TrialResult {
  trial: number;
  plan: TrialPlan;
  /** When the kill came, in ms after the invoke's 202. */
  killedAfterMs: number;
  /** The job's status as last read before the kill. */
  phase: string;
  held: boolean;
  /** "held: …" or what differed. */
  outcome: string;
  /** Mini-batches finalize ran again because storage had lost their outputs. */
  repairs: number;
}

export interface SoakReport {
  seed: number;
  reference: { seconds: number; counts: JobView['counts'] };
  trials: TrialResult[];
  held: number;
}

/** A small seeded generator (mulberry32): the same seed gives the same kill moments. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

/**
 * The kill moment of each trial. Kinds take turns (early, running, finalizing, running), so even a
 * short soak kills once in the first second after the 202, once mid-run and once while the job
 * finalizes; the moment within each, and whether the whole process group goes, come from the seed.
 */
export function planTrials(options: { trials: number; seed: number; referenceMs: number }): TrialPlan[] {
  const random = seededRandom(options.seed);
  const turns: KillKind[] = ['early', 'running', 'finalizing', 'running'];
  return Array.from({ length: options.trials }, (_, i) => {
    const kind = turns[i % turns.length] as KillKind;
    const r = random();
    const delayMs =
      kind === 'early' ? Math.round(r * 1000) : kind === 'running' ? Math.round(1000 + r * Math.max(500, options.referenceMs - 1000)) : Math.round(r * 30);
    return { kind, delayMs, group: random() < 0.5 };
  });
}

function inputFiles(count: number): Record<string, string> {
  const files: Record<string, string> = {};
  for (let i = 0; i < count; i++) files[`soak/data/f${String(i).padStart(3, '0')}.txt`] = `file ${i}\n${'x\n'.repeat(i)}`;
  return files;
}

/** Uploads the inputs and the scorer, and deploys it as the default of endpoint `soak`. */
async function prepare(stack: LocalStack, client: BatchClient, options: Required<Pick<SoakOptions, 'files' | 'slowMs'>>): Promise<void> {
  await uploadFiles(stack.storageConnection, CONTAINER, '', {
    ...inputFiles(options.files),
    'soak/code/score.js': await readFile(join(ROOT, 'scripts', 'soak', 'slow-lines.js'), 'utf8'),
    'soak/model/model.txt': 'unused',
  });
  await client.put('models/soak-model/versions/1', { type: 'custom_model', path: ds('soak/model/') });
  await client.put('endpoints/soak', {});
  await client.put('endpoints/soak/deployments/lines', {
    model: 'azureml:soak-model:1',
    code_configuration: { code: ds('soak/code/'), scoring_script: 'score.js' },
    resources: { instance_count: 1 },
    settings: { mini_batch_size: 2, max_concurrency_per_instance: 2, environment_variables: { SLOW_MS: String(options.slowMs) } },
  });
  await client.put('endpoints/soak', { defaults: { deployment_name: 'lines' } });
}

function invoke(client: BatchClient): Promise<JobView> {
  return client.invoke('soak', { inputs: { text: { type: 'uri_folder', path: ds('soak/data/') } }, outputs: { out: { path: ds(OUTPUT) } } });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, Math.max(0, ms)));

/** Reads a job until it ends. A 404 is the job lost (its record never reached storage). */
async function waitForEnd(client: BatchClient, id: string, timeoutMs: number): Promise<JobView> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const job = await client.job(id);
      if (TERMINAL.includes(job.status)) return job;
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) throw new Error(`GET /api/jobs/${id} is 404: the job was lost`);
      throw err;
    }
    if (Date.now() > deadline) throw new Error(`job ${id} did not end within ${timeoutMs / 1000} s`);
    await sleep(200);
  }
}

/** Reads the job's status over and over while it runs, to know the phase at the kill. */
function watchPhase(client: BatchClient, id: string, first: string, intervalMs: number): { last: () => string; until: (statuses: string[]) => Promise<void>; stop: () => Promise<void> } {
  let last = first;
  let stopped = false;
  let waiter: { statuses: string[]; resolve: () => void } | undefined;
  const loop = (async () => {
    while (!stopped) {
      try {
        const job = await client.job(id);
        if (!stopped) last = job.status;
        if (waiter && waiter.statuses.includes(job.status)) waiter.resolve();
      } catch {
        // the host is being killed, or is busy: the next read tells
      }
      await sleep(intervalMs);
    }
  })();
  return {
    last: () => last,
    until: (statuses) => (statuses.includes(last) ? Promise.resolve() : new Promise<void>((resolve) => (waiter = { statuses, resolve }))),
    stop: async () => {
      stopped = true;
      waiter?.resolve();
      await loop;
    },
  };
}

interface Outputs {
  predictions: Buffer | undefined;
  summary: { status?: string; counts?: unknown } | undefined;
  log: string;
}

async function readOutputs(connection: string): Promise<Outputs> {
  const container = BlobServiceClient.fromConnectionString(connection).getContainerClient(CONTAINER);
  const read = async (name: string): Promise<Buffer | undefined> => {
    try {
      return await container.getBlobClient(`${OUTPUT}${name}`).downloadToBuffer();
    } catch {
      return undefined;
    }
  };
  const [predictions, summary, log] = await Promise.all([read('predictions.csv'), read('job.json'), read('logs/job.log')]);
  return {
    predictions,
    summary: summary ? (JSON.parse(summary.toString('utf8')) as Outputs['summary']) : undefined,
    log: log?.toString('utf8') ?? '',
  };
}

const repairsIn = (log: string): number => log.split('\n').filter((l) => l.includes(REPAIR_MARK)).length;

/** What differs from the reference; empty when the job came out the same. */
function compare(job: JobView, outputs: Outputs, reference: { job: JobView; outputs: Outputs }): string[] {
  const problems: string[] = [];
  if (job.status !== 'Completed') problems.push(`ended ${job.status}${job.error ? ` (${job.error.code}: ${job.error.message})` : ''}`);
  if (!outputs.predictions) problems.push('predictions.csv is missing');
  else if (!reference.outputs.predictions || !outputs.predictions.equals(reference.outputs.predictions)) {
    problems.push(`predictions.csv differs (${outputs.predictions.length} bytes, the reference ${reference.outputs.predictions?.length ?? 0})`);
  }
  if (!isDeepStrictEqual(job.counts, reference.job.counts)) problems.push(`counts ${JSON.stringify(job.counts)}, the reference ${JSON.stringify(reference.job.counts)}`);
  if (!outputs.summary) problems.push('job.json is missing');
  else if (!isDeepStrictEqual(outputs.summary.counts, reference.job.counts)) problems.push(`job.json counts ${JSON.stringify(outputs.summary.counts)}, the reference ${JSON.stringify(reference.job.counts)}`);
  const repairs = repairsIn(outputs.log);
  if (repairs > 0) problems.push(`${repairs} mini-batch(es) ran again while finalizing: storage had lost outputs it had acknowledged`);
  return problems;
}

/** Runs the soak; the report says which trials held. */
export async function runSoak(options: SoakOptions): Promise<SoakReport> {
  const log = options.log ?? ((line: string) => console.log(line));
  const shape = { files: options.files ?? 30, slowMs: options.slowMs ?? 400 };

  const reference = await runReference(shape);
  log(`seed ${options.seed}; reference: Completed in ${(reference.ms / 1000).toFixed(1)} s, counts ${JSON.stringify(reference.job.counts)}`);
  const plans = planTrials({ trials: options.trials, seed: options.seed, referenceMs: reference.ms });
  const trials: TrialResult[] = [];
  for (const [i, plan] of plans.entries()) {
    const result = await runTrial({ trial: i + 1, plan, reference, shape, keepFailed: options.keepFailed === true });
    trials.push(result);
    const who = plan.group ? "the host's process group" : 'the host';
    const kill = `kill of ${who} +${(result.killedAfterMs / 1000).toFixed(2)} s after the 202 (${plan.kind})`;
    log(`trial ${String(i + 1).padStart(2)}/${plans.length}: ${kill}, phase ${result.phase} -> ${result.outcome}`);
  }
  const held = trials.filter((t) => t.held).length;
  log(`${held} of ${trials.length} held`);
  return { seed: options.seed, reference: { seconds: reference.ms / 1000, counts: reference.job.counts }, trials, held };
}

interface Reference {
  job: JobView;
  outputs: Outputs;
  ms: number;
}

async function runReference(shape: { files: number; slowMs: number }): Promise<Reference> {
  const dataDir = mkdtempSync(join(tmpdir(), 'soak-reference-'));
  let stack: LocalStack | undefined;
  try {
    stack = await startLocalStack({ dataDir, env: ENV });
    const client = new BatchClient(stack.url, stack.masterKey);
    await prepare(stack, client, shape);
    const started = Date.now();
    const job = await waitForEnd(client, (await invoke(client)).id, 180_000);
    const ms = Date.now() - started;
    const outputs = await readOutputs(stack.storageConnection);
    const lines = outputs.predictions?.toString('utf8').trim().split('\n').length ?? 0;
    if (job.status !== 'Completed' || lines !== shape.files || repairsIn(outputs.log) > 0) {
      throw new Error(`the undisturbed reference job did not come out whole: ${job.status}, ${lines} prediction rows, ${repairsIn(outputs.log)} repairs`);
    }
    return { job, outputs, ms };
  } finally {
    await stack?.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

async function runTrial(init: { trial: number; plan: TrialPlan; reference: Reference; shape: { files: number; slowMs: number }; keepFailed: boolean }): Promise<TrialResult> {
  const { plan } = init;
  const dataDir = mkdtempSync(join(tmpdir(), `soak-trial-${init.trial}-`));
  let stack: LocalStack | undefined;
  let killedAfterMs = 0;
  let phase = 'not invoked';
  let held = false;
  let outcome: string;
  let repairs = 0;
  try {
    const port = await freePort();
    stack = await startLocalStack({ dataDir, port, env: ENV, detached: true });
    const client = new BatchClient(stack.url, stack.masterKey);
    await prepare(stack, client, init.shape);
    const job = await invoke(client);
    const accepted = performance.now();
    const watch = watchPhase(client, job.id, job.status, plan.kind === 'finalizing' ? 10 : 50);
    if (plan.kind === 'finalizing') {
      await watch.until(['Finalizing', ...TERMINAL]);
      await sleep(plan.delayMs);
    } else {
      await sleep(accepted + plan.delayMs - performance.now());
    }
    phase = watch.last();
    killedAfterMs = performance.now() - accepted;
    await stack.kill({ group: plan.group });
    await watch.stop();

    const restarted = performance.now();
    stack = await startLocalStack({ dataDir, port, env: ENV, detached: true });
    const again = new BatchClient(stack.url, stack.masterKey);
    const done = await waitForEnd(again, job.id, 180_000);
    const afterMs = performance.now() - restarted;
    const outputs = await readOutputs(stack.storageConnection);
    repairs = repairsIn(outputs.log);
    const problems = compare(done, outputs, init.reference);
    held = problems.length === 0;
    outcome = held ? `held: Completed ${(afterMs / 1000).toFixed(1)} s after the restart, same predictions and counts` : `NOT HELD: ${problems.join('; ')}`;
  } catch (err) {
    outcome = `NOT HELD: ${err instanceof Error ? err.message : String(err)}`;
  } finally {
    await stack?.stop().catch(() => undefined);
    // A killed host that never came back leaves its Azurite running; stop it before the folder goes.
    await stopStorage(dataDir).catch(() => undefined);
    if (held || !init.keepFailed) rmSync(dataDir, { recursive: true, force: true });
  }
  if (!held && init.keepFailed) outcome += ` (data folder kept: ${dataDir})`;
  return { trial: init.trial, plan, killedAfterMs, phase, held, outcome, repairs };
}
