import { describe, expect, it } from 'vitest';
import { BatchError } from '../../../shared/errors.js';
import { checkOutputTemplate, expandOutputTemplate, templateDate } from '../../../shared/registry/triggers.js';
import { MAX_FILE_LIST_CHARS, invokeBody } from '../../../shared/schemas/jobs.js';
import { triggerBody } from '../../../shared/schemas/triggers.js';
import { parseOrThrow } from '../../../shared/schemas/validate.js';
import { type BatchFile, type BatcherState, RECENT_KEYS, addFile, batchId, closeBatch, emptyBatcher, newerWrite } from '../../../shared/triggers/batcher.js';
import { matchesSource, parseBlobUrl, readBlobCreated, writeKey } from '../../../shared/triggers/events.js';
import { commonFolder, fileInstanceId } from '../../../shared/triggers/trigger-service.js';

function fieldsOf(fn: () => unknown): string[] {
  try {
    fn();
  } catch (err) {
    if (err instanceof BatchError) return err.issues.map((i) => i.field);
    throw err;
  }
  throw new Error('expected a validation error');
}

const source = { datastore: 'workspaceblobstore', path_prefix: 'incoming/' };

describe('trigger rule schema', () => {
  it('fills in defaults: window 30 s, 100 files, enabled, no suffix filter', () => {
    const rule = parseOrThrow(triggerBody, { source }, 'trigger rule');
    expect(rule).toEqual({ source: { datastore: 'workspaceblobstore', path_prefix: 'incoming/' }, batching: { window_seconds: 30, max_files: 100 }, enabled: true });
    expect(parseOrThrow(triggerBody, { source: { datastore: 'd' } }, 'trigger rule').source.path_prefix).toBe('');
  });

  it('names the field of each problem', () => {
    const cases: [unknown, string][] = [
      [{}, 'source'],
      [{ source: { path_prefix: 'x/' } }, 'source.datastore'],
      [{ source: { ...source, path_prefix: '/abs/' } }, 'source.path_prefix'],
      [{ source: { ...source, path_prefix: 'a/../b/' } }, 'source.path_prefix'],
      [{ source: { ...source, suffixes: [''] } }, 'source.suffixes[0]'],
      [{ source: { ...source, suffixes: ['x/.csv'] } }, 'source.suffixes[0]'],
      [{ source, batching: { window_seconds: 0 } }, 'batching.window_seconds'],
      [{ source, batching: { window_seconds: 3601 } }, 'batching.window_seconds'],
      [{ source, batching: { window_seconds: 1.5 } }, 'batching.window_seconds'],
      [{ source, batching: { max_files: 0 } }, 'batching.max_files'],
      [{ source, batching: { max_files: 501 } }, 'batching.max_files'],
      [{ source, settings: { mini_batch_size: 0 } }, 'settings.mini_batch_size'],
      [{ source, settings: { nope: 1 } }, 'settings.nope'],
      [{ source, deployment: 'x' }, 'deployment'],
      [{ source, enabled: 'yes' }, 'enabled'],
      [{ source, extra: true }, 'extra'],
    ];
    for (const [body, field] of cases) expect({ body, fields: fieldsOf(() => parseOrThrow(triggerBody, body, 'trigger rule')) }).toEqual({ body, fields: [field] });
  });
});

describe('output path templates', () => {
  it('accepts {date}, {rule} and {job_id}, and needs {job_id}', () => {
    expect(() => checkOutputTemplate('azureml://datastores/d/paths/out/{rule}/{date}/{job_id}/')).not.toThrow();
    expect(fieldsOf(() => checkOutputTemplate('azureml://datastores/d/paths/out/{date}/'))).toEqual(['output_path']);
    expect(fieldsOf(() => checkOutputTemplate('azureml://datastores/d/paths/out/{jobid}/{job_id}'))).toEqual(['output_path']);
    expect(fieldsOf(() => checkOutputTemplate('azureml://datastores/d/paths/out/{job_id}/}'))).toEqual(['output_path']);
    expect(fieldsOf(() => checkOutputTemplate('azureml://datastores/d/paths/out/{{job_id}}/'))).toEqual(['output_path']);
  });

  it('fills in what it is given and leaves the rest', () => {
    const t = 'azureml://datastores/d/paths/out/{rule}/{date}/{job_id}/';
    const ruled = expandOutputTemplate(t, { rule: 'r1' });
    expect(ruled).toBe('azureml://datastores/d/paths/out/r1/{date}/{job_id}/');
    expect(expandOutputTemplate(ruled, { job_id: 'bj-1', date: templateDate('2026-03-04T23:59:59.000Z') })).toBe('azureml://datastores/d/paths/out/r1/2026-03-04/bj-1/');
  });
});

describe('BlobCreated events', () => {
  const url = 'https://acct.blob.core.windows.net/data/incoming/a%20b.csv';
  const eventGrid = (data: Record<string, unknown>, extra: Record<string, unknown> = {}): Record<string, unknown> => ({
    id: 'e1',
    topic: '/subscriptions/x/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/acct',
    subject: '/blobServices/default/containers/data/blobs/incoming/a b.csv',
    eventType: 'Microsoft.Storage.BlobCreated',
    eventTime: '2026-01-01T00:00:00Z',
    data,
    dataVersion: '',
    metadataVersion: '1',
    ...extra,
  });
  const data = { api: 'PutBlob', url, eTag: '0x8D1', contentLength: 12, blobType: 'BlockBlob' };

  it('reads the Event Grid schema and CloudEvents 1.0 alike', () => {
    const a = readBlobCreated(eventGrid(data));
    const b = readBlobCreated({ specversion: '1.0', id: 'e1', source: '/x', type: 'Microsoft.Storage.BlobCreated', subject: '/blobServices/default/containers/data/blobs/incoming/a b.csv', time: 't', data: JSON.stringify(data) });
    expect(a).toEqual({ kind: 'write', write: { eventId: 'e1', api: 'PutBlob', url, containerUrl: 'https://acct.blob.core.windows.net/data', account: 'acct', container: 'data', blob: 'incoming/a b.csv', etag: '0x8D1', contentLength: 12 } });
    expect(b).toEqual(a);
    const sequenced = readBlobCreated(eventGrid({ ...data, sequencer: '00000000000000000000000000000002' }));
    expect(sequenced.kind === 'write' ? sequenced.write.sequencer : undefined).toBe('00000000000000000000000000000002');
  });

  it('takes only finished writes: PutBlob, PutBlockList, CopyBlob, FlushWithClose', () => {
    for (const api of ['PutBlob', 'PutBlockList', 'CopyBlob', 'FlushWithClose']) expect(readBlobCreated(eventGrid({ ...data, api })).kind).toBe('write');
    for (const api of ['CreateFile', 'PutBlock', 'AppendBlock', 'PutPage']) expect(readBlobCreated(eventGrid({ ...data, api })).kind).toBe('ignored');
    expect(readBlobCreated(eventGrid({ ...data, api: 'CreateFile', contentLength: 0 })).kind).toBe('ignored');
    expect(readBlobCreated(eventGrid(data, { eventType: 'Microsoft.Storage.BlobDeleted' })).kind).toBe('ignored');
  });

  it('calls an event it cannot act on malformed, without throwing', () => {
    for (const bad of [null, 'x', [], {}, eventGrid({ ...data, url: undefined }), eventGrid({ ...data, url: 'ftp://x/y/z' }), eventGrid({ ...data, url: 'https://acct.blob.core.windows.net/' }), eventGrid(data, { subject: undefined }), eventGrid(data, { subject: '/blobServices/default/containers/data' }), eventGrid({ ...data, eTag: '' }), eventGrid({ ...data, api: 3 }), eventGrid('{not json' as unknown as Record<string, unknown>), { id: 'x', specversion: '1.0' }]) {
      expect(readBlobCreated(bad).kind).toBe('malformed');
    }
  });

  it('takes the container and blob name from the subject: a raw "#" or "?" in data.url does not cut the name short', () => {
    for (const name of ['incoming/a#1.csv', 'incoming/what?.csv', 'incoming/#x?y#.csv']) {
      const read = readBlobCreated(eventGrid({ ...data, url: `https://acct.blob.core.windows.net/data/${name}` }, { subject: `/blobServices/default/containers/data/blobs/${name}` }));
      expect(read).toMatchObject({ kind: 'write', write: { account: 'acct', container: 'data', containerUrl: 'https://acct.blob.core.windows.net/data', blob: name } });
    }
    // The URL's container must agree with the subject's.
    const other = readBlobCreated(eventGrid({ ...data, url: 'https://acct.blob.core.windows.net/elsewhere/incoming/a%20b.csv' }));
    expect(other).toMatchObject({ kind: 'ignored', reason: expect.stringContaining('"elsewhere" is not the subject\'s "data"') as unknown });
  });

  it('parses host-style and the emulator path-style blob URLs', () => {
    expect(parseBlobUrl('https://acct.blob.core.windows.net/c/a/b.csv')).toEqual({ containerUrl: 'https://acct.blob.core.windows.net/c', account: 'acct', container: 'c', blob: 'a/b.csv' });
    // Read as every blob URL is (storage/endpoints.ts): a host not written as the account's own is no datastore's.
    for (const other of ['https://ACCT.blob.core.windows.net/c/a.csv', 'https://acct.blob.core.windows.net.evil.com/c/a.csv', 'https://u@acct.blob.core.windows.net/c/a.csv', 'http://169.254.169.254/acct/c/a.csv']) {
      expect(parseBlobUrl(other)).toBeUndefined();
    }
    expect(parseBlobUrl('http://127.0.0.1:10000/devstoreaccount1/c/a%25b.csv')).toEqual({ containerUrl: 'http://127.0.0.1:10000/devstoreaccount1/c', account: 'devstoreaccount1', container: 'c', blob: 'a%b.csv' });
    expect(parseBlobUrl('http://127.0.0.1:10000/devstoreaccount1/c')).toBeUndefined();
    expect(parseBlobUrl('http://127.0.0.1:10000/devstoreaccount1/c/%zz')).toBeUndefined();
  });

  it('keys a blob version by account, container, name and eTag', () => {
    const base = { account: 'acct', container: 'c', blob: 'a.csv', etag: '0x1' };
    expect(writeKey(base)).toBe(writeKey({ ...base, account: 'ACCT' }));
    expect(writeKey(base)).not.toBe(writeKey({ ...base, etag: '0x2' }));
    expect(writeKey(base)).not.toBe(writeKey({ ...base, blob: 'b.csv' }));
    expect(writeKey(base)).not.toBe(writeKey({ ...base, container: 'd' }));
    // No two fields run together into the same key.
    expect(writeKey({ ...base, container: 'c', blob: 'xa.csv' })).not.toBe(writeKey({ ...base, container: 'cx', blob: 'a.csv' }));
    expect(readBlobCreated(eventGrid({ ...data, eTag: '"0x8D1"' }))).toMatchObject({ write: { etag: '0x8D1' } });
    expect(fileInstanceId('u1', writeKey(base)).length).toBeLessThanOrEqual(100);
  });

  it('matches a rule by prefix and suffixes (case-insensitively)', () => {
    expect(matchesSource('in/a.CSV', { path_prefix: 'in/', suffixes: ['.csv'] })).toBe(true);
    expect(matchesSource('in/a.txt', { path_prefix: 'in/', suffixes: ['.csv', '.jsonl'] })).toBe(false);
    expect(matchesSource('out/a.csv', { path_prefix: 'in/', suffixes: null })).toBe(false);
    expect(matchesSource('in/x/y.bin', { path_prefix: 'in/', suffixes: [] })).toBe(true);
  });
});

describe('the batcher (a rule entity)', () => {
  const file = (n: number): { key: string; blob: string; etag: string } => ({ key: `k${n}`, blob: `in/f${n}.csv`, etag: `0x${n}` });
  function add(state: BatcherState, n: number, maxFiles = 3): { state: BatcherState; result: ReturnType<typeof addFile>['result'] } {
    return addFile(state, { rule: 'u1', file: file(n), maxFiles });
  }

  it('opens a batch with the first file, which keeps the window; the window closes it once', () => {
    let s = emptyBatcher();
    const first = add(s, 1);
    expect(first.result).toEqual({ batch: batchId('u1', 0), opened: true, closed: [] });
    s = add(first.state, 2).state;
    const closed = closeBatch(s, 'tb-u1-0');
    expect(closed.result).toEqual({ id: 'tb-u1-0', files: [file(1), file(2)] });
    expect(closeBatch(closed.state, 'tb-u1-0').result).toBeNull();
    expect(add(closed.state, 3).result).toEqual({ batch: 'tb-u1-1', opened: true, closed: [] });
  });

  it('closes a batch when it is full; the next file opens the next batch and the window finds it gone', () => {
    let s = emptyBatcher();
    s = add(s, 1).state;
    s = add(s, 2).state;
    const third = add(s, 3);
    expect(third.result).toEqual({ batch: 'tb-u1-0', opened: false, closed: [{ id: 'tb-u1-0', files: [file(1), file(2), file(3)] }] });
    const fourth = add(third.state, 4);
    expect(fourth.result).toEqual({ batch: 'tb-u1-1', opened: true, closed: [] });
    expect(closeBatch(fourth.state, 'tb-u1-0').result).toBeNull();
    // max_files 1: the file opens and fills its batch at once.
    expect(add(emptyBatcher(), 9, 1).result).toEqual({ batch: 'tb-u1-0', opened: true, closed: [{ id: 'tb-u1-0', files: [file(9)] }] });
  });

  it('never batches a file twice: in the open batch, or in a recently closed one', () => {
    let s = add(emptyBatcher(), 1).state;
    expect(add(s, 1).result).toEqual({ batch: null, opened: false, closed: [] });
    s = closeBatch(s, 'tb-u1-0').state;
    expect(add(s, 1).result.batch).toBeNull();
    expect(s.recent).toEqual(['k1']);
    // The memory is bounded.
    let big = emptyBatcher();
    for (let i = 0; i < RECENT_KEYS + 10; i++) big = add(big, i, 1).state;
    expect(big.recent).toHaveLength(RECENT_KEYS);
    expect(big.seq).toBe(RECENT_KEYS + 10);
  });

  it('keeps one version of a file in the open batch: a newer write takes the older one\'s place', () => {
    let s = add(emptyBatcher(), 1).state;
    s = add(s, 2).state;
    const newer = { key: 'k1b', blob: 'in/f1.csv', etag: '0x1b' };
    const replaced = addFile(s, { rule: 'u1', file: newer, maxFiles: 3 });
    expect(replaced.result).toEqual({ batch: 'tb-u1-0', opened: false, closed: [] });
    // The older version is batched already (its redelivery is ignored); the batch still has room.
    expect(addFile(replaced.state, { rule: 'u1', file: file(1), maxFiles: 3 }).result.batch).toBeNull();
    expect(closeBatch(replaced.state, 'tb-u1-0').result).toEqual({ id: 'tb-u1-0', files: [newer, file(2)] });
  });

  it('keeps the version with the higher sequencer when events of one blob come out of order', () => {
    const v = (key: string, sequencer?: string): BatchFile => ({ key, blob: 'in/f1.csv', etag: `0x${key}`, ...(sequencer ? { sequencer } : {}) });
    // The newer write's event (higher sequencer) arrives first; the older one's arrives later and loses.
    let s = addFile(emptyBatcher(), { rule: 'u1', file: v('new', '0000000000000000000000000000A1F300000000001e2a57'), maxFiles: 3 }).state;
    const late = addFile(s, { rule: 'u1', file: v('old', '0000000000000000000000000000A1F300000000001e2a50'), maxFiles: 3 });
    expect(late.result).toEqual({ batch: 'tb-u1-0', opened: false, closed: [] });
    s = late.state;
    // The loser counts as batched: its redelivery is ignored.
    expect(addFile(s, { rule: 'u1', file: v('old', '0000000000000000000000000000A1F300000000001e2a50'), maxFiles: 3 }).result.batch).toBeNull();
    expect(closeBatch(s, 'tb-u1-0').result?.files.map((f) => f.key)).toEqual(['new']);
    // Compared as strings of equal length: a shorter sequencer is padded, not compared as text.
    expect(newerWrite({ sequencer: '10' }, { sequencer: '9' })).toBe(true);
    expect(newerWrite({ sequencer: '9' }, { sequencer: '10' })).toBe(false);
    // Without a sequencer on either, the later arrival wins.
    expect(newerWrite({}, { sequencer: '10' })).toBe(true);
    const byArrival = addFile(addFile(emptyBatcher(), { rule: 'u1', file: v('a', '5'), maxFiles: 3 }).state, { rule: 'u1', file: v('b'), maxFiles: 3 });
    expect(closeBatch(byArrival.state, 'tb-u1-0').result?.files.map((f) => f.key)).toEqual(['b']);
  });

  it('closes a batch early rather than let its file list outgrow a job record', () => {
    const long = (n: number): { key: string; blob: string; etag: string } => ({ key: `k${n}`, blob: `in/${'x'.repeat(1000)}${n}.csv`, etag: '0x1' });
    let s = emptyBatcher();
    const closed: string[][] = [];
    for (let i = 0; i < 60; i++) {
      const r = addFile(s, { rule: 'u1', file: long(i), maxFiles: 500 });
      s = r.state;
      closed.push(...r.result.closed.map((b) => b.files.map((f) => f.key)));
    }
    expect(closed.length).toBeGreaterThanOrEqual(2);
    for (const files of closed) expect(files.length * 1030).toBeLessThanOrEqual(MAX_FILE_LIST_CHARS);
    expect(closed.flat()).toEqual(Array.from({ length: closed.flat().length }, (_, i) => `k${i}`));
  });
});

describe('file-list inputs', () => {
  const input = (extra: Record<string, unknown>): unknown => ({ inputs: { x: { type: 'uri_folder', path: 'azureml://datastores/d/paths/in/', ...extra } } });

  it('name files relative to the folder, each at most once, with an optional eTag', () => {
    const body = parseOrThrow(invokeBody, input({ files: [{ name: 'a.csv', etag: '0x1' }, { name: 'sub/b.csv' }] }), 'request body');
    expect(body.inputs['x']).toMatchObject({ files: [{ name: 'a.csv', etag: '0x1' }, { name: 'sub/b.csv' }] });
    expect(fieldsOf(() => parseOrThrow(invokeBody, input({ files: [] }), 'request body'))).toEqual(['inputs.x.files']);
    expect(fieldsOf(() => parseOrThrow(invokeBody, input({ files: [{ name: 'a.csv' }, { name: 'a.csv' }] }), 'request body'))).toEqual(['inputs.x.files[1].name']);
    expect(fieldsOf(() => parseOrThrow(invokeBody, input({ files: [{ name: '../a.csv' }] }), 'request body'))).toEqual(['inputs.x.files[0].name']);
    expect(fieldsOf(() => parseOrThrow(invokeBody, input({ files: [{ name: '/a.csv' }] }), 'request body'))).toEqual(['inputs.x.files[0].name']);
    expect(fieldsOf(() => parseOrThrow(invokeBody, input({ type: 'uri_file', files: [{ name: 'a.csv' }] }), 'request body'))).toEqual(['inputs.x.type']);
    const many = Array.from({ length: 300 }, (_, i) => ({ name: `${'n'.repeat(100)}${i}.csv`, etag: '0x8D0000000000000' }));
    expect(fieldsOf(() => parseOrThrow(invokeBody, input({ files: many }), 'request body'))).toEqual(['inputs.x.files']);
  });

  it("are in their batch's common folder", () => {
    expect(commonFolder(['in/a.csv', 'in/b.csv'])).toBe('in/');
    expect(commonFolder(['in/x/a.csv', 'in/xy/b.csv'])).toBe('in/');
    expect(commonFolder(['in/x/a.csv'])).toBe('in/x/');
    expect(commonFolder(['a.csv', 'in/b.csv'])).toBe('');
  });
});
