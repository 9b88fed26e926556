import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type FnHostProcess, startFnHost, tempDir } from '../support/fnhost.js';
import { EVENTGRID_APP, WebhookSink, jobEvent, publish } from '../support/fnhost-eventgrid.js';
import { uniqueName } from '../support/ports.js';
import { waitFor } from '../support/wait.js';

// Custom topics: publishes to fnhost's topic endpoint reach webhook subscribers with Event Grid's
// handshakes, headers, per-subject order and retries.

let host: FnHostProcess;
let sink: WebhookSink;
let received: ReturnType<typeof tempDir>;

const TOPIC_ID = '/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/fnhost/providers/Microsoft.EventGrid/topics/batch-jobs';

beforeAll(async () => {
  // The CloudEvents subscriber fails events that ask for it twice before accepting them.
  sink = new WebhookSink((path, event) => (path === '/ce' && (event['data'] as { failTwice?: boolean } | undefined)?.failTwice ? 2 : 0));
  await sink.listen();
  received = tempDir('fnhost-eg-topics-');
  host = await startFnHost({ appDir: EVENTGRID_APP, env: { RECEIVED_DIR: received.path, SINK_URL: sink.url } });
});

afterAll(async () => {
  await host?.stop();
  await sink?.close();
  received?.remove();
});

describe('fnhost Event Grid custom topics', () => {
  it('refuses publishes without the topic key, to unknown topics, and malformed ones', async () => {
    const event = [jobEvent(uniqueName('e'), 'endpoints/x/jobs/1')];
    expect((await publish(host.url, event, { key: '' })).status).toBe(401);
    expect((await publish(host.url, event, { key: 'not-the-key-at-all' })).status).toBe(401);
    expect((await publish(host.url, event, { topic: 'no-such-topic' })).status).toBe(404);
    const notJson = await publish(host.url, '[{"id":');
    expect(notJson.status).toBe(400);
    const missingType = await publish(host.url, [{ specversion: '1.0', id: 'x', source: '/s' }]);
    expect(missingType.status).toBe(400);
    expect(((await missingType.json()) as { error: { message: string } }).error.message).toContain('"type" is required');
    const mixed = await publish(host.url, [jobEvent('a', 's'), { id: 'b', subject: 's', eventType: 't', eventTime: new Date().toISOString(), data: {} }]);
    expect(mixed.status).toBe(400);
  });

  it('delivers in order per subject, after each subscriber validated, with Event Grid headers', async () => {
    const job = uniqueName('job');
    const subject = `endpoints/penguins/jobs/${job}`;
    const states = ['NotStarted', 'Preparing', 'Running', 'Finalizing'];
    const events = states.map((s, i) => jobEvent(`${job}-${i}`, subject, 'BatchEndpoints.JobStateChanged', { status: s }));
    events.push(jobEvent(`${job}-done`, subject, 'BatchEndpoints.JobCompleted', { status: 'Completed' }));
    // Not one of the Event Grid schema subscriber's includedEventTypes.
    events.push(jobEvent(`${job}-other`, subject, 'BatchEndpoints.SomethingElse'));
    const res = await publish(host.url, events);
    expect(res.status).toBe(200);

    const ce = await waitFor(() => {
      const d = sink.delivered('/ce').filter((e) => e['subject'] === subject);
      return d.length === 6 ? d : undefined;
    });
    expect(ce.map((e) => e['id'])).toEqual(events.map((e) => e['id']));
    expect(ce[0]).toEqual(events[0]);

    const eg = await waitFor(() => {
      const d = sink.delivered('/eg').filter((e) => e['subject'] === subject);
      return d.length === 5 ? d : undefined;
    });
    expect(eg.map((e) => e['id'])).toEqual(events.slice(0, 5).map((e) => e['id']));
    expect(eg[4]).toMatchObject({
      id: `${job}-done`,
      topic: TOPIC_ID,
      subject,
      eventType: 'BatchEndpoints.JobCompleted',
      eventTime: events[4]?.['time'],
      data: { status: 'Completed' },
      dataVersion: '',
      metadataVersion: '1',
    });

    // Each subscriber was asked to validate before its first notification.
    const first = (path: string): number => sink.requests.findIndex((r) => r.path === path && r.headers['aeg-event-type'] === 'Notification');
    const ceHandshake = sink.requests.findIndex((r) => r.path === '/ce' && r.method === 'OPTIONS');
    expect(ceHandshake).toBeGreaterThanOrEqual(0);
    expect(ceHandshake).toBeLessThan(first('/ce'));
    expect(sink.requests[ceHandshake]?.headers['webhook-request-origin']).toBe('eventgrid.azure.net');
    const egHandshake = sink.requests.findIndex((r) => r.path === '/eg' && r.headers['aeg-event-type'] === 'SubscriptionValidation');
    expect(egHandshake).toBeGreaterThanOrEqual(0);
    expect(egHandshake).toBeLessThan(first('/eg'));
    expect(sink.requests[egHandshake]?.body).toMatchObject([{ eventType: 'Microsoft.EventGrid.SubscriptionValidationEvent', topic: TOPIC_ID }]);

    const ceRequest = sink.notifications('/ce').find((n) => n.event['id'] === `${job}-0`);
    expect(ceRequest?.headers['content-type']).toMatch(/^application\/cloudevents\+json/);
    expect(ceRequest?.headers['aeg-subscription-name']).toBe('SINK-CLOUDEVENTS');
    expect(ceRequest?.headers['aeg-delivery-count']).toBe('0');
    const egRequest = sink.notifications('/eg').find((n) => n.event['id'] === `${job}-0`);
    expect(egRequest?.headers['content-type']).toMatch(/^application\/json/);
    expect(Array.isArray(egRequest?.body)).toBe(true);
  });

  it('retries a failing subscriber on the scaled schedule, holding back later events of the subject', async () => {
    const job = uniqueName('job');
    const subject = `endpoints/penguins/jobs/${job}`;
    const failing = jobEvent(`${job}-flaky`, subject, 'BatchEndpoints.JobStateChanged', { status: 'Running', failTwice: true });
    const after = jobEvent(`${job}-after`, subject, 'BatchEndpoints.JobCompleted', { status: 'Completed' });
    expect((await publish(host.url, [failing, after])).status).toBe(200);

    await waitFor(() => (sink.delivered('/ce').some((e) => e['id'] === after['id']) ? true : undefined));
    const attempts = sink.notifications('/ce').filter((n) => n.event['subject'] === subject);
    // 500, 500, 200 for the first event, then the second: never before the first was accepted.
    expect(attempts.map((a) => [a.event['id'], a.headers['aeg-delivery-count']])).toEqual([
      [failing['id'], '0'],
      [failing['id'], '1'],
      [failing['id'], '2'],
      [after['id'], '0'],
    ]);
    // Event Grid waits 10 s, then 30 s; scaled by 0.01 (±10%): about 0.1 s and 0.3 s.
    const gap = (i: number): number => (attempts[i + 1]?.at ?? 0) - (attempts[i]?.at ?? 0);
    expect(gap(0)).toBeGreaterThanOrEqual(85);
    expect(gap(1)).toBeGreaterThanOrEqual(265);
  });

  it('gives the app the topic endpoint and key through its settings', async () => {
    const id = uniqueName('from-app');
    const res = await fetch(`${host.url}/api/publishJobEvent`, { method: 'POST', body: JSON.stringify([jobEvent(id, 'endpoints/app/jobs/1')]) });
    const answer = (await res.json()) as { status: number; endpoint: string };
    expect(answer).toEqual({ status: 200, endpoint: `${host.url}/runtime/eventgrid/topics/batch-jobs/api/events` });
    await waitFor(() => (sink.delivered('/ce').some((e) => e['id'] === id) ? true : undefined));
  });
});
