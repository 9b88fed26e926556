import { describe, expect, it } from 'vitest';
import { matchesFilter, valueAt } from '../../../infra/local/src/eventgrid/filters.js';
import { blobCreatedEvent } from '../../../infra/local/src/eventgrid/schemas.js';
import { eventGridSettingsSchema, filterSchema } from '../../../infra/local/src/eventgrid/settings.js';

const write = {
  id: '6f1d0c4e-0000-4000-8000-000000000001',
  time: '2026-05-01T10:00:00.000Z',
  api: 'PutBlockList',
  account: 'devstoreaccount1',
  container: 'inbox',
  blob: 'data/Penguins.CSV',
  eTag: '0x8D4BCC2E4835CD0',
  contentType: 'text/csv',
  contentLength: 524288,
  blobType: 'BlockBlob',
  requestId: 'r',
  clientRequestId: 'c',
};
const eg = blobCreatedEvent(write, { position: 42, blobEndpoint: 'http://127.0.0.1:10000', schema: 'EventGridSchema' });
const ce = blobCreatedEvent(write, { position: 42, blobEndpoint: 'http://127.0.0.1:10000', schema: 'CloudEventSchemaV1_0' });

const filter = (f: unknown) => filterSchema.parse(f);

describe('Event Grid subscription filters', () => {
  it('match event types in either schema, ignoring case', () => {
    expect(matchesFilter(filter({ includedEventTypes: ['microsoft.storage.blobcreated'] }), eg)).toBe(true);
    expect(matchesFilter(filter({ includedEventTypes: ['Microsoft.Storage.BlobCreated'] }), ce)).toBe(true);
    expect(matchesFilter(filter({ includedEventTypes: ['Microsoft.Storage.BlobDeleted'] }), eg)).toBe(false);
  });

  it('match subject prefixes and suffixes, case-sensitively only when asked', () => {
    const prefix = '/blobServices/default/containers/inbox/blobs/data/';
    expect(matchesFilter(filter({ subjectBeginsWith: prefix, subjectEndsWith: '.csv' }), eg)).toBe(true);
    expect(matchesFilter(filter({ subjectEndsWith: '.csv', isSubjectCaseSensitive: true }), eg)).toBe(false);
    expect(matchesFilter(filter({ subjectBeginsWith: '/blobServices/default/containers/other/' }), ce)).toBe(false);
    expect(matchesFilter(filter({}), eg)).toBe(true);
  });

  it('apply advanced filters on data fields and envelope fields, all of them', () => {
    const finished = { operatorType: 'StringIn', key: 'data.api', values: ['PutBlob', 'PutBlockList', 'CopyBlob', 'FlushWithClose'] };
    expect(matchesFilter(filter({ advancedFilters: [finished] }), eg)).toBe(true);
    const createFile = blobCreatedEvent({ ...write, api: 'CreateFile', contentLength: 0 }, { position: 1, blobEndpoint: 'http://x', schema: 'EventGridSchema' });
    expect(matchesFilter(filter({ advancedFilters: [finished] }), createFile)).toBe(false);

    const cases: [unknown, boolean][] = [
      [{ operatorType: 'StringNotIn', key: 'data.api', values: ['putblocklist'] }, false],
      [{ operatorType: 'StringBeginsWith', key: 'data.url', values: ['http://127.0.0.1:10000/devstoreaccount1/inbox/'] }, true],
      [{ operatorType: 'StringNotBeginsWith', key: 'subject', values: ['/blobServices/default/containers/inbox/'] }, false],
      [{ operatorType: 'StringEndsWith', key: 'subject', values: ['.json', '.csv'] }, true],
      [{ operatorType: 'StringNotEndsWith', key: 'subject', values: ['.tmp'] }, true],
      [{ operatorType: 'StringContains', key: 'data.contentType', values: ['csv'] }, true],
      [{ operatorType: 'StringNotContains', key: 'data.contentType', values: ['CSV'] }, false],
      [{ operatorType: 'NumberGreaterThan', key: 'data.contentLength', value: 0 }, true],
      [{ operatorType: 'NumberLessThan', key: 'data.contentLength', value: 524288 }, false],
      [{ operatorType: 'NumberLessThanOrEquals', key: 'data.contentLength', value: 524288 }, true],
      [{ operatorType: 'NumberGreaterThanOrEquals', key: 'data.contentLength', value: 524289 }, false],
      [{ operatorType: 'NumberIn', key: 'data.contentLength', values: [1, 524288] }, true],
      [{ operatorType: 'NumberNotIn', key: 'data.contentLength', values: [524288] }, false],
      [{ operatorType: 'NumberInRange', key: 'data.contentLength', values: [[0, 10], [500000, 600000]] }, true],
      [{ operatorType: 'NumberNotInRange', key: 'data.contentLength', values: [[0, 10]] }, true],
      [{ operatorType: 'IsNotNull', key: 'data.eTag' }, true],
      [{ operatorType: 'IsNullOrUndefined', key: 'data.contentOffset' }, true],
      [{ operatorType: 'BoolEquals', key: 'data.missing', value: true }, false],
      // A number is not a string: no positive string operator matches it, every negated one does.
      [{ operatorType: 'StringIn', key: 'data.contentLength', values: ['524288'] }, false],
      [{ operatorType: 'StringNotIn', key: 'data.contentLength', values: ['524288'] }, true],
      // Keys ignore case where no exact name exists.
      [{ operatorType: 'StringIn', key: 'Data.API', values: ['PutBlockList'] }, true],
    ];
    for (const [f, expected] of cases) expect([f, matchesFilter(filter({ advancedFilters: [f] }), eg)]).toEqual([f, expected]);
    expect(matchesFilter(filter({ advancedFilters: [finished, { operatorType: 'NumberLessThan', key: 'data.contentLength', value: 10 }] }), eg)).toBe(false);
  });

  it('match array values element by element only with enableAdvancedFilteringOnArrays', () => {
    const event = { ...eg, data: { tags: ['a', 'b'] } };
    const f = { operatorType: 'StringIn', key: 'data.tags', values: ['b'] };
    expect(matchesFilter(filter({ advancedFilters: [f] }), event)).toBe(false);
    expect(matchesFilter(filter({ advancedFilters: [f], enableAdvancedFilteringOnArrays: true }), event)).toBe(true);
    expect(valueAt(event, 'data.tags')).toEqual(['a', 'b']);
  });

  it('refuse filters and settings Event Grid would refuse, naming the field', () => {
    expect(() => filterSchema.parse({ subjectBeginWith: 'x' })).toThrow(/subjectBeginWith/);
    expect(() => filterSchema.parse({ advancedFilters: [{ operatorType: 'StringIn', key: 'data.api', value: 'PutBlob' }] })).toThrow();
    expect(() => filterSchema.parse({ advancedFilters: [{ operatorType: 'NumberInRange', key: 'k', values: [[5, 1]] }] })).toThrow(/low <= high/);
    expect(() => eventGridSettingsSchema.parse({ topics: [{ name: 'a b' }] })).toThrow(/3-50 letters, digits/);
    expect(() =>
      eventGridSettingsSchema.parse({ storageSubscriptions: [{ name: 'dup', function: 'f' }, { name: 'DUP', function: 'g' }] }),
    ).toThrow(/unique/);
    const settings = eventGridSettingsSchema.parse(undefined);
    expect(settings).toEqual({ retryDelayScale: 0.01, storageSubscriptions: [], topics: [] });
    const sub = eventGridSettingsSchema.parse({ storageSubscriptions: [{ name: 'blob-created', function: 'f' }] }).storageSubscriptions[0];
    expect(sub).toEqual({
      name: 'blob-created',
      function: 'f',
      eventDeliverySchema: 'EventGridSchema',
      filter: {},
      retryPolicy: { maxDeliveryAttempts: 30, eventTimeToLiveInMinutes: 1440 },
    });
  });
});
