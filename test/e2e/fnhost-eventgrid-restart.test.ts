import { BlobServiceClient } from '@azure/storage-blob';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type FnHostProcess, startFnHost, stopStorage, tempDir } from '../support/fnhost.js';
import { EVENTGRID_APP, WebhookSink, jobEvent, publish, receivedBy } from '../support/fnhost-eventgrid.js';
import { waitFor } from '../support/wait.js';

// Event Grid outlives a crash of the host: blob writes made while it was down, and publishes it
// accepted but had not delivered, are delivered when it comes back.

let sink: WebhookSink;
let data: ReturnType<typeof tempDir>;
let received: ReturnType<typeof tempDir>;
const hosts: FnHostProcess[] = [];

beforeAll(async () => {
  sink = new WebhookSink();
  await sink.listen();
  data = tempDir('fnhost-eg-data-');
  received = tempDir('fnhost-eg-received-');
});

afterAll(async () => {
  for (const h of hosts) await h.stop();
  await stopStorage(data.path).catch(() => undefined);
  await sink?.close();
  data?.remove();
  received?.remove();
});

async function start(): Promise<FnHostProcess> {
  const host = await startFnHost({ appDir: EVENTGRID_APP, dataDir: data.path, env: { RECEIVED_DIR: received.path, SINK_URL: sink.url } });
  hosts.push(host);
  return host;
}

const subjects = (fn: string): string[] => receivedBy<{ subject: string }>(received.path, fn).map((e) => e.subject);
const prefix = '/blobServices/default/containers/inbox/blobs/';

describe('fnhost Event Grid across a crash of the host', () => {
  it('delivers what happened while the host was down, and what it had accepted', async () => {
    const first = await start();
    const inbox = BlobServiceClient.fromConnectionString(first.storageConnection).getContainerClient('inbox');
    await inbox.createIfNotExists();
    await inbox.getBlockBlobClient('before.txt').upload('b', 1);
    await waitFor(() => (subjects('inboxEventGridSchema').includes(`${prefix}before.txt`) ? true : undefined));

    // Accepted by the topic, but the subscriber is down: it stays in the topic's log.
    sink.down = true;
    const pending = jobEvent('accepted-before-crash', 'endpoints/e/jobs/crash');
    expect((await publish(first.url, [pending])).status).toBe(200);
    await waitFor(() => (sink.requests.length > 0 ? true : undefined));

    await first.kill();
    // Azurite outlives the host; these writes happen with no host to hear of them.
    await inbox.getBlockBlobClient('while-down.txt').upload('w', 1);
    await inbox.getBlockBlobClient('csv/while-down.csv').upload('c,d\n', 4);
    sink.down = false;

    const second = await start();
    expect(second.storageConnection).toBe(first.storageConnection);
    await waitFor(() => (subjects('inboxEventGridSchema').includes(`${prefix}while-down.txt`) ? true : undefined));
    await waitFor(() => (subjects('inboxCsvCloudEvents').includes(`${prefix}csv/while-down.csv`) ? true : undefined));
    await waitFor(() => (sink.delivered('/ce').some((e) => e['id'] === pending['id']) ? true : undefined));
    await waitFor(() => (sink.delivered('/eg').some((e) => e['id'] === pending['id']) ? true : undefined));

    // At least once: each write is delivered, a write made before the crash possibly again.
    const eg = subjects('inboxEventGridSchema');
    expect(eg.filter((s) => s === `${prefix}while-down.txt`)).toHaveLength(1);
    expect(eg.filter((s) => s === `${prefix}before.txt`).length).toBeGreaterThanOrEqual(1);
    expect(eg.filter((s) => s === `${prefix}csv/while-down.csv`)).toHaveLength(1);
  });
});
