import { TableClient, TableServiceClient } from '@azure/data-tables';
import { DefaultAzureCredential } from '@azure/identity';
import { BlobServiceClient, type ContainerClient } from '@azure/storage-blob';
import { BatchError } from '../errors.js';

/** Parsed `key=value;...` storage connection string. */
export function parseConnectionString(connection: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of connection.split(';')) {
    const at = part.indexOf('=');
    if (at <= 0) continue;
    out[part.substring(0, at).trim().toLowerCase()] = part.substring(at + 1).trim();
  }
  return out;
}

/** The account a connection string points at, and its blob endpoint. */
export function accountOf(connection: string): { accountName: string; blobEndpoint: string } {
  const parts = parseConnectionString(connection);
  if (parts['usedevelopmentstorage'] === 'true') {
    return { accountName: 'devstoreaccount1', blobEndpoint: 'http://127.0.0.1:10000/devstoreaccount1' };
  }
  const accountName = parts['accountname'] ?? '';
  const protocol = parts['defaultendpointsprotocol'] ?? 'https';
  const suffix = parts['endpointsuffix'] ?? 'core.windows.net';
  const blobEndpoint = (parts['blobendpoint'] ?? `${protocol}://${accountName}.blob.${suffix}`).replace(/\/+$/, '');
  return { accountName, blobEndpoint };
}

function isInsecure(connection: string): boolean {
  const parts = parseConnectionString(connection);
  return parts['usedevelopmentstorage'] === 'true' || /^http:/i.test(parts['tableendpoint'] ?? parts['blobendpoint'] ?? '') || parts['defaultendpointsprotocol'] === 'http';
}

/**
 * Azure Storage clients for one connection string, created once and reused (the SDK clients are
 * safe to share). Works the same against Azurite and Azure.
 */
export class StorageAccount {
  readonly connection: string;
  readonly blob: BlobServiceClient;
  readonly accountName: string;
  readonly blobEndpoint: string;
  readonly #tables = new Map<string, TableClient>();
  readonly #ensured = new Set<string>();
  readonly #tableService: TableServiceClient;

  constructor(connection: string) {
    this.connection = connection;
    try {
      this.blob = BlobServiceClient.fromConnectionString(connection);
      this.#tableService = TableServiceClient.fromConnectionString(connection, { allowInsecureConnection: isInsecure(connection) });
    } catch (err) {
      throw new BatchError('configuration', 'The storage connection string is not valid.', { cause: err });
    }
    const account = accountOf(connection);
    this.accountName = account.accountName || this.blob.accountName;
    this.blobEndpoint = account.blobEndpoint;
  }

  /**
   * A table client. The table is created by the first write that needs it, never by a read: a
   * read of a table that does not exist finds nothing (`getEntity` a 404, `listEntities` no rows,
   * `deleteEntity` a 404), so a request that is refused leaves no table behind (issue 12: a
   * rejected request changes no table or blob).
   */
  table(name: string): Promise<TableClient> {
    let client = this.#tables.get(name);
    if (!client) {
      client = lazyTable(TableClient.fromConnectionString(this.connection, name, { allowInsecureConnection: isInsecure(this.connection) }), () => this.#ensure(name));
      this.#tables.set(name, client);
    }
    return Promise.resolve(client);
  }

  async #ensure(name: string): Promise<void> {
    if (this.#ensured.has(name)) return;
    try {
      await this.#tableService.createTable(name);
    } catch (err) {
      if ((err as { statusCode?: number }).statusCode !== 409) {
        throw new BatchError('storage_failed', `Could not create table ${name}.`, { cause: err });
      }
    }
    this.#ensured.add(name);
  }

  container(name: string): ContainerClient {
    return this.blob.getContainerClient(name);
  }
}

/** The TableClient methods that write an entity: they create the table first (once per process). */
const TABLE_WRITES = new Set<string | symbol>(['createEntity', 'upsertEntity', 'updateEntity', 'submitTransaction']);

/**
 * `client`, with its writes preceded by `ensure` (creating the table) and its listings answering
 * no rows when the table does not exist. Every other method is the client's own.
 */
function lazyTable(client: TableClient, ensure: () => Promise<void>): TableClient {
  return new Proxy(client, {
    get(target, prop) {
      const value: unknown = Reflect.get(target, prop, target);
      if (typeof value !== 'function') return value;
      const method = value as (...args: unknown[]) => unknown;
      if (TABLE_WRITES.has(prop)) {
        return async (...args: unknown[]) => {
          await ensure();
          return method.apply(target, args);
        };
      }
      if (prop === 'listEntities') {
        return (...args: unknown[]) => emptyWhenNoTable(method.apply(target, args) as Listing);
      }
      return method.bind(target);
    },
  });
}

/** A listing that ends (no rows, no pages) when its table does not exist (404 TableNotFound). */
type Listing = ReturnType<TableClient['listEntities']>;

function emptyWhenNoTable(listing: Listing): Listing {
  const guard = <R>(iterator: AsyncIterator<R>): AsyncIterableIterator<R> => ({
    async next(): Promise<IteratorResult<R>> {
      try {
        return await iterator.next();
      } catch (err) {
        if (isNotFound(err)) return { done: true, value: undefined };
        throw err;
      }
    },
    [Symbol.asyncIterator]() {
      return this;
    },
  });
  const items = guard(listing);
  const paged: Listing = {
    next: () => items.next(),
    [Symbol.asyncIterator]: () => paged,
    byPage: (settings) => guard(listing.byPage(settings)),
  };
  return paged;
}

const accounts = new Map<string, StorageAccount>();

/** One StorageAccount per connection string for the life of the process. */
export function storageAccount(connection: string): StorageAccount {
  let account = accounts.get(connection);
  if (!account) {
    account = new StorageAccount(connection);
    accounts.set(connection, account);
  }
  return account;
}

const identityClients = new Map<string, BlobServiceClient>();

/** A blob service reached with the app's managed identity (Azure only). */
export function identityBlobService(accountUrl: string, clientId: string | undefined): BlobServiceClient {
  const key = `${accountUrl}|${clientId ?? ''}`;
  let client = identityClients.get(key);
  if (!client) {
    client = new BlobServiceClient(accountUrl, new DefaultAzureCredential(clientId ? { managedIdentityClientId: clientId } : {}));
    identityClients.set(key, client);
  }
  return client;
}

/** Whether a storage SDK error is a 404. */
export function isNotFound(err: unknown): boolean {
  return (err as { statusCode?: number }).statusCode === 404;
}

/** Whether a storage SDK error says a conditional request's blob is no longer the version asked for (412). */
export function isVersionChanged(err: unknown): boolean {
  return (err as { statusCode?: number }).statusCode === 412;
}

export function isConflict(err: unknown): boolean {
  const status = (err as { statusCode?: number }).statusCode;
  return status === 409 || status === 412;
}
