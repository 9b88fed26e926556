import type { TableClient } from '@azure/data-tables';
import type { AppConfig } from '../config.js';
import { datastoreUri } from '../data/data-uri.js';
import { BatchError, errorMessage } from '../errors.js';
import type { JobsService } from '../jobs/jobs-service.js';
import type { JobError } from '../jobs/types.js';
import { isFileIn } from '../planning/list-input.js';
import type { Registry } from '../registry/registry.js';
import type { DatastoreDoc } from '../registry/types.js';
import { type TriggerRuleDoc, type TriggerRules, expandOutputTemplate, templateDate } from '../registry/triggers.js';
import { type InvokeBody, listedFileNameProblem } from '../schemas/jobs.js';
import { type StorageAccount, isConflict, isNotFound, storageAccount } from '../storage/clients.js';
import type { BatchFile, ClosedBatch } from './batcher.js';
import { type BlobWrite, matchesSource, parseContainerUrl, readBlobCreated, writeKey } from './events.js';

/**
 * What blob-created events do: each finished write of a file under a rule's source joins that
 * rule's batch once (a Table insert-if-absent keyed by the rule and the blob version, before the
 * file is batched), and each closed batch becomes one job whose input is exactly its files.
 * Free of Functions types: the trigger and the activity pass in what starts orchestrations.
 */

/** What a rule's batching orchestration (triggerFile) is given for one file. */
export interface FileTask {
  rule: RuleRef;
  file: BatchFile;
  windowSeconds: number;
  maxFiles: number;
}

/** A rule as batches know it: its name, and the uid of its incarnation. */
export interface RuleRef {
  endpoint: string;
  name: string;
  uid: string;
}

export interface ReceiveHooks {
  /** Starts the file's orchestration under `instanceId`. */
  start: (instanceId: string, task: FileTask) => Promise<void>;
  /** Whether an orchestration instance exists (in any state). */
  exists: (instanceId: string) => Promise<boolean>;
}

export type ReceiveOutcome =
  | { status: 'ignored' | 'malformed' | 'refused'; reason: string }
  | { status: 'accepted'; blob: string; rules: { rule: string; endpoint: string; outcome: 'batched' | 'duplicate' | 'recovered' }[] };

/** A file of a batch its job does not score, and why. */
export interface SkippedFile {
  blob: string;
  reason: string;
}

export type StartJobResult =
  | { status: 'created' | 'replayed'; jobId: string; skipped?: SkippedFile[] }
  | { status: 'dropped'; reason: string; skipped?: SkippedFile[] }
  | { status: 'failed'; error: JobError };

interface FileRecordEntity {
  partitionKey: string;
  rowKey: string;
  blob: string;
  /** The blob's eTag (not `etag`: that is the entity's own). */
  blobEtag: string;
  eventId: string;
  api: string;
  endpoint: string;
  rule: string;
  acceptedAt: string;
  started: boolean;
}

/**
 * A dedup record whose orchestration is not known to have started after this long is taken to
 * belong to a delivery that died in between: the next delivery of the event starts it (if it does
 * not exist). Event Grid redelivers after 10 s, 30 s, 1 min, 5 min, …
 */
const RECOVER_AFTER_MS = 60_000;

/** The orchestration instance that batches one file for one rule. */
export function fileInstanceId(ruleUid: string, key: string): string {
  return `trigger-file:${ruleUid}:${key}`;
}

/** The folder all of a batch's files are in (the longest common prefix ending in "/"). */
export function commonFolder(blobs: readonly string[]): string {
  if (blobs.length === 0) return '';
  let prefix = blobs[0] ?? '';
  for (const b of blobs) {
    while (!b.startsWith(prefix)) prefix = prefix.substring(0, prefix.length - 1);
  }
  return prefix.substring(0, prefix.lastIndexOf('/') + 1);
}

/** The name of the input a triggered job scores (a model deployment takes exactly one). */
export const TRIGGER_INPUT = 'input_data';
/** Its output's name, when the rule names where jobs write. */
export const TRIGGER_OUTPUT = 'score';

export class TriggerService {
  readonly #registry: Registry;
  readonly #rules: TriggerRules;
  readonly #jobs: JobsService;
  readonly #account: StorageAccount;
  readonly #table: string;
  readonly #now: () => Date;

  constructor(options: { config: AppConfig; registry: Registry; rules: TriggerRules; jobs: JobsService; now?: () => Date }) {
    this.#registry = options.registry;
    this.#rules = options.rules;
    this.#jobs = options.jobs;
    this.#account = storageAccount(options.config.storageConnection);
    this.#table = `${options.config.tablePrefix}triggerfiles`;
    this.#now = options.now ?? (() => new Date());
  }

  #files(): Promise<TableClient> {
    return this.#account.table(this.#table);
  }

  /**
   * Takes one event. Only a finished write counts; its blob URL's account and container must be a
   * registered datastore's (nothing else is ever fetched: the URL is only compared); the blob must
   * fall under an enabled rule's source. For each such rule, the write is recorded once and its
   * file handed to the rule's batching; a write recorded before is a duplicate and does nothing.
   */
  async receive(event: unknown, hooks: ReceiveHooks): Promise<ReceiveOutcome> {
    const reading = readBlobCreated(event);
    if (reading.kind !== 'write') return { status: reading.kind, reason: reading.reason };
    const write = reading.write;
    const datastores = await this.#datastoresAt(write.containerUrl);
    if (datastores.length === 0) return { status: 'ignored', reason: `no datastore is registered for ${write.containerUrl}` };
    const rules = (await this.#rules.active()).filter((r) => datastores.includes(r.source.datastore) && matchesSource(write.blob, r.source) && isFileIn(r.source.path_prefix, write.blob));
    if (rules.length === 0) return { status: 'ignored', reason: `no enabled trigger rule takes ${write.blob}` };
    // A name no file list can hold would make its whole batch's job fail validation: this file is
    // left out (and said so), the rest of the batch goes on.
    const problem = listedFileNameProblem(write.blob);
    if (problem) return { status: 'refused', reason: `blob "${write.blob}" cannot be scored by a trigger (its name ${problem}); not batched` };
    const outcomes: Extract<ReceiveOutcome, { status: 'accepted' }>['rules'] = [];
    for (const rule of rules) outcomes.push({ rule: rule.name, endpoint: rule.endpoint_name, outcome: await this.#accept(rule, write, hooks) });
    return { status: 'accepted', blob: write.blob, rules: outcomes };
  }

  /** Names of the datastores whose container the URL is in (compared, never fetched). */
  async #datastoresAt(containerUrl: string): Promise<string[]> {
    const names: string[] = [];
    for (const { doc } of await this.#registry.listDatastores()) {
      if (this.#containerUrlOf(doc) === containerUrl) names.push(doc.name);
    }
    return names;
  }

  /**
   * What identifies a datastore's container as events report it (events.ts's `containerUrl`); the
   * one place a datastore is matched to an event's account and container. Undefined for a
   * datastore whose connection setting is gone (it reaches nothing).
   */
  #containerUrlOf(doc: DatastoreDoc): string | undefined {
    try {
      return parseContainerUrl(this.#registry.containerOf(doc).url)?.containerUrl;
    } catch {
      return undefined;
    }
  }

  async #accept(rule: TriggerRuleDoc, write: BlobWrite, hooks: ReceiveHooks): Promise<'batched' | 'duplicate' | 'recovered'> {
    const key = writeKey(write);
    const instanceId = fileInstanceId(rule.uid, key);
    const task: FileTask = {
      rule: { endpoint: rule.endpoint_name, name: rule.name, uid: rule.uid },
      file: { key, blob: write.blob, etag: write.etag, container: write.containerUrl, ...(write.sequencer ? { sequencer: write.sequencer } : {}) },
      windowSeconds: rule.batching.window_seconds,
      maxFiles: rule.batching.max_files,
    };
    const table = await this.#files();
    const record: FileRecordEntity = {
      partitionKey: rule.uid,
      rowKey: key,
      blob: write.blob,
      blobEtag: write.etag,
      eventId: write.eventId,
      api: write.api,
      endpoint: rule.endpoint_name,
      rule: rule.name,
      acceptedAt: this.#now().toISOString(),
      started: false,
    };
    try {
      await table.createEntity(record);
    } catch (err) {
      if (!isConflict(err)) throw new BatchError('storage_failed', 'Could not record a blob-created event.', { cause: err });
      return this.#recover(table, rule, key, instanceId, task, hooks);
    }
    try {
      await hooks.start(instanceId, task);
    } catch (err) {
      // Not batched: give the record back, so the event's redelivery tries again.
      await table.deleteEntity(rule.uid, key).catch(() => undefined);
      throw new BatchError('storage_failed', `Could not start batching ${write.blob}: ${errorMessage(err)}`, { cause: err });
    }
    await this.#markStarted(table, rule.uid, key);
    return 'batched';
  }

  /**
   * A write recorded before: a duplicate, unless its record says its orchestration was never known
   * to start, a minute has passed, and the orchestration does not exist (the delivery that recorded
   * it died in between). Then it is started now; the batcher ignores a file it has batched already.
   */
  async #recover(table: TableClient, rule: TriggerRuleDoc, key: string, instanceId: string, task: FileTask, hooks: ReceiveHooks): Promise<'duplicate' | 'recovered'> {
    let found: FileRecordEntity;
    try {
      found = await table.getEntity<FileRecordEntity>(rule.uid, key);
    } catch (err) {
      if (isNotFound(err)) return 'duplicate';
      throw new BatchError('storage_failed', 'Could not read a blob-created record.', { cause: err });
    }
    if (found.started) return 'duplicate';
    if (this.#now().getTime() - Date.parse(found.acceptedAt) < RECOVER_AFTER_MS) return 'duplicate';
    if (!(await hooks.exists(instanceId))) {
      await hooks.start(instanceId, task);
      await this.#markStarted(table, rule.uid, key);
      return 'recovered';
    }
    await this.#markStarted(table, rule.uid, key);
    return 'duplicate';
  }

  async #markStarted(table: TableClient, pk: string, rk: string): Promise<void> {
    // Advisory: a record left unmarked only makes a late redelivery look for the orchestration.
    await table.updateEntity({ partitionKey: pk, rowKey: rk, started: true }, 'Merge').catch(() => undefined);
  }

  /**
   * Makes a closed batch's job, idempotently (the batch id is its Idempotency-Key): the rule's
   * endpoint and deployment (or the endpoint's default now), its settings, its output template, and
   * a file-list input naming exactly the batch's files, each at the eTag its event reported. A rule
   * deleted (or deleted and created again) since the batch opened makes no job. Failures that a
   * retry cannot mend are returned, not thrown.
   */
  async startJob(input: { rule: RuleRef; batch: ClosedBatch }, start: (jobId: string) => Promise<void>): Promise<StartJobResult> {
    const { rule: ref, batch } = input;
    const stored = await this.#rules.get(ref.endpoint, ref.name);
    if (!stored || stored.doc.uid !== ref.uid) return { status: 'dropped', reason: `trigger ${ref.endpoint}/${ref.name} was deleted after batch ${batch.id} opened` };
    if (batch.files.length === 0) return { status: 'dropped', reason: `batch ${batch.id} has no files` };
    const rule = stored.doc;
    // The batch is of files in the container the datastore named when their events came: a file
    // from a container the datastore no longer names (it was re-pointed meanwhile) is not scored.
    const datastore = await this.#registry.getDatastore(rule.source.datastore);
    const current = datastore ? this.#containerUrlOf(datastore.doc) : undefined;
    const skipped: SkippedFile[] = [];
    const kept = batch.files.filter((f) => {
      if (f.container === undefined || f.container === current) return true;
      skipped.push({ blob: f.blob, reason: `written in ${f.container}, but datastore '${rule.source.datastore}' is now ${current ?? 'unreachable'}` });
      return false;
    });
    if (kept.length === 0) return { status: 'dropped', reason: `no file of batch ${batch.id} is in datastore '${rule.source.datastore}''s container any more`, skipped };
    const more = skipped.length > 0 ? { skipped } : {};
    const folder = commonFolder(kept.map((f) => f.blob));
    const files = kept.map((f) => ({ name: f.blob.substring(folder.length), etag: f.etag })).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    const body: InvokeBody = {
      display_name: `${rule.name}: ${files.length} file(s)`,
      tags: { trigger: rule.name, trigger_batch: batch.id },
      inputs: { [TRIGGER_INPUT]: { type: 'uri_folder', path: datastoreUri(rule.source.datastore, folder), files } },
      ...(rule.output_path ? { outputs: { [TRIGGER_OUTPUT]: { path: expandOutputTemplate(rule.output_path, { rule: rule.name }) } } } : {}),
      ...(rule.settings ? { settings: rule.settings } : {}),
    };
    try {
      const { job, replayed } = await this.#jobs.invoke({
        endpoint: rule.endpoint_name,
        deploymentHeader: rule.deployment ?? undefined,
        body,
        idempotencyKey: batch.id,
        invokedBy: { name: `trigger ${rule.name}`, via: 'event_grid', trigger: { rule: rule.name, batch: batch.id } },
        start,
        expandOutput: (path, job) => expandOutputTemplate(path, { job_id: job.id, date: templateDate(job.created_at) }),
      });
      return { status: replayed ? 'replayed' : 'created', jobId: job.spec.id, ...more };
    } catch (err) {
      if (err instanceof BatchError && !err.retryable) {
        // The batch's job exists, made by an earlier run of this step before the rule changed.
        const jobId = err.details['job_id'];
        if (err.code === 'unprocessable' && typeof jobId === 'string') return { status: 'replayed', jobId, ...more };
        const error = { code: err.code, message: err.message };
        await this.#rules.recordError(ref.endpoint, ref.name, ref.uid, { batch: batch.id, ...error, at: this.#now().toISOString() });
        return { status: 'failed', error };
      }
      throw err;
    }
  }
}
