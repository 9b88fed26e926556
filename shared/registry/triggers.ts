import { randomBytes } from 'node:crypto';
import type { AppConfig } from '../config.js';
import { parseDataUri } from '../data/data-uri.js';
import { BatchError, notFound } from '../errors.js';
import { folderPrefix } from '../planning/list-input.js';
import type { SettingsOverride } from '../schemas/jobs.js';
import { OUTPUT_PLACEHOLDERS, type TriggerBody } from '../schemas/triggers.js';
import { storageAccount } from '../storage/clients.js';
import { DocTable, type Stored } from '../storage/doc-table.js';
import { type Registry, WORKSPACE_DATASTORE } from './registry.js';
import type { DatastoreDoc } from './types.js';

/**
 * Blob-created trigger rules (`/api/endpoints/{endpoint}/triggers/{name}`), kept in the registry's
 * table beside the endpoint they belong to. A rule records the endpoint's incarnation (its uid):
 * an endpoint deleted and created again under its name does not inherit the old one's rules. A
 * rule has a uid of its own too, made when it is created and kept by updates: its batches, its
 * files' dedup records and its durable entity are keyed by it, so a rule deleted and created again
 * under its name starts afresh.
 */

export interface TriggerRuleDoc {
  name: string;
  uid: string;
  endpoint_name: string;
  endpoint_uid: string;
  description?: string | undefined;
  source: { datastore: string; path_prefix: string; suffixes: string[] | null };
  deployment: string | null;
  settings: SettingsOverride | null;
  output_path: string | null;
  batching: { window_seconds: number; max_files: number };
  enabled: boolean;
  /** The last batch whose job could not be made, and why (cleared by the rule's next PUT). */
  last_error?: TriggerRuleError | null;
}

export interface TriggerRuleError {
  batch: string;
  code: string;
  message: string;
  at: string;
}

/** The registry partition of an endpoint's trigger rules. */
export function triggerPartition(endpoint: string): string {
  return `trigger:${endpoint}`;
}

export const TRIGGER_PARTITION_PREFIX = 'trigger:';

function invalid(field: string, message: string, code: 'validation_failed' | 'unsupported' = 'validation_failed'): BatchError {
  return new BatchError(code, `${field}: ${message}.`, { issues: [{ field, message }] });
}

/**
 * Checks an output path template: only `{date}`, `{rule}` and `{job_id}`, and `{job_id}` at least
 * once (each job writes into a folder of its own); braces only around a placeholder.
 */
export function checkOutputTemplate(template: string, field = 'output_path'): void {
  const names = [...template.matchAll(/\{([^{}]*)\}/g)].map((m) => m[1] ?? '');
  const unknown = names.filter((n) => !(OUTPUT_PLACEHOLDERS as readonly string[]).includes(n));
  if (unknown.length > 0) throw invalid(field, `unknown placeholder {${unknown[0] ?? ''}} (use ${OUTPUT_PLACEHOLDERS.map((p) => `{${p}}`).join(', ')})`);
  if (/[{}]/.test(template.replace(/\{[^{}]*\}/g, ''))) throw invalid(field, 'a "{" or "}" outside a placeholder');
  if (!names.includes('job_id')) throw invalid(field, 'must hold {job_id}: each job writes into an output folder of its own');
}

/** Fills in the placeholders given (others stay as they are). */
export function expandOutputTemplate(template: string, values: { date?: string; rule?: string; job_id?: string }): string {
  return template.replace(/\{(date|rule|job_id)\}/g, (whole, name: 'date' | 'rule' | 'job_id') => values[name] ?? whole);
}

/** The day of a job's creation as `{date}` shows it (UTC, YYYY-MM-DD). */
export function templateDate(createdAt: string): string {
  return createdAt.substring(0, 10);
}

/** Whether two blob-name prefixes in one container can name a common blob. */
function prefixesMeet(a: string, b: string): boolean {
  return a.startsWith(b) || b.startsWith(a);
}

/** Where a folder is: its account, and its container there. */
interface Place {
  datastore: DatastoreDoc;
  container: string;
}

function sameContainer(a: Place, b: Place): boolean {
  return a.datastore.account_name.toLowerCase() === b.datastore.account_name.toLowerCase() && a.datastore.endpoint === b.datastore.endpoint && a.container === b.container;
}

export class TriggerRules {
  readonly #registry: Registry;
  readonly #docs: DocTable<TriggerRuleDoc>;
  readonly #now: () => Date;

  constructor(options: { config: AppConfig; registry: Registry; now?: () => Date }) {
    this.#registry = options.registry;
    this.#docs = new DocTable(storageAccount(options.config.storageConnection), `${options.config.tablePrefix}registry`);
    this.#now = options.now ?? (() => new Date());
  }

  /**
   * Creates or replaces a rule, after checking everything it names: the endpoint (404), the
   * deployment (404; a pipeline deployment is a 400; none named and the endpoint has no default: 400), the datastore (404), the output template
   * (400, or 404 for its datastore), and that the jobs' outputs cannot land under the source (each
   * job would start another).
   */
  async put(endpoint: string, name: string, body: TriggerBody): Promise<{ stored: Stored<TriggerRuleDoc>; created: boolean }> {
    const ep = await this.#registry.requireEndpoint(endpoint);
    if (body.deployment !== undefined) {
      const found = await this.#registry.getAnyDeployment(endpoint, body.deployment);
      if (!found) throw notFound('Deployment', `${endpoint}/${body.deployment}`, { field: 'deployment' });
      if (found.doc.type === 'pipeline') throw invalid('deployment', `'${body.deployment}' is a pipeline deployment; a trigger starts jobs of model deployments`, 'unsupported');
    } else if (!ep.doc.defaults.deployment_name) {
      // Each of its batches would make no job.
      throw invalid('deployment', `the endpoint '${endpoint}' has no default deployment; name one`);
    }
    const source = await this.#registry.getDatastore(body.source.datastore);
    if (!source) throw notFound('Datastore', body.source.datastore, { field: 'source.datastore' });
    const output = await this.#checkOutput(body.output_path, name);
    if (sameContainer(output, { datastore: source.doc, container: source.doc.container_name }) && prefixesMeet(output.prefix, body.source.path_prefix)) {
      throw invalid(
        body.output_path === undefined ? 'source.path_prefix' : 'output_path',
        `the jobs' outputs (${output.prefix || 'the container'}…) would land under the source prefix "${body.source.path_prefix}" and start jobs of their own; keep them apart`,
      );
    }
    if (body.enabled) await this.#checkOthers(endpoint, name, { datastore: source.doc, container: source.doc.container_name, prefix: body.source.path_prefix }, output);
    const existing = await this.#stored(endpoint, name, ep.doc.uid ?? '');
    const raw = await this.#docs.get(triggerPartition(endpoint), name);
    const doc: TriggerRuleDoc = {
      name,
      uid: existing?.doc.uid ?? randomBytes(8).toString('hex'),
      endpoint_name: endpoint,
      endpoint_uid: ep.doc.uid ?? '',
      description: body.description,
      source: { datastore: body.source.datastore, path_prefix: body.source.path_prefix, suffixes: body.source.suffixes ?? null },
      deployment: body.deployment ?? null,
      settings: body.settings ?? null,
      output_path: body.output_path ?? null,
      batching: body.batching,
      enabled: body.enabled,
    };
    const stamp = this.#now().toISOString();
    // A row left by an earlier incarnation of the endpoint is replaced, not updated.
    await this.#docs.put(triggerPartition(endpoint), name, doc, stamp, existing ? { createdAt: existing.createdAt, etag: existing.etag } : raw ? { etag: raw.etag } : {});
    return { stored: (await this.#docs.get(triggerPartition(endpoint), name)) as Stored<TriggerRuleDoc>, created: !existing };
  }

  /**
   * Rules must not feed each other: this rule's outputs must not land under another enabled rule's
   * source (400 naming output_path), nor may its source take another enabled rule's outputs (400
   * naming source.path_prefix); else A's jobs start B's, whose jobs start A's, for ever.
   */
  async #checkOthers(endpoint: string, name: string, source: Place & { prefix: string }, output: Place & { prefix: string }): Promise<void> {
    for (const other of await this.active()) {
      if (other.endpoint_name === endpoint && other.name === name) continue;
      const label = `trigger ${other.endpoint_name}/${other.name}`;
      const otherSource = await this.#registry.getDatastore(other.source.datastore);
      if (otherSource && sameContainer(output, { datastore: otherSource.doc, container: otherSource.doc.container_name }) && prefixesMeet(output.prefix, other.source.path_prefix)) {
        throw invalid('output_path', `the jobs' outputs (${output.prefix || 'the container'}…) would land under the source "${other.source.path_prefix}" of ${label}, whose jobs would start more; keep them apart`);
      }
      let otherOutput: Place & { prefix: string };
      try {
        otherOutput = await this.#checkOutput(other.output_path ?? undefined, other.name);
      } catch {
        continue; // its output can no longer be resolved: it makes no jobs to feed this one
      }
      if (sameContainer(source, otherOutput) && prefixesMeet(source.prefix, otherOutput.prefix)) {
        throw invalid('source.path_prefix', `"${source.prefix}" would take the outputs (${otherOutput.prefix || 'the container'}…) of ${label}, and each job of one would start another; keep them apart`);
      }
    }
  }

  /** The datastore and static blob prefix of where the rule's jobs write (checked; 400/404 naming output_path). */
  async #checkOutput(template: string | undefined, rule: string): Promise<Place & { prefix: string }> {
    if (template === undefined) {
      const workspace = await this.#registry.requireDatastore(WORKSPACE_DATASTORE);
      return { datastore: workspace, container: workspace.container_name, prefix: 'azureml/' };
    }
    checkOutputTemplate(template);
    // Each job's values are unknown here: a marker stands for them, and what comes before it is
    // the part of the folder every job shares.
    const marker = 'bj-trigger-template-marker';
    const sample = expandOutputTemplate(template, { date: marker, rule, job_id: marker });
    if (parseDataUri(sample, 'output_path').kind === 'asset') throw invalid('output_path', 'an output is a folder (azureml://datastores/{datastore}/paths/{path}), not a data asset');
    const resolved = await this.#registry.resolveData(sample, 'output_path', 'uri_folder');
    const at = resolved.path.indexOf(marker);
    const staticPrefix = at < 0 ? folderPrefix(resolved.path) : resolved.path.substring(0, at);
    return { datastore: resolved.datastore, container: resolved.location.container, prefix: staticPrefix };
  }

  /** A rule of the endpoint as it is now (a rule of an earlier incarnation of the endpoint is not). */
  async get(endpoint: string, name: string): Promise<Stored<TriggerRuleDoc> | undefined> {
    const ep = await this.#registry.getEndpoint(endpoint);
    if (!ep) return undefined;
    return this.#stored(endpoint, name, ep.doc.uid ?? '');
  }

  async #stored(endpoint: string, name: string, endpointUid: string): Promise<Stored<TriggerRuleDoc> | undefined> {
    const found = await this.#docs.get(triggerPartition(endpoint), name);
    return found && found.doc.endpoint_uid === endpointUid ? found : undefined;
  }

  async require(endpoint: string, name: string): Promise<Stored<TriggerRuleDoc>> {
    await this.#registry.requireEndpoint(endpoint);
    const found = await this.get(endpoint, name);
    if (!found) throw notFound('Trigger', `${endpoint}/${name}`, { field: 'name' });
    return found;
  }

  async list(endpoint: string): Promise<Stored<TriggerRuleDoc>[]> {
    const ep = await this.#registry.requireEndpoint(endpoint);
    return (await this.#docs.list({ partition: triggerPartition(endpoint) })).filter((r) => r.doc.endpoint_uid === (ep.doc.uid ?? ''));
  }

  async delete(endpoint: string, name: string): Promise<void> {
    await this.require(endpoint, name);
    await this.#docs.delete(triggerPartition(endpoint), name);
  }

  /**
   * Records on the rule (this incarnation of it: `uid`) that a batch's job could not be made.
   * Advisory: a rule changed meanwhile keeps its own state (the error is logged anyway).
   */
  async recordError(endpoint: string, name: string, uid: string, error: TriggerRuleError): Promise<void> {
    const found = await this.get(endpoint, name);
    if (!found || found.doc.uid !== uid) return;
    try {
      await this.#docs.put(triggerPartition(endpoint), name, { ...found.doc, last_error: error }, this.#now().toISOString(), { createdAt: found.createdAt, etag: found.etag });
    } catch (err) {
      if (!(err instanceof BatchError && err.code === 'conflict')) throw err;
    }
  }

  /** Every enabled rule of every endpoint as it is now: what an event is matched against. */
  async active(): Promise<TriggerRuleDoc[]> {
    const [rules, endpoints] = await Promise.all([this.#docs.list({ partitionPrefix: TRIGGER_PARTITION_PREFIX }), this.#registry.listEndpoints()]);
    const current = new Map(endpoints.map((e) => [e.doc.name, e.doc.uid ?? '']));
    return rules.map((r) => r.doc).filter((r) => r.enabled && current.get(r.endpoint_name) === r.endpoint_uid);
  }
}
