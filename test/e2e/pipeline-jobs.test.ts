/**
 * Pipeline component deployments over HTTP on fnhost (issue 10): the demo's three steps
 * (prepare → score → summarize), literals checked at invoke, steps shown as child jobs, step reuse,
 * continue_on_step_failure both ways, cancel in the middle, two parallel steps side by side.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Api, type Json, PENGUIN_MODEL, TERMINAL, ds, expectProblem, expectStatus, readBlob, startProductHost, upload, waitForJob } from '../support/batch.js';
import { type FnHostProcess } from '../support/fnhost.js';
import { uniqueName } from '../support/ports.js';

const ROOT = join(import.meta.dirname, '..', '..');
const DEMO = join(ROOT, 'scripts', 'demo', 'pipeline');

let host: FnHostProcess;
let api: Api;

const HEADER = 'species,island,bill_length_mm,bill_depth_mm,flipper_length_mm,body_mass_g,sex';
const RAW = {
  'a.csv': `${HEADER}\nAdelie,Torgersen,39.1,18.7,181,3750,male\nGentoo,Biscoe,46.1,13.2,211,4500,female\nAdelie,Torgersen,NA,NA,NA,NA,NA\n`,
  'b.csv': `${HEADER}\nChinstrap,Dream,46.5,17.9,192,3500,female\nGentoo,Biscoe,50,16.3,230,5700,male\n`,
};

const call = (method: string, path: string, body: unknown, status: number): Promise<Json> => expectStatus(api, method, path, body, status);
const problem = (method: string, path: string, body: unknown, status: number, field?: string): Promise<Json> => expectProblem(api, method, path, body, status, field);
const finished = (id: string, timeoutMs = 120_000): Promise<Json> => waitForJob(api, id, timeoutMs);

async function text(id: string, path: string): Promise<string> {
  const res = await fetch(`${host.url}/api/jobs/${id}/${path}`, { headers: { 'x-functions-key': host.masterKey } });
  expect(res.status, `${path}: ${res.status}`).toBe(200);
  return res.text();
}

const stepsOf = (job: Json): Record<string, Json> => Object.fromEntries((job.steps as Json[]).map((s) => [s.name, s]));

const prepare = {
  type: 'command',
  code: ds('code/pipeline/prepare/'),
  entry_script: 'prepare.js',
  inputs: { raw_data: { type: 'uri_folder' }, drop_missing: { type: 'boolean', default: true } },
  outputs: { clean_data: { type: 'uri_folder' } },
};
const score = {
  type: 'parallel',
  inputs: { data: { type: 'uri_folder' } },
  outputs: { predictions: { type: 'uri_folder' } },
  input_data: '${{inputs.data}}',
  model: 'azureml:penguins:1',
  mini_batch_size: 1,
  max_concurrency_per_instance: 2,
  task: { type: 'run_function', append_row_to: '${{outputs.predictions}}' },
};
const summarize = {
  type: 'command',
  code: ds('code/pipeline/summarize/'),
  entry_script: 'summarize.js',
  inputs: { predictions: { type: 'uri_folder' }, class_column: { type: 'string', default: 'prediction' } },
  outputs: { summary: { type: 'uri_folder' } },
};
const demoPipeline = {
  type: 'pipeline',
  inputs: { raw_data: { type: 'uri_folder' }, drop_missing: { type: 'boolean', default: true }, min_rows: { type: 'integer', min: 1, max: 1000, optional: true }, mode: { type: 'string', enum: ['fast', 'full'], default: 'fast' } },
  outputs: { summary: { type: 'uri_folder' }, predictions: { type: 'uri_folder' } },
  jobs: {
    prepare: { component: 'azureml:prepare:1', inputs: { raw_data: '${{parent.inputs.raw_data}}', drop_missing: '${{parent.inputs.drop_missing}}' } },
    score: { component: 'azureml:score:1', inputs: { data: '${{parent.jobs.prepare.outputs.clean_data}}' }, outputs: { predictions: '${{parent.outputs.predictions}}' } },
    summarize: { component: 'azureml:summarize:1', inputs: { predictions: '${{parent.jobs.score.outputs.predictions}}' }, outputs: { summary: '${{parent.outputs.summary}}' } },
  },
};

beforeAll(async () => {
  ({ host, api } = await startProductHost({}, { immediateProgress: false }));
  await upload(host.storageConnection, {
    'models/penguins/penguins.onnx': readFileSync(PENGUIN_MODEL),
    'code/pipeline/prepare/prepare.js': readFileSync(join(DEMO, 'prepare', 'prepare.js')),
    'code/pipeline/summarize/summarize.js': readFileSync(join(DEMO, 'summarize', 'summarize.js')),
    'code/pipeline/fail/fail.js': 'export async function run() { throw new Error("this step always fails"); }\n',
    'code/pipeline/slow/slow.js': 'export async function run(inputs, outputs) { await new Promise((r) => setTimeout(r, Number(inputs.ms))); const fs = await import("node:fs/promises"); await fs.writeFile(`${outputs.out}/done.txt`, "done\\n"); }\n',
    ...Object.fromEntries(Object.entries(RAW).map(([name, content]) => [`data/raw/${name}`, content])),
  });
  await call('PUT', 'models/penguins/versions/1', { type: 'onnx', path: ds('models/penguins/penguins.onnx') }, 201);
  await call('PUT', 'components/prepare/versions/1', prepare, 201);
  await call('PUT', 'components/score/versions/1', score, 201);
  await call('PUT', 'components/summarize/versions/1', summarize, 201);
  await call('PUT', 'components/demo_pipeline/versions/1', demoPipeline, 201);
  await call('PUT', 'endpoints/penguin-pipe', {}, 201);
  await call('PUT', 'endpoints/penguin-pipe/deployments/steps', { type: 'pipeline', component: 'azureml:demo_pipeline:1' }, 201);
  await call('PUT', 'endpoints/penguin-pipe', { defaults: { deployment_name: 'steps' } }, 200);
});

afterAll(async () => {
  await host?.stop();
});

describe('pipeline jobs over HTTP on fnhost', () => {
  it('runs prepare → score → summarize with a data input and literals; each step is a child job', async () => {
    const summaryPath = `out/${uniqueName('summary')}/`;
    const invoked = await call(
      'POST',
      'endpoints/penguin-pipe/jobs',
      { inputs: { raw_data: { type: 'uri_folder', path: ds('data/raw/') }, drop_missing: { type: 'literal', value: true }, min_rows: 5 }, outputs: { summary: { path: ds(summaryPath) } } },
      202,
    );
    expect(invoked.type).toBe('pipeline');
    const job = await finished(invoked.id);
    expect(job.status, JSON.stringify(job)).toBe('Completed');
    const steps = stepsOf(job);
    expect(Object.keys(steps)).toEqual(['prepare', 'score', 'summarize']);
    for (const step of Object.values(steps)) {
      expect(step.status).toBe('Completed');
      expect(step.reused).toBe(false);
      expect(step.started_at).not.toBeNull();
      expect(step.completed_at).not.toBeNull();
    }
    // The NA row was dropped: both files (items, as in Azure ML) scored, one mini-batch each, 4 penguins.
    expect(steps.score.counts).toMatchObject({ mini_batches: { total: 2, succeeded: 2 }, items: { succeeded: 2, failed: 0 } });
    expect(steps.prepare.inputs.drop_missing).toEqual({ type: 'literal', value: true });
    const summary = JSON.parse((await readBlob(host.storageConnection, `${summaryPath}summary.json`)).toString()) as { rows: number; classes: Record<string, number> };
    expect(summary.rows).toBe(4);
    expect(Object.values(summary.classes).reduce((a, b) => a + b, 0)).toBe(4);
    // The step's outputs and logs stream through the API.
    expect(JSON.parse(await text(invoked.id, 'steps/summarize/outputs/summary.json'))).toEqual(summary);
    expect((await text(invoked.id, 'steps/score/outputs/predictions.csv')).trim().split('\n')).toHaveLength(4);
    expect(await text(invoked.id, 'steps/prepare/outputs/user_logs/attempt-1.log')).toContain('kept 4 rows, dropped 1');
  });

  it('checks inputs against the pipeline: type, enum, min/max, unknown and missing inputs; model-style bodies name the field', async () => {
    const data = { type: 'uri_folder', path: ds('data/raw/') };
    await problem('POST', 'endpoints/penguin-pipe/jobs', { inputs: { raw_data: data, drop_missing: 'maybe' } }, 400, 'inputs.drop_missing');
    await problem('POST', 'endpoints/penguin-pipe/jobs', { inputs: { raw_data: data, mode: 'slow' } }, 400, 'inputs.mode');
    await problem('POST', 'endpoints/penguin-pipe/jobs', { inputs: { raw_data: data, min_rows: 0 } }, 400, 'inputs.min_rows');
    await problem('POST', 'endpoints/penguin-pipe/jobs', { inputs: { raw_data: data, min_rows: 2.5 } }, 400, 'inputs.min_rows');
    await problem('POST', 'endpoints/penguin-pipe/jobs', { inputs: { raw_data: data, nope: 1 } }, 400, 'inputs.nope');
    await problem('POST', 'endpoints/penguin-pipe/jobs', { inputs: { drop_missing: false } }, 400, 'inputs.raw_data');
    await problem('POST', 'endpoints/penguin-pipe/jobs', { inputs: { raw_data: 'just text' } }, 400, 'inputs.raw_data');
    await problem('POST', 'endpoints/penguin-pipe/jobs', { inputs: { raw_data: data, mode: { type: 'uri_file', path: ds('data/raw/a.csv') } } }, 400, 'inputs.mode');
    await problem('POST', 'endpoints/penguin-pipe/jobs', { inputs: { raw_data: data }, outputs: { other: { path: ds('out/x/') } } }, 400, 'outputs.other');
    // An output is never the job's own input, nor inside it, nor around it.
    for (const path of [ds('data/raw/'), ds('data/raw/summary/'), ds('data/')]) {
      const refused = await problem('POST', 'endpoints/penguin-pipe/jobs', { inputs: { raw_data: data }, outputs: { summary: { path } } }, 400, 'outputs.summary.path');
      expect(refused.errors.map((e: { field: string }) => e.field), path).toEqual(['outputs.summary.path', 'inputs.raw_data.path']);
    }
    await problem('POST', 'endpoints/penguin-pipe/jobs', { inputs: { raw_data: data }, settings: { mini_batch_size: 3 } }, 400, 'settings');
    // A model deployment still takes exactly one data input, and refuses literals (as Azure ML does).
    await call('PUT', 'endpoints/model-only', {}, 201);
    await call('PUT', 'endpoints/model-only/deployments/onnx', { model: 'azureml:penguins:1' }, 201);
    await call('PUT', 'endpoints/model-only', { defaults: { deployment_name: 'onnx' } }, 200);
    const literal = await problem('POST', 'endpoints/model-only/jobs', { inputs: { threshold: { type: 'literal', value: 3 } } }, 400, 'inputs.threshold');
    expect(literal.detail).toContain('literal inputs are for pipeline deployments');
    await problem('POST', 'endpoints/model-only/jobs', { inputs: { x: 5 } }, 400, 'inputs.x');
    await problem('POST', 'endpoints/model-only/jobs', { inputs: { a: data, b: data } }, 400, 'inputs');
    await problem('POST', 'endpoints/model-only/jobs', { inputs: {} }, 400, 'inputs');
    expect((await call('GET', 'endpoints/model-only/jobs', undefined, 200)).value).toEqual([]);
    // No job was left behind by any of them.
    const jobs = await call('GET', 'endpoints/penguin-pipe/jobs', undefined, 200);
    expect(jobs.value.every((j: Json) => j.status !== 'NotStarted')).toBe(true);
  });

  it('reuses unchanged steps unless force_rerun; changed input content runs them again', async () => {
    await call('PUT', 'endpoints/reuse', {}, 201);
    await call('PUT', 'endpoints/reuse/deployments/steps', { type: 'pipeline', component: 'azureml:demo_pipeline:1' }, 201);
    await call('PUT', 'endpoints/reuse/deployments/rerun', { type: 'pipeline', component: 'azureml:demo_pipeline:1', settings: { force_rerun: true } }, 201);
    const folder = `data/${uniqueName('reuse')}/`;
    await upload(host.storageConnection, Object.fromEntries(Object.entries(RAW).map(([name, content]) => [`${folder}${name}`, content])));
    const invoke = async (deployment: string): Promise<Json> => {
      const res = await api.call('POST', 'endpoints/reuse/jobs', { inputs: { raw_data: { type: 'uri_folder', path: ds(folder) } } }, { 'azureml-model-deployment': deployment });
      expect(res.status, JSON.stringify(res.body)).toBe(202);
      return finished(res.body.id);
    };
    const first = await invoke('steps');
    expect(first.status).toBe('Completed');
    const second = await invoke('steps');
    expect(second.status).toBe('Completed');
    const reused = stepsOf(second);
    for (const name of ['prepare', 'score', 'summarize']) expect(reused[name]?.reused_from, name).toEqual({ job: first.id, step: name });
    // The job's own outputs are there all the same (copied from the earlier run).
    expect(JSON.parse(await text(second.id, 'outputs/summary/summary.json'))).toEqual(JSON.parse(await text(first.id, 'outputs/summary/summary.json')));
    // force_rerun: everything runs again.
    const forced = await invoke('rerun');
    expect(Object.values(stepsOf(forced)).map((s) => s.reused)).toEqual([false, false, false]);
    // New content in the input folder: prepare runs again, and so do the steps after it.
    await upload(host.storageConnection, { [`${folder}c.csv`]: `${HEADER}\nAdelie,Dream,37,19,190,3600,female\n` });
    const changed = await invoke('steps');
    expect(Object.values(stepsOf(changed)).map((s) => s.reused)).toEqual([false, false, false]);
    expect(stepsOf(changed).score?.counts.items.succeeded).toBe(3);
    expect((await text(changed.id, 'outputs/predictions/predictions.csv')).trim().split('\n')).toHaveLength(5);
  });

  it('continue_on_step_failure: false stops the other steps; true lets independent steps finish', async () => {
    await call('PUT', 'components/fail/versions/1', { type: 'command', code: ds('code/pipeline/fail/'), entry_script: 'fail.js', inputs: {}, outputs: { out: { type: 'uri_folder' } } }, 201);
    await call('PUT', 'components/slow/versions/1', { type: 'command', code: ds('code/pipeline/slow/'), entry_script: 'slow.js', inputs: { ms: { type: 'integer' } }, outputs: { out: { type: 'uri_folder' } } }, 201);
    const graph = {
      type: 'pipeline',
      inputs: { ms: { type: 'integer', default: 1500 } },
      outputs: {},
      jobs: {
        broken: { component: 'azureml:fail:1' },
        after_broken: { component: 'azureml:slow:1', inputs: { ms: 1 } },
        independent: { component: 'azureml:slow:1', inputs: { ms: '${{parent.inputs.ms}}' } },
      },
    };
    // after_broken takes nothing from broken; make it depend on it through a second pipeline step.
    const chained = { ...graph, jobs: { ...graph.jobs, after_broken: { component: 'azureml:prepare:1', inputs: { raw_data: '${{parent.jobs.broken.outputs.out}}' } } } };
    await call('PUT', 'components/failing/versions/1', chained, 201);
    await call('PUT', 'endpoints/failing', {}, 201);
    await call('PUT', 'endpoints/failing/deployments/stop', { type: 'pipeline', component: 'azureml:failing:1', settings: { force_rerun: true } }, 201);
    await call('PUT', 'endpoints/failing/deployments/go-on', { type: 'pipeline', component: 'azureml:failing:1', settings: { continue_on_step_failure: true, force_rerun: true } }, 201);
    const run = async (deployment: string): Promise<Json> => {
      const res = await api.call('POST', 'endpoints/failing/jobs', {}, { 'azureml-model-deployment': deployment });
      expect(res.status, JSON.stringify(res.body)).toBe(202);
      return finished(res.body.id);
    };
    const stopped = await run('stop');
    expect(stopped.status).toBe('Failed');
    expect(stopped.error.message).toContain("Step 'broken' failed");
    expect(stepsOf(stopped).broken?.status).toBe('Failed');
    expect(stepsOf(stopped).after_broken?.status).toBe('Skipped');
    expect(stepsOf(stopped).independent?.status).toBe('Canceled');
    const goOn = await run('go-on');
    expect(goOn.status).toBe('Failed');
    expect(stepsOf(goOn).after_broken?.status).toBe('Skipped');
    expect(stepsOf(goOn).independent?.status).toBe('Completed');
  });

  it('cancel reaches every running step; a pipeline with two parallel steps side by side', async () => {
    const twin = {
      type: 'pipeline',
      inputs: { raw_data: { type: 'uri_folder' } },
      outputs: { left: { type: 'uri_folder' }, right: { type: 'uri_folder' } },
      jobs: {
        left: { component: 'azureml:score:1', inputs: { data: '${{parent.inputs.raw_data}}' }, outputs: { predictions: '${{parent.outputs.left}}' } },
        right: { component: 'azureml:score:1', inputs: { data: '${{parent.inputs.raw_data}}' }, outputs: { predictions: '${{parent.outputs.right}}' } },
        wait: { component: 'azureml:slow:1', inputs: { ms: 60000 } },
      },
    };
    await call('PUT', 'components/twin/versions/1', twin, 201);
    await call('PUT', 'endpoints/twin', {}, 201);
    await call('PUT', 'endpoints/twin/deployments/dep', { type: 'pipeline', component: 'azureml:twin:1', settings: { force_rerun: true } }, 201);
    const res = await api.call('POST', 'endpoints/twin/jobs', { inputs: { raw_data: { type: 'uri_folder', path: ds('data/raw/') } } }, { 'azureml-model-deployment': 'dep' });
    expect(res.status, JSON.stringify(res.body)).toBe(202);
    const id = res.body.id as string;
    // Both parallel steps complete while the slow one still runs; their outputs do not collide.
    for (const deadline = Date.now() + 60_000; ; ) {
      const job = await call('GET', `jobs/${id}`, undefined, 200);
      const s = stepsOf(job);
      if (s.left?.status === 'Completed' && s.right?.status === 'Completed' && s.wait?.status === 'Running') break;
      if (Date.now() > deadline || TERMINAL.includes(job.status)) throw new Error(JSON.stringify(job.steps));
      await new Promise((r) => setTimeout(r, 150));
    }
    const left = await text(id, 'outputs/left/predictions.csv');
    const right = await text(id, 'outputs/right/predictions.csv');
    expect(left).toBe(right);
    // Raw data: a.csv's NA row fails that file in both steps; b.csv's two penguins are scored.
    expect(left.trim().split('\n')).toHaveLength(2);
    expect(stepsOf(await call('GET', `jobs/${id}`, undefined, 200)).left?.counts.items).toMatchObject({ succeeded: 1, failed: 1 });
    await call('POST', `jobs/${id}/cancel`, undefined, 202);
    const job = await finished(id);
    expect(job.status).toBe('Canceled');
    expect(stepsOf(job).wait?.status).toBe('Canceled');
  });

  it('runs a standalone pipeline job (POST /api/jobs), then deploys its graph (job_definition) as a new pipeline component version', async () => {
    const summaryPath = `out/${uniqueName('standalone')}/`;
    const body = {
      type: 'pipeline',
      display_name: 'penguins by hand',
      experiment_name: 'penguins',
      inputs: { raw: { type: 'uri_folder', path: ds('data/raw/') }, drop: false },
      outputs: { summary: { path: ds(summaryPath) } },
      settings: { force_rerun: true, default_compute: 'azureml:cpu-cluster' },
      jobs: {
        prepare: { component: 'azureml:prepare:1', inputs: { raw_data: '${{parent.inputs.raw}}', drop_missing: '${{parent.inputs.drop}}' } },
        score: { component: 'azureml:score:1', inputs: { data: '${{parent.jobs.prepare.outputs.clean_data}}' } },
        summarize: { component: 'azureml:summarize:1', inputs: { predictions: '${{parent.jobs.score.outputs.predictions}}' }, outputs: { summary: '${{parent.outputs.summary}}' } },
      },
    };
    // Graph errors name the step and field, as at registration; nothing is created.
    await problem('POST', 'jobs', { ...body, jobs: { ...body.jobs, score: { ...body.jobs.score, inputs: { data: '${{parent.jobs.nowhere.outputs.x}}' } } } }, 400, 'jobs.score.inputs.data');
    await problem('POST', 'jobs', { ...body, jobs: undefined }, 400, 'jobs');
    const submitted = await call('POST', 'jobs', body, 202);
    expect(submitted).toMatchObject({ type: 'pipeline', display_name: 'penguins by hand' });
    const job = await finished(submitted.id);
    // drop_missing false: the NA row stays, so a.csv fails in scoring; b.csv's two are counted.
    expect(job.status, JSON.stringify(job)).toBe('Completed');
    expect(stepsOf(job).prepare?.inputs.drop_missing).toEqual({ type: 'literal', value: false });
    const summary = JSON.parse((await readBlob(host.storageConnection, `${summaryPath}summary.json`)).toString()) as { rows: number };
    expect(summary.rows).toBe(2);

    // A deployment from the job: its graph becomes a pipeline component version of its own.
    await call('PUT', 'endpoints/from-job', {}, 201);
    await problem('PUT', 'endpoints/from-job/deployments/bad', { type: 'pipeline', job_definition: 'azureml:bj-nope' }, 404, 'job_definition');
    const dep = await call('PUT', 'endpoints/from-job/deployments/copy', { type: 'pipeline', job_definition: `azureml:${submitted.id}` }, 201);
    const componentName = `job_${String(submitted.id).replace(/-/g, '_')}`;
    expect(dep).toMatchObject({ type: 'pipeline', component: `azureml:${componentName}:1`, job_definition: `azureml:${submitted.id}` });
    const registered = await call('GET', `components/${componentName}/versions/1`, undefined, 200);
    expect(Object.keys(registered.jobs)).toEqual(['prepare', 'score', 'summarize']);
    expect(registered.inputs).toMatchObject({ raw: { type: 'uri_folder' }, drop: { type: 'boolean' } });
    // The deployed graph runs with the caller's inputs.
    const res = await api.call('POST', 'endpoints/from-job/jobs', { inputs: { raw: { type: 'uri_folder', path: ds('data/raw/') }, drop: true } }, { 'azureml-model-deployment': 'copy' });
    expect(res.status, JSON.stringify(res.body)).toBe(202);
    const deployed = await finished(res.body.id);
    expect(deployed.status).toBe('Completed');
    expect(JSON.parse(await text(deployed.id, 'outputs/summary/summary.json'))).toMatchObject({ rows: 4 });
    // A job that is not a completed pipeline job cannot be deployed.
    const submittedFailing = await api.call('POST', 'jobs', { type: 'pipeline', inputs: {}, jobs: { broken: { component: 'azureml:fail:1' } } });
    expect(submittedFailing.status).toBe(202);
    const failing = submittedFailing.body;
    // POST /api/jobs follows the long-running-operation pattern too: Location is the status URL,
    // 202 while the job runs, 200 with the ended job.
    const location = submittedFailing.headers.get('location') as string;
    expect(location).toBe(`${host.url}/api/jobs/${failing.id}/status`);
    expect(submittedFailing.headers.get('retry-after')).toMatch(/^\d+$/);
    let polled: Response | undefined;
    for (let i = 0; i < 600 && (polled === undefined || polled.status === 202); i++) {
      if (polled) await new Promise((r) => setTimeout(r, 200));
      polled = await fetch(location, { headers: { 'x-functions-key': host.masterKey } });
      if (polled.status === 202) expect(polled.headers.get('retry-after')).toMatch(/^\d+$/);
    }
    expect(polled?.status).toBe(200);
    expect(((await polled?.json()) as Json).status).toBe('Failed');
    expect((await finished(failing.id)).status).toBe('Failed');
    await problem('PUT', 'endpoints/from-job/deployments/broken', { type: 'pipeline', job_definition: `azureml:${failing.id}` }, 400, 'job_definition');
  });
});
