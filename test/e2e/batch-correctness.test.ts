/**
 * Issue 8's cases over HTTP on fnhost: a job never mixes with another, never serves stale data,
 * never miscounts. Each test is one case of a kind of fault, plus siblings of it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Api, type Json, blobMetadata, deleteFolder, deploy, ds, expectProblem, fixtureScript, readBlob, startProductHost, upload, waitForJob } from '../support/batch.js';
import { type FnHostProcess, tempDir } from '../support/fnhost.js';
import { uniqueName } from '../support/ports.js';
import { waitFor } from '../support/wait.js';

let host: FnHostProcess;
let api: Api;
const cache = tempDir('batch-cache-');

beforeAll(async () => {
  ({ host, api } = await startProductHost({ BATCH_CACHE_DIR: cache.path }));
  await upload(host.storageConnection, { 'models/dummy/model.txt': 'unused' });
});

afterAll(async () => {
  await host?.stop();
  cache.remove();
});

async function invoke(endpoint: string, body: unknown, headers: Record<string, string> = {}): Promise<{ status: number; body: Json; headers: Headers }> {
  return api.call('POST', `endpoints/${endpoint}/jobs`, body, headers);
}

async function started(endpoint: string, body: unknown, headers: Record<string, string> = {}): Promise<Json> {
  const res = await invoke(endpoint, body, headers);
  if (res.status !== 202) throw new Error(`invoke ${endpoint}: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body;
}

async function output(jobId: string, file: string): Promise<string> {
  const res = await fetch(`${host.url}/api/jobs/${jobId}/outputs/${file}`, { headers: { 'x-functions-key': host.masterKey } });
  if (res.status !== 200) throw new Error(`GET outputs/${file}: ${res.status}`);
  return res.text();
}

async function scriptDeployment(endpoint: string, script: string, settings: Record<string, unknown> = {}, model = { name: 'dummy', version: '1', path: ds('models/dummy/') }): Promise<void> {
  const codeDir = `code/${uniqueName('c')}/`;
  await upload(host.storageConnection, { [`${codeDir}score.js`]: fixtureScript(script) });
  await deploy(api, {
    endpoint,
    deployment: 'dep',
    model: { ...model, type: 'custom_model' },
    deploymentBody: { code_configuration: { code: ds(codeDir), scoring_script: 'score.js' }, settings },
  });
}

/** Files named as given, each holding its own name as its one line. */
async function files(prefix: string, names: string[]): Promise<void> {
  await upload(host.storageConnection, Object.fromEntries(names.map((n) => [`${prefix}${n}`, `${n}\n`])));
}

describe('kind 2: nothing keyed by a name that can be reused', () => {
  it('2a: claims an output folder atomically at invoke: a second job for it gets 409 naming the output, and the first job\'s outputs stay its own', async () => {
    const endpoint = uniqueName('claim');
    await scriptDeployment(endpoint, 'slow-lines.js', { mini_batch_size: 2, max_concurrency_per_instance: 1, environment_variables: { SLOW_MS: '300' } });
    await files(`data/${endpoint}/a/`, Array.from({ length: 8 }, (_, i) => `a${i}.txt`));
    await files(`data/${endpoint}/b/`, ['b0.txt', 'b1.txt']);
    const out = { score: { path: ds(`out/${endpoint}/shared/`) } };
    const a = await started(endpoint, { inputs: { x: { path: ds(`data/${endpoint}/a/`) } }, outputs: out });
    const b = await invoke(endpoint, { inputs: { x: { path: ds(`data/${endpoint}/b/`) } }, outputs: out });
    expect(b.status).toBe(409);
    expect(b.headers.get('content-type')).toContain('application/problem+json');
    expect(b.body).toMatchObject({ code: 'output_exists', job_id: a.id });
    expect(b.body.errors.map((e: { field: string }) => e.field)).toEqual(['outputs.score.path']);
    const job = await waitForJob(api, a.id);
    expect(job.status).toBe('Completed');
    expect((await readBlob(host.storageConnection, `out/${endpoint}/shared/predictions.csv`)).toString()).toBe(
      Array.from({ length: 8 }, (_, i) => `a${i}.txt,1,a${i}.txt\n`).join(''),
    );
    const summary = JSON.parse((await readBlob(host.storageConnection, `out/${endpoint}/shared/job.json`)).toString());
    expect(summary).toMatchObject({ id: a.id, counts: { items: { total: 8, succeeded: 8, failed: 0 } } });
    // The refused invocation created nothing.
    expect((await api.call('GET', `endpoints/${endpoint}/jobs`)).body.value.map((j: Json) => j.id)).toEqual([a.id]);
    // After the first job has finished, its folder is still its own.
    expect((await invoke(endpoint, { inputs: { x: { path: ds(`data/${endpoint}/b/`) } }, outputs: out })).status).toBe(409);

    // Three at once on a fresh folder, the same folder spelt two ways: exactly one gets it.
    const racing = await Promise.all(
      [ds(`out/${endpoint}/race/`), ds(`out/${endpoint}/race`), ds(`out/${endpoint}/race/`)].map((path) => invoke(endpoint, { inputs: { x: { path: ds(`data/${endpoint}/b/`) } }, outputs: { score: { path } } })),
    );
    expect(racing.map((r) => r.status).sort()).toEqual([202, 409, 409]);
    const winner = racing.find((r) => r.status === 202)?.body;
    expect((await waitForJob(api, winner.id)).status).toBe('Completed');
    expect((await readBlob(host.storageConnection, `out/${endpoint}/race/predictions.csv`)).toString()).toBe('b0.txt,1,b0.txt\nb1.txt,1,b1.txt\n');
  });

  it('2c: a job whose emptied output folder another job took over answers 410 for its outputs and reports, never the new job\'s bytes', async () => {
    const endpoint = uniqueName('kill');
    await scriptDeployment(endpoint, 'slow-lines.js', { mini_batch_size: 2, environment_variables: { SLOW_MS: '1' } });
    await files(`data/${endpoint}/a/`, ['a0.txt', 'a1.txt', 'a2.txt', 'a3.txt']);
    await files(`data/${endpoint}/b/`, ['b0.txt']);
    const out = { score: { path: ds(`out/${endpoint}/kill1/`) } };
    const a = await waitForJob(api, (await started(endpoint, { inputs: { x: { path: ds(`data/${endpoint}/a/`) } }, outputs: out })).id);
    expect(a).toMatchObject({ status: 'Completed' });
    expect(await output(a.id, 'predictions.csv')).toBe('a0.txt,1,a0.txt\na1.txt,1,a1.txt\na2.txt,1,a2.txt\na3.txt,1,a3.txt\n');
    // Every file the job committed names it (the identity the routes check).
    for (const file of ['predictions.csv', 'processed_mini_batches.csv', 'errors.jsonl', 'job.json', 'logs/job.log']) {
      expect(await blobMetadata(host.storageConnection, `out/${endpoint}/kill1/${file}`), file).toMatchObject({ batch_job_id: a.id });
    }

    // The user empties the folder; another job takes it over (the documented 202) and fills it.
    expect(await deleteFolder(host.storageConnection, `out/${endpoint}/kill1/`)).toBeGreaterThan(0);
    const b = await waitForJob(api, (await started(endpoint, { inputs: { x: { path: ds(`data/${endpoint}/b/`) } }, outputs: out })).id);
    expect(b).toMatchObject({ status: 'Completed' });

    // A's routes: 410 naming B, never B's rows, report or log (the web page reads these same routes).
    for (const path of ['outputs/predictions.csv', 'outputs/job.json', 'steps/batchscoring/outputs/predictions.csv', 'mini-batches', 'failures', 'log']) {
      const problem = await expectProblem(api, 'GET', `jobs/${a.id}/${path}`, undefined, 410, 'file');
      expect(problem, path).toMatchObject({ code: 'outputs_replaced', job_id: a.id, owner_job_id: b.id });
      expect(JSON.stringify(problem)).not.toContain('b0.txt');
    }
    // A's record is unchanged; B's outputs are B's.
    expect((await api.call('GET', `jobs/${a.id}`)).body).toMatchObject({ status: 'Completed' });
    expect(await output(b.id, 'predictions.csv')).toBe('b0.txt,1,b0.txt\n');
    const batches = (await api.call('GET', `jobs/${b.id}/mini-batches`)).body;
    expect(batches).toMatchObject({ complete: true });
    expect(batches.value).toHaveLength(1);
    const log = (await api.call('GET', `jobs/${b.id}/log`)).body;
    expect(log.lines.join('\n')).toContain(b.id);
  });

  it('2d: an output folder may neither contain another job\'s output folder nor overlap the job\'s own input', async () => {
    const endpoint = uniqueName('nest');
    await scriptDeployment(endpoint, 'slow-lines.js', { environment_variables: { SLOW_MS: '1' } });
    await files(`data/${endpoint}/in/`, ['f0.txt', 'f1.txt']);
    const input = { x: { path: ds(`data/${endpoint}/in/`) } };
    const a = await waitForJob(api, (await started(endpoint, { inputs: input, outputs: { score: { path: ds(`out/${endpoint}/kill1/`) } } })).id);
    expect(a).toMatchObject({ status: 'Completed' });

    // Containing A's folder, at any depth up to the container's root (and spelt without the "/"): 409 naming A.
    for (const path of [ds(`out/${endpoint}/`), ds(`out/${endpoint}`)]) {
      const problem = await expectProblem(api, 'POST', `endpoints/${endpoint}/jobs`, { inputs: input, outputs: { score: { path } } }, 409, 'outputs.score.path');
      expect(problem, path).toMatchObject({ code: 'output_exists', job_id: a.id });
    }
    // Further up, other tests' jobs' folders are inside too: it is refused for one of them.
    expect(await expectProblem(api, 'POST', `endpoints/${endpoint}/jobs`, { inputs: input, outputs: { score: { path: ds('out/') } } }, 409, 'outputs.score.path')).toMatchObject({ code: 'output_exists' });
    // The container's root holds everything, the job's own input first (checked before any claim).
    expect(await expectProblem(api, 'POST', `endpoints/${endpoint}/jobs`, { inputs: input, outputs: { score: { path: ds('') } } }, 400, 'outputs.score.path')).toMatchObject({ code: 'validation_failed' });
    // Inside it, as before.
    await expectProblem(api, 'POST', `endpoints/${endpoint}/jobs`, { inputs: input, outputs: { score: { path: ds(`out/${endpoint}/kill1/sub/`) } } }, 409, 'outputs.score.path');

    // The job's own input: the same folder, inside it, or containing it is a 400 naming both fields.
    for (const path of [ds(`data/${endpoint}/in/`), ds(`data/${endpoint}/in`), ds(`data/${endpoint}/in/scored/`), ds(`data/${endpoint}/`)]) {
      const problem = await expectProblem(api, 'POST', `endpoints/${endpoint}/jobs`, { inputs: input, outputs: { score: { path } } }, 400, 'outputs.score.path');
      expect(problem.errors.map((e: { field: string }) => e.field), path).toEqual(['outputs.score.path', 'inputs.x.path']);
    }
    // A file input inside the output folder too.
    await expectProblem(api, 'POST', `endpoints/${endpoint}/jobs`, { inputs: { x: { type: 'uri_file', path: ds(`data/${endpoint}/in/f0.txt`) } }, outputs: { score: { path: ds(`data/${endpoint}/in/`) } } }, 400, 'outputs.score.path');
    // Nothing was created by the refusals, and a sibling folder is still fine.
    expect((await api.call('GET', `endpoints/${endpoint}/jobs`)).body.value.map((j: Json) => j.id)).toEqual([a.id]);
    const c = await waitForJob(api, (await started(endpoint, { inputs: input, outputs: { score: { path: ds(`out/${endpoint}/kill2/`) } } })).id);
    expect(await output(c.id, 'predictions.csv')).toBe('f0.txt,1,f0.txt\nf1.txt,1,f1.txt\n');
  });

  it('2b: loads the model as it is registered now, not a cached copy of an earlier model of the same name and version', async () => {
    const endpoint = uniqueName('model');
    await upload(host.storageConnection, { [`models/${endpoint}/A/model.txt`]: 'model A', [`models/${endpoint}/B/model.txt`]: 'model B' });
    await files(`data/${endpoint}/`, ['f.txt']);
    const name = uniqueName('m');
    await scriptDeployment(endpoint, 'model-echo.js', {}, { name, version: '1', path: ds(`models/${endpoint}/A/`) });
    const first = await waitForJob(api, (await started(endpoint, { inputs: { x: { path: ds(`data/${endpoint}/`) } } })).id);
    expect(await output(first.id, 'predictions.csv')).toBe('f.txt,model A\n');

    expect((await api.call('DELETE', `endpoints/${endpoint}`)).status).toBe(204);
    expect((await api.call('DELETE', `models/${name}/versions/1`)).status).toBe(204);
    await scriptDeployment(endpoint, 'model-echo.js', {}, { name, version: '1', path: ds(`models/${endpoint}/B/`) });
    const second = await waitForJob(api, (await started(endpoint, { inputs: { x: { path: ds(`data/${endpoint}/`) } } })).id);
    expect(await output(second.id, 'predictions.csv')).toBe('f.txt,model B\n');

    // The same folder rewritten in place is new content too.
    await upload(host.storageConnection, { [`models/${endpoint}/B/model.txt`]: 'model B, retrained' });
    const third = await waitForJob(api, (await started(endpoint, { inputs: { x: { path: ds(`data/${endpoint}/`) } } })).id);
    expect(await output(third.id, 'predictions.csv')).toBe('f.txt,"model B, retrained"\n');
    // The endpoint created again under its name lists only its own jobs.
    expect((await api.call('GET', `endpoints/${endpoint}/jobs`)).body.value.map((j: Json) => j.id).sort()).toEqual([second.id, third.id].sort());
  });
});

describe('kind 2, siblings: an input file is scored as it was listed', () => {
  it('fails the row ranges of a file rewritten while the job runs, instead of reading the new file at the old boundaries', async () => {
    const endpoint = uniqueName('rewrite');
    await scriptDeployment(endpoint, 'echo-rows.js', { mini_batch_size: 1, max_concurrency_per_instance: 1, environment_variables: { SLOW_MS: '400' } });
    const old = Array.from({ length: 40 }, (_, i) => `old-${i}`);
    await upload(host.storageConnection, { [`data/${endpoint}/big.csv`]: `h\n${old.join('\n')}\n` });
    const deploymentSplit = { by: 'rows', max_rows: 5 };
    const job = await started(endpoint, { inputs: { x: { path: ds(`data/${endpoint}/big.csv`) } }, split: deploymentSplit });
    // Once the first range has been read, the file is rewritten with longer lines.
    await waitFor(async () => ((await api.call('GET', `jobs/${job.id}`)).body.counts.mini_batches.succeeded >= 1 ? true : undefined), { timeoutMs: 30_000, intervalMs: 50, what: 'a first range' });
    await upload(host.storageConnection, { [`data/${endpoint}/big.csv`]: `h\n${old.map((l) => `NEW-${l}-NEW`).join('\n')}\n` });
    const done = await waitForJob(api, job.id);
    const predictions = (await output(done.id, 'predictions.csv')).trim().split('\n');
    // Whatever was scored was the listed file: rows of the old content, five per range, in order.
    expect(predictions.join('\n')).not.toContain('NEW');
    for (const line of predictions) expect(line).toMatch(/^\S+,old-(\d+)\|old-\d+\|old-\d+\|old-\d+\|old-\d+$/);
    expect(done.counts.items.succeeded).toBe(predictions.length);
    expect(done.counts.items.succeeded + done.counts.items.failed).toBe(8);
    expect(done.counts.items.failed).toBeGreaterThan(0);
    const errors = (await output(done.id, 'errors.jsonl')).trim().split('\n').map((l) => JSON.parse(l));
    expect(errors).toHaveLength(done.counts.items.failed);
    for (const e of errors) expect(e).toMatchObject({ file: 'big.csv', rows: expect.any(Object), reason: expect.stringContaining('was rewritten after the job listed it') });
  });
});

describe('kind 3: a path is decoded once', () => {
  it('3a: reads exactly the folder an encoded path names, with %, spaces, #, ? and unicode in names', async () => {
    const endpoint = uniqueName('enc');
    await scriptDeployment(endpoint, 'slow-lines.js', { environment_variables: { SLOW_MS: '0' } });
    const base = `data/${endpoint}/`;
    await files(`${base}100% sample/`, ['one #1.txt', 'two?.txt', 'drei ü ファイル.txt']);
    await files(`${base}50%25/`, ['literal.txt']);
    await files(`${base}50%/`, ['decoy.txt']);
    const sample = await waitForJob(api, (await started(endpoint, { inputs: { x: { path: ds(`${base}100%25%20sample/`) } } })).id);
    expect(sample.status).toBe('Completed');
    expect(sample.inputs.x.uri).toBe(ds(`${base}100%25%20sample/`));
    expect((await output(sample.id, 'predictions.csv')).split('\n').filter(Boolean).sort()).toEqual(
      ['drei ü ファイル.txt,1,drei ü ファイル.txt', 'one #1.txt,1,one #1.txt', 'two?.txt,1,two?.txt'].sort(),
    );
    const literal = await waitForJob(api, (await started(endpoint, { inputs: { x: { path: ds(`${base}50%2525/`) } } })).id);
    expect(literal.status).toBe('Completed');
    expect(await output(literal.id, 'predictions.csv')).toBe('literal.txt,1,literal.txt\n');
    // An output folder with such a name is written where it says, and its links reach it.
    const out = await waitForJob(api, (await started(endpoint, { inputs: { x: { path: ds(`${base}50%2525/`) } }, outputs: { o: { path: ds(`out/${endpoint}/a%23b%20c/`) } } })).id);
    expect(out.outputs.o.path).toBe(ds(`out/${endpoint}/a%23b%20c/`));
    expect((await readBlob(host.storageConnection, `out/${endpoint}/a#b c/predictions.csv`)).toString()).toBe('literal.txt,1,literal.txt\n');
    // A path that is not valid percent-encoding is refused at the edge, naming the field.
    const bad = await invoke(endpoint, { inputs: { x: { path: ds(`${base}100% sample/`) } } });
    expect(bad.status).toBe(400);
    expect(bad.body.errors.map((e: { field: string }) => e.field)).toEqual(['inputs.x.path']);
  });
});

describe('kind 4: script results are written by column name', () => {
  it('4a/4b: fixes the job\'s columns from the first rows, writes every row by name, and warns once about a dropped key and about unnamed surplus results', async () => {
    const endpoint = uniqueName('cols');
    await scriptDeployment(endpoint, 'keyed.js', { mini_batch_size: 1, max_concurrency_per_instance: 1 });
    // The first mini-batch returns no rows at all: it has no say in the columns.
    await files(`data/${endpoint}/keyed/`, ['0-empty.txt', 'a.txt', 'b.txt', 'c.txt', 'd.txt', 'e.txt']);
    const job = await waitForJob(api, (await started(endpoint, { inputs: { x: { path: ds(`data/${endpoint}/keyed/`) } } })).id);
    expect(job.status).toBe('Completed');
    expect(job.counts.items).toEqual({ total: 6, succeeded: 5, failed: 1 });
    expect(job.columns).toEqual(['file_name', 'score', 'label']);
    expect(await output(job.id, 'predictions.csv')).toBe('a.txt,0.1,cat\nb.txt,0.2,dog\nc.txt,0.3,\nd.txt,0.4,fox\ne.txt,0.5,owl\n');
    const log = await output(job.id, 'logs/job.log');
    const dropped = log.split('\n').filter((l) => l.includes('not among the job\'s columns'));
    expect(dropped).toHaveLength(1);
    expect(dropped[0]).toMatch(/WARNING .*: extra; dropped/);
    expect(JSON.parse(await output(job.id, 'job.json')).columns).toEqual(['file_name', 'score', 'label']);

    await files(`data/${endpoint}/surplus/`, ['surplus.txt']);
    const surplus = await waitForJob(api, (await started(endpoint, { inputs: { x: { path: ds(`data/${endpoint}/surplus/`) } } })).id);
    expect(surplus.counts.items).toEqual({ total: 1, succeeded: 1, failed: 0 });
    expect(surplus.columns).toEqual(['prediction']);
    expect(await output(surplus.id, 'predictions.csv')).toBe('1\n2\n3\n');
    expect(await output(surplus.id, 'logs/job.log')).toMatch(/WARNING .*run\(\) returned 3 results for 1 item without naming/);
  });
});

describe('kind 5: inputs as Azure ML users write them', () => {
  it('5a: a path without a type and without a trailing slash that names a folder is read as the folder; a stated type that does not match says what is there', async () => {
    const endpoint = uniqueName('infer');
    await scriptDeployment(endpoint, 'slow-lines.js', { environment_variables: { SLOW_MS: '0' } });
    await files(`data/${endpoint}/bh/in/`, ['x.txt', 'y.txt']);
    const job = await waitForJob(api, (await started(endpoint, { inputs: { data: { path: ds(`data/${endpoint}/bh/in`) } } })).id);
    expect(job.status).toBe('Completed');
    expect(job.inputs.data.type).toBe('uri_folder');
    expect(job.counts.items).toEqual({ total: 2, succeeded: 2, failed: 0 });
    // A file is still a file.
    const file = await waitForJob(api, (await started(endpoint, { inputs: { data: { path: ds(`data/${endpoint}/bh/in/x.txt`) } } })).id);
    expect(file.inputs.data.type).toBe('uri_file');
    expect(await output(file.id, 'predictions.csv')).toBe('x.txt,1,x.txt\n');
    const asFile = await invoke(endpoint, { inputs: { data: { type: 'uri_file', path: ds(`data/${endpoint}/bh/in`) } } });
    expect(asFile.status).toBe(400);
    expect(asFile.body.detail).toContain('is a folder, not a file');
    expect(asFile.body.errors.map((e: { field: string }) => e.field)).toEqual(['inputs.data.path']);
    const asFolder = await invoke(endpoint, { inputs: { data: { type: 'uri_folder', path: ds(`data/${endpoint}/bh/in/x.txt`) } } });
    expect(asFolder.status).toBe(400);
    expect(asFolder.body.detail).toContain('is a file, not a folder');
    const nothing = await invoke(endpoint, { inputs: { data: { path: ds(`data/${endpoint}/bh/nothing`) } } });
    expect(nothing.status).toBe(400);
    expect(nothing.body.code).toBe('input_not_found');
  });
});

describe('client mistakes are 4xx naming what is wrong, and create nothing', () => {
  it('refuses a data asset as an output, an asset of the other type, a deployment header that is no name, and a folder holding the job\'s file names', async () => {
    const endpoint = uniqueName('refuse');
    await scriptDeployment(endpoint, 'slow-lines.js', { environment_variables: { SLOW_MS: '0' } });
    await files(`data/${endpoint}/in/`, ['f.txt']);
    const asset = uniqueName('asset');
    expect((await api.call('PUT', `data/${asset}/versions/1`, { type: 'uri_folder', path: ds(`data/${endpoint}/in/`) })).status).toBe(201);
    const input = { x: { path: ds(`data/${endpoint}/in/`) } };
    const problems: [unknown, Record<string, string>, number, string, string][] = [
      [{ inputs: input, outputs: { o: { path: `azureml:${asset}:1` } } }, {}, 400, 'outputs.o.path', 'not a data asset'],
      [{ inputs: { x: { type: 'uri_file', path: `azureml:${asset}:1` } } }, {}, 400, 'inputs.x.path', 'is a uri_folder, not a uri_file'],
      [{ inputs: input }, { 'azureml-model-deployment': '../x' }, 400, 'azureml-model-deployment', 'azureml-model-deployment'],
    ];
    for (const [body, headers, status, field, detail] of problems) {
      const res = await invoke(endpoint, body, headers);
      expect(res.status, JSON.stringify(body)).toBe(status);
      expect(res.body.errors.map((e: { field: string }) => e.field)).toEqual([field]);
      expect(res.body.detail).toContain(detail);
    }
    // A user's own file with a name the job writes (its log) is never overwritten.
    await upload(host.storageConnection, { [`out/${endpoint}/mine/logs/job.log`]: 'my notes' });
    const taken = await invoke(endpoint, { inputs: input, outputs: { o: { path: ds(`out/${endpoint}/mine/`) } } });
    expect(taken.status).toBe(409);
    expect(taken.body.detail).toContain('logs/job.log already exists');
    expect((await readBlob(host.storageConnection, `out/${endpoint}/mine/logs/job.log`)).toString()).toBe('my notes');
    expect((await api.call('GET', `endpoints/${endpoint}/jobs`)).body.value).toEqual([]);
    // The asset's folder is as it was.
    const job = await waitForJob(api, (await started(endpoint, { inputs: { x: { path: `azureml:${asset}:1` } } })).id);
    expect(job.counts.items).toEqual({ total: 1, succeeded: 1, failed: 0 });
  });
});

describe('script results and row ranges', () => {
  it('counts the row ranges of a file right when run() names results by the file\'s base name', async () => {
    const endpoint = uniqueName('ranges');
    await scriptDeployment(endpoint, 'slow-lines.js', { mini_batch_size: 2, error_threshold: 0, environment_variables: { SLOW_MS: '0' } });
    await upload(host.storageConnection, {
      [`data/${endpoint}/big.csv`]: `h\n${Array.from({ length: 10 }, (_, i) => `r${i}`).join('\n')}\n`,
      [`data/${endpoint}/small.csv`]: 'h\ns0\n',
    });
    const job = await waitForJob(api, (await started(endpoint, { inputs: { x: { path: ds(`data/${endpoint}/`) } }, split: { by: 'rows', max_rows: 3 } })).id);
    expect(job.status).toBe('Completed');
    expect(job.counts.items).toEqual({ total: 5, succeeded: 5, failed: 0 });
    expect(await output(job.id, 'errors.jsonl')).toBe('');
    expect((await output(job.id, 'predictions.csv')).trim().split('\n')).toHaveLength(5);
  });
});

describe('kind 6: failures and state', () => {
  it('returns the same job to an idempotent retry sent after the first job wrote its outputs', async () => {
    const endpoint = uniqueName('idem');
    await scriptDeployment(endpoint, 'slow-lines.js', { environment_variables: { SLOW_MS: '0' } });
    await files(`data/${endpoint}/`, ['i.txt']);
    const body = { inputs: { x: { path: ds(`data/${endpoint}/`) } }, outputs: { score: { path: ds(`out/${endpoint}/`) } } };
    const key = uniqueName('key');
    const first = await started(endpoint, body, { 'idempotency-key': key });
    expect((await waitForJob(api, first.id)).status).toBe('Completed');
    const retry = await invoke(endpoint, body, { 'idempotency-key': key });
    expect(retry.status).toBe(202);
    expect(retry.body.id).toBe(first.id);
    expect(retry.headers.get('idempotent-replayed')).toBe('true');
    // Without the key, the same request is another job, and the folder is the first job's.
    expect((await invoke(endpoint, body)).status).toBe(409);
  });
});
