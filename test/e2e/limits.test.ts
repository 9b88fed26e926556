import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Api, type Json, deploy, ds, fixtureScript, startProductHost, upload, waitForJob } from '../support/batch.js';
import { type FnHostProcess } from '../support/fnhost.js';
import { uniqueName } from '../support/ports.js';

/**
 * Issue 12's limits on a real host, configured small: each is answered with problem+json naming
 * the limit (`limit`) and its value (`limit_value`).
 */

const BODY_LIMIT = 4096;
const MAX_FILES = 5;
const MAX_MINI_BATCHES = 3;
const BURST = 12;

let host: FnHostProcess;
let api: Api;

beforeAll(async () => {
  ({ host, api } = await startProductHost({
    BATCH_MAX_REQUEST_BODY_BYTES: String(BODY_LIMIT),
    BATCH_MAX_FILES_PER_JOB: String(MAX_FILES),
    BATCH_MAX_MINI_BATCHES_PER_JOB: String(MAX_MINI_BATCHES),
    // One token an hour after the burst: the test sees the bucket run dry, never refill.
    BATCH_INVOKE_RATE_PER_MINUTE: String(1 / 60),
    BATCH_INVOKE_BURST: String(BURST),
  }));
  await upload(host.storageConnection, { 'models/dummy/model.txt': 'a model file the custom scripts ignore' });
});

afterAll(async () => {
  await host?.stop();
});

async function lineCounter(endpoint: string, settings: Record<string, unknown>): Promise<void> {
  const codeDir = `code/${endpoint}/`;
  await upload(host.storageConnection, { [`${codeDir}score.js`]: fixtureScript('count-lines.js') });
  await deploy(api, {
    endpoint,
    deployment: 'lines',
    model: { name: 'dummy', version: '1', type: 'custom_model', path: ds('models/dummy/') },
    deploymentBody: { code_configuration: { code: ds(codeDir), scoring_script: 'score.js' }, settings },
  });
}

async function files(prefix: string, count: number): Promise<string[]> {
  const names = Array.from({ length: count }, (_, i) => `f${i}.txt`);
  await upload(host.storageConnection, Object.fromEntries(names.map((n, i) => [`${prefix}${n}`, `line\n`.repeat(i + 1)])));
  return names;
}

function expectLimit(res: { status: number; body: Json; headers: Headers }, status: number, limit: string, value: number): void {
  expect(res.status, JSON.stringify(res.body)).toBe(status);
  expect(res.headers.get('content-type')).toContain('application/problem+json');
  expect(res.body).toMatchObject({ status, limit, limit_value: value });
}

describe('limits on fnhost', () => {
  it('refuses a request body over BATCH_MAX_REQUEST_BODY_BYTES with 413, declared or streamed, and stores nothing', async () => {
    const endpoint = uniqueName('big');
    const body = { description: 'x'.repeat(BODY_LIMIT) };
    expectLimit(await api.call('PUT', `endpoints/${endpoint}`, body), 413, 'BATCH_MAX_REQUEST_BODY_BYTES', BODY_LIMIT);
    expect((await api.call('GET', `endpoints/${endpoint}`)).status).toBe(404);

    // Without a Content-Length (chunked): refused once the limit has arrived.
    const chunks = [JSON.stringify(body)];
    const stream = new ReadableStream<Uint8Array>({
      pull(controller) {
        const next = chunks.shift();
        if (next === undefined) controller.close();
        else controller.enqueue(new TextEncoder().encode(next));
      },
    });
    const res = await fetch(`${host.url}/api/endpoints/${endpoint}`, {
      method: 'PUT',
      headers: { 'x-functions-key': host.masterKey, 'content-type': 'application/json' },
      body: stream,
      duplex: 'half',
    });
    expect(res.status).toBe(413);
    expect(await res.json()).toMatchObject({ code: 'payload_too_large', limit: 'BATCH_MAX_REQUEST_BODY_BYTES', limit_value: BODY_LIMIT });
    expect((await api.call('GET', `endpoints/${endpoint}`)).status).toBe(404);

    // Just under the limit is fine.
    const ok = await api.call('PUT', `endpoints/${endpoint}`, { description: 'x'.repeat(BODY_LIMIT - 100) });
    expect(ok.status).toBe(201);
  });

  it('checks every path parameter against its name pattern (400 naming the parameter)', async () => {
    const bad = 'bad$name';
    const routes: [string, string, string][] = [
      ['GET', `datastores/${bad}`, 'name'],
      ['PUT', `datastores/${bad}`, 'name'],
      ['DELETE', `datastores/${bad}`, 'name'],
      ['GET', `data/${bad}/versions`, 'name'],
      ['GET', `data/${bad}/versions/1`, 'name'],
      ['GET', `data/d1/versions/1$`, 'version'],
      ['PUT', `data/${bad}/versions/1`, 'name'],
      ['DELETE', `data/d1/versions/1$`, 'version'],
      ['GET', `models/${bad}/versions`, 'name'],
      ['GET', `models/${bad}/versions/1`, 'name'],
      ['PUT', `models/m1/versions/1$`, 'version'],
      ['DELETE', `models/${bad}/versions/1`, 'name'],
      ['GET', `components/${bad}/versions`, 'name'],
      ['GET', `components/${bad}/versions/1`, 'name'],
      ['PUT', `components/c1/versions/1$`, 'version'],
      ['DELETE', `components/${bad}/versions/1`, 'name'],
      ['GET', `endpoints/${bad}`, 'endpoint'],
      ['PUT', `endpoints/${bad}`, 'endpoint'],
      ['DELETE', `endpoints/${bad}`, 'endpoint'],
      ['GET', `endpoints/${bad}/deployments`, 'endpoint'],
      ['GET', `endpoints/ep1/deployments/${bad}`, 'deployment'],
      ['PUT', `endpoints/ep1/deployments/${bad}`, 'deployment'],
      ['DELETE', `endpoints/${bad}/deployments/d1`, 'endpoint'],
      ['GET', `endpoints/${bad}/triggers`, 'endpoint'],
      ['GET', `endpoints/ep1/triggers/${bad}`, 'name'],
      ['PUT', `endpoints/ep1/triggers/${bad}`, 'name'],
      ['DELETE', `endpoints/ep1/triggers/${bad}`, 'name'],
      ['GET', `endpoints/${bad}/jobs`, 'endpoint'],
      ['POST', `endpoints/${bad}/jobs`, 'endpoint'],
      ['GET', `jobs/bj-1/steps/${bad}/outputs/x.csv`, 'step'],
    ];
    for (const [method, path, field] of routes) {
      const res = await api.call(method, path, method === 'PUT' || method === 'POST' ? {} : undefined);
      expect(res.status, `${method} ${path}: ${JSON.stringify(res.body)}`).toBe(400);
      expect(res.headers.get('content-type')).toContain('application/problem+json');
      expect(res.body.errors?.[0]?.field, `${method} ${path}`).toBe(field);
    }
    // A job id is generated, never chosen: anything else is simply no job.
    for (const path of [`jobs/${bad}`, `jobs/${bad}/status`, `jobs/${bad}/outputs/x.csv`]) expect((await api.call('GET', path)).status).toBe(404);
    expect((await api.call('POST', `jobs/${bad}/cancel`)).status).toBe(404);
  });

  it('refuses a file list over the files or mini-batches cap at invoke (400 naming the limit)', async () => {
    const endpoint = uniqueName('flist');
    const prefix = `data/${endpoint}/`;
    const names = await files(prefix, MAX_FILES + 1);
    await lineCounter(endpoint, { mini_batch_size: 1 });
    const input = (n: number, size: number): unknown => ({
      inputs: { text: { type: 'uri_folder', path: ds(prefix), files: names.slice(0, n).map((name) => ({ name })) } },
      settings: { mini_batch_size: size },
    });
    const tooMany = await api.call('POST', `endpoints/${endpoint}/jobs`, input(MAX_FILES + 1, 10));
    expectLimit(tooMany, 400, 'BATCH_MAX_FILES_PER_JOB', MAX_FILES);
    expect(tooMany.body.errors[0].field).toBe('inputs.text.files');
    expectLimit(await api.call('POST', `endpoints/${endpoint}/jobs`, input(MAX_MINI_BATCHES + 1, 1)), 400, 'BATCH_MAX_MINI_BATCHES_PER_JOB', MAX_MINI_BATCHES);
    expect((await api.call('GET', `endpoints/${endpoint}/jobs`)).body.value).toEqual([]);

    const ok = await api.call('POST', `endpoints/${endpoint}/jobs`, input(MAX_MINI_BATCHES, 1));
    expect(ok.status).toBe(202);
    expect((await waitForJob(api, ok.body.id)).status).toBe('Completed');
  });

  it('fails a folder job over a cap at prepare, with the limit as its error code, before scoring anything', async () => {
    const endpoint = uniqueName('folder');
    await lineCounter(endpoint, { mini_batch_size: 1 });
    const small = `data/${endpoint}/small/`;
    const large = `data/${endpoint}/large/`;
    await files(small, MAX_MINI_BATCHES + 1);
    await files(large, MAX_FILES + 1);

    const overBatches = await api.call('POST', `endpoints/${endpoint}/jobs`, { inputs: { text: { path: ds(small) } } });
    expect(overBatches.status).toBe(202);
    const failed = await waitForJob(api, overBatches.body.id);
    expect(failed.status).toBe('Failed');
    expect(failed.error.code).toBe('limit_exceeded');
    expect(failed.error.message).toContain(`${MAX_MINI_BATCHES + 1} mini-batches`);
    expect(failed.counts.mini_batches).toMatchObject({ succeeded: 0, failed: 0 });
    expect(failed.counts.items).toMatchObject({ succeeded: 0, failed: 0 });
    const predictions = await api.call('GET', `jobs/${failed.id}/outputs/predictions.csv`);
    expect(predictions.status === 404 || predictions.body === undefined, JSON.stringify(predictions.body)).toBe(true);

    const overFiles = await api.call('POST', `endpoints/${endpoint}/jobs`, { inputs: { text: { path: ds(large) } }, settings: { mini_batch_size: 10 } });
    const failed2 = await waitForJob(api, overFiles.body.id);
    expect(failed2.status).toBe('Failed');
    expect(failed2.error).toMatchObject({ code: 'limit_exceeded' });
    expect(failed2.error.message).toContain('BATCH_MAX_FILES_PER_JOB');
  });

  it('limits each caller\'s invokes: 429 with Retry-After naming the limit once the burst is spent', async () => {
    const endpoint = uniqueName('nosuch');
    const statuses: number[] = [];
    let limited: { status: number; body: Json; headers: Headers } | undefined;
    for (let i = 0; i <= BURST && !limited; i++) {
      const res = await api.call('POST', `endpoints/${endpoint}/jobs`, {});
      statuses.push(res.status);
      if (res.status === 429) limited = res;
    }
    expect(limited, `statuses ${statuses.join(',')}`).toBeDefined();
    if (!limited) return;
    expect(statuses.slice(0, -1).every((s) => s === 404)).toBe(true);
    expectLimit(limited, 429, 'BATCH_INVOKE_RATE_PER_MINUTE', 1 / 60);
    const retryAfter = Number(limited.headers.get('retry-after'));
    expect(Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= 3600).toBe(true);
    expect(limited.body.retry_after_seconds).toBe(retryAfter);
    // Reading is not invoking: other routes still answer.
    expect((await api.call('GET', 'endpoints')).status).toBe(200);
  });
});
