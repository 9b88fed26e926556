import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { FnHostError } from '../../../infra/local/src/errors.js';
import { HostLock, hostLockPath, readHostLock, stopLockHolder } from '../../../infra/local/src/host-lock.js';
import { Logger, type LogRecord } from '../../../infra/local/src/log.js';
import { tempDir } from '../../support/fnhost.js';

const dirs: { remove: () => void }[] = [];
const locks: HostLock[] = [];
afterEach(() => {
  for (const l of locks.splice(0)) l.release();
  for (const d of dirs.splice(0)) d.remove();
});

function folder(): string {
  const dir = tempDir('fnhost-lock-');
  dirs.push(dir);
  return dir.path;
}

function recording(): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  return { logger: new Logger({ sink: (r: LogRecord) => lines.push(r.message) }), lines };
}

function acquire(dataDir: string, logger = recording().logger): HostLock {
  const lock = HostLock.acquire({ dataDir, shutdownGraceMs: 10_000, logger });
  locks.push(lock);
  return lock;
}

/** The pid of a process that has run and exited (and been reaped): nothing runs under it now. */
function deadPid(): number {
  const run = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
  return Number(run.stdout);
}

describe('one host per data folder (fnhost.lock)', () => {
  it('refuses a second host on a folder a live host holds, naming its pid and the folder', () => {
    const data = folder();
    const first = acquire(data);
    expect(readHostLock(hostLockPath(data))).toMatchObject({ pid: process.pid, folder: data, token: first.record.token });
    let error: unknown;
    try {
      acquire(data);
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(FnHostError);
    const message = (error as FnHostError).message;
    expect(message).toContain(`The data folder ${data} is in use by another fnhost (pid ${process.pid}, started ${first.record.startedAt})`);
    expect(message).toContain(`fnhost stop --data ${data}`);
    // The refused start leaves the holder's lock as it was, and no draft of its own.
    expect(first.held()).toBe(true);
    expect(readFileSync(hostLockPath(data), 'utf8')).toContain(first.record.token);
  });

  it('lets go of the folder on release, so the next host takes it', () => {
    const data = folder();
    acquire(data).release();
    expect(existsSync(hostLockPath(data))).toBe(false);
    const next = acquire(data);
    expect(next.held()).toBe(true);
  });

  it('takes over a lock whose process has gone, and says so', () => {
    const data = folder();
    const pid = deadPid();
    const stale = { version: 1, pid, token: 'b'.repeat(48), startedAt: '2026-01-01T00:00:00.000Z', folder: data, shutdownGraceMs: 10_000 };
    writeFileSync(hostLockPath(data), JSON.stringify(stale));
    const { logger, lines } = recording();
    const lock = acquire(data, logger);
    expect(lock.held()).toBe(true);
    expect(readHostLock(hostLockPath(data))?.pid).toBe(process.pid);
    expect(lines.join('\n')).toContain(`fnhost ${pid} (started 2026-01-01T00:00:00.000Z) stopped without releasing ${data}`);
  });

  it('takes over a lock whose pid now belongs to another process (the pid was reused)', () => {
    const data = folder();
    // /proc tells the two apart (on Linux, where fnhost and its tests run).
    const reused = { version: 1, pid: process.pid, process: 'another-boot/1', token: 'c'.repeat(48), startedAt: '2026-01-01T00:00:00.000Z', folder: data, shutdownGraceMs: 0 };
    writeFileSync(hostLockPath(data), JSON.stringify(reused));
    expect(acquire(data).held()).toBe(true);
  });

  it('refuses a damaged lock file, naming it, rather than guessing whether a host holds the folder', () => {
    const data = folder();
    writeFileSync(hostLockPath(data), '{"version":1,"pid":');
    expect(() => acquire(data)).toThrow(`The host lock ${hostLockPath(data)} is not usable (not valid JSON: `);
  });

  it('`fnhost stop` removes a stale lock and reports no host', async () => {
    const data = folder();
    const pid = deadPid();
    writeFileSync(hostLockPath(data), JSON.stringify({ version: 1, pid, token: 'd'.repeat(48), startedAt: '2026-01-01T00:00:00.000Z', folder: data, shutdownGraceMs: 0 }));
    expect(await stopLockHolder({ dataDir: data })).toEqual({ kind: 'stale', pid });
    expect(existsSync(hostLockPath(data))).toBe(false);
    expect(await stopLockHolder({ dataDir: data })).toEqual({ kind: 'none' });
  });
});
