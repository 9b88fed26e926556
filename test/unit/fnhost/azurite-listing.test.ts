import { createRequire } from 'node:module';
import { runInThisContext } from 'node:vm';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { azuriteCli, azuriteExecArgv } from '../../../infra/local/src/storage/azurite.js';
import { AZURITE_LISTING } from '../../../infra/local/src/storage/azurite-listing.js';

/**
 * fnhost's replacement of Azurite's List Blobs (infra/local/src/storage/azurite-listing.ts),
 * installed in this process over Azurite's own modules and compared with the code it replaces:
 * every page (documents, BlobPrefixes, NextMarker) against Azurite's listBlobs on the same LokiJS
 * collection as it changes, and every answer's bytes and headers against Azurite's serializer.
 * test/integration/azurite-listing.test.ts checks the same over HTTP against a running Azurite.
 */

type Doc = Record<string, unknown> & { name: string; snapshot: string; isCommitted: boolean; $loki?: number };
interface Coll {
  data: Doc[];
  insert(doc: Doc): Doc;
  update(doc: Doc): Doc;
  remove(doc: Doc | Doc[]): void;
  find(query: Record<string, unknown>): Doc[];
  findAndRemove(query: Record<string, unknown>): void;
}
type ListArgs = [context: unknown, account: string, container: string, delimiter: string | undefined, blob: undefined, prefix: string, maxResults: number, marker: string, includeSnapshots: boolean, includeUncommittedBlobs: boolean];
type Page = [Doc[], { name: string }[], string];
interface Store {
  db: { getCollection(name: string): Coll };
  init(): Promise<void>;
  listBlobs(...args: ListArgs): Promise<Page>;
}
interface Installed {
  setMode(mode: string): void;
  listBlobs: { stats: { builds: number; fallbacks: number }; original: (this: Store, ...args: ListArgs) => Promise<Page>; fastPage: (store: Store, account: string, container: string, delimiter: string | undefined, prefix: string, maxResults: number, marker: string, includeUncommittedBlobs: boolean) => Page | undefined };
  xml: { listXml: (spec: unknown, response: unknown) => string | undefined; original: Serialize };
}
type Serialize = (context: unknown, res: unknown, spec: unknown, response: unknown, logger: unknown) => Promise<void>;

const azurite = createRequire(azuriteCli());
const ACCOUNT = 'devstoreaccount1';
const CONTEXT = { startTime: new Date(), contextId: 'test' };
let installed: Installed;
let store: Store;
let coll: Coll;

beforeAll(async () => {
  installed = (runInThisContext(AZURITE_LISTING) as (require: NodeJS.Require, mode: string) => Installed)(azurite, 'on');
  const LokiBlobMetadataStore = (azurite('./blob/persistence/LokiBlobMetadataStore') as { default: new (path: string, inMemory: boolean) => Store }).default;
  store = new LokiBlobMetadataStore('/nonexistent/fnhost-listing-test.db', true);
  await store.init();
  coll = store.db.getCollection('$BLOBS_COLLECTION$');
});

function doc(container: string, name: string, fields: { committed?: boolean; snapshot?: string } = {}): Doc {
  return {
    deleted: false,
    accountName: ACCOUNT,
    containerName: container,
    name,
    snapshot: fields.snapshot ?? '',
    isCommitted: fields.committed ?? true,
    properties: { creationTime: new Date(0), lastModified: new Date(0), etag: '"0x1"', contentLength: 1, blobType: 'BlockBlob', leaseStatus: 'unlocked', leaseState: 'available' },
  };
}

/** A page both ways: Azurite's own listBlobs, and fnhost's (which must not have fallen back). */
async function bothWays(args: ListArgs): Promise<{ azurite: string[][]; fast: string[][]; nextMarker: string }> {
  const summary = (page: Page): string[][] => [page[0].map((d) => `${d.name}@${d.snapshot}`), page[1].map((p) => p.name), [page[2]]];
  const originalPage = await installed.listBlobs.original.call(store, ...args);
  const original = summary(originalPage);
  const [, account, container, delimiter, , prefix, maxResults, marker, , uncommitted] = args;
  const fastPage = installed.listBlobs.fastPage(store, account, container, delimiter, prefix, maxResults, marker, uncommitted);
  expect(fastPage, 'the fast path answered').toBeDefined();
  const patchedPage = await store.listBlobs(...args);
  const patched = summary(patchedPage);
  expect(patched).toEqual(summary(fastPage as Page));
  // The very documents the collection holds now, not older objects of the same blobs.
  expect(patchedPage[0].length === originalPage[0].length && patchedPage[0].every((d, i) => d === originalPage[0][i])).toBe(true);
  return { azurite: original, fast: patched, nextMarker: original[2]?.[0] ?? '' };
}

// Characters whose orders differ between UTF-16 code units and code points ('\uFFFD' against a
// surrogate pair), the delimiter, and a character sorting before it.
const CHAR = fc.constantFrom('a', 'b', '/', '-', 'é', '😀', '\uFFFD', '0', 'ab');
const NAME = fc.array(CHAR, { minLength: 1, maxLength: 5 }).map((parts) => parts.join(''));
/** Names of the operations: few enough that blobs are written again, updated and deleted. */
const OP_NAME = fc.array(CHAR, { minLength: 1, maxLength: 3 }).map((parts) => parts.join(''));
const CONTAINER = fc.constantFrom('c-one', 'c-two');

type Op =
  | { kind: 'put'; container: string; name: string; committed: boolean; how: 'replace' | 'update' }
  | { kind: 'snapshot'; container: string; name: string }
  | { kind: 'delete'; container: string; name: string }
  | { kind: 'deleteFolder'; container: string; prefix: string };
const OP: fc.Arbitrary<Op> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ kind: fc.constant('put' as const), container: CONTAINER, name: OP_NAME, committed: fc.boolean(), how: fc.constantFrom('replace' as const, 'update' as const) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('snapshot' as const), container: CONTAINER, name: OP_NAME }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('delete' as const), container: CONTAINER, name: OP_NAME }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('deleteFolder' as const), container: CONTAINER, prefix: fc.array(CHAR, { maxLength: 2 }).map((p) => p.join('')) }) },
);

let snapshots = 0;
/** What Azurite's store does to the collection for each operation (createBlob, commit, createSnapshot, deletes). */
function apply(op: Op): void {
  const base = { accountName: ACCOUNT, containerName: op.container };
  if (op.kind === 'put') {
    const existing = coll.find({ ...base, name: op.name, snapshot: '' })[0];
    if (existing && op.how === 'update') {
      // A new object for the same $loki, as an update may store.
      coll.update({ ...existing, isCommitted: op.committed || existing.isCommitted, properties: { ...(existing.properties as object), contentLength: 2 } });
    } else {
      if (existing) coll.remove(existing);
      coll.insert(doc(op.container, op.name, { committed: op.committed }));
    }
  } else if (op.kind === 'snapshot') {
    if (coll.find({ ...base, name: op.name, snapshot: '' }).length > 0) coll.insert(doc(op.container, op.name, { snapshot: `2026-01-01T00:00:${String(snapshots++).padStart(7, '0')}Z` }));
  } else if (op.kind === 'delete') {
    coll.findAndRemove({ ...base, name: op.name });
  } else {
    const gone = coll.data.filter((d) => d.containerName === op.container && d.name.startsWith(op.prefix));
    // More than 32 at once takes Loki's batch removal (and a rebuild of its indexes) rather than one by one.
    if (gone.length > 0) coll.remove(gone);
  }
}

interface Query {
  container: string;
  prefix: string;
  delimiter: string | undefined;
  maxResults: number;
  marker: string;
  uncommitted: boolean;
}
const QUERY: fc.Arbitrary<Query> = fc.record({
  container: CONTAINER,
  prefix: fc.array(CHAR, { maxLength: 2 }).map((p) => p.join('')),
  delimiter: fc.constantFrom(undefined, '/', 'a', 'ab'),
  maxResults: fc.integer({ min: 1, max: 6 }),
  marker: fc.oneof(fc.constant(''), NAME),
  uncommitted: fc.boolean(),
});

describe("fnhost's Azurite listing: the same pages as Azurite's own", () => {
  it('pages a changing collection exactly as Azurite does: documents, BlobPrefixes and NextMarker', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(OP, { minLength: 1, maxLength: 60 }), fc.array(QUERY, { minLength: 1, maxLength: 6 }), async (ops, queries) => {
        coll.remove(coll.data.slice());
        // The index is built by the first listing and maintained from then on: list before and after.
        await bothWays([CONTEXT, ACCOUNT, 'c-one', '/', undefined, '', 5, '', false, false]);
        for (const [n, op] of ops.entries()) {
          apply(op);
          if (n % 10 === 0) await bothWays([CONTEXT, ACCOUNT, op.container, '/', undefined, '', 3, '', false, true]);
        }
        for (const q of queries) {
          // From the query's marker to the end, page by page, following Azurite's NextMarker.
          let marker = q.marker;
          for (let pages = 0; pages < 200; pages++) {
            const page = await bothWays([CONTEXT, ACCOUNT, q.container, q.delimiter, undefined, q.prefix, q.maxResults, marker, false, q.uncommitted]);
            expect(page.fast).toEqual(page.azurite);
            if (page.nextMarker === '') break;
            marker = page.nextMarker;
          }
        }
      }),
      { numRuns: 150 },
    );
    // Built once, by the first listing, and kept up to date by every change since (not rebuilt).
    expect(installed.listBlobs.stats.builds).toBe(1);
  });

  it('folds a large folder into one BlobPrefix and skips over it (the marker is its last name)', async () => {
    coll.remove(coll.data.slice());
    for (let i = 0; i < 3000; i++) coll.insert(doc('c-one', `in/sub/f-${String(i).padStart(5, '0')}`));
    for (const name of ['in/a', 'in/sub', 'in/sub0', 'in/z']) coll.insert(doc('c-one', name));
    let marker = '';
    const seen: string[][] = [];
    for (;;) {
      const page = await bothWays([CONTEXT, ACCOUNT, 'c-one', '/', undefined, 'in/', 2, marker, false, false]);
      expect(page.fast).toEqual(page.azurite);
      seen.push([...(page.fast[0] ?? []), ...(page.fast[1] ?? []), page.nextMarker]);
      if (page.nextMarker === '') break;
      marker = page.nextMarker;
    }
    expect(seen).toEqual([
      ['in/a@', 'in/sub@', 'in/sub'],
      ['in/sub0@', 'in/sub/', 'in/sub0'],
      ['in/z@', ''],
    ]);
  });

  it('leaves snapshots and single-blob lookups to Azurite', async () => {
    coll.remove(coll.data.slice());
    coll.insert(doc('c-one', 'x'));
    coll.insert(doc('c-one', 'x', { snapshot: '2026-01-01T00:00:00.0000000Z' }));
    const withSnapshots = await store.listBlobs(CONTEXT, ACCOUNT, 'c-one', undefined, undefined, '', 5, '', true, false);
    expect(withSnapshots[0].map((d) => d.snapshot)).toEqual(['', '2026-01-01T00:00:00.0000000Z']);
    const base = await store.listBlobs(CONTEXT, ACCOUNT, 'c-one', undefined, undefined, '', 5, '', false, false);
    expect(base[0].map((d) => d.snapshot)).toEqual(['']);
  });
});

// ---- The XML ----

interface Captured {
  status?: number;
  headers: Record<string, unknown>;
  contentType?: string;
  body: string;
  error?: string;
}
async function capture(serialize: Serialize, operation: number, spec: unknown, response: unknown): Promise<Captured> {
  const out: Captured = { headers: {}, body: '' };
  const res = {
    setStatusCode: (s: number) => (out.status = s),
    setHeader: (k: string, v: unknown) => (out.headers[k.toLowerCase()] = v),
    getHeader: (k: string) => out.headers[k.toLowerCase()],
    setContentType: (t: string) => (out.contentType = t),
    getBodyStream: () => ({ write: (chunk: string) => (out.body += chunk) }),
  };
  const quiet = (): void => undefined;
  try {
    await serialize({ operation, contextId: 'test' }, res, spec, response, { debug: quiet, info: quiet, verbose: quiet, warn: quiet, error: quiet });
  } catch (err) {
    out.error = String(err);
  }
  return out;
}

const TEXT = fc.oneof(
  { weight: 16, arbitrary: fc.string({ unit: fc.constantFrom('a', 'Z', '/', ' ', '&', '<', '>', '"', "'", '\r', '\n', '\t', 'é', '😀', ']]>') }) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary' }) },
  { weight: 1, arbitrary: fc.string({ unit: fc.constantFrom('a', '\u0001', '\uD800', '\uDC00', '\uFFFE', '\u0085') }) },
);
const maybe = <T>(a: fc.Arbitrary<T>): fc.Arbitrary<T | undefined | null> => fc.oneof({ weight: 3, arbitrary: a }, { weight: 2, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: fc.constant(null) });
const DATE = fc.oneof({ weight: 8, arbitrary: fc.date() }, { weight: 8, arbitrary: fc.date({ noInvalidDate: true }).map((d) => d.toISOString()) }, fc.constant('not a date'), fc.integer());
const ENUM = (...values: string[]): fc.Arbitrary<unknown> => fc.oneof({ weight: 16, arbitrary: fc.constantFrom(...values) }, fc.constantFrom(...values.map((v) => v.toUpperCase())), fc.constant('bogus'), fc.integer());
const PROPERTIES = fc.record(
  {
    creationTime: maybe(DATE),
    lastModified: fc.oneof({ weight: 5, arbitrary: fc.date() }, DATE, fc.constant(null)),
    etag: fc.oneof({ weight: 5, arbitrary: fc.constant('0x8DC1234567890AB') }, TEXT, fc.integer()),
    contentLength: maybe(fc.oneof(fc.nat(), fc.double(), fc.constant('12'))),
    contentType: maybe(TEXT),
    contentMD5: maybe(fc.oneof(fc.uint8Array({ maxLength: 16 }).map((a) => Buffer.from(a)), fc.uint8Array({ maxLength: 16 }), fc.uint8Array({ minLength: 4, maxLength: 16 }).map((a) => a.subarray(2)), fc.constant('md5'))),
    cacheControl: maybe(TEXT),
    blobType: maybe(ENUM('BlockBlob', 'PageBlob', 'AppendBlob')),
    leaseStatus: maybe(ENUM('locked', 'unlocked')),
    leaseState: maybe(ENUM('available', 'leased', 'expired', 'breaking', 'broken')),
    serverEncrypted: maybe(fc.oneof(fc.boolean(), fc.constant('true'))),
    accessTier: maybe(TEXT),
    accessTierInferred: maybe(fc.boolean()),
    accessTierChangeTime: maybe(DATE),
    tagCount: maybe(fc.nat()),
    somethingElse: maybe(TEXT),
  },
  { requiredKeys: ['lastModified', 'etag'] },
);
const METADATA_KEY = fc.oneof({ weight: 4, arbitrary: fc.constantFrom('k', 'Key_2', 'ünï', 'a-b', 'a.b') }, fc.constantFrom('_', '$', 'encrypted', 'Encrypted', '1a', 'a b', 'x:y', 'Blob'));
const ITEM = fc.record(
  {
    name: fc.oneof({ weight: 4, arbitrary: NAME }, TEXT),
    deleted: maybe(fc.boolean()),
    snapshot: maybe(TEXT),
    versionId: maybe(TEXT),
    properties: fc.oneof({ weight: 20, arbitrary: PROPERTIES }, fc.constant(null)),
    metadata: maybe(fc.dictionary(METADATA_KEY, maybe(fc.oneof({ weight: 4, arbitrary: TEXT }, fc.integer())), { maxKeys: 3 })),
    blobTags: maybe(fc.record({ blobTagSet: maybe(fc.array(fc.record({ key: TEXT, value: maybe(TEXT) }), { maxLength: 2 })) })),
    $loki: fc.nat(),
    accountName: fc.constant(ACCOUNT),
  },
  { requiredKeys: ['name', 'properties'] },
);
const RESPONSE = (hierarchy: boolean): fc.Arbitrary<Record<string, unknown>> =>
  fc.record({
    statusCode: fc.constant(200),
    contentType: fc.constant('application/xml'),
    requestId: fc.uuid(),
    version: fc.constant('2025-01-05'),
    date: fc.date({ noInvalidDate: true }),
    serviceEndpoint: fc.oneof({ weight: 4, arbitrary: fc.constant('http://127.0.0.1:10000/devstoreaccount1') }, TEXT),
    containerName: fc.oneof({ weight: 4, arbitrary: fc.constant('data') }, TEXT),
    prefix: maybe(TEXT),
    marker: maybe(TEXT),
    maxResults: maybe(fc.nat(5000)),
    ...(hierarchy ? { delimiter: maybe(fc.constantFrom('/', '&', '')) } : {}),
    segment: fc.record({
      ...(hierarchy ? { blobPrefixes: maybe(fc.array(fc.record({ name: fc.oneof({ weight: 4, arbitrary: NAME }, TEXT) }), { maxLength: 3 })) } : {}),
      blobItems: fc.oneof({ weight: 20, arbitrary: fc.array(ITEM, { maxLength: 4 }) }, fc.constant(undefined)),
    }),
    clientRequestId: maybe(TEXT),
    nextMarker: maybe(TEXT),
  });

describe("fnhost's Azurite listing: the same XML as Azurite's serializer", () => {
  const Operation = (): Record<string, number> => (azurite('./blob/generated/artifacts/operation') as { default: Record<string, number> }).default;
  const specs = (): Record<number, { responses: Record<number, unknown> }> => (azurite('./blob/generated/artifacts/specifications') as { default: Record<number, { responses: Record<number, unknown> }> }).default;
  const patched = (): Serialize => (azurite('./blob/generated/utils/serializer') as { serialize: Serialize }).serialize;

  for (const [label, hierarchy] of [['hierarchy', true], ['flat', false]] as const) {
    it(`writes the same bytes and headers for any ${label} answer (or leaves it to Azurite)`, async () => {
      const operation = Operation()[hierarchy ? 'Container_ListBlobHierarchySegment' : 'Container_ListBlobFlatSegment'] as number;
      const spec = specs()[operation];
      let rendered = 0;
      await fc.assert(
        fc.asyncProperty(RESPONSE(hierarchy), async (response) => {
          const expected = await capture(installed.xml.original, operation, spec, response);
          if (installed.xml.listXml(spec, response) !== undefined) rendered++;
          const actual = await capture(patched(), operation, spec, response);
          expect(actual).toEqual(expected);
        }),
        { numRuns: 1500 },
      );
      // Many answers of the arbitrary above are ordinary: the fast path must have written those.
      // About 22% are (330 of 1,500 on average, standard deviation ~16): 200 leaves room for
      // chance (a bound of 300 failed one run in ~30), not for a fast path that stopped writing.
      expect(rendered).toBeGreaterThan(200);
    });
  }

  it('writes the corners of the mappers as Azurite does: attributes, nulls, empty sets, saved documents', async () => {
    const operation = Operation()['Container_ListBlobFlatSegment'] as number;
    const spec = specs()[operation];
    const props = { lastModified: new Date(0), etag: '0x1' };
    const corners: [string, Record<string, unknown>, boolean][] = [
      ['metadata "encrypted" is an attribute', { metadata: { encrypted: 'yes', other: 'x' } }, true],
      ['a null "encrypted" is no attribute', { metadata: { encrypted: null, other: null, none: undefined } }, true],
      ['an empty tag set', { blobTags: { blobTagSet: [] } }, true],
      ['tags', { blobTags: { blobTagSet: [{ key: 'k', value: 'v&' }, { key: 'e', value: '' }] } }, true],
      ['nulls where a value may be missing', { deleted: null, properties: { ...props, cacheControl: null, contentLength: null, creationTime: null } }, true],
      // As LokiJS gives documents back after a restart: dates as text, the MD5 restored into a Buffer.
      ['a saved document', { properties: { ...props, lastModified: '2026-11-30T01:02:03.000Z', creationTime: '2026-11-30T01:02:03.000Z', contentMD5: Buffer.from([1, 2, 3]) } }, true],
      ['an MD5 that is a view into a larger buffer', { properties: { ...props, contentMD5: new Uint8Array([9, 1, 2, 3, 9]).subarray(1, 4) } }, true],
      ['an invalid date', { properties: { ...props, creationTime: new Date(NaN) } }, true],
      ['metadata "_" (xml2js text)', { metadata: { _: 'text' } }, false],
      ['a name XML 1.0 does not allow', { name: 'a\u0001b' }, false],
      ['a null required value', { properties: { ...props, etag: null } }, false],
      ['a tag set that is null', { blobTags: { blobTagSet: null } }, false],
    ];
    for (const [label, fields, ours] of corners) {
      const item = { name: 'n', properties: props, ...fields };
      const response = { statusCode: 200, serviceEndpoint: 'http://x/a', containerName: 'c', segment: { blobItems: [item] } };
      expect(installed.xml.listXml(spec, response) !== undefined, label).toBe(ours);
      expect(await capture(patched(), operation, spec, response), label).toEqual(await capture(installed.xml.original, operation, spec, response));
    }
  });

  it('writes an ordinary page itself', async () => {
    const operation = Operation()['Container_ListBlobHierarchySegment'] as number;
    const spec = specs()[operation];
    const item = (name: string): Record<string, unknown> => ({
      ...doc('data', name),
      metadata: { owner: 'me & you' },
      properties: { creationTime: new Date(0), lastModified: new Date(86_400_000), etag: '0x8DC', contentLength: 7, contentType: 'text/plain', contentMD5: Buffer.from('0123456789abcdef'), blobType: 'BlockBlob', leaseStatus: 'unlocked', leaseState: 'available', serverEncrypted: true, accessTierInferred: true },
    });
    const response = { statusCode: 200, serviceEndpoint: 'http://127.0.0.1:10000/devstoreaccount1', containerName: 'data', prefix: 'in/', marker: '', maxResults: 2, delimiter: '/', segment: { blobPrefixes: [{ name: 'in/sub/' }], blobItems: [item('in/a<b>.csv')] }, nextMarker: 'in/b' };
    const xml = installed.xml.listXml(spec, response);
    expect(xml).toBe(
      '<?xml version="1.0" encoding="UTF-8" standalone="yes"?><EnumerationResults ServiceEndpoint="http://127.0.0.1:10000/devstoreaccount1" ContainerName="data">' +
        '<Prefix>in/</Prefix><Marker/><MaxResults>2</MaxResults><Delimiter>/</Delimiter><Blobs><BlobPrefix><Name>in/sub/</Name></BlobPrefix>' +
        '<Blob><Name>in/a&lt;b&gt;.csv</Name><Deleted>false</Deleted><Snapshot/><Properties><Creation-Time>Thu, 01 Jan 1970 00:00:00 GMT</Creation-Time><Last-Modified>Fri, 02 Jan 1970 00:00:00 GMT</Last-Modified>' +
        '<Etag>0x8DC</Etag><Content-Length>7</Content-Length><Content-Type>text/plain</Content-Type><Content-MD5>MDEyMzQ1Njc4OWFiY2RlZg==</Content-MD5><BlobType>BlockBlob</BlobType>' +
        '<LeaseStatus>unlocked</LeaseStatus><LeaseState>available</LeaseState><ServerEncrypted>true</ServerEncrypted><AccessTierInferred>true</AccessTierInferred></Properties>' +
        '<Metadata><owner>me &amp; you</owner></Metadata></Blob></Blobs><NextMarker>in/b</NextMarker></EnumerationResults>',
    );
    expect((await capture(patched(), operation, spec, response)).body).toBe((await capture(installed.xml.original, operation, spec, response)).body);
  });
});

describe("Azurite's Node.js options", () => {
  it('profile Azurite when the host is profiled, into the same folder but not under the same name', () => {
    const preload = azuriteExecArgv([]);
    expect(preload[0]).toBe('--import');
    expect(azuriteExecArgv(['--heap-growing-percent=20', '--cpu-prof', '--cpu-prof-dir=/tmp/p', '--cpu-prof-name=host.cpuprofile'])).toEqual(['--cpu-prof', '--cpu-prof-dir=/tmp/p', ...preload]);
    expect(azuriteExecArgv(['--cpu-prof', '--cpu-prof-dir', '/tmp/p', '--cpu-prof-interval', '500'])).toEqual(['--cpu-prof', '--cpu-prof-dir', '/tmp/p', '--cpu-prof-interval', '500', ...preload]);
  });
});
