import { ContainerSASPermissions, BlobServiceClient, type ContainerClient } from '@azure/storage-blob';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Logger } from '../../infra/local/src/log.js';
import { AzuriteService, stopAzuriteFor } from '../../infra/local/src/storage/azurite-service.js';
import { startAzurite } from '../support/azurite.js';
import { tempDir } from '../support/fnhost.js';

/**
 * List Blobs against fnhost's Azurite, whose preload answers it from a name index and writes the
 * page's XML itself (infra/local/src/storage/azurite-listing.ts), through @azure/storage-blob and
 * raw requests: tricky names, folders folded into BlobPrefixes, markers across pages of every size
 * (1 included), blobs written and deleted between pages, uncommitted blobs, snapshots and
 * metadata; and the raw answers, page by page, byte for byte the same as Azurite's own code gives
 * for the same blobs (in memory, switched over IPC; on disk, after a restart with each).
 */

/** Names sharing prefixes, nested folders, a folder's own marker, and characters that sort apart. */
const NAMES = [
  'data',
  'data/',
  'data/-.csv',
  'data/100% sure.csv',
  'data/a b.csv',
  'data/a&b<c>"d\'.csv',
  'data/a.csv',
  'data/b',
  'data/b.csv',
  'data/b.csv.bak',
  'data/b/c.csv',
  'data/b/d/e.csv',
  'data/sub/x.csv',
  'data/sub/y/z.csv',
  'data/sub0.csv',
  'data/é.csv',
  'data/ü/ö.csv',
  'data/😀.csv',
  'data/\uFFFD.csv',
  'data/日本/語.csv',
  'data0.csv',
  'dataX/1.csv',
  'other/1.csv',
];

const byCodeUnits = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

/** What a listing holds: the names under `prefix`, in order, folded into BlobPrefixes at the delimiter. */
function expected(names: readonly string[], prefix: string, delimiter?: string): { blobs: string[]; prefixes: string[] } {
  const blobs: string[] = [];
  const prefixes: string[] = [];
  for (const name of [...names].sort(byCodeUnits)) {
    if (!name.startsWith(prefix)) continue;
    const at = delimiter === undefined ? -1 : name.indexOf(delimiter, prefix.length);
    if (at < 0) blobs.push(name);
    else if (prefixes.at(-1) !== name.slice(0, at + 1)) prefixes.push(name.slice(0, at + 1));
  }
  return { blobs, prefixes };
}

interface Listed {
  blobs: string[];
  prefixes: string[];
  pages: number;
}

/** Every page of a listing through the SDK, checking that no page holds more than it may and no BlobPrefix comes twice. */
async function listPaged(container: ContainerClient, options: { prefix: string; delimiter?: string; pageSize: number; includeUncommitedBlobs?: boolean; includeSnapshots?: boolean }): Promise<Listed> {
  const out: Listed = { blobs: [], prefixes: [], pages: 0 };
  const { prefix, delimiter, pageSize, ...include } = options;
  const pages =
    delimiter === undefined
      ? container.listBlobsFlat({ prefix, ...include }).byPage({ maxPageSize: pageSize })
      : container.listBlobsByHierarchy(delimiter, { prefix, ...include }).byPage({ maxPageSize: pageSize });
  for await (const page of pages) {
    out.pages++;
    const prefixes = 'blobPrefixes' in page.segment ? (page.segment.blobPrefixes as { name: string }[] | undefined ?? []).map((p) => p.name) : [];
    expect(page.segment.blobItems.length + prefixes.length).toBeLessThanOrEqual(pageSize);
    for (const p of prefixes) expect(out.prefixes).not.toContain(p);
    out.blobs.push(...page.segment.blobItems.map((b) => b.name + (b.snapshot ? `@${b.snapshot}` : '')));
    out.prefixes.push(...prefixes);
  }
  return out;
}

async function upload(container: ContainerClient, names: readonly string[]): Promise<void> {
  for (const name of names) await container.getBlockBlobClient(name).upload(name, Buffer.byteLength(name), { metadata: { source: 'test' } });
}

/** The raw answers of a listing, page by page (each page's XML as Azurite sent it). */
async function rawPages(container: ContainerClient, query: Record<string, string>): Promise<string[]> {
  const sas = await container.generateSasUrl({ permissions: ContainerSASPermissions.parse('rl'), expiresOn: new Date(Date.now() + 3_600_000) });
  const [base, token] = sas.split('?');
  const bodies: string[] = [];
  let marker = '';
  do {
    const params = new URLSearchParams({ restype: 'container', comp: 'list', ...query, ...(marker ? { marker } : {}) });
    const res = await fetch(`${base}?${params.toString()}&${token}`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/xml');
    const body = await res.text();
    bodies.push(body);
    marker = /<NextMarker>([^<]*)<\/NextMarker>/.exec(body)?.[1]?.replace(/&amp;/g, '&').replace(/&lt;/g, '<').replace(/&gt;/g, '>') ?? '';
  } while (marker !== '' && bodies.length < 100);
  return bodies;
}

/** Queries whose raw answers are compared: folders, sizes, and every include option. */
const RAW_QUERIES: Record<string, string>[] = [
  { prefix: 'data/', delimiter: '/', maxresults: '1' },
  { prefix: 'data/', delimiter: '/', maxresults: '3' },
  { prefix: 'data', delimiter: '/', maxresults: '2' },
  { prefix: '', maxresults: '4', include: 'metadata' },
  { prefix: 'data/b', maxresults: '5000', include: 'metadata,uncommittedblobs' },
  { prefix: 'data/', delimiter: '/', maxresults: '2', include: 'snapshots,metadata' },
  { prefix: 'data/', delimiter: 'b', maxresults: '2' },
  { prefix: 'nothing/', delimiter: '/', maxresults: '2' },
];

describe("List Blobs on fnhost's Azurite", () => {
  let azurite: Awaited<ReturnType<typeof startAzurite>>;
  let container: ContainerClient;
  beforeAll(async () => {
    azurite = await startAzurite();
    container = BlobServiceClient.fromConnectionString(azurite.connectionString).getContainerClient('listing');
    await container.create();
    await upload(container, NAMES);
    // The same names in a container beside it: a listing never reaches into another container.
    const beside = BlobServiceClient.fromConnectionString(azurite.connectionString).getContainerClient('listing-beside');
    await beside.create();
    await upload(beside, NAMES.map((n) => `${n}x`));
  }, 120_000);
  afterAll(async () => {
    await azurite.stop();
  });

  it('lists a folder with its sub-folders as BlobPrefixes, in order', async () => {
    const listed = await listPaged(container, { prefix: 'data/', delimiter: '/', pageSize: 5000 });
    expect(listed.pages).toBe(1);
    expect(listed.blobs).toEqual([
      'data/',
      'data/-.csv',
      'data/100% sure.csv',
      'data/a b.csv',
      'data/a&b<c>"d\'.csv',
      'data/a.csv',
      'data/b',
      'data/b.csv',
      'data/b.csv.bak',
      'data/sub0.csv',
      'data/é.csv',
      'data/😀.csv',
      'data/\uFFFD.csv',
    ]);
    expect(listed.prefixes).toEqual(['data/b/', 'data/sub/', 'data/ü/', 'data/日本/']);
    expect(await listPaged(container, { prefix: 'data/sub/', pageSize: 1 })).toEqual({ blobs: ['data/sub/x.csv', 'data/sub/y/z.csv'], prefixes: [], pages: 2 });
  });

  it('pages any listing, at any page size, into exactly the whole listing', async () => {
    const prefixes = ['', 'd', 'data', 'data/', 'data/b', 'data/sub/', 'dataX/', 'zzz'];
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...prefixes), fc.constantFrom(undefined, '/'), fc.integer({ min: 1, max: 7 }), async (prefix, delimiter, pageSize) => {
        const listed = await listPaged(container, { prefix, ...(delimiter ? { delimiter } : {}), pageSize });
        const want = expected(NAMES, prefix, delimiter);
        expect({ blobs: listed.blobs, prefixes: listed.prefixes }).toEqual(want);
        expect(listed.pages).toBeGreaterThanOrEqual(Math.ceil((want.blobs.length + want.prefixes.length) / pageSize));
      }),
      { numRuns: 40 },
    );
  });

  it('continues from the marker: blobs written before it are not listed, after it they are, and deleted ones are gone', async () => {
    const names = Array.from({ length: 10 }, (_, i) => `churn/c-${String(i).padStart(2, '0')}`);
    await upload(container, names);
    const pages = container.listBlobsFlat({ prefix: 'churn/' }).byPage({ maxPageSize: 3 });
    const first = await pages.next();
    expect(first.done).toBe(false);
    const firstNames = first.done ? [] : first.value.segment.blobItems.map((b) => b.name);
    expect(firstNames).toEqual(['churn/c-00', 'churn/c-01', 'churn/c-02']);
    await upload(container, ['churn/c-00a', 'churn/c-07a']);
    await container.deleteBlob('churn/c-05');
    const rest: string[] = [];
    for (let page = await pages.next(); !page.done; page = await pages.next()) rest.push(...page.value.segment.blobItems.map((b) => b.name));
    expect(rest).toEqual(['churn/c-03', 'churn/c-04', 'churn/c-06', 'churn/c-07', 'churn/c-07a', 'churn/c-08', 'churn/c-09']);
  });

  it('lists uncommitted blobs only when asked, and a blob with staged blocks as it is', async () => {
    const staged = container.getBlockBlobClient('data/staged.csv');
    await staged.stageBlock(Buffer.from('b1').toString('base64'), 'x', 1);
    await container.getBlockBlobClient('data/a.csv').stageBlock(Buffer.from('b2').toString('base64'), 'y', 1);
    expect((await listPaged(container, { prefix: 'data/s', delimiter: '/', pageSize: 1 })).blobs).toEqual(['data/sub0.csv']);
    expect((await listPaged(container, { prefix: 'data/s', delimiter: '/', pageSize: 1, includeUncommitedBlobs: true })).blobs).toEqual(['data/staged.csv', 'data/sub0.csv']);
    expect((await listPaged(container, { prefix: 'data/a', pageSize: 2 })).blobs).toEqual(['data/a b.csv', 'data/a&b<c>"d\'.csv', 'data/a.csv']);
  });

  it('lists snapshots when asked, beside their blob', async () => {
    const { snapshot } = await container.getBlobClient('data/b.csv').createSnapshot();
    expect(snapshot).toBeDefined();
    expect((await listPaged(container, { prefix: 'data/b.csv', pageSize: 1 })).blobs).toEqual(['data/b.csv', 'data/b.csv.bak']);
    expect((await listPaged(container, { prefix: 'data/b.csv', pageSize: 5, includeSnapshots: true })).blobs.sort()).toEqual([`data/b.csv@${String(snapshot)}`, 'data/b.csv', 'data/b.csv.bak'].sort());
  });

  it('gives each blob its properties and metadata', async () => {
    const page = await container.listBlobsByHierarchy('/', { prefix: 'data/a', includeMetadata: true }).byPage({ maxPageSize: 10 }).next();
    const items = page.done ? [] : page.value.segment.blobItems;
    const item = items.find((b) => b.name === 'data/a&b<c>"d\'.csv');
    expect(item?.metadata).toEqual({ source: 'test' });
    expect(item?.properties.contentLength).toBe(Buffer.byteLength('data/a&b<c>"d\'.csv'));
    // A listing shows the ETag without its quotes, as Azure's does.
    expect(`"${String(item?.properties.etag)}"`).toBe((await container.getBlobClient('data/a&b<c>"d\'.csv').getProperties()).etag);
  });

  it("answers every page byte for byte as Azurite's own code does", async () => {
    for (const query of RAW_QUERIES) {
      await azurite.setListing('off');
      const azurites = await rawPages(container, query);
      await azurite.setListing('on');
      const ours = await rawPages(container, query);
      expect(ours).toEqual(azurites);
      expect(ours.length).toBeGreaterThan(0);
    }
  });
});

describe("List Blobs on fnhost's Azurite for a data folder, after a restart", () => {
  const logger = new Logger({ minLevel: 'none' });
  const dir = tempDir('azurite-listing-');
  afterAll(async () => {
    await stopAzuriteFor({ dataDir: dir.path, logger });
    dir.remove();
  });

  /** Azurite on the folder, started with the listing mode given (its saved blobs are read back from disk). */
  async function withAzurite<T>(mode: 'off' | 'on', work: (container: ContainerClient) => Promise<T>): Promise<T> {
    const before = process.env['FNHOST_AZURITE_FAST_LIST'];
    process.env['FNHOST_AZURITE_FAST_LIST'] = mode;
    try {
      const service = await AzuriteService.start({ dataDir: dir.path, ports: { blob: 0, queue: 0, table: 0 }, logger });
      try {
        return await work(BlobServiceClient.fromConnectionString(service.connectionString).getContainerClient('saved'));
      } finally {
        await stopAzuriteFor({ dataDir: dir.path, logger });
      }
    } finally {
      if (before === undefined) delete process.env['FNHOST_AZURITE_FAST_LIST'];
      else process.env['FNHOST_AZURITE_FAST_LIST'] = before;
    }
  }

  it('lists the saved blobs, and their XML is the same as Azurite gives', async () => {
    await withAzurite('on', async (container) => {
      await container.create();
      await upload(container, NAMES);
    });
    const queries = RAW_QUERIES.filter((q) => !(q['include'] ?? '').includes('snapshots'));
    const theirs = await withAzurite('off', async (container) => Promise.all(queries.map((q) => rawPages(container, q))));
    const ours = await withAzurite('on', async (container) => {
      const listed = await listPaged(container, { prefix: 'data/', delimiter: '/', pageSize: 4 });
      expect({ blobs: listed.blobs, prefixes: listed.prefixes }).toEqual(expected(NAMES, 'data/', '/'));
      return Promise.all(queries.map((q) => rawPages(container, q)));
    });
    // Each start listens on other ports, which the answers name.
    const portless = (pages: string[][]): string[][] => pages.map((bodies) => bodies.map((b) => b.replace(/ServiceEndpoint="http:\/\/127\.0\.0\.1:\d+\//, 'ServiceEndpoint="http://127.0.0.1:PORT/')));
    expect(portless(ours)).toEqual(portless(theirs));
    expect(portless(ours)).not.toEqual(ours);
  });
});
