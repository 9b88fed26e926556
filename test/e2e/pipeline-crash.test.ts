/**
 * Crash safety of pipeline jobs: fnhost is killed with SIGKILL while a step of a three-step
 * pipeline runs (command → parallel → command, like the demo), started again on the same data
 * folder over the same Azurite, and the job comes out exactly as an uninterrupted run of the same
 * pipeline: every step Completed, byte-identical predictions and summary, the same counts. Once
 * while the first command step's script runs, once while the parallel step scores.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { type Api, type Json, ds, readBlob, restartableProductApp, upload, waitForJob } from '../support/batch.js';
import { cleanupsAfterAll } from '../support/cleanups.js';
import { type FnHostProcess } from '../support/fnhost.js';
import { waitFor } from '../support/wait.js';

const ROOT = join(import.meta.dirname, '..', '..');
const DEMO = join(ROOT, 'scripts', 'demo', 'pipeline');

const FILES = 24;
const HEADER = 'species,island,bill_length_mm,bill_depth_mm,flipper_length_mm,body_mass_g,sex';
const SPECIES = [
  ['Adelie', 'Torgersen', 38.9, 17.8, 181, 3625, 'female'],
  ['Gentoo', 'Biscoe', 47.3, 15.3, 222, 5250, 'male'],
  ['Chinstrap', 'Dream', 49.7, 18.6, 195, 3600, 'male'],
] as const;

/** File i: a few penguins (measurements varied by row), and in every third file a row with NA measurements that prepare drops. */
function rawFile(i: number): string {
  const rows = [HEADER];
  for (let r = 0; r < 2 + (i % 3); r++) {
    const [species, island, bill, depth, flipper, mass, sex] = SPECIES[(i + r) % SPECIES.length] as (typeof SPECIES)[number];
    rows.push([species, island, (bill + ((i * 7 + r) % 10) / 10).toFixed(1), depth, flipper + ((i + r) % 5), mass + 25 * r, sex].join(','));
  }
  if (i % 3 === 0) rows.push('Adelie,Dream,NA,NA,NA,NA,NA');
  return `${rows.join('\n')}\n`;
}

/** The demo's prepare step, after noting that it runs (in a file the test reads) and taking delay_ms. */
const SLOW_PREPARE = `import { appendFile } from 'node:fs/promises';
import { run as prepare } from './prepare.js';

export async function run(inputs, outputs, context) {
  await appendFile(context.environment.MARKER, \`\${context.jobId} \${context.attempt}\\n\`);
  await new Promise((r) => setTimeout(r, Number(inputs.delay_ms)));
  await prepare(inputs, outputs, context);
}
`;

/** A deterministic "classifier" of cleaned penguin CSV files: SLOW_MS per mini-batch, one row per penguin. */
const SLOW_SCORE = `import { readFile } from 'node:fs/promises';
import { basename } from 'node:path';

export function init() {}

export async function run(miniBatch) {
  await new Promise((r) => setTimeout(r, Number(process.env.SLOW_MS)));
  const rows = [];
  for (const file of miniBatch) {
    const [header, ...lines] = (await readFile(file, 'utf8')).split('\\n').filter(Boolean);
    const columns = header.split(',');
    for (const line of lines) {
      const p = Object.fromEntries(line.split(',').map((c, i) => [columns[i], c]));
      const prediction = Number(p.flipper_length_mm) >= 206 ? 'Gentoo' : Number(p.bill_length_mm) >= 44 ? 'Chinstrap' : 'Adelie';
      rows.push({ file: basename(file), species: p.species, bill_length_mm: p.bill_length_mm, prediction });
    }
  }
  return rows;
}
`;

const cleanups = cleanupsAfterAll();

let storage: { connectionString: string; stop: () => Promise<void> };
let start: (port?: number) => Promise<{ host: FnHostProcess; api: Api }>;
let marker: string;
let host: FnHostProcess;
let api: Api;
let reference: { job: Json; predictions: Buffer; summary: Buffer };

async function startHost(port?: number): Promise<void> {
  ({ host, api } = await start(port));
  const started = host;
  cleanups.push(() => started.stop());
}

async function put(path: string, body: unknown): Promise<void> {
  const res = await api.call('PUT', path, body);
  expect(res.status, `PUT ${path}: ${JSON.stringify(res.body)}`).toBeLessThan(300);
}

async function invoke(out: string): Promise<string> {
  const res = await api.call('POST', 'endpoints/crashy-pipe/jobs', {
    inputs: { raw_data: { type: 'uri_folder', path: ds('data/pipeline-crash/') } },
    outputs: { summary: { path: ds(`${out}/summary/`) }, predictions: { path: ds(`${out}/predictions/`) } },
  });
  expect(res.status, JSON.stringify(res.body)).toBe(202);
  return res.body.id as string;
}

async function stepsOf(jobId: string): Promise<Record<string, Json>> {
  const { body } = await api.call('GET', `jobs/${jobId}`);
  return Object.fromEntries(((body?.steps ?? []) as Json[]).map((s) => [s.name, s]));
}

/** The lines the prepare script noted for a job (one each time it started). */
function markerLines(jobId: string): string[] {
  return readFileSync(marker, 'utf8')
    .split('\n')
    .filter((l) => l.startsWith(`${jobId} `));
}

/** Restarts the host on the same data folder and port, waits for the job, and checks it against the uninterrupted run. */
async function restartAndCheck(jobId: string, out: string): Promise<Json> {
  const port = host.port;
  await host.kill();
  await startHost(port);
  const job = await waitForJob(api, jobId, 120_000);
  expect(job.status, JSON.stringify(job)).toBe('Completed');
  const steps = await stepsOf(jobId);
  expect(Object.keys(steps)).toEqual(['prepare', 'score', 'summarize']);
  for (const step of Object.values(steps)) {
    expect(step.status, step.name).toBe('Completed');
    expect(step.reused, step.name).toBe(false);
  }
  // The attempt the kill interrupted ran again as the same attempt (no retry was spent on the crash).
  expect(steps.prepare?.attempts).toBe(1);
  expect(steps.summarize?.attempts).toBe(1);
  expect(steps.score?.counts).toEqual(reference.job.steps.find((s: Json) => s.name === 'score').counts);
  expect(job.counts).toEqual(reference.job.counts);
  const predictions = await readBlob(storage.connectionString, `${out}/predictions/predictions.csv`);
  expect(predictions.toString()).toBe(reference.predictions.toString());
  expect(predictions.equals(reference.predictions)).toBe(true);
  const summary = await readBlob(storage.connectionString, `${out}/summary/summary.json`);
  expect(summary.equals(reference.summary)).toBe(true);
  return job;
}

beforeAll(async () => {
  const app = await restartableProductApp(cleanups, 'pipeline-crash-');
  ({ storage, start } = app);
  marker = join(app.dataDir, 'prepare-runs.txt');
  await startHost();

  const files: Record<string, string | Buffer> = {
    'code/pipeline-crash/prepare/prepare.js': readFileSync(join(DEMO, 'prepare', 'prepare.js')),
    'code/pipeline-crash/prepare/slow-prepare.js': SLOW_PREPARE,
    'code/pipeline-crash/summarize/summarize.js': readFileSync(join(DEMO, 'summarize', 'summarize.js')),
    'code/pipeline-crash/score/score.js': SLOW_SCORE,
    'models/pipeline-crash/model.txt': 'unused',
  };
  for (let i = 0; i < FILES; i++) files[`data/pipeline-crash/p${String(i).padStart(2, '0')}.csv`] = rawFile(i);
  await upload(storage.connectionString, files);

  await put('models/rules/versions/1', { type: 'custom_model', path: ds('models/pipeline-crash/') });
  await put('components/slow_prepare/versions/1', {
    type: 'command',
    code: ds('code/pipeline-crash/prepare/'),
    entry_script: 'slow-prepare.js',
    environment_variables: { MARKER: marker },
    inputs: { raw_data: { type: 'uri_folder' }, drop_missing: { type: 'boolean', default: true }, delay_ms: { type: 'integer', default: 2500 } },
    outputs: { clean_data: { type: 'uri_folder' } },
  });
  await put('components/slow_score/versions/1', {
    type: 'parallel',
    inputs: { data: { type: 'uri_folder' } },
    outputs: { predictions: { type: 'uri_folder' } },
    input_data: '${{inputs.data}}',
    model: 'azureml:rules:1',
    mini_batch_size: 1,
    max_concurrency_per_instance: 2,
    environment_variables: { SLOW_MS: '200' },
    task: { type: 'run_function', code: ds('code/pipeline-crash/score/'), entry_script: 'score.js', append_row_to: '${{outputs.predictions}}' },
  });
  await put('components/summarize/versions/1', {
    type: 'command',
    code: ds('code/pipeline-crash/summarize/'),
    entry_script: 'summarize.js',
    inputs: { predictions: { type: 'uri_folder' }, class_column: { type: 'string', default: 'prediction' } },
    outputs: { summary: { type: 'uri_folder' } },
  });
  await put('components/crash_pipeline/versions/1', {
    type: 'pipeline',
    inputs: { raw_data: { type: 'uri_folder' } },
    outputs: { summary: { type: 'uri_folder' }, predictions: { type: 'uri_folder' } },
    jobs: {
      prepare: { component: 'azureml:slow_prepare:1', inputs: { raw_data: '${{parent.inputs.raw_data}}' } },
      score: { component: 'azureml:slow_score:1', inputs: { data: '${{parent.jobs.prepare.outputs.clean_data}}' }, outputs: { predictions: '${{parent.outputs.predictions}}' } },
      summarize: { component: 'azureml:summarize:1', inputs: { predictions: '${{parent.jobs.score.outputs.predictions}}' }, outputs: { summary: '${{parent.outputs.summary}}' } },
    },
  });
  await put('endpoints/crashy-pipe', {});
  // force_rerun: each run below does all its steps itself rather than reusing the reference's.
  await put('endpoints/crashy-pipe/deployments/steps', { type: 'pipeline', component: 'azureml:crash_pipeline:1', settings: { force_rerun: true } });
  await put('endpoints/crashy-pipe', { defaults: { deployment_name: 'steps' } });

  // An uninterrupted run, for reference.
  const id = await invoke('out/reference');
  const job = await waitForJob(api, id, 120_000);
  expect(job.status, JSON.stringify(job)).toBe('Completed');
  reference = {
    job,
    predictions: await readBlob(storage.connectionString, 'out/reference/predictions/predictions.csv'),
    summary: await readBlob(storage.connectionString, 'out/reference/summary/summary.json'),
  };
  expect(markerLines(id)).toEqual([`${id} 1`]);
});

describe('pipeline job crash safety', () => {
  it('the uninterrupted run scores every cleaned penguin once', () => {
    const penguins = Array.from({ length: FILES }, (_, i) => 2 + (i % 3)).reduce((a, b) => a + b, 0);
    expect(reference.predictions.toString().trim().split('\n')).toHaveLength(penguins);
    const summary = JSON.parse(reference.summary.toString()) as { rows: number; classes: Record<string, number> };
    expect(summary.rows).toBe(penguins);
    expect(Object.values(summary.classes).reduce((a, b) => a + b, 0)).toBe(penguins);
    expect(Object.keys(summary.classes).sort()).toEqual(['Adelie', 'Chinstrap', 'Gentoo']);
    // Every file is an item of the parallel step, one mini-batch each.
    expect(reference.job.counts).toMatchObject({ mini_batches: { total: FILES, succeeded: FILES, failed: 0 }, items: { total: FILES, succeeded: FILES, failed: 0 } });
  });

  it('finishes after kill -9 while the first command step runs its script', async () => {
    const jobId = await invoke('out/crash-command');
    // The script has started (it noted so) and is waiting out its delay; the step has not ended.
    await waitFor(() => (markerLines(jobId).length > 0 ? true : undefined), { timeoutMs: 60_000, intervalMs: 20, what: 'the prepare script to start' });
    const before = await stepsOf(jobId);
    expect(before.prepare?.status).toBe('Running');
    expect(before.score?.status).toBe('NotStarted');
    await restartAndCheck(jobId, 'out/crash-command');
    // The interrupted run of the script was run again after the restart.
    expect(markerLines(jobId)).toEqual([`${jobId} 1`, `${jobId} 1`]);
  });

  it('finishes after kill -9 while the parallel step scores', async () => {
    const jobId = await invoke('out/crash-parallel');
    const at = await waitFor(
      async () => {
        const score = (await stepsOf(jobId)).score;
        return score?.status === 'Running' && score.counts?.mini_batches.succeeded >= 8 ? score : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 20, what: 'the parallel step to be a third of the way in' },
    );
    expect(at.counts.mini_batches.succeeded).toBeLessThan(FILES);
    await restartAndCheck(jobId, 'out/crash-parallel');
    // The command step before it was done once, and not run again after the restart.
    expect(markerLines(jobId)).toEqual([`${jobId} 1`]);
  });
});
