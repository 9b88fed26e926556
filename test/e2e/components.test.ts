import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Api, type Json, PENGUIN_MODEL, ds, expectProblem, expectStatus, startProductHost, upload } from '../support/batch.js';
import { type FnHostProcess } from '../support/fnhost.js';

let host: FnHostProcess;
let api: Api;

const CODE = 'code/components/prep/';

beforeAll(async () => {
  ({ host, api } = await startProductHost({}, { immediateProgress: false }));
  await upload(host.storageConnection, {
    'models/penguins/penguins.onnx': readFileSync(PENGUIN_MODEL),
    [`${CODE}main.js`]: 'export async function run(inputs, outputs, context) { context.logger.info(inputs.mode); }\n',
  });
  const model = await api.call('PUT', 'models/penguins/versions/1', { type: 'onnx', path: ds('models/penguins/penguins.onnx') });
  expect(model.status).toBe(201);
});

afterAll(async () => {
  await host?.stop();
});

const call = (method: string, path: string, body: unknown, status: number): Promise<Json> => expectStatus(api, method, path, body, status);
const problem = (method: string, path: string, body: unknown, status: number, field?: string): Promise<Json> => expectProblem(api, method, path, body, status, field);

/** A problem+json answer naming `field`. */
const prep = {
  type: 'command',
  description: 'prepares the data',
  code: ds(CODE),
  entry_script: 'main.js',
  inputs: { data: { type: 'uri_folder' }, mode: { type: 'string', enum: ['append', 'summary'], default: 'append' } },
  outputs: { prepared: { type: 'uri_folder' } },
  environment_variables: { PREP_MODE: 'fast' },
  limits: { timeout: 600 },
  retry_settings: { max_retries: 2 },
};

const score = {
  type: 'parallel',
  inputs: { data: { type: 'uri_folder' } },
  outputs: { scores: { type: 'uri_folder' } },
  input_data: '${{inputs.data}}',
  model: 'azureml:penguins@latest',
  mini_batch_size: 5,
  error_threshold: 10,
  retry_settings: { max_retries: 1, timeout: 60 },
  max_concurrency_per_instance: 2,
  output_action: 'append_row',
  output_file_name: 'scores.csv',
  split: { by: 'rows', max_rows: 100 },
};

const pipeline = {
  type: 'pipeline',
  inputs: { input_data: { type: 'uri_folder' }, score_mode: { type: 'string', default: 'append' } },
  outputs: { scores: { type: 'uri_folder' } },
  jobs: {
    prep_job: { component: 'azureml:prep:1', inputs: { data: '${{parent.inputs.input_data}}', mode: '${{parent.inputs.score_mode}}' } },
    score_job: { component: 'azureml:score@latest', inputs: { data: '${{ parent.jobs.prep_job.outputs.prepared }}' }, outputs: { scores: '${{parent.outputs.scores}}' } },
  },
};

describe('components and pipeline deployments over HTTP on fnhost', () => {
  it('registers command, parallel and pipeline components; versions are immutable; versions in use stay', async () => {
    const created = await call('PUT', 'components/prep/versions/1', prep, 201);
    expect(created).toMatchObject({ id: 'azureml:prep:1', name: 'prep', version: '1', type: 'command', code: ds(CODE), entry_script: 'main.js', limits: { timeout: 600 }, retry_settings: { max_retries: 2 } });
    expect(created.inputs.mode).toEqual({ type: 'string', default: 'append', optional: false, enum: ['append', 'summary'] });
    // The same body again is accepted; a different one is a conflict.
    await call('PUT', 'components/prep/versions/1', prep, 200);
    await problem('PUT', 'components/prep/versions/1', { ...prep, description: 'changed' }, 409);
    // The entry script must be in the code folder.
    await problem('PUT', 'components/prep/versions/2', { ...prep, entry_script: 'missing.js' }, 400, 'entry_script');
    // Literal checks on defaults: enum on strings only, defaults within it.
    await problem('PUT', 'components/prep/versions/2', { ...prep, inputs: { ...prep.inputs, mode: { type: 'string', enum: ['a'], default: 'b' } } }, 400, 'inputs.mode.default');

    const parallel = await call('PUT', 'components/score/versions/1', score, 201);
    // @latest is pinned at registration.
    expect(parallel).toMatchObject({ type: 'parallel', model: 'azureml:penguins:1', mini_batch_size: 5, error_threshold: 10, output_file_name: 'scores.csv', task: { append_row_to: '${{outputs.scores}}' } });
    await problem('PUT', 'components/score/versions/2', { ...score, model: 'azureml:nomodel:1' }, 404, undefined);

    const pipe = await call('PUT', 'components/batch_pipeline/versions/1', pipeline, 201);
    expect(pipe.jobs.score_job.component).toBe('azureml:score:1');
    expect(pipe.jobs.score_job.inputs.data).toBe('${{parent.jobs.prep_job.outputs.prepared}}');

    // Graph errors at registration are 400s naming the step and the field.
    const unbound = { ...pipeline, jobs: { ...pipeline.jobs, score_job: { ...pipeline.jobs.score_job, inputs: {} } } };
    const p = await problem('PUT', 'components/broken/versions/1', unbound, 400, 'jobs.score_job.inputs.data');
    expect(p.detail).toContain('jobs.score_job.inputs.data');
    const cycle = { ...pipeline, jobs: { ...pipeline.jobs, prep_job: { ...pipeline.jobs.prep_job, inputs: { data: '${{parent.jobs.score_job.outputs.scores}}' } } } };
    await problem('PUT', 'components/broken/versions/1', cycle, 400, 'jobs.prep_job.inputs.data');
    const mismatch = { ...pipeline, jobs: { ...pipeline.jobs, prep_job: { ...pipeline.jobs.prep_job, inputs: { data: '${{parent.inputs.score_mode}}' } } } };
    await problem('PUT', 'components/broken/versions/1', mismatch, 400, 'jobs.prep_job.inputs.data');
    const badLiteral = { ...pipeline, jobs: { ...pipeline.jobs, prep_job: { ...pipeline.jobs.prep_job, inputs: { data: '${{parent.inputs.input_data}}', mode: 'overwrite' } } } };
    await problem('PUT', 'components/broken/versions/1', badLiteral, 400, 'jobs.prep_job.inputs.mode');
    await problem('PUT', 'components/broken/versions/1', { ...pipeline, jobs: { ...pipeline.jobs, score_job: { ...pipeline.jobs.score_job, component: 'azureml:nope:1' } } }, 404);
    expect((await api.call('GET', 'components/broken/versions/1')).status).toBe(404);

    // Reading and listing.
    expect((await call('GET', 'components/batch_pipeline/versions/1', undefined, 200)).type).toBe('pipeline');
    expect((await call('GET', 'components/score/versions/latest', undefined, 200)).version).toBe('1');
    const all = await call('GET', 'components', undefined, 200);
    expect(all.value.map((c: Json) => c.id).sort()).toEqual(['azureml:batch_pipeline:1', 'azureml:prep:1', 'azureml:score:1']);
    expect((await call('GET', 'components/prep/versions', undefined, 200)).value).toHaveLength(1);
    await problem('GET', 'components/nothing/versions', undefined, 404);
    await problem('PUT', 'components/Bad-Name/versions/1', prep, 400, 'name');

    // In use: by the pipeline component; the model by the parallel component.
    const inUse = await problem('DELETE', 'components/prep/versions/1', undefined, 409);
    expect(inUse.detail).toContain('batch_pipeline:1');
    await problem('DELETE', 'models/penguins/versions/1', undefined, 409);
  });

  it('creates pipeline deployments on an endpoint (the old refusal of type pipeline is gone)', async () => {
    await call('PUT', 'endpoints/pipes', {}, 201);
    const dep = await call('PUT', 'endpoints/pipes/deployments/batch', { type: 'pipeline', component: 'azureml:batch_pipeline@latest', settings: { continue_on_step_failure: true } }, 201);
    expect(dep).toMatchObject({
      type: 'pipeline',
      component: 'azureml:batch_pipeline:1',
      settings: { continue_on_step_failure: true, default_datastore: 'workspaceblobstore', force_rerun: false },
    });
    expect(await call('GET', 'endpoints/pipes/deployments/batch', undefined, 200)).toMatchObject({ type: 'pipeline', component: 'azureml:batch_pipeline:1' });
    await call('PUT', 'endpoints/pipes', { defaults: { deployment_name: 'batch' } }, 200);

    // Inline: the pipeline component checked in full, errors named under "component".
    const inline = await call('PUT', 'endpoints/pipes/deployments/inline', { type: 'pipeline', component: pipeline, settings: { default_datastore: 'azureml:workspaceblobstore', force_rerun: true } }, 201);
    expect(inline.component.jobs.prep_job.component).toBe('azureml:prep:1');
    expect(inline.settings).toEqual({ continue_on_step_failure: false, default_datastore: 'workspaceblobstore', force_rerun: true });
    const broken = { ...pipeline, jobs: { ...pipeline.jobs, score_job: { ...pipeline.jobs.score_job, inputs: { data: '${{parent.jobs.nope.outputs.x}}' } } } };
    await problem('PUT', 'endpoints/pipes/deployments/bad', { type: 'pipeline', component: broken }, 400, 'component.jobs.score_job.inputs.data');
    await problem('PUT', 'endpoints/pipes/deployments/bad', { type: 'pipeline', component: 'azureml:prep:1' }, 400, 'component');
    await problem('PUT', 'endpoints/pipes/deployments/bad', { type: 'pipeline', component: 'azureml:score:1', settings: { default_datastore: 'nostore' } }, 400, 'component');
    await problem('PUT', 'endpoints/pipes/deployments/bad', { type: 'pipeline', component: 'azureml:batch_pipeline:1', settings: { default_datastore: 'nostore' } }, 404);
    await problem('PUT', 'endpoints/pipes/deployments/bad', { type: 'pipeline', component: 'azureml:batch_pipeline:1', model: 'azureml:penguins:1' }, 400, 'model');
    const listed = await call('GET', 'endpoints/pipes/deployments', undefined, 200);
    expect(listed.value.map((d: Json) => d.name).sort()).toEqual(['batch', 'inline']);

    // Invoking checks the pipeline's inputs (jobs themselves: test/e2e/pipeline-jobs.test.ts).
    const invoked = await problem('POST', 'endpoints/pipes/jobs', { inputs: { nope: 1 } }, 400, 'inputs.nope');
    expect(invoked.detail).toContain("the pipeline has no input 'nope'");

    // The pipeline component (and through it, its steps) is in use by the deployment.
    const used = await problem('DELETE', 'components/batch_pipeline/versions/1', undefined, 409);
    expect(used.detail).toContain('pipes/batch');
    // An inline pipeline's step references count too.
    await problem('DELETE', 'components/score/versions/1', undefined, 409);

    await call('PUT', 'endpoints/pipes', { defaults: { deployment_name: 'inline' } }, 200);
    await call('DELETE', 'endpoints/pipes/deployments/batch', undefined, 204);
    await call('DELETE', 'components/batch_pipeline/versions/1', undefined, 204);
    await problem('DELETE', 'components/prep/versions/1', undefined, 409);
    await call('DELETE', 'endpoints/pipes', undefined, 204);
    await call('DELETE', 'components/prep/versions/1', undefined, 204);
    await call('DELETE', 'components/score/versions/1', undefined, 204);
    await call('DELETE', 'models/penguins/versions/1', undefined, 204);
    expect((await call('GET', 'components', undefined, 200)).value).toEqual([]);
  });

  it("reads 'latest' of models, data and components as the newest version over HTTP, and refuses to register it; a model path without files is a 400", async () => {
    await call('PUT', 'models/latestm/versions/1', { type: 'onnx', path: ds('models/penguins/penguins.onnx') }, 201);
    await call('PUT', 'models/latestm/versions/2', { type: 'onnx', path: ds('models/penguins/') }, 201);
    await call('PUT', 'data/latestd/versions/1', { type: 'uri_folder', path: ds('models/') }, 201);
    await call('PUT', 'data/latestd/versions/2', { type: 'uri_folder', path: ds('models/penguins/') }, 201);
    await call('PUT', 'components/latestc/versions/1', prep, 201);
    await call('PUT', 'components/latestc/versions/2', { ...prep, description: 'second' }, 201);
    for (const kind of ['models/latestm', 'data/latestd', 'components/latestc']) {
      expect((await call('GET', `${kind}/versions/latest`, undefined, 200)).version, kind).toBe('2');
      await problem('PUT', `${kind}/versions/latest`, kind.startsWith('models') ? { type: 'onnx', path: ds('models/penguins/') } : kind.startsWith('data') ? { type: 'uri_folder', path: ds('models/') } : prep, 400, 'version');
    }
    await problem('PUT', 'models/emptym/versions/1', { type: 'custom_model', path: ds('models/nothing-here/') }, 400, 'path');
    await call('GET', 'models/emptym/versions/1', undefined, 404);
  });

  it('describes components in the OpenAPI document', async () => {
    const res = await fetch(`${host.url}/api/openapi.json`);
    const doc = (await res.json()) as { paths: Record<string, unknown>; components: { schemas: Record<string, unknown> } };
    expect(Object.keys(doc.paths)).toContain('/api/components/{name}/versions/{version}');
    expect(Object.keys(doc.components.schemas)).toEqual(expect.arrayContaining(['ComponentRequest', 'PipelineComponentRequest', 'PipelineDeploymentRequest']));
  });
});
