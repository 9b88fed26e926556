/**
 * Finalizing a job against real storage (Azurite): the outputs are checked against the journal's
 * accepted records before anything is committed, a gap is never committed, the final counts come
 * from the records, and while it finalizes the job shows the counts the lanes reached.
 * Mini-batches are simulated by staging what their activities would (parts and journal lines);
 * the scoring runtime is not needed here and is a stand-in that does nothing.
 */
import { BlobServiceClient, type ContainerClient } from '@azure/storage-blob';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AppConfig, loadConfig } from '../../shared/config.js';
import { JobRunner, engineScope } from '../../shared/jobs/job-runner.js';
import { JobStore } from '../../shared/jobs/job-store.js';
import { JobsService, outputFolderOf } from '../../shared/jobs/jobs-service.js';
import type { JournalEntry } from '../../shared/jobs/journal.js';
import { type JobCounts, MODEL_STEP, type ModelJobSpec, emptyCounts, isPipelineSpec } from '../../shared/jobs/types.js';
import { JobWorkArea, SEGMENT_SIZE } from '../../shared/jobs/work-area.js';
import { folderContent } from '../../shared/jobs/local-files.js';
import { BlockIds, type StagedPart, newNonce } from '../../shared/outputs/output-writer.js';
import { Registry } from '../../shared/registry/registry.js';
import { deploymentBody, endpointBody, modelBody } from '../../shared/schemas/resources.js';
import type { ScoringRuntime } from '../../shared/scoring/types.js';
import { startAzurite } from '../support/azurite.js';
import { uniqueName } from '../support/ports.js';

let storage: { connectionString: string; stop: () => Promise<void> };
let config: AppConfig;
let registry: Registry;
let store: JobStore;
let jobs: JobsService;
let runner: JobRunner;
let area: JobWorkArea;
let ws: ContainerClient;

const idle: ScoringRuntime = {
  score: () => Promise.reject(new Error('not used')),
  warm: () => Promise.resolve(),
  pools: () => 0,
  release: () => Promise.resolve(),
  close: () => Promise.resolve(),
};
const ds = (path: string): string => `azureml://datastores/workspaceblobstore/paths/${path}`;

beforeAll(async () => {
  storage = await startAzurite();
  config = loadConfig({ AzureWebJobsStorage: storage.connectionString, BATCH_TABLE_PREFIX: uniqueName('t').replace(/[^a-z0-9]/g, '') });
  registry = new Registry({ config });
  store = new JobStore({ config });
  area = new JobWorkArea({ config });
  jobs = new JobsService({ config, registry, store });
  runner = new JobRunner({ config, registry, store, workArea: area, runtime: idle });
  ws = BlobServiceClient.fromConnectionString(storage.connectionString).getContainerClient(config.workspaceContainer);
  await ws.createIfNotExists();
  await ws.getBlockBlobClient('code/score.js').upload('export function run() { return []; }', 10);
  await ws.getBlockBlobClient('models/m/model.txt').upload('m', 1);
  await registry.putEndpoint('fin', endpointBody.parse({}));
  await registry.createModel('m', '1', modelBody.parse({ type: 'custom_model', path: ds('models/m/') }));
  await registry.putDeployment('fin', 'dep', deploymentBody.parse({ model: 'azureml:m:1', code_configuration: { code: ds('code/'), scoring_script: 'score.js' }, settings: { mini_batch_size: 1 } }));
  await registry.putEndpoint('fin', endpointBody.parse({ defaults: { deployment_name: 'dep' } }));
});

afterAll(async () => {
  await storage?.stop();
});

/** A prepared job over `n` one-line files: one mini-batch per file, one lane. */
async function preparedJob(n: number): Promise<{ id: string; chunkSize: number }> {
  const folder = `data/${uniqueName('in')}/`;
  for (let i = 0; i < n; i++) await ws.getBlockBlobClient(`${folder}f${i}.txt`).upload(`f${i}\n`, 3);
  const { job } = await jobs.invoke({ endpoint: 'fin', deploymentHeader: undefined, body: { inputs: { x: { path: ds(folder) } } }, idempotencyKey: undefined, invokedBy: { name: 't', via: 'anonymous' }, start: () => Promise.resolve() });
  const plan = await runner.prepare(refOf(job.spec.id));
  expect(plan).toMatchObject({ status: 'ready', miniBatches: n, lanes: 1 });
  return { id: job.spec.id, chunkSize: plan.chunkSize };
}

/** A model deployment's job runs as its one step. */
function refOf(jobId: string): { jobId: string; step: string } {
  return { jobId, step: MODEL_STEP };
}

function scopeOf(jobId: string): string {
  return engineScope(refOf(jobId));
}

function modelSpec(spec: { kind?: string }): ModelJobSpec {
  if (isPipelineSpec(spec as ModelJobSpec)) throw new Error('not a model job');
  return spec as ModelJobSpec;
}

/**
 * What mini-batch `i`'s activity stages when it completes: its part of the predictions (on its
 * segment's part blob; on the file itself for a job prepared before segments), and its routine entry.
 */
async function completed(jobId: string, i: number, rows: string, options: { legacy?: boolean } = {}): Promise<{ entry: JournalEntry; part: StagedPart }> {
  const job = await store.get(jobId);
  const folder = options.legacy ? outputFolderOf(registry, modelSpec(job!.spec).output) : await area.parts(scopeOf(jobId));
  const name = options.legacy ? 'predictions.csv' : JobWorkArea.partName(Math.floor(i / SEGMENT_SIZE), 'predictions');
  const n = newNonce();
  const part = (await folder.stage(name, new BlockIds(scopeOf(jobId)).part('p', i, 1, n), rows))!;
  const entry: JournalEntry = { i, a: 1, n, status: 'completed', items: 1, succeeded: 1, failed: 0, part, report: `${i},1,1,1,0,0.001,completed,\n`, errors: '', log: `log ${i}\n` };
  return { entry, part };
}

function countsOf(succeeded: number): JobCounts {
  const counts = emptyCounts();
  counts.mini_batches.succeeded = succeeded;
  counts.items.succeeded = succeeded;
  return counts;
}

describe('finalizing a job (Azurite)', () => {
  it('commits exactly the accepted parts in order, with counts from the records', async () => {
    const { id, chunkSize } = await preparedJob(3);
    const staged = await Promise.all([2, 0, 1].map((i) => completed(id, i, `row ${i}\n`)));
    await area.stageGroup(scopeOf(id), staged.map((s) => s.entry), SEGMENT_SIZE);
    // The orchestration's own counts are off here on purpose: the records decide.
    const result = await runner.finalize({ ...refOf(id), outcome: 'Completed', counts: countsOf(99), layout: { lanes: 1, chunkSize, miniBatches: 3 }, ran: [{ done: 1, partial: 0 }], mayRepair: true });
    expect(result).toEqual({ status: 'Completed' });
    const job = await jobs.get(id);
    expect(job.state.counts).toEqual({ mini_batches: { total: 3, succeeded: 3, failed: 0, retried: 0 }, items: { total: 3, succeeded: 3, failed: 0 } });
    const out = modelSpec(job.spec).output.location.path;
    expect((await ws.getBlobClient(`${out}predictions.csv`).downloadToBuffer()).toString()).toBe('row 0\nrow 1\nrow 2\n');
    expect((await ws.getBlobClient(`${out}logs/job.log`).downloadToBuffer()).toString()).toMatch(/log 0\nlog 1\nlog 2\n.*Completed/s);
  });

  it('hands back the mini-batches whose record or part is missing, showing the lanes\' counts while it finalizes; after the repairs it fails rather than commit a gap', async () => {
    const { id, chunkSize } = await preparedJob(4);
    const zero = await completed(id, 0, 'row 0\n');
    const two = await completed(id, 2, 'row 2\n');
    const three = await completed(id, 3, 'row 3\n');
    // 1 ran but its record was lost; 2's record names a part of another length; 3's part is gone.
    const wrong = { ...two.entry, part: { ...two.part, bytes: two.part.bytes + 1 } };
    const gone = { ...three.entry, part: { id: new BlockIds(scopeOf(id)).part('p', 3, 1, newNonce()), bytes: three.part.bytes } };
    await area.stageGroup(scopeOf(id), [zero.entry, wrong, gone], SEGMENT_SIZE);
    const input = { ...refOf(id), outcome: 'Completed' as const, counts: countsOf(4), layout: { lanes: 1, chunkSize, miniBatches: 4 }, ran: [{ done: 1, partial: 0 }] };
    expect(await runner.finalize({ ...input, mayRepair: true })).toEqual({
      status: 'repair',
      repair: [
        { index: 1, attempt: 1 },
        { index: 2, attempt: 2 },
        { index: 3, attempt: 2 },
      ],
    });
    const finalizing = await jobs.get(id);
    expect(finalizing.state.status).toBe('Finalizing');
    expect(finalizing.state.counts).toEqual({ mini_batches: { total: 4, succeeded: 4, failed: 0, retried: 0 }, items: { total: 4, succeeded: 4, failed: 0 } });
    const out = modelSpec(finalizing.spec).output.location.path;
    expect(await ws.getBlobClient(`${out}predictions.csv`).exists()).toBe(false);

    const result = await runner.finalize({ ...input, mayRepair: false });
    expect(result).toEqual({ status: 'Failed' });
    const failed = await jobs.get(id);
    // The step has ended Failed; the job shows Finalizing until its own record ends (finalizePipeline).
    expect(failed.steps?.[MODEL_STEP]).toMatchObject({ status: 'Failed', error: { code: 'output_incomplete', details: { mini_batches: [1, 2, 3] } } });
    expect(failed.state.status).toBe('Finalizing');
    // No predictions file that looks complete; the reports say what is there.
    expect(await ws.getBlobClient(`${out}predictions.csv`).exists()).toBe(false);
    expect((await ws.getBlobClient(`${out}processed_mini_batches.csv`).downloadToBuffer()).toString().trim().split('\n')).toHaveLength(1 + 3);
  });

  it('accepts a re-run\'s record once the orchestration acknowledges it', async () => {
    const { id, chunkSize } = await preparedJob(2);
    const zero = await completed(id, 0, 'row 0\n');
    await area.stageGroup(scopeOf(id), [zero.entry], SEGMENT_SIZE);
    const input = { ...refOf(id), outcome: 'Completed' as const, counts: countsOf(2), layout: { lanes: 1, chunkSize, miniBatches: 2 }, ran: [{ done: 1, partial: 0 }], mayRepair: true };
    expect(await runner.finalize(input)).toEqual({ status: 'repair', repair: [{ index: 1, attempt: 1 }] });
    // The re-run stages its entry itself; until it is acknowledged it does not count.
    const one = await completed(id, 1, 'row 1\n');
    await area.stageEntry(scopeOf(id), one.entry, SEGMENT_SIZE);
    expect(await runner.finalize(input)).toEqual({ status: 'repair', repair: [{ index: 1, attempt: 1 }] });
    await area.stageGroup(scopeOf(id), [{ ack: { i: 1, a: 1, n: one.entry.n, final: true } }], SEGMENT_SIZE);
    expect(await runner.finalize(input)).toEqual({ status: 'Completed' });
    const job = await jobs.get(id);
    expect((await ws.getBlobClient(`${modelSpec(job.spec).output.location.path}predictions.csv`).downloadToBuffer()).toString()).toBe('row 0\nrow 1\n');
  });

  it('composes a job of several segments into one file of every output, in mini-batch order, the same when finalized again', async () => {
    const n = 2 * SEGMENT_SIZE + 3;
    const { id, chunkSize } = await preparedJob(n);
    const order = Array.from({ length: n }, (_, i) => n - 1 - i);
    const staged = [];
    for (let at = 0; at < order.length; at += 32) staged.push(...(await Promise.all(order.slice(at, at + 32).map((i) => completed(id, i, `row ${i}\n`)))));
    // One mini-batch failed (its entry staged by its activity, acknowledged): its errors and log are in order too.
    const failedIndex = SEGMENT_SIZE + 1;
    const failed: JournalEntry = { i: failedIndex, a: 1, n: 'f1', status: 'failed', items: 1, succeeded: 0, failed: 1, report: `${failedIndex},1,1,0,1,0.001,failed,boom\n`, errors: `{"mini_batch":${failedIndex},"reason":"boom https://a.blob.core.windows.net/c/x?sig=secret"}\n`, log: `log ${failedIndex} failed\n` };
    await area.stageEntry(scopeOf(id), failed, SEGMENT_SIZE);
    await area.stageGroup(scopeOf(id), [...staged.filter((s) => s.entry.i !== failedIndex).map((s) => s.entry), { ack: { i: failedIndex, a: 1, n: 'f1', final: true } }], SEGMENT_SIZE);
    const input = { ...refOf(id), outcome: 'Completed' as const, counts: countsOf(n), layout: { lanes: 1, chunkSize, miniBatches: n }, ran: [{ done: Math.ceil(n / chunkSize), partial: 0 }], mayRepair: true };
    // The first finalize "crashes" before it clears its segment parts (its outputs written, its record not yet ended).
    const keeping = new JobRunner({ config, registry, store, workArea: new (class extends JobWorkArea {
      override clearParts(): Promise<void> {
        return Promise.resolve();
      }
    })({ config }), runtime: idle });
    expect(await keeping.finalize(input)).toEqual({ status: 'Completed' });
    const job = await jobs.get(id);
    const out = modelSpec(job.spec).output.location.path;
    const read = async (file: string): Promise<string> => (await ws.getBlobClient(`${out}${file}`).downloadToBuffer()).toString();
    const rows = Array.from({ length: n }, (_, i) => (i === failedIndex ? '' : `row ${i}\n`)).join('');
    const first = { predictions: await read('predictions.csv'), report: await read('processed_mini_batches.csv'), errors: await read('errors.jsonl'), log: await read('logs/job.log') };
    expect(first.predictions).toBe(rows);
    const reportLines = first.report.trim().split('\n');
    expect(reportLines).toHaveLength(n + 1);
    expect(reportLines.slice(1).map((l) => Number(l.split(',')[0]))).toEqual(Array.from({ length: n }, (_, i) => i));
    expect(first.errors).toBe(`{"mini_batch":${failedIndex},"reason":"boom https://a.blob.core.windows.net/c/x?<redacted>"}\n`);
    const logLines = first.log.trim().split('\n');
    expect(logLines[0]).toMatch(/INFO job .* item\(s\) in \d+ mini-batch/);
    expect(logLines.slice(1, -1)).toEqual(Array.from({ length: n }, (_, i) => (i === failedIndex ? `log ${i} failed` : `log ${i}`)));
    expect(job.steps?.[MODEL_STEP]?.counts).toEqual({ mini_batches: { total: n, succeeded: n - 1, failed: 1, retried: 0 }, items: { total: n, succeeded: n - 1, failed: 1 } });
    // The file is composed of its segments' parts: 3 blocks, not one per mini-batch.
    const blocks = await ws.getBlockBlobClient(`${out}predictions.csv`).getBlockList('committed');
    expect(blocks.committedBlocks).toHaveLength(3);
    // The finalize that runs again (its activity retried after the crash) writes the same bytes;
    // only the log's last line (the time it ended) differs.
    await store.updateStep(id, MODEL_STEP, (s) => ({ ...s, status: 'Finalizing' }));
    expect(await runner.finalize(input)).toEqual({ status: 'Completed' });
    const again = { predictions: await read('predictions.csv'), report: await read('processed_mini_batches.csv'), errors: await read('errors.jsonl'), log: await read('logs/job.log') };
    const butLast = (log: string): string => log.trim().split('\n').slice(0, -1).join('\n');
    expect({ ...again, log: butLast(again.log) }).toEqual({ ...first, log: butLast(first.log) });
  });

  it('finalizes a job prepared before segments as it did: parts staged on the file, one journal', async () => {
    const { id, chunkSize } = await preparedJob(3);
    await store.updateStep(id, MODEL_STEP, (s) => ({ ...s, segment_size: undefined }));
    const staged = await Promise.all([2, 0, 1].map((i) => completed(id, i, `row ${i}\n`, { legacy: true })));
    await area.stageGroup(scopeOf(id), staged.map((s) => s.entry), undefined);
    // Its preamble, as prepare staged it then: in the one journal.
    await area.stageEntry(scopeOf(id), { i: -1, a: 0, n: '', status: 'completed', items: 0, succeeded: 0, failed: 0, report: '', errors: '', log: 'old preamble\n' }, undefined);
    const result = await runner.finalize({ ...refOf(id), outcome: 'Completed', counts: countsOf(3), layout: { lanes: 1, chunkSize, miniBatches: 3 }, ran: [{ done: 1, partial: 0 }], mayRepair: true });
    expect(result).toEqual({ status: 'Completed' });
    const job = await jobs.get(id);
    const out = modelSpec(job.spec).output.location.path;
    expect((await ws.getBlobClient(`${out}predictions.csv`).downloadToBuffer()).toString()).toBe('row 0\nrow 1\nrow 2\n');
    expect((await ws.getBlockBlobClient(`${out}predictions.csv`).getBlockList('committed')).committedBlocks?.map((b) => b.name)).toEqual([0, 1, 2].map((i) => staged.find((s) => s.entry.i === i)?.part.id));
    expect((await ws.getBlobClient(`${out}logs/job.log`).downloadToBuffer()).toString()).toMatch(/^old preamble\nlog 0\nlog 1\nlog 2\n.*Completed/s);
  });

  it('identifies a model\'s content by account and container name, not the URL it is reached at', async () => {
    const model = await registry.resolveData(ds('models/m/'), 'model.path');
    const here = await folderContent(registry, model.location);
    // The same emulator reached at another host name (as after a restart on other ports).
    const other = new Registry({ config: loadConfig({ AzureWebJobsStorage: storage.connectionString.replace(/127\.0\.0\.1/g, 'localhost'), BATCH_TABLE_PREFIX: config.tablePrefix }) });
    expect(other.open(model.location).url).not.toBe(registry.open(model.location).url);
    expect((await folderContent(other, model.location)).key).toBe(here.key);
    await ws.getBlockBlobClient('models/m/model.txt').upload('changed', 7);
    expect((await folderContent(registry, model.location)).key).not.toBe(here.key);
  });
});
