import { BlobServiceClient, RestError, type ContainerClient } from '@azure/storage-blob';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAzurite } from '../support/azurite.js';

/**
 * fnhost's Azurite removes a few documents at a time one by one instead of rebuilding every index
 * of the collection (infra/local/src/storage/azurite-preload.ts). Whatever it removes, every blob
 * and block left must still be found by name, and the removed ones must be gone: deletes of blobs
 * with and without uncommitted blocks, commits that drop the blocks left staged, in a container beside
 * another, then every blob read, listed and committed again.
 */

const block = (n: number): string => Buffer.from(`block-${String(n).padStart(6, '0')}`).toString('base64');

async function status(p: Promise<unknown>): Promise<number | undefined> {
  try {
    await p;
    return 200;
  } catch (err) {
    if (err instanceof RestError) return err.statusCode;
    throw err;
  }
}

describe("fnhost's Azurite: deletes and commits keep every lookup right", () => {
  let azurite: { connectionString: string; stop: () => Promise<void> };
  let a: ContainerClient;
  let b: ContainerClient;
  beforeAll(async () => {
    azurite = await startAzurite();
    const service = BlobServiceClient.fromConnectionString(azurite.connectionString);
    a = service.getContainerClient('deletes-a');
    b = service.getContainerClient('deletes-b');
    await a.create();
    await b.create();
  }, 120_000);
  afterAll(async () => {
    await azurite.stop();
  });

  it('finds exactly the blobs and blocks that are left', async () => {
    const names = Array.from({ length: 60 }, (_, i) => `f-${String((i * 37) % 60).padStart(3, '0')}.txt`);
    for (const name of names) {
      await a.getBlockBlobClient(name).upload(`a ${name}`, Buffer.byteLength(`a ${name}`));
      await b.getBlockBlobClient(name).upload(`b ${name}`, Buffer.byteLength(`b ${name}`));
    }
    // Uncommitted blocks on some blobs: a delete or a commit drops them.
    for (let i = 0; i < 10; i++) {
      const blob = a.getBlockBlobClient(`f-${String(i * 3).padStart(3, '0')}.txt`);
      await blob.stageBlock(block(1), 'one', 3);
      await blob.stageBlock(block(2), 'two', 3);
    }
    const deleted = new Set<string>();
    for (let i = 0; i < 60; i += 4) {
      const name = `f-${String(i).padStart(3, '0')}.txt`;
      await a.deleteBlob(name);
      deleted.add(name);
    }
    // Committing one of the staged blocks drops the other.
    const committed = a.getBlockBlobClient('f-003.txt');
    await committed.commitBlockList([block(2)]);
    expect((await committed.getBlockList('all')).uncommittedBlocks ?? []).toEqual([]);
    expect((await committed.downloadToBuffer()).toString()).toBe('two');

    const sorted = [...new Set(names)].sort();
    const listedA: string[] = [];
    for await (const blob of a.listBlobsFlat()) listedA.push(blob.name);
    expect(listedA).toEqual(sorted.filter((n) => !deleted.has(n)));
    const listedB: string[] = [];
    for await (const blob of b.listBlobsFlat()) listedB.push(blob.name);
    expect(listedB).toEqual(sorted);
    for (const name of sorted) {
      if (deleted.has(name)) {
        expect(await status(a.getBlobClient(name).getProperties())).toBe(404);
      } else if (name !== 'f-003.txt') {
        expect((await a.getBlobClient(name).downloadToBuffer()).toString()).toBe(`a ${name}`);
      }
      expect((await b.getBlobClient(name).downloadToBuffer()).toString()).toBe(`b ${name}`);
    }
    // A name written again after its delete: its new block commits, and the commit drops what was
    // left staged (Azurite keeps a deleted blob's uncommitted blocks, unlike Azure).
    const again = a.getBlockBlobClient('f-000.txt');
    await again.stageBlock(block(3), 'new', 3);
    await again.commitBlockList([block(3)]);
    expect((await again.downloadToBuffer()).toString()).toBe('new');
    expect((await again.getBlockList('all')).uncommittedBlocks ?? []).toEqual([]);
  }, 120_000);
});
