import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type FnHostProcess, MASTER_KEY, SYSTEM_KEYS, TEST_APP, startFnHost } from '../support/fnhost.js';
import { uniqueName } from '../support/ports.js';
import { waitFor } from '../support/wait.js';

let host: FnHostProcess;

beforeAll(async () => {
  host = await startFnHost({ appDir: TEST_APP });
});

afterAll(async () => {
  await host?.stop();
});

function hook(functionName: string, key: string | undefined = SYSTEM_KEYS.eventgrid_extension): string {
  return `${host.url}/runtime/webhooks/EventGrid?functionName=${functionName}${key ? `&code=${key}` : ''}`;
}

function blobCreated(id: string, subject: string): Record<string, unknown> {
  return {
    id,
    topic: '/subscriptions/x/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/acct',
    subject,
    eventType: 'Microsoft.Storage.BlobCreated',
    eventTime: new Date().toISOString(),
    data: { api: 'PutBlob', url: `https://acct.blob.core.windows.net/c/${id}`, contentLength: 10 },
    dataVersion: '',
    metadataVersion: '1',
  };
}

async function received(): Promise<{ id: string; type: string; subject: string; data: unknown }[]> {
  return (await (await fetch(`${host.url}/api/receivedEvents`)).json()) as { id: string; type: string; subject: string; data: unknown }[];
}

describe('fnhost Event Grid trigger', () => {
  it('answers the subscription validation handshake', async () => {
    const res = await fetch(hook('onEvent'), {
      method: 'POST',
      headers: { 'aeg-event-type': 'SubscriptionValidation', 'content-type': 'application/json' },
      body: JSON.stringify([
        {
          id: 'v1',
          topic: '/subscriptions/x',
          subject: '',
          eventType: 'Microsoft.EventGrid.SubscriptionValidationEvent',
          eventTime: new Date().toISOString(),
          data: { validationCode: 'abc-123' },
          dataVersion: '1',
          metadataVersion: '1',
        },
      ]),
    });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ validationResponse: 'abc-123' });
    expect((await received()).map((e) => e.id)).not.toContain('v1');
  });

  it('answers the CloudEvents OPTIONS handshake', async () => {
    const res = await fetch(hook('onEvent'), { method: 'OPTIONS', headers: { 'WebHook-Request-Origin': 'eventgrid.azure.net' } });
    expect(res.status).toBe(200);
    expect(res.headers.get('webhook-allowed-origin')).toBe('eventgrid.azure.net');
  });

  it('invokes the function once per event in an Event Grid batch', async () => {
    const ids = [uniqueName('eg'), uniqueName('eg'), uniqueName('eg')];
    const res = await fetch(hook('onEvent'), {
      method: 'POST',
      headers: { 'aeg-event-type': 'Notification', 'content-type': 'application/json' },
      body: JSON.stringify(ids.map((id) => blobCreated(id, `/blobServices/default/containers/c/blobs/${id}`))),
    });
    expect(res.status).toBe(202);
    const events = await waitFor(async () => {
      const all = (await received()).filter((e) => ids.includes(e.id));
      return all.length === 3 ? all : undefined;
    });
    expect(events.map((e) => e.type)).toEqual(['Microsoft.Storage.BlobCreated', 'Microsoft.Storage.BlobCreated', 'Microsoft.Storage.BlobCreated']);
    expect(events[0]?.data).toMatchObject({ api: 'PutBlob' });
  });

  it('accepts a single CloudEvents 1.0 event', async () => {
    const id = uniqueName('ce');
    const res = await fetch(hook('onEvent'), {
      method: 'POST',
      headers: { 'aeg-event-type': 'Notification', 'content-type': 'application/cloudevents+json' },
      body: JSON.stringify({ specversion: '1.0', id, source: '/x', type: 'Custom.Thing', subject: 's', data: { n: 1 } }),
    });
    expect(res.status).toBe(202);
    const event = await waitFor(async () => (await received()).find((e) => e.id === id));
    expect(event).toMatchObject({ type: 'Custom.Thing', subject: 's', data: { n: 1 } });
  });

  it('reports a failing invocation with 500 so Event Grid retries', async () => {
    const res = await fetch(hook('failingEvent'), {
      method: 'POST',
      headers: { 'aeg-event-type': 'Notification' },
      body: JSON.stringify([{ ...blobCreated('bad-1', 's'), data: { fail: true } }]),
    });
    expect(res.status).toBe(500);
    expect(await res.text()).toContain('refused bad-1');
  });

  it('rejects bad requests without invoking anything', async () => {
    const before = (await received()).length;
    const noKey = await fetch(hook('onEvent', ''), { method: 'POST', headers: { 'aeg-event-type': 'Notification' }, body: '[]' });
    expect(noKey.status).toBe(401);
    const masterKey = await fetch(hook('nope', MASTER_KEY), { method: 'POST', headers: { 'aeg-event-type': 'Notification' }, body: '[]' });
    expect(masterKey.status).toBe(404);
    const malformed = await fetch(hook('onEvent'), { method: 'POST', headers: { 'aeg-event-type': 'Notification' }, body: '{not json' });
    expect(malformed.status).toBe(400);
    const missingFields = await fetch(hook('onEvent'), {
      method: 'POST',
      headers: { 'aeg-event-type': 'Notification' },
      body: JSON.stringify([blobCreated('ok-1', 's'), { id: 'x' }]),
    });
    expect(missingFields.status).toBe(400);
    expect(JSON.stringify(await missingFields.json())).toContain('event 1');
    const noType = await fetch(hook('onEvent'), { method: 'POST', body: JSON.stringify([blobCreated('ok-2', 's')]) });
    expect(noType.status).toBe(400);
    expect((await received()).length).toBe(before);
  });
});
