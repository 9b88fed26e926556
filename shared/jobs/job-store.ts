import { createHash } from 'node:crypto';
import type { TableClient, TransactionAction } from '@azure/data-tables';
import type { AppConfig } from '../config.js';
import { BatchError } from '../errors.js';
import { type CloudEvent, type RecordSnapshot, type WrittenRecord, buildJobEvent, isTransition, publishedStatus } from '../events/job-events.js';
import type { JobStatus } from '../schemas/jobs.js';
import { type StorageAccount, isConflict, isNotFound, storageAccount } from '../storage/clients.js';
import { type Job, type JobCounts, type JobSpec, type JobState, MODEL_STEP, type StepOutput, type StepState, addCounts, emptyCounts } from './types.js';

interface JobEntity {
  partitionKey: string;
  rowKey: string;
  spec: string;
  state: string;
  status: string;
  endpoint: string;
  createdAt: string;
  etag?: string;
}

interface LaneEntity {
  partitionKey: string;
  rowKey: string;
  counts: string;
}

/** Row keys of a job's lane progress rows sort between these. */
const LANE_FIRST = 'lane-';
const LANE_AFTER = 'lane.';

/** Row keys of a job's step records sort between these (beside `job` and the lanes' rows). */
const STEP_FIRST = 'step:';
const STEP_AFTER = 'step;';

interface StepEntity {
  partitionKey: string;
  rowKey: string;
  state: string;
  status: string;
  etag?: string;
}

/** The row key prefix of an engine run's lane rows: the job's own, or a step's. */
function laneRows(step: string | undefined): { first: string; after: string } {
  return step === undefined ? { first: LANE_FIRST, after: LANE_AFTER } : { first: `steplane:${step}:`, after: `steplane:${step};` };
}

interface IndexEntity {
  partitionKey: string;
  rowKey: string;
  jobId: string;
  /** The invoker's object id (lowercase) and tenant, for `?invoked_by=` (absent for jobs no principal invoked). */
  invokerId?: string;
  invokerTenant?: string;
}

/** Jobs of one principal: its object id (and tenant, when known); an empty id matches no job. */
export interface InvokerFilter {
  id: string;
  tenant: string | undefined;
}

interface IdempotencyEntity {
  partitionKey: string;
  rowKey: string;
  jobId: string;
  requestHash: string;
}

interface OutputClaimEntity {
  partitionKey: string;
  rowKey: string;
  /** The folder claimed (see {@link JobStore.claimOutput}), kept for people reading the table. */
  folder: string;
  jobId: string;
  claimedAt: string;
  etag?: string;
}

/** An output folder's current claim. */
export interface OutputClaim {
  jobId: string;
  claimedAt: string;
  etag: string;
}

/** The idempotency keys and job index of an endpoint: its name and the incarnation (see EndpointDoc.uid). */
export interface EndpointScope {
  name: string;
  uid: string;
}

/**
 * The partition of an endpoint's keys and index rows. An endpoint deleted and created again under
 * the same name is another endpoint: its jobs and idempotency keys are not the old one's.
 */
function scopeKey(scope: EndpointScope): string {
  return scope.uid ? `${scope.name}|${scope.uid}` : scope.name;
}

/**
 * The job's events (see shared/events/): a cursor row (`events`: the last transition's sequence
 * number and status) and one outbox row per transition not yet published (`event:{seq}`), in the
 * job's partition, so each is written in the same entity-group transaction as the change it tells.
 */
const EVENTS_CURSOR = 'events';
const EVENT_FIRST = 'event:';
const EVENT_AFTER = 'event;';

function eventRow(seq: number): string {
  return `${EVENT_FIRST}${String(seq).padStart(10, '0')}`;
}

interface EventsCursorEntity {
  partitionKey: string;
  rowKey: string;
  seq: number;
  status: string;
  etag?: string;
}

interface OutboxEntity {
  partitionKey: string;
  rowKey: string;
  event: string;
  recordedAt: string;
}

/** A transition recorded and not yet published. */
export interface RecordedEvent {
  seq: number;
  event: CloudEvent;
  recordedAt: string;
}

/** Jobs whose outbox may hold events: one row each in this partition of the `jobevents` table. */
const PENDING = 'pending';

/** Job events, when they are on: the events' `source`. */
export interface JobStoreEvents {
  source: string;
}

function claimKey(folder: string): string {
  return createHash('sha256').update(folder).digest('hex');
}
const MAX_TIME = 9_999_999_999_999;

/** The job index's partition of every job (an endpoint's is its name, which has no `*`). */
const ALL_JOBS = '*all';
/** The job index's bookkeeping rows (whether the all-jobs partition has been filled: see indexAllJobs). */
const INDEX_META = '*meta';
/** The most index rows one listing reads (so a narrow filter over many jobs answers in bounded time). */
const MAX_INDEX_SCAN = 500;

function odata(value: string): string {
  return `'${value.replace(/'/g, "''")}'`;
}

/** Where a listing goes on: at (or after) a row key of the index. */
interface IndexCursor {
  key: string;
  after: boolean;
}

/**
 * A continuation token: base64 JSON with the partition and the row to go on from, in the shape of
 * @azure/data-tables' own tokens (`nextPartitionKey`, `nextRowKey`), which earlier versions of
 * this API gave out and are still accepted; `afterRowKey` goes on after that row.
 */
function continuationOf(partition: string, cursor: IndexCursor): string {
  const body = cursor.after ? { nextPartitionKey: partition, afterRowKey: cursor.key } : { nextPartitionKey: partition, nextRowKey: cursor.key };
  return Buffer.from(JSON.stringify(body), 'utf8').toString('base64');
}

/** The cursor in a token this API gave out for the same listing; anything else is the caller's mistake (400). */
function parseContinuation(token: string, partition: string): IndexCursor {
  let value: { nextPartitionKey?: unknown; nextRowKey?: unknown; afterRowKey?: unknown } | undefined;
  try {
    const parsed: unknown = JSON.parse(Buffer.from(token, 'base64').toString('utf8'));
    if (typeof parsed === 'object' && parsed !== null) value = parsed;
  } catch {
    value = undefined;
  }
  const key = value?.afterRowKey ?? value?.nextRowKey;
  if (value?.nextPartitionKey !== partition || typeof key !== 'string') {
    throw new BatchError('validation_failed', 'continuation: not a continuation token of this listing; use the `next_link` of the previous page.', {
      issues: [{ field: 'continuation', message: 'not a continuation token from a previous page of this listing' }],
    });
  }
  return { key, after: value.afterRowKey !== undefined };
}

/** A completed step run that a later one with the same fingerprint may reuse. */
export interface ReusableRun {
  job: string;
  step: string;
  outputs: Record<string, StepOutput>;
  /** Each output's content key when the run completed (see folderContent): reuse needs it unchanged. */
  contents?: Record<string, string> | undefined;
  counts?: JobCounts | undefined;
  columns?: string[] | undefined;
}

function storageError(action: string, err: unknown): BatchError {
  return new BatchError('storage_failed', `Storage failed while ${action}.`, { cause: err });
}

function idempotencyRow(key: string): string {
  return createHash('sha256').update(key).digest('hex');
}

function scopeOf(spec: JobSpec): EndpointScope {
  return { name: spec.endpoint, uid: spec.endpoint_uid ?? '' };
}

/** Row key that sorts newest first. */
function newestFirstKey(createdAt: string, jobId: string): string {
  return `${String(MAX_TIME - Date.parse(createdAt)).padStart(13, '0')}_${jobId}`;
}

/**
 * Job records in Table storage: the immutable spec and the moving state of each job, an index of
 * jobs per endpoint (newest first), and idempotency keys of invocations.
 */
export class JobStore {
  readonly #account: StorageAccount;
  readonly #prefix: string;
  readonly #events: JobStoreEvents | undefined;
  readonly #now: () => Date;
  #recorded: ((jobId: string) => void) | undefined;
  #allIndexed = false;

  constructor(options: { config: AppConfig; now?: () => Date }) {
    this.#account = storageAccount(options.config.storageConnection);
    this.#prefix = options.config.tablePrefix;
    this.#events = options.config.events ? { source: options.config.events.source } : undefined;
    this.#now = options.now ?? (() => new Date());
  }

  /** Tells `listener` of each job whose transition was just recorded (not of a job being created: see announceEvents). */
  onEventsRecorded(listener: (jobId: string) => void): void {
    this.#recorded = listener;
  }

  /** Tells the listener that a job just created (and started) has its first event to publish. */
  announceEvents(jobId: string): void {
    if (this.#events) this.#recorded?.(jobId);
  }

  #jobs(): Promise<TableClient> {
    return this.#account.table(`${this.#prefix}jobs`);
  }
  #index(): Promise<TableClient> {
    return this.#account.table(`${this.#prefix}jobindex`);
  }
  #keys(): Promise<TableClient> {
    return this.#account.table(`${this.#prefix}idempotency`);
  }
  #claims(): Promise<TableClient> {
    return this.#account.table(`${this.#prefix}outputclaims`);
  }
  #pending(): Promise<TableClient> {
    return this.#account.table(`${this.#prefix}jobevents`);
  }

  /**
   * Records a job. With events on, its first event (NotStarted) is recorded with it, in one
   * transaction; it is published once the job has started (see announceEvents), so a job whose
   * invocation is undone (see remove) never has an event.
   */
  async create(spec: JobSpec, state: JobState): Promise<void> {
    const jobs = await this.#jobs();
    const index = await this.#index();
    const entity: JobEntity = {
      partitionKey: spec.id,
      rowKey: 'job',
      spec: JSON.stringify(spec),
      state: JSON.stringify(state),
      status: state.status,
      endpoint: spec.endpoint,
      createdAt: spec.created_at,
    };
    try {
      const status = this.#events ? publishedStatus(spec, { kind: 'job' }, state.status) : undefined;
      if (status === undefined || !(await this.#withEvent(jobs, spec, status, { action: ['create', { ...entity }], record: state, announce: false }))) {
        await jobs.createEntity<JobEntity>(entity);
      }
    } catch (err) {
      if (isConflict(err)) throw new BatchError('conflict', `Job '${spec.id}' already exists.`);
      throw storageError('creating the job', err);
    }
    try {
      const invoker = spec.invoked_by;
      const row = {
        rowKey: newestFirstKey(spec.created_at, spec.id),
        jobId: spec.id,
        ...(invoker.id ? { invokerId: invoker.id.toLowerCase() } : {}),
        ...(invoker.tenant ? { invokerTenant: invoker.tenant.toLowerCase() } : {}),
      };
      await index.createEntity<IndexEntity>({ partitionKey: scopeKey(scopeOf(spec)), ...row });
      // Upsert: the all-jobs backfill (indexAllJobs) may have copied the row first.
      await index.upsertEntity<IndexEntity>({ partitionKey: ALL_JOBS, ...row }, 'Replace');
    } catch (err) {
      await index.deleteEntity(scopeKey(scopeOf(spec)), newestFirstKey(spec.created_at, spec.id)).catch(() => undefined);
      if (this.#events) await this.discardEvents(spec.id, { withJob: true }).catch(() => undefined);
      else await jobs.deleteEntity(spec.id, 'job').catch(() => undefined);
      throw storageError('indexing the job', err);
    }
  }

  /** Removes a job that could not be started, so nothing is left half-created (its unpublished events go with it). */
  async remove(spec: JobSpec): Promise<void> {
    const jobs = await this.#jobs();
    const index = await this.#index();
    await index.deleteEntity(scopeKey(scopeOf(spec)), newestFirstKey(spec.created_at, spec.id)).catch(() => undefined);
    await index.deleteEntity(ALL_JOBS, newestFirstKey(spec.created_at, spec.id)).catch(() => undefined);
    const events = await this.#eventRows(jobs, spec.id).catch(() => []);
    if (events.length === 0) {
      await jobs.deleteEntity(spec.id, 'job').catch(() => undefined);
      return;
    }
    await this.discardEvents(spec.id, { withJob: true }).catch(() => undefined);
  }

  /** Row keys of a job's event rows (its cursor and outbox). */
  async #eventRows(jobs: TableClient, jobId: string): Promise<string[]> {
    const pk = jobId.replace(/'/g, "''");
    const filter = `PartitionKey eq '${pk}' and ((RowKey ge '${EVENT_FIRST}' and RowKey lt '${EVENT_AFTER}') or RowKey eq '${EVENTS_CURSOR}')`;
    const keys: string[] = [];
    for await (const row of jobs.listEntities<{ rowKey: string }>({ queryOptions: { filter, select: ['RowKey'] } })) keys.push(row.rowKey);
    return keys;
  }

  /**
   * Drops a job's events without publishing them: a job that never came to be (`withJob`: its
   * record goes too, in the same transaction), or one whose record is gone. Its pending mark goes last.
   */
  async discardEvents(jobId: string, options: { withJob?: boolean } = {}): Promise<void> {
    const jobs = await this.#jobs();
    const keys = await this.#eventRows(jobs, jobId);
    const rows = options.withJob ? ['job', ...keys] : keys;
    try {
      for (let i = 0; i < rows.length; i += 100) {
        await jobs.submitTransaction(rows.slice(i, i + 100).map((rowKey): TransactionAction => ['delete', { partitionKey: jobId, rowKey }]));
      }
    } catch (err) {
      throw storageError('discarding the job\'s events', err);
    }
    await (await this.#pending()).deleteEntity(PENDING, jobId).catch(() => undefined);
  }

  /**
   * Writes a record together with the event of the job's transition to `status`, in one
   * entity-group transaction: the record, the events cursor (conditional on the one read, so
   * transitions are numbered one after another, whichever instance writes them) and the outbox
   * row. Returns false, having written nothing, when `status` is no transition after the last
   * one recorded (a repeat, or a step of a job that has moved on); the caller then writes the
   * record alone. A conflict (the record or the cursor changed) is thrown, for the caller to retry.
   */
  async #withEvent(
    jobs: TableClient,
    spec: JobSpec,
    status: JobStatus,
    write: { action: TransactionAction; record: RecordSnapshot; job?: RecordSnapshot | undefined; announce: boolean },
  ): Promise<boolean> {
    const events = this.#events;
    if (!events) return false;
    let cursor: EventsCursorEntity | undefined;
    try {
      cursor = await jobs.getEntity<EventsCursorEntity>(spec.id, EVENTS_CURSOR);
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
    const last = cursor?.status as JobStatus | undefined;
    if (!isTransition(last, status)) return false;
    // The job is marked as having events before its first one is written, so a sweep finds every
    // outbox that may hold one (the mark is dropped only once its last event is published).
    if (!cursor) await (await this.#pending()).upsertEntity({ partitionKey: PENDING, rowKey: spec.id, since: this.#now().toISOString() }, 'Replace');
    const seq = (cursor?.seq ?? 0) + 1;
    const now = this.#now();
    const event = buildJobEvent({ source: events.source, spec, sequence: seq, status, previous: last, time: now, record: write.record, job: write.job });
    const next: EventsCursorEntity = { partitionKey: spec.id, rowKey: EVENTS_CURSOR, seq, status };
    await jobs.submitTransaction([
      write.action,
      cursor ? ['update', { ...next }, 'Replace', { etag: cursor.etag ?? '*' }] : ['create', { ...next }],
      ['create', { partitionKey: spec.id, rowKey: eventRow(seq), event: JSON.stringify(event), recordedAt: now.toISOString() } satisfies OutboxEntity],
    ]);
    if (write.announce) this.#recorded?.(spec.id);
    return true;
  }

  /** A job's recorded events not yet published, in the order of its transitions. */
  async pendingEvents(jobId: string): Promise<RecordedEvent[]> {
    const jobs = await this.#jobs();
    const filter = `PartitionKey eq '${jobId.replace(/'/g, "''")}' and RowKey ge '${EVENT_FIRST}' and RowKey lt '${EVENT_AFTER}'`;
    const found: RecordedEvent[] = [];
    try {
      for await (const row of jobs.listEntities<OutboxEntity>({ queryOptions: { filter } })) {
        found.push({ seq: Number(row.rowKey.substring(EVENT_FIRST.length)), event: JSON.parse(row.event) as CloudEvent, recordedAt: row.recordedAt });
      }
    } catch (err) {
      throw storageError('reading the job\'s events', err);
    }
    return found.sort((a, b) => a.seq - b.seq);
  }

  /** Removes a published event from the job's outbox. */
  async deleteEvent(jobId: string, seq: number): Promise<void> {
    const jobs = await this.#jobs();
    try {
      await jobs.deleteEntity(jobId, eventRow(seq));
    } catch (err) {
      if (!isNotFound(err)) throw storageError('removing a published event', err);
    }
  }

  /** The last transition recorded for a job (its events cursor), if any. */
  async lastEvent(jobId: string): Promise<{ seq: number; status: JobStatus } | undefined> {
    const jobs = await this.#jobs();
    try {
      const cursor = await jobs.getEntity<EventsCursorEntity>(jobId, EVENTS_CURSOR);
      return { seq: cursor.seq, status: cursor.status as JobStatus };
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw storageError('reading the job\'s events', err);
    }
  }

  /** Jobs marked as possibly having events to publish: when each was marked, and the mark's etag. */
  async markedJobs(): Promise<{ jobId: string; since: string; etag: string }[]> {
    const table = await this.#pending();
    const found: { jobId: string; since: string; etag: string }[] = [];
    try {
      for await (const row of table.listEntities<{ rowKey: string; since: string; etag?: string }>({ queryOptions: { filter: `PartitionKey eq '${PENDING}'` } })) {
        found.push({ jobId: row.rowKey, since: row.since, etag: row.etag ?? '*' });
      }
    } catch (err) {
      throw storageError('listing jobs with events', err);
    }
    return found;
  }

  /** Drops a job's mark (once its last event is published), unless it was marked again since. */
  async unmark(jobId: string, etag: string): Promise<void> {
    const table = await this.#pending();
    try {
      await table.deleteEntity(PENDING, jobId, { etag });
    } catch (err) {
      if (!isNotFound(err) && !isConflict(err)) throw storageError('dropping a job\'s events mark', err);
    }
  }

  async get(id: string): Promise<Job | undefined> {
    const jobs = await this.#jobs();
    try {
      const e = await jobs.getEntity<JobEntity>(id, 'job');
      return { spec: JSON.parse(e.spec) as JobSpec, state: JSON.parse(e.state) as JobState, etag: e.etag ?? '' };
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw storageError('reading the job', err);
    }
  }

  /**
   * Changes a job's state with optimistic concurrency: `mutate` sees the current state and returns
   * the new one, or undefined to leave it. Returns the state now stored.
   */
  async update(id: string, mutate: (state: JobState, spec: JobSpec) => JobState | undefined): Promise<JobState | undefined> {
    const jobs = await this.#jobs();
    for (let attempt = 0; attempt < 20; attempt++) {
      const job = await this.get(id);
      if (!job) return undefined;
      const next = mutate(structuredClone(job.state), job.spec);
      if (!next) return job.state;
      const entity = { partitionKey: id, rowKey: 'job', state: JSON.stringify(next), status: next.status };
      const status = this.#events && next.status !== job.state.status ? publishedStatus(job.spec, { kind: 'job' }, next.status) : undefined;
      try {
        const written = status !== undefined && (await this.#withEvent(jobs, job.spec, status, { action: ['update', entity, 'Merge', { etag: job.etag }], record: next, announce: true }));
        if (!written) await jobs.updateEntity(entity, 'Merge', { etag: job.etag });
        return next;
      } catch (err) {
        if (!isConflict(err)) throw storageError('updating the job', err);
      }
    }
    throw new BatchError('storage_failed', `Job '${id}' is being updated too often; gave up after 20 attempts.`, { retryable: true });
  }

  /**
   * Creates the records of a job's steps (before its orchestration starts): one row each beside the
   * job's, created together in one batch, so a job never has some of its steps' records and not others.
   */
  async createSteps(jobId: string, steps: Record<string, StepState>): Promise<void> {
    const jobs = await this.#jobs();
    const actions = Object.entries(steps).map(
      ([name, state]): TransactionAction => ['create', { partitionKey: jobId, rowKey: `${STEP_FIRST}${name}`, state: JSON.stringify(state), status: state.status }],
    );
    if (actions.length === 0) return;
    try {
      await jobs.submitTransaction(actions);
    } catch (err) {
      throw storageError('creating the job\'s steps', err);
    }
  }

  async getStep(jobId: string, step: string): Promise<StepState | undefined> {
    return (await this.#getStepEntity(jobId, step))?.state;
  }

  async #getStepEntity(jobId: string, step: string): Promise<{ state: StepState; etag: string } | undefined> {
    const jobs = await this.#jobs();
    try {
      const e = await jobs.getEntity<StepEntity>(jobId, `${STEP_FIRST}${step}`);
      return { state: JSON.parse(e.state) as StepState, etag: e.etag ?? '' };
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw storageError('reading a step of the job', err);
    }
  }

  /** Every step record of a job, by step name. */
  async listSteps(jobId: string): Promise<Map<string, StepState>> {
    const jobs = await this.#jobs();
    const filter = `PartitionKey eq '${jobId.replace(/'/g, "''")}' and RowKey ge '${STEP_FIRST}' and RowKey lt '${STEP_AFTER}'`;
    const found = new Map<string, StepState>();
    try {
      for await (const row of jobs.listEntities<StepEntity>({ queryOptions: { filter } })) {
        found.set(row.rowKey.substring(STEP_FIRST.length), JSON.parse(row.state) as StepState);
      }
    } catch (err) {
      throw storageError('reading the job\'s steps', err);
    }
    return found;
  }

  /** Changes a step's record with optimistic concurrency, as {@link update} does the job's. */
  async updateStep(jobId: string, step: string, mutate: (state: StepState) => StepState | undefined): Promise<StepState | undefined> {
    const jobs = await this.#jobs();
    for (let attempt = 0; attempt < 20; attempt++) {
      const found = await this.#getStepEntity(jobId, step);
      if (!found) return undefined;
      const next = mutate(structuredClone(found.state));
      if (!next) return found.state;
      const entity = { partitionKey: jobId, rowKey: `${STEP_FIRST}${step}`, state: JSON.stringify(next), status: next.status };
      try {
        const written = next.status !== found.state.status && (await this.#stepEvent(jobs, jobId, step, next, { action: ['update', entity, 'Merge', { etag: found.etag }], record: next }));
        if (!written) await jobs.updateEntity(entity, 'Merge', { etag: found.etag });
        return next;
      } catch (err) {
        if (!isConflict(err)) throw storageError('updating a step of the job', err);
      }
    }
    throw new BatchError('storage_failed', `Step '${step}' of job '${jobId}' is being updated too often; gave up after 20 attempts.`, { retryable: true });
  }

  /** A step's new status as the job's transition, when it is one (see publishedStatus): written with its event. */
  async #stepEvent(jobs: TableClient, jobId: string, step: string, next: StepState, write: { action: TransactionAction; record: RecordSnapshot }): Promise<boolean> {
    // Only a model deployment's one step can be the job's; other steps' writes read nothing more.
    if (!this.#events || step !== MODEL_STEP || next.status === 'Skipped') return false;
    const job = await this.get(jobId);
    if (!job) return false;
    const record: WrittenRecord = { kind: 'step', step };
    const status = publishedStatus(job.spec, record, next.status);
    if (status === undefined) return false;
    return this.#withEvent(jobs, job.spec, status, { ...write, job: job.state, announce: true });
  }

  /** Records one lane's counts in a row of its own beside the job (lanes never contend). */
  async writeLaneCounts(ref: { jobId: string; step?: string | undefined }, lane: number, counts: JobCounts): Promise<void> {
    const jobs = await this.#jobs();
    try {
      const rowKey = `${laneRows(ref.step).first}${String(lane).padStart(5, '0')}`;
      await jobs.upsertEntity<LaneEntity>({ partitionKey: ref.jobId, rowKey, counts: JSON.stringify(counts) }, 'Replace');
    } catch (err) {
      throw storageError('recording progress', err);
    }
  }

  /** The sum of the counts the lanes of a running job have recorded so far. */
  async laneCounts(jobId: string, step?: string): Promise<JobCounts> {
    const jobs = await this.#jobs();
    const rows = laneRows(step);
    const filter = `PartitionKey eq '${jobId.replace(/'/g, "''")}' and RowKey ge '${rows.first}' and RowKey lt '${rows.after}'`;
    let sum = emptyCounts();
    try {
      for await (const row of jobs.listEntities<LaneEntity>({ queryOptions: { filter, select: ['counts'] } })) {
        sum = addCounts(sum, JSON.parse(row.counts) as JobCounts);
      }
    } catch (err) {
      throw storageError('reading progress', err);
    }
    return sum;
  }

  /**
   * Jobs of one endpoint (as it is now: see EndpointScope) or of all (`'all'`), newest first, a page
   * at a time. `select` sees each job in turn and returns it (possibly changed) to list it or
   * undefined to leave it out (a filter the index cannot apply, such as the live status); a page may
   * then hold fewer than `top` jobs, or none, and still have a continuation token: at most
   * MAX_INDEX_SCAN index rows are read per call. Tokens are the index's row keys (see parseContinuation).
   */
  async listJobs(
    scope: EndpointScope | 'all',
    page: { top: number; continuationToken?: string | undefined; invokedBy?: InvokerFilter | undefined; select?: ((job: Job) => Promise<Job | undefined>) | undefined },
  ): Promise<{ jobs: Job[]; continuationToken: string | undefined }> {
    const by = page.invokedBy;
    if (by?.id === '') return { jobs: [], continuationToken: undefined };
    const partition = scope === 'all' ? ALL_JOBS : scopeKey(scope);
    let cursor = page.continuationToken === undefined ? undefined : parseContinuation(page.continuationToken, partition);
    const index = await this.#index();
    const select = page.select ?? ((job: Job): Promise<Job | undefined> => Promise.resolve(job));
    const jobs: Job[] = [];
    let scanned = 0;
    try {
      if (scope === 'all') await this.#indexAllJobs(index);
      while (scanned < MAX_INDEX_SCAN) {
        const filter = [
          `PartitionKey eq ${odata(partition)}`,
          ...(cursor ? [`RowKey ${cursor.after ? 'gt' : 'ge'} ${odata(cursor.key)}`] : []),
          ...(by ? [`invokerId eq ${odata(by.id.toLowerCase())}`] : []),
          ...(by?.tenant ? [`invokerTenant eq ${odata(by.tenant.toLowerCase())}`] : []),
        ].join(' and ');
        const wanted = Math.min(100, MAX_INDEX_SCAN - scanned, page.select ? Math.max(page.top - jobs.length, 20) : page.top - jobs.length);
        const next = await index.listEntities<IndexEntity>({ queryOptions: { filter } }).byPage({ maxPageSize: wanted }).next();
        const entries: IndexEntity[] = next.done ? [] : next.value;
        const serviceToken = next.done ? undefined : (next.value as { continuationToken?: string }).continuationToken;
        scanned += Math.max(entries.length, 1);
        const found = await Promise.all(entries.map(async (e) => {
          const job = await this.get(e.jobId);
          return job && select(job);
        }));
        for (const [i, entry] of entries.entries()) {
          if (jobs.length === page.top) return { jobs, continuationToken: continuationOf(partition, { key: entry.rowKey, after: false }) };
          const job = found[i];
          if (job) jobs.push(job);
          cursor = { key: entry.rowKey, after: true };
        }
        if (serviceToken === undefined) return { jobs, continuationToken: undefined };
        // The service may end a page early (or answer an empty one) with a continuation of its own.
        if (entries.length === 0) cursor = parseContinuation(serviceToken, partition);
        if (jobs.length === page.top) break;
      }
    } catch (err) {
      if (err instanceof BatchError) throw err;
      throw storageError('listing jobs', err);
    }
    return { jobs, continuationToken: cursor && continuationOf(partition, cursor) };
  }

  /**
   * Puts every job in the all-jobs index once (jobs created before it existed are only in their
   * endpoint's), then marks it done; new jobs are indexed there as they are created. Copying is an
   * upsert of the same rows, so callers racing here, or a copy cut short, do no harm.
   */
  async #indexAllJobs(index: TableClient): Promise<void> {
    if (this.#allIndexed) return;
    try {
      await index.getEntity(INDEX_META, ALL_JOBS);
      this.#allIndexed = true;
      return;
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
    const rows: IndexEntity[] = [];
    for await (const row of index.listEntities<IndexEntity>({ queryOptions: { filter: `PartitionKey ne ${odata(ALL_JOBS)} and PartitionKey ne ${odata(INDEX_META)}` } })) {
      rows.push({ partitionKey: ALL_JOBS, rowKey: row.rowKey, jobId: row.jobId, ...(row.invokerId ? { invokerId: row.invokerId } : {}), ...(row.invokerTenant ? { invokerTenant: row.invokerTenant } : {}) });
    }
    for (let i = 0; i < rows.length; i += 100) {
      await index.submitTransaction(rows.slice(i, i + 100).map((row): TransactionAction => ['upsert', { ...row }, 'Replace']));
    }
    await index.upsertEntity({ partitionKey: INDEX_META, rowKey: ALL_JOBS, copied: rows.length });
    this.#allIndexed = true;
  }

  /** The job an idempotency key started on this endpoint, and the hash of that request, if it was used. */
  async findKey(endpoint: EndpointScope, key: string): Promise<{ jobId: string; requestHash: string } | undefined> {
    const keys = await this.#keys();
    try {
      const found = await keys.getEntity<IdempotencyEntity>(scopeKey(endpoint), idempotencyRow(key));
      return { jobId: found.jobId, requestHash: found.requestHash };
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw storageError('reading the idempotency key', err);
    }
  }

  /**
   * Claims an idempotency key for a new job (an atomic insert). When the key was used before,
   * returns the job it started and the hash of that request instead.
   */
  async claimKey(endpoint: EndpointScope, key: string, requestHash: string, jobId: string): Promise<{ claimed: true } | { claimed: false; jobId: string; requestHash: string }> {
    const keys = await this.#keys();
    try {
      await keys.createEntity<IdempotencyEntity>({ partitionKey: scopeKey(endpoint), rowKey: idempotencyRow(key), jobId, requestHash });
      return { claimed: true };
    } catch (err) {
      if (!isConflict(err)) throw storageError('recording the idempotency key', err);
    }
    const existing = await this.findKey(endpoint, key);
    if (!existing) throw new BatchError('conflict', 'A request with this Idempotency-Key is being processed; retry shortly.', { details: { header: 'Idempotency-Key', field: 'Idempotency-Key' } });
    return { claimed: false, ...existing };
  }

  async releaseKey(endpoint: EndpointScope, key: string): Promise<void> {
    const keys = await this.#keys();
    await keys.deleteEntity(scopeKey(endpoint), idempotencyRow(key)).catch(() => undefined);
  }

  /**
   * Claims an output folder for a job with one atomic insert, so two jobs can never write into the
   * same folder: of two invocations racing for it, exactly one gets it (a check for existing files
   * followed by a write could let both through). `folder` identifies the folder physically (account,
   * container and prefix), so two names for one folder are one claim. When the folder is claimed
   * already, `mayTakeOver` sees the claim and may allow taking it (e.g. its job never came to be);
   * the takeover is conditional on the claim being unchanged, so it is atomic too.
   */
  async claimOutput(folder: string, jobId: string, now: string, mayTakeOver: (claim: OutputClaim) => Promise<boolean>): Promise<{ claimed: true } | { claimed: false; jobId: string }> {
    const claims = await this.#claims();
    const entity: OutputClaimEntity = { partitionKey: claimKey(folder), rowKey: 'output', folder, jobId, claimedAt: now };
    for (let attempt = 0; attempt < 5; attempt++) {
      try {
        await claims.createEntity(entity);
        return { claimed: true };
      } catch (err) {
        if (!isConflict(err)) throw storageError('claiming the output folder', err);
      }
      let existing: OutputClaimEntity;
      try {
        existing = await claims.getEntity<OutputClaimEntity>(entity.partitionKey, 'output');
      } catch (err) {
        if (isNotFound(err)) continue;
        throw storageError('reading the output claim', err);
      }
      if (existing.jobId === jobId) return { claimed: true };
      const claim = { jobId: existing.jobId, claimedAt: existing.claimedAt, etag: existing.etag ?? '' };
      if (!(await mayTakeOver(claim))) return { claimed: false, jobId: existing.jobId };
      try {
        await claims.updateEntity(entity, 'Replace', { etag: claim.etag });
        return { claimed: true };
      } catch (err) {
        if (!isConflict(err) && !isNotFound(err)) throw storageError('claiming the output folder', err);
      }
    }
    throw new BatchError('storage_failed', 'The output folder is being claimed by other requests; retry.', { retryable: true });
  }

  /** The claim on exactly this folder (see claimOutput), if any. */
  async outputClaim(folder: string): Promise<OutputClaim | undefined> {
    const claims = await this.#claims();
    try {
      const e = await claims.getEntity<OutputClaimEntity>(claimKey(folder), 'output');
      return { jobId: e.jobId, claimedAt: e.claimedAt, etag: e.etag ?? '' };
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw storageError('reading an output claim', err);
    }
  }

  /**
   * The claims on folders strictly inside `folder` (a folder key, see claimOutput, ending with "/"),
   * with the folders they claim. One query of the claims table by the claimed folder's name (claims
   * are keyed by a hash, so this is a scan of the table, filtered by storage).
   */
  async outputClaimsInside(folder: string): Promise<(OutputClaim & { folder: string })[]> {
    const claims = await this.#claims();
    // Folder keys end with "/": the keys that start with it sort before the same text ending in "0" ("/" + 1).
    const upper = `${folder.replace(/\/$/, '')}0`;
    const filter = `folder gt ${odata(folder)} and folder lt ${odata(upper)}`;
    const found: (OutputClaim & { folder: string })[] = [];
    try {
      for await (const e of claims.listEntities<OutputClaimEntity>({ queryOptions: { filter } })) {
        if (e.folder.startsWith(folder) && e.folder !== folder) found.push({ folder: e.folder, jobId: e.jobId, claimedAt: e.claimedAt, etag: e.etag ?? '' });
      }
    } catch (err) {
      if (isNotFound(err)) return [];
      throw storageError('reading the output claims', err);
    }
    return found;
  }

  /** Gives up a job's claim on an output folder (an invocation that did not go ahead); another job's claim stays. */
  async releaseOutput(folder: string, jobId: string): Promise<void> {
    const claims = await this.#claims();
    try {
      const existing = await claims.getEntity<OutputClaimEntity>(claimKey(folder), 'output');
      if (existing.jobId === jobId) await claims.deleteEntity(claimKey(folder), 'output', { etag: existing.etag ?? '*' });
    } catch {
      // Gone already, or changed hands: either way it is not this job's any more.
    }
  }

  /**
   * Records that a step run with this fingerprint (see PipelineRunner: the component, its code and
   * model, the contents of its inputs and its literals) completed with these outputs, for later
   * jobs to reuse. Keyed by the fingerprint alone: content, never a name that can be reused.
   */
  async putReusable(fingerprint: string, run: ReusableRun): Promise<void> {
    const table = await this.#account.table(`${this.#prefix}stepreuse`);
    try {
      await table.upsertEntity({ partitionKey: fingerprint, rowKey: 'latest', run: JSON.stringify(run) }, 'Replace');
    } catch (err) {
      throw storageError('recording a reusable step', err);
    }
  }

  /** The latest completed step run with this fingerprint, if any. */
  async getReusable(fingerprint: string): Promise<ReusableRun | undefined> {
    const table = await this.#account.table(`${this.#prefix}stepreuse`);
    try {
      const e = await table.getEntity<{ run: string }>(fingerprint, 'latest');
      return JSON.parse(e.run) as ReusableRun;
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw storageError('reading a reusable step', err);
    }
  }
}
