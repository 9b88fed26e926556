import { BlobServiceClient, type ContainerClient } from '@azure/storage-blob';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type FnHostProcess, startFnHost, tempDir } from '../support/fnhost.js';
import { EVENTGRID_APP, receivedBy } from '../support/fnhost-eventgrid.js';
import { waitFor } from '../support/wait.js';

// The storage account's Event Grid system topic: fnhost delivers BlobCreated events for writes
// to its Azurite to the app's Event Grid functions, per the subscriptions in local.settings.json.

type EgEvent = { id: string; topic: string; subject: string; eventType: string; eventTime: string; dataVersion: string; metadataVersion: string; data: Record<string, unknown> };
type CloudEvent = { id: string; source: string; subject: string; type: string; time: string; specversion: string; data: Record<string, unknown> };

let host: FnHostProcess;
let received: ReturnType<typeof tempDir>;
let inbox: ContainerClient;

beforeAll(async () => {
  received = tempDir('fnhost-eg-received-');
  // The topic's webhook subscribers are not used here; the URL only has to be one.
  host = await startFnHost({ appDir: EVENTGRID_APP, env: { RECEIVED_DIR: received.path, SINK_URL: 'http://127.0.0.1:9' } });
  inbox = BlobServiceClient.fromConnectionString(host.storageConnection).getContainerClient('inbox');
  await inbox.createIfNotExists();
});

afterAll(async () => {
  await host?.stop();
  received?.remove();
});

const unquote = (etag: string | undefined): string => (etag ?? '').replace(/^"|"$/g, '');

describe('fnhost Event Grid storage topic', () => {
  it('delivers one BlobCreated event per finished write, in each subscription schema, filtered', async () => {
    const put = await inbox.getBlockBlobClient('plain.txt').upload('hello', 5, { blobHTTPHeaders: { blobContentType: 'text/plain' } });

    const blocks = inbox.getBlockBlobClient('csv/blocks and spaces.csv');
    const blockId = Buffer.from('block-0').toString('base64');
    await blocks.stageBlock(blockId, 'a,b\n1,2\n', 8);
    const committed = await blocks.commitBlockList([blockId], { blobHTTPHeaders: { blobContentType: 'text/csv' } });

    const copyPoller = await inbox.getBlockBlobClient('csv/copy.csv').beginCopyFromURL(blocks.url);
    const copied = await copyPoller.pollUntilDone();

    // Left out by the CloudEvents subscription's suffix filter, kept by the other.
    await inbox.getBlockBlobClient('csv/notes.txt').upload('n', 1);
    // Left out by both subscriptions' prefix filters.
    const other = BlobServiceClient.fromConnectionString(host.storageConnection).getContainerClient('other');
    await other.createIfNotExists();
    await other.getBlockBlobClient('csv/ignored.csv').upload('x', 1);
    // A staged block alone is no finished write.
    await inbox.getBlockBlobClient('csv/staged-only.csv').stageBlock(blockId, 'z', 1);
    // Written last: once it has arrived, every event before it has been delivered too.
    await inbox.getBlockBlobClient('csv/zz-last.csv').upload('last', 4);

    const eg = await waitFor(() => {
      const all = receivedBy<EgEvent>(received.path, 'inboxEventGridSchema');
      return all.some((e) => e.subject.endsWith('/zz-last.csv')) ? all : undefined;
    });
    const ce = await waitFor(() => {
      const all = receivedBy<CloudEvent>(received.path, 'inboxCsvCloudEvents');
      return all.some((e) => e.subject.endsWith('/zz-last.csv')) ? all : undefined;
    });

    const prefix = '/blobServices/default/containers/inbox/blobs/';
    expect(eg.map((e) => e.subject).sort()).toEqual(
      ['plain.txt', 'csv/blocks and spaces.csv', 'csv/copy.csv', 'csv/notes.txt', 'csv/zz-last.csv'].map((n) => prefix + n).sort(),
    );
    expect(ce.map((e) => e.subject).sort()).toEqual(['csv/blocks and spaces.csv', 'csv/copy.csv', 'csv/zz-last.csv'].map((n) => prefix + n).sort());

    const bySubject = (name: string): EgEvent => {
      const e = eg.find((x) => x.subject === prefix + name);
      if (!e) throw new Error(`no event for ${name}`);
      return e;
    };
    const plain = bySubject('plain.txt');
    expect(plain).toMatchObject({
      topic: '/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/fnhost/providers/Microsoft.Storage/storageAccounts/devstoreaccount1',
      eventType: 'Microsoft.Storage.BlobCreated',
      dataVersion: '',
      metadataVersion: '1',
      data: {
        api: 'PutBlob',
        eTag: unquote(put.etag),
        requestId: put.requestId,
        clientRequestId: put.clientRequestId,
        contentType: 'text/plain',
        contentLength: 5,
        blobType: 'BlockBlob',
        url: inbox.getBlockBlobClient('plain.txt').url,
        storageDiagnostics: expect.any(Object) as unknown,
      },
    });
    expect(Number.isNaN(Date.parse(plain.eventTime))).toBe(false);
    expect(plain.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(plain.data['sequencer']).toMatch(/^[0-9A-F]{32}$/);

    const list = bySubject('csv/blocks and spaces.csv');
    expect(list.data).toMatchObject({ api: 'PutBlockList', eTag: unquote(committed.etag), contentType: 'text/csv', contentLength: 8, url: blocks.url });
    expect(bySubject('csv/copy.csv').data).toMatchObject({ api: 'CopyBlob', eTag: unquote(copied.etag), contentLength: 8, contentType: 'text/csv' });
    // Sequencers of one account's writes grow with the writes.
    expect(String(plain.data['sequencer']) < String(list.data['sequencer'])).toBe(true);

    // The same write is the same event (same id) in the CloudEvents subscription.
    const listCe = ce.find((e) => e.subject === list.subject);
    expect(listCe).toMatchObject({
      specversion: '1.0',
      id: list.id,
      source: list.topic,
      type: 'Microsoft.Storage.BlobCreated',
      time: list.eventTime,
      data: list.data,
    });
    expect(listCe).not.toHaveProperty('eventType');
  });

  it('retries a failing function on Event Grid schedule, scaled, until it succeeds', async () => {
    const flaky = BlobServiceClient.fromConnectionString(host.storageConnection).getContainerClient('flaky');
    await flaky.createIfNotExists();
    await flaky.getBlockBlobClient('retry-me.txt').upload('r', 1);
    const attempts = await waitFor(() => {
      const all = receivedBy<{ attempt: number; id: string; subject: string }>(received.path, 'flakyBlobCreated').filter((a) => a.subject.endsWith('/retry-me.txt'));
      return all.length >= 3 ? all : undefined;
    });
    // Failed twice, then succeeded: three invocations with one event id, and no fourth.
    expect(attempts.map((a) => a.attempt)).toEqual([1, 2, 3]);
    expect(new Set(attempts.map((a) => a.id)).size).toBe(1);
    expect(host.output()).toMatch(/delivery 1 of event \S+ failed \(function 'flakyBlobCreated' failed: not yet \(attempt 1\)\); retrying in \d+ ms/);
    expect(host.output()).toMatch(/delivery 2 of event \S+ failed .*retrying in \d+ ms/);
  });
});
