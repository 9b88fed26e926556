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

  /** A table client; the table is created on first use. */
  async table(name: string): Promise<TableClient> {
    let client = this.#tables.get(name);
    if (!client) {
      client = TableClient.fromConnectionString(this.connection, name, { allowInsecureConnection: isInsecure(this.connection) });
      this.#tables.set(name, client);
    }
    if (!this.#ensured.has(name)) {
      try {
        await this.#tableService.createTable(name);
      } catch (err) {
        if ((err as { statusCode?: number }).statusCode !== 409) {
          throw new BatchError('storage_failed', `Could not create table ${name}.`, { cause: err });
        }
      }
      this.#ensured.add(name);
    }
    return client;
  }

  container(name: string): ContainerClient {
    return this.blob.getContainerClient(name);
  }
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
