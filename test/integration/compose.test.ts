import { BlobServiceClient, type ContainerClient } from '@azure/storage-blob';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ComposeSource, composeBlob } from '../../shared/outputs/compose.js';
import { startAzurite } from '../support/azurite.js';

/**
 * Server-side composition (Put Block From URL, on fnhost's Azurite): a blob made of other blobs and
 * inline texts, in order; more pieces than a blob holds blocks go through intermediate blobs (here
 * with a limit of 3 blocks, so that a few pieces need two levels); composing again gives the same.
 */
let storage: { connectionString: string; stop: () => Promise<void> };
let container: ContainerClient;

beforeAll(async () => {
  storage = await startAzurite();
  container = BlobServiceClient.fromConnectionString(storage.connectionString).getContainerClient('compose');
  await container.create();
});

afterAll(async () => {
  await storage?.stop();
});

describe('composing a blob from parts (Azurite)', () => {
  it('concatenates parts and texts in order, through intermediate blobs past the block limit, repeatably', async () => {
    const sources: ComposeSource[] = [{ text: 'header\n' }];
    let expected = 'header\n';
    for (let i = 0; i < 8; i++) {
      const text = i === 3 ? '' : `part ${i}\n`.repeat(i + 1);
      const blob = container.getBlockBlobClient(`parts/${i}`);
      await blob.upload(text, Buffer.byteLength(text));
      sources.push({ blob, bytes: Buffer.byteLength(text), key: `k${i}` });
      expected += text;
    }
    sources.push({ text: 'footer\n' });
    expected += 'footer\n';
    const target = container.getBlockBlobClient('out/file.csv');
    const scratch = (level: number, index: number): ReturnType<ContainerClient['getBlockBlobClient']> => container.getBlockBlobClient(`scratch/${level}-${index}`);
    await composeBlob(target, sources, { contentType: 'text/csv', scratch, maxBlocks: 3 });
    expect((await target.downloadToBuffer()).toString()).toBe(expected);
    expect((await target.getProperties()).contentType).toBe('text/csv');
    // 9 non-empty pieces at 3 a blob: 3 intermediates, composed into the target's 3 blocks.
    expect((await target.getBlockList('committed')).committedBlocks).toHaveLength(3);
    expect(await container.getBlobClient('scratch/0-2').exists()).toBe(true);
    await composeBlob(target, sources, { contentType: 'text/csv', scratch, maxBlocks: 3 });
    expect((await target.downloadToBuffer()).toString()).toBe(expected);

    const empty = container.getBlockBlobClient('out/empty.csv');
    await composeBlob(empty, [], { contentType: 'text/csv', scratch });
    expect((await empty.downloadToBuffer()).length).toBe(0);
  });
});
