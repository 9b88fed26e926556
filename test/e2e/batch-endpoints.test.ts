import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Api, type Json, customDeployment as deployScript, deploy, ds, invoke as invokeJob, readBlob, textFiles as uploadTextFiles, upload, waitForJob, startBatchHost } from '../support/batch.js';
import { type FnHostProcess } from '../support/fnhost.js';
import { uniqueName } from '../support/ports.js';
import { waitFor } from '../support/wait.js';
import { FEATURES, penguinCsv, referencePredictions } from '../support/penguins.js';

let host: FnHostProcess;
let api: Api;


beforeAll(async () => {
  ({ host, api } = await startBatchHost());
});

afterAll(async () => {
  await host?.stop();
});

function invoke(endpoint: string, body: unknown, headers: Record<string, string> = {}): Promise<Json> {
  return invokeJob(api, endpoint, body, headers);
}

async function output(jobId: string, file: string): Promise<{ status: number; text: string }> {
  const res = await fetch(`${host.url}/api/jobs/${jobId}/outputs/${file}`, { headers: { 'x-functions-key': host.masterKey } });
  return { status: res.status, text: await res.text() };
}

function customDeployment(endpoint: string, deployment: string, script: string, settings: Record<string, unknown> = {}, makeDefault = true): Promise<void> {
  return deployScript(host, api, { endpoint, deployment, script, settings, makeDefault });
}

function textFiles(prefix: string, names: string[]): Promise<string> {
  return uploadTextFiles(host, prefix, names);
}

describe('batch endpoints over HTTP on fnhost', () => {
  it('scores tabular files with an ONNX model: predictions equal direct onnxruntime inference row for row', async () => {
    const endpoint = uniqueName('onnx');
    const prefix = `data/${endpoint}/`;
    const fileRows: Record<string, number[][]> = {
      'a.csv': [
        [39.1, 18.7, 181, 3750],
        [46.5, 17.9, 192, 3500],
        [50, 15.2, 218, 5700],
      ],
      'b.csv': [
        [36.7, 19.3, 193, 3450],
        [49.9, 16.1, 213, 5400],
      ],
    };
    const jsonlRows = [
      [45.2, 17.8, 198, 3950],
      [38.8, 17.2, 180, 3800],
    ];
    await upload(host.storageConnection, {
      [`${prefix}a.csv`]: penguinCsv(fileRows['a.csv'] ?? []),
      [`${prefix}b.csv`]: penguinCsv(fileRows['b.csv'] ?? []),
      [`${prefix}c.jsonl`]: jsonlRows.map((r) => JSON.stringify(Object.fromEntries(FEATURES.map((f, j) => [f, r[j]])))).join('\n') + '\n',
    });
    await deploy(api, {
      endpoint,
      deployment: 'classifier',
      model: { name: 'penguins', version: '1', type: 'onnx', path: ds('models/penguins/penguins.onnx') },
      deploymentBody: { settings: { mini_batch_size: 2, max_concurrency_per_instance: 2 } },
    });
    const started = await invoke(endpoint, { inputs: { penguins: { type: 'uri_folder', path: ds(prefix) } } });
    expect(started.status).toBe('NotStarted');
    expect(started.deployment).toBe('classifier');
    const job = await waitForJob(api, started.id);
    expect(job.status).toBe('Completed');
    expect(job.counts).toEqual({ mini_batches: { total: 2, succeeded: 2, failed: 0, retried: 0 }, items: { total: 3, succeeded: 3, failed: 0 } });
    expect(job.columns).toEqual(['row', 'prediction', 'file_name']);

    const predictions = await output(job.id, 'predictions.csv');
    const expected: string[] = [];
    for (const [file, rows] of [...Object.entries(fileRows), ['c.jsonl', jsonlRows] as const]) {
      const labels = await referencePredictions(rows);
      labels.forEach((label, i) => expected.push(`${i},${label},${file}`));
    }
    expect(predictions.text.trim().split('\n')).toEqual(expected);
    const report = (await output(job.id, 'processed_mini_batches.csv')).text.trim().split('\n');
    expect(report[0]).toBe('mini_batch_id,attempts,items,succeeded,failed,seconds,status,error,started_at');
    expect(report.slice(1).map((l) => l.split(',').slice(0, 5).concat(l.split(',')[6] ?? ''))).toEqual([
      ['0', '1', '2', '2', '0', 'completed'],
      ['1', '1', '1', '1', '0', 'completed'],
    ]);
    expect((await output(job.id, 'errors.jsonl')).text).toBe('');
    const summary = JSON.parse((await output(job.id, 'job.json')).text) as { status: string; counts: unknown };
    expect(summary.status).toBe('Completed');
    expect((await output(job.id, 'logs/job.log')).text).toContain('Completed');
    // The output is where the job says it is.
    const blob = await readBlob(host.storageConnection, `azureml/${job.id}/score/predictions.csv`);
    expect(blob.toString()).toBe(predictions.text);
    expect(job.outputs.score.files.predictions).toBe(ds(`azureml/${job.id}/score/predictions.csv`));
  });

  it('splits a large CSV into row ranges that fan out over mini-batches', async () => {
    const endpoint = uniqueName('split');
    const prefix = `data/${endpoint}/`;
    const rows = Array.from({ length: 25 }, (_, i) => [35 + (i % 15), 15 + (i % 5), 180 + i, 3000 + 50 * i]);
    await upload(host.storageConnection, { [`${prefix}big.csv`]: penguinCsv(rows) });
    await deploy(api, {
      endpoint,
      deployment: 'classifier',
      model: { name: 'penguins', version: '1', type: 'onnx', path: ds('models/penguins/penguins.onnx') },
      deploymentBody: { settings: { mini_batch_size: 1, max_concurrency_per_instance: 2 }, split: { by: 'rows', max_rows: 10 } },
    });
    const job = await waitForJob(api, (await invoke(endpoint, { inputs: { data: { path: ds(`${prefix}big.csv`) } } })).id);
    expect(job.status).toBe('Completed');
    expect(job.counts.mini_batches.total).toBe(3);
    const labels = await referencePredictions(rows);
    expect((await output(job.id, 'predictions.csv')).text.trim().split('\n')).toEqual(labels.map((l, i) => `${i},${l},big.csv`));
  });

  it('runs a custom scoring script over plain files, with environment variables', async () => {
    const endpoint = uniqueName('script');
    const input = await textFiles(`data/${endpoint}/`, ['one.txt', 'two.txt', 'three.txt']);
    await customDeployment(endpoint, 'lines', 'count-lines.js', { mini_batch_size: 2, environment_variables: { GREETING: 'hi' } });
    const job = await waitForJob(api, (await invoke(endpoint, { inputs: { text: { type: 'uri_folder', path: input } } })).id);
    expect(job.status).toBe('Completed');
    expect(job.counts.items).toEqual({ total: 3, succeeded: 3, failed: 0 });
    const rows = (await output(job.id, 'predictions.csv')).text.trim().split('\n').map((l) => l.split(','));
    expect(rows.map((r) => [r[0]?.split('/').pop(), r[1], r[2]])).toEqual([
      ['one.txt', '1', 'hi'],
      ['three.txt', '3', 'hi'],
      ['two.txt', '2', 'hi'],
    ]);
    expect((await output(job.id, 'logs/job.log')).text).toContain('init #1 with GREETING=hi');
  });

  it('completes under the error threshold and fails over it, keeping partial outputs', async () => {
    const endpoint = uniqueName('thresh');
    const input = await textFiles(`data/${endpoint}/`, ['a1.txt', 'bad1.txt', 'a2.txt', 'bad2.txt', 'a3.txt', 'bad3.txt', 'a4.txt', 'a5.txt']);
    await customDeployment(endpoint, 'lines', 'count-lines.js', { mini_batch_size: 1, max_concurrency_per_instance: 1 });

    const under = await waitForJob(api, (await invoke(endpoint, { inputs: { text: { path: input } }, settings: { error_threshold: 3 } })).id);
    expect(under.status).toBe('Completed');
    expect(under.counts.items).toEqual({ total: 8, succeeded: 5, failed: 3 });
    const errors = (await output(under.id, 'errors.jsonl')).text.trim().split('\n').map((l) => JSON.parse(l) as { file: string; reason: string });
    expect(errors.map((e) => e.file).sort()).toEqual(['bad1.txt', 'bad2.txt', 'bad3.txt']);
    expect(errors[0]?.reason).toContain('no result');

    const over = await waitForJob(api, (await invoke(endpoint, { inputs: { text: { path: input } }, settings: { error_threshold: 1 } })).id);
    expect(over.status).toBe('Failed');
    expect(over.error.code).toBe('error_threshold_exceeded');
    expect(over.counts.items.failed).toBe(2);
    // Nothing was scheduled after the threshold was exceeded; what ran is kept.
    expect(over.counts.mini_batches.succeeded + over.counts.mini_batches.failed).toBeLessThan(8);
    const partial = (await output(over.id, 'predictions.csv')).text.trim().split('\n');
    expect(partial.length).toBe(over.counts.items.succeeded);
  });

  it('runs lanes side by side: a slow mini-batch holds up only its own lane, and the error threshold stops every lane', async () => {
    const endpoint = uniqueName('lanes');
    // 12 mini-batches of one file in 2 lanes: lane 0 runs mini-batches 0-5, lane 1 runs 6-11.
    const slowInput = await textFiles(`data/${endpoint}/slow/`, ['a-slow.txt', ...['02', '03', '04', '05', '06', '07', '08', '09', '10', '11', '12'].map((n) => `f${n}.txt`)]);
    await customDeployment(endpoint, 'uneven', 'uneven.js', { mini_batch_size: 1, max_concurrency_per_instance: 2 });
    const job = await waitForJob(api, (await invoke(endpoint, { inputs: { text: { path: slowInput } } })).id);
    expect(job.status).toBe('Completed');
    expect(job.counts.mini_batches).toEqual({ total: 12, succeeded: 12, failed: 0, retried: 0 });
    const finished = new Map<number, number>();
    for (const line of (await output(job.id, 'logs/job.log')).text.split('\n')) {
      const m = /^(\S+) INFO \[mini-batch (\d+) attempt 1\] completed/.exec(line);
      if (m) finished.set(Number(m[2]), Date.parse(m[1] as string));
    }
    expect(finished.size).toBe(12);
    // While mini-batch 0 took 2 s, the other lane finished all of its mini-batches.
    for (let i = 6; i < 12; i++) expect(finished.get(i)).toBeLessThan(finished.get(0) as number);

    // Lane 0 fails two items fast; lane 1's mini-batches take 300 ms each and must stop early too.
    const failInput = await textFiles(`data/${endpoint}/fail/`, ['a-bad1.txt', 'a-bad2.txt', 'a-ok3.txt', 'a-ok4.txt', 'a-ok5.txt', 'a-ok6.txt', ...[1, 2, 3, 4, 5, 6].map((n) => `b-wait${n}.txt`)]);
    const failed = await waitForJob(api, (await invoke(endpoint, { inputs: { text: { path: failInput } }, settings: { error_threshold: 1 } })).id);
    expect(failed.status).toBe('Failed');
    expect(failed.error.code).toBe('error_threshold_exceeded');
    expect(failed.counts.items.failed).toBe(2);
    expect(failed.counts.mini_batches.succeeded + failed.counts.mini_batches.failed).toBeLessThan(8);
    const report = (await output(failed.id, 'processed_mini_batches.csv')).text.trim().split('\n').slice(1);
    expect(report.some((row) => row.startsWith('11,'))).toBe(false);
  });

  it('stops a hanging scorer at the timeout, retries it, then fails its items', async () => {
    const endpoint = uniqueName('hang');
    const input = await textFiles(`data/${endpoint}/`, ['fine1.txt', 'hang.txt', 'fine2.txt']);
    await customDeployment(endpoint, 'hang', 'hang.js', { mini_batch_size: 1, max_concurrency_per_instance: 1, retry_settings: { max_retries: 1, timeout: 1 } });
    const job = await waitForJob(api, (await invoke(endpoint, { inputs: { text: { path: input } } })).id);
    expect(job.status).toBe('Completed');
    expect(job.counts.mini_batches).toEqual({ total: 3, succeeded: 2, failed: 1, retried: 1 });
    expect(job.counts.items).toEqual({ total: 3, succeeded: 2, failed: 1 });
    const report = (await output(job.id, 'processed_mini_batches.csv')).text;
    const hangRow = report.split('\n').find((l) => l.startsWith('2,'));
    expect(hangRow).toMatch(/^2,2,1,0,1,[\d.]+,timeout,/);
    expect((await output(job.id, 'errors.jsonl')).text).toContain('hang.txt');
  });

  it('applies per-job overrides without changing the deployment', async () => {
    const endpoint = uniqueName('over');
    const input = await textFiles(`data/${endpoint}/`, ['x1.txt', 'x2.txt', 'x3.txt']);
    await customDeployment(endpoint, 'lines', 'count-lines.js', { mini_batch_size: 10 });
    const job = await waitForJob(
      api,
      (await invoke(endpoint, { inputs: { text: { path: input } }, settings: { mini_batch_size: 1, output_file_name: 'scores.csv', environment_variables: { GREETING: 'job' } }, resources: { instance_count: 2 } })).id,
    );
    expect(job.status).toBe('Completed');
    expect(job.settings).toMatchObject({ mini_batch_size: 1, output_file_name: 'scores.csv', environment_variables: { GREETING: 'job' } });
    expect(job.resources).toEqual({ instance_count: 2 });
    expect(job.counts.mini_batches.total).toBe(3);
    expect((await output(job.id, 'scores.csv')).text).toContain(',job');
    expect((await output(job.id, 'predictions.csv')).status).toBe(404);
    const deployment = (await api.call('GET', `endpoints/${endpoint}/deployments/lines`)).body;
    expect(deployment.settings.mini_batch_size).toBe(10);
  });

  it('routes to the default deployment, to the header one, and refuses when there is neither', async () => {
    const endpoint = uniqueName('route');
    const input = await textFiles(`data/${endpoint}/`, ['r.txt']);
    await customDeployment(endpoint, 'blue', 'count-lines.js', { environment_variables: { GREETING: 'blue' } });
    await customDeployment(endpoint, 'green', 'count-lines.js', { environment_variables: { GREETING: 'green' } }, false);
    const body = { inputs: { text: { path: input } } };

    expect((await invoke(endpoint, body)).deployment).toBe('blue');
    const viaHeader = await waitForJob(api, (await invoke(endpoint, body, { 'azureml-model-deployment': 'green' })).id);
    expect(viaHeader.deployment).toBe('green');
    expect((await output(viaHeader.id, 'predictions.csv')).text).toContain(',green');
    expect((await api.call('PUT', `endpoints/${endpoint}`, { defaults: { deployment_name: 'green' } })).status).toBe(200);
    expect((await invoke(endpoint, body)).deployment).toBe('green');
    // The default cannot be deleted; the other one can.
    expect((await api.call('DELETE', `endpoints/${endpoint}/deployments/green`)).status).toBe(409);
    expect((await api.call('DELETE', `endpoints/${endpoint}/deployments/blue`)).status).toBe(204);

    const unknown = await api.call('POST', `endpoints/${endpoint}/jobs`, body, { 'azureml-model-deployment': 'purple' });
    expect(unknown.status).toBe(404);
    expect(unknown.body.detail).toContain('purple');

    const bare = uniqueName('bare');
    await customDeployment(bare, 'only', 'count-lines.js', {}, false);
    const none = await api.call('POST', `endpoints/${bare}/jobs`, body);
    expect(none.status).toBe(400);
    expect(none.headers.get('content-type')).toContain('application/problem+json');
    expect(none.body).toMatchObject({ code: 'no_default_deployment', header: 'azureml-model-deployment' });
    expect(none.body.detail).toContain('No valid deployments to route to');
  });

  it('writes no predictions file with summary_only: the script writes its own files', async () => {
    const endpoint = uniqueName('summ');
    const input = await textFiles(`data/${endpoint}/`, ['s1.txt', 's2.txt', 's3.txt']);
    await customDeployment(endpoint, 'sum', 'summary.js', { output_action: 'summary_only', mini_batch_size: 2 });
    const job = await waitForJob(api, (await invoke(endpoint, { inputs: { text: { path: input } } })).id);
    expect(job.status).toBe('Completed');
    expect(job.outputs.score.files.predictions).toBeUndefined();
    expect((await output(job.id, 'predictions.csv')).status).toBe(404);
    expect((await output(job.id, 'processed_mini_batches.csv')).text.trim().split('\n')).toHaveLength(3);
    const { BlobServiceClient } = await import('@azure/storage-blob');
    const container = BlobServiceClient.fromConnectionString(host.storageConnection).getContainerClient('azureml-blobstore');
    const written: string[] = [];
    for await (const blob of container.listBlobsFlat({ prefix: `azureml/${job.id}/score/summary-` })) written.push(blob.name);
    expect(written).toHaveLength(2);
    const contents = await Promise.all(written.map(async (n) => (await container.getBlobClient(n).downloadToBuffer()).toString()));
    expect(contents.join('').split('\n').filter(Boolean).sort()).toEqual(expect.arrayContaining([expect.stringContaining('s1.txt')]));
  });

  it('cancels a running job: nothing new is scheduled and it ends Canceled with partial outputs', async () => {
    const endpoint = uniqueName('cancel');
    const input = await textFiles(`data/${endpoint}/`, Array.from({ length: 20 }, (_, i) => `f${String(i).padStart(2, '0')}.txt`));
    // Two lanes of ten: both must stop.
    await customDeployment(endpoint, 'slow', 'slow.js', { mini_batch_size: 1, max_concurrency_per_instance: 2, environment_variables: { SLOW_MS: '300' } });
    const started = await invoke(endpoint, { inputs: { text: { path: input } } });
    await waitFor(async () => {
      const { body } = await api.call('GET', `jobs/${started.id}`);
      return body.counts.mini_batches.succeeded >= 2 ? body : undefined;
    });
    const canceled = await api.call('POST', `jobs/${started.id}/cancel`);
    expect(canceled.status).toBe(202);
    expect(['Canceling', 'Canceled']).toContain(canceled.body.status);
    const job = await waitForJob(api, started.id);
    expect(job.status).toBe('Canceled');
    expect(job.counts.mini_batches.succeeded).toBeLessThan(16);
    // Mini-batches in flight at the cancel finished and are counted: outputs and counts agree.
    const lines = (await output(job.id, 'predictions.csv')).text.trim().split('\n');
    expect(lines.length).toBe(job.counts.items.succeeded);
    const reported = (await output(job.id, 'processed_mini_batches.csv')).text.trim().split('\n').slice(1);
    expect(reported.length).toBe(job.counts.mini_batches.succeeded + job.counts.mini_batches.failed);
    expect((await api.call('POST', `jobs/${started.id}/cancel`)).status).toBe(409);
  });

  it('returns the same job for a retried invoke with the same Idempotency-Key', async () => {
    const endpoint = uniqueName('idem');
    const input = await textFiles(`data/${endpoint}/`, ['i.txt']);
    await customDeployment(endpoint, 'lines', 'count-lines.js');
    const body = { inputs: { text: { path: input } } };
    const key = uniqueName('key');
    const first = await api.call('POST', `endpoints/${endpoint}/jobs`, body, { 'idempotency-key': key });
    const second = await api.call('POST', `endpoints/${endpoint}/jobs`, body, { 'idempotency-key': key });
    expect(first.status).toBe(202);
    expect(second.status).toBe(202);
    expect(second.body.id).toBe(first.body.id);
    expect(second.headers.get('idempotent-replayed')).toBe('true');
    const different = await api.call('POST', `endpoints/${endpoint}/jobs`, { ...body, tags: { x: 'y' } }, { 'idempotency-key': key });
    expect(different.status).toBe(422);
    const list = await api.call('GET', `endpoints/${endpoint}/jobs`);
    expect(list.body.value.map((j: { id: string }) => j.id)).toEqual([first.body.id]);
    await waitForJob(api, first.body.id);
  });

  it('answers bad input with problem+json naming the field, and creates nothing', async () => {
    const endpoint = uniqueName('bad');
    const input = await textFiles(`data/${endpoint}/`, ['b.txt']);
    await customDeployment(endpoint, 'lines', 'count-lines.js');
    const problem = async (method: string, path: string, body: unknown, status: number, field?: string): Promise<Json> => {
      const res = await api.call(method, path, body);
      expect(res.status, `${method} ${path}`).toBe(status);
      expect(res.headers.get('content-type')).toContain('application/problem+json');
      if (field) expect(res.body.errors.map((e: { field: string }) => e.field)).toContain(field);
      return res.body;
    };
    await problem('POST', `endpoints/${endpoint}/jobs`, '{not json', 400, '(body)');
    await problem('POST', `endpoints/${endpoint}/jobs`, { inputs: { text: { path: input } }, settings: { mini_batch_size: 0 } }, 400, 'settings.mini_batch_size');
    await problem('POST', `endpoints/${endpoint}/jobs`, { inputs: { text: { path: input } }, setings: {} }, 400, 'setings');
    await problem('POST', `endpoints/${endpoint}/jobs`, { inputs: { text: { path: '/etc/passwd' } } }, 400, 'inputs.text.path');
    await problem('POST', `endpoints/${endpoint}/jobs`, { inputs: { text: { path: 'https://elsewhere.blob.core.windows.net/c/x.csv' } } }, 400, 'inputs.text.path');
    const missingStore = await problem('POST', `endpoints/${endpoint}/jobs`, { inputs: { text: { path: 'azureml://datastores/nostore/paths/x/' } } }, 404);
    expect(missingStore.detail).toContain('nostore');
    await problem('POST', `endpoints/${endpoint}/jobs`, { inputs: { text: { path: ds('data/does-not-exist/') } } }, 400, 'inputs.text.path');
    await problem('POST', `endpoints/${uniqueName('nope')}/jobs`, { inputs: { text: { path: input } } }, 404);
    const badModel = await problem('PUT', `endpoints/${endpoint}/deployments/other`, { model: 'azureml:nomodel:9' }, 404);
    expect(badModel.detail).toContain('nomodel:9');
    expect((await api.call('GET', `endpoints/${endpoint}/deployments/other`)).status).toBe(404);
    await problem('PUT', 'endpoints/x', {}, 400, 'endpoint');
    await problem('PUT', `models/m1/versions/1`, { type: 'onnx', path: 'azureml://datastores/workspaceblobstore/paths/models/penguins/penguins.onnx', extra: 1 }, 400, 'extra');

    // An output folder that already holds the output file is refused before anything starts.
    const used = await waitForJob(api, (await invoke(endpoint, { inputs: { text: { path: input } }, outputs: { out: { path: ds(`out/${endpoint}/`) } } })).id);
    expect(used.status).toBe('Completed');
    await problem('POST', `endpoints/${endpoint}/jobs`, { inputs: { text: { path: input } }, outputs: { out: { path: ds(`out/${endpoint}/`) } } }, 409, 'outputs.out.path');
    const jobs = await api.call('GET', `endpoints/${endpoint}/jobs`);
    expect(jobs.body.value).toHaveLength(1);
    expect((await api.call('GET', 'jobs/bj-does-not-exist')).status).toBe(404);
  });

  it('publishes an OpenAPI document of the API', async () => {
    const res = await fetch(`${host.url}/api/openapi.json`);
    const doc = (await res.json()) as { openapi: string; paths: Record<string, unknown>; components: { schemas: Record<string, unknown> } };
    expect(doc.openapi).toBe('3.1.0');
    expect(Object.keys(doc.paths)).toEqual(expect.arrayContaining(['/api/endpoints/{endpoint}/jobs', '/api/jobs/{id}']));
    expect(Object.keys(doc.components.schemas)).toEqual(expect.arrayContaining(['DeploymentRequest', 'InvokeRequest', 'Problem']));
  });
});
