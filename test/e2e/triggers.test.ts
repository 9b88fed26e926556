import { readFileSync } from 'node:fs';
import { BlobServiceClient } from '@azure/storage-blob';
import { beforeAll, describe, expect, it } from 'vitest';
import { type Api, type Json, PENGUIN_MODEL, WORKSPACE_CONTAINER, deploy, ds, restartableProductApp, upload, waitForJob } from '../support/batch.js';
import { cleanupsAfterAll } from '../support/cleanups.js';
import { type FnHostProcess } from '../support/fnhost.js';
import { waitFor } from '../support/wait.js';
import { penguinCsv, referencePredictions } from '../support/penguins.js';

/**
 * Blob-created triggers end to end: fnhost + Azurite, events posted to fnhost's Event Grid webhook
 * for blobs uploaded first (as an Event Grid system topic on the account would deliver them).
 */

const ENDPOINT = 'triggered';

const cleanups = cleanupsAfterAll();
let host: FnHostProcess;
let api: Api;
let storage: { connectionString: string; stop: () => Promise<void> };
let start: (port?: number) => Promise<{ host: FnHostProcess; api: Api }>;

beforeAll(async () => {
  ({ storage, start } = await restartableProductApp(cleanups, 'triggers-'));
  ({ host, api } = await start());
  // The host of the moment (a test restarts it), stopped before its storage and folder go.
  cleanups.push(() => host.stop());
  await upload(storage.connectionString, { 'models/penguins/penguins.onnx': readFileSync(PENGUIN_MODEL) });
  await deploy(api, { endpoint: ENDPOINT, deployment: 'onnx', model: { name: 'penguins', version: '1', type: 'onnx', path: ds('models/penguins/') } });
});

const ROWS: number[][] = [
  [39.1, 18.7, 181, 3750],
  [46.5, 17.9, 192, 3500],
  [50, 15.2, 218, 5700],
  [36.7, 19.3, 193, 3450],
  [49.9, 16.1, 213, 5400],
];

/** The blob's URL as storage events give it (the emulator's path-style URL). */
function blobUrl(name: string): string {
  const container = BlobServiceClient.fromConnectionString(storage.connectionString).getContainerClient(WORKSPACE_CONTAINER);
  return container.getBlobClient(name).url;
}

/** Uploads one blob and returns its eTag (as events carry it, without quotes). */
async function put(name: string, content: string): Promise<string> {
  const container = BlobServiceClient.fromConnectionString(storage.connectionString).getContainerClient(WORKSPACE_CONTAINER);
  await container.createIfNotExists();
  const res = await container.getBlockBlobClient(name).upload(content, Buffer.byteLength(content));
  return (res.etag ?? '').replace(/"/g, '');
}

let eventCounter = 0;
interface EventOptions {
  id?: string;
  api?: string;
  url: string;
  /** The blob's name for the subject (else the URL's path, decoded). */
  name?: string;
  etag: string;
  length?: number;
  schema?: 'eventgrid' | 'cloudevents';
}

function blobCreatedEvent(o: EventOptions): Record<string, unknown> {
  const id = o.id ?? `ev-${process.pid}-${++eventCounter}`;
  const path = o.name ?? decodeURIComponent(new URL(o.url).pathname.split('/').slice(3).join('/'));
  const data = { api: o.api ?? 'PutBlob', clientRequestId: id, requestId: id, eTag: o.etag, contentType: 'text/csv', contentLength: o.length ?? 100, blobType: 'BlockBlob', url: o.url, sequencer: '00000000000000000000000000000001', storageDiagnostics: { batchId: 'b' } };
  const subject = `/blobServices/default/containers/${WORKSPACE_CONTAINER}/blobs/${path}`;
  if (o.schema === 'cloudevents') {
    return { specversion: '1.0', id, source: '/subscriptions/x/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/devstoreaccount1', subject, type: 'Microsoft.Storage.BlobCreated', time: new Date().toISOString(), data };
  }
  return { id, topic: '/subscriptions/x/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/devstoreaccount1', subject, eventType: 'Microsoft.Storage.BlobCreated', eventTime: new Date().toISOString(), data, dataVersion: '', metadataVersion: '1' };
}

async function send(events: Record<string, unknown>[], target = host): Promise<number> {
  const res = await fetch(`${target.url}/runtime/webhooks/EventGrid?functionName=blobCreated&code=${target.masterKey}`, {
    method: 'POST',
    headers: { 'aeg-event-type': 'Notification', 'content-type': 'application/json' },
    body: JSON.stringify(events),
  });
  await res.text();
  return res.status;
}

async function putRule(name: string, body: Record<string, unknown>): Promise<void> {
  const res = await api.call('PUT', `endpoints/${ENDPOINT}/triggers/${name}`, body);
  if (res.status !== 201 && res.status !== 200) throw new Error(`PUT trigger ${name}: ${res.status} ${JSON.stringify(res.body)}`);
}

/** The endpoint's jobs made by a rule, oldest first. */
async function jobsOf(rule: string, target: Api = api): Promise<Json[]> {
  const res = await target.call('GET', `endpoints/${ENDPOINT}/jobs?top=100`);
  return (res.body.value as Json[]).filter((j) => j.tags?.trigger === rule).reverse();
}

async function waitForJobs(rule: string, count: number, target: Api = api): Promise<Json[]> {
  return waitFor(
    async () => {
      const jobs = await jobsOf(rule, target);
      return jobs.length >= count ? jobs : undefined;
    },
    { timeoutMs: 60_000, intervalMs: 200, what: `${count} job(s) of trigger ${rule}` },
  );
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function filesOf(job: Json): string[] {
  return (job.inputs.input_data.files as { name: string }[]).map((f) => f.name).sort();
}

async function output(jobId: string, file: string): Promise<string> {
  const res = await fetch(`${host.url}/api/jobs/${jobId}/outputs/${file}`, { headers: { 'x-functions-key': host.masterKey } });
  expect(res.status).toBe(200);
  return res.text();
}

describe('blob-created trigger rules', () => {
  it('are validated when they are PUT, naming the field', async () => {
    const ok = { source: { datastore: 'workspaceblobstore', path_prefix: 'incoming/x/' } };
    const missingEndpoint = await api.call('PUT', 'endpoints/nosuchendpoint/triggers/r1', ok);
    expect(missingEndpoint.status).toBe(404);
    const cases: [Record<string, unknown>, number, string][] = [
      [{ ...ok, deployment: 'nosuchdeployment' }, 404, 'deployment'],
      [{ source: { datastore: 'nosuchstore', path_prefix: 'x/' } }, 404, 'source.datastore'],
      [{ ...ok, batching: { window_seconds: 0 } }, 400, 'batching.window_seconds'],
      [{ ...ok, batching: { max_files: 100000 } }, 400, 'batching.max_files'],
      [{ source: { datastore: 'workspaceblobstore', path_prefix: 'x/', suffixes: ['a/b'] } }, 400, 'source.suffixes[0]'],
      [{ ...ok, output_path: ds('out/{date}/') }, 400, 'output_path'],
      [{ ...ok, output_path: ds('out/{when}/{job_id}/') }, 400, 'output_path'],
      [{ ...ok, output_path: 'azureml://datastores/nosuchstore/paths/out/{job_id}/' }, 404, 'output_path'],
      [{ ...ok, output_path: ds('incoming/x/out/{job_id}/') }, 400, 'output_path'],
      [{ source: { datastore: 'workspaceblobstore', path_prefix: '' } }, 400, 'source.path_prefix'],
      [{ ...ok, settings: { mini_batch_size: 0 } }, 400, 'settings.mini_batch_size'],
      [{ ...ok, unknown: 1 }, 400, 'unknown'],
    ];
    for (const [body, status, field] of cases) {
      const res = await api.call('PUT', `endpoints/${ENDPOINT}/triggers/r1`, body);
      expect({ field, status: res.status }).toEqual({ field, status });
      expect(res.headers.get('content-type')).toContain('application/problem+json');
      expect(JSON.stringify(res.body)).toContain(field);
    }
    // An endpoint with no default deployment: the rule must name one (each batch would be lost).
    expect((await api.call('PUT', 'endpoints/nodefault', {})).status).toBe(201);
    const noDefault = await api.call('PUT', 'endpoints/nodefault/triggers/r1', ok);
    expect(noDefault.status).toBe(400);
    expect(noDefault.headers.get('content-type')).toContain('application/problem+json');
    expect(JSON.stringify(noDefault.body)).toContain('"field":"deployment"');
    expect(JSON.stringify(noDefault.body)).toContain('no default deployment; name one');
    const created = await api.call('PUT', `endpoints/${ENDPOINT}/triggers/r1`, { ...ok, output_path: ds('out/{rule}/{date}/{job_id}/') });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({ name: 'r1', source: { datastore: 'workspaceblobstore', path_prefix: 'incoming/x/', suffixes: null }, batching: { window_seconds: 30, max_files: 100 }, enabled: true, deployment: null });
    expect((await api.call('PUT', `endpoints/${ENDPOINT}/triggers/r1`, { ...ok, enabled: false })).status).toBe(200);
    expect((await api.call('GET', `endpoints/${ENDPOINT}/triggers/r1`)).body.enabled).toBe(false);
    expect((await api.call('GET', `endpoints/${ENDPOINT}/triggers`)).body.value.map((t: Json) => t.name)).toContain('r1');
    expect((await api.call('DELETE', `endpoints/${ENDPOINT}/triggers/r1`)).status).toBe(204);
    expect((await api.call('GET', `endpoints/${ENDPOINT}/triggers/r1`)).status).toBe(404);
  });

  it('scores the files that arrive within a window as one job whose input is exactly those files', async () => {
    await putRule('window', {
      source: { datastore: 'workspaceblobstore', path_prefix: 'incoming/window/', suffixes: ['.csv'] },
      output_path: ds('triggered/{rule}/{date}/{job_id}/'),
      batching: { window_seconds: 2, max_files: 10 },
    });
    const parts = [ROWS.slice(0, 2), ROWS.slice(2, 3), ROWS.slice(3)];
    const names = ['a.csv', 'b.csv', 'sub/c.csv'];
    const etags = await Promise.all(names.map((n, i) => put(`incoming/window/${n}`, penguinCsv(parts[i] as number[][]))));
    // In the folder, but no event named it: not scored.
    await put('incoming/window/not-announced.csv', penguinCsv(ROWS));
    expect(await send([blobCreatedEvent({ url: blobUrl('incoming/window/a.csv'), etag: etags[0] as string })])).toBe(202);
    expect(await send([blobCreatedEvent({ url: blobUrl('incoming/window/b.csv'), etag: etags[1] as string, schema: 'cloudevents' })])).toBe(202);
    // A suffix the rule does not take, and a write that is not finished: neither starts anything.
    const txt = await put('incoming/window/notes.txt', 'hello');
    expect(await send([blobCreatedEvent({ url: blobUrl('incoming/window/notes.txt'), etag: txt }), blobCreatedEvent({ api: 'PutBlock', url: blobUrl('incoming/window/sub/c.csv'), etag: 'x' })])).toBe(202);
    expect(await send([blobCreatedEvent({ url: blobUrl('incoming/window/sub/c.csv'), etag: etags[2] as string, api: 'PutBlockList' })])).toBe(202);

    const [created] = await waitForJobs('window', 1);
    const job = await waitForJob(api, created.id);
    expect(job.status).toBe('Completed');
    expect(job.invoked_by).toMatchObject({ via: 'event_grid', trigger: { rule: 'window' } });
    expect(job.inputs.input_data).toMatchObject({ type: 'uri_folder', uri: ds('incoming/window/'), file_count: 3 });
    expect(filesOf(job)).toEqual(['a.csv', 'b.csv', 'sub/c.csv']);
    expect(job.inputs.input_data.files.find((f: Json) => f.name === 'a.csv').etag).toBe(etags[0]);
    expect(job.outputs.score.path).toMatch(new RegExp(`/paths/triggered/window/\\d{4}-\\d{2}-\\d{2}/${job.id}/$`));
    expect(job.counts.items).toEqual({ total: 3, succeeded: 3, failed: 0 });

    const predictions = (await output(job.id, 'predictions.csv')).trim().split('\n').map((l) => l.split(','));
    expect(predictions).toHaveLength(ROWS.length);
    for (const [i, name] of names.entries()) {
      const expected = await referencePredictions(parts[i] as number[][]);
      const got = predictions.filter((p) => p[2] === name).map((p) => p[1]);
      expect({ name, got }).toEqual({ name, got: expected });
    }
    await sleep(3000);
    expect(await jobsOf('window')).toHaveLength(1);
  });

  it('leaves out a file whose name no file list can hold, scores the rest, and keeps a raw "#" in a URL\'s name', async () => {
    await putRule('names', { source: { datastore: 'workspaceblobstore', path_prefix: 'incoming/names/' }, batching: { window_seconds: 2, max_files: 10 } });
    const good = await put('incoming/names/a.csv', penguinCsv(ROWS.slice(0, 2)));
    const bad = await put('incoming/names//dbl.csv', penguinCsv(ROWS.slice(2, 3)));
    const hash = await put('incoming/names/h#1.csv', penguinCsv(ROWS.slice(3, 4)));
    const rawUrl = `${blobUrl('incoming/names/a.csv').replace(/a\.csv$/, '')}h#1.csv`; // as Azure sends it: not encoded
    expect(
      await send([
        blobCreatedEvent({ url: blobUrl('incoming/names/a.csv'), etag: good }),
        blobCreatedEvent({ url: blobUrl('incoming/names//dbl.csv'), name: 'incoming/names//dbl.csv', etag: bad }),
        blobCreatedEvent({ url: rawUrl, name: 'incoming/names/h#1.csv', etag: hash }),
      ]),
    ).toBe(202);
    const [created] = await waitForJobs('names', 1);
    const job = await waitForJob(api, created.id);
    expect(job.status).toBe('Completed');
    expect(filesOf(job)).toEqual(['a.csv', 'h#1.csv']);
    expect(job.counts.items).toEqual({ total: 2, succeeded: 2, failed: 0 });
    expect((await api.call('GET', `endpoints/${ENDPOINT}/triggers/names`)).body.last_error).toBeNull();
  });

  it('starts the next job with the files beyond max_files', async () => {
    await putRule('full', { source: { datastore: 'workspaceblobstore', path_prefix: 'incoming/full/' }, batching: { window_seconds: 2, max_files: 2 } });
    const names = ['f1.csv', 'f2.csv', 'f3.csv', 'f4.csv', 'f5.csv'];
    const etags = await Promise.all(names.map((n) => put(`incoming/full/${n}`, penguinCsv(ROWS.slice(0, 1)))));
    for (const [i, n] of names.entries()) expect(await send([blobCreatedEvent({ url: blobUrl(`incoming/full/${n}`), etag: etags[i] as string })])).toBe(202);
    const jobs = await waitForJobs('full', 3);
    await sleep(3000);
    const all = await jobsOf('full');
    expect(all).toHaveLength(3);
    const sets = all.map(filesOf);
    expect(sets.map((s) => s.length).sort()).toEqual([1, 2, 2]);
    expect(sets.flat().sort()).toEqual(names);
    for (const job of jobs) expect((await waitForJob(api, job.id)).status).toBe('Completed');
  });

  it('fails the item of a file rewritten before the job reads it, not the job', async () => {
    await putRule('changed', { source: { datastore: 'workspaceblobstore', path_prefix: 'incoming/changed/' }, settings: { mini_batch_size: 1 }, batching: { window_seconds: 1, max_files: 10 } });
    const a = await put('incoming/changed/a.csv', penguinCsv(ROWS.slice(0, 2)));
    const b = await put('incoming/changed/b.csv', penguinCsv(ROWS.slice(2, 3)));
    expect(await send([blobCreatedEvent({ url: blobUrl('incoming/changed/a.csv'), etag: a }), blobCreatedEvent({ url: blobUrl('incoming/changed/b.csv'), etag: b })])).toBe(202);
    // Rewritten while the batch is open: its event named the version that is gone now.
    await put('incoming/changed/b.csv', penguinCsv(ROWS));
    const [created] = await waitForJobs('changed', 1);
    const job = await waitForJob(api, created.id);
    expect(job.status).toBe('Completed');
    expect(job.settings.mini_batch_size).toBe(1);
    expect(job.counts.items).toEqual({ total: 2, succeeded: 1, failed: 1 });
    const errors = (await output(job.id, 'errors.jsonl')).trim().split('\n').map((l) => JSON.parse(l));
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({ file: 'b.csv' });
    expect(errors[0].reason).toContain('rewritten');
    expect((await output(job.id, 'predictions.csv')).trim().split('\n')).toHaveLength(2);
  });

  it('makes one job of duplicates: an event delivered 3 times, several events for one write, CreateFile then FlushWithClose', async () => {
    await putRule('dups', { source: { datastore: 'workspaceblobstore', path_prefix: 'incoming/dups/' }, batching: { window_seconds: 1, max_files: 10 } });
    const a = await put('incoming/dups/a.csv', penguinCsv(ROWS.slice(0, 1)));
    const b = await put('incoming/dups/b.csv', penguinCsv(ROWS.slice(1, 2)));
    const c = await put('incoming/dups/c.csv', penguinCsv(ROWS.slice(2, 3)));
    const redelivered = blobCreatedEvent({ url: blobUrl('incoming/dups/a.csv'), etag: a });
    // One delivery holding the same event twice, plus two events of one write of b, at once.
    expect(await send([redelivered, redelivered, blobCreatedEvent({ url: blobUrl('incoming/dups/b.csv'), etag: b }), blobCreatedEvent({ url: blobUrl('incoming/dups/b.csv'), etag: b, schema: 'cloudevents' })])).toBe(202);
    // ADLS Gen2: a 0-byte CreateFile first (does not count), then FlushWithClose of the same file.
    expect(await send([blobCreatedEvent({ api: 'CreateFile', url: blobUrl('incoming/dups/c.csv'), etag: 'created-empty', length: 0 })])).toBe(202);
    expect(await send([blobCreatedEvent({ api: 'FlushWithClose', url: blobUrl('incoming/dups/c.csv'), etag: c })])).toBe(202);
    const [first] = await waitForJobs('dups', 1);
    expect(filesOf(first)).toEqual(['a.csv', 'b.csv', 'c.csv']);
    // Redeliveries after the batch has closed and its job exists: still nothing new.
    expect(await send([redelivered])).toBe(202);
    expect(await send([blobCreatedEvent({ url: blobUrl('incoming/dups/b.csv'), etag: b, api: 'CopyBlob' })])).toBe(202);
    expect(await send([blobCreatedEvent({ api: 'FlushWithClose', url: blobUrl('incoming/dups/c.csv'), etag: c })])).toBe(202);
    await sleep(2500);
    expect(await jobsOf('dups')).toHaveLength(1);
    const job = await waitForJob(api, first.id);
    expect(job.status).toBe('Completed');
    expect(job.counts.items).toEqual({ total: 3, succeeded: 3, failed: 0 });
  });

  it('ignores events for accounts and containers no datastore registers, and acknowledges malformed ones', async () => {
    await putRule('strangers', { source: { datastore: 'workspaceblobstore', path_prefix: 'incoming/strangers/' }, batching: { window_seconds: 1, max_files: 10 } });
    const etag = await put('incoming/strangers/a.csv', penguinCsv(ROWS.slice(0, 1)));
    const otherContainer = blobUrl('incoming/strangers/a.csv').replace(`/${WORKSPACE_CONTAINER}/`, '/othercontainer/');
    expect(await send([blobCreatedEvent({ url: `https://unknownacct.blob.core.windows.net/${WORKSPACE_CONTAINER}/incoming/strangers/a.csv`, etag })])).toBe(202);
    expect(await send([blobCreatedEvent({ url: otherContainer, etag })])).toBe(202);
    // A BlobCreated event without a blob URL: acknowledged (redelivering it cannot help), nothing started.
    const noUrl = blobCreatedEvent({ url: blobUrl('incoming/strangers/a.csv'), etag });
    delete (noUrl['data'] as Record<string, unknown>)['url'];
    expect(await send([noUrl])).toBe(202);
    // Not an event at all: fnhost's webhook answers 400 without invoking the function.
    expect(await send([{ id: 'x' }])).toBe(400);
    await sleep(2500);
    expect(await jobsOf('strangers')).toHaveLength(0);
    // The host is still serving.
    expect((await api.call('GET', `endpoints/${ENDPOINT}/triggers/strangers`)).status).toBe(200);
  });

  it('runs a batch once when the host is killed during its window and restarted', async () => {
    await putRule('crash', { source: { datastore: 'workspaceblobstore', path_prefix: 'incoming/crash/' }, batching: { window_seconds: 3, max_files: 10 } });
    const a = await put('incoming/crash/a.csv', penguinCsv(ROWS.slice(0, 2)));
    const b = await put('incoming/crash/b.csv', penguinCsv(ROWS.slice(2)));
    expect(await send([blobCreatedEvent({ url: blobUrl('incoming/crash/a.csv'), etag: a }), blobCreatedEvent({ url: blobUrl('incoming/crash/b.csv'), etag: b })])).toBe(202);
    await sleep(500);
    expect(await jobsOf('crash')).toHaveLength(0);
    await host.kill();

    ({ host, api } = await start(host.port));
    const [created] = await waitForJobs('crash', 1);
    const job = await waitForJob(api, created.id);
    expect(job.status).toBe('Completed');
    expect(filesOf(job)).toEqual(['a.csv', 'b.csv']);
    expect(job.counts.items).toEqual({ total: 2, succeeded: 2, failed: 0 });
    // The same events again after the restart (Event Grid redelivering what it never saw acknowledged).
    expect(await send([blobCreatedEvent({ url: blobUrl('incoming/crash/a.csv'), etag: a })])).toBe(202);
    await sleep(4000);
    expect(await jobsOf('crash')).toHaveLength(1);
  });
});
