import { rowJoinOf, rowJoinProblem } from '../scoring/columns.js';
import { randomBytes } from 'node:crypto';
import type { ContainerClient } from '@azure/storage-blob';
import { componentRefsIn, componentsWithin, dataUrisOf, resolvePipeline } from '../components/graph.js';
import { type ComponentResolver, normalizeComponent } from '../components/normalize.js';
import { type ComponentBody, componentBody } from '../components/schemas.js';
import {
  type AnyDeploymentDoc,
  type ComponentDoc,
  type ComponentRef,
  type PipelineComponentDoc,
  type PipelineDeploymentDoc,
  type ResolvedPipeline,
  isComponentRef,
} from '../components/types.js';
import { type AppConfig, appSetting } from '../config.js';
import { type DataUri, datastoreUri, encodePath, parseDataUri } from '../data/data-uri.js';
import { BatchError, notFound } from '../errors.js';
import { folderContent } from '../jobs/local-files.js';
import type {
  DataAssetBody,
  DatastoreBody,
  DeploymentBody,
  EndpointBody,
  ModelBody,
  ModelDeploymentBody,
  PipelineDeploymentBody,
} from '../schemas/resources.js';
import { parseOrThrow } from '../schemas/validate.js';
import { identityBlobService, isNotFound, storageAccount, type StorageAccount } from '../storage/clients.js';
import { DocTable, type Stored } from '../storage/doc-table.js';
import { checkAccountUrl, cloudAccountUrl, connectionAccountUrl, type EndpointPolicy, endpointPolicy, isEndpointSuffix } from '../storage/endpoints.js';
import { TRIGGER_PARTITION_PREFIX, type TriggerRuleDoc, triggerPartition } from './triggers.js';
import { checkVersionName, LATEST, newestVersion, parseAssetRef, refText } from './versions.js';
import type { DataAssetDoc, DatastoreCredentials, DatastoreDoc, DeploymentDoc, EndpointDoc, ModelDoc, ModelRef } from './types.js';

export const WORKSPACE_DATASTORE = 'workspaceblobstore';

/**
 * Where data is, as resolved once when a resource or job is created and kept from then on: the
 * datastore as it was registered then (a datastore re-registered under the same name later does not
 * move a running job), the container, and the decoded blob path (never decoded again).
 */
export interface DataLocation {
  datastore: DatastoreDoc;
  container: string;
  /** Blob name or prefix inside the container, decoded, without a leading slash. */
  path: string;
}

/** Where a data path resolved to. */
export interface ResolvedData {
  datastore: DatastoreDoc;
  container: ContainerClient;
  /** Blob name or prefix inside the container, decoded, without a leading slash. */
  path: string;
  type: 'uri_folder' | 'uri_file';
  /**
   * Whether `type` was stated (by the caller or a data asset) rather than read off the path: with
   * none stated, a path without a trailing "/" may still name a folder (Azure ML's default input
   * type is uri_folder), which only storage can tell.
   */
  typeGiven: boolean;
  /** The canonical form, azureml://datastores/{name}/paths/{path} (or the blob URL), encoded once. */
  uri: string;
  location: DataLocation;
}

type Clock = () => Date;

/**
 * Turns a pipeline job into the pipeline component it ran (Azure ML's `job_definition` of a
 * pipeline deployment). Wired by whoever owns jobs; errors name `field`.
 */
export type JobDefinitionResolver = (jobId: string, field: string) => Promise<PipelineComponentDoc>;

/** A component reference or inline component, resolved: `ref` is set for a registered version. */
export interface ResolvedComponent {
  ref?: ComponentRef | undefined;
  doc: ComponentDoc;
}

function keyOfComponent(ref: ComponentRef): string {
  return `${ref.name}:${ref.version}`;
}

function invalid(field: string, message: string, code: 'validation_failed' | 'unsupported' = 'validation_failed'): BatchError {
  return new BatchError(code, `${field}: ${message}.`, { issues: [{ field, message }] });
}

function keyOfModel(ref: ModelRef): string {
  return `${ref.name}:${ref.version}`;
}

/**
 * The workspace registry: datastores, data assets, models, endpoints and deployments, kept as JSON
 * documents in one Azure table. It enforces the rules between them (references exist, versions
 * are immutable, a model in use or a default deployment cannot be deleted).
 */
export class Registry {
  readonly #config: AppConfig;
  readonly #account: StorageAccount;
  readonly #endpoints: EndpointPolicy;
  readonly #docs: DocTable<unknown>;
  readonly #now: Clock;
  readonly #jobDefinition: JobDefinitionResolver | undefined;

  constructor(options: { config: AppConfig; now?: Clock; jobDefinition?: JobDefinitionResolver }) {
    this.#config = options.config;
    this.#account = storageAccount(options.config.storageConnection);
    this.#endpoints = endpointPolicy(options.config.storageConnection);
    this.#docs = new DocTable(this.#account, `${options.config.tablePrefix}registry`);
    this.#now = options.now ?? (() => new Date());
    this.#jobDefinition = options.jobDefinition;
  }

  #stamp(): string {
    return this.#now().toISOString();
  }

  // ------------------------------------------------------------------ datastores

  /** The built-in datastore: a container on the app's own storage account. */
  workspaceDatastore(): DatastoreDoc {
    return {
      name: WORKSPACE_DATASTORE,
      type: 'azure_blob',
      description: "The app's own storage account.",
      tags: {},
      account_name: this.#account.accountName,
      container_name: this.#config.workspaceContainer,
      endpoint: 'core.windows.net',
      protocol: this.#account.blobEndpoint.startsWith('http:') ? 'http' : 'https',
      credentials: { type: 'app_storage' },
    };
  }

  async getDatastore(name: string): Promise<Stored<DatastoreDoc> | undefined> {
    if (name === WORKSPACE_DATASTORE) {
      const epoch = new Date(0).toISOString();
      return { doc: this.workspaceDatastore(), createdAt: epoch, updatedAt: epoch, etag: '' };
    }
    return (await this.#docs.get('datastore', name)) as Stored<DatastoreDoc> | undefined;
  }

  async requireDatastore(name: string): Promise<DatastoreDoc> {
    const found = await this.getDatastore(name);
    if (!found) throw notFound('Datastore', name, { field: 'name' });
    return found.doc;
  }

  async listDatastores(): Promise<Stored<DatastoreDoc>[]> {
    const own = (await this.#docs.list({ partition: 'datastore' })) as unknown as Stored<DatastoreDoc>[];
    const builtin = await this.getDatastore(WORKSPACE_DATASTORE);
    return builtin ? [builtin, ...own] : own;
  }

  async putDatastore(name: string, body: DatastoreBody): Promise<{ stored: Stored<DatastoreDoc>; created: boolean }> {
    if (name === WORKSPACE_DATASTORE) {
      throw new BatchError('conflict', `'${WORKSPACE_DATASTORE}' is built in and cannot be changed.`, { details: { field: 'name' } });
    }
    let credentials: DatastoreCredentials = body.credentials;
    let emulator: boolean;
    if (body.credentials.type === 'connection_string') {
      const connection = appSetting(body.credentials.setting);
      if (connection === undefined) {
        throw new BatchError('validation_failed', `The app setting '${body.credentials.setting}' is not set.`, {
          issues: [{ field: 'credentials.setting', message: `app setting '${body.credentials.setting}' is not set` }],
        });
      }
      emulator = connectionAccountUrl(connection, 'credentials.setting', this.#endpoints, body.account_name).emulator;
    } else {
      const given = body.credentials.account_url ?? cloudAccountUrl(body.account_name, body.endpoint);
      const checked = checkAccountUrl(given, body.credentials.account_url === undefined ? 'account_name' : 'credentials.account_url', this.#endpoints, { account: body.account_name, suffix: body.endpoint });
      emulator = checked.emulator;
      credentials = { type: 'managed_identity', account_url: checked.url, client_id: body.credentials.client_id };
    }
    if (body.protocol === 'http' && !emulator) {
      throw new BatchError('validation_failed', 'protocol: an Azure storage account is reached over https only (http is for the local emulator).', {
        issues: [{ field: 'protocol', message: 'must be https for an Azure storage account' }],
      });
    }
    const doc: DatastoreDoc = {
      name,
      type: 'azure_blob',
      description: body.description,
      tags: body.tags,
      account_name: body.account_name,
      container_name: body.container_name,
      endpoint: body.endpoint,
      protocol: body.protocol,
      credentials,
    };
    const { created } = await this.#docs.write('datastore', name, () => doc, () => this.#stamp());
    const stored = (await this.#docs.get('datastore', name)) as Stored<DatastoreDoc>;
    return { stored, created };
  }

  async deleteDatastore(name: string): Promise<void> {
    if (name === WORKSPACE_DATASTORE) throw new BatchError('conflict', `'${WORKSPACE_DATASTORE}' is built in and cannot be deleted.`, { details: { field: 'name' } });
    if (!(await this.#docs.get('datastore', name))) throw notFound('Datastore', name, { field: 'name' });
    const prefix = `azureml://datastores/${name}/`;
    const users = [
      ...(await this.listAllModels()).filter((m) => m.doc.path.startsWith(prefix)).map((m) => `model ${keyOfModel(m.doc)}`),
      ...(await this.listAllDataAssets()).filter((d) => d.doc.path.startsWith(prefix)).map((d) => `data ${d.doc.name}:${d.doc.version}`),
      ...(await this.listComponents()).filter((c) => dataUrisOf(c.doc).some((u) => u.startsWith(prefix))).map((c) => `component ${c.doc.name ?? ''}:${c.doc.version ?? ''}`),
      ...(await this.listAllDeployments())
        .filter((d) => d.doc.type === 'pipeline' && (d.doc.settings.default_datastore === name || (!isComponentRef(d.doc.component) && dataUrisOf(d.doc.component).some((u) => u.startsWith(prefix)))))
        .map((d) => `deployment ${d.doc.endpoint_name}/${d.doc.name}`),
      ...(await this.#triggers()).filter((t) => t.source.datastore === name).map((t) => `trigger ${t.endpoint_name}/${t.name}`),
    ];
    if (users.length > 0) {
      throw new BatchError('conflict', `Datastore '${name}' is used by ${users.join(', ')}.`, { details: { used_by: users, field: 'name' } });
    }
    await this.#docs.delete('datastore', name);
  }

  /**
   * The blob endpoint of a datastore's account, checked by storage/endpoints.ts each time (a stored
   * datastore, or a setting changed since, that reaches anywhere else is a configuration error).
   */
  accountUrlOf(datastore: DatastoreDoc): string {
    const creds = datastore.credentials;
    try {
      switch (creds.type) {
        case 'app_storage':
          return this.#account.blobEndpoint;
        case 'connection_string': {
          const connection = appSetting(creds.setting);
          if (!connection) throw new BatchError('configuration', `Datastore '${datastore.name}' uses app setting '${creds.setting}', which is not set.`);
          return connectionAccountUrl(connection, 'credentials.setting', this.#endpoints, datastore.account_name).url;
        }
        case 'managed_identity': {
          const suffix = isEndpointSuffix(datastore.endpoint) ? datastore.endpoint : undefined;
          const given = creds.account_url ?? (suffix ? cloudAccountUrl(datastore.account_name, suffix) : '');
          return checkAccountUrl(given, 'credentials.account_url', this.#endpoints, { account: datastore.account_name, suffix: datastore.endpoint }).url;
        }
      }
    } catch (err) {
      if (err instanceof BatchError && err.code === 'configuration') throw err;
      throw new BatchError('configuration', `Datastore '${datastore.name}' does not reach an allowed storage endpoint: ${(err as Error).message}`, { cause: err });
    }
  }

  /** The blob container of a datastore, reached with its credentials at its checked endpoint. */
  containerOf(datastore: DatastoreDoc, containerName = datastore.container_name): ContainerClient {
    const creds = datastore.credentials;
    const accountUrl = this.accountUrlOf(datastore);
    switch (creds.type) {
      case 'app_storage':
        return this.#account.container(containerName);
      case 'connection_string':
        return storageAccount(appSetting(creds.setting) ?? '').container(containerName);
      case 'managed_identity':
        return identityBlobService(accountUrl, creds.client_id).getContainerClient(containerName);
    }
  }

  /** The container of a location resolved earlier, reached with the credentials it was resolved with. */
  open(location: DataLocation): ContainerClient {
    return this.containerOf(location.datastore, location.container);
  }

  /** A location resolved earlier, as data to read or write (no name is looked up again). */
  reopen(location: DataLocation, type: 'uri_folder' | 'uri_file', uri: string): ResolvedData {
    return { datastore: location.datastore, container: this.open(location), path: location.path, type, typeGiven: true, uri, location };
  }

  // ------------------------------------------------------------------ data resolution

  /**
   * Resolves a data path to a container and blob path. `field` names the request field in errors;
   * paths outside registered datastores and accounts are refused (no other URL is ever fetched).
   */
  async resolveData(text: string, field: string, expected?: 'uri_folder' | 'uri_file', depth = 0): Promise<ResolvedData> {
    const uri: DataUri = parseDataUri(text, field);
    const typeOf = (path: string): 'uri_folder' | 'uri_file' => expected ?? (path === '' || path.endsWith('/') ? 'uri_folder' : 'uri_file');
    switch (uri.kind) {
      case 'datastore': {
        const found = await this.getDatastore(uri.datastore);
        if (!found) throw notFound('Datastore', uri.datastore, { field });
        return {
          datastore: found.doc,
          container: this.containerOf(found.doc),
          path: uri.path,
          type: typeOf(uri.path),
          typeGiven: expected !== undefined,
          uri: datastoreUri(uri.datastore, uri.path),
          location: { datastore: found.doc, container: found.doc.container_name, path: uri.path },
        };
      }
      case 'blob-url': {
        // Matched by the account's endpoint (scheme, host, and the account of a path-style URL):
        // the URL itself is never contacted, the registered datastore's client is.
        const stores = await this.listDatastores();
        const sameAccount = stores.filter((s) => {
          try {
            return this.accountUrlOf(s.doc) === uri.base;
          } catch {
            return false;
          }
        });
        const exact = sameAccount.find((s) => s.doc.container_name === uri.container) ?? sameAccount[0];
        if (!exact) {
          throw new BatchError(
            'path_outside_datastores',
            `${field}: storage account '${uri.account}' is not registered. Register a datastore for it first.`,
            { issues: [{ field, message: `account '${uri.account}' is not a registered datastore account` }] },
          );
        }
        return {
          datastore: exact.doc,
          container: this.containerOf(exact.doc, uri.container),
          path: uri.path,
          type: typeOf(uri.path),
          typeGiven: expected !== undefined,
          // Rebuilt from the decoded parts, so it is encoded exactly once whatever the caller sent.
          uri: exact.doc.container_name === uri.container ? datastoreUri(exact.doc.name, uri.path) : `${uri.base}/${uri.container}/${encodePath(uri.path)}`,
          location: { datastore: exact.doc, container: uri.container, path: uri.path },
        };
      }
      case 'asset': {
        if (depth > 3) throw new BatchError('validation_failed', `${field}: data assets refer to each other in a loop.`);
        const asset = await this.getDataAsset(uri.name, uri.version);
        if (!asset) throw notFound('Data asset', refText(uri), { field });
        const doc = asset.doc;
        if (expected !== undefined && expected !== doc.type) {
          throw new BatchError('validation_failed', `${field}: data asset ${doc.name}:${doc.version} is a ${doc.type}, not a ${expected}.`, {
            issues: [{ field, message: `the data asset is a ${doc.type}` }],
          });
        }
        return this.resolveData(doc.path, field, doc.type, depth + 1);
      }
    }
  }

  // ------------------------------------------------------------------ data assets

  /** A data asset version; `latest` is the newest (registry/versions.ts). */
  async getDataAsset(name: string, version: string): Promise<Stored<DataAssetDoc> | undefined> {
    return version === LATEST ? newestVersion(await this.listDataAssetVersions(name)) : ((await this.#docs.get(`data:${name}`, version)) as Stored<DataAssetDoc> | undefined);
  }

  async listDataAssetVersions(name: string): Promise<Stored<DataAssetDoc>[]> {
    return (await this.#docs.list({ partition: `data:${name}` })) as unknown as Stored<DataAssetDoc>[];
  }

  async listAllDataAssets(): Promise<Stored<DataAssetDoc>[]> {
    return (await this.#docs.list({ partitionPrefix: 'data:' })) as unknown as Stored<DataAssetDoc>[];
  }

  /** Creates an immutable version; the same body again is accepted, a different one is a conflict. */
  async createDataAsset(name: string, version: string, body: DataAssetBody): Promise<{ stored: Stored<DataAssetDoc>; created: boolean }> {
    checkVersionName(version);
    const resolved = await this.resolveData(body.path, 'path', body.type);
    const doc: DataAssetDoc = { name, version, type: body.type, path: resolved.uri, description: body.description, tags: body.tags };
    return this.#createVersion(`data:${name}`, version, doc, `Data asset '${name}' version '${version}'`);
  }

  async deleteDataAsset(name: string, version: string): Promise<void> {
    if (!(await this.#docs.delete(`data:${name}`, version))) throw notFound('Data asset', `${name}:${version}`, { field: 'version' });
  }

  async #createVersion<T>(pk: string, rk: string, doc: T, what: string): Promise<{ stored: Stored<T>; created: boolean }> {
    const created = await this.#docs.create(pk, rk, doc, this.#stamp());
    const stored = (await this.#docs.get(pk, rk)) as Stored<T>;
    if (!created && JSON.stringify(stored.doc) !== JSON.stringify(doc)) {
      throw new BatchError('conflict', `${what} already exists with different content. Versions are immutable: use a new version.`, { details: { field: 'version' } });
    }
    return { stored, created };
  }

  // ------------------------------------------------------------------ models

  /** A model version; `latest` is the newest (registry/versions.ts). */
  async getModel(name: string, version: string): Promise<Stored<ModelDoc> | undefined> {
    return version === LATEST ? newestVersion(await this.listModelVersions(name)) : ((await this.#docs.get(`model:${name}`, version)) as Stored<ModelDoc> | undefined);
  }

  async listModelVersions(name: string): Promise<Stored<ModelDoc>[]> {
    return (await this.#docs.list({ partition: `model:${name}` })) as unknown as Stored<ModelDoc>[];
  }

  async listAllModels(): Promise<Stored<ModelDoc>[]> {
    return (await this.#docs.list({ partitionPrefix: 'model:' })) as unknown as Stored<ModelDoc>[];
  }

  async createModel(name: string, version: string, body: ModelBody): Promise<{ stored: Stored<ModelDoc>; created: boolean }> {
    checkVersionName(version);
    const resolved = await this.resolveData(body.path, 'path');
    await this.#checkModelFiles(resolved);
    const doc: ModelDoc = {
      name,
      version,
      type: body.type,
      path: resolved.uri,
      description: body.description,
      tags: body.tags,
      properties: body.properties,
    };
    return this.#createVersion(`model:${name}`, version, doc, `Model '${name}' version '${version}'`);
  }

  /**
   * A model's path must hold files when it is registered (as a scoring script must be in its code
   * folder): what it holds is read as a job reads it (`folderContent`: the blob it names, else every
   * blob under it), so a model accepted here is one a job can load. A 400 naming `path` otherwise.
   */
  async #checkModelFiles(resolved: ResolvedData): Promise<void> {
    let count: number;
    try {
      count = (await folderContent(this, resolved.location)).files.length;
    } catch (err) {
      if (!isNotFound(err)) throw new BatchError('storage_failed', `Could not read the model's path ${resolved.uri}.`, { cause: err });
      count = 0;
    }
    if (count === 0) {
      throw new BatchError('validation_failed', `path: the model's path ${resolved.uri} holds no files.`, { issues: [{ field: 'path', message: `no files at ${resolved.uri}` }] });
    }
  }

  async deleteModel(name: string, version: string): Promise<void> {
    // Deletes name a version exactly: `latest` is never one (registry/versions.ts).
    if (!(await this.#docs.get(`model:${name}`, version))) throw notFound('Model', `${name}:${version}`, { field: 'version' });
    const usesModel = (doc: ComponentDoc): boolean => componentsWithin(doc).some((c) => c.type === 'parallel' && c.model.name === name && c.model.version === version);
    const deployments = await this.listAllDeployments();
    const users = [
      ...deployments
        .filter((d) => (d.doc.type === 'pipeline' ? !isComponentRef(d.doc.component) && usesModel(d.doc.component) : d.doc.model.name === name && d.doc.model.version === version))
        .map((d) => `${d.doc.endpoint_name}/${d.doc.name}`),
    ];
    const components = (await this.listComponents()).filter((c) => usesModel(c.doc)).map((c) => `component ${c.doc.name ?? ''}:${c.doc.version ?? ''}`);
    if (users.length > 0 || components.length > 0) {
      const by = [...(users.length > 0 ? [`deployment(s) ${users.join(', ')}`] : []), ...components].join(', ');
      throw new BatchError('conflict', `Model '${name}:${version}' is used by ${by}.`, {
        details: { used_by: [...users, ...components], field: 'version' },
      });
    }
    await this.#docs.delete(`model:${name}`, version);
  }

  /** Resolves azureml:{name}:{version}, {name}:{version}, azureml:{name}@latest or azureml:{name}:latest. */
  async resolveModelRef(text: string, field: string): Promise<ModelDoc> {
    const ref = parseAssetRef(text.replace(/^azureml:/, ''));
    if (!ref) {
      throw new BatchError('validation_failed', `${field}: use azureml:{name}:{version} or azureml:{name}@latest.`, {
        issues: [{ field, message: 'must be azureml:{name}:{version} or azureml:{name}@latest' }],
      });
    }
    const found = await this.getModel(ref.name, ref.version);
    if (!found) throw notFound('Model', refText(ref), { field });
    return found.doc;
  }

  // ------------------------------------------------------------------ endpoints

  async getEndpoint(name: string): Promise<Stored<EndpointDoc> | undefined> {
    return (await this.#docs.get('endpoint', name)) as Stored<EndpointDoc> | undefined;
  }

  async requireEndpoint(name: string): Promise<Stored<EndpointDoc>> {
    const found = await this.getEndpoint(name);
    if (!found) throw notFound('Endpoint', name, { field: 'endpoint' });
    return found;
  }

  async listEndpoints(): Promise<Stored<EndpointDoc>[]> {
    return (await this.#docs.list({ partition: 'endpoint' })) as unknown as Stored<EndpointDoc>[];
  }

  async putEndpoint(name: string, body: EndpointBody): Promise<{ stored: Stored<EndpointDoc>; created: boolean }> {
    const requested = body.defaults?.deployment_name;
    // Made from what is stored when it is written (its uid, its default), so concurrent PUTs
    // never mix: see DocTable.write.
    const { created } = await this.#docs.write(
      'endpoint',
      name,
      async (found): Promise<EndpointDoc> => {
        const existing = found as Stored<EndpointDoc> | undefined;
        const defaultName = requested === undefined ? (existing?.doc.defaults.deployment_name ?? null) : requested;
        if (requested) {
          if (!existing || !(await this.getAnyDeployment(name, requested))) {
            throw notFound('Deployment', `${name}/${requested}`, { field: 'defaults.deployment_name' });
          }
        }
        const uid = existing ? existing.doc.uid : randomBytes(8).toString('hex');
        return { name, ...(uid ? { uid } : {}), description: body.description, tags: body.tags, defaults: { deployment_name: defaultName } };
      },
      () => this.#stamp(),
    );
    return { stored: (await this.getEndpoint(name)) as Stored<EndpointDoc>, created };
  }

  /** Deletes the endpoint and its deployments, as Azure ML does. */
  async deleteEndpoint(name: string): Promise<void> {
    await this.requireEndpoint(name);
    for (const d of await this.listDeployments(name)) await this.#docs.delete(`deployment:${name}`, d.doc.name);
    // Its trigger rules go with it (they name its incarnation, so any left behind are never used).
    for (const t of await this.#docs.list({ partition: triggerPartition(name) })) await this.#docs.delete(triggerPartition(name), t.rk);
    await this.#docs.delete('endpoint', name);
  }

  // ------------------------------------------------------------------ deployments

  /**
   * A model deployment, the kind jobs run today. A pipeline deployment under the name is a 400
   * (`unsupported`) rather than a model deployment it is not; {@link getAnyDeployment} returns both.
   */
  async getDeployment(endpoint: string, name: string): Promise<Stored<DeploymentDoc> | undefined> {
    const found = await this.getAnyDeployment(endpoint, name);
    if (found?.doc.type === 'pipeline') {
      throw new BatchError('unsupported', `Deployment '${endpoint}/${name}' is a pipeline deployment; jobs of pipeline deployments are not available yet.`, {
        details: { deployment: name, type: 'pipeline' },
      });
    }
    return found as Stored<DeploymentDoc> | undefined;
  }

  /** A deployment of either type. */
  async getAnyDeployment(endpoint: string, name: string): Promise<Stored<AnyDeploymentDoc> | undefined> {
    return (await this.#docs.get(`deployment:${endpoint}`, name)) as Stored<AnyDeploymentDoc> | undefined;
  }

  async listDeployments(endpoint: string): Promise<Stored<AnyDeploymentDoc>[]> {
    return (await this.#docs.list({ partition: `deployment:${endpoint}` })) as unknown as Stored<AnyDeploymentDoc>[];
  }

  async listAllDeployments(): Promise<Stored<AnyDeploymentDoc>[]> {
    return (await this.#docs.list({ partitionPrefix: 'deployment:' })) as unknown as Stored<AnyDeploymentDoc>[];
  }

  /**
   * The canonical URI of a code folder, once `script` is found in it (the check a deployment's
   * `code_configuration.scoring_script` and a component's `entry_script` get).
   */
  async #resolveCode(codeText: string, script: string, codeField: string, scriptField: string): Promise<string> {
    const resolved = await this.resolveData(codeText, codeField, 'uri_folder');
    const blob = resolved.container.getBlobClient(`${resolved.path.replace(/\/?$/, '/')}${script}`);
    if (!(await blob.exists())) {
      const what = scriptField.endsWith('scoring_script') ? 'scoring script' : 'entry script';
      throw new BatchError('validation_failed', `The ${what} '${script}' is not in ${resolved.uri}.`, {
        issues: [{ field: scriptField, message: `not found in ${resolved.uri}` }],
      });
    }
    return resolved.uri;
  }

  /**
   * Creates or replaces a deployment. `type: model` (the default) as before; `type: pipeline`
   * resolves its component (a reference pinned to the version it names now, or an inline pipeline
   * component validated in full) or its `job_definition` (through the resolver given to the
   * constructor), and checks `settings.default_datastore` exists.
   */
  async putDeployment(endpoint: string, name: string, body: DeploymentBody): Promise<{ stored: Stored<AnyDeploymentDoc>; created: boolean }> {
    await this.requireEndpoint(endpoint);
    const doc = body.type === 'pipeline' ? await this.#pipelineDeployment(endpoint, name, body) : await this.#modelDeployment(endpoint, name, body);
    const { created } = await this.#docs.write(`deployment:${endpoint}`, name, () => doc, () => this.#stamp());
    return { stored: (await this.getAnyDeployment(endpoint, name)) as Stored<AnyDeploymentDoc>, created };
  }

  async #modelDeployment(endpoint: string, name: string, body: ModelDeploymentBody): Promise<DeploymentDoc> {
    const model = await this.resolveModelRef(body.model, 'model');
    if (model.type === 'custom_model' && !body.code_configuration) {
      throw new BatchError('validation_failed', 'A custom_model deployment needs code_configuration with a scoring script.', {
        issues: [{ field: 'code_configuration', message: 'required for custom_model models' }],
      });
    }
    const joinProblem = rowJoinProblem(rowJoinOf(body.settings), { script: body.code_configuration !== undefined, field: 'settings' });
    if (joinProblem) throw invalid(joinProblem.field, joinProblem.message);
    let code: DeploymentDoc['code_configuration'];
    if (body.code_configuration) {
      const { code: folder, scoring_script } = body.code_configuration;
      code = { code: await this.#resolveCode(folder, scoring_script, 'code_configuration.code', 'code_configuration.scoring_script'), scoring_script };
    }
    return {
      name,
      endpoint_name: endpoint,
      type: 'model',
      description: body.description,
      tags: body.tags,
      model: { name: model.name, version: model.version },
      code_configuration: code,
      resources: body.resources,
      settings: body.settings,
      split: body.split,
    };
  }

  async #pipelineDeployment(endpoint: string, name: string, body: PipelineDeploymentBody): Promise<PipelineDeploymentDoc> {
    let component: PipelineDeploymentDoc['component'];
    let jobDefinition: string | undefined;
    if (body.component !== undefined) {
      const resolved = await this.resolveComponentRef(body.component, 'component');
      if (resolved.doc.type !== 'pipeline') {
        const what = resolved.ref ? `${keyOfComponent(resolved.ref)} is a ${resolved.doc.type} component` : `this is a ${resolved.doc.type} component`;
        throw invalid(resolved.ref ? 'component' : 'component.type', `a pipeline deployment deploys a pipeline component; ${what}`);
      }
      component = resolved.ref ?? resolved.doc;
    } else {
      const text = body.job_definition ?? '';
      const jobId = text.replace(/^azureml:/, '');
      if (!this.#jobDefinition) throw invalid('job_definition', 'deploying from a pipeline job is not available', 'unsupported');
      const doc = await this.#jobDefinition(jobId, 'job_definition');
      // The job's graph is checked as a registered pipeline's would be, then registered as a
      // pipeline component of its own (Azure ML registers a job_definition's graph the same way),
      // named after the job: deploying the same job again finds the same version.
      await resolvePipeline(doc, this, 'job_definition');
      const ref = { name: `job_${jobId.replace(/[^A-Za-z0-9_]/g, '_')}`, version: '1' };
      await this.#createVersion(`component:${ref.name}`, ref.version, { ...doc, ...ref }, `Component '${ref.name}' version '${ref.version}'`);
      component = ref;
      jobDefinition = `azureml:${jobId}`;
    }
    const datastore = body.settings.default_datastore.replace(/^azureml:/, '');
    if (!(await this.getDatastore(datastore))) throw notFound('Datastore', datastore, { field: 'settings.default_datastore' });
    return {
      name,
      endpoint_name: endpoint,
      type: 'pipeline',
      description: body.description,
      tags: body.tags,
      component,
      job_definition: jobDefinition,
      settings: { ...body.settings, default_datastore: datastore },
    };
  }

  /** The pipeline component a pipeline deployment runs: the registered version it names, or its inline one. */
  async pipelineComponentOf(deployment: PipelineDeploymentDoc): Promise<PipelineComponentDoc> {
    if (!isComponentRef(deployment.component)) return deployment.component;
    const { name, version } = deployment.component;
    const found = await this.getComponent(name, version);
    if (found?.doc.type !== 'pipeline') throw notFound('Pipeline component', `${name}:${version}`, { field: 'component' });
    return found.doc;
  }

  /** A pipeline deployment's graph resolved for running (see `resolvePipeline`). */
  async resolveDeploymentPipeline(deployment: PipelineDeploymentDoc): Promise<ResolvedPipeline> {
    return resolvePipeline(await this.pipelineComponentOf(deployment), this, isComponentRef(deployment.component) ? '' : 'component');
  }

  async deleteDeployment(endpoint: string, name: string): Promise<void> {
    const ep = await this.requireEndpoint(endpoint);
    if (!(await this.getAnyDeployment(endpoint, name))) throw notFound('Deployment', `${endpoint}/${name}`, { field: 'deployment' });
    if (ep.doc.defaults.deployment_name === name) {
      throw new BatchError('conflict', `Deployment '${name}' is the default of endpoint '${endpoint}'. Make another deployment the default first.`, { details: { field: 'deployment' } });
    }
    const triggers = (await this.#triggers()).filter((t) => t.endpoint_name === endpoint && t.endpoint_uid === (ep.doc.uid ?? '') && t.deployment === name);
    if (triggers.length > 0) {
      const users = triggers.map((t) => `trigger ${endpoint}/${t.name}`);
      throw new BatchError('conflict', `Deployment '${name}' is used by ${users.join(', ')}.`, { details: { used_by: users, field: 'deployment' } });
    }
    await this.#docs.delete(`deployment:${endpoint}`, name);
  }

  /** Every trigger rule stored (see ./triggers.ts, which manages them). */
  async #triggers(): Promise<TriggerRuleDoc[]> {
    return ((await this.#docs.list({ partitionPrefix: TRIGGER_PARTITION_PREFIX })) as unknown as Stored<TriggerRuleDoc>[]).map((t) => t.doc);
  }

  // ------------------------------------------------------------------ components

  /** A registered component version; `latest` is the newest (registry/versions.ts). */
  async getComponent(name: string, version: string): Promise<Stored<ComponentDoc> | undefined> {
    return version === LATEST ? newestVersion(await this.listComponentVersions(name)) : ((await this.#docs.get(`component:${name}`, version)) as Stored<ComponentDoc> | undefined);
  }

  async listComponentVersions(name: string): Promise<Stored<ComponentDoc>[]> {
    return (await this.#docs.list({ partition: `component:${name}` })) as unknown as Stored<ComponentDoc>[];
  }

  /** Every version of every component. */
  async listComponents(): Promise<Stored<ComponentDoc>[]> {
    return (await this.#docs.list({ partitionPrefix: 'component:' })) as unknown as Stored<ComponentDoc>[];
  }

  #componentResolver(): ComponentResolver {
    return {
      resolveCode: (code, script, codeField, scriptField) => this.#resolveCode(code, script, codeField, scriptField),
      resolveData: async (path, field, type) => (await this.resolveData(path, field, type)).uri,
      resolveModel: (text, field) => this.resolveModelRef(text, field),
      resolveComponentText: (text, field) => this.#resolveComponentText(text, field),
    };
  }

  /** azureml:{name}:{version}, {name}:{version} or azureml:{name}@latest, pinned to the version it names now. */
  async #resolveComponentText(text: string, field: string): Promise<{ ref: ComponentRef; doc: ComponentDoc }> {
    const ref = parseAssetRef(text.replace(/^azureml:/, ''));
    if (!ref) throw invalid(field, 'must be azureml:{name}:{version}, azureml:{name}@latest, or a component written inline');
    const found = await this.getComponent(ref.name, ref.version);
    if (!found) throw notFound('Component', refText(ref), { field });
    return { ref: { name: found.doc.name ?? '', version: found.doc.version ?? '' }, doc: found.doc };
  }

  /**
   * A component reference (azureml:{name}:{version}, azureml:{name}@latest, pinned to the version
   * it names now) or an inline component body (validated and normalized as a registered one would
   * be, with errors named under `field`).
   */
  async resolveComponentRef(textOrInline: unknown, field: string): Promise<ResolvedComponent> {
    if (typeof textOrInline === 'string') return this.#resolveComponentText(textOrInline, field);
    const body = parseOrThrow(componentBody, textOrInline, 'component', field);
    return { doc: await normalizeComponent(body, this.#componentResolver(), field) };
  }

  /**
   * Registers an immutable component version: the same body again is accepted, a different one is
   * a conflict. Code folders and entry scripts are checked, references pinned, a pipeline's graph
   * validated (see shared/components/).
   */
  async createComponent(name: string, version: string, body: ComponentBody): Promise<{ stored: Stored<ComponentDoc>; created: boolean }> {
    checkVersionName(version);
    const normalized = await normalizeComponent(body, this.#componentResolver());
    const doc: ComponentDoc = { ...normalized, name, version };
    return this.#createVersion(`component:${name}`, version, doc, `Component '${name}' version '${version}'`);
  }

  /** Who uses a component version: pipeline components' steps and pipeline deployments. */
  async #componentUsers(ref: ComponentRef): Promise<string[]> {
    const same = (r: ComponentRef): boolean => r.name === ref.name && r.version === ref.version;
    const users: string[] = [];
    for (const c of await this.listComponents()) {
      for (const use of componentRefsIn(c.doc)) if (same(use.ref)) users.push(`pipeline component ${c.doc.name ?? ''}:${c.doc.version ?? ''} (step ${use.step})`);
    }
    for (const d of await this.listAllDeployments()) {
      if (d.doc.type !== 'pipeline') continue;
      const where = `deployment ${d.doc.endpoint_name}/${d.doc.name}`;
      if (isComponentRef(d.doc.component)) {
        if (same(d.doc.component)) users.push(where);
      } else {
        for (const use of componentRefsIn(d.doc.component)) if (same(use.ref)) users.push(`${where} (step ${use.step})`);
      }
    }
    return users;
  }

  /** Deletes a component version unless a pipeline component or a pipeline deployment uses it. */
  async deleteComponent(name: string, version: string): Promise<void> {
    if (!(await this.#docs.get(`component:${name}`, version))) throw notFound('Component', `${name}:${version}`, { field: 'version' });
    const users = await this.#componentUsers({ name, version });
    if (users.length > 0) {
      throw new BatchError('conflict', `Component '${name}:${version}' is used by ${users.join(', ')}.`, { details: { used_by: users, field: 'version' } });
    }
    await this.#docs.delete(`component:${name}`, version);
  }
}
