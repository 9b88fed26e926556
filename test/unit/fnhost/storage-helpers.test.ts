import { describe, expect, it } from 'vitest';
import { parseBlobPath } from '../../../infra/local/src/storage/blob-bindings.js';
import { compileBlobPathPattern } from '../../../infra/local/src/storage/blob-trigger.js';
import { connectionStringFor, normaliseConnectionString } from '../../../infra/local/src/storage/connections.js';
import { InFlight, PollLoop, RandomizedBackoff } from '../../../infra/local/src/storage/polling.js';
import {
  decodeQueueMessage,
  encodeQueueMessage,
  isBase64Text,
  poisonQueueName,
  queueMessagesFor,
  validateQueueName,
} from '../../../infra/local/src/storage/queue-messages.js';
import { entityFromValue, entityToJson } from '../../../infra/local/src/storage/table-bindings.js';
import { outputValueOf } from '../../../infra/local/src/storage/typed-data.js';
import { ManualClock, settle } from './manual-clock.js';

describe('queue message encoding', () => {
  it('detects Base64 of UTF-8 text', () => {
    expect(isBase64Text(encodeQueueMessage('hello world'))).toBe(true);
    expect(isBase64Text(encodeQueueMessage('{"a":"ünïcode"}'))).toBe(true);
    expect(isBase64Text('hello world')).toBe(false);
    expect(isBase64Text('')).toBe(false);
  });

  it('does not mistake plain words that happen to be Base64 for encoded text', () => {
    // "test" and "abcd" are valid Base64 but decode to bytes that are not UTF-8 text.
    expect(isBase64Text('test')).toBe(false);
    expect(isBase64Text('abcd')).toBe(false);
    // "AAAA" decodes to NUL bytes: valid UTF-8, but not text.
    expect(isBase64Text('AAAA')).toBe(false);
  });

  it('decodes Base64 messages and passes others through', () => {
    expect(decodeQueueMessage(encodeQueueMessage('{"id":1}'))).toBe('{"id":1}');
    expect(decodeQueueMessage('plain text')).toBe('plain text');
    expect(decodeQueueMessage('test')).toBe('test');
  });

  it('splits arrays into one message per element and sends objects as JSON', () => {
    expect(queueMessagesFor(outputValueOf({ json: '["a",{"b":1},2]' }))).toEqual(['a', '{"b":1}', '2']);
    expect(queueMessagesFor(outputValueOf({ json: '{"b":1}' }))).toEqual(['{"b":1}']);
    expect(queueMessagesFor(outputValueOf({ string: 'text' }))).toEqual(['text']);
    expect(queueMessagesFor(outputValueOf({ int: 5 }))).toEqual(['5']);
  });

  it('validates queue names and names poison queues', () => {
    expect(() => validateQueueName('Orders')).toThrow(/Invalid queue name/);
    expect(() => validateQueueName('a--b')).toThrow(/Invalid queue name/);
    expect(() => validateQueueName('orders-1')).not.toThrow();
    expect(poisonQueueName('orders')).toBe('orders-poison');
    expect(poisonQueueName('orders-poison')).toBeUndefined();
    expect(poisonQueueName('q'.repeat(60))).toBeUndefined();
  });
});

describe('blob paths', () => {
  it('splits container and blob name, also from URLs', () => {
    expect(parseBlobPath('samples/a/b.txt')).toEqual({ container: 'samples', blob: 'a/b.txt' });
    expect(parseBlobPath('https://acct.blob.core.windows.net/cont1/dir/x%20y.txt')).toEqual({ container: 'cont1', blob: 'dir/x y.txt' });
    expect(parseBlobPath('http://127.0.0.1:10000/devstoreaccount1/cont1/x')).toEqual({ container: 'cont1', blob: 'x' });
    expect(() => parseBlobPath('samples')).toThrow(/container\/blob/);
    expect(() => parseBlobPath('Bad_Container/x')).toThrow(/Invalid container name/);
  });

  it('compiles trigger patterns with greedy captures that span slashes', () => {
    const p = compileBlobPathPattern('samples/{name}.txt');
    expect(p.container).toBe('samples');
    expect(p.match('samples/a/b.txt')).toEqual({ name: 'a/b' });
    expect(p.match('samples/a.json')).toBeUndefined();
    expect(p.match('Samples/a.txt')).toBeUndefined();
    expect(compileBlobPathPattern('samples/{name}.{ext}').match('samples/x.y.z')).toEqual({ name: 'x.y', ext: 'z' });
    expect(compileBlobPathPattern('samples').match('samples/anything/at/all')).toEqual({});
    expect(compileBlobPathPattern('input/in-{name}').prefix).toBe('in-');
  });

  it('rejects trigger patterns the host rejects', () => {
    expect(() => compileBlobPathPattern('{c}/x')).toThrow(/container paths cannot contain/);
    expect(() => compileBlobPathPattern('samples/')).toThrow(/nothing follows/);
    expect(() => compileBlobPathPattern('samples/{a.b}')).toThrow(/not a plain name/);
  });
});

describe('storage connections', () => {
  it('finds AzureWebJobs<name> first, then <name>, defaulting to AzureWebJobsStorage', () => {
    const settings = { AzureWebJobsStorage: 'A=1', AzureWebJobsOther: 'B=2', Other: 'C=3', Plain: 'D=4' };
    expect(connectionStringFor(undefined, settings)).toBe('A=1');
    expect(connectionStringFor('', settings)).toBe('A=1');
    expect(connectionStringFor('AzureWebJobsStorage', settings)).toBe('A=1');
    expect(connectionStringFor('Other', settings)).toBe('B=2');
    expect(connectionStringFor('Plain', settings)).toBe('D=4');
    expect(() => connectionStringFor('Missing', settings)).toThrow(/'Missing' does not exist/);
  });

  it('expands UseDevelopmentStorage=true', () => {
    const cs = normaliseConnectionString('UseDevelopmentStorage=true');
    expect(cs).toContain('AccountName=devstoreaccount1');
    expect(cs).toContain('TableEndpoint=http://127.0.0.1:10002/devstoreaccount1');
    expect(normaliseConnectionString('UseDevelopmentStorage=true;DevelopmentStorageProxyUri=http://azurite')).toContain(
      'BlobEndpoint=http://azurite:10000/',
    );
  });
});

describe('table entities', () => {
  it('accepts camel-case keys and falls back to the binding keys', () => {
    expect(entityFromValue({ partitionKey: 'p', rowKey: 'r', Text: 'x' }, {}).entity).toEqual({ partitionKey: 'p', rowKey: 'r', Text: 'x' });
    expect(entityFromValue({ Text: 'x' }, { partitionKey: 'bp', rowKey: 'br' }).entity).toMatchObject({ partitionKey: 'bp', rowKey: 'br' });
    expect(entityFromValue({ PartitionKey: 'p', RowKey: 'r', ETag: '*' }, {}).etag).toBe('*');
  });

  it('refuses entities without keys, bad keys and nested values', () => {
    expect(() => entityFromValue({ Text: 'x' }, {})).toThrow(/needs a PartitionKey and a RowKey/);
    expect(() => entityFromValue({ PartitionKey: 'a/b', RowKey: 'r' }, {})).toThrow(/Invalid PartitionKey/);
    expect(() => entityFromValue({ PartitionKey: 'p', RowKey: 'r', o: { a: 1 } }, {})).toThrow(/must be a string, number or boolean/);
  });

  it('shapes read entities as the Tables extension does: keys and properties, no ETag or Timestamp', () => {
    const json = entityToJson({
      'odata.metadata': 'http://127.0.0.1:10002/devstoreaccount1/$metadata#t/@Element',
      partitionKey: 'p',
      rowKey: 'r',
      timestamp: '2026-01-01T00:00:00.0000000Z',
      etag: `W/"datetime'2026-01-01T00%3A00%3A00.0000000Z'"`,
      big: { type: 'Int64', value: '5' },
      when: new Date('2026-02-03T04:05:06.000Z'),
    });
    expect(json).toEqual({ PartitionKey: 'p', RowKey: 'r', big: 5, when: '2026-02-03T04:05:06.000Z' });
  });
});

describe('polling backoff', () => {
  it('grows roughly exponentially to the maximum and resets when work is found', () => {
    const backoff = new RandomizedBackoff({ minMs: 100, maxMs: 1000, random: () => 0.5 });
    const delays = [1, 2, 3, 4, 5].map(() => backoff.next(false));
    expect(delays).toEqual([200, 300, 500, 900, 1000]);
    expect(backoff.next(false)).toBe(1000);
    expect(backoff.next(true)).toBe(100);
    expect(backoff.next(false)).toBe(200);
  });
});

describe('poll loop and in-flight tracking (manual clock)', () => {
  it('polls on the delays the tick returns and stops scheduling when stopped', async () => {
    const clock = new ManualClock(0);
    const polls: number[] = [];
    const loop = new PollLoop({
      clock,
      tick: () => {
        polls.push(clock.now());
        return Promise.resolve(polls.length < 3 ? 100 : 1000);
      },
      onError: () => 5000,
    });
    loop.start(0);
    await clock.advance(2500);
    expect(polls).toEqual([0, 100, 200, 1200, 2200]);
    await loop.stop();
    await clock.advance(10_000);
    expect(polls).toHaveLength(5);
    expect(clock.pending).toBe(0);
  });

  it('backs off through onError when a tick throws', async () => {
    const clock = new ManualClock(0);
    const polls: number[] = [];
    const loop = new PollLoop({
      clock,
      tick: () => {
        polls.push(clock.now());
        return Promise.reject(new Error('storage down'));
      },
      onError: () => 700,
    });
    loop.start(0);
    await clock.advance(1500);
    expect(polls).toEqual([0, 700, 1400]);
    await loop.stop();
  });

  it('waits for work in progress up to a grace period', async () => {
    const clock = new ManualClock(0);
    const inFlight = new InFlight();
    let finish: () => void = () => undefined;
    inFlight.track(new Promise<void>((r) => (finish = r)));
    inFlight.track(Promise.reject(new Error('ignored')));
    await settle();
    expect(inFlight.size).toBe(1);

    const timedOut = inFlight.drained(clock, 1000);
    await clock.advance(1000);
    expect(await timedOut).toBe(false);

    const drained = inFlight.drained(clock, 1000);
    finish();
    await settle();
    expect(await drained).toBe(true);
    expect(inFlight.size).toBe(0);
  });
});

describe('the connection string fnhost prints', () => {
  it("shows Azurite's well-known key, and redacts any other account's key or SAS", async () => {
    const { DEV_KEY, printableConnection, devConnectionString } = await import('../../../infra/local/src/storage/azurite.js');
    const dev = devConnectionString('127.0.0.1', { blob: 10000, queue: 10001, table: 10002 });
    expect(printableConnection(dev)).toBe(dev);
    expect(printableConnection(dev)).toContain(DEV_KEY);
    const real = 'DefaultEndpointsProtocol=https;AccountName=prod;AccountKey=c2VjcmV0LWtleS1vZi1wcm9k;EndpointSuffix=core.windows.net';
    expect(printableConnection(real)).toBe('DefaultEndpointsProtocol=https;AccountName=prod;AccountKey=<redacted>;EndpointSuffix=core.windows.net');
    const sas = 'BlobEndpoint=https://prod.blob.core.windows.net/?sv=2024&sig=abc;SharedAccessSignature=sv=2024&sig=abc';
    expect(printableConnection(sas)).toBe('BlobEndpoint=https://prod.blob.core.windows.net/?<redacted>;SharedAccessSignature=<redacted>');
  });
});
