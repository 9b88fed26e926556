/**
 * Job events end to end: fnhost runs the app with BATCH_EVENTS_TOPIC_ENDPOINT pointing at a sink
 * this test serves (an HTTP server taking Event Grid publishes, checking `aeg-sas-key`), and every
 * transition of a job arrives there as a CloudEvent, in order: a completed job, a failed one, a
 * canceled one. A sink that fails twice still gets every event, once per id once deduplicated.
 */
import { createServer, type Server } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Api, type Json, deploy, ds, fixtureScript, startProductHost, upload, waitForJob } from '../support/batch.js';
import { type FnHostProcess } from '../support/fnhost.js';
import { uniqueName } from '../support/ports.js';
import { waitFor } from '../support/wait.js';

const KEY = 'sink-key-1';

interface Received {
  id: string;
  type: string;
  subject: string;
  source: string;
  specversion: string;
  data: Json;
}

/** The topic: what it accepted, in arrival order, and how many publishes it should refuse next. */
class Sink {
  readonly accepted: Received[] = [];
  refused = 0;
  refuseNext = 0;
  wrongKey = 0;
  readonly server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (req.method !== 'POST' || !req.url?.startsWith('/api/events')) {
        res.writeHead(404).end();
        return;
      }
      if (req.headers['aeg-sas-key'] !== KEY) {
        this.wrongKey++;
        res.writeHead(401).end();
        return;
      }
      if (this.refuseNext > 0) {
        this.refuseNext--;
        this.refused++;
        res.writeHead(503).end('busy');
        return;
      }
      const body = JSON.parse(Buffer.concat(chunks).toString()) as Received | Received[];
      this.accepted.push(...(Array.isArray(body) ? body : [body]));
      res.writeHead(200).end();
    });
  });

  /** A job's events, each id once (a consumer drops redeliveries by id), in the order they first arrived. */
  of(jobId: string): Received[] {
    const seen = new Set<string>();
    return this.accepted.filter((e) => e.data.job_id === jobId && !seen.has(e.id) && seen.add(e.id));
  }

  async waitForEnd(jobId: string): Promise<Received[]> {
    return waitFor(() => (this.of(jobId).some((e) => ['Completed', 'Failed', 'Canceled'].includes(e.data.status)) ? this.of(jobId) : undefined), { timeoutMs: 60_000, what: `the last event of ${jobId}` });
  }
}

let host: FnHostProcess;
let api: Api;
const sink = new Sink();

beforeAll(async () => {
  await new Promise<void>((resolve) => sink.server.listen(0, '127.0.0.1', resolve));
  const port = (sink.server.address() as { port: number }).port;
  ({ host, api } = await startProductHost({
    BATCH_EVENTS_TOPIC_ENDPOINT: `http://127.0.0.1:${port}/api/events`,
    BATCH_EVENTS_TOPIC_KEY: KEY,
    BATCH_EVENTS_SOURCE: '/batch-endpoints/e2e',
  }));
  await upload(host.storageConnection, { 'models/dummy/model.txt': 'a model file the custom scripts ignore' });
});

afterAll(async () => {
  await host?.stop();
  await new Promise((resolve) => sink.server.close(resolve));
});

async function endpointWith(script: string, settings: Record<string, unknown>): Promise<string> {
  const endpoint = uniqueName('ev');
  const codeDir = `code/${endpoint}/`;
  await upload(host.storageConnection, { [`${codeDir}score.js`]: fixtureScript(script) });
  await deploy(api, {
    endpoint,
    deployment: 'dep',
    model: { name: 'dummy', version: '1', type: 'custom_model', path: ds('models/dummy/') },
    deploymentBody: { code_configuration: { code: ds(codeDir), scoring_script: 'score.js' }, settings },
    makeDefault: true,
  });
  return endpoint;
}

async function input(endpoint: string, names: string[]): Promise<string> {
  await upload(host.storageConnection, Object.fromEntries(names.map((n) => [`data/${endpoint}/${n}`, `${n}\n`])));
  return ds(`data/${endpoint}/`);
}

async function invoke(endpoint: string, body: unknown): Promise<Json> {
  const res = await api.call('POST', `endpoints/${endpoint}/jobs`, body);
  if (res.status !== 202) throw new Error(`invoke ${endpoint}: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body;
}

/** Every event of a job is one transition: numbered 1, 2, 3… in arrival order, each naming the one before. */
function expectChain(events: Received[], jobId: string, endpoint: string): void {
  events.forEach((e, i) => {
    expect(e).toMatchObject({ specversion: '1.0', source: '/batch-endpoints/e2e', subject: `endpoints/${endpoint}/jobs/${jobId}`, id: `${jobId}:${i + 1}:${e.data.status}` });
    expect(e.data).toMatchObject({ job_id: jobId, endpoint, deployment: 'dep', sequence: i + 1, previous_status: i === 0 ? null : events[i - 1]?.data.status });
    expect(e.type).toBe(({ Completed: 'BatchEndpoints.JobCompleted', Failed: 'BatchEndpoints.JobFailed', Canceled: 'BatchEndpoints.JobCanceled' } as Record<string, string>)[e.data.status] ?? 'BatchEndpoints.JobStateChanged');
  });
}

describe('job events on fnhost', () => {
  it('publishes each transition of a completed job, in order, with its outputs and final counts', async () => {
    const endpoint = await endpointWith('count-lines.js', { mini_batch_size: 1 });
    const started = await invoke(endpoint, { inputs: { text: { path: await input(endpoint, ['a.txt', 'b.txt']) } } });
    const job = await waitForJob(api, started.id);
    expect(job.status).toBe('Completed');
    const events = await sink.waitForEnd(job.id);
    expect(events.map((e) => e.data.status)).toEqual(['NotStarted', 'Preparing', 'Running', 'Finalizing', 'Completed']);
    expectChain(events, job.id, endpoint);
    const last = events.at(-1)!;
    expect(last.data.counts).toEqual(job.counts);
    expect(last.data.outputs).toEqual({ score: ds(`azureml/${job.id}/score/`) });
    expect(last.data.error).toBeNull();
    expect(sink.wrongKey).toBe(0);
  });

  it('publishes a failed job\'s transitions, ending with JobFailed and its error', async () => {
    const endpoint = await endpointWith('count-lines.js', { mini_batch_size: 1, max_concurrency_per_instance: 1 });
    const started = await invoke(endpoint, { inputs: { text: { path: await input(endpoint, ['a-bad1.txt', 'a-bad2.txt', 'b.txt']) } }, settings: { error_threshold: 1 } });
    const job = await waitForJob(api, started.id);
    expect(job.status).toBe('Failed');
    const events = await sink.waitForEnd(job.id);
    expect(events.map((e) => e.data.status)).toEqual(['NotStarted', 'Preparing', 'Running', 'Finalizing', 'Failed']);
    expectChain(events, job.id, endpoint);
    expect(events.at(-1)?.data.error).toMatchObject({ code: 'error_threshold_exceeded' });
  });

  it('publishes a canceled job\'s transitions: Canceling, then JobCanceled', async () => {
    const endpoint = await endpointWith('slow.js', { mini_batch_size: 1, max_concurrency_per_instance: 1, environment_variables: { SLOW_MS: '300' } });
    const started = await invoke(endpoint, { inputs: { text: { path: await input(endpoint, Array.from({ length: 12 }, (_, i) => `f${i}.txt`)) } } });
    await waitFor(async () => ((await api.call('GET', `jobs/${started.id}`)).body.counts.mini_batches.succeeded >= 1 ? true : undefined));
    expect((await api.call('POST', `jobs/${started.id}/cancel`)).status).toBe(202);
    const job = await waitForJob(api, started.id);
    expect(job.status).toBe('Canceled');
    const events = await sink.waitForEnd(job.id);
    const statuses = events.map((e) => e.data.status);
    // The step finalizes what ran before it ends, so Finalizing may come between.
    expect([
      ['NotStarted', 'Preparing', 'Running', 'Canceling', 'Canceled'],
      ['NotStarted', 'Preparing', 'Running', 'Canceling', 'Finalizing', 'Canceled'],
    ]).toContainEqual(statuses);
    expectChain(events, job.id, endpoint);
    expect(events.at(-1)?.data.counts).toEqual(job.counts);
  });

  it('retries a topic that fails: every event arrives, once per id, in order, and the job is not held up', async () => {
    const endpoint = await endpointWith('count-lines.js', { mini_batch_size: 1 });
    const refusedBefore = sink.refused;
    sink.refuseNext = 2;
    const started = await invoke(endpoint, { inputs: { text: { path: await input(endpoint, ['a.txt']) } } });
    const job = await waitForJob(api, started.id);
    expect(job.status).toBe('Completed');
    const events = await sink.waitForEnd(job.id);
    expect(sink.refused - refusedBefore).toBe(2);
    expect(events.map((e) => e.data.status)).toEqual(['NotStarted', 'Preparing', 'Running', 'Finalizing', 'Completed']);
    expectChain(events, job.id, endpoint);
    // Deduplicated by id, each transition is there once; redeliveries (if any) repeat an id.
    const all = sink.accepted.filter((e) => e.data.job_id === job.id);
    expect(new Set(all.map((e) => e.id)).size).toBe(5);
  });
});
