import { createHash, randomBytes } from 'node:crypto';
import { BlobSASPermissions, BlobServiceClient, RestError, type ContainerClient } from '@azure/storage-blob';
import { beforeAll, describe, expect, it } from 'vitest';
import { Logger } from '../../infra/local/src/log.js';
import { AzuriteService, stopAzuriteFor } from '../../infra/local/src/storage/azurite-service.js';
import { startAzurite } from '../support/azurite.js';
import { cleanupsAfterAll } from '../support/cleanups.js';
import { tempDir } from '../support/fnhost.js';

/**
 * Put Block From URL against fnhost's Azurite (its preload adds the operation; plain Azurite answers
 * 501), through @azure/storage-blob's `stageBlockFromURL`, in both of fnhost's Azurite modes: in
 * memory (a child of the host) and on disk (the service of a data folder). Checked as Azure behaves:
 * the committed bytes, the response headers, and that the source is read with its own authorization
 * only (a SAS, or a public container), never with the destination request's account key.
 */

const block = (n: number): string => Buffer.from(`block-${String(n).padStart(6, '0')}`).toString('base64');
const md5 = (b: Buffer): Buffer => createHash('md5').update(b).digest();
const hourFromNow = (): Date => new Date(Date.now() + 3_600_000);

async function rejection(p: Promise<unknown>): Promise<{ statusCode: number | undefined; code: string | undefined }> {
  try {
    await p;
  } catch (err) {
    if (err instanceof RestError) return { statusCode: err.statusCode, code: err.code };
    throw err;
  }
  throw new Error('expected the request to fail');
}

const cleanups = cleanupsAfterAll();

const modes: [string, () => Promise<string>][] = [
  [
    'in memory',
    async () => {
      const azurite = await startAzurite();
      cleanups.push(azurite.stop);
      return azurite.connectionString;
    },
  ],
  [
    'on disk',
    async () => {
      const logger = new Logger({ minLevel: 'none' });
      const dir = tempDir('put-block-from-url-');
      cleanups.push(() => Promise.resolve(dir.remove()));
      const service = await AzuriteService.start({ dataDir: dir.path, ports: { blob: 0, queue: 0, table: 0 }, logger });
      cleanups.push(() => stopAzuriteFor({ dataDir: dir.path, logger }));
      return service.connectionString;
    },
  ],
];

describe.each(modes)("Put Block From URL on fnhost's Azurite (%s)", (_mode, start) => {
  let service: BlobServiceClient;
  let source: ContainerClient;
  let target: ContainerClient;
  const content = randomBytes(300_000);

  beforeAll(async () => {
    service = BlobServiceClient.fromConnectionString(await start());
    source = service.getContainerClient('source');
    target = service.getContainerClient('target');
    await source.create();
    await target.create();
    // A source of several blocks, so that ranges cross block boundaries.
    const src = source.getBlockBlobClient('parts/part-0');
    const ids = [0, 1, 2].map(block);
    for (const [i, id] of ids.entries()) await src.stageBlock(id, content.subarray(i * 100_000, (i + 1) * 100_000), 100_000);
    await src.commitBlockList(ids);
  });

  const sasUrl = (name: string, permissions = 'r'): Promise<string> =>
    source.getBlobClient(name).generateSasUrl({ permissions: BlobSASPermissions.parse(permissions), expiresOn: hourFromNow() });

  it('composes a blob from ranges of another, and answers with the headers Azure sends', async () => {
    const url = await sasUrl('parts/part-0');
    const dest = target.getBlockBlobClient('composed');
    const first = await dest.stageBlockFromURL(block(0), url, 0, 150_000);
    expect(first._response.status).toBe(201);
    expect(Buffer.from(first.contentMD5 ?? [])).toEqual(md5(content.subarray(0, 150_000)));
    expect(first.requestId).toMatch(/\S/);
    expect(first.version).toMatch(/^\d{4}-\d{2}-\d{2}$/);
    expect(first.date).toBeInstanceOf(Date);
    expect(first.isServerEncrypted).toBe(true);
    // From an offset to the end (x-ms-source-range: bytes=150000-), with a matching source MD5.
    const rest = content.subarray(150_000);
    await dest.stageBlockFromURL(block(1), url, 150_000, undefined, { sourceContentMD5: md5(rest) });
    // The whole source (no x-ms-source-range) as a third block.
    await dest.stageBlockFromURL(block(2), url);
    await dest.commitBlockList([block(0), block(1), block(2)]);
    const committed = await dest.downloadToBuffer();
    expect(committed.equals(Buffer.concat([content, content]))).toBe(true);
    const list = await dest.getBlockList('committed');
    expect(list.committedBlocks?.map((b) => b.size)).toEqual([150_000, 150_000, 300_000]);
  });

  it("reads the source with its own authorization only, never the request's account key", async () => {
    const dest = target.getBlockBlobClient('refused');
    // Same account, private container, no SAS: the destination's shared key does not reach the source.
    const bare = source.getBlobClient('parts/part-0').url;
    expect(await rejection(dest.stageBlockFromURL(block(0), bare))).toMatchObject({ code: 'CannotVerifyCopySource' });
    // A SAS without read permission.
    expect(await rejection(dest.stageBlockFromURL(block(0), await sasUrl('parts/part-0', 'w')))).toEqual({ statusCode: 403, code: 'CannotVerifyCopySource' });
    // A source that does not exist.
    expect(await rejection(dest.stageBlockFromURL(block(0), await sasUrl('parts/none')))).toEqual({ statusCode: 404, code: 'CannotVerifyCopySource' });
    // Nothing was staged by any of them.
    expect(await rejection(dest.getBlockList('all'))).toMatchObject({ statusCode: 404 });

    // A public container's blob needs no authorization.
    const open = service.getContainerClient('public');
    await open.create({ access: 'blob' });
    await open.getBlockBlobClient('x').upload('public bytes', 12);
    await dest.stageBlockFromURL(block(0), open.getBlobClient('x').url);
    await dest.commitBlockList([block(0)]);
    expect((await dest.downloadToBuffer()).toString()).toBe('public bytes');
  });

  it('refuses a range past the end, a wrong source MD5, a failed source condition, and another host', async () => {
    const url = await sasUrl('parts/part-0');
    const dest = target.getBlockBlobClient('strict');
    expect(await rejection(dest.stageBlockFromURL(block(0), url, 299_000, 2_000))).toEqual({ statusCode: 416, code: 'InvalidRange' });
    expect(await rejection(dest.stageBlockFromURL(block(0), url, 300_000))).toEqual({ statusCode: 416, code: 'InvalidRange' });
    expect(await rejection(dest.stageBlockFromURL(block(0), url, 0, 10, { sourceContentMD5: md5(Buffer.from('other')) }))).toEqual({
      statusCode: 400,
      code: 'Md5Mismatch',
    });
    // The SDK's stageBlockFromURL sends no source conditions: the REST call itself, on a SAS.
    const destSas = await dest.generateSasUrl({ permissions: BlobSASPermissions.parse('w'), expiresOn: hourFromNow() });
    const putBlock = (id: string, headers: Record<string, string>): Promise<Response> =>
      fetch(`${destSas}&comp=block&blockid=${encodeURIComponent(id)}`, {
        method: 'PUT',
        headers: { 'x-ms-version': '2021-12-02', 'x-ms-copy-source': url, 'content-length': '0', ...headers },
      });
    const unmet = await putBlock(block(0), { 'x-ms-source-if-match': '"0x1234"' });
    expect(unmet.status).toBe(412);
    expect(unmet.headers.get('x-ms-error-code')).toBe('SourceConditionNotMet');
    const crc = await putBlock(block(0), { 'x-ms-source-content-crc64': Buffer.alloc(8).toString('base64') });
    expect(crc.status).toBe(400);
    const elsewhere = url.replace(/^http:\/\/127\.0\.0\.1:\d+/, 'http://127.0.0.1:1');
    expect(await rejection(dest.stageBlockFromURL(block(0), elsewhere))).toMatchObject({ code: 'CannotVerifyCopySource' });
    expect(await rejection(dest.getBlockList('all'))).toMatchObject({ statusCode: 404 });

    // The source's current ETag as a condition is met.
    const etag = (await source.getBlobClient('parts/part-0').getProperties()).etag;
    const met = await putBlock(block(0), { 'x-ms-source-if-match': etag ?? '', 'x-ms-source-range': 'bytes=10-14' });
    expect(met.status).toBe(201);
    expect(met.headers.get('content-md5')).toBe(md5(content.subarray(10, 15)).toString('base64'));
    await dest.commitBlockList([block(0)]);
    expect((await dest.downloadToBuffer()).equals(content.subarray(10, 15))).toBe(true);
  });
});
