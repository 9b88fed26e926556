import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, readlinkSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { EventType, makeEvent } from '../../../infra/local/src/durable/history.js';
import { SqliteTaskHubStore } from '../../../infra/local/src/durable/store/sqlite-store.js';
import type { CreateInstance, EpisodeCommit } from '../../../infra/local/src/durable/store/task-hub-store.js';
import { tempDir } from '../../support/fnhost.js';

const stores: SqliteTaskHubStore[] = [];
const dirs: { remove: () => void }[] = [];
afterEach(() => {
  for (const s of stores.splice(0)) s.close();
  for (const d of dirs.splice(0)) d.remove();
});

function digest(file: string): string {
  return createHash('sha256').update(readFileSync(file)).digest('hex');
}

function open(path = ':memory:'): SqliteTaskHubStore {
  const store = new SqliteTaskHubStore({ path, hubName: 'test' });
  stores.push(store);
  return store;
}

function create(id: string, now = 1000, executionId = 'e1'): CreateInstance {
  return {
    instanceId: id,
    executionId,
    name: 'orch',
    version: undefined,
    input: '{"a":1}',
    parentInstanceId: null,
    now,
    startEvent: makeEvent(EventType.ExecutionStarted, now, { Name: 'orch', OrchestrationInstance: { InstanceId: id, ExecutionId: executionId } }),
  };
}

function commit(id: string, over: Partial<EpisodeCommit> = {}): EpisodeCommit {
  return {
    instanceId: id,
    expectedExecutionId: 'e1',
    now: 2000,
    consumed: [],
    appendHistory: [],
    update: { executionId: 'e1', name: 'orch', runtimeStatus: 'Running', output: null, customStatus: null, completedTime: null, failureDetails: null },
    activities: [],
    messages: [],
    children: [],
    cancelTimers: [],
    ...over,
  };
}

describe('SQLite task hub store', () => {
  it('keeps an in-memory hub out of the process: past SQLite\'s page cache it spills to a temporary file that is already deleted', () => {
    const deletedFiles = (): string[] =>
      readdirSync('/proc/self/fd')
        .map((fd) => {
          try {
            return readlinkSync(`/proc/self/fd/${fd}`);
          } catch {
            return '';
          }
        })
        .filter((target) => target.endsWith(' (deleted)'));
    const before = deletedFiles().length;
    const store = open();
    const big = 'x'.repeat(256 * 1024);
    for (let i = 0; i < 100; i++) expect(store.createInstance({ ...create(`big-${i}`), input: JSON.stringify({ big, i }) })).toEqual({ created: true });
    // 25 MB of inputs: more than the 4 MB page cache (HUB_CACHE_KIB), so pages went to a file no one can open.
    expect(deletedFiles().length).toBeGreaterThan(before);
    expect(JSON.parse(store.getInstance('big-7')?.input ?? 'null')).toEqual({ big, i: 7 });
    expect(JSON.parse(store.getInstance('big-99')?.input ?? 'null')).toEqual({ big, i: 99 });
  });

  it('creates an instance with its start message and refuses a second one while it runs', () => {
    const store = open();
    expect(store.createInstance(create('a'))).toEqual({ created: true });
    expect(store.getInstance('a')).toMatchObject({ runtimeStatus: 'Pending', input: '{"a":1}' });
    expect(store.readInbox('a', 1000).map((m) => m.event.EventType)).toEqual([EventType.ExecutionStarted]);
    expect(store.createInstance(create('a'))).toEqual({ created: false, existingStatus: 'Pending' });
  });

  it('commits an episode atomically and reports the work it created', () => {
    const store = open();
    store.createInstance(create('a'));
    const inbox = store.readInbox('a', 1000);
    const result = store.commitEpisode(
      commit('a', {
        consumed: inbox.map((m) => m.seq),
        appendHistory: [makeEvent(EventType.OrchestratorStarted, 2000), makeEvent(EventType.TaskScheduled, 2000, { EventId: 0, Name: 'act' })],
        activities: [{ instanceId: 'a', executionId: 'e1', taskId: 0, name: 'act', input: '1' }],
        messages: [{ instanceId: 'a', executionId: 'e1', visibleAt: 9000, event: makeEvent(EventType.TimerFired, 2000, { TimerId: 1 }) }],
      }),
    );
    expect(result?.activities).toHaveLength(1);
    expect(result?.notify).toEqual([{ instanceId: 'a', visibleAt: 9000 }]);
    expect(store.readInbox('a', 2000)).toEqual([]);
    expect(store.readyInstances(2000)).toEqual({ ready: [], nextVisibleAt: 9000 });
    expect(store.getHistory('a').map((e) => e.EventType)).toEqual([EventType.OrchestratorStarted, EventType.TaskScheduled]);
    expect(store.getInstance('a')?.runtimeStatus).toBe('Running');
  });

  it('writes nothing when the instance was restarted under the episode', () => {
    const store = open();
    store.createInstance(create('a'));
    const result = store.commitEpisode(commit('a', { expectedExecutionId: 'other', appendHistory: [makeEvent(EventType.OrchestratorStarted, 1)] }));
    expect(result).toBeUndefined();
    expect(store.getHistory('a')).toEqual([]);
  });

  it('turns a sub-orchestration id clash into a failure message for the parent', () => {
    const store = open();
    store.createInstance(create('child'));
    store.createInstance(create('parent'));
    const child = create('child', 2000, 'e2');
    child.startEvent.ParentInstance = { Name: 'orch', OrchestrationInstance: { InstanceId: 'parent', ExecutionId: 'e1' }, TaskScheduleId: 4 };
    store.commitEpisode(commit('parent', { children: [child] }));
    const failure = store.readInbox('parent', 5000).find((m) => m.event.EventType === EventType.SubOrchestrationInstanceFailed);
    expect(failure?.event.TaskScheduledId).toBe(4);
    expect(failure?.event.Reason).toContain("'child' already exists");
  });

  it('records each activity result once, even if delivered twice', () => {
    const store = open();
    store.createInstance(create('a'));
    const { activities } = store.commitEpisode(commit('a', { activities: [{ instanceId: 'a', executionId: 'e1', taskId: 0, name: 'x', input: null }] })) ?? { activities: [] };
    const task = activities[0];
    expect(task).toBeDefined();
    const message = { instanceId: 'a', executionId: 'e1', visibleAt: 3000, event: makeEvent(EventType.TaskCompleted, 3000, { TaskScheduledId: 0, Result: '1' }) };
    store.completeActivities([{ taskSeq: task?.seq ?? -1, message }]);
    store.completeActivities([{ taskSeq: task?.seq ?? -1, message }]);
    expect(store.pendingActivities()).toEqual([]);
    expect(store.readInbox('a', 3000).filter((m) => m.event.EventType === EventType.TaskCompleted)).toHaveLength(1);
  });

  it('keeps everything across a reopen of the same file', () => {
    const dir = tempDir('store-');
    dirs.push(dir);
    const path = `${dir.path}/hub.sqlite`;
    const first = open(path);
    first.createInstance(create('a'));
    first.commitEpisode(commit('a', { activities: [{ instanceId: 'a', executionId: 'e1', taskId: 0, name: 'x', input: '"v"' }] }));
    first.close();
    const second = open(path);
    expect(second.pendingActivities()).toMatchObject([{ instanceId: 'a', taskId: 0, name: 'x', input: '"v"' }]);
    expect(second.readyInstances(1000).ready).toEqual(['a']);
  });

  it('pages queries with continuation tokens and purges by filter', () => {
    const store = open();
    for (let i = 0; i < 5; i++) store.createInstance(create(`q${i}`, 1000 + i));
    const first = store.queryInstances({ top: 2 });
    expect(first.instances.map((r) => r.instanceId)).toEqual(['q0', 'q1']);
    const second = store.queryInstances({ top: 2, ...(first.continuationToken ? { continuationToken: first.continuationToken } : {}) });
    expect(second.instances.map((r) => r.instanceId)).toEqual(['q2', 'q3']);
    expect(store.queryInstances({ runtimeStatus: ['Completed'] }).instances).toEqual([]);
    expect(store.purgeInstances({ createdTimeFrom: 0 })).toBe(0);
    expect(store.purgeInstances({ createdTimeFrom: 0, runtimeStatus: ['Pending'] })).toBe(5);
    expect(store.getInstance('q0')).toBeUndefined();
  });

  describe('a damaged task hub file', () => {
    /** A hub file with some history in it, closed cleanly (so everything is in the main file). */
    function filledHub(): string {
      const dir = tempDir('store-damage-');
      dirs.push(dir);
      const path = `${dir.path}/hub.sqlite`;
      const store = new SqliteTaskHubStore({ path, hubName: 'test' });
      for (let i = 0; i < 200; i++) {
        store.createInstance({ ...create(`i${i}`), input: JSON.stringify({ text: 'x'.repeat(500), i }) });
      }
      store.close();
      expect(existsSync(`${path}-wal`)).toBe(false);
      return path;
    }

    const refusal = (path: string): RegExp => new RegExp(`durable task hub ${path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} is damaged`);

    it('opens an undamaged one with everything in it', () => {
      const path = filledHub();
      expect(open(path).getInstance('i199')).toMatchObject({ runtimeStatus: 'Pending' });
    });

    it('refuses a truncated file, naming it, instead of starting on it', () => {
      const path = filledHub();
      truncateSync(path, Math.floor(statSync(path).size / 2));
      expect(() => open(path)).toThrow(refusal(path));
    });

    it('refuses a truncated file whose newest pages are in the WAL (SQLite opens it and fails later, on the missing pages)', () => {
      const path = filledHub();
      const store = open(path);
      store.createInstance(create('late'));
      // The files as a crash would leave them: the newest commit only in the WAL.
      const copy = `${path}.copy`;
      copyFileSync(path, copy);
      copyFileSync(`${path}-wal`, `${copy}-wal`);
      truncateSync(copy, Math.floor(statSync(copy).size / 2));
      const wal = digest(`${copy}-wal`);
      expect(() => open(copy)).toThrow(refusal(copy));
      expect(digest(`${copy}-wal`)).toBe(wal);
    });

    /** The hub and WAL as a crash leaves them: the newest commit only in the WAL, at `copy`. */
    function crashedHub(): string {
      const path = filledHub();
      const store = open(path);
      store.createInstance(create('late'));
      const copy = `${path}.crashed`;
      copyFileSync(path, copy);
      copyFileSync(`${path}-wal`, `${copy}-wal`);
      expect(statSync(`${copy}-wal`).size).toBeGreaterThan(0);
      return copy;
    }

    it('refuses a file truncated to nothing next to a WAL with its newest commits, and leaves the WAL as it was', () => {
      const copy = crashedHub();
      truncateSync(copy, 0);
      const wal = digest(`${copy}-wal`);
      expect(() => open(copy)).toThrow(new RegExp(`${refusal(copy).source} \\(the file is empty; .*-wal holds \\d+ bytes`));
      // SQLite, had it opened the empty file, would have read a new hub and deleted the WAL.
      expect(digest(`${copy}-wal`)).toBe(wal);
      expect(statSync(copy).size).toBe(0);
    });

    it('refuses a missing file whose WAL or shared-memory file is there, and builds no new hub in its place', () => {
      const copy = crashedHub();
      const walCopy = `${copy}-wal`;
      const gone = `${copy}.gone`;
      copyFileSync(walCopy, `${gone}-wal`);
      expect(() => open(gone)).toThrow(`${gone} is damaged (the file is missing while ${gone}-wal is there)`);
      expect(existsSync(gone)).toBe(false);
      expect(digest(`${gone}-wal`)).toBe(digest(walCopy));
      const shmOnly = `${copy}.shm-only`;
      writeFileSync(`${shmOnly}-shm`, Buffer.alloc(32_768));
      expect(() => open(shmOnly)).toThrow(`${shmOnly} is damaged (the file is missing while ${shmOnly}-shm is there)`);
      expect(existsSync(shmOnly)).toBe(false);
    });

    it('refuses a file cut to its first bytes and one cut to nothing (SQLite would read that as a new, empty hub)', () => {
      const path = filledHub();
      truncateSync(path, 50);
      expect(() => open(path)).toThrow(refusal(path));
      truncateSync(path, 0);
      expect(() => open(path)).toThrow(/is damaged \(the file is empty\)/);
      expect(statSync(path).size).toBe(0);
    });

    it('refuses a file that is not a database', () => {
      const path = filledHub();
      writeFileSync(path, 'not a database, just text that someone wrote over it'.repeat(100));
      expect(() => open(path)).toThrow(refusal(path));
    });

    it('builds a new hub under another name and renames it into place, so a crash while creating it leaves no hub file', () => {
      const dir = tempDir('store-new-');
      dirs.push(dir);
      // What a crash while building it would have left; the next start builds it again.
      const fresh = `${dir.path}/durable/other.sqlite`;
      mkdirSync(`${dir.path}/durable`);
      writeFileSync(`${fresh}.new`, 'left over from a crash');
      const store = open(fresh);
      expect(store.createInstance(create('a'))).toEqual({ created: true });
      expect(existsSync(`${fresh}.new`)).toBe(false);
      expect(statSync(fresh).size).toBeGreaterThan(0);
    });
  });
});
