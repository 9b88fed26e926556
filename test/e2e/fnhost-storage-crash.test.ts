import { existsSync, readdirSync, readFileSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BlobServiceClient } from '@azure/storage-blob';
import { describe, expect, it } from 'vitest';
import { apiOf, startProductHost } from '../support/batch.js';
import { cleanupsAfterAll } from '../support/cleanups.js';
import { TEST_APP, azuritePid, hostDataFolder, processRunning, runFnHost, startFnHost, stopStorage } from '../support/fnhost.js';
import { freePort, freePorts } from '../support/ports.js';

/**
 * Storage outlives a crash of the host, as Azure Storage outlives a Functions host: what storage
 * acknowledged before a SIGKILL is there when the host starts again on the same data folder.
 */

const cleanups = cleanupsAfterAll();
const dataFolder = (): string => hostDataFolder(cleanups, 'fnhost-storage-crash-');

async function putBlob(connection: string, name: string, text: string): Promise<void> {
  const container = BlobServiceClient.fromConnectionString(connection).getContainerClient('acked');
  await container.createIfNotExists();
  await container.getBlockBlobClient(name).upload(text, Buffer.byteLength(text));
}

async function getBlob(connection: string, name: string): Promise<string> {
  return (await BlobServiceClient.fromConnectionString(connection).getContainerClient('acked').getBlobClient(name).downloadToBuffer()).toString();
}

describe('storage across a crash of the host', () => {
  it('keeps an endpoint PUT and a blob write acknowledged just before the whole process group is killed', async () => {
    const data = dataFolder();
    const { host: first, api } = await startProductHost({}, { dataDir: data, detached: true, immediateProgress: false });
    const put = await api.call('PUT', 'endpoints/kept-endpoint', { description: 'acknowledged, then the host died' });
    expect(put.status).toBe(201);
    await putBlob(first.storageConnection, 'last-write', 'acknowledged');
    // No pause: the kill follows the acknowledgement at once.
    await first.kill({ group: true });
    const azurite = azuritePid(data);
    expect(processRunning(azurite)).toBe(true);

    const { host: second } = await startProductHost({}, { dataDir: data, port: first.port, immediateProgress: false });
    cleanups.push(() => second.stop());
    expect(second.output()).toContain(`Azurite for ${data} is still running (pid ${azurite}`);
    expect(second.storageConnection).toBe(first.storageConnection);
    const got = await apiOf(second).call('GET', 'endpoints/kept-endpoint');
    expect(got.status).toBe(200);
    expect(got.body.description).toBe('acknowledged, then the host died');
    expect(await getBlob(second.storageConnection, 'last-write')).toBe('acknowledged');
  });

  it('reattaches on the ports Azurite has when others are asked for, and tells the app those', async () => {
    const data = dataFolder();
    const first = await startFnHost({ appDir: TEST_APP, dataDir: data });
    await putBlob(first.storageConnection, 'x', 'before the kill');
    await first.kill();

    const [blob, queue, table] = await freePorts(3);
    const second = await startFnHost({ appDir: TEST_APP, dataDir: data, args: ['--blob-port', String(blob), '--queue-port', String(queue), '--table-port', String(table)] });
    cleanups.push(() => second.stop());
    expect(second.output()).toContain('Azurite keeps the ports it was started with; the blob/queue/table port(s) asked for apply after `fnhost stop');
    expect(second.storageConnection).toBe(first.storageConnection);
    expect(second.storageConnection).not.toContain(`:${blob}/`);
    expect(await getBlob(second.storageConnection, 'x')).toBe('before the kill');
  });

  it('stops Azurite, saving its data, when the host is stopped; the next start loads it', async () => {
    const data = dataFolder();
    const first = await startFnHost({ appDir: TEST_APP, dataDir: data });
    const azurite = azuritePid(data);
    await putBlob(first.storageConnection, 'saved', 'on stop');
    expect(await first.stop()).toBe(0);
    expect(processRunning(azurite)).toBe(false);
    expect(existsSync(join(data, 'azurite.json'))).toBe(false);

    const second = await startFnHost({ appDir: TEST_APP, dataDir: data });
    cleanups.push(() => second.stop());
    expect(second.output()).not.toContain('reattached');
    expect(azuritePid(data)).not.toBe(azurite);
    expect(await getBlob(second.storageConnection, 'saved')).toBe('on stop');
  });

  it('`fnhost stop` stops the Azurite a killed host left, with its data saved', async () => {
    const data = dataFolder();
    const first = await startFnHost({ appDir: TEST_APP, dataDir: data });
    const azurite = azuritePid(data);
    await putBlob(first.storageConnection, 'left', 'by a dead host');
    await first.kill();
    expect(await stopStorage(data)).toContain(`Stopped Azurite ${azurite} for ${data}; its data is saved.`);
    expect(processRunning(azurite)).toBe(false);
    expect(await stopStorage(data)).toContain(`No Azurite is running for ${data}.`);

    const second = await startFnHost({ appDir: TEST_APP, dataDir: data });
    cleanups.push(() => second.stop());
    expect(await getBlob(second.storageConnection, 'left')).toBe('by a dead host');
  });
});

describe('a data folder whose storage is damaged', () => {
  /** A data folder a host has used and stopped cleanly: Azurite's databases and the task hub are saved. */
  async function usedFolder(): Promise<string> {
    const data = dataFolder();
    const host = await startFnHost({ appDir: TEST_APP, dataDir: data });
    await putBlob(host.storageConnection, 'something', 'to lose');
    expect(await host.stop()).toBe(0);
    return data;
  }

  const start = async (data: string): Promise<{ code: number | null; output: string }> =>
    runFnHost(['start', '--script-root', TEST_APP, '--data', data, '--port', String(await freePort()), '--blob-port', '0', '--queue-port', '0', '--table-port', '0']);

  it("refuses to start on a half-written Azurite database, naming the file, and leaves no Azurite running", async () => {
    const data = await usedFolder();
    const file = join(data, 'azurite', '__azurite_db_blob__.json');
    const text = readFileSync(file, 'utf8');
    writeFileSync(file, text.slice(0, Math.floor(text.length / 2)));
    const result = await start(data);
    expect(result.code).not.toBe(0);
    expect(result.output).toContain(`fnhost: Azurite's database ${file} is not usable (not valid JSON:`);
    expect(result.output).not.toContain('is listening on');
    expect(existsSync(join(data, 'azurite.json'))).toBe(false);
  });

  it('refuses to start on a truncated task hub, naming the file', async () => {
    const data = await usedFolder();
    const [hub] = readdirSync(join(data, 'durable')).filter((f) => f.endsWith('.sqlite'));
    const file = join(data, 'durable', hub!);
    truncateSync(file, 1024);
    const result = await start(data);
    expect(result.code).not.toBe(0);
    expect(result.output).toContain(`fnhost: The durable task hub ${file} is damaged (`);
    expect(result.output).not.toContain('Azurite started');
    expect(existsSync(join(data, 'azurite.json'))).toBe(false);
  });
});
