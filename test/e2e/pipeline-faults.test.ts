/**
 * Pipeline faults found by a new-user try (issue 10), each a case of a fault kind that must not
 * return: a literal that changes meaning, names every object has, constraints checked in one place
 * but not another, reuse of outputs that are no longer that run's, places shared by two outputs,
 * leftovers of an earlier attempt, a file that loses its name, inputs read as they are now rather
 * than as they were at invoke.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { BlobServiceClient } from '@azure/storage-blob';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Api, type Json, PENGUIN_MODEL, WORKSPACE_CONTAINER, ds, expectProblem, expectStatus, readBlob, startProductHost, upload, waitForJob } from '../support/batch.js';
import { type FnHostProcess } from '../support/fnhost.js';
import { uniqueName } from '../support/ports.js';

const ROOT = join(import.meta.dirname, '..', '..');
const DEMO = join(ROOT, 'scripts', 'demo', 'pipeline');
const HEADER = 'species,island,bill_length_mm,bill_depth_mm,flipper_length_mm,body_mass_g,sex';
const ROWS = `${HEADER}\nAdelie,Torgersen,39.1,18.7,181,3750,male\nGentoo,Biscoe,46.1,13.2,211,4500,female\n`;

let host: FnHostProcess;
let api: Api;

const call = (method: string, path: string, body: unknown, status: number, headers: Record<string, string> = {}): Promise<Json> => expectStatus(api, method, path, body, status, headers);
const problem = (method: string, path: string, body: unknown, status: number, field?: string): Promise<Json> => expectProblem(api, method, path, body, status, field);
const finished = (id: string, timeoutMs = 120_000): Promise<Json> => waitForJob(api, id, timeoutMs);

const stepsOf = (job: Json): Record<string, Json> => Object.fromEntries((job.steps as Json[]).map((s) => [s.name, s]));

async function blobNames(prefix: string): Promise<string[]> {
  const names: string[] = [];
  for await (const b of BlobServiceClient.fromConnectionString(host.storageConnection).getContainerClient(WORKSPACE_CONTAINER).listBlobsFlat({ prefix })) names.push(b.name.substring(prefix.length));
  return names.sort();
}

/** A command component running `source` (an ES module) from its own code folder. */
async function command(name: string, source: string, io: { inputs?: Record<string, unknown>; outputs?: Record<string, unknown>; retries?: number }): Promise<void> {
  await upload(host.storageConnection, { [`code/faults/${name}/main.js`]: source });
  await call(
    'PUT',
    `components/${name}/versions/1`,
    { type: 'command', code: ds(`code/faults/${name}/`), entry_script: 'main.js', inputs: io.inputs ?? {}, outputs: io.outputs ?? {}, retry_settings: { max_retries: io.retries ?? 0 } },
    201,
  );
}

beforeAll(async () => {
  ({ host, api } = await startProductHost({}, { immediateProgress: false }));
  await upload(host.storageConnection, {
    'models/penguins/penguins.onnx': readFileSync(PENGUIN_MODEL),
    'code/faults/prepare/prepare.js': readFileSync(join(DEMO, 'prepare', 'prepare.js')),
    'code/faults/summarize/summarize.js': readFileSync(join(DEMO, 'summarize', 'summarize.js')),
    'data/faults/raw/a.csv': ROWS,
  });
  await call('PUT', 'models/penguins/versions/1', { type: 'onnx', path: ds('models/penguins/penguins.onnx') }, 201);
  await call('PUT', 'components/prepare/versions/1', { type: 'command', code: ds('code/faults/prepare/'), entry_script: 'prepare.js', inputs: { raw_data: { type: 'uri_folder' }, drop_missing: { type: 'boolean', default: true } }, outputs: { clean_data: { type: 'uri_folder' } } }, 201);
  await call('PUT', 'components/summarize/versions/1', { type: 'command', code: ds('code/faults/summarize/'), entry_script: 'summarize.js', inputs: { predictions: { type: 'uri_folder' }, class_column: { type: 'string', default: 'prediction' } }, outputs: { summary: { type: 'uri_folder' } } }, 201);
  await call('PUT', 'components/score/versions/1', { type: 'parallel', inputs: { data: { type: 'uri_folder' } }, outputs: { predictions: { type: 'uri_folder' } }, input_data: '${{inputs.data}}', model: 'azureml:penguins:1', mini_batch_size: 1 }, 201);
  await command('probe', 'import { writeFile } from "node:fs/promises";\nexport async function run(inputs, outputs) { await writeFile(`${outputs.out}/inputs.json`, JSON.stringify(inputs)); }\n', {
    inputs: { mode: { type: 'string', enum: ['a', 'b'], default: 'a' }, n: { type: 'integer', min: 0, max: 10, default: 1 }, s: { type: 'string', optional: true } },
    outputs: { out: { type: 'uri_folder' } },
  });
});

afterAll(async () => {
  await host?.stop();
});

describe('pipeline faults of each kind stay fixed (fnhost + Azurite)', () => {
  it('a literal never turns into a binding, and names that every object has are refused', async () => {
    const probeStep = (s: unknown): Json => ({ type: 'pipeline', inputs: { zz: { type: 'string', default: 'BOUND' } }, outputs: {}, jobs: { p: { component: 'azureml:probe:1', inputs: { s } } } });
    await problem('PUT', 'components/lit/versions/1', probeStep({ type: 'literal', value: '${{parent.inputs.zz}}' }), 400, 'jobs.p.inputs.s');
    // A binding written as a binding is one.
    await call('PUT', 'components/lit/versions/1', probeStep('${{parent.inputs.zz}}'), 201);
    // An invoke-time literal holding ${{ stays text.
    await call('PUT', 'endpoints/lit', {}, 201);
    await call('PUT', 'endpoints/lit/deployments/dep', { type: 'pipeline', component: 'azureml:lit:1', settings: { force_rerun: true } }, 201);
    await call('PUT', 'endpoints/lit', { defaults: { deployment_name: 'dep' } }, 200);
    const job = await finished((await call('POST', 'endpoints/lit/jobs', { inputs: { zz: '${{parent.inputs.zz}}' } }, 202)).id);
    expect(job.status).toBe('Completed');
    expect(JSON.parse((await readBlob(host.storageConnection, `azureml/${job.id}/step-p/outputs/out/inputs.json`)).toString())).toMatchObject({ s: '${{parent.inputs.zz}}' });

    for (const name of ['constructor', 'toString', 'hasOwnProperty', '__proto__']) {
      await problem('POST', 'endpoints/lit/jobs', `{"inputs":{"${name}":1}}`, 400, `inputs.${name}`);
      await problem('PUT', 'components/names/versions/1', `{"type":"command","code":"${ds('code/faults/probe/')}","entry_script":"main.js","inputs":{"${name}":{"type":"integer"}}}`, 400, `inputs.${name}`);
    }
    // A binding to a pipeline input that does not exist is not found on Object.prototype either.
    await problem('PUT', 'components/names/versions/1', probeStep('${{parent.inputs.constructor}}'), 400, 'jobs.p.inputs.s');
  });

  it("a step's own enum and min/max hold for values arriving through pipeline inputs; a required step input cannot hang on an optional pipeline input", async () => {
    await call('PUT', 'components/loose/versions/1', { type: 'pipeline', inputs: { m: { type: 'string', default: 'a' }, k: { type: 'integer', default: 1 } }, outputs: {}, jobs: { p: { component: 'azureml:probe:1', inputs: { mode: '${{parent.inputs.m}}', n: '${{parent.inputs.k}}' } } } }, 201);
    await call('PUT', 'endpoints/loose', {}, 201);
    await call('PUT', 'endpoints/loose/deployments/dep', { type: 'pipeline', component: 'azureml:loose:1' }, 201);
    await call('PUT', 'endpoints/loose', { defaults: { deployment_name: 'dep' } }, 200);
    const bad = await problem('POST', 'endpoints/loose/jobs', { inputs: { m: 'zzz' } }, 400, 'inputs.m');
    expect(bad.detail).toContain("step 'p'");
    await problem('POST', 'endpoints/loose/jobs', { inputs: { k: 50 } }, 400, 'inputs.k');
    expect((await call('GET', 'endpoints/loose/jobs', undefined, 200)).value).toEqual([]);

    // A parallel component's script sees only its mini-batch: another input would be silently ignored.
    await problem('PUT', 'components/thr/versions/1', { type: 'parallel', inputs: { data: { type: 'uri_folder' }, thr: { type: 'number', default: 0.5 } }, outputs: { predictions: { type: 'uri_folder' } }, input_data: '${{inputs.data}}', model: 'azureml:penguins:1' }, 400, 'inputs.thr');

    await call('PUT', 'components/strict/versions/1', { type: 'command', code: ds('code/faults/probe/'), entry_script: 'main.js', inputs: { need: { type: 'string' } }, outputs: {} }, 201);
    await problem('PUT', 'components/hang/versions/1', { type: 'pipeline', inputs: { o: { type: 'string', optional: true } }, outputs: {}, jobs: { p: { component: 'azureml:strict:1', inputs: { need: '${{parent.inputs.o}}' } } } }, 400, 'jobs.p.inputs.need');
  });

  it("reuses only outputs that are exactly what the earlier run left, and shows the earlier run's counts", async () => {
    await call('PUT', 'components/chain/versions/1', {
      type: 'pipeline',
      inputs: { raw: { type: 'uri_folder' } },
      outputs: { summary: { type: 'uri_folder' } },
      jobs: {
        prepare: { component: 'azureml:prepare:1', inputs: { raw_data: '${{parent.inputs.raw}}' } },
        score: { component: 'azureml:score:1', inputs: { data: '${{parent.jobs.prepare.outputs.clean_data}}' } },
        summarize: { component: 'azureml:summarize:1', inputs: { predictions: '${{parent.jobs.score.outputs.predictions}}' }, outputs: { summary: '${{parent.outputs.summary}}' } },
      },
    }, 201);
    await call('PUT', 'endpoints/chain', {}, 201);
    await call('PUT', 'endpoints/chain/deployments/dep', { type: 'pipeline', component: 'azureml:chain:1' }, 201);
    await call('PUT', 'endpoints/chain', { defaults: { deployment_name: 'dep' } }, 200);
    const folder = `data/${uniqueName('chain')}/`;
    await upload(host.storageConnection, { [`${folder}a.csv`]: ROWS });
    const run = async (): Promise<Json> => finished((await call('POST', 'endpoints/chain/jobs', { inputs: { raw: { type: 'uri_folder', path: ds(folder) } } }, 202)).id);
    const first = await run();
    expect(first.status).toBe('Completed');
    const second = await run();
    expect(Object.values(stepsOf(second)).map((s) => s.reused_from?.job)).toEqual([first.id, first.id, first.id]);
    // The reused parallel step shows what that run counted.
    expect(stepsOf(second).score?.counts).toEqual(stepsOf(first).score?.counts);
    expect(second.counts.items.succeeded).toBe(1);

    // The earlier run's intermediate is changed behind its back: neither it nor anything after it is reused.
    await upload(host.storageConnection, { [`azureml/${first.id}/step-prepare/outputs/clean_data/a.csv`]: `${HEADER}\nGentoo,Biscoe,46.1,13.2,211,4500,female\n` });
    const third = await run();
    // prepare runs again (what it left was changed); its new output is what the first run's was, so
    // score and summarize (whose inputs are prepare's fingerprint) reuse their own, intact, outputs.
    expect(Object.values(stepsOf(third)).map((s) => s.reused)).toEqual([false, true, true]);
    expect((await readBlob(host.storageConnection, `azureml/${third.id}/step-prepare/outputs/clean_data/a.csv`)).toString()).toBe(ROWS);
    // The first run's delivered summary is changed behind its back: summarize runs again too.
    await upload(host.storageConnection, { [`azureml/${first.id}/summary/summary.json`]: '{"rows": 999}\n' });
    const fourth = await run();
    expect(Object.values(stepsOf(fourth)).map((s) => s.reused)).toEqual([true, true, false]);
    expect(stepsOf(fourth).prepare?.reused_from.job).toBe(third.id);
    for (const job of [third, fourth]) {
      expect(JSON.parse(await (await fetch(`${host.url}/api/jobs/${job.id}/outputs/summary/summary.json`, { headers: { 'x-functions-key': host.masterKey } })).text())).toMatchObject({ rows: 2 });
    }
  });

  it("keeps every output's place its own: a step's folders apart from the job's outputs, nested outputs refused, another job's folder refused", async () => {
    // An output named like a step: the step's intermediates and logs never land in it.
    const job = await finished(
      (await call('POST', 'jobs', { type: 'pipeline', inputs: {}, outputs: {}, settings: { force_rerun: true }, jobs: { p: { component: 'azureml:probe:1', outputs: { out: '${{parent.outputs.q}}' } }, q: { component: 'azureml:probe:1' } } }, 202)).id,
    );
    expect(job.status).toBe('Completed');
    expect(await blobNames(`azureml/${job.id}/q/`)).toEqual(['inputs.json']);
    expect(await blobNames(`azureml/${job.id}/step-q/`)).toEqual(['outputs/out/inputs.json', 'user-logs/attempt-1.log']);

    const nested = { type: 'pipeline', inputs: {}, settings: { force_rerun: true }, outputs: { a: { path: ds('out/nest/') }, b: { path: ds('out/nest/inner/') } }, jobs: { p: { component: 'azureml:probe:1', outputs: { out: '${{parent.outputs.a}}' } }, q: { component: 'azureml:probe:1', outputs: { out: '${{parent.outputs.b}}' } } } };
    await problem('POST', 'jobs', nested, 400, 'outputs.b.path');

    const owner = await call('POST', 'jobs', { ...nested, outputs: { a: { path: ds('out/owned/') } }, jobs: { p: nested.jobs.p } }, 202);
    await finished(owner.id);
    const inside = await call('POST', 'jobs', { ...nested, outputs: { a: { path: ds('out/owned/inner/') } }, jobs: { p: nested.jobs.p } }, 409);
    expect(inside.detail).toContain(owner.id);
  });

  it('a uri_file output keeps the name the step gave its file, and the next step reads it', async () => {
    await command('one_csv', `import { writeFile } from "node:fs/promises";\nexport async function run(inputs, outputs) { await writeFile(\`\${outputs.f}/data.csv\`, ${JSON.stringify(ROWS)}); }\n`, { outputs: { f: { type: 'uri_file' } } });
    await call('PUT', 'components/score_file/versions/1', { type: 'parallel', inputs: { data: { type: 'uri_file' } }, outputs: { predictions: { type: 'uri_folder' } }, input_data: '${{inputs.data}}', model: 'azureml:penguins:1' }, 201);
    const job = await finished(
      (await call('POST', 'jobs', { type: 'pipeline', inputs: {}, settings: { force_rerun: true }, jobs: { w: { component: 'azureml:one_csv:1' }, s: { component: 'azureml:score_file:1', inputs: { data: '${{parent.jobs.w.outputs.f}}' } } } }, 202)).id,
    );
    expect(job.status, JSON.stringify(job.steps)).toBe('Completed');
    expect(stepsOf(job).w?.outputs.f.uri).toMatch(/\/step-w\/outputs\/f\/data\.csv$/);
    expect(stepsOf(job).s?.counts.items).toMatchObject({ succeeded: 1, failed: 0 });
  });

  it("an attempt's place holds only its own files, and inputs are read as they were at invoke", async () => {
    await command('slow', 'import { writeFile } from "node:fs/promises";\nexport async function run(inputs, outputs) { await new Promise((r) => setTimeout(r, 2000)); await writeFile(`${outputs.done}/ok.txt`, "ok\\n"); }\n', { outputs: { done: { type: 'uri_folder' } } });
    await command('writer', 'import { writeFile } from "node:fs/promises";\nexport async function run(inputs, outputs) { await writeFile(`${outputs.out}/mine.txt`, "mine\\n"); }\n', { inputs: { after: { type: 'uri_folder' } }, outputs: { out: { type: 'uri_folder' } } });
    await command('reader', 'import { readdir } from "node:fs/promises";\nexport async function run(inputs) { await readdir(inputs.data); }\n', { inputs: { data: { type: 'uri_folder' }, after: { type: 'uri_folder' } } });
    const out = `out/${uniqueName('place')}/`;
    const input = `data/${uniqueName('pinned')}/`;
    await upload(host.storageConnection, { [`${input}a.csv`]: ROWS });
    const submitted = await call(
      'POST',
      'jobs',
      {
        type: 'pipeline',
        inputs: { data: { type: 'uri_folder', path: ds(input) } },
        outputs: { result: { path: ds(out) } },
        settings: { force_rerun: true, continue_on_step_failure: true },
        jobs: {
          wait: { component: 'azureml:slow:1' },
          write: { component: 'azureml:writer:1', inputs: { after: '${{parent.jobs.wait.outputs.done}}' }, outputs: { out: '${{parent.outputs.result}}' } },
          read: { component: 'azureml:reader:1', inputs: { data: '${{parent.inputs.data}}', after: '${{parent.jobs.wait.outputs.done}}' } },
        },
      },
      202,
    );
    // While the first step runs (2 s), junk appears in the job's output folder and its input is rewritten.
    await upload(host.storageConnection, { [`${out}junk-from-elsewhere.txt`]: 'junk\n', [`${input}a.csv`]: `${ROWS}Adelie,Dream,37,19,190,3600,female\n` });
    const job = await finished(submitted.id);
    const steps = stepsOf(job);
    expect(steps.wait?.status).toBe('Completed');
    expect(steps.write?.status).toBe('Completed');
    expect(await blobNames(out)).toEqual(['mine.txt']);
    expect(steps.read?.status).toBe('Failed');
    expect(steps.read?.error.message).toContain('input_changed');
    expect(job.status).toBe('Failed');
  });
});
