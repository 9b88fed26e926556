/**
 * Job events against real storage (Azurite): each transition's event is recorded in the same
 * entity-group transaction as the state change (a write that loses a race records nothing), the
 * events of a job come numbered in the order of its transitions, whichever record moved, and the
 * dispatcher publishes them in that order, retrying a topic that fails (with a clock the test
 * drives: nothing here sleeps), removing each from the outbox once accepted. The job's work runs
 * through the real JobsService, JobRunner and PipelineRunner; only the orchestration is absent.
 */
import { TableClient } from '@azure/data-tables';
import { BlobServiceClient, type ContainerClient } from '@azure/storage-blob';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AppConfig, loadConfig } from '../../shared/config.js';
import { type Clock, JobEventsDispatcher, SWEEP_GRACE_MS } from '../../shared/events/dispatcher.js';
import type { CloudEvent, JobEventData } from '../../shared/events/job-events.js';
import type { EventPublisher } from '../../shared/events/publisher.js';
import { BatchError } from '../../shared/errors.js';
import { JobRunner } from '../../shared/jobs/job-runner.js';
import { JobStore } from '../../shared/jobs/job-store.js';
import { JobsService } from '../../shared/jobs/jobs-service.js';
import { PipelineRunner } from '../../shared/jobs/pipeline-runner.js';
import { MODEL_STEP } from '../../shared/jobs/types.js';
import { JobWorkArea } from '../../shared/jobs/work-area.js';
import { Registry } from '../../shared/registry/registry.js';
import { deploymentBody, endpointBody, modelBody } from '../../shared/schemas/resources.js';
import type { ScoringRuntime } from '../../shared/scoring/types.js';
import { startAzurite } from '../support/azurite.js';
import { uniqueName } from '../support/ports.js';

let storage: { connectionString: string; stop: () => Promise<void> };
let config: AppConfig;
let registry: Registry;
let store: JobStore;
let jobs: JobsService;
let runner: JobRunner;
let pipelines: PipelineRunner;
let ws: ContainerClient;

/** The test's clock: time moves only when the test says so; a sleep is recorded and returns at once. */
class FakeClock implements Clock {
  time = Date.parse('2026-12-01T10:00:00Z');
  sleeps: number[] = [];
  now(): Date {
    return new Date(this.time);
  }
  sleep(ms: number): Promise<void> {
    this.sleeps.push(ms);
    this.time += ms;
    return Promise.resolve();
  }
}
const clock = new FakeClock();

/** A topic that records what it accepted, and fails the next `failures` publishes. */
class FakeTopic implements EventPublisher {
  accepted: CloudEvent[] = [];
  attempts = 0;
  failures = 0;
  publish(events: readonly CloudEvent[]): Promise<void> {
    this.attempts++;
    if (this.failures > 0) {
      this.failures--;
      return Promise.reject(new BatchError('event_publish_failed', 'The event topic answered 503.'));
    }
    this.accepted.push(...events);
    return Promise.resolve();
  }
}

const idle: ScoringRuntime = {
  score: () => Promise.reject(new Error('not used')),
  warm: () => Promise.resolve(),
  pools: () => 0,
  release: () => Promise.resolve(),
  close: () => Promise.resolve(),
};
const ds = (path: string): string => `azureml://datastores/workspaceblobstore/paths/${path}`;

beforeAll(async () => {
  storage = await startAzurite();
  config = loadConfig({
    AzureWebJobsStorage: storage.connectionString,
    BATCH_TABLE_PREFIX: uniqueName('t').replace(/[^a-z0-9]/g, ''),
    BATCH_EVENTS_TOPIC_ENDPOINT: 'http://127.0.0.1:9/api/events',
    BATCH_EVENTS_TOPIC_KEY: 'key',
    BATCH_EVENTS_SOURCE: '/batch-endpoints/test',
  });
  registry = new Registry({ config });
  store = new JobStore({ config, now: () => clock.now() });
  jobs = new JobsService({ config, registry, store });
  runner = new JobRunner({ config, registry, store, workArea: new JobWorkArea({ config }), runtime: idle });
  pipelines = new PipelineRunner({ config, registry, store });
  ws = BlobServiceClient.fromConnectionString(storage.connectionString).getContainerClient(config.workspaceContainer);
  await ws.createIfNotExists();
  await ws.getBlockBlobClient('code/score.js').upload('export function run() { return []; }', 10);
  await ws.getBlockBlobClient('models/m/model.txt').upload('m', 1);
  await registry.putEndpoint('ev', endpointBody.parse({}));
  await registry.createModel('m', '1', modelBody.parse({ type: 'custom_model', path: ds('models/m/') }));
  await registry.putDeployment('ev', 'dep', deploymentBody.parse({ model: 'azureml:m:1', code_configuration: { code: ds('code/'), scoring_script: 'score.js' }, settings: { mini_batch_size: 1 } }));
  await registry.putEndpoint('ev', endpointBody.parse({ defaults: { deployment_name: 'dep' } }));
});

afterAll(async () => {
  await storage?.stop();
});

async function invoke(options: { start?: (jobId: string) => Promise<void> } = {}): Promise<string> {
  const folder = `data/${uniqueName('in')}/`;
  await ws.getBlockBlobClient(`${folder}a.txt`).upload('a\n', 2);
  const { job } = await jobs.invoke({
    endpoint: 'ev',
    deploymentHeader: undefined,
    body: { inputs: { x: { path: ds(folder) } } },
    idempotencyKey: undefined,
    invokedBy: { name: 't', via: 'anonymous' },
    start: options.start ?? (() => Promise.resolve()),
  });
  return job.spec.id;
}

async function recorded(jobId: string): Promise<{ seq: number; id: string; status: string; previous: string | null }[]> {
  return (await store.pendingEvents(jobId)).map((r) => {
    const data = r.event.data as JobEventData;
    return { seq: r.seq, id: r.event.id, status: data.status, previous: data.previous_status };
  });
}

describe('job events (Azurite)', () => {
  it('records one event per transition of the job, with the change, in order, as the job shows it', async () => {
    const id = await invoke();
    expect(await recorded(id)).toEqual([{ seq: 1, id: `${id}:1:NotStarted`, status: 'NotStarted', previous: null }]);
    // A model deployment's job is its one step: the step's Preparing and Running are the job's.
    expect((await pipelines.preparePipeline(id)).status).toBe('ready');
    expect((await runner.prepare({ jobId: id, step: MODEL_STEP })).status).toBe('ready');
    const canceled = await jobs.cancel(id, () => Promise.resolve());
    expect(canceled.state.status).toBe('Canceling');
    await pipelines.finishStep({ jobId: id, step: MODEL_STEP, status: 'Canceled' });
    expect(await pipelines.finalizePipeline({ jobId: id, canceled: true })).toEqual({ status: 'Canceled' });
    // A write that changes no status is no transition.
    await store.update(id, (s) => ({ ...s, dropped_columns: ['x'] }));

    const statuses = ['NotStarted', 'Preparing', 'Running', 'Canceling', 'Canceled'];
    expect(await recorded(id)).toEqual(statuses.map((status, i) => ({ seq: i + 1, id: `${id}:${i + 1}:${status}`, status, previous: statuses[i - 1] ?? null })));
    const events = (await store.pendingEvents(id)).map((r) => r.event as CloudEvent<JobEventData>);
    const last = events.at(-1)!;
    expect(last).toMatchObject({ specversion: '1.0', source: '/batch-endpoints/test', type: 'BatchEndpoints.JobCanceled', subject: `endpoints/ev/jobs/${id}`, datacontenttype: 'application/json' });
    expect(last.data).toMatchObject({ job_id: id, endpoint: 'ev', deployment: 'dep', type: 'model', status: 'Canceled', outputs: { score: ds(`azureml/${id}/score/`) } });
    expect(last.data.counts.items.total).toBe(1);
    expect(events.slice(0, -1).every((e) => e.type === 'BatchEndpoints.JobStateChanged')).toBe(true);
    expect(await store.lastEvent(id)).toEqual({ seq: 5, status: 'Canceled' });
  });

  it('writes the event in the same transaction as the change: when any part fails, none of it is stored', async () => {
    const id = await invoke();
    const table = TableClient.fromConnectionString(storage.connectionString, `${config.tablePrefix}jobs`, { allowInsecureConnection: true });
    // The outbox row the next transition would create exists already, so its transaction fails.
    await table.createEntity({ partitionKey: id, rowKey: 'event:0000000002', event: '{}', recordedAt: clock.now().toISOString() });
    await expect(store.update(id, (s) => ({ ...s, status: 'Canceling' }))).rejects.toThrow(/gave up/);
    // The record's update, first in the transaction, was not applied; the cursor did not move.
    expect((await store.get(id))?.state.status).toBe('NotStarted');
    expect(await store.lastEvent(id)).toEqual({ seq: 1, status: 'NotStarted' });
    await table.deleteEntity(id, 'event:0000000002');
    await store.update(id, (s) => ({ ...s, status: 'Canceling' }));
    expect((await recorded(id)).map((e) => `${e.seq}:${e.status}`)).toEqual(['1:NotStarted', '2:Canceling']);
    expect((await store.get(id))?.state.status).toBe('Canceling');
  });

  it('numbers concurrent transitions of a job one after another, never twice and never backwards', async () => {
    const id = await invoke();
    await pipelines.preparePipeline(id);
    // The step starts while the job is canceled: both records move at once.
    await Promise.all([runner.prepare({ jobId: id, step: MODEL_STEP }), jobs.cancel(id, () => Promise.resolve())]);
    const events = await recorded(id);
    expect(events.map((e) => e.seq)).toEqual(events.map((_, i) => i + 1));
    for (let i = 1; i < events.length; i++) expect(events[i]?.previous).toBe(events[i - 1]?.status);
    expect(new Set(events.map((e) => e.status)).size).toBe(events.length);
    expect(events.at(-1)?.status).toBe('Canceling');
  });

  it('records no event for a job whose invocation is undone', async () => {
    let undone = '';
    const failed = invoke({
      start: (jobId) => {
        undone = jobId;
        return Promise.reject(new Error('no orchestration'));
      },
    });
    await expect(failed).rejects.toThrow(/could not be started/);
    expect(undone).not.toBe('');
    expect(await store.get(undone)).toBeUndefined();
    expect(await store.pendingEvents(undone)).toEqual([]);
    expect(await store.lastEvent(undone)).toBeUndefined();
    expect((await store.markedJobs()).map((m) => m.jobId)).not.toContain(undone);
  });

  it('publishes a job\'s events in order, retrying a failing topic with backoff, and removes each once accepted', async () => {
    const id = await invoke();
    await pipelines.preparePipeline(id);
    await runner.prepare({ jobId: id, step: MODEL_STEP });
    const topic = new FakeTopic();
    topic.failures = 2;
    clock.sleeps = [];
    const dispatcher = new JobEventsDispatcher({ store, publisher: topic, clock, log: () => undefined });
    dispatcher.kick(id);
    await dispatcher.idle();
    expect(clock.sleeps).toEqual([1000, 2000]);
    expect(topic.attempts).toBe(5);
    expect(topic.accepted.map((e) => e.id)).toEqual([`${id}:1:NotStarted`, `${id}:2:Preparing`, `${id}:3:Running`]);
    expect(await store.pendingEvents(id)).toEqual([]);
    // Later transitions follow, numbered on.
    await jobs.cancel(id, () => Promise.resolve());
    await dispatcher.drain(id);
    expect(topic.accepted.map((e) => e.id).slice(3)).toEqual([`${id}:4:Canceling`]);
  });

  it('leaves a topic that keeps failing to the sweep, which publishes what is left once the grace is over and then forgets the job', async () => {
    const id = await invoke();
    const topic = new FakeTopic();
    topic.failures = 100;
    const dispatcher = new JobEventsDispatcher({ store, publisher: topic, clock, retry: { attempts: 3, firstDelayMs: 10, maxDelayMs: 20 }, log: () => undefined });
    dispatcher.kick(id);
    await dispatcher.idle();
    expect(topic.attempts).toBe(3);
    expect(await recorded(id)).toHaveLength(1);

    await pipelines.preparePipeline(id);
    await jobs.cancel(id, () => Promise.resolve());
    await pipelines.finalizePipeline({ jobId: id, canceled: true });
    topic.failures = 0;
    // Just recorded: the sweep leaves them to the process that recorded them.
    expect((await dispatcher.sweep()).published).toBe(0);
    clock.time += SWEEP_GRACE_MS;
    const swept = await dispatcher.sweep();
    expect(swept.failed).toBe(0);
    expect(topic.accepted.filter((e) => e.id.startsWith(id)).map((e) => (e.data as JobEventData).status)).toEqual(['NotStarted', 'Canceling', 'Canceled']);
    expect(await store.pendingEvents(id)).toEqual([]);
    // The job has ended and everything is out: it is no longer looked at.
    expect((await store.markedJobs()).map((m) => m.jobId)).not.toContain(id);
  });

  it('records nothing while events are off', async () => {
    const off = loadConfig({ AzureWebJobsStorage: storage.connectionString, BATCH_TABLE_PREFIX: config.tablePrefix });
    const plain = new JobsService({ config: off, registry, store: new JobStore({ config: off }) });
    const folder = `data/${uniqueName('in')}/`;
    await ws.getBlockBlobClient(`${folder}a.txt`).upload('a\n', 2);
    const { job } = await plain.invoke({ endpoint: 'ev', deploymentHeader: undefined, body: { inputs: { x: { path: ds(folder) } } }, idempotencyKey: undefined, invokedBy: { name: 't', via: 'anonymous' }, start: () => Promise.resolve() });
    await plain.cancel(job.spec.id, () => Promise.resolve());
    expect(await store.pendingEvents(job.spec.id)).toEqual([]);
    expect(await store.lastEvent(job.spec.id)).toBeUndefined();
  });
});
