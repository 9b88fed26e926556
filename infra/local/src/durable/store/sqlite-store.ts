import { existsSync, mkdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { FnHostError, describeError } from '../../errors.js';
import { EventType, type HistoryEvent, type RuntimeStatus, TERMINAL_STATUSES, makeEvent } from '../history.js';
import type {
  ActivityTask,
  CommitResult,
  Delivery,
  CreateInstance,
  CreateResult,
  EntityCommit,
  EpisodeCommit,
  InboxMessage,
  InstancePage,
  InstanceQuery,
  InstanceRecord,
  NewMessage,
  TaskHubStore,
} from './task-hub-store.js';

/**
 * The task hub in one SQLite database (WAL mode), shaped like the Durable Task SQL provider:
 * instances, their history, their inboxes and the activity queue. Each episode is one transaction,
 * so a kill at any moment leaves either the whole episode or none of it.
 */

interface InstanceRow {
  instance_id: string;
  execution_id: string;
  name: string;
  version: string | null;
  runtime_status: RuntimeStatus;
  input: string | null;
  output: string | null;
  custom_status: string | null;
  created_time: number;
  last_updated_time: number;
  completed_time: number | null;
  parent_instance_id: string | null;
  failure_details: string | null;
  is_entity: number;
  entity_exists: number;
  entity_state: string | null;
  locked_by: string | null;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS instances (
  instance_id TEXT PRIMARY KEY,
  execution_id TEXT NOT NULL,
  name TEXT NOT NULL,
  version TEXT,
  runtime_status TEXT NOT NULL,
  input TEXT,
  output TEXT,
  custom_status TEXT,
  created_time INTEGER NOT NULL,
  last_updated_time INTEGER NOT NULL,
  completed_time INTEGER,
  parent_instance_id TEXT,
  failure_details TEXT,
  is_entity INTEGER NOT NULL DEFAULT 0,
  entity_exists INTEGER NOT NULL DEFAULT 0,
  entity_state TEXT,
  locked_by TEXT
);
CREATE INDEX IF NOT EXISTS ix_instances_created ON instances(created_time, instance_id);
CREATE TABLE IF NOT EXISTS history (
  instance_id TEXT NOT NULL,
  seq INTEGER NOT NULL,
  event TEXT NOT NULL,
  PRIMARY KEY (instance_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS inbox (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  instance_id TEXT NOT NULL,
  execution_id TEXT,
  visible_at INTEGER NOT NULL,
  event_type INTEGER NOT NULL,
  timer_id INTEGER,
  event TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_inbox_instance ON inbox(instance_id, visible_at);
CREATE INDEX IF NOT EXISTS ix_inbox_visible ON inbox(visible_at);
CREATE TABLE IF NOT EXISTS activities (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  instance_id TEXT NOT NULL,
  execution_id TEXT NOT NULL,
  task_id INTEGER NOT NULL,
  name TEXT NOT NULL,
  input TEXT
);
CREATE INDEX IF NOT EXISTS ix_activities_instance ON activities(instance_id);
`;

function toRecord(row: InstanceRow): InstanceRecord {
  return {
    instanceId: row.instance_id,
    executionId: row.execution_id,
    name: row.name,
    version: row.version ?? undefined,
    runtimeStatus: row.runtime_status,
    input: row.input,
    output: row.output,
    customStatus: row.custom_status,
    createdTime: row.created_time,
    lastUpdatedTime: row.last_updated_time,
    completedTime: row.completed_time,
    parentInstanceId: row.parent_instance_id,
    failureDetails: row.failure_details ? (JSON.parse(row.failure_details) as InstanceRecord['failureDetails']) : null,
    isEntity: row.is_entity === 1,
    entityExists: row.entity_exists === 1,
    entityState: row.entity_state,
    lockedBy: row.locked_by,
  };
}

function encodeToken(row: { created_time: number; instance_id: string }): string {
  return Buffer.from(JSON.stringify([row.created_time, row.instance_id])).toString('base64url');
}

function decodeToken(token: string): [number, string] | undefined {
  try {
    const value = JSON.parse(Buffer.from(token, 'base64url').toString('utf8')) as unknown;
    if (Array.isArray(value) && typeof value[0] === 'number' && typeof value[1] === 'string') {
      return [value[0], value[1]];
    }
  } catch {
    // fall through: an unreadable token is treated as "start from the beginning"
  }
  return undefined;
}

/** Entity names come from their scheduler id `@name@key`. */
function entityNameOf(schedulerId: string): string {
  const at = schedulerId.indexOf('@', 1);
  return at > 0 ? schedulerId.substring(1, at) : schedulerId;
}

/**
 * The hub's page cache, in KiB. better-sqlite3 builds SQLite with a 16 MB default, which a hub fills
 * as a long job's histories grow: RSS then climbs by ~12 MB between a job of 10,000 files and one of
 * 100,000 (bench (c)). Pages past the cache are read back through the OS's file cache (a file hub's
 * own file, or the temporary file of an in-memory hub), which the bench shows costs nothing measurable.
 */
const HUB_CACHE_KIB = 4096;

function openHub(db: Database.Database): Database.Database {
  db.pragma(`cache_size = -${HUB_CACHE_KIB}`);
  db.pragma('journal_mode = WAL');
  // NORMAL in WAL mode survives a process crash (kill -9); an OS crash or power loss can roll back
  // the commits since the last checkpoint (the WAL is synced only then), never corrupt the file.
  db.pragma('synchronous = NORMAL');
  db.pragma('busy_timeout = 5000');
  db.exec(SCHEMA);
  return db;
}

/** A task hub in a private temporary database: no durability is wanted, so no syncs and an in-memory journal. */
function openEphemeralHub(): Database.Database {
  const db = new Database('');
  db.pragma(`cache_size = -${HUB_CACHE_KIB}`);
  db.pragma('journal_mode = MEMORY');
  db.pragma('synchronous = OFF');
  db.exec(SCHEMA);
  return db;
}

/**
 * Opens the task hub file, refusing one that is damaged. A new hub is built under another name and
 * renamed into place, so a hub file that exists was complete once: an empty or truncated one is
 * damage (SQLite would read an empty file as a new, empty hub, and a truncated one fails only when
 * a query reaches the missing pages), and fnhost must not start on it as if nothing had happened.
 * Its `-wal` may hold the newest commits, so nothing here may let SQLite discard or checkpoint it
 * before the file has passed: SQLite deletes the WAL of an empty file when it closes it (even
 * read-only), and a read-write connection that closes checkpoints into whatever file it has.
 */
function openHubFile(path: string): Database.Database {
  mkdirSync(dirname(path), { recursive: true });
  const wal = `${path}-wal`;
  const shm = `${path}-shm`;
  const damaged = (problem: string, cause?: unknown): FnHostError =>
    new FnHostError(
      'ERR_CONFIG',
      `The durable task hub ${path} is damaged (${problem}). fnhost will not start on it: the state of ` +
        `orchestrations and activities in it would be lost or wrong. Restore it from a backup, or move it ` +
        `(with any ${path}-wal and ${path}-shm) away to start with an empty task hub.`,
      { details: { file: path }, ...(cause === undefined ? {} : { cause }) },
    );
  if (!existsSync(path)) {
    // SQLite removes both when it closes a hub cleanly, and writes them only next to the hub: left
    // without it they are what remains of a hub that was deleted or only partly restored, and a new
    // hub here would drop them (SQLite replays no WAL into a file it creates).
    const left = [wal, shm].filter((f) => existsSync(f));
    if (left.length > 0) throw damaged(`the file is missing while ${left.join(' and ')} ${left.length > 1 ? 'are' : 'is'} there`);
    const building = `${path}.new`;
    for (const suffix of ['', '-wal', '-shm']) rmSync(`${building}${suffix}`, { force: true });
    openHub(new Database(building)).close();
    renameSync(building, path);
  }
  // Whatever the WAL holds: an empty file at the hub's name never is a hub in creation.
  if (statSync(path).size === 0) {
    throw damaged(existsSync(wal) && statSync(wal).size > 0 ? `the file is empty; ${wal} holds ${statSync(wal).size} bytes of its newest commits` : 'the file is empty');
  }
  // The check runs on a read-only connection: closing it never checkpoints, so a hub that fails
  // keeps its WAL as it was.
  let check: Database.Database | undefined;
  try {
    check = new Database(path, { readonly: true, fileMustExist: true });
    const lines = (check.pragma('quick_check') as { quick_check: string }[]).map((r) => r.quick_check);
    if (lines.length !== 1 || lines[0] !== 'ok') {
      const shown = lines.join('\n').split('\n').slice(0, 3).join('; ');
      throw damaged(`SQLite's quick_check: ${shown}`);
    }
  } catch (err) {
    if (err instanceof FnHostError) throw err;
    const code = (err as { code?: unknown }).code;
    if (code === 'SQLITE_CORRUPT' || code === 'SQLITE_NOTADB') throw damaged(`SQLite: ${describeError(err)}`, err);
    throw err;
  } finally {
    check?.close();
  }
  return openHub(new Database(path));
}

const TERMINAL_SQL = TERMINAL_STATUSES.map((s) => `'${s}'`).join(',');

export class SqliteTaskHubStore implements TaskHubStore {
  readonly hubName: string;
  readonly #db: Database.Database;
  readonly #stmts;

  /**
   * Opens (or creates) the task hub database at `path`. ':memory:' makes a hub that nothing
   * outlives: SQLite's private temporary database (an empty file name), whose file is unlinked as
   * it is opened, so it is gone when the process ends, even by SIGKILL. Its pages live in the
   * operating system's cache rather than in the host's heap: a hub in SQLite `:memory:` held every
   * history of a long job inside the host process (a 100,000-file job's host peaked ~100 MB
   * higher than a 10,000-file job's).
   */
  constructor(options: { path: string; hubName: string }) {
    this.hubName = options.hubName;
    this.#db = options.path === ':memory:' ? openEphemeralHub() : openHubFile(options.path);
    const db = this.#db;
    this.#stmts = {
      getInstance: db.prepare<[string], InstanceRow>('SELECT * FROM instances WHERE instance_id = ?'),
      statusOf: db.prepare<[string], { runtime_status: RuntimeStatus; is_entity: number }>(
        'SELECT runtime_status, is_entity FROM instances WHERE instance_id = ?',
      ),
      exists: db.prepare<[string], { one: number }>('SELECT 1 AS one FROM instances WHERE instance_id = ?'),
      deleteInstance: db.prepare('DELETE FROM instances WHERE instance_id = ?'),
      deleteHistory: db.prepare('DELETE FROM history WHERE instance_id = ?'),
      deleteInbox: db.prepare('DELETE FROM inbox WHERE instance_id = ?'),
      deleteActivities: db.prepare('DELETE FROM activities WHERE instance_id = ?'),
      upsertInstance: db.prepare(
        `INSERT OR REPLACE INTO instances (instance_id, execution_id, name, version, runtime_status, input, output,
           custom_status, created_time, last_updated_time, completed_time, parent_instance_id, failure_details,
           is_entity, entity_exists, entity_state, locked_by)
         VALUES (@instance_id, @execution_id, @name, @version, @runtime_status, @input, NULL, NULL, @now, @now, NULL,
           @parent_instance_id, NULL, @is_entity, 0, NULL, NULL)`,
      ),
      insertInbox: db.prepare(
        'INSERT INTO inbox (instance_id, execution_id, visible_at, event_type, timer_id, event) VALUES (?, ?, ?, ?, ?, ?)',
      ),
      readInbox: db.prepare<[string, number], { seq: number; instance_id: string; execution_id: string | null; visible_at: number; event: string }>(
        'SELECT seq, instance_id, execution_id, visible_at, event FROM inbox WHERE instance_id = ? AND visible_at <= ? ORDER BY seq',
      ),
      deleteInboxSeq: db.prepare('DELETE FROM inbox WHERE seq = ?'),
      deleteTimer: db.prepare(
        'DELETE FROM inbox WHERE instance_id = ? AND execution_id = ? AND event_type = 11 AND timer_id = ?',
      ),
      readyInstances: db.prepare<[number], { instance_id: string }>(
        'SELECT DISTINCT instance_id FROM inbox WHERE visible_at <= ?',
      ),
      nextVisible: db.prepare<[number], { next: number | null }>('SELECT MIN(visible_at) AS next FROM inbox WHERE visible_at > ?'),
      history: db.prepare<[string], { event: string }>('SELECT event FROM history WHERE instance_id = ? ORDER BY seq'),
      historyNext: db.prepare<[string], { next: number }>(
        'SELECT COALESCE(MAX(seq) + 1, 0) AS next FROM history WHERE instance_id = ?',
      ),
      insertHistory: db.prepare('INSERT INTO history (instance_id, seq, event) VALUES (?, ?, ?)'),
      updateInstance: db.prepare(
        `UPDATE instances SET execution_id = @execution_id, name = @name, runtime_status = @runtime_status,
           input = COALESCE(@input, input), output = @output, custom_status = @custom_status,
           last_updated_time = @now, completed_time = @completed_time, failure_details = @failure_details
         WHERE instance_id = @instance_id`,
      ),
      replaceInput: db.prepare('UPDATE instances SET input = ? WHERE instance_id = ?'),
      insertActivity: db.prepare(
        'INSERT INTO activities (instance_id, execution_id, task_id, name, input) VALUES (?, ?, ?, ?, ?)',
      ),
      pendingActivities: db.prepare<[], { seq: number; instance_id: string; execution_id: string; task_id: number; name: string; input: string | null }>(
        'SELECT * FROM activities ORDER BY seq',
      ),
      executionOf: db.prepare<[string], { execution_id: string }>('SELECT execution_id FROM instances WHERE instance_id = ?'),
      deleteActivity: db.prepare('DELETE FROM activities WHERE seq = ?'),
      createEntity: db.prepare(
        `INSERT OR IGNORE INTO instances (instance_id, execution_id, name, version, runtime_status, input, output,
           custom_status, created_time, last_updated_time, completed_time, parent_instance_id, failure_details,
           is_entity, entity_exists, entity_state, locked_by)
         VALUES (?, '', ?, NULL, 'Running', NULL, NULL, NULL, ?, ?, NULL, NULL, NULL, 1, 0, NULL, NULL)`,
      ),
      updateEntity: db.prepare(
        `UPDATE instances SET entity_exists = ?, entity_state = ?, locked_by = ?, last_updated_time = ? WHERE instance_id = ?`,
      ),
    };
  }

  createInstance(request: CreateInstance): CreateResult {
    return this.#db.transaction(() => this.#create(request, []))();
  }

  #create(request: CreateInstance, notify: Delivery[]): CreateResult {
    const existing = this.#stmts.statusOf.get(request.instanceId);
    if (existing && !request.force && !TERMINAL_STATUSES.includes(existing.runtime_status)) {
      return { created: false, existingStatus: existing.runtime_status };
    }
    if (existing) this.#deleteAll(request.instanceId);
    this.#stmts.upsertInstance.run({
      instance_id: request.instanceId,
      execution_id: request.executionId,
      name: request.name,
      version: request.version ?? null,
      runtime_status: 'Pending',
      input: request.input,
      now: request.now,
      parent_instance_id: request.parentInstanceId,
      is_entity: 0,
    });
    this.#insertMessage(
      {
        instanceId: request.instanceId,
        executionId: request.executionId,
        visibleAt: request.now,
        event: request.startEvent,
      },
      notify,
    );
    return { created: true };
  }

  #deleteAll(instanceId: string): void {
    this.#stmts.deleteHistory.run(instanceId);
    this.#stmts.deleteInbox.run(instanceId);
    this.#stmts.deleteActivities.run(instanceId);
    this.#stmts.deleteInstance.run(instanceId);
  }

  #insertMessage(message: NewMessage, notify?: Delivery[]): number {
    const e = message.event;
    notify?.push({ instanceId: message.instanceId, visibleAt: message.visibleAt });
    const info = this.#stmts.insertInbox.run(
      message.instanceId,
      message.executionId,
      message.visibleAt,
      e.EventType,
      e.EventType === EventType.TimerFired ? (e.TimerId ?? null) : null,
      JSON.stringify(e),
    );
    return Number(info.lastInsertRowid);
  }

  getInstance(instanceId: string): InstanceRecord | undefined {
    const row = this.#stmts.getInstance.get(instanceId);
    return row ? toRecord(row) : undefined;
  }

  queryInstances(query: InstanceQuery): InstancePage {
    const where: string[] = [];
    const params: (string | number)[] = [];
    if (!query.includeEntities) where.push('is_entity = 0');
    if (query.createdTimeFrom !== undefined) {
      where.push('created_time >= ?');
      params.push(query.createdTimeFrom);
    }
    if (query.createdTimeTo !== undefined) {
      where.push('created_time <= ?');
      params.push(query.createdTimeTo);
    }
    if (query.runtimeStatus && query.runtimeStatus.length > 0) {
      where.push(`runtime_status IN (${query.runtimeStatus.map(() => '?').join(',')})`);
      params.push(...query.runtimeStatus);
    }
    if (query.instanceIdPrefix) {
      where.push("instance_id >= ? AND instance_id < ?");
      params.push(query.instanceIdPrefix, `${query.instanceIdPrefix}\uffff`);
    }
    const after = query.continuationToken ? decodeToken(query.continuationToken) : undefined;
    if (after) {
      where.push('(created_time > ? OR (created_time = ? AND instance_id > ?))');
      params.push(after[0], after[0], after[1]);
    }
    const limit = query.top && query.top > 0 ? query.top : 100;
    const sql = `SELECT * FROM instances ${where.length ? `WHERE ${where.join(' AND ')}` : ''}
      ORDER BY created_time, instance_id LIMIT ${limit + 1}`;
    const rows = this.#db.prepare<(string | number)[], InstanceRow>(sql).all(...params);
    const page = rows.slice(0, limit);
    const last = page[page.length - 1];
    return {
      instances: page.map(toRecord),
      continuationToken: rows.length > limit && last ? encodeToken(last) : undefined,
    };
  }

  getHistory(instanceId: string): HistoryEvent[] {
    return this.#stmts.history.all(instanceId).map((r) => JSON.parse(r.event) as HistoryEvent);
  }

  enqueue(message: NewMessage): { seq: number } | undefined {
    return this.#db.transaction(() => {
      if (!this.#stmts.exists.get(message.instanceId)) return undefined;
      return { seq: this.#insertMessage(message) };
    })();
  }

  enqueueForEntity(message: NewMessage, now: number): { seq: number } {
    return this.#db.transaction(() => {
      this.#stmts.createEntity.run(message.instanceId, entityNameOf(message.instanceId), now, now);
      return { seq: this.#insertMessage(message) };
    })();
  }

  readInbox(instanceId: string, now: number): InboxMessage[] {
    return this.#stmts.readInbox.all(instanceId, now).map((r) => ({
      seq: r.seq,
      instanceId: r.instance_id,
      executionId: r.execution_id,
      visibleAt: r.visible_at,
      event: JSON.parse(r.event) as HistoryEvent,
    }));
  }

  readyInstances(now: number): { ready: string[]; nextVisibleAt: number | undefined } {
    const ready = this.#stmts.readyInstances.all(now).map((r) => r.instance_id);
    const next = this.#stmts.nextVisible.get(now)?.next ?? undefined;
    return { ready, nextVisibleAt: next ?? undefined };
  }

  commitEpisode(commit: EpisodeCommit): CommitResult | undefined {
    const s = this.#stmts;
    const notify: Delivery[] = [];
    const activities: ActivityTask[] = [];
    const applied = this.#db.transaction(() => {
      if (s.executionOf.get(commit.instanceId)?.execution_id !== commit.expectedExecutionId) return false;
      for (const seq of commit.consumed) s.deleteInboxSeq.run(seq);
      let next: number;
      if (commit.replaceHistory) {
        s.deleteHistory.run(commit.instanceId);
        next = 0;
        for (const e of commit.replaceHistory) s.insertHistory.run(commit.instanceId, next++, JSON.stringify(e));
      } else {
        next = s.historyNext.get(commit.instanceId)?.next ?? 0;
      }
      const json = commit.appendHistoryJson ?? commit.appendHistory.map((e) => JSON.stringify(e));
      for (const text of json) s.insertHistory.run(commit.instanceId, next++, text);
      const u = commit.update;
      s.updateInstance.run({
        instance_id: commit.instanceId,
        execution_id: u.executionId,
        name: u.name,
        runtime_status: u.runtimeStatus,
        input: u.input === undefined ? null : u.input,
        output: u.output,
        custom_status: u.customStatus,
        now: commit.now,
        completed_time: u.completedTime,
        failure_details: u.failureDetails ? JSON.stringify(u.failureDetails) : null,
      });
      if (u.input !== undefined) s.replaceInput.run(u.input, commit.instanceId);
      for (const a of commit.activities) {
        const info = s.insertActivity.run(a.instanceId, a.executionId, a.taskId, a.name, a.input);
        activities.push({ ...a, seq: Number(info.lastInsertRowid) });
      }
      for (const t of commit.cancelTimers) s.deleteTimer.run(commit.instanceId, t.executionId, t.timerId);
      for (const child of commit.children) {
        const result = this.#create(child, notify);
        if (!result.created) {
          const parent = child.startEvent.ParentInstance;
          if (parent) {
            this.#insertMessage(
              {
              instanceId: commit.instanceId,
              executionId: u.executionId,
              visibleAt: commit.now,
              event: makeEvent(EventType.SubOrchestrationInstanceFailed, commit.now, {
                TaskScheduledId: parent.TaskScheduleId,
                Reason: `An orchestration with instance ID '${child.instanceId}' already exists and is ${String(result.existingStatus)}.`,
                Details: '',
              }),
              },
              notify,
            );
          }
        }
      }
      for (const m of commit.messages) this.#deliver(m, commit.now, notify);
      return true;
    })();
    return applied ? { activities, notify } : undefined;
  }

  /** Messages to entities create the entity; messages to missing orchestrations are dropped. */
  #deliver(message: NewMessage, now: number, notify: Delivery[]): void {
    if (message.instanceId.startsWith('@')) {
      this.#stmts.createEntity.run(message.instanceId, entityNameOf(message.instanceId), now, now);
    } else if (!this.#stmts.exists.get(message.instanceId)) {
      return;
    }
    this.#insertMessage(message, notify);
  }

  commitEntity(commit: EntityCommit): Delivery[] {
    const s = this.#stmts;
    const notify: Delivery[] = [];
    this.#db.transaction(() => {
      for (const seq of commit.consumed) s.deleteInboxSeq.run(seq);
      s.updateEntity.run(commit.exists ? 1 : 0, commit.state, commit.lockedBy, commit.now, commit.instanceId);
      for (const m of commit.messages) this.#deliver(m, commit.now, notify);
    })();
    return notify;
  }

  pendingActivities(): ActivityTask[] {
    return this.#stmts.pendingActivities.all().map((r) => ({
      seq: r.seq,
      instanceId: r.instance_id,
      executionId: r.execution_id,
      taskId: r.task_id,
      name: r.name,
      input: r.input,
    }));
  }

  deleteMessages(seqs: number[]): void {
    if (seqs.length === 0) return;
    this.#db.transaction(() => {
      for (const seq of seqs) this.#stmts.deleteInboxSeq.run(seq);
    })();
  }

  completeActivities(results: { taskSeq: number; message: NewMessage }[]): Delivery[] {
    const notify: Delivery[] = [];
    if (results.length === 0) return notify;
    this.#db.transaction(() => {
      for (const r of results) {
        const deleted = this.#stmts.deleteActivity.run(r.taskSeq).changes;
        // A task that is gone was purged with its instance; its result has nowhere to go.
        if (deleted === 0) continue;
        if (this.#stmts.exists.get(r.message.instanceId)) this.#insertMessage(r.message, notify);
      }
    })();
    return notify;
  }

  purgeInstance(instanceId: string): number {
    return this.#db.transaction(() => {
      if (!this.#stmts.exists.get(instanceId)) return 0;
      this.#deleteAll(instanceId);
      return 1;
    })();
  }

  purgeInstances(filter: { createdTimeFrom?: number; createdTimeTo?: number; runtimeStatus?: RuntimeStatus[] }): number {
    return this.#db.transaction(() => {
      const where = ['is_entity = 0'];
      const params: (string | number)[] = [];
      if (filter.createdTimeFrom !== undefined) {
        where.push('created_time >= ?');
        params.push(filter.createdTimeFrom);
      }
      if (filter.createdTimeTo !== undefined) {
        where.push('created_time <= ?');
        params.push(filter.createdTimeTo);
      }
      if (filter.runtimeStatus && filter.runtimeStatus.length > 0) {
        where.push(`runtime_status IN (${filter.runtimeStatus.map(() => '?').join(',')})`);
        params.push(...filter.runtimeStatus);
      } else {
        where.push(`runtime_status IN (${TERMINAL_SQL})`);
      }
      const ids = this.#db
        .prepare<(string | number)[], { instance_id: string }>(`SELECT instance_id FROM instances WHERE ${where.join(' AND ')}`)
        .all(...params);
      for (const { instance_id } of ids) this.#deleteAll(instance_id);
      return ids.length;
    })();
  }

  close(): void {
    if (this.#db.open) this.#db.close();
  }
}
