import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, linkSync, mkdirSync, openSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { type Clock, systemClock } from './clock.js';
import { FnHostError, describeError } from './errors.js';
import type { Logger } from './log.js';
import { HAS_PROC, pidAlive, processIdentity } from './processes.js';
import { readStateFile } from './state-file.js';

/**
 * One host per data folder. Two hosts on one folder share its task hub and its Azurite: durable
 * activities and blob triggers run twice, and the first one to stop takes the storage away from
 * the other. A host therefore holds `<data>/fnhost.lock` for as long as it runs. The file is
 * written whole under a name of its own and hard-linked into place, which fails if the lock
 * exists, so two starts at the same instant cannot both take it and a reader never sees a part of
 * it. A lock whose process is gone (a crash, a kill, a machine restart) is stale and taken over.
 */

const LOCK_FILE = 'fnhost.lock';

export function hostLockPath(dataDir: string): string {
  return join(dataDir, LOCK_FILE);
}

const lockSchema = z.object({
  version: z.literal(1),
  pid: z.number().int().positive(),
  /** processIdentity(pid) when the lock was taken: tells the holder from a later process given its pid. */
  process: z.string().optional(),
  token: z.string().min(16),
  startedAt: z.string(),
  folder: z.string(),
  /** The holder's shutdown grace, so that `fnhost stop` knows how long the holder may take. */
  shutdownGraceMs: z.number().int().min(0),
});
export type HostLockRecord = z.infer<typeof lockSchema>;

/**
 * Reads a lock file; undefined when there is none. One that cannot be read is an error naming it:
 * it is always written whole, so it was damaged from outside, and whether a host holds the
 * folder cannot be told from it.
 */
export function readHostLock(path: string): HostLockRecord | undefined {
  const read = readStateFile(path, lockSchema);
  if (!read.found) return undefined;
  if ('value' in read) return read.value;
  const problem = read.problem;
  throw new FnHostError(
    'ERR_CONFIG',
    `The host lock ${path} is not usable (${problem}). It records which fnhost uses this data folder. ` +
      'If no fnhost is running on this folder, delete the file and start again.',
    { details: { file: path } },
  );
}

/** Whether the process that took the lock still runs (the same process, not a later one with its pid). */
export function lockHolderAlive(record: HostLockRecord): boolean {
  if (!pidAlive(record.pid)) return false;
  if (!HAS_PROC || record.process === undefined) return true;
  return processIdentity(record.pid) === record.process;
}

function refusal(dataDir: string, holder: HostLockRecord): FnHostError {
  return new FnHostError(
    'ERR_CONFIG',
    `The data folder ${dataDir} is in use by another fnhost (pid ${holder.pid}, started ${holder.startedAt}). ` +
      'A data folder is used by one host at a time: a second one would run its durable activities and blob triggers ' +
      `again and share its storage. Stop that host first (Ctrl+C where it runs, or \`fnhost stop --data ${dataDir}\`), ` +
      'or give this one another --data folder.',
    { details: { file: hostLockPath(dataDir), pid: holder.pid } },
  );
}

/** Writes `text` to a new file `path`, flushed, so it is whole wherever it is linked to. */
function writeNewFile(path: string, text: string): void {
  const fd = openSync(path, 'wx', 0o600);
  try {
    writeSync(fd, text);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * Removes the lock at `path` if it still is `stale`. It is moved aside first and checked there:
 * between reading a stale lock and removing it, another start may have taken the folder over,
 * and its lock must survive (it is moved back).
 */
function removeStale(path: string, stale: HostLockRecord): void {
  const aside = `${path}.stale-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    renameSync(path, aside);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  let moved: HostLockRecord | undefined;
  try {
    moved = readHostLock(aside);
  } catch {
    moved = undefined;
  }
  if (moved?.token !== stale.token) {
    try {
      linkSync(aside, path);
    } catch {
      // A third start has taken the folder since; its lock stands, and this start is refused by it.
    }
  }
  unlinkSync(aside);
}

/** The lock a host holds on its data folder while it runs. */
export class HostLock {
  readonly path: string;
  readonly record: HostLockRecord;
  readonly #releaseOnExit = (): void => this.release();
  #released = false;

  private constructor(path: string, record: HostLockRecord) {
    this.path = path;
    this.record = record;
    // A host that dies of an error (not a kill) lets go of the folder on its way out.
    process.on('exit', this.#releaseOnExit);
  }

  /**
   * Takes `dataDir` for this process, or fails naming the live host that holds it. A stale lock
   * (its process is gone) is taken over, with a line in the log.
   */
  static acquire(options: { dataDir: string; shutdownGraceMs: number; logger: Logger; clock?: Clock }): HostLock {
    const clock = options.clock ?? systemClock;
    const path = hostLockPath(options.dataDir);
    mkdirSync(options.dataDir, { recursive: true });
    const identity = processIdentity(process.pid);
    const record: HostLockRecord = {
      version: 1,
      pid: process.pid,
      ...(identity === undefined ? {} : { process: identity }),
      token: randomBytes(24).toString('hex'),
      startedAt: new Date(clock.now()).toISOString(),
      folder: options.dataDir,
      shutdownGraceMs: options.shutdownGraceMs,
    };
    const draft = `${path}.${process.pid}.${record.token.slice(0, 8)}.tmp`;
    writeNewFile(draft, `${JSON.stringify(record, null, 2)}\n`);
    try {
      // Each round either takes the lock, is refused by a live holder, or clears a stale lock;
      // only starts racing this one for the same stale lock make it go round again.
      for (let round = 0; round < 20; round++) {
        try {
          linkSync(draft, path);
          return new HostLock(path, record);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'EEXIST') {
            throw new FnHostError('ERR_CONFIG', `Cannot create the host lock ${path}: ${describeError(err)}`, { cause: err });
          }
        }
        const holder = readHostLock(path);
        if (holder === undefined) continue;
        if (lockHolderAlive(holder)) throw refusal(options.dataDir, holder);
        options.logger.info(`fnhost ${holder.pid} (started ${holder.startedAt}) stopped without releasing ${options.dataDir} (a crash, a kill, or a restart of the machine); this host takes it over.`);
        removeStale(path, holder);
      }
      throw new FnHostError('ERR_CONFIG', `Cannot take the host lock ${path}: other starts on ${options.dataDir} keep changing it.`);
    } finally {
      unlinkSync(draft);
    }
  }

  /** Whether the lock file still names this host. */
  held(): boolean {
    try {
      return !this.#released && readHostLock(this.path)?.token === this.record.token;
    } catch {
      return false;
    }
  }

  /** Lets go of the folder (only if the lock is still this host's). */
  release(): void {
    if (this.#released) return;
    process.off('exit', this.#releaseOnExit);
    if (this.held()) {
      try {
        unlinkSync(this.path);
      } catch {
        // already gone: nothing to let go of
      }
    }
    this.#released = true;
  }
}

export type HostStopOutcome = { kind: 'stopped'; pid: number } | { kind: 'stale'; pid: number } | { kind: 'none' };

/**
 * `fnhost stop` on a folder a live host holds: SIGTERM, as Ctrl+C would be, and wait until that
 * host has gone. It stops as it does on Ctrl+C: running functions get its shutdown grace, then it
 * stops its Azurite (saving) and lets go of the folder. A stale lock is removed.
 */
export async function stopLockHolder(options: { dataDir: string; clock?: Clock; log?: (line: string) => void }): Promise<HostStopOutcome> {
  const clock = options.clock ?? systemClock;
  const path = hostLockPath(options.dataDir);
  const holder = readHostLock(path);
  if (holder === undefined) return { kind: 'none' };
  if (!lockHolderAlive(holder)) {
    removeStale(path, holder);
    return { kind: 'stale', pid: holder.pid };
  }
  try {
    process.kill(holder.pid, 'SIGTERM');
  } catch (err) {
    throw new FnHostError('ERR_CONFIG', `Cannot stop fnhost ${holder.pid} on ${options.dataDir}: ${describeError(err)}`, { cause: err });
  }
  options.log?.(`Stopping fnhost ${holder.pid} on ${options.dataDir} (as Ctrl+C would: running functions get up to ${holder.shutdownGraceMs / 1000} s) ...`);
  // Its grace, then time for its Azurite to save (up to 30 s) and to close the task hub.
  const limitMs = holder.shutdownGraceMs + 60_000;
  const deadline = clock.now() + limitMs;
  const hold = setInterval(() => undefined, 1_000_000);
  try {
    while (lockHolderAlive(holder)) {
      if (clock.now() > deadline) {
        throw new FnHostError('ERR_CONFIG', `fnhost ${holder.pid} on ${options.dataDir} did not stop within ${limitMs / 1000} s; it is still running.`);
      }
      await new Promise<void>((r) => clock.setTimeout(r, 100));
    }
  } finally {
    clearInterval(hold);
  }
  return { kind: 'stopped', pid: holder.pid };
}
