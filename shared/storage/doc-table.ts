import type { TableClient } from '@azure/data-tables';
import { BatchError } from '../errors.js';
import { type StorageAccount, isConflict, isNotFound } from './clients.js';

/** A stored document with its bookkeeping. */
export interface Stored<T> {
  doc: T;
  createdAt: string;
  updatedAt: string;
  etag: string;
}

interface DocEntity {
  partitionKey: string;
  rowKey: string;
  doc: string;
  createdAt: string;
  updatedAt: string;
  etag?: string;
}

function storageError(action: string, err: unknown): BatchError {
  return new BatchError('storage_failed', `Storage failed while ${action}.`, { cause: err });
}

/**
 * JSON documents in one Azure table, addressed by partition and row key. Small on purpose: the
 * registry and job store build on it, and its Azurite-backed tests cover both.
 */
export class DocTable<T> {
  readonly #account: StorageAccount;
  readonly #name: string;

  constructor(account: StorageAccount, tableName: string) {
    this.#account = account;
    this.#name = tableName;
  }

  async #table(): Promise<TableClient> {
    return this.#account.table(this.#name);
  }

  #stored(e: DocEntity): Stored<T> {
    return { doc: JSON.parse(e.doc) as T, createdAt: e.createdAt, updatedAt: e.updatedAt, etag: e.etag ?? '' };
  }

  async get(pk: string, rk: string): Promise<Stored<T> | undefined> {
    const table = await this.#table();
    try {
      return this.#stored(await table.getEntity<DocEntity>(pk, rk));
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw storageError(`reading ${this.#name}`, err);
    }
  }

  /** Inserts; returns false (and changes nothing) when the key exists. */
  async create(pk: string, rk: string, doc: T, now: string): Promise<boolean> {
    const table = await this.#table();
    try {
      await table.createEntity<DocEntity>({ partitionKey: pk, rowKey: rk, doc: JSON.stringify(doc), createdAt: now, updatedAt: now });
      return true;
    } catch (err) {
      if (isConflict(err)) return false;
      throw storageError(`writing ${this.#name}`, err);
    }
  }

  /** Writes the document; with `etag`, only if it is unchanged (else a conflict). */
  async put(pk: string, rk: string, doc: T, now: string, options: { createdAt?: string; etag?: string } = {}): Promise<void> {
    const table = await this.#table();
    const entity: DocEntity = { partitionKey: pk, rowKey: rk, doc: JSON.stringify(doc), createdAt: options.createdAt ?? now, updatedAt: now };
    try {
      if (options.etag) await table.updateEntity(entity, 'Replace', { etag: options.etag });
      else await table.upsertEntity(entity, 'Replace');
    } catch (err) {
      if (isConflict(err)) throw new BatchError('conflict', 'The resource was changed by another request; retry.', { cause: err });
      throw storageError(`writing ${this.#name}`, err);
    }
  }

  /**
   * Creates or replaces a document made from what is stored now, as one step: it is inserted if
   * there is none, else replaced only if unchanged since it was read; when another writer got in
   * between, it is read and made again. So concurrent writers end with exactly one of their
   * documents stored whole (the last to succeed), and exactly one of them is told it created it.
   */
  async write(pk: string, rk: string, make: (existing: Stored<T> | undefined) => T | Promise<T>, now: () => string, attempts = 20): Promise<{ created: boolean }> {
    const table = await this.#table();
    for (let attempt = 1; attempt <= attempts; attempt++) {
      const existing = await this.get(pk, rk);
      const doc = await make(existing);
      if (!existing) {
        if (await this.create(pk, rk, doc, now())) return { created: true };
        continue;
      }
      const entity: DocEntity = { partitionKey: pk, rowKey: rk, doc: JSON.stringify(doc), createdAt: existing.createdAt, updatedAt: now() };
      try {
        await table.updateEntity(entity, 'Replace', { etag: existing.etag });
        return { created: false };
      } catch (err) {
        // Changed (412) or deleted (404) since it was read: read it again.
        if (isConflict(err) || isNotFound(err)) continue;
        throw storageError(`writing ${this.#name}`, err);
      }
    }
    throw new BatchError('conflict', 'The resource is being changed by many requests at once; retry.');
  }

  /** Deletes; returns false if it was not there. */
  async delete(pk: string, rk: string): Promise<boolean> {
    const table = await this.#table();
    try {
      await table.deleteEntity(pk, rk);
      return true;
    } catch (err) {
      if (isNotFound(err)) return false;
      throw storageError(`deleting from ${this.#name}`, err);
    }
  }

  /** All documents of a partition, or of partitions starting with `prefix` when `prefix` is set. */
  async list(filter: { partition?: string; partitionPrefix?: string }): Promise<(Stored<T> & { pk: string; rk: string })[]> {
    const table = await this.#table();
    let query = '';
    if (filter.partition !== undefined) query = `PartitionKey eq '${filter.partition.replace(/'/g, "''")}'`;
    else if (filter.partitionPrefix !== undefined) {
      const p = filter.partitionPrefix.replace(/'/g, "''");
      query = `PartitionKey ge '${p}' and PartitionKey lt '${p}\uffff'`;
    }
    const out: (Stored<T> & { pk: string; rk: string })[] = [];
    try {
      for await (const e of table.listEntities<DocEntity>(query ? { queryOptions: { filter: query } } : {})) {
        out.push({ ...this.#stored(e), pk: e.partitionKey, rk: e.rowKey });
      }
    } catch (err) {
      throw storageError(`listing ${this.#name}`, err);
    }
    return out;
  }
}
