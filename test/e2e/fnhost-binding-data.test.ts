import { resolve } from 'node:path';
import { BlobServiceClient } from '@azure/storage-blob';
import { QueueServiceClient } from '@azure/storage-queue';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startOrchestration, waitForCompletion } from '../support/durable.js';
import { type FnHostProcess, SYSTEM_KEYS, startFnHost } from '../support/fnhost.js';
import { uniqueName } from '../support/ports.js';
import { waitFor } from '../support/wait.js';

// Binding expressions see the trigger's payload and metadata for every trigger kind fnhost
// serves; the app (test/fixtures/fnhost-bindingdata-app) names its output blobs from them.
const APP = resolve(import.meta.dirname, '..', 'fixtures', 'fnhost-bindingdata-app');

let host: FnHostProcess;
let blobs: BlobServiceClient;
let queues: QueueServiceClient;

beforeAll(async () => {
  host = await startFnHost({ appDir: APP });
  blobs = BlobServiceClient.fromConnectionString(host.storageConnection);
  queues = QueueServiceClient.fromConnectionString(host.storageConnection);
});

afterAll(async () => {
  await host?.stop();
});

const b64 = (text: string): string => Buffer.from(text, 'utf8').toString('base64');

/** A blob's text, or undefined while it does not exist. */
async function blobText(container: string, name: string): Promise<string | undefined> {
  try {
    return (await blobs.getContainerClient(container).getBlobClient(name).downloadToBuffer()).toString('utf8');
  } catch (err) {
    if ((err as { statusCode?: number }).statusCode === 404) return undefined;
    throw err;
  }
}

async function blobNames(container: string, prefix = ''): Promise<string[]> {
  const names: string[] = [];
  try {
    for await (const item of blobs.getContainerClient(container).listBlobsFlat({ prefix })) names.push(item.name);
  } catch (err) {
    if ((err as { statusCode?: number }).statusCode !== 404) throw err;
  }
  return names;
}

async function waitForBlob(container: string, name: string): Promise<string> {
  return waitFor(() => blobText(container, name), { what: `blob ${container}/${name}`, timeoutMs: 30_000 });
}

function postEvent(event: Record<string, unknown>): Promise<Response> {
  return fetch(`${host.url}/runtime/webhooks/EventGrid?functionName=eventToBlob&code=${SYSTEM_KEYS.eventgrid_extension}`, {
    method: 'POST',
    headers: { 'aeg-event-type': 'Notification', 'content-type': 'application/json' },
    body: JSON.stringify([event]),
  });
}

describe('fnhost binding data: HTTP trigger', () => {
  it('names the blob from route values (which win), query values, JSON body properties and headers', async () => {
    const folder = uniqueName('f');
    const res = await fetch(`${host.url}/api/save/${folder}/42?category=invoices`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-tenant': 'contoso' },
      body: JSON.stringify({ name: 'march', folder: 'from-body' }),
    });
    expect(res.status).toBe(201);
    const saved = JSON.parse(await waitForBlob('bd-http', `contoso/${folder}/42/invoices-march.json`));
    expect(saved).toEqual({ body: { name: 'march', folder: 'from-body' }, params: { folder, id: '42' } });
  });

  it("fails only the invocation whose payload lacks a value, with the host's message, and keeps serving", async () => {
    const folder = uniqueName('f');
    const missing = await fetch(`${host.url}/api/save/${folder}/7?category=invoices`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-tenant': 'contoso' },
      body: JSON.stringify({ title: 'no name here' }),
    });
    expect(missing.status).toBe(500);
    await waitFor(() =>
      host.output().includes("Error while handling parameter httpBlob after function returned: No value for named parameter 'name'.") ? true : undefined,
    );
    // One line, naming the function, the binding and the parameter, without repeating itself.
    expect(host.output()).toMatch(
      /Executed 'Functions\.httpToBlob' \(Failed, [^)]*\): Error while handling parameter httpBlob after function returned: No value for named parameter 'name'\.\n/,
    );
    expect(await blobNames('bd-http', `contoso/${folder}/`)).toEqual([]);

    const next = await fetch(`${host.url}/api/save/${folder}/8?category=invoices`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-tenant': 'contoso' },
      body: JSON.stringify({ name: 'april' }),
    });
    expect(next.status).toBe(201);
    expect(await waitForBlob('bd-http', `contoso/${folder}/8/invoices-april.json`)).toContain('april');
  });
});

describe('fnhost binding data: queue trigger', () => {
  it('names the blob from JSON message properties and the message id and dequeue count', async () => {
    const queue = queues.getQueueClient('bd-orders');
    await queue.createIfNotExists();
    const orderId = uniqueName('order');
    const sent = await queue.sendMessage(b64(JSON.stringify({ orderId, customer: { region: 'emea' } })));
    const written = JSON.parse(await waitForBlob('bd-queue', `emea/${orderId}-${sent.messageId}-1.json`));
    // The worker's triggerMetadata carries the message properties too, as from the host.
    expect(written.metadata).toMatchObject({ orderId, customer: { region: 'emea' }, id: sent.messageId, dequeueCount: 1 });
    expect(typeof written.metadata.insertionTime).toBe('string');
  });

  it('sees the dequeue count of a later delivery', async () => {
    const queue = queues.getQueueClient('bd-orders');
    await queue.createIfNotExists();
    const orderId = uniqueName('retry');
    const sent = await queue.sendMessage(b64(JSON.stringify({ orderId, customer: { region: 'apac' }, failFirst: true })));
    await waitForBlob('bd-queue', `apac/${orderId}-${sent.messageId}-2.json`);
    expect(await blobNames('bd-queue', `apac/${orderId}-`)).toEqual([`apac/${orderId}-${sent.messageId}-2.json`]);
  });
});

describe('fnhost binding data: blob trigger', () => {
  it('names the blobs from the parts of the trigger path, the blob path and its properties', async () => {
    const container = blobs.getContainerClient('bd-in');
    await container.createIfNotExists();
    const folder = `${uniqueName('reports')}/2024`;
    const content = 'a,b\n1,2\n';
    await container.getBlockBlobClient(`${folder}/q1.final.csv`).uploadData(Buffer.from(content));

    // Greedy parts: the folder keeps its slash, the name keeps its inner dot.
    expect(await waitForBlob('bd-blob', `csv/${folder}/q1.final-${content.length}`)).toBe(content);
    const source = JSON.parse(await waitForBlob('bd-blob-src', `bd-in/${folder}/q1.final.csv`));
    expect(source.metadata).toMatchObject({ folder, name: 'q1.final', ext: 'csv', blobTrigger: `bd-in/${folder}/q1.final.csv` });
  });
});

describe('fnhost binding data: timer trigger', () => {
  it('names the blob from {DateTime:...}, {sys.UtcNow:...} and {rand-guid}', async () => {
    const [name] = await waitFor(async () => {
      const names = await blobNames('bd-timer');
      return names.length > 0 ? names : undefined;
    });
    const m = /^(\d{4})\/(\d{2})\/(\d{2})-([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\.json$/.exec(name ?? '');
    expect(m, name).not.toBeNull();
    const { at } = JSON.parse((await blobText('bd-timer', name ?? '')) ?? '{}') as { at: string };
    // The path was resolved just after the function ran, in UTC.
    const ran = new Date(at);
    const resolvedDay = `${m?.[1]}-${m?.[2]}-${m?.[3]}`;
    expect([ran.toISOString().slice(0, 10), new Date(ran.getTime() + 60_000).toISOString().slice(0, 10)]).toContain(resolvedDay);
  });
});

describe('fnhost binding data: Event Grid trigger', () => {
  it('names the blob from event fields and data, and fails an event without the value', async () => {
    const id = uniqueName('ev');
    const event = {
      id,
      topic: '/subscriptions/x/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/acct',
      subject: `/blobServices/default/containers/c/blobs/${id}.txt`,
      eventType: 'Microsoft.Storage.BlobCreated',
      eventTime: '2024-05-01T10:00:00Z',
      data: { api: 'PutBlob', url: `https://acct.blob.core.windows.net/c/${id}.txt` },
      dataVersion: '',
      metadataVersion: '1',
    };
    expect((await postEvent(event)).status).toBe(202);
    const written = JSON.parse(await waitForBlob('bd-events', `Microsoft.Storage.BlobCreated/PutBlob-${id}.json`));
    expect(written.event).toMatchObject({ id, subject: event.subject });
    // As the host reads an ISO date in JSON as a DateTime, triggerMetadata has it in .NET's text.
    expect(written.metadata).toMatchObject({ id, subject: event.subject, eventTime: '05/01/2024 10:00:00', data: event.data });

    const failed = await postEvent({ ...event, id: `${id}-noapi`, data: { url: event.data.url } });
    expect(failed.status).toBe(500);
    expect(await failed.text()).toContain("Error while accessing 'api': property doesn't exist.");
    expect((await postEvent({ ...event, id: `${id}-again` })).status).toBe(202);
  });
});

describe('fnhost binding data: Durable activity', () => {
  it('writes archive/{folder}/{fileName} from the activity input (issue 9)', async () => {
    const folder = uniqueName('folder');
    const started = await startOrchestration(host.url, 'archiveOrchestration', { folder, fileName: 'notes.txt', text: 'hello archive' });
    const status = await waitForCompletion(started.statusQueryGetUri);
    expect(status.runtimeStatus).toBe('Completed');
    expect(await blobText('archive', `${folder}/notes.txt`)).toBe('hello archive');
    const { metadata } = (status.output as { archived: { metadata: Record<string, unknown> } }).archived;
    expect(metadata).toMatchObject({ instanceId: started.id, folder, fileName: 'notes.txt', data: { folder, fileName: 'notes.txt' } });
  });

  it("fails the activity whose input lacks a value with the host's message; the next one runs", async () => {
    const missing = await startOrchestration(host.url, 'archiveOrchestration', { fileName: 'orphan.txt', text: 'x' });
    const failed = await waitForCompletion(missing.statusQueryGetUri);
    expect(failed.runtimeStatus).toBe('Completed');
    expect(failed.output).toEqual({
      failed: true,
      message: expect.stringContaining(
        "Error while handling parameter archiveBlob after function returned: No value for named parameter 'folder'.",
      ),
    });
    expect(await blobNames('archive', 'orphan')).toEqual([]);

    const folder = uniqueName('folder');
    const next = await startOrchestration(host.url, 'archiveOrchestration', { folder, fileName: 'after.txt', text: 'still running' });
    expect((await waitForCompletion(next.statusQueryGetUri)).runtimeStatus).toBe('Completed');
    expect(await blobText('archive', `${folder}/after.txt`)).toBe('still running');
  });
});
