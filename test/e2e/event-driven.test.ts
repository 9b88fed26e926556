/**
 * The event-driven path end to end, the way a user meets it: fnhost runs the app with
 * local.settings.json.example's Event Grid settings (blob writes to fnhost's Azurite are
 * Microsoft.Storage.BlobCreated events delivered to the `blobCreated` function; job events go to
 * the local topic `batch-jobs` through BATCH_EVENTS_TOPIC_ENDPOINT = %FNHOST_EVENTGRID_BATCH_JOBS_ENDPOINT%),
 * and a webhook sink subscribes to that topic. Files are uploaded with the storage SDK; nothing is
 * posted to the Event Grid webhook by hand.
 */
import { readFileSync } from 'node:fs';
import { BlobServiceClient } from '@azure/storage-blob';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readLocalSettings, withTopicSubscription } from '../../scripts/lib/local-stack.js';
import { type Api, type Json, PENGUIN_MODEL, WORKSPACE_CONTAINER, deploy, ds, startProductHost, upload, waitForJob } from '../support/batch.js';
import { type FnHostProcess } from '../support/fnhost.js';
import { WebhookSink } from '../support/fnhost-eventgrid.js';
import { waitFor } from '../support/wait.js';
import { FEATURES, penguinCsv, referencePredictions } from '../support/penguins.js';

const ENDPOINT = 'dropped';
const TOPIC = 'batch-jobs';

let host: FnHostProcess;
let api: Api;
const sink = new WebhookSink();

beforeAll(async () => {
  await sink.listen();
  // The example's settings, with two subscribers of the job events topic: one per delivery schema.
  let settings = readLocalSettings();
  settings = withTopicSubscription(settings, TOPIC, { name: 'sink-cloudevents', endpoint: '%SINK_URL%/ce', eventDeliverySchema: 'CloudEventSchemaV1_0' });
  settings = withTopicSubscription(settings, TOPIC, { name: 'sink-eventgrid', endpoint: '%SINK_URL%/eg', eventDeliverySchema: 'EventGridSchema' });
  ({ host, api } = await startProductHost({ SINK_URL: sink.url }, { localSettings: settings }));
  await upload(host.storageConnection, { 'models/penguins/penguins.onnx': readFileSync(PENGUIN_MODEL) });
  await deploy(api, { endpoint: ENDPOINT, deployment: 'onnx', model: { name: 'penguins', version: '1', type: 'onnx', path: ds('models/penguins/') } });
});

afterAll(async () => {
  await host?.stop();
  await sink.close();
});

const ROWS: number[][] = [
  [39.1, 18.7, 181, 3750],
  [46.5, 17.9, 192, 3500],
  [50, 15.2, 218, 5700],
  [36.7, 19.3, 193, 3450],
  [49.9, 16.1, 213, 5400],
  [45.2, 14.8, 212, 5200],
  [38.6, 21.2, 191, 3800],
];

/** Uploads one blob with the SDK, as a user would, and returns its eTag (as events carry it, without quotes). */
async function put(name: string, content: string): Promise<string> {
  const container = BlobServiceClient.fromConnectionString(host.storageConnection).getContainerClient(WORKSPACE_CONTAINER);
  await container.createIfNotExists();
  const res = await container.getBlockBlobClient(name).upload(content, Buffer.byteLength(content));
  return (res.etag ?? '').replace(/"/g, '');
}

async function putRule(name: string, body: Record<string, unknown>): Promise<void> {
  const res = await api.call('PUT', `endpoints/${ENDPOINT}/triggers/${name}`, body);
  if (res.status !== 201 && res.status !== 200) throw new Error(`PUT trigger ${name}: ${res.status} ${JSON.stringify(res.body)}`);
}

/** The endpoint's jobs made by a rule, oldest first. */
async function jobsOf(rule: string): Promise<Json[]> {
  const res = await api.call('GET', `endpoints/${ENDPOINT}/jobs?top=100`);
  return (res.body.value as Json[]).filter((j) => j.tags?.trigger === rule).reverse();
}

async function waitForJobs(rule: string, count: number): Promise<Json[]> {
  return waitFor(
    async () => {
      const jobs = await jobsOf(rule);
      return jobs.length >= count ? jobs : undefined;
    },
    { timeoutMs: 60_000, intervalMs: 200, what: `${count} job(s) of trigger ${rule}` },
  );
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A triggered job's files, `name@etag`, sorted. */
function filesOf(job: Json): string[] {
  return (job.inputs.input_data.files as { name: string; etag: string }[]).map((f) => `${f.name}@${f.etag}`).sort();
}

async function output(jobId: string, file: string): Promise<string> {
  const res = await fetch(`${host.url}/api/jobs/${jobId}/outputs/${file}`, { headers: { 'x-functions-key': host.masterKey } });
  expect(res.status).toBe(200);
  return res.text();
}

/** Predicted labels per file of a completed job's predictions.csv (`row,prediction,file_name`). */
async function predictionsByFile(jobId: string): Promise<Record<string, string[]>> {
  const byFile: Record<string, string[]> = {};
  for (const line of (await output(jobId, 'predictions.csv')).trim().split('\n')) {
    const [, label, file] = line.split(',');
    (byFile[file as string] ??= []).push(label as string);
  }
  return byFile;
}

/** The job events of a job a sink path accepted, deduplicated by id, once its terminal event is in. */
async function eventsOf(path: '/ce' | '/eg', jobId: string): Promise<Record<string, Json>[]> {
  const subject = `endpoints/${ENDPOINT}/jobs/${jobId}`;
  const status = (e: Json): string => e.data?.status;
  return waitFor(
    () => {
      const events = sink.delivered(path).filter((e) => e['subject'] === subject);
      return events.some((e) => ['Completed', 'Failed', 'Canceled'].includes(status(e))) ? events : undefined;
    },
    { timeoutMs: 30_000, intervalMs: 100, what: `the terminal job event of ${jobId} at ${path}` },
  );
}

const TERMINAL_TYPE: Record<string, string> = { Completed: 'BatchEndpoints.JobCompleted', Failed: 'BatchEndpoints.JobFailed', Canceled: 'BatchEndpoints.JobCanceled' };

/**
 * Both subscribers got the job's transitions, one event each, in order: CloudEvents at /ce, the
 * same events in the Event Grid schema at /eg. Returns the CloudEvents.
 */
async function expectTransitions(job: Json, statuses: string[]): Promise<Record<string, Json>[]> {
  const ce = await eventsOf('/ce', job.id);
  expect(ce.map((e) => e['data'].status)).toEqual(statuses);
  ce.forEach((e, i) => {
    const status = statuses[i] as string;
    expect(e).toMatchObject({ specversion: '1.0', id: `${job.id}:${i + 1}:${status}`, type: TERMINAL_TYPE[status] ?? 'BatchEndpoints.JobStateChanged', subject: `endpoints/${ENDPOINT}/jobs/${job.id}` });
    expect(e['data']).toMatchObject({ job_id: job.id, endpoint: ENDPOINT, deployment: 'onnx', status, sequence: i + 1, previous_status: i === 0 ? null : statuses[i - 1] });
  });
  // One notification per transition: nothing was delivered twice (the sink accepted each at once).
  expect(sink.notifications('/ce').filter((n) => n.event['subject'] === `endpoints/${ENDPOINT}/jobs/${job.id}`)).toHaveLength(statuses.length);
  const eg = await eventsOf('/eg', job.id);
  expect(eg.map((e) => ({ id: e['id'], eventType: e['eventType'], status: e['data'].status }))).toEqual(ce.map((e) => ({ id: e['id'], eventType: e['type'], status: e['data'].status })));
  expect(sink.notifications('/eg').filter((n) => n.event['subject'] === `endpoints/${ENDPOINT}/jobs/${job.id}`)).toHaveLength(statuses.length);
  const last = ce.at(-1) as Record<string, Json>;
  expect(last['data'].counts).toEqual(job.counts);
  return ce;
}

describe('files uploaded under a trigger rule start jobs through fnhost\'s Event Grid', () => {
  let completed: Json;

  it('scores the files uploaded within a window as one job of exactly those files', async () => {
    await putRule('window', {
      source: { datastore: 'workspaceblobstore', path_prefix: 'incoming/window/', suffixes: ['.csv'] },
      output_path: ds('scored/{rule}/{date}/{job_id}/'),
      batching: { window_seconds: 3, max_files: 50 },
    });
    const parts: Record<string, number[][]> = { 'a.csv': ROWS.slice(0, 2), 'b.csv': ROWS.slice(2, 3), 'C.CSV': ROWS.slice(3, 5), 'sub/d.csv': ROWS.slice(5) };
    const [etags] = await Promise.all([
      Promise.all(Object.entries(parts).map(async ([name, rows]) => `${name}@${await put(`incoming/window/${name}`, penguinCsv(rows))}`)),
      // Not for the rule: another suffix, and a .csv outside its prefix.
      put('incoming/window/notes.txt', 'not data'),
      put('incoming/elsewhere.csv', penguinCsv(ROWS)),
    ]);

    const [created] = await waitForJobs('window', 1);
    const job = await waitForJob(api, created.id);
    expect(job.status).toBe('Completed');
    expect(job.invoked_by).toMatchObject({ via: 'event_grid', trigger: { rule: 'window' } });
    expect(job.inputs.input_data).toMatchObject({ type: 'uri_folder', uri: ds('incoming/window/'), file_count: 4 });
    expect(filesOf(job)).toEqual([...etags].sort());
    expect(job.outputs.score.path).toMatch(new RegExp(`/paths/scored/window/\\d{4}-\\d{2}-\\d{2}/${job.id}/$`));
    expect(job.counts.items).toEqual({ total: 4, succeeded: 4, failed: 0 });
    const predicted = await predictionsByFile(job.id);
    expect(Object.keys(predicted).sort()).toEqual(Object.keys(parts).sort());
    for (const [name, rows] of Object.entries(parts)) expect({ name, got: predicted[name] }).toEqual({ name, got: await referencePredictions(rows) });

    // A window later: still that one job.
    await sleep(4000);
    expect(await jobsOf('window')).toHaveLength(1);
    completed = job;
  });

  it('starts the next job with the files beyond max_files', async () => {
    await putRule('full', { source: { datastore: 'workspaceblobstore', path_prefix: 'incoming/full/' }, batching: { window_seconds: 3, max_files: 3 } });
    const names = ['f1.csv', 'f2.csv', 'f3.csv', 'f4.csv', 'f5.csv', 'f6.csv', 'f7.csv'];
    const etags = await Promise.all(names.map(async (n, i) => `${n}@${await put(`incoming/full/${n}`, penguinCsv(ROWS.slice(i, i + 1)))}`));
    const jobs = await waitForJobs('full', 3);
    await sleep(4000);
    const all = await jobsOf('full');
    expect(all).toHaveLength(3);
    const sets = all.map(filesOf);
    expect(sets.map((s) => s.length).sort()).toEqual([1, 3, 3]);
    expect(sets.flat().sort()).toEqual(etags.sort());
    for (const job of jobs) {
      const ended = await waitForJob(api, job.id);
      expect(ended.status).toBe('Completed');
      expect(ended.counts.items).toEqual({ total: ended.inputs.input_data.file_count, succeeded: ended.inputs.input_data.file_count, failed: 0 });
    }
  });

  it('takes the same name and content uploaded again as a new file (a new eTag): the next job scores it', async () => {
    await putRule('again', { source: { datastore: 'workspaceblobstore', path_prefix: 'incoming/again/' }, batching: { window_seconds: 2, max_files: 10 } });
    const a = penguinCsv(ROWS.slice(0, 3));
    const first = [`a.csv@${await put('incoming/again/a.csv', a)}`, `b.csv@${await put('incoming/again/b.csv', penguinCsv(ROWS.slice(3)))}`];
    const [job1] = await waitForJobs('again', 1);
    expect(filesOf(job1)).toEqual(first.sort());
    expect((await waitForJob(api, job1.id)).status).toBe('Completed');

    // The same blob name with the same bytes: a new write, so a new eTag, so a new file (README, "Duplicates").
    const etag = await put('incoming/again/a.csv', a);
    expect(`a.csv@${etag}`).not.toBe(first[0]);
    const jobs = await waitForJobs('again', 2);
    const job2 = await waitForJob(api, jobs[1].id);
    expect(filesOf(job2)).toEqual([`a.csv@${etag}`]);
    expect(job2.status).toBe('Completed');
    expect((await predictionsByFile(job2.id))['a.csv']).toEqual(await referencePredictions(ROWS.slice(0, 3)));
    await sleep(3000);
    expect(await jobsOf('again')).toHaveLength(2);
  });

  // Each upload is a new eTag: the later version takes the earlier one's place in the open batch.
  it('makes one job of a window in which a file was uploaded twice (same name and content), reading the later version', async () => {
    await putRule('twice', { source: { datastore: 'workspaceblobstore', path_prefix: 'incoming/twice/' }, batching: { window_seconds: 2, max_files: 10 } });
    const a = penguinCsv(ROWS.slice(0, 3));
    await put('incoming/twice/a.csv', a);
    await put('incoming/twice/b.csv', penguinCsv(ROWS.slice(3)));
    await put('incoming/twice/a.csv', a);
    await sleep(5000);
    const jobs = await jobsOf('twice');
    expect(jobs).toHaveLength(1);
    expect(filesOf(jobs[0]).map((f) => f.split('@')[0])).toEqual(['a.csv', 'b.csv']);
    const job = await waitForJob(api, jobs[0].id);
    expect(job.status).toBe('Completed');
    expect(job.counts.items).toMatchObject({ succeeded: 2, failed: 0 });
  });

  it('publishes one job event per transition of the completed job, in order, to each subscriber after its handshake', async () => {
    expect(completed).toBeDefined();
    const events = await expectTransitions(completed, ['NotStarted', 'Preparing', 'Running', 'Finalizing', 'Completed']);
    const last = events.at(-1) as Record<string, Json>;
    expect(last['data']).toMatchObject({ outputs: { score: completed.outputs.score.path }, error: null });
    expect(last['source']).toMatch(/^\/batch-endpoints\//);

    // The CloudEvents subscriber: an OPTIONS handshake from eventgrid.azure.net before its first notification.
    const ce = sink.requests.filter((r) => r.path === '/ce');
    expect(ce[0]).toMatchObject({ method: 'OPTIONS', headers: { 'webhook-request-origin': 'eventgrid.azure.net' } });
    expect(ce.findIndex((r) => r.method === 'POST')).toBeGreaterThan(0);
    for (const n of sink.notifications('/ce')) expect(n.headers['content-type']).toContain('application/cloudevents+json');
    // The Event Grid schema subscriber: a SubscriptionValidationEvent first, answered with its code.
    const eg = sink.requests.filter((r) => r.path === '/eg');
    expect(eg[0]).toMatchObject({ method: 'POST', headers: { 'aeg-event-type': 'SubscriptionValidation' } });
    expect((eg[0]?.body as Json[])[0]).toMatchObject({ eventType: 'Microsoft.EventGrid.SubscriptionValidationEvent' });
    expect(eg.slice(1).every((r) => r.headers['aeg-event-type'] === 'Notification')).toBe(true);
  });

  it('publishes a failed triggered job\'s transitions, ending with JobFailed and its error', async () => {
    await putRule('strict', { source: { datastore: 'workspaceblobstore', path_prefix: 'incoming/strict/' }, settings: { mini_batch_size: 1, error_threshold: 0 }, batching: { window_seconds: 2, max_files: 10 } });
    await Promise.all([
      put('incoming/strict/good.csv', penguinCsv(ROWS.slice(0, 2))),
      // A row with a field too many fails its item; error_threshold 0 fails the job.
      put('incoming/strict/bad.csv', `island,${FEATURES.join(',')}\nBiscoe,39.1,18.7,181,3750,extra\n`),
    ]);
    const [created] = await waitForJobs('strict', 1);
    const job = await waitForJob(api, created.id);
    expect(job.status).toBe('Failed');
    expect(job.error).toMatchObject({ code: 'error_threshold_exceeded' });
    const events = await expectTransitions(job, ['NotStarted', 'Preparing', 'Running', 'Finalizing', 'Failed']);
    expect(events.at(-1)?.['data'].error).toMatchObject({ code: 'error_threshold_exceeded' });
  });
});
