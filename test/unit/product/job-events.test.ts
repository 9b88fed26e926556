import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../../shared/config.js';
import { type Clock, DEFAULT_RETRY, type EventOutboxStore, JobEventsDispatcher, retryDelayMs } from '../../../shared/events/dispatcher.js';
import { type CloudEvent, buildJobEvent, eventId, eventSubject, eventTypeOf, isTransition, publishedStatus } from '../../../shared/events/job-events.js';
import { EventGridPublisher } from '../../../shared/events/publisher.js';
import type { RecordedEvent } from '../../../shared/jobs/job-store.js';
import { type JobSpec, MODEL_STEP, emptyCounts } from '../../../shared/jobs/types.js';
import type { JobStatus } from '../../../shared/schemas/jobs.js';

const location = { datastore: { name: 'workspaceblobstore' }, container: 'c', path: 'out/' };

/** The fields of a job's spec that its events read (the rest of a spec does not matter here). */
function specOf(kind: 'model' | 'pipeline' | 'legacy', endpoint = 'penguins'): JobSpec {
  const base = { id: 'bj-1', endpoint, deployment: kind === 'pipeline' ? '' : 'classifier', tags: {}, invoked_by: { name: 't', via: 'anonymous' as const }, created_at: '2026-12-01T00:00:00Z' };
  if (kind === 'pipeline') {
    return { ...base, kind: 'pipeline', runs_as: 'steps', pipeline: { settings: { continue_on_step_failure: false, default_datastore: 'workspaceblobstore', force_rerun: false }, inputs: {}, outputs: { scores: { type: 'uri_folder', uri: 'azureml://datastores/workspaceblobstore/paths/out/', location } }, steps: [] } } as unknown as JobSpec;
  }
  return { ...base, kind: 'model', ...(kind === 'model' ? { runs_as: 'steps' } : {}), output: { name: 'score', uri: 'azureml://datastores/workspaceblobstore/paths/out/', location } } as unknown as JobSpec;
}

describe('which writes are a job\'s transitions', () => {
  it('a model deployment\'s job: NotStarted, Canceling and the end from its record, Preparing/Running/Finalizing from its one step', () => {
    const spec = specOf('model');
    const job = { kind: 'job' } as const;
    const step = { kind: 'step', step: MODEL_STEP } as const;
    expect(publishedStatus(spec, job, 'NotStarted')).toBe('NotStarted');
    expect(publishedStatus(spec, job, 'Running')).toBeUndefined();
    expect(publishedStatus(spec, step, 'Preparing')).toBe('Preparing');
    expect(publishedStatus(spec, step, 'Running')).toBe('Running');
    expect(publishedStatus(spec, step, 'Finalizing')).toBe('Finalizing');
    expect(publishedStatus(spec, step, 'Completed')).toBeUndefined();
    expect(publishedStatus(spec, job, 'Canceling')).toBe('Canceling');
    for (const end of ['Completed', 'Failed', 'Canceled'] as const) expect(publishedStatus(spec, job, end)).toBe(end);
  });

  it('a pipeline job: its own record only; a job from before steps: its record, every status', () => {
    const pipeline = specOf('pipeline');
    expect(publishedStatus(pipeline, { kind: 'job' }, 'Running')).toBe('Running');
    expect(publishedStatus(pipeline, { kind: 'step', step: 'train' }, 'Running')).toBeUndefined();
    expect(publishedStatus(pipeline, { kind: 'step', step: MODEL_STEP }, 'Preparing')).toBeUndefined();
    const legacy = specOf('legacy');
    for (const s of ['NotStarted', 'Preparing', 'Running', 'Finalizing', 'Completed'] as const) expect(publishedStatus(legacy, { kind: 'job' }, s)).toBe(s);
  });

  it('a transition never repeats the last status, never goes back, and nothing follows the end', () => {
    expect(isTransition(undefined, 'Running')).toBe(true);
    expect(isTransition('NotStarted', 'Preparing')).toBe(true);
    expect(isTransition('Running', 'Running')).toBe(false);
    expect(isTransition('Canceling', 'Running')).toBe(false);
    expect(isTransition('Canceling', 'Finalizing')).toBe(true);
    expect(isTransition('Finalizing', 'Canceling')).toBe(false);
    expect(isTransition('Running', 'Failed')).toBe(true);
    for (const end of ['Completed', 'Failed', 'Canceled'] as const) {
      for (const next of ['Running', 'Completed', 'Failed', 'Canceled'] as const) expect(isTransition(end, next)).toBe(false);
    }
    // Any path through the statuses by these rules is strictly forward.
    const order: JobStatus[] = ['NotStarted', 'Preparing', 'Running', 'Canceling', 'Finalizing', 'Completed'];
    let last: JobStatus | undefined;
    const path: JobStatus[] = [];
    for (const s of ['NotStarted', 'Preparing', 'NotStarted', 'Running', 'Preparing', 'Canceling', 'Running', 'Finalizing', 'Completed', 'Failed'] as JobStatus[]) {
      if (isTransition(last, s)) {
        path.push(s);
        last = s;
      }
    }
    expect(path).toEqual(order);
  });
});

describe('job events', () => {
  it('are CloudEvents 1.0 with a stable id, a type per terminal state and the job in data', () => {
    const spec = specOf('model');
    const counts = emptyCounts();
    counts.items = { total: 3, succeeded: 2, failed: 1 };
    const event = buildJobEvent({
      source: '/batch-endpoints/app',
      spec,
      sequence: 6,
      status: 'Failed',
      previous: 'Finalizing',
      time: new Date('2026-12-01T00:01:00Z'),
      record: { counts, error: { code: 'error_threshold_exceeded', message: 'too many' }, completed_at: '2026-12-01T00:01:00Z' },
      job: { started_at: '2026-12-01T00:00:01Z' },
    });
    expect(event).toEqual({
      specversion: '1.0',
      id: 'bj-1:6:Failed',
      source: '/batch-endpoints/app',
      type: 'BatchEndpoints.JobFailed',
      subject: 'endpoints/penguins/jobs/bj-1',
      time: '2026-12-01T00:01:00.000Z',
      datacontenttype: 'application/json',
      data: {
        job_id: 'bj-1',
        endpoint: 'penguins',
        deployment: 'classifier',
        type: 'model',
        status: 'Failed',
        previous_status: 'Finalizing',
        sequence: 6,
        counts,
        outputs: { score: 'azureml://datastores/workspaceblobstore/paths/out/' },
        error: { code: 'error_threshold_exceeded', message: 'too many' },
        started_at: '2026-12-01T00:00:01Z',
        completed_at: '2026-12-01T00:01:00Z',
      },
    });
    expect(eventId('bj-1', 6, 'Failed')).toBe(event.id);
    expect(['NotStarted', 'Preparing', 'Running', 'Canceling', 'Finalizing', 'Completed', 'Failed', 'Canceled'].map((s) => eventTypeOf(s as JobStatus))).toEqual([
      ...Array<string>(5).fill('BatchEndpoints.JobStateChanged'),
      'BatchEndpoints.JobCompleted',
      'BatchEndpoints.JobFailed',
      'BatchEndpoints.JobCanceled',
    ]);
  });

  it('of a standalone pipeline job have the subject jobs/{id} and its outputs by name', () => {
    const spec = specOf('pipeline', '');
    expect(eventSubject(spec)).toBe('jobs/bj-1');
    const event = buildJobEvent({ source: 's', spec, sequence: 1, status: 'NotStarted', previous: undefined, time: new Date(0), record: {} });
    expect(event.data).toMatchObject({ type: 'pipeline', endpoint: '', previous_status: null, outputs: { scores: 'azureml://datastores/workspaceblobstore/paths/out/' }, error: null, counts: emptyCounts() });
  });
});

describe('publishing to Event Grid', () => {
  it('POSTs a CloudEvents batch with the topic key, and throws a retryable error on a failure', async () => {
    const calls: { url: string; init: RequestInit }[] = [];
    let status = 200;
    const fake = (url: string, init?: RequestInit): Promise<Response> => {
      calls.push({ url, init: init ?? {} });
      return Promise.resolve(new Response(status === 200 ? '' : 'busy', { status }));
    };
    const publisher = new EventGridPublisher({ endpoint: 'https://topic.westeurope-1.eventgrid.azure.net/api/events', key: 'k1', fetch: fake as unknown as typeof fetch });
    const event = buildJobEvent({ source: 's', spec: specOf('model'), sequence: 1, status: 'NotStarted', previous: undefined, time: new Date(0), record: {} });
    await publisher.publish([event]);
    expect(calls[0]?.url).toBe('https://topic.westeurope-1.eventgrid.azure.net/api/events?api-version=2018-01-01');
    expect(calls[0]?.init.method).toBe('POST');
    expect(calls[0]?.init.headers).toMatchObject({ 'aeg-sas-key': 'k1', 'content-type': 'application/cloudevents-batch+json; charset=utf-8' });
    expect(JSON.parse(calls[0]?.init.body as string)).toEqual([event]);
    status = 503;
    await expect(publisher.publish([event])).rejects.toMatchObject({ code: 'event_publish_failed', retryable: true, message: expect.stringContaining('503') });
  });

  it('is configured by BATCH_EVENTS_TOPIC_ENDPOINT and BATCH_EVENTS_TOPIC_KEY, and off without them', () => {
    const storage = { AzureWebJobsStorage: 'UseDevelopmentStorage=true' };
    expect(loadConfig(storage).events).toBeUndefined();
    expect(loadConfig({ ...storage, BATCH_EVENTS_TOPIC_ENDPOINT: '', BATCH_EVENTS_TOPIC_KEY: '' }).events).toBeUndefined();
    expect(loadConfig({ ...storage, BATCH_EVENTS_TOPIC_ENDPOINT: 'http://127.0.0.1:7071/runtime/eventgrid/topics/jobs/api/events', BATCH_EVENTS_TOPIC_KEY: 'k', WEBSITE_SITE_NAME: 'my-app' }).events).toEqual({
      endpoint: 'http://127.0.0.1:7071/runtime/eventgrid/topics/jobs/api/events',
      key: 'k',
      source: '/batch-endpoints/my-app',
    });
    expect(() => loadConfig({ ...storage, BATCH_EVENTS_TOPIC_ENDPOINT: 'http://x/api/events' })).toThrow(/BATCH_EVENTS_TOPIC_KEY/);
    expect(() => loadConfig({ ...storage, BATCH_EVENTS_TOPIC_ENDPOINT: 'not a url', BATCH_EVENTS_TOPIC_KEY: 'k' })).toThrow(/BATCH_EVENTS_TOPIC_ENDPOINT/);
  });
});

/** An outbox in memory: the dispatcher's view of the job store. */
class MemoryOutbox implements EventOutboxStore {
  rows = new Map<string, RecordedEvent[]>();
  add(jobId: string, status: JobStatus): void {
    const list = this.rows.get(jobId) ?? [];
    const seq = (list.at(-1)?.seq ?? 0) + 1;
    const event = { id: eventId(jobId, seq, status), data: { status } } as unknown as CloudEvent;
    list.push({ seq, event, recordedAt: new Date(0).toISOString() });
    this.rows.set(jobId, list);
  }
  pendingEvents(jobId: string): Promise<RecordedEvent[]> {
    return Promise.resolve([...(this.rows.get(jobId) ?? [])]);
  }
  deleteEvent(jobId: string, seq: number): Promise<void> {
    this.rows.set(jobId, (this.rows.get(jobId) ?? []).filter((r) => r.seq !== seq));
    return Promise.resolve();
  }
  lastEvent(): Promise<undefined> {
    return Promise.resolve(undefined);
  }
  markedJobs(): Promise<{ jobId: string; since: string; etag: string }[]> {
    return Promise.resolve([]);
  }
  unmark(): Promise<void> {
    return Promise.resolve();
  }
  discardEvents(): Promise<void> {
    return Promise.resolve();
  }
  get(): Promise<undefined> {
    return Promise.resolve(undefined);
  }
}

/** A clock whose sleeps wait until the test releases them. */
class ManualClock implements Clock {
  time = 0;
  waiting: { ms: number; wake: () => void }[] = [];
  now(): Date {
    return new Date(this.time);
  }
  sleep(ms: number): Promise<void> {
    return new Promise((wake) => this.waiting.push({ ms, wake }));
  }
  /** Wakes the oldest sleeper, returning how long it asked to sleep. */
  async advance(): Promise<number> {
    for (let i = 0; i < 50 && this.waiting.length === 0; i++) await new Promise((r) => setImmediate(r));
    const next = this.waiting.shift();
    if (!next) throw new Error('nobody is sleeping');
    this.time += next.ms;
    next.wake();
    return next.ms;
  }
}

describe('the dispatcher', () => {
  it('retries with doubling delays up to a cap', () => {
    expect([1, 2, 3, 4, 5, 6, 7, 8].map((n) => retryDelayMs(DEFAULT_RETRY, n))).toEqual([1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000]);
  });

  it('publishes a job\'s events one by one in order, waits out failures on its clock, and sends what was recorded meanwhile', async () => {
    const outbox = new MemoryOutbox();
    const clock = new ManualClock();
    const sent: string[] = [];
    let failures = 0;
    const dispatcher = new JobEventsDispatcher({
      store: outbox,
      clock,
      log: () => undefined,
      publisher: {
        publish: (events) => {
          if (failures > 0) {
            failures--;
            return Promise.reject(new Error('503'));
          }
          sent.push(...events.map((e) => e.id));
          return Promise.resolve();
        },
      },
    });
    outbox.add('j', 'NotStarted');
    outbox.add('j', 'Preparing');
    failures = 3;
    dispatcher.kick('j');
    // A kick while it runs does not start a second publisher of the job.
    dispatcher.kick('j');
    expect(await clock.advance()).toBe(1000);
    expect(await clock.advance()).toBe(2000);
    outbox.add('j', 'Running');
    dispatcher.kick('j');
    expect(await clock.advance()).toBe(4000);
    await dispatcher.idle();
    expect(sent).toEqual(['j:1:NotStarted', 'j:2:Preparing', 'j:3:Running']);
    expect(outbox.rows.get('j')).toEqual([]);
    expect(clock.time).toBe(7000);
  });

  it('gives up after its attempts and leaves the events in the outbox', async () => {
    const outbox = new MemoryOutbox();
    const clock = new ManualClock();
    const logged: string[] = [];
    const dispatcher = new JobEventsDispatcher({ store: outbox, clock, retry: { attempts: 3, firstDelayMs: 100, maxDelayMs: 150 }, log: (m) => logged.push(m), publisher: { publish: () => Promise.reject(new Error('down')) } });
    outbox.add('j', 'NotStarted');
    dispatcher.kick('j');
    expect(await clock.advance()).toBe(100);
    expect(await clock.advance()).toBe(150);
    await dispatcher.idle();
    expect(outbox.rows.get('j')).toHaveLength(1);
    expect(logged.join('\n')).toMatch(/after 3 attempts.*down/);
  });
});
