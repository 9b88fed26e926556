import SwaggerParser from '@apidevtools/swagger-parser';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Api, type Json, PENGUIN_MODEL, deploy, ds, fixtureScript, problemFields, startProductHost, upload, waitForJob } from '../support/batch.js';
import { type FnHostProcess } from '../support/fnhost.js';
import { uniqueName } from '../support/ports.js';
import { FEATURES } from '../support/penguins.js';

/**
 * What Logic Apps relies on: the long-running-operation pattern (202 + Location + Retry-After,
 * followed without knowing anything else of the API), Azure ML's REST invoke body, and the
 * connector definition served by the app.
 */

let host: FnHostProcess;
let api: Api;


beforeAll(async () => {
  ({ host, api } = await startProductHost({ BATCH_STATUS_RETRY_AFTER_SECONDS: '1', SLOW_MS: '700' }));
  await upload(host.storageConnection, {
    'models/penguins/penguins.onnx': readFileSync(PENGUIN_MODEL),
    'models/dummy/model.txt': 'a model file the custom scripts ignore',
  });
});

afterAll(async () => {
  await host?.stop();
});

interface Followed {
  /** Every answer of the status URL, in order: its HTTP status and the job's status. */
  polls: { http: number; job: string }[];
  final: Json;
}

/**
 * A client that knows only the LRO pattern, as Logic Apps' HTTP action: it sends the request,
 * then waits Retry-After seconds and GETs Location until an answer is not 202. `auth` is applied
 * to every request, as a Logic App applies its authentication to each poll.
 */
async function followLro(url: string, init: RequestInit, auth: Record<string, string>): Promise<{ started: Response; startedBody: Json } & Followed> {
  const started = await fetch(url, { ...init, headers: { ...(init.headers as Record<string, string>), ...auth } });
  const startedBody = (await started.json()) as Json;
  expect(started.status, JSON.stringify(startedBody)).toBe(202);
  const polls: Followed['polls'] = [];
  let response = started;
  for (let i = 0; i < 200; i++) {
    const location = response.headers.get('location');
    const retryAfter = response.headers.get('retry-after');
    expect(location, 'a 202 carries Location').toBeTruthy();
    expect(retryAfter, 'a 202 carries Retry-After').toMatch(/^\d+$/);
    expect(new URL(location as string).origin, 'Location is absolute').toBe(host.url);
    await new Promise((r) => setTimeout(r, Number(retryAfter) * 1000));
    response = await fetch(location as string, { headers: auth });
    const body = (await response.json()) as Json;
    polls.push({ http: response.status, job: body.status });
    if (response.status !== 202) return { started, startedBody, polls, final: body };
  }
  throw new Error('the status URL never stopped answering 202');
}

async function slowDeployment(endpoint: string, script = 'slow.js'): Promise<void> {
  const codeDir = `code/${uniqueName('c')}/`;
  await upload(host.storageConnection, { [`${codeDir}score.js`]: fixtureScript(script) });
  await deploy(api, {
    endpoint,
    deployment: 'lines',
    model: { name: 'dummy', version: '1', type: 'custom_model', path: ds('models/dummy/') },
    deploymentBody: { code_configuration: { code: ds(codeDir), scoring_script: 'score.js' }, settings: { mini_batch_size: 1 } },
  });
}

async function problem(endpoint: string, body: unknown): Promise<{ status: number; fields: string[]; body: Json }> {
  const res = await api.call('POST', `endpoints/${endpoint}/jobs`, body);
  expect(res.headers.get('content-type')).toContain('application/problem+json');
  return { status: res.status, fields: problemFields(res.body), body: res.body };
}

describe('the long-running-operation pattern (Logic Apps)', () => {
  it('a client that only follows Location and Retry-After ends with the completed job', async () => {
    const endpoint = uniqueName('lro');
    await slowDeployment(endpoint);
    const files = Object.fromEntries(['a', 'b', 'c'].map((n) => [`data/${endpoint}/${n}.txt`, `${n}\n`]));
    await upload(host.storageConnection, files);

    // The key in the query (`code`), as a Logic App's URL would carry it: the status URL keeps it.
    const url = `${host.url}/api/endpoints/${endpoint}/jobs?code=${encodeURIComponent(host.masterKey)}`;
    const run = await followLro(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ inputs: { text: { path: ds(`data/${endpoint}/`) } } }) }, {});
    const id = run.startedBody.id as string;
    expect(run.started.headers.get('location')).toBe(`${host.url}/api/jobs/${id}/status?code=${encodeURIComponent(host.masterKey)}`);
    expect(run.started.headers.get('retry-after')).toBe('1');

    // Three mini-batches of 700 ms each: the first polls find it running (202), the last one done (200).
    expect(run.polls.slice(0, -1).length).toBeGreaterThan(0);
    for (const poll of run.polls.slice(0, -1)) {
      expect(poll.http).toBe(202);
      expect(['NotStarted', 'Preparing', 'Running', 'Finalizing']).toContain(poll.job);
    }
    expect(run.polls.at(-1)).toEqual({ http: 200, job: 'Completed' });
    expect(run.final.id).toBe(id);
    expect(run.final.counts.items).toEqual({ total: 3, succeeded: 3, failed: 0 });
    // What the status URL ends with is the job resource itself.
    expect((await api.call('GET', `jobs/${id}`)).body).toEqual(run.final);
    // A finished job's status URL stays 200, without Retry-After.
    const again = await fetch(`${host.url}/api/jobs/${id}/status`, { headers: { 'x-functions-key': host.masterKey } });
    expect(again.status).toBe(200);
    expect(again.headers.get('retry-after')).toBeNull();
    // The status URL needs the key like every other route.
    expect((await fetch(`${host.url}/api/jobs/${id}/status`)).status).toBe(401);
  });

  it('a client that only follows Location and Retry-After ends with the failed job', async () => {
    const endpoint = uniqueName('lrofail');
    await slowDeployment(endpoint, 'count-lines.js');
    await upload(host.storageConnection, { [`data/${endpoint}/a-bad.txt`]: 'x\n', [`data/${endpoint}/b.txt`]: 'y\n' });

    // The key in the header: the status URL does not copy it (the client sends it on each poll).
    const run = await followLro(
      `${host.url}/api/endpoints/${endpoint}/jobs`,
      { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ inputs: { text: { path: ds(`data/${endpoint}/`) } }, settings: { error_threshold: 0 } }) },
      { 'x-functions-key': host.masterKey },
    );
    const id = run.startedBody.id as string;
    expect(run.started.headers.get('location')).toBe(`${host.url}/api/jobs/${id}/status`);
    expect(run.polls.at(-1)).toEqual({ http: 200, job: 'Failed' });
    expect(run.final.error.code).toBe('error_threshold_exceeded');
    expect((await api.call('GET', `jobs/${id}`)).body).toEqual(run.final);
  });

  it('the status URL of a job that does not exist is a 404 problem', async () => {
    const res = await api.call('GET', 'jobs/bj-nope/status');
    expect(res.status).toBe(404);
    expect(res.headers.get('content-type')).toContain('application/problem+json');
  });
});

describe("Azure ML's batch-endpoint REST invoke body", () => {
  const rows = [
    [39.1, 18.7, 181, 3750],
    [46.5, 17.9, 192, 3500],
    [50, 15.2, 218, 5700],
    [36.7, 19.3, 193, 3450],
  ];
  const csv = (part: number[][]): string => `island,${FEATURES.join(',')}\n${part.map((r) => `Biscoe,${r.join(',')}`).join('\n')}\n`;

  it('gives the same job as the native body (same inputs, settings, counts and predictions), in PascalCase and in the SDK camelCase', async () => {
    const endpoint = uniqueName('amlrest');
    const prefix = `data/${endpoint}/`;
    await upload(host.storageConnection, { [`${prefix}a.csv`]: csv(rows.slice(0, 2)), [`${prefix}b.csv`]: csv(rows.slice(2)) });
    await deploy(api, { endpoint, deployment: 'classifier', model: { name: 'penguins', version: '1', type: 'onnx', path: ds('models/penguins/penguins.onnx') } });
    const out = (name: string): string => ds(`results/${endpoint}/${name}/`);

    const native = await api.call('POST', `endpoints/${endpoint}/jobs`, {
      inputs: { penguins: { type: 'uri_folder', path: ds(prefix) } },
      outputs: { score: { type: 'uri_folder', path: out('native') } },
      settings: { mini_batch_size: 1, error_threshold: 5, output_file_name: 'scores.csv', retry_settings: { max_retries: 2, timeout: 90 } },
      resources: { instance_count: 2 },
    });
    const pascal = await api.call('POST', `endpoints/${endpoint}/jobs`, {
      properties: {
        InputData: { penguins: { JobInputType: 'UriFolder', Uri: ds(prefix) } },
        OutputData: { score: { JobOutputType: 'UriFolder', Uri: out('pascal') } },
        MiniBatchSize: 1,
        ErrorThreshold: 5,
        OutputFileName: 'scores.csv',
        RetrySettings: { MaxRetries: 2, Timeout: 'PT1M30S' },
        Compute: { InstanceCount: 2 },
      },
    });
    // What azure-ai-ml sends: camelCase keys, snake_case type names.
    const camel = await api.call('POST', `endpoints/${endpoint}/jobs`, {
      properties: {
        inputData: { penguins: { jobInputType: 'uri_folder', uri: ds(prefix) } },
        outputData: { score: { jobOutputType: 'uri_folder', uri: out('camel'), mode: 'ReadWriteMount' } },
        miniBatchSize: 1,
        errorThreshold: 5,
        outputFileName: 'scores.csv',
        retrySettings: { maxRetries: 2, timeout: 'PT90S' },
        compute: { instanceCount: 2 },
      },
    });
    for (const res of [native, pascal, camel]) expect(res.status, JSON.stringify(res.body)).toBe(202);
    const jobs = await Promise.all([native, pascal, camel].map((r) => waitForJob(api, r.body.id)));
    const predictions = await Promise.all(
      jobs.map(async (job) => {
        expect(job.status).toBe('Completed');
        const res = await fetch(`${host.url}/api/jobs/${job.id}/outputs/scores.csv`, { headers: { 'x-functions-key': host.masterKey } });
        expect(res.status).toBe(200);
        return res.text();
      }),
    );
    const [first, ...others] = jobs;
    const same = (job: Json): Json => ({ type: job.type, deployment: job.deployment, model: job.model, inputs: job.inputs, settings: job.settings, resources: job.resources, counts: job.counts, columns: job.columns });
    for (const other of others) expect(same(other)).toEqual(same(first));
    expect(first.counts.items).toEqual({ total: 2, succeeded: 2, failed: 0 });
    expect(first.settings).toMatchObject({ mini_batch_size: 1, error_threshold: 5, output_file_name: 'scores.csv', retry_settings: { max_retries: 2, timeout: 90 } });
    expect(predictions[0]?.trim().split('\n')).toHaveLength(rows.length);
    expect(predictions[1]).toBe(predictions[0]);
    expect(predictions[2]).toBe(predictions[0]);
    expect(jobs.map((j) => j.outputs.score.path)).toEqual([out('native'), out('pascal'), out('camel')]);
  });

  it('names the Azure ML field of every error: shape, values and what is found only after mapping', async () => {
    const endpoint = uniqueName('amlbad');
    const prefix = `data/${endpoint}/`;
    await upload(host.storageConnection, { [`${prefix}a.csv`]: csv(rows) });
    await deploy(api, { endpoint, deployment: 'classifier', model: { name: 'penguins', version: '1', type: 'onnx', path: ds('models/penguins/penguins.onnx') } });
    const input = { JobInputType: 'UriFolder', Uri: ds(prefix) };

    const cases: [body: unknown, status: number, field: string][] = [
      [{ properties: { InputData: { x: { JobInputType: 'UriFolder' } } } }, 400, 'properties.InputData.x.Uri'],
      [{ properties: { InputData: { x: { JobInputType: 'MLTable', Uri: ds(prefix) } } } }, 400, 'properties.InputData.x.JobInputType'],
      [{ properties: { InputData: { x: { JobInputType: 'Literal', Uri: ds(prefix) } } } }, 400, 'properties.InputData.x.Value'],
      [{ properties: { InputData: { x: input }, Dataset: 'azureml:old:1' } }, 400, 'properties.Dataset'],
      [{ properties: { InputData: { x: input }, OutputData: { y: { JobOutputType: 'UriFolder' } } } }, 400, 'properties.OutputData.y.Uri'],
      [{ properties: { InputData: { x: input }, RetrySettings: { Timeout: 'soon' } } }, 400, 'properties.RetrySettings.Timeout'],
      // Values checked by the native invoke after mapping, named as the Azure ML fields.
      [{ properties: { InputData: { x: input }, MiniBatchSize: 0 } }, 400, 'properties.MiniBatchSize'],
      [{ properties: { InputData: { x: input }, Compute: { InstanceCount: 1000 } } }, 400, 'properties.Compute.InstanceCount'],
      [{ properties: { InputData: { x: { JobInputType: 'UriFolder', Uri: ds(`data/${endpoint}-missing/`) } } } }, 400, 'properties.InputData.x.Uri'],
      [{ properties: { InputData: { x: { JobInputType: 'Literal', Value: 'append' } } } }, 400, 'properties.InputData.x'],
      [{ properties: { InputData: { x: input }, OutputData: { y: { JobOutputType: 'UriFile', Uri: ds('results/one.csv') } } } }, 400, 'properties.OutputData.y.JobOutputType'],
      [{ properties: { InputData: { x: input, z: input } } }, 400, 'properties.InputData'],
    ];
    for (const [body, status, field] of cases) {
      const res = await problem(endpoint, body);
      expect(res.status, JSON.stringify(res.body)).toBe(status);
      expect(res.fields, JSON.stringify(res.body)).toContain(field);
      // No native field name leaks into what the caller reads.
      expect(JSON.stringify(res.body), JSON.stringify(res.body)).not.toMatch(/\b(inputs|outputs|settings|resources)\.[a-z_]/);
    }
    // Nothing was created by any of them.
    expect((await api.call('GET', `endpoints/${endpoint}/jobs`)).body.value).toEqual([]);
  });
});

describe('the custom connector definition', () => {
  it('is served by the app as valid OpenAPI 2.0 with its own host, without a key', async () => {
    const res = await fetch(`${host.url}/api/connector/swagger.json`);
    expect(res.status).toBe(200);
    const doc = (await res.json()) as Json;
    expect(doc.swagger).toBe('2.0');
    expect(doc.host).toBe(new URL(host.url).host);
    expect(doc.schemes).toEqual(['http']);
    await SwaggerParser.validate(structuredClone(doc));
    expect(doc.paths['/api/jobs/{id}/status'].get).toMatchObject({ operationId: 'GetJobStatus', 'x-ms-visibility': 'internal' });
    expect(doc.paths['/api/endpoints/{endpoint}/jobs'].post.responses['202'].headers).toHaveProperty('Location');
  });
});
