import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { ContainerClient, StorageSharedKeyCredential } from '@azure/storage-blob';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EventGridPublisher } from '../../shared/events/publisher.js';
import { fastRead } from '../../shared/storage/fast-read.js';

/**
 * Redirects never take a request (and its key, SAS or token) to another host: the storage SDK's
 * pipeline follows only same-origin redirects, whatever the credential (its redirect policy sits
 * below the signing policies; checked here against real servers, so an SDK update that changed it
 * would fail), the fast read path does not
 * follow any, and job events are not re-posted to wherever a topic redirects them.
 */

interface Server {
  url: string;
  hits: { method: string; url: string; authorization: string | undefined; key: string | undefined }[];
  close: () => Promise<void>;
}

async function serve(handler: (req: http.IncomingMessage, res: http.ServerResponse) => void): Promise<Server> {
  const hits: Server['hits'] = [];
  const server = http.createServer((req, res) => {
    hits.push({ method: req.method ?? '', url: req.url ?? '', authorization: req.headers.authorization, key: req.headers['aeg-sas-key'] as string | undefined });
    req.resume();
    req.on('end', () => handler(req, res));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}`, hits, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

let target: Server;
let redirector: Server;

beforeAll(async () => {
  target = await serve((_req, res) => res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': '2' }).end('ok'));
  redirector = await serve((req, res) => {
    const status = req.method === 'POST' ? 307 : 302;
    res.writeHead(status, { location: `${target.url}${req.url ?? '/'}`, 'content-length': '0' }).end();
  });
});

afterAll(async () => {
  await target?.close();
  await redirector?.close();
});

const KEY = Buffer.from('not-a-real-key-but-a-secret-one').toString('base64');

describe('redirects to another host are not followed', () => {
  it('by the storage SDK with an account key (download, properties, listing)', async () => {
    const container = new ContainerClient(`${redirector.url}/devstoreaccount1/data`, new StorageSharedKeyCredential('devstoreaccount1', KEY), { retryOptions: { maxTries: 1 } });
    await expect(container.getBlobClient('a.csv').downloadToBuffer()).rejects.toMatchObject({ statusCode: 302 });
    await expect(container.getBlobClient('a.csv').getProperties()).rejects.toMatchObject({ statusCode: 302 });
    await expect(container.listBlobsFlat().next()).rejects.toMatchObject({ statusCode: 302 });
    expect(redirector.hits.length).toBeGreaterThanOrEqual(3);
    expect(target.hits).toEqual([]);
  });

  it('by the fast read path (plain GETs on a SAS)', async () => {
    const container = new ContainerClient(`${redirector.url}/devstoreaccount1/data`, new StorageSharedKeyCredential('devstoreaccount1', KEY));
    expect(await fastRead(container, 'a.csv', { maxBytes: 1024 })).toBeUndefined();
    expect(redirector.hits.some((h) => h.url.includes('sig='))).toBe(true);
    expect(target.hits).toEqual([]);
  });

  it('by the job events publisher (the topic key is not re-posted)', async () => {
    const publisher = new EventGridPublisher({ endpoint: `${redirector.url}/api/events`, key: 'topic-key' });
    await expect(publisher.publish([{ id: '1' } as never])).rejects.toMatchObject({ code: 'event_publish_failed' });
    expect(redirector.hits.some((h) => h.method === 'POST' && h.key === 'topic-key')).toBe(true);
    expect(target.hits).toEqual([]);
  });
});
