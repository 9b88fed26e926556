import { TableClient, TableServiceClient } from '@azure/data-tables';
import { BlobServiceClient } from '@azure/storage-blob';
import { QueueServiceClient } from '@azure/storage-queue';
import { FnHostError } from '../errors.js';
import { devConnectionString } from './azurite.js';

/** The connection name a storage binding uses when it names none (`Storage` → `AzureWebJobsStorage`). */
export const DEFAULT_CONNECTION = 'Storage';

/** Ports the storage emulator listens on when a connection string says `UseDevelopmentStorage=true`. */
const DEV_PORTS = { blob: 10000, queue: 10001, table: 10002 };

/**
 * Finds the connection string a binding's `connection` names. The host looks for the app setting
 * `AzureWebJobs<name>` first and `<name>` second, so `connection: 'Storage'` and
 * `connection: 'AzureWebJobsStorage'` both reach `AzureWebJobsStorage`. Identity-based connections
 * (`<name>__serviceUri`) are not supported.
 */
export function connectionStringFor(
  connection: unknown,
  settings: Readonly<Record<string, string | undefined>> = process.env,
): string {
  const name = typeof connection === 'string' && connection.trim() !== '' ? connection.trim() : DEFAULT_CONNECTION;
  const value = settings[`AzureWebJobs${name}`] || settings[name];
  if (!value) {
    const identity = Object.keys(settings).some((k) => k.toLowerCase().startsWith(`${name.toLowerCase()}__`));
    throw new FnHostError(
      'ERR_CONFIG',
      identity
        ? `Storage connection '${name}' is identity-based (${name}__...); fnhost needs a connection string in the app setting '${name}'.`
        : `Storage account connection string '${name === DEFAULT_CONNECTION ? 'AzureWebJobsStorage' : name}' does not exist. Make sure that it is a defined App Setting.`,
      { details: { connection: name } },
    );
  }
  return normaliseConnectionString(value);
}

/**
 * Expands `UseDevelopmentStorage=true[;DevelopmentStorageProxyUri=...]` into an explicit
 * connection string, because the Tables SDK does not understand the shorthand.
 */
export function normaliseConnectionString(value: string): string {
  const trimmed = value.trim();
  if (!/^UseDevelopmentStorage=true/i.test(trimmed)) return trimmed;
  const proxy = /DevelopmentStorageProxyUri=([^;]+)/i.exec(trimmed)?.[1];
  let host = '127.0.0.1';
  if (proxy) {
    try {
      host = new URL(proxy).hostname;
    } catch {
      throw new FnHostError('ERR_CONFIG', `DevelopmentStorageProxyUri '${proxy}' is not a URL.`);
    }
  }
  return devConnectionString(host, DEV_PORTS);
}

/**
 * SDK clients per connection string, made once and shared by every binding and trigger: clients
 * hold HTTP agents, and making one per invocation would leak sockets under load.
 */
export class StorageClients {
  readonly #blob = new Map<string, BlobServiceClient>();
  readonly #queue = new Map<string, QueueServiceClient>();
  readonly #tableService = new Map<string, TableServiceClient>();
  readonly #tables = new Map<string, TableClient>();
  readonly #settings: () => Readonly<Record<string, string | undefined>>;

  /** @param settings where app settings come from; process.env unless a test says otherwise. */
  constructor(settings: () => Readonly<Record<string, string | undefined>> = () => process.env) {
    this.#settings = settings;
  }

  /** The connection string for a binding's `connection` property. */
  connectionString(connection: unknown): string {
    return connectionStringFor(connection, this.#settings());
  }

  /** The client in `cache` for a binding's connection, created on first use. */
  #cached<T>(cache: Map<string, T>, connection: unknown, create: (cs: string) => T): T {
    const cs = this.connectionString(connection);
    let client = cache.get(cs);
    if (!client) {
      client = create(cs);
      cache.set(cs, client);
    }
    return client;
  }

  blobService(connection: unknown): BlobServiceClient {
    return this.#cached(this.#blob, connection, (cs) => BlobServiceClient.fromConnectionString(cs));
  }

  queueService(connection: unknown): QueueServiceClient {
    return this.#cached(this.#queue, connection, (cs) => QueueServiceClient.fromConnectionString(cs));
  }

  tableService(connection: unknown): TableServiceClient {
    return this.#cached(this.#tableService, connection, (cs) => TableServiceClient.fromConnectionString(cs, { allowInsecureConnection: allowsHttp(cs) }));
  }

  table(connection: unknown, tableName: string): TableClient {
    const cs = this.connectionString(connection);
    const key = `${cs}\n${tableName}`;
    let client = this.#tables.get(key);
    if (!client) {
      client = TableClient.fromConnectionString(cs, tableName, { allowInsecureConnection: allowsHttp(cs) });
      this.#tables.set(key, client);
    }
    return client;
  }
}

/** The Tables SDK refuses http endpoints unless told; Azurite and other local emulators use http. */
function allowsHttp(connectionString: string): boolean {
  return /DefaultEndpointsProtocol=http(;|$)/i.test(connectionString) || /TableEndpoint=http:/i.test(connectionString);
}
