import type { TableClient, TableEntity, TransactionAction } from '@azure/data-tables';
import type { Clock } from '../clock.js';
import { FnHostError, describeError } from '../errors.js';
import type { BindingCall, InputBindingProvider, OutputBindingProvider } from '../worker/bindings.js';
import type { RpcTypedData } from '../worker/core-types.js';
import { bindingProperty, requiredBindingProperty, statusOf, storageCodeOf } from './binding-properties.js';
import type { StorageClients } from './connections.js';
import { jsonData, outputValueOf } from './typed-data.js';

type Row = Record<string, unknown>;

const TABLE_NAME = /^[A-Za-z][A-Za-z0-9]{2,62}$/;
/** Characters the service does not allow in PartitionKey and RowKey. */
// eslint-disable-next-line no-control-regex
const BAD_KEY_CHARS = /[/\\#?\u0000-\u001F\u007F-\u009F]/;
/** The most entities one batch (entity group transaction) may hold. */
const MAX_BATCH = 100;

function validateTableName(name: string): void {
  if (!TABLE_NAME.test(name) && !/^\$Metrics/.test(name)) {
    throw new FnHostError(
      'ERR_BINDING',
      `Invalid table name: '${name}'. A table name must be 3-63 letters and digits and start with a letter.`,
    );
  }
}

function validateKey(kind: 'PartitionKey' | 'RowKey', value: unknown): string {
  if (typeof value !== 'string') {
    throw new FnHostError('ERR_BINDING', `${kind} must be a string, got ${value === null ? 'null' : typeof value}.`);
  }
  if (BAD_KEY_CHARS.test(value) || value.length > 1024) {
    throw new FnHostError('ERR_BINDING', `Invalid ${kind} '${value}': keys cannot contain '/', '\\', '#', '?' or control characters.`);
  }
  return value;
}

/** Quotes a value for an OData string literal. */
export function odataString(value: string): string {
  return `'${value.replace(/'/g, "''")}'`;
}

/** The SDK's typed values (Int64, Guid, dates, binary) as the JSON the host hands to workers. */
function jsonValue(value: unknown): unknown {
  if (value instanceof Date) return value.toISOString();
  if (value instanceof Uint8Array) return Buffer.from(value).toString('base64');
  if (typeof value === 'object' && value !== null && 'type' in value && 'value' in value) {
    const { type, value: raw } = value;
    if (type === 'Int64' && typeof raw === 'string') {
      const n = Number(raw);
      return Number.isSafeInteger(n) ? n : raw;
    }
    return raw;
  }
  return value;
}

/**
 * An entity as the host's Tables extension hands it to workers: PartitionKey, RowKey and the
 * properties. The extension drops `odata.etag` and `Timestamp` ("V4 compatibility"), and the
 * Tables SDK drops OData metadata and type annotations.
 */
export function entityToJson(entity: Row): Row {
  const out: Row = {};
  for (const [key, value] of Object.entries(entity)) {
    if (key === 'partitionKey') out['PartitionKey'] = value;
    else if (key === 'rowKey') out['RowKey'] = value;
    else if (key === 'timestamp' || key === 'etag' || key.startsWith('odata.')) continue;
    else out[key] = jsonValue(value);
  }
  return out;
}

/**
 * The `table` input binding. With `partitionKey` and `rowKey` it reads one entity (null when
 * missing); otherwise it returns an array of the entities matching `partitionKey` and `filter`,
 * cut to `take` when given. Properties take binding expressions; values inserted into `filter`
 * are escaped as OData string content, as the host does.
 */
export class TableInputBinding implements InputBindingProvider {
  readonly type = 'table';

  constructor(private readonly options: { clients: StorageClients; clock: Clock }) {}

  async resolve(call: BindingCall): Promise<RpcTypedData | null> {
    const clock = this.options.clock;
    const tableName = requiredBindingProperty(call, 'tableName', clock);
    validateTableName(tableName);
    const partitionKey = bindingProperty(call, 'partitionKey', clock);
    const rowKey = bindingProperty(call, 'rowKey', clock);
    const filter = bindingProperty(call, 'filter', clock, (v) => v.replace(/'/g, "''"));
    const takeText = bindingProperty(call, 'take', clock);
    const take = takeText === undefined ? undefined : Number(takeText);
    if (take !== undefined && (!Number.isInteger(take) || take < 0)) {
      throw new FnHostError('ERR_BINDING', `'take' must be a non-negative integer, got '${takeText}'.`);
    }
    const table = this.options.clients.table(call.binding['connection'], tableName);

    if (rowKey !== undefined) {
      if (partitionKey === undefined) {
        throw new FnHostError('ERR_BINDING', `The table binding '${call.bindingName}' has a rowKey but no partitionKey.`);
      }
      if (filter !== undefined || take !== undefined) {
        throw new FnHostError('ERR_BINDING', `The table binding '${call.bindingName}' cannot combine rowKey with filter or take.`);
      }
      try {
        const entity = await table.getEntity<Row>(partitionKey, rowKey);
        return jsonData(entityToJson(entity));
      } catch (err) {
        if (statusOf(err) === 404) return null;
        throw err;
      }
    }

    const clauses: string[] = [];
    if (partitionKey !== undefined) clauses.push(`PartitionKey eq ${odataString(partitionKey)}`);
    if (filter !== undefined) clauses.push(clauses.length > 0 ? `(${filter})` : filter);
    const rows: Row[] = [];
    const limit = take !== undefined && take > 0 ? take : Number.POSITIVE_INFINITY;
    try {
      const query = clauses.length > 0 ? { queryOptions: { filter: clauses.join(' and ') } } : {};
      for await (const entity of table.listEntities<Row>(query)) {
        if (rows.length >= limit) break;
        rows.push(entityToJson(entity));
      }
    } catch (err) {
      // A table that does not exist reads as empty rather than failing every invocation.
      if (statusOf(err) !== 404) throw err;
    }
    return jsonData(rows);
  }
}

interface PendingWrite {
  entity: TableEntity<Row>;
  etag: string | undefined;
}

/** Builds the entity to write from one value the function set, with the binding's default keys. */
export function entityFromValue(value: unknown, defaults: { partitionKey?: string; rowKey?: string }): PendingWrite {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new FnHostError('ERR_BINDING', 'A table output value must be an object (an entity) or an array of objects.');
  }
  const properties: Row = {};
  let partitionKey: unknown = defaults.partitionKey;
  let rowKey: unknown = defaults.rowKey;
  let etag: string | undefined;
  for (const [key, raw] of Object.entries(value as Row)) {
    const lower = key.toLowerCase();
    if (lower === 'partitionkey') partitionKey = raw;
    else if (lower === 'rowkey') rowKey = raw;
    else if (lower === 'etag') etag = typeof raw === 'string' ? raw : undefined;
    else if (lower === 'timestamp' || lower.startsWith('odata.')) continue;
    else if (raw === null || raw === undefined) continue;
    else if (typeof raw === 'string' || typeof raw === 'boolean') properties[key] = raw;
    else if (typeof raw === 'number') {
      // JSON has one number type; integers beyond Int32 must be sent as Int64 or the service refuses them.
      properties[key] =
        Number.isInteger(raw) && (raw > 2_147_483_647 || raw < -2_147_483_648) ? { value: String(raw), type: 'Int64' } : raw;
    } else {
      throw new FnHostError('ERR_BINDING', `Table entity property '${key}' must be a string, number or boolean.`);
    }
  }
  if (partitionKey === undefined || rowKey === undefined) {
    throw new FnHostError(
      'ERR_BINDING',
      'A table entity needs a PartitionKey and a RowKey, set on the entity or on the binding (partitionKey/rowKey).',
    );
  }
  return {
    entity: { ...properties, partitionKey: validateKey('PartitionKey', partitionKey), rowKey: validateKey('RowKey', rowKey) },
    etag,
  };
}

/**
 * The `table` output binding: writes the entity or entities the function set. Without an ETag an
 * entity is inserted (an existing one is a conflict, as in the host); ETag `*` replaces whatever is
 * there and any other ETag replaces only that version. Inserts go in batches per partition, and a
 * table that does not exist is created.
 */
export class TableOutputBinding implements OutputBindingProvider {
  readonly type = 'table';

  constructor(private readonly options: { clients: StorageClients; clock: Clock }) {}

  async write(call: BindingCall, data: RpcTypedData): Promise<void> {
    const value = outputValueOf(data);
    let items: unknown[];
    if (value.kind === 'none') return;
    if (value.kind === 'json') items = Array.isArray(value.value) ? value.value : [value.value];
    else if (value.kind === 'text') {
      let parsed: unknown;
      try {
        parsed = JSON.parse(value.text);
      } catch (err) {
        throw new FnHostError('ERR_BINDING', 'A table output value must be an object or an array of objects.', { cause: err });
      }
      items = Array.isArray(parsed) ? parsed : [parsed];
    } else throw new FnHostError('ERR_BINDING', 'A table output value must be an object or an array of objects, not bytes.');
    if (items.length === 0) return;

    const clock = this.options.clock;
    const tableName = requiredBindingProperty(call, 'tableName', clock);
    validateTableName(tableName);
    const partitionKey = bindingProperty(call, 'partitionKey', clock);
    const rowKey = bindingProperty(call, 'rowKey', clock);
    const defaults = { ...(partitionKey === undefined ? {} : { partitionKey }), ...(rowKey === undefined ? {} : { rowKey }) };
    const writes = items.map((item) => entityFromValue(item, defaults));
    const table = this.options.clients.table(call.binding['connection'], tableName);
    await withTable(table, () => writeAll(table, writes));
  }
}

async function withTable(table: TableClient, work: () => Promise<void>): Promise<void> {
  try {
    await work();
  } catch (err) {
    const missingTable =
      statusOf(err) === 404 &&
      (storageCodeOf(err) === 'TableNotFound' || /TableNotFound|table specified does not exist/i.test(describeError(err)));
    if (!missingTable) throw err;
    await table.createTable();
    await work();
  }
}

async function writeAll(table: TableClient, writes: PendingWrite[]): Promise<void> {
  const inserts = new Map<string, TransactionAction[]>();
  for (const { entity, etag } of writes) {
    if (etag === '*') await table.upsertEntity(entity, 'Replace');
    else if (etag !== undefined) await table.updateEntity(entity, 'Replace', { etag });
    else {
      const list = inserts.get(entity.partitionKey) ?? [];
      list.push(['create', entity]);
      inserts.set(entity.partitionKey, list);
    }
  }
  for (const actions of inserts.values()) {
    for (let i = 0; i < actions.length; i += MAX_BATCH) {
      const batch = actions.slice(i, i + MAX_BATCH);
      const single = batch.length === 1 ? batch[0] : undefined;
      // One entity needs no transaction, and a plain insert reports a conflict more clearly.
      if (single) await table.createEntity(single[1]);
      else await table.submitTransaction(batch);
    }
  }
}
