/**
 * `npm run record:histories`: runs a few representative batch jobs on fnhost (with Azurite) and
 * writes the complete history of every orchestration instance of each job to
 * test/fixtures/histories/<scenario>/<role>.json, for the replay tests
 * (test/unit/orchestrations/replay-histories.test.ts). See test/fixtures/histories/README.md.
 *
 * Histories are read from the task hub's SQLite database, opened read-only after the host has
 * stopped: it holds every event exactly as the engine stored it (the durable HTTP API's
 * `showHistory` drops the scheduling events, OrchestratorStarted/Completed and sequence numbers
 * that replay needs).
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BlobServiceClient } from '@azure/storage-blob';
import Database from 'better-sqlite3';
import { EventType, type HistoryEvent, type RuntimeStatus } from '../infra/local/src/durable/history.js';
import { ApiError, BatchClient, type JobView } from './lib/batch-client.js';
import { HISTORY_FIXTURE_FORMAT, type RecordedInstance, formatRecording, roleOf } from './lib/history-fixtures.js';
import { type LocalStack, ROOT, startLocalStack } from './lib/local-stack.js';
import { COLUMNS, penguinRows, toCsv, uploadFiles } from './lib/sample-data.js';
import { chunkInstanceId, stepInstanceId } from '../shared/jobs/jobs-service.js';
import { MODEL_STEP } from '../shared/jobs/types.js';

const OUT = join(ROOT, 'test', 'fixtures', 'histories');
const CONTAINER = 'azureml-blobstore';
/** fnhost's default replay schema (V4), given explicitly so the fixtures say what ran. */
const SCHEMA_VERSION = 3;
/**
 * Small chunks, so a lane runs several chunk sub-orchestrations even in a job of a few
 * mini-batches, and a progress report after every mini-batch. Set here (the environment wins over
 * a local.settings.json) so every recording runs with the same settings.
 */
const ENV = {
  BATCH_CHUNK_SIZE: '2',
  // Folders of more than 10 files are listed page by page (the other scenarios have at most 8).
  BATCH_LIST_PAGE_SIZE: '10',
  BATCH_PROGRESS_INTERVAL_SECONDS: '0',
  BATCH_WORKSPACE_CONTAINER: CONTAINER,
  BATCH_API_AUTH_LEVEL: 'function',
  BATCH_TABLE_PREFIX: '',
};
const TERMINAL: RuntimeStatus[] = ['Completed', 'Failed', 'Terminated', 'Canceled'];

interface Context {
  stack: LocalStack;
  client: BatchClient;
}

interface Scenario {
  name: string;
  /** Uploads, registers and invokes; returns the job id. */
  start(ctx: Context): Promise<string>;
  /** Anything about the finished job or its recordings that makes it not what the scenario shows. */
  check(job: JobView, recordings: RecordedInstance[]): string | undefined;
}

const ds = (path: string): string => `azureml://datastores/workspaceblobstore/paths/${path}`;
const script = (name: string): string => readFileSync(join(ROOT, 'test', 'fixtures', 'scripts', name), 'utf8');

async function customDeployment(ctx: Context, endpoint: string, scriptName: string, settings: Record<string, unknown>): Promise<void> {
  const model = await ctx.client.request('GET', 'models/dummy/versions/1').catch((err: unknown) => {
    if (err instanceof ApiError && err.status === 404) return undefined;
    throw err;
  });
  if (!model) {
    await uploadFiles(ctx.stack.storageConnection, CONTAINER, 'models/dummy/', { 'model.txt': 'unused' });
    await ctx.client.put('models/dummy/versions/1', { type: 'custom_model', path: ds('models/dummy/') });
  }
  await uploadFiles(ctx.stack.storageConnection, CONTAINER, `code/${endpoint}/`, { 'score.js': script(scriptName) });
  await ctx.client.put(`endpoints/${endpoint}`, {});
  await ctx.client.put(`endpoints/${endpoint}/deployments/main`, {
    model: 'azureml:dummy:1',
    code_configuration: { code: ds(`code/${endpoint}/`), scoring_script: 'score.js' },
    settings,
  });
  await ctx.client.put(`endpoints/${endpoint}`, { defaults: { deployment_name: 'main' } });
}

/** The steps a job view lists (a pipeline job's; a model deployment's job has one). */
interface PipelineSteps {
  steps: { name: string; status: string; reused: boolean }[];
}

const roles = (recordings: RecordedInstance[]): string[] => recordings.map((r) => r.role).sort();
const hasCancelEvent = (r: RecordedInstance): boolean => r.history.some((e) => e.EventType === EventType.EventRaised && e.Name === 'cancel');

const SCENARIOS: Scenario[] = [
  {
    // The main path: an ONNX model over CSV files, two lanes of two chunks each, progress reports.
    name: 'onnx-two-lanes',
    async start(ctx) {
      await uploadFiles(ctx.stack.storageConnection, CONTAINER, 'models/penguins/1/', {
        'penguins.onnx': readFileSync(join(ROOT, 'scripts', 'demo', 'model', 'penguins.onnx')),
      });
      const rows = penguinRows(8 * 5, 11);
      const files: Record<string, string> = {};
      for (let f = 0; f < 8; f++) files[`p${f}.csv`] = toCsv(rows.slice(f * 5, (f + 1) * 5));
      await uploadFiles(ctx.stack.storageConnection, CONTAINER, 'data/penguins/', files);
      await ctx.client.put('models/penguins/versions/1', { type: 'onnx', path: ds('models/penguins/1/penguins.onnx') });
      await ctx.client.put('endpoints/penguins', {});
      await ctx.client.put('endpoints/penguins/deployments/classifier', {
        model: 'azureml:penguins:1',
        resources: { instance_count: 1 },
        settings: { max_concurrency_per_instance: 2, mini_batch_size: 1 },
      });
      await ctx.client.put('endpoints/penguins', { defaults: { deployment_name: 'classifier' } });
      return (await ctx.client.invoke('penguins', { inputs: { penguins: { type: 'uri_folder', path: ds('data/penguins/') } } })).id;
    },
    check(job, recordings) {
      if (job.status !== 'Completed' || job.counts.mini_batches.succeeded !== 8) return `job ${job.status} with ${JSON.stringify(job.counts)}`;
      const want = ['batchscoring.chunk-0', 'batchscoring.chunk-1', 'batchscoring.chunk-2', 'batchscoring.chunk-3', 'batchscoring.lane-0', 'batchscoring.lane-1', 'job', 'step-batchscoring'];
      return JSON.stringify(roles(recordings)) === JSON.stringify(want) ? undefined : `instances ${roles(recordings).join(', ')}`;
    },
  },
  {
    // A scoring script that throws on one file (retried once, then failed), skips others (failed
    // items), and an error threshold the third failure exceeds: the lane stops, the job fails.
    name: 'script-retry-threshold',
    async start(ctx) {
      const names = ['01-ok', '02-boom', '03-bad', '04-ok', '05-bad', '06-ok', '07-ok', '08-ok'];
      const files = Object.fromEntries(names.map((n, i) => [`${n}.txt`, `line\n`.repeat(i + 1)]));
      await uploadFiles(ctx.stack.storageConnection, CONTAINER, 'data/texts/', files);
      await customDeployment(ctx, 'lines', 'count-lines.js', {
        mini_batch_size: 1,
        max_concurrency_per_instance: 1,
        error_threshold: 2,
        retry_settings: { max_retries: 1, timeout: 30 },
      });
      return (await ctx.client.invoke('lines', { inputs: { texts: { type: 'uri_folder', path: ds('data/texts/') } } })).id;
    },
    check(job, recordings) {
      if (job.status !== 'Failed' || job.error?.code !== 'error_threshold_exceeded') return `job ${job.status} ${JSON.stringify(job.error)}`;
      if (job.counts.mini_batches.retried !== 1) return `retried ${job.counts.mini_batches.retried}`;
      const want = ['batchscoring.chunk-0', 'batchscoring.chunk-1', 'batchscoring.chunk-2', 'batchscoring.lane-0', 'job', 'step-batchscoring'];
      return JSON.stringify(roles(recordings)) === JSON.stringify(want) ? undefined : `instances ${roles(recordings).join(', ')}`;
    },
  },
  {
    // Canceled while both lanes score their first mini-batch: the running chunks get the cancel
    // event, let the mini-batch in flight finish and stop; no further chunk starts; the job ends
    // Canceled.
    name: 'canceled',
    async start(ctx) {
      const files = Object.fromEntries(Array.from({ length: 8 }, (_, i) => [`s${i}.txt`, `slow ${i}\n`]));
      await uploadFiles(ctx.stack.storageConnection, CONTAINER, 'data/slow/', files);
      await customDeployment(ctx, 'slow', 'slow.js', { mini_batch_size: 1, max_concurrency_per_instance: 2, environment_variables: { SLOW_MS: '1000' } });
      const job = await ctx.client.invoke('slow', { inputs: { texts: { type: 'uri_folder', path: ds('data/slow/') } } });
      // Both first chunks have scheduled their first mini-batch, which takes a second.
      for (const deadline = Date.now() + 60_000; ; ) {
        const statuses = await Promise.all([0, 1].map((c) => orchestrationStatus(ctx.stack, chunkInstanceId(job.id, c, MODEL_STEP))));
        if (statuses.every((s) => s === 'Running')) break;
        if (Date.now() > deadline) throw new Error(`the chunks of job ${job.id} did not start: ${statuses.join(', ')}`);
        await new Promise((r) => setTimeout(r, 25));
      }
      await ctx.client.request('POST', `jobs/${job.id}/cancel`);
      return job.id;
    },
    check(job, recordings) {
      if (job.status !== 'Canceled') return `job ${job.status}`;
      const want = ['batchscoring.chunk-0', 'batchscoring.chunk-1', 'batchscoring.lane-0', 'batchscoring.lane-1', 'job', 'step-batchscoring'];
      if (JSON.stringify(roles(recordings)) !== JSON.stringify(want)) return `instances ${roles(recordings).join(', ')}`;
      const chunks = recordings.filter((r) => r.role.includes('chunk-'));
      return chunks.every(hasCancelEvent) ? undefined : 'a running chunk did not receive the cancel event';
    },
  },
  {
    // A folder listed in more than one page (BATCH_LIST_PAGE_SIZE 10, 23 files): prepare plans the
    // first page, the planner lists the rest while two lanes score, and each lane asks for more of
    // the plan (awaitPlan) when it has run what it knew of.
    name: 'streamed',
    async start(ctx) {
      const files = Object.fromEntries(Array.from({ length: 23 }, (_, i) => [`t${String(i).padStart(2, '0')}.txt`, `line\n`.repeat(i + 1)]));
      await uploadFiles(ctx.stack.storageConnection, CONTAINER, 'data/streamed/', files);
      await customDeployment(ctx, 'streamed', 'slow-lines.js', { mini_batch_size: 2, max_concurrency_per_instance: 2, environment_variables: { SLOW_MS: '100' } });
      return (await ctx.client.invoke('streamed', { inputs: { texts: { type: 'uri_folder', path: ds('data/streamed/') } } })).id;
    },
    check(job, recordings) {
      if (job.status !== 'Completed') return `job ${job.status}`;
      if (!recordings.some((r) => r.role === 'batchscoring.planner')) return 'no planner';
      const asked = recordings.filter((r) => r.role.includes('lane-') && r.history.some((e) => e.EventType === EventType.TaskScheduled && e.Name === 'awaitPlan'));
      return asked.length === 2 ? undefined : 'a lane never asked for more of the plan';
    },
  },
  {
    // Rows a mini-batch staged are lost before the job finalizes (the predictions blob's staged
    // blocks discarded, as a storage crash would lose them): finalizing finds their records without
    // parts, runs those mini-batches again, and then commits a complete file.
    name: 'repaired',
    async start(ctx) {
      const files = Object.fromEntries(Array.from({ length: 4 }, (_, i) => [`r${i}.txt`, `row ${i}\n`]));
      await uploadFiles(ctx.stack.storageConnection, CONTAINER, 'data/repair/', files);
      await customDeployment(ctx, 'repair', 'slow.js', { mini_batch_size: 1, max_concurrency_per_instance: 1, environment_variables: { SLOW_MS: '700' } });
      const job = await ctx.client.invoke('repair', { inputs: { texts: { type: 'uri_folder', path: ds('data/repair/') } } });
      const blob = BlobServiceClient.fromConnectionString(ctx.stack.storageConnection).getContainerClient(CONTAINER).getBlockBlobClient(`azureml/${job.id}/score/predictions.csv`);
      for (const deadline = Date.now() + 60_000; ; ) {
        const list = await blob.getBlockList('uncommitted').catch(() => undefined);
        if ((list?.uncommittedBlocks?.length ?? 0) >= 2) break;
        if (Date.now() > deadline) throw new Error(`job ${job.id} staged no rows`);
        await new Promise((r) => setTimeout(r, 25));
      }
      // Committing an empty list discards every staged block.
      await blob.commitBlockList([]);
      return job.id;
    },
    check(job, recordings) {
      if (job.status !== 'Completed' || job.counts.items.succeeded !== 4) return `job ${job.status} with ${JSON.stringify(job.counts)}`;
      const finalizes = recordings.find((r) => r.role === 'step-batchscoring')?.history.filter((e) => e.EventType === EventType.TaskScheduled && e.Name === 'finalizeJob').length ?? 0;
      return finalizes >= 2 ? undefined : `finalized ${finalizes} time(s): nothing was repaired`;
    },
  },
  {
    // A pipeline deployment of three steps, as in the demo: a command step (prepare: drops the
    // rows with missing measurements), a parallel step (the ONNX model over prepare's output, one
    // file per mini-batch, two lanes) and a command step (summarize the predictions). Each step
    // starts once the step before it has reported back.
    name: 'pipeline-three-steps',
    async start(ctx) {
      const demo = join(ROOT, 'scripts', 'demo');
      await uploadFiles(ctx.stack.storageConnection, CONTAINER, 'models/pipe-penguins/1/', { 'penguins.onnx': readFileSync(join(demo, 'model', 'penguins.onnx')) });
      await uploadFiles(ctx.stack.storageConnection, CONTAINER, 'code/pipeline/prepare/', { 'prepare.js': readFileSync(join(demo, 'pipeline', 'prepare', 'prepare.js')) });
      await uploadFiles(ctx.stack.storageConnection, CONTAINER, 'code/pipeline/summarize/', { 'summarize.js': readFileSync(join(demo, 'pipeline', 'summarize', 'summarize.js')) });
      const rows = penguinRows(4 * 3, 5);
      const missing = COLUMNS.map((c, i) => (i === 0 ? 'Dream' : 'NA')).join(',');
      const files: Record<string, string> = {};
      for (let f = 0; f < 4; f++) files[`raw${f}.csv`] = toCsv(rows.slice(f * 3, (f + 1) * 3)) + (f === 0 ? `${missing}\n` : '');
      await uploadFiles(ctx.stack.storageConnection, CONTAINER, 'data/pipeline-raw/', files);
      await ctx.client.put('models/pipe-penguins/versions/1', { type: 'onnx', path: ds('models/pipe-penguins/1/penguins.onnx') });
      await ctx.client.put('components/prepare/versions/1', {
        type: 'command',
        code: ds('code/pipeline/prepare/'),
        entry_script: 'prepare.js',
        inputs: { raw_data: { type: 'uri_folder' }, drop_missing: { type: 'boolean', default: true } },
        outputs: { clean_data: { type: 'uri_folder' } },
      });
      await ctx.client.put('components/score/versions/1', {
        type: 'parallel',
        inputs: { data: { type: 'uri_folder' } },
        outputs: { predictions: { type: 'uri_folder' } },
        input_data: '${{inputs.data}}',
        model: 'azureml:pipe-penguins:1',
        mini_batch_size: 1,
        max_concurrency_per_instance: 2,
        task: { type: 'run_function', append_row_to: '${{outputs.predictions}}' },
      });
      await ctx.client.put('components/summarize/versions/1', {
        type: 'command',
        code: ds('code/pipeline/summarize/'),
        entry_script: 'summarize.js',
        inputs: { predictions: { type: 'uri_folder' }, class_column: { type: 'string', default: 'prediction' } },
        outputs: { summary: { type: 'uri_folder' } },
      });
      await ctx.client.put('components/three_steps/versions/1', {
        type: 'pipeline',
        inputs: { raw_data: { type: 'uri_folder' } },
        outputs: { summary: { type: 'uri_folder' }, predictions: { type: 'uri_folder' } },
        jobs: {
          prepare: { component: 'azureml:prepare:1', inputs: { raw_data: '${{parent.inputs.raw_data}}', drop_missing: true } },
          score: { component: 'azureml:score:1', inputs: { data: '${{parent.jobs.prepare.outputs.clean_data}}' }, outputs: { predictions: '${{parent.outputs.predictions}}' } },
          summarize: { component: 'azureml:summarize:1', inputs: { predictions: '${{parent.jobs.score.outputs.predictions}}' }, outputs: { summary: '${{parent.outputs.summary}}' } },
        },
      });
      await ctx.client.put('endpoints/pipeline', {});
      // force_rerun: a scenario run again never reuses an earlier run's steps.
      await ctx.client.put('endpoints/pipeline/deployments/steps', { type: 'pipeline', component: 'azureml:three_steps:1', settings: { force_rerun: true } });
      await ctx.client.put('endpoints/pipeline', { defaults: { deployment_name: 'steps' } });
      return (await ctx.client.invoke('pipeline', { inputs: { raw_data: { type: 'uri_folder', path: ds('data/pipeline-raw/') } } })).id;
    },
    check(job, recordings) {
      const { steps } = job as unknown as PipelineSteps;
      if (job.status !== 'Completed' || steps.some((s) => s.status !== 'Completed' || s.reused)) return `job ${job.status}, steps ${JSON.stringify(steps.map((s) => [s.name, s.status, s.reused]))}`;
      if (job.counts.mini_batches.succeeded !== 4 || job.counts.items.succeeded !== 4) return `counts ${JSON.stringify(job.counts)}`;
      const want = ['job', 'score.chunk-0', 'score.chunk-1', 'score.lane-0', 'score.lane-1', 'step-prepare', 'step-score', 'step-summarize'];
      return JSON.stringify(roles(recordings)) === JSON.stringify(want) ? undefined : `instances ${roles(recordings).join(', ')}`;
    },
  },
];

async function orchestrationStatus(stack: LocalStack, instanceId: string): Promise<RuntimeStatus | undefined> {
  const res = await fetch(`${stack.url}/runtime/webhooks/durabletask/instances/${encodeURIComponent(instanceId)}`, {
    headers: { 'x-functions-key': stack.masterKey },
  });
  if (res.status === 404) return undefined;
  return ((await res.json()) as { runtimeStatus?: RuntimeStatus }).runtimeStatus;
}

/** Waits until the job's own orchestration has ended (the job's status is set a step before). */
async function waitForOrchestration(stack: LocalStack, instanceId: string): Promise<void> {
  for (const deadline = Date.now() + 60_000; ; ) {
    const status = await orchestrationStatus(stack, instanceId);
    if (status && TERMINAL.includes(status)) return;
    if (Date.now() > deadline) throw new Error(`orchestration ${instanceId} did not end: ${String(status)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

interface InstanceRow {
  instance_id: string;
  name: string;
  runtime_status: RuntimeStatus;
  input: string | null;
  output: string | null;
}

const parse = (text: string | null): unknown => (text === null ? null : JSON.parse(text));

/** Every orchestration instance of a job, with its complete history, from the stopped host's task hub. */
function readJob(db: Database.Database, scenario: string, jobId: string): RecordedInstance[] {
  const rows = db
    .prepare<[string, string, string], InstanceRow>(
      `SELECT instance_id, name, runtime_status, input, output FROM instances
       WHERE is_entity = 0 AND (instance_id = ? OR (instance_id >= ? AND instance_id < ?)) ORDER BY instance_id`,
    )
    .all(jobId, `${jobId}:`, `${jobId};`);
  const history = db.prepare<[string], { event: string }>('SELECT event FROM history WHERE instance_id = ? ORDER BY seq');
  return rows.map((row) => {
    const role = roleOf(jobId, row.instance_id);
    if (!role) throw new Error(`${row.instance_id} is not an instance of job ${jobId}`);
    if (!TERMINAL.includes(row.runtime_status)) throw new Error(`${row.instance_id} is still ${row.runtime_status}`);
    return {
      format: HISTORY_FIXTURE_FORMAT,
      scenario,
      role,
      instanceId: row.instance_id,
      name: row.name,
      schemaVersion: SCHEMA_VERSION,
      runtimeStatus: row.runtime_status,
      input: parse(row.input),
      output: parse(row.output),
      history: history.all(row.instance_id).map((r) => JSON.parse(r.event) as HistoryEvent),
    };
  });
}

async function main(): Promise<void> {
  const started = Date.now();
  const hubName = (JSON.parse(readFileSync(join(ROOT, 'host.json'), 'utf8')) as { extensions: { durableTask: { hubName: string } } }).extensions.durableTask.hubName;
  const dataDir = mkdtempSync(join(tmpdir(), 'record-histories-'));
  try {
    const jobs = new Map<Scenario, JobView>();
    // A scenario whose timing went wrong (a cancel that came too late) is run again on a new job.
    // `--only a,b` records just those scenarios (the others' recordings stay as they are).
    const only = process.argv.indexOf('--only') >= 0 ? (process.argv[process.argv.indexOf('--only') + 1] ?? '').split(',') : undefined;
    let pending = SCENARIOS.filter((s) => !only || only.includes(s.name));
    if (pending.length === 0) throw new Error(`no scenario named ${only?.join(', ')}`);
    for (let round = 1; pending.length > 0; round++) {
      if (round > 3) throw new Error(`scenarios did not come out as intended: ${pending.map((s) => s.name).join(', ')}`);
      const stack = await startLocalStack({ dataDir: join(dataDir, `round-${round}`), env: ENV, args: ['--durable-schema', String(SCHEMA_VERSION)] });
      const ctx: Context = { stack, client: new BatchClient(stack.url, stack.masterKey) };
      try {
        for (const scenario of pending) {
          const jobId = await scenario.start(ctx);
          const job = await ctx.client.waitForJob(jobId, () => undefined, 100, 120_000);
          await waitForOrchestration(stack, jobId);
          // Each step's orchestration is an instance of its own, which may still be recording its
          // end after telling the job's.
          const steps = ((await ctx.client.job(jobId)) as unknown as Partial<PipelineSteps>).steps?.map((s) => s.name) ?? [MODEL_STEP];
          for (const step of steps) await waitForOrchestration(stack, stepInstanceId(jobId, step));
          jobs.set(scenario, job);
          console.log(`${scenario.name}: job ${job.id} ${job.status} (${Date.now() - started} ms)`);
        }
      } finally {
        await stack.stop();
      }
      const db = new Database(join(dataDir, `round-${round}`, 'durable', `${hubName}.sqlite`), { readonly: true, fileMustExist: true });
      const failed: Scenario[] = [];
      try {
        for (const scenario of pending) {
          const job = jobs.get(scenario) as JobView;
          const recordings = readJob(db, scenario.name, job.id);
          const problem = scenario.check(job, recordings);
          if (problem) {
            console.log(`${scenario.name}: not as intended (${problem}); running it again`);
            failed.push(scenario);
            continue;
          }
          const dir = join(OUT, scenario.name);
          rmSync(dir, { recursive: true, force: true });
          mkdirSync(dir, { recursive: true });
          let bytes = 0;
          for (const recording of recordings) {
            const text = formatRecording(recording);
            bytes += text.length;
            writeFileSync(join(dir, `${recording.role}.json`), text);
          }
          console.log(`${scenario.name}: wrote ${recordings.length} histories (${(bytes / 1024).toFixed(1)} KB) to ${dir}`);
        }
      } finally {
        db.close();
      }
      pending = failed;
    }
    console.log(`Recorded in ${((Date.now() - started) / 1000).toFixed(1)} s.`);
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? (err.stack ?? err.message) : err);
  process.exit(1);
});
