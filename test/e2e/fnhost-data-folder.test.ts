import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readHostLock, hostLockPath } from '../../infra/local/src/host-lock.js';
import { cleanupsAfterAll } from '../support/cleanups.js';
import { TEST_APP, azuritePid, hostDataFolder, processRunning, runFnHost, startFnHost, stopStorage } from '../support/fnhost.js';
import { freePort, freePorts } from '../support/ports.js';

/**
 * A data folder belongs to one host and its own Azurite: a second host on it, another folder's
 * Azurite on its ports, `fnhost stop` while it runs, its Azurite dying under it, a damaged keys
 * file. Each must end in a clear outcome, not two hosts on one task hub or a host that hangs.
 */

const cleanups = cleanupsAfterAll();
const dataFolder = (): string => hostDataFolder(cleanups, 'fnhost-data-folder-');

const startArgs = async (data: string, ports = ['0', '0', '0']): Promise<string[]> => [
  'start', '--script-root', TEST_APP, '--data', data, '--port', String(await freePort()),
  '--blob-port', ports[0]!, '--queue-port', ports[1]!, '--table-port', ports[2]!,
];

describe('one host per data folder', () => {
  it('refuses a second host on a folder a running host uses, naming its pid and the folder; the first runs on', async () => {
    const data = dataFolder();
    const first = await startFnHost({ appDir: TEST_APP, dataDir: data });
    cleanups.push(() => first.stop());
    const holder = readHostLock(hostLockPath(data));
    expect(holder?.folder).toBe(data);

    const second = await runFnHost(await startArgs(data));
    expect(second.code).toBe(1);
    expect(second.output).toContain(`fnhost: The data folder ${data} is in use by another fnhost (pid ${holder!.pid}, started ${holder!.startedAt}).`);
    expect(second.output).not.toContain('Azurite started');
    expect((await fetch(`${first.url}/api/hello?name=still`)).status).toBe(200);
    expect(readHostLock(hostLockPath(data))?.token).toBe(holder!.token);

    // Stopped, the host lets go of the folder: the next one starts on it.
    expect(await first.stop()).toBe(0);
    expect(existsSync(hostLockPath(data))).toBe(false);
    const next = await startFnHost({ appDir: TEST_APP, dataDir: data });
    cleanups.push(() => next.stop());
  });

  it('takes over the folder of a host that was killed (its lock is stale)', async () => {
    const data = dataFolder();
    const first = await startFnHost({ appDir: TEST_APP, dataDir: data });
    const pid = readHostLock(hostLockPath(data))!.pid;
    await first.kill();
    const second = await startFnHost({ appDir: TEST_APP, dataDir: data });
    cleanups.push(() => second.stop());
    expect(second.output()).toContain(`fnhost ${pid} (started `);
    expect(second.output()).toContain(`stopped without releasing ${data}`);
    expect(readHostLock(hostLockPath(data))?.pid).not.toBe(pid);
  });
});

describe('`fnhost stop` on a folder whose host runs', () => {
  it('stops the host as Ctrl+C would, and with it its Azurite', async () => {
    const data = dataFolder();
    const host = await startFnHost({ appDir: TEST_APP, dataDir: data });
    const pid = readHostLock(hostLockPath(data))!.pid;
    const azurite = azuritePid(data);
    const said = await stopStorage(data);
    expect(said).toContain(`Stopped fnhost ${pid} on ${data}.`);
    expect(await host.exited).toBe(0);
    expect(host.output()).toContain('SIGTERM received: stopping');
    expect(processRunning(azurite)).toBe(false);
    expect(existsSync(hostLockPath(data))).toBe(false);
    expect(existsSync(join(data, 'azurite.json'))).toBe(false);
  });
});

describe('a host whose Azurite dies', () => {
  it('says so and exits 1 rather than run on with every storage call failing', async () => {
    const data = dataFolder();
    const host = await startFnHost({ appDir: TEST_APP, dataDir: data });
    const azurite = azuritePid(data);
    process.kill(azurite, 'SIGKILL');
    expect(await host.exited).toBe(1);
    expect(host.output()).toMatch(new RegExp(`Azurite ${azurite} for ${data} (exited \\(SIGKILL\\)|is no longer running) while the host was running: the app has no storage any more, so fnhost stops.`));
    expect(existsSync(hostLockPath(data))).toBe(false);
  });
});

describe("another data folder's Azurite on the ports", () => {
  it('is refused, naming that folder, while the folder that owns it reattaches to it', async () => {
    const owner = dataFolder();
    const ports = (await freePorts(3)).map(String);
    const first = await startFnHost({ appDir: TEST_APP, dataDir: owner, args: ['--blob-port', ports[0]!, '--queue-port', ports[1]!, '--table-port', ports[2]!] });
    const azurite = azuritePid(owner);
    // Killed, the host leaves its Azurite running on those ports (an orphan, as after a crash).
    await first.kill();
    expect(processRunning(azurite)).toBe(true);

    const other = dataFolder();
    const refused = await runFnHost(await startArgs(other, ports));
    expect(refused.code).toBe(1);
    expect(refused.output).toContain(`fnhost: Port ${ports[0]} is taken by the Azurite (pid ${azurite}) of the data folder ${owner}, left running by a host of that folder`);
    expect(refused.output).toContain(`fnhost stop --data ${owner}`);
    expect(refused.output).not.toContain('is listening on');
    expect(existsSync(join(other, 'azurite.json'))).toBe(false);

    const again = await startFnHost({ appDir: TEST_APP, dataDir: owner });
    cleanups.push(() => again.stop());
    expect(again.output()).toContain(`Azurite for ${owner} is still running (pid ${azurite}`);
  });
});

describe('a damaged keys file', () => {
  it('is refused at start, naming it, before Azurite is started; the file is left as it was', async () => {
    const data = dataFolder();
    const host = await startFnHost({ appDir: TEST_APP, dataDir: data });
    expect(await host.stop()).toBe(0);
    const keys = join(data, 'keys.json');
    const cut = readFileSync(keys, 'utf8').slice(0, 30);
    writeFileSync(keys, cut);
    const result = await runFnHost(await startArgs(data));
    expect(result.code).toBe(1);
    expect(result.output).toContain(`fnhost: The keys file ${keys} is not usable (not valid JSON: `);
    expect(result.output).not.toContain('Azurite started');
    expect(readFileSync(keys, 'utf8')).toBe(cut);
    expect(existsSync(hostLockPath(data))).toBe(false);
  });
});

