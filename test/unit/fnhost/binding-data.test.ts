import { describe, expect, it } from 'vitest';
import {
  BindingData,
  DateTimeOffsetValue,
  Dictionary,
  applyJsonPayload,
  jsonNetDateText,
  triggerMetadataOf,
} from '../../../infra/local/src/worker/binding-data.js';
import { resolveBindingExpressions } from '../../../infra/local/src/worker/binding-expressions.js';
import {
  activityBindingData,
  blobBindingData,
  eventGridBindingData,
  httpBindingData,
  queueBindingData,
  timerBindingData,
} from '../../../infra/local/src/worker/trigger-binding-data.js';

const NOW = Date.parse('2024-05-01T10:04:00.000Z');
const resolve = (template: string, bindingData: BindingData): string => resolveBindingExpressions(template, { bindingData, now: () => NOW });

describe('BindingData', () => {
  it('matches names ignoring case; a later value replaces the earlier one and keeps its spelling', () => {
    const data = new BindingData().set('Id', 'from-queue').set('ID', 'from-payload');
    expect(data.size).toBe(1);
    expect(data.get('id')).toBe('from-payload');
    expect([...data.entries()]).toEqual([['Id', 'from-payload']]);
    expect(data.setIfAbsent('iD', 'ignored').get('Id')).toBe('from-payload');
    expect(data.lookup('nope')).toEqual({ found: false, value: undefined });
    expect(data.set('z', null).lookup('Z')).toEqual({ found: true, value: null });
  });
});

describe('JSON payload properties (the host applies them to string trigger values)', () => {
  it('adds top-level properties: objects as objects, scalars as .NET text, without nulls and arrays', () => {
    const data = new BindingData();
    applyJsonPayload(data, ' {"folder":"a","n":12.5,"ok":true,"nested":{"Url":"u"},"gone":null,"list":[1]} ');
    expect(data.toRecord()).toEqual({ folder: 'a', n: '12.5', ok: 'True', nested: { Url: 'u' } });
    expect(resolve('{NESTED.url}', data)).toBe('u');
    expect(() => resolve('{gone}', data)).toThrow("No value for named parameter 'gone'.");
    expect(() => resolve('{list}', data)).toThrow("No value for named parameter 'list'.");
  });

  it('adds nothing for arrays, scalars, text and broken JSON', () => {
    for (const text of ['[{"a":1}]', '"a"', '42', 'plain text', '{"a":', '', '{not json}']) {
      const data = new BindingData();
      applyJsonPayload(data, text);
      expect(data.size, text).toBe(0);
    }
  });

  it('prints top-level strings that Json.NET reads as dates the way .NET prints a DateTime', () => {
    expect(jsonNetDateText('2024-05-01T10:00:00Z')).toBe('05/01/2024 10:00:00');
    expect(jsonNetDateText('2024-05-01T10:00:00.1234567+02:00')).toBe('05/01/2024 08:00:00');
    expect(jsonNetDateText('2024-05-01T23:30:00-0130')).toBe('05/02/2024 01:00:00');
    expect(jsonNetDateText('2024-05-01T10:00:00')).toBe('05/01/2024 10:00:00');
    expect(jsonNetDateText('/Date(1714557600000)/')).toBe('05/01/2024 10:00:00');
    for (const text of ['2024-05-01', '2024-13-01T10:00:00Z', '2024-02-30T10:00:00Z', '2024-05-01 10:00:00Z', '2024-05-01T10:00:00.12345678Z', 'x2024-05-01T10:00:00Z']) {
      expect(jsonNetDateText(text), text).toBeUndefined();
    }
    const data = new BindingData();
    applyJsonPayload(data, '{"when":"2024-05-01T10:00:00Z","day":"2024-05-01"}');
    expect(data.toRecord()).toEqual({ when: '05/01/2024 10:00:00', day: '2024-05-01' });
  });
});

describe('triggerMetadata from binding data', () => {
  it('sends strings as strings, everything else as JSON, and leaves nulls out', () => {
    const data = BindingData.from({
      Id: 'm1',
      DequeueCount: 2,
      InsertionTime: new DateTimeOffsetValue(NOW),
      Query: new Dictionary([['a', '1']]),
      nested: { x: [1, { y: new DateTimeOffsetValue(NOW) }] },
      missing: null,
    });
    expect(triggerMetadataOf(data)).toEqual({
      Id: { string: 'm1' },
      DequeueCount: { json: '2' },
      InsertionTime: { json: '"2024-05-01T10:04:00+00:00"' },
      Query: { json: '{"a":"1"}' },
      nested: { json: '{"x":[1,{"y":"2024-05-01T10:04:00+00:00"}]}' },
    });
  });
});

describe('binding data per trigger', () => {
  it('HTTP: body properties, then query values, then route values; Query and Headers', () => {
    const body = Buffer.from(JSON.stringify({ folder: 'from-body', name: 'from-body', only: 'body', code: 'c1' }));
    const data = httpBindingData({
      body,
      headers: { 'content-length': String(body.length), 'x-Trace': 't1' },
      url: new URL('http://h/api/x?name=q1&name=q2&code=secret&folder=from-query&Tag=T'),
      params: { folder: 'from-route' },
    });
    expect(resolve('{folder}/{name}/{only}/{tag}', data)).toBe('from-route/q2/body/T');
    // The function key in ?code= is never binding data; a body property named code is.
    expect(resolve('{code}', data)).toBe('c1');
    expect(resolve('{Query.code}|{Query.Tag}|{headers.X-TRACE}', data)).toBe('secret|T|t1');
    expect(() => resolve('{Query.tag}', data)).toThrow("Error while accessing 'tag': property doesn't exist.");
  });

  it('HTTP: a body without Content-Length adds nothing; a query value named query hides Query', () => {
    const data = httpBindingData({ body: Buffer.from('{"a":"1"}'), headers: {}, url: new URL('http://h/x?query=q'), params: {} });
    expect(data.has('a')).toBe(false);
    expect(resolve('{query}', data)).toBe('q');
    expect(() => resolve('{Query.query}', data)).toThrow("Error while accessing 'query'");
  });

  it('queue: message metadata, then the properties of a JSON message, which win', () => {
    const message = {
      text: JSON.stringify({ orderId: 'o-1', id: 'payload-id', customer: { Name: 'ada' } }),
      dequeueCount: 3,
      id: 'msg-1',
      popReceipt: 'pr',
      expiresOn: new Date(NOW + 1000),
      insertedOn: new Date(NOW),
      nextVisibleOn: undefined,
    };
    const data = queueBindingData(message, { now: NOW, payloadIsText: true });
    expect(resolve('{orderId}/{id}/{dequeueCount}/{customer.name}/{popReceipt}', data)).toBe('o-1/payload-id/3/ada/pr');
    // DateTimeOffset values give '' in a path, as in the host.
    expect(resolve('[{insertionTime}]', data)).toBe('[]');
    expect(triggerMetadataOf(data)['NextVisibleTime']).toEqual({ json: '"9999-12-31T23:59:59.999+00:00"' });

    const binary = queueBindingData(message, { now: NOW, payloadIsText: false });
    expect(resolve('{id}', binary)).toBe('msg-1');
    expect(binary.has('orderId')).toBe(false);
  });

  it('blob: path parts win over the built-in names; Uri gives an empty string', () => {
    const data = blobBindingData({
      path: 'in/2024/report.csv',
      uri: 'http://127.0.0.1:10000/devstoreaccount1/in/2024/report.csv',
      properties: { ContentLength: 10, ContentType: 'text/csv' },
      metadata: { Owner: 'ada' },
      captures: { year: '2024', name: 'report', ext: 'csv' },
      text: undefined,
    });
    expect(resolve('{blobTrigger}|{year}/{name}.{ext}|{properties.contentLength}|{metadata.owner}|[{uri}]', data)).toBe(
      'in/2024/report.csv|2024/report.csv|10|ada|[]',
    );
    const named = blobBindingData({ path: 'in/x', uri: 'u', properties: {}, metadata: {}, captures: { BlobTrigger: 'part' }, text: '{"name":"json"}' });
    expect(resolve('{blobTrigger}/{name}', named)).toBe('part/json');
  });

  it('Event Grid: data and every top-level field of the event', () => {
    const event = {
      id: 'e1',
      subject: '/blobServices/default/containers/c/blobs/a.txt',
      eventType: 'Microsoft.Storage.BlobCreated',
      eventTime: '2024-05-01T10:00:00Z',
      data: { url: 'https://acct.blob.core.windows.net/c/a.txt', contentLength: 5 },
      tags: ['x'],
    };
    const data = eventGridBindingData(event, JSON.stringify(event));
    expect(resolve('{eventType}/{id}/{data.contentLength}', data)).toBe('Microsoft.Storage.BlobCreated/e1/5');
    expect(resolve('{data.url}', data)).toBe(event.data.url);
    expect(resolve('{eventTime}', data)).toBe('05/01/2024 10:00:00');
    expect(data.has('tags')).toBe(false);
    const noData = eventGridBindingData({ id: 'e2' }, '{"id":"e2"}');
    expect(resolve('[{data}]', noData)).toBe('[]');
  });

  it('activity: instanceId, the trigger name, data, and the properties of an object input', () => {
    const input = JSON.stringify({ folder: 'reports', fileName: 'q1.txt', text: 'hello', instanceId: 'mine' });
    const data = activityBindingData({ instanceId: 'abc', triggerName: 'input', input });
    expect(resolve('archive/{folder}/{fileName}', data)).toBe('archive/reports/q1.txt');
    expect(resolve('{data.folder}|{input}', data)).toBe(`reports|${input}`);
    // The input's own instanceId wins, as the payload is applied last.
    expect(resolve('{instanceId}', data)).toBe('mine');

    const named = activityBindingData({ instanceId: 'abc', triggerName: 'name', input: '"a.txt"' });
    expect(resolve('{name}|{data}|{instanceId}', named)).toBe('a.txt|a.txt|abc');
    expect(triggerMetadataOf(named)).toEqual({ instanceId: { string: 'abc' }, name: { string: 'a.txt' }, data: { json: '"a.txt"' } });

    const json = activityBindingData({ instanceId: 'abc', triggerName: 'input', input: JSON.stringify('{"folder":"f"}') });
    expect(resolve('{folder}', json)).toBe('f');

    const none = activityBindingData({ instanceId: 'abc', triggerName: 'input', input: null });
    expect(resolve('[{input}|{data}]', none)).toBe('[|]');
    expect(() => resolve('{folder}', none)).toThrow("No value for named parameter 'folder'.");
  });

  it('timer: only TimerTrigger', () => {
    const data = timerBindingData('5/1/2024 10:04:00 AM');
    expect([...data.entries()]).toEqual([['TimerTrigger', '5/1/2024 10:04:00 AM']]);
  });
});
