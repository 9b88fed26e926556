/**
 * Resources from Azure ML's YAML files: model, data, datastore, component, endpoint, deployment
 * (`type: model` or `pipeline`). A file is read with its positions (yaml-source.ts), the few fields
 * that differ from Azure ML are translated or dropped with a warning (cli/README.md lists them),
 * the result is checked with the API's own schemas (shared/schemas, shared/components/schemas.ts)
 * before anything is uploaded or sent, local paths are uploaded to the workspace datastore, and
 * the body is PUT. The API checks everything again; its problems are shown at their lines too.
 */
import { existsSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import type { z } from 'zod';
import { componentBody } from '../../shared/components/schemas.js';
import { dataAssetBody, datastoreBody, deploymentBody, endpointBody, modelBody } from '../../shared/schemas/resources.js';
import type { ApiClient } from './client.js';
import { ApiProblem, CliError } from './errors.js';
import { type Column, field } from './output.js';
import type { DatastoreAccess } from './storage.js';
import { YamlSource } from './yaml-source.js';

export type KindName = 'model' | 'data' | 'datastore' | 'component' | 'endpoint' | 'deployment';

export interface Kind {
  name: KindName;
  /** How messages name one ("data asset"). */
  what: string;
  schema: z.ZodType;
  /** Immutable name:version assets (models, data, components). */
  versioned: boolean;
  /** The collection's path under /api (deployments: under their endpoint). */
  collection(ids: Ids): string;
  columns: Column[];
}

export interface Ids {
  name: string;
  version?: string;
  endpoint?: string;
}

const enc = encodeURIComponent;

export const KINDS: Record<KindName, Kind> = {
  model: {
    name: 'model',
    what: 'model',
    schema: modelBody,
    versioned: true,
    collection: () => 'models',
    columns: [['name', field('name')], ['version', field('version')], ['type', field('type')], ['path', field('path')], ['created_at', field('created_at')]],
  },
  data: {
    name: 'data',
    what: 'data asset',
    schema: dataAssetBody,
    versioned: true,
    collection: () => 'data',
    columns: [['name', field('name')], ['version', field('version')], ['type', field('type')], ['path', field('path')], ['created_at', field('created_at')]],
  },
  component: {
    name: 'component',
    what: 'component',
    schema: componentBody,
    versioned: true,
    collection: () => 'components',
    columns: [['name', field('name')], ['version', field('version')], ['type', field('type')], ['display_name', field('display_name')], ['created_at', field('created_at')]],
  },
  datastore: {
    name: 'datastore',
    what: 'datastore',
    schema: datastoreBody,
    versioned: false,
    collection: () => 'datastores',
    columns: [['name', field('name')], ['account_name', field('account_name')], ['container_name', field('container_name')], ['credentials', field('credentials', 'type')], ['is_default', field('is_default')]],
  },
  endpoint: {
    name: 'endpoint',
    what: 'endpoint',
    schema: endpointBody,
    versioned: false,
    collection: () => 'endpoints',
    columns: [['name', field('name')], ['default_deployment', field('defaults', 'deployment_name')], ['scoring_uri', field('scoring_uri')], ['updated_at', field('updated_at')]],
  },
  deployment: {
    name: 'deployment',
    what: 'deployment',
    schema: deploymentBody,
    versioned: false,
    collection: (ids) => `endpoints/${enc(requireId(ids.endpoint, 'endpoint_name', '--endpoint-name'))}/deployments`,
    columns: [
      ['name', field('name')],
      ['endpoint_name', field('endpoint_name')],
      ['type', field('type')],
      ['model_or_component', (d) => d['model'] ?? (typeof d['component'] === 'string' ? d['component'] : 'inline')],
      ['is_default', field('is_default')],
    ],
  },
};

function requireId(value: string | undefined, name: string, option: string): string {
  if (value === undefined || value === '') throw new CliError(`The ${name} is missing: give ${option}.`);
  return value;
}

/** The path of one resource under /api. */
export function itemPath(kind: Kind, ids: Ids): string {
  const base = `${kind.collection(ids)}/${enc(ids.name)}`;
  return kind.versioned ? `${base}/versions/${enc(requireId(ids.version, 'version', '--version'))}` : base;
}

// ------------------------------------------------------------------ local paths

/** A value that is a local path rather than a URI (`azureml:`, `azureml://`, `https://`, …). */
export function isLocalPath(value: unknown): value is string {
  return typeof value === 'string' && value !== '' && !/^[a-z][a-z0-9+.-]+:/i.test(value);
}

/** What preparing a file found to do before its body can be sent: uploads, then registrations. */
export class Plan {
  readonly uploads: { local: string; assign: (uri: string) => void }[] = [];
  readonly registrations: (() => Promise<void>)[] = [];

  /** When `owner[key]` is a local path, checks it exists and plans its upload (the URI replaces it). */
  localPath(src: YamlSource, owner: Record<string, unknown> | undefined, key: string, fieldName: string): void {
    const value = owner?.[key];
    if (!owner || !isLocalPath(value)) return;
    const local = isAbsolute(value) ? value : resolve(src.dir, value);
    if (!existsSync(local)) throw src.problem(`${src.path}: a local path does not exist:`, [{ field: fieldName, message: `${value} (${local}) does not exist` }]);
    this.uploads.push({ local, assign: (uri) => (owner[key] = uri) });
  }

  async run(access: DatastoreAccess): Promise<void> {
    for (const upload of this.uploads) {
      const done = await access.upload(upload.local);
      process.stderr.write(`Uploaded ${upload.local} (${done.files} file${done.files === 1 ? '' : 's'}, ${done.bytes} bytes) to ${done.uri}\n`);
      upload.assign(done.uri);
    }
    for (const register of this.registrations) await register();
  }
}

// ------------------------------------------------------------------ translation from Azure ML's YAML

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Fields of Azure ML's YAML that mean nothing here: dropped, with a warning saying why. */
const IGNORED: Partial<Record<KindName, Record<string, string>>> = {
  deployment: {
    compute: 'ignored: mini-batches run on the app’s own instances (resources.instance_count)',
    environment: 'ignored: scoring scripts are JavaScript run by the app (no environment image)',
  },
  component: {
    environment: 'ignored: components run JavaScript in the app (no environment image)',
    is_deterministic: 'ignored: reuse is decided by content (settings.force_rerun turns it off)',
  },
};

/** YAML reads `version: 1` as a number and `tags: {a: 1}` values as numbers; the API takes strings. */
function stringScalars(body: Obj, keys: string[]): void {
  for (const key of keys) {
    if (typeof body[key] === 'number') body[key] = String(body[key]);
  }
}

function stringValues(record: unknown): void {
  if (!isObj(record)) return;
  for (const [k, v] of Object.entries(record)) if (typeof v === 'number' || typeof v === 'boolean') record[k] = String(v);
}

function dropIgnored(kind: KindName, src: YamlSource, body: Obj, prefix: string): void {
  delete body['$schema'];
  for (const [key, why] of Object.entries(IGNORED[kind] ?? {})) {
    if (key in body) {
      src.warn(prefix ? `${prefix}.${key}` : key, why);
      delete body[key];
    }
  }
  stringScalars(body, ['name', 'version']);
  stringValues(body['tags']);
}

/** A component body (a file of its own, inline in a pipeline step, or in a pipeline deployment). */
function prepareComponent(src: YamlSource, body: Obj, prefix: string, plan: Plan): void {
  const at = (f: string): string => (prefix ? `${prefix}.${f}` : f);
  dropIgnored('component', src, body, prefix);
  if (body['type'] === 'parallel') {
    stringValues(body['environment_variables']);
    if (isObj(body['task'])) plan.localPath(src, body['task'], 'code', at('task.code'));
  } else if (body['type'] === 'pipeline') {
    if (isObj(body['jobs'])) {
      for (const [step, job] of Object.entries(body['jobs'])) {
        if (isObj(job)) componentReference(src, job, 'component', at(`jobs.${step}.component`), plan);
      }
    }
  } else {
    stringValues(body['environment_variables']);
    plan.localPath(src, body, 'code', at('code'));
  }
}

/**
 * `component:` as Azure ML allows it: a reference (`azureml:name:version`), a component inline, or
 * a local component YAML file (read, checked and inlined, its own local paths relative to it).
 */
function componentReference(src: YamlSource, owner: Obj, key: string, fieldName: string, plan: Plan): void {
  const value = owner[key];
  if (isObj(value)) {
    prepareComponent(src, value, fieldName, plan);
  } else if (isLocalPath(value) && /\.ya?ml$/i.test(value)) {
    const file = isAbsolute(value) ? value : resolve(src.dir, value);
    if (!existsSync(file)) throw src.problem(`${src.path}: a component file does not exist:`, [{ field: fieldName, message: `${value} (${file}) does not exist` }]);
    const nested = YamlSource.load(file);
    const body = nested.value();
    prepareComponent(nested, body, '', plan);
    nested.parse(componentBody, 'component', body);
    owner[key] = body;
  }
}

/**
 * The API body of a resource file (after `--set`), checked with the API's schema; local paths
 * and inline models are left in `plan`, to be uploaded and registered once everything is checked.
 */
export function prepareBody(kind: Kind, src: YamlSource, api: ApiClient): { body: Obj; plan: Plan } {
  const body = src.value();
  const plan = new Plan();
  switch (kind.name) {
    case 'model':
    case 'data':
      dropIgnored(kind.name, src, body, '');
      stringValues(body['properties']);
      plan.localPath(src, body, 'path', 'path');
      break;
    case 'component':
      prepareComponent(src, body, '', plan);
      break;
    case 'endpoint':
      dropIgnored('endpoint', src, body, '');
      // Batch endpoints in Azure ML always take Entra tokens (aad_token); here BATCH_AUTH_MODE decides.
      if ('auth_mode' in body) {
        if (body['auth_mode'] !== 'aad_token') src.warn('auth_mode', 'ignored: the app’s BATCH_AUTH_MODE decides how callers authenticate');
        delete body['auth_mode'];
      }
      break;
    case 'datastore':
      dropIgnored('datastore', src, body, '');
      prepareDatastore(src, body);
      break;
    case 'deployment':
      dropIgnored('deployment', src, body, '');
      prepareDeployment(src, body, plan, api);
      break;
  }
  const checked = kind.name === 'deployment' && isObj(body['model']) ? { ...body, model: 'azureml:inline:1' } : body;
  src.parse(kind.schema, kind.what, checked);
  return { body, plan };
}

/**
 * Azure ML's credential-less datastore uses the workspace's identity: here, the app's managed
 * identity. Azure ML's `account_key` / `sas_token` are secrets, which the API never stores.
 */
function prepareDatastore(src: YamlSource, body: Obj): void {
  const credentials = body['credentials'];
  if (credentials === undefined) {
    body['credentials'] = { type: 'managed_identity' };
    return;
  }
  if (isObj(credentials) && credentials['type'] === undefined) {
    const secret = ['account_key', 'sas_token'].find((k) => k in credentials);
    if (secret) {
      throw src.problem(`${src.path}: the datastore's credentials hold a secret, which the app never stores:`, [
        {
          field: `credentials.${secret}`,
          message: 'use {type: connection_string, setting: <app setting holding the connection string>} or leave credentials out for the app’s managed identity',
        },
      ]);
    }
  }
}

function prepareDeployment(src: YamlSource, body: Obj, plan: Plan, api: ApiClient): void {
  stringValues(isObj(body['settings']) ? body['settings']['environment_variables'] : undefined);
  if (isObj(body['resources']) && 'instance_type' in body['resources']) {
    src.warn('resources.instance_type', 'ignored: instances are the app’s own');
    delete body['resources']['instance_type'];
  }
  if (body['type'] === 'pipeline') {
    componentReference(src, body, 'component', 'component', plan);
    return;
  }
  if (isObj(body['code_configuration'])) plan.localPath(src, body['code_configuration'], 'code', 'code_configuration.code');
  const model = body['model'];
  if (isObj(model)) {
    // An inline model (Azure ML registers it on create): registered first, then referenced.
    dropIgnored('model', src, model, 'model');
    if (model['name'] === undefined) throw src.problem(`${src.path}: the inline model needs a name:`, [{ field: 'model.name', message: 'required (the model is registered under it)' }]);
    src.parse(modelBody, 'model', model, 'model');
    plan.localPath(src, model, 'path', 'model.path');
    plan.registrations.push(async () => {
      // Checked as modelBody above: a string each.
      const name = model['name'] as string;
      const version = typeof model['version'] === 'string' ? model['version'] : await versionFor(api, KINDS.model, name, model);
      await putWithin(src, 'model', () => api.json('PUT', itemPath(KINDS.model, { name, version }), { ...model, name, version }));
      process.stderr.write(`Registered model ${name}:${version}\n`);
      body['model'] = `azureml:${name}:${version}`;
    });
  }
}

/**
 * The version a file without one gets, as Azure ML auto-versions: a version already registered
 * with the same path and type (uploads are content-keyed, so the same files) is reused; otherwise
 * the next integer after the highest one.
 */
export async function versionFor(api: ApiClient, kind: Kind, name: string, body: Obj): Promise<string> {
  let versions: Obj[] = [];
  try {
    versions = await api.list<Obj>(`${kind.collection({ name })}/${enc(name)}/versions`);
  } catch (err) {
    if (!(err instanceof ApiProblem && err.status === 404)) throw err;
  }
  const same = kind.name !== 'component' ? versions.find((v) => v['path'] === body['path'] && v['type'] === body['type']) : undefined;
  if (same) return String(same['version']);
  const numbers = versions.map((v) => Number(v['version'])).filter((n) => Number.isInteger(n) && n >= 0);
  return String(numbers.length === 0 ? 1 : Math.max(...numbers) + 1);
}

/** Runs a request for something a file described; a problem the API names fields of is shown at their lines (under `prefix`). */
export async function putWithin<T>(src: YamlSource, prefix: string, request: () => Promise<T>): Promise<T> {
  try {
    return await request();
  } catch (err) {
    if (err instanceof ApiProblem) throw new CliError(err.describe((f) => src.where(prefix && f !== '(body)' ? `${prefix}.${f}` : f)));
    throw err;
  }
}
