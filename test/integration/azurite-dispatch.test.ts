/**
 * fnhost's Azurite remembers which operation a request shape is (azurite-preload.ts, "Dispatch"):
 * requests that differ only in a header or query value that decides the operation must still
 * reach their own operation, the first time and every time after.
 */
import { BlobServiceClient, type ContainerClient } from '@azure/storage-blob';
import { QueueServiceClient } from '@azure/storage-queue';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAzurite } from '../support/azurite.js';
import { uniqueName } from '../support/ports.js';

let storage: { connectionString: string; stop: () => Promise<void> };
let container: ContainerClient;

beforeAll(async () => {
  storage = await startAzurite();
  container = BlobServiceClient.fromConnectionString(storage.connectionString).getContainerClient(uniqueName('dispatch'));
  await container.create();
});

afterAll(async () => {
  await storage?.stop();
});

describe("fnhost's Azurite dispatch", () => {
  it('reaches each blob operation of one method and path shape, again and again', async () => {
    for (const round of [1, 2, 3]) {
      const block = container.getBlockBlobClient(`r${round}/block.txt`);
      await block.upload('block', 5);
      const page = container.getPageBlobClient(`r${round}/page.bin`);
      await page.create(512);
      const append = container.getAppendBlobClient(`r${round}/append.txt`);
      await append.create();
      await append.appendBlock('one,', 4);
      await append.appendBlock('two', 3);
      await block.setMetadata({ round: String(round) });
      await block.setHTTPHeaders({ blobContentType: 'text/x-round' });
      const copy = container.getBlockBlobClient(`r${round}/copy.txt`);
      await (await copy.beginCopyFromURL(block.url)).pollUntilDone();
      const staged = container.getBlockBlobClient(`r${round}/staged.txt`);
      const id = (n: number): string => Buffer.from(`block-${n}`).toString('base64');
      await staged.stageBlock(id(0), 'staged+', 7);
      await staged.stageBlockFromURL(id(1), `${append.url}?${await sasQuery()}`, 0, 4);
      await staged.commitBlockList([id(0), id(1)]);

      const props = await Promise.all([block, page, append, copy, staged].map(async (b) => b.getProperties()));
      expect(props.map((p) => p.blobType)).toEqual(['BlockBlob', 'PageBlob', 'AppendBlob', 'BlockBlob', 'BlockBlob']);
      expect(props[0]?.metadata).toEqual({ round: String(round) });
      expect(props[0]?.contentType).toBe('text/x-round');
      expect(props[1]?.contentLength).toBe(512);
      const text = async (name: string): Promise<string> => (await container.getBlobClient(name).downloadToBuffer()).toString();
      expect(await text(`r${round}/append.txt`)).toBe('one,two');
      expect(await text(`r${round}/copy.txt`)).toBe('block');
      expect(await text(`r${round}/staged.txt`)).toBe('staged+one,');
      // Container operations share the method with the blob's but not the path shape.
      await container.setMetadata({ round: String(round) });
      expect((await container.getProperties()).metadata).toEqual({ round: String(round) });
      // A request no operation fits is refused the same way every time (nothing is remembered for it).
      const bogus = await fetch(`${block.url}?comp=bogus&${await sasQuery()}`, { method: 'PUT', body: 'x' });
      expect(bogus.status).toBe(400);
      await bogus.body?.cancel();
    }
  });

  it('reaches each queue operation', async () => {
    const queue = QueueServiceClient.fromConnectionString(storage.connectionString).getQueueClient(uniqueName('dispatch'));
    await queue.create();
    for (const round of [1, 2]) {
      await queue.sendMessage(`message ${round}`);
      await queue.setMetadata({ round: String(round) });
      expect((await queue.getProperties()).metadata).toEqual({ round: String(round) });
      const [received] = (await queue.receiveMessages()).receivedMessageItems;
      expect(received?.messageText).toBe(`message ${round}`);
      await queue.deleteMessage(received?.messageId ?? '', received?.popReceipt ?? '');
      expect((await queue.peekMessages()).peekedMessageItems).toEqual([]);
    }
  });
});

async function sasQuery(): Promise<string> {
  const url = await container.generateSasUrl({ permissions: (await import('@azure/storage-blob')).ContainerSASPermissions.parse('rwl'), expiresOn: new Date(Date.now() + 3_600_000) });
  return new URL(url).search.slice(1);
}
