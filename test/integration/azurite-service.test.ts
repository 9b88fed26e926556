import { cpSync, existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { TableClient } from '@azure/data-tables';
import { BlobServiceClient } from '@azure/storage-blob';
import { describe, expect, it } from 'vitest';
import { Logger } from '../../infra/local/src/log.js';
import { AzuriteService, azuritePaths, readAzuriteState, stopAzuriteFor } from '../../infra/local/src/storage/azurite-service.js';
import { cleanupsAfterAll } from '../support/cleanups.js';
import { processRunning, tempDir } from '../support/fnhost.js';
import { waitFor } from '../support/wait.js';

const logger = new Logger({ minLevel: 'none' });
const FREE = { blob: 0, queue: 0, table: 0 };

const cleanups = cleanupsAfterAll();

function dataFolder(): string {
  const dir = tempDir('azurite-service-');
  cleanups.push(dir.remove);
  // Whatever a test leaves running is stopped before its folder goes.
  cleanups.push(() => stopAzuriteFor({ dataDir: dir.path, logger }).catch(() => undefined));
  return dir.path;
}

async function writeSomething(connection: string, name: string): Promise<void> {
  const container = BlobServiceClient.fromConnectionString(connection).getContainerClient('things');
  await container.createIfNotExists();
  await container.getBlockBlobClient(name).upload('hello', 5);
  const table = TableClient.fromConnectionString(connection, 'things', { allowInsecureConnection: true });
  await table.createTable();
  await table.createEntity({ partitionKey: 'p', rowKey: name, value: 1 });
}

async function readSomething(connection: string, name: string): Promise<{ blob: string; row: unknown }> {
  const blob = (await BlobServiceClient.fromConnectionString(connection).getContainerClient('things').getBlobClient(name).downloadToBuffer()).toString();
  const row = await TableClient.fromConnectionString(connection, 'things', { allowInsecureConnection: true }).getEntity('p', name);
  return { blob, row: row['value'] };
}

describe('Azurite as a service of its data folder', () => {
  it('is found again by a later start, and only when it really is that Azurite answering', async () => {
    const dataDir = dataFolder();
    const first = await AzuriteService.start({ dataDir, ports: FREE, logger });
    expect(first.reattached).toBe(false);
    const state = readAzuriteState(azuritePaths(dataDir).state);
    expect(state).toMatchObject({ status: 'ready', pid: first.pid, ports: first.ports });

    const again = await AzuriteService.attach({ dataDir, logger });
    expect(again).toMatchObject({ pid: first.pid, ports: first.ports, reattached: true });
    expect(again?.connectionString).toBe(first.connectionString);

    // A state file whose token is not the one that Azurite holds: the ports answer, but not to it.
    const forged = { ...state, token: 'f'.repeat(48) };
    writeFileSync(azuritePaths(dataDir).state, JSON.stringify(forged));
    await expect(AzuriteService.attach({ dataDir, logger, settleMs: 600 })).rejects.toThrow(
      `Azurite ${first.pid} (named in ${azuritePaths(dataDir).state}) is running but does not answer on ports ${first.ports.blob}/${first.ports.queue}/${first.ports.table}`,
    );
    // The forged file does not name it, so it stops itself (saving) within its 2 s check.
    await waitFor(() => (processRunning(first.pid) ? undefined : true), { timeoutMs: 20_000, what: 'Azurite to stop once its state file named another' });
  });

  it('saves what it acknowledged when stopped, and the next Azurite on the folder serves it', async () => {
    const dataDir = dataFolder();
    const first = await AzuriteService.start({ dataDir, ports: FREE, logger });
    await writeSomething(first.connectionString, 'a');
    await first.stop();
    expect(processRunning(first.pid)).toBe(false);
    expect(existsSync(azuritePaths(dataDir).state)).toBe(false);

    const second = await AzuriteService.start({ dataDir, ports: FREE, logger });
    cleanups.push(() => second.stop());
    expect(second.pid).not.toBe(first.pid);
    expect(await readSomething(second.connectionString, 'a')).toEqual({ blob: 'hello', row: 1 });
  });

  it('refuses a second Azurite on a folder one is serving', async () => {
    const dataDir = dataFolder();
    const first = await AzuriteService.start({ dataDir, ports: FREE, logger });
    cleanups.push(() => first.stop());
    await expect(AzuriteService.start({ dataDir, ports: FREE, logger })).rejects.toThrow(/another Azurite is using this data folder/);
    expect(await AzuriteService.attach({ dataDir, logger })).toMatchObject({ pid: first.pid });
  });

  it('treats the state file of an Azurite that was killed as stale', async () => {
    const dataDir = dataFolder();
    const first = await AzuriteService.start({ dataDir, ports: FREE, logger });
    process.kill(first.pid, 'SIGKILL');
    await waitFor(() => (processRunning(first.pid) ? undefined : true), { what: 'the kill' });
    expect(existsSync(azuritePaths(dataDir).state)).toBe(true);
    expect(await AzuriteService.attach({ dataDir, logger })).toBeUndefined();
    expect(existsSync(azuritePaths(dataDir).state)).toBe(false);
    const second = await AzuriteService.start({ dataDir, ports: FREE, logger });
    cleanups.push(() => second.stop());
    expect(second.reattached).toBe(false);
  });

  it('does not take over the Azurite of the folder a data folder was copied from', async () => {
    const original = dataFolder();
    const azurite = await AzuriteService.start({ dataDir: original, ports: FREE, logger });
    cleanups.push(() => azurite.stop());
    const copy = dataFolder();
    cpSync(original, copy, { recursive: true });
    expect(await AzuriteService.attach({ dataDir: copy, logger })).toBeUndefined();
    expect(existsSync(azuritePaths(copy).state)).toBe(false);
    expect(JSON.parse(readFileSync(azuritePaths(original).state, 'utf8'))).toMatchObject({ pid: azurite.pid });
    expect(await AzuriteService.attach({ dataDir: original, logger })).toMatchObject({ pid: azurite.pid });
  });

  it('exits when its data folder is removed', async () => {
    const dataDir = dataFolder();
    const azurite = await AzuriteService.start({ dataDir, ports: FREE, logger });
    rmSync(dataDir, { recursive: true, force: true });
    await waitFor(() => (processRunning(azurite.pid) ? undefined : true), { timeoutMs: 20_000, what: 'Azurite to exit after its folder went' });
  });

  it('`fnhost stop` stops it and says so; a stale state file is removed', async () => {
    const dataDir = dataFolder();
    expect(await stopAzuriteFor({ dataDir, logger })).toEqual({ kind: 'none' });
    const azurite = await AzuriteService.start({ dataDir, ports: FREE, logger });
    await writeSomething(azurite.connectionString, 'b');
    expect(await stopAzuriteFor({ dataDir, logger })).toEqual({ kind: 'stopped', pid: azurite.pid });
    expect(processRunning(azurite.pid)).toBe(false);

    const next = await AzuriteService.start({ dataDir, ports: FREE, logger });
    expect(await readSomething(next.connectionString, 'b')).toEqual({ blob: 'hello', row: 1 });
    process.kill(next.pid, 'SIGKILL');
    await waitFor(() => (processRunning(next.pid) ? undefined : true), { what: 'the kill' });
    expect(await stopAzuriteFor({ dataDir, logger })).toEqual({ kind: 'stale', pid: next.pid });
    expect(existsSync(join(dataDir, 'azurite.json'))).toBe(false);
  });
});
