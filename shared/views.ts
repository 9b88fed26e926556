import { type AnyDeploymentDoc, type ComponentDoc, type ComponentRef, type PipelineComponentDoc, isComponentRef } from './components/types.js';
import { outputFiles } from './jobs/jobs-service.js';
import type { Job } from './jobs/types.js';
import { WORKSPACE_DATASTORE } from './registry/registry.js';
import type { DataAssetDoc, DatastoreDoc, EndpointDoc, ModelDoc } from './registry/types.js';
import type { Stored } from './storage/doc-table.js';

/**
 * The JSON the API returns for each resource, with Azure ML's field names. Secrets never appear:
 * datastore credentials show the setting name or identity, not the value.
 */

function stamps(s: Stored<unknown>): { created_at: string; updated_at: string } {
  return { created_at: s.createdAt, updated_at: s.updatedAt };
}

export function datastoreView(s: Stored<DatastoreDoc>): Record<string, unknown> {
  const d = s.doc;
  return {
    name: d.name,
    type: d.type,
    description: d.description ?? null,
    tags: d.tags,
    account_name: d.account_name,
    container_name: d.container_name,
    endpoint: d.endpoint,
    protocol: d.protocol,
    credentials: d.credentials,
    is_default: d.name === WORKSPACE_DATASTORE,
    ...stamps(s),
  };
}

export function dataAssetView(s: Stored<DataAssetDoc>): Record<string, unknown> {
  const d = s.doc;
  return { id: `azureml:${d.name}:${d.version}`, name: d.name, version: d.version, type: d.type, path: d.path, description: d.description ?? null, tags: d.tags, ...stamps(s) };
}

export function modelView(s: Stored<ModelDoc>): Record<string, unknown> {
  const d = s.doc;
  return {
    id: `azureml:${d.name}:${d.version}`,
    name: d.name,
    version: d.version,
    type: d.type,
    path: d.path,
    description: d.description ?? null,
    tags: d.tags,
    properties: d.properties,
    ...stamps(s),
  };
}

export function endpointView(s: Stored<EndpointDoc>, baseUrl: string): Record<string, unknown> {
  const d = s.doc;
  return {
    name: d.name,
    description: d.description ?? null,
    tags: d.tags,
    defaults: d.defaults,
    scoring_uri: `${baseUrl}/api/endpoints/${d.name}/jobs`,
    provisioning_state: 'Succeeded',
    ...stamps(s),
  };
}

const refText = (ref: ComponentRef): string => `azureml:${ref.name}:${ref.version}`;

/**
 * A component as Azure ML writes it: references as `azureml:{name}:{version}` (pinned when it was
 * registered), inline step components in full. Fields left unset are left out.
 */
function componentBodyView(d: ComponentDoc): Record<string, unknown> {
  const body = JSON.parse(JSON.stringify(d)) as Record<string, unknown>;
  if (d.type === 'parallel') body['model'] = `azureml:${d.model.name}:${d.model.version}`;
  if (d.type === 'pipeline') body['jobs'] = pipelineJobsView(d);
  return body;
}

function pipelineJobsView(d: PipelineComponentDoc): Record<string, unknown> {
  return Object.fromEntries(
    Object.entries(d.jobs).map(([step, job]) => [
      step,
      { type: job.type, component: isComponentRef(job.component) ? refText(job.component) : componentBodyView(job.component), inputs: job.inputs, outputs: job.outputs },
    ]),
  );
}

export function componentView(s: Stored<ComponentDoc>): Record<string, unknown> {
  const d = s.doc;
  return { id: `azureml:${d.name ?? ''}:${d.version ?? ''}`, ...componentBodyView(d), ...stamps(s) };
}

export function deploymentView(s: Stored<AnyDeploymentDoc>, isDefault: boolean): Record<string, unknown> {
  const d = s.doc;
  const common = { name: d.name, endpoint_name: d.endpoint_name, type: d.type, description: d.description ?? null, tags: d.tags };
  const tail = { is_default: isDefault, provisioning_state: 'Succeeded', ...stamps(s) };
  if (d.type === 'pipeline') {
    return {
      ...common,
      component: isComponentRef(d.component) ? refText(d.component) : componentBodyView(d.component),
      job_definition: d.job_definition ?? null,
      settings: d.settings,
      ...tail,
    };
  }
  return {
    ...common,
    model: `azureml:${d.model.name}:${d.model.version}`,
    code_configuration: d.code_configuration ?? null,
    resources: d.resources,
    settings: d.settings,
    split: d.split ?? null,
    ...tail,
  };
}

export function jobView(job: Job, baseUrl: string): Record<string, unknown> {
  const { spec, state } = job;
  const files = outputFiles(spec);
  const self = `${baseUrl}/api/jobs/${spec.id}`;
  return {
    id: spec.id,
    name: spec.id,
    display_name: spec.display_name ?? null,
    description: spec.description ?? null,
    tags: spec.tags,
    endpoint: spec.endpoint,
    deployment: spec.deployment,
    model: `azureml:${spec.model.name}:${spec.model.version}`,
    status: state.status,
    created_at: spec.created_at,
    started_at: state.started_at ?? null,
    completed_at: state.completed_at ?? null,
    invoked_by: spec.invoked_by,
    inputs: { [spec.input.name]: { type: spec.input.type, path: spec.input.path, uri: spec.input.uri } },
    outputs: {
      [spec.output.name]: {
        type: 'uri_folder',
        path: spec.output.uri,
        files: Object.fromEntries(Object.entries(files).map(([k, f]) => [k, `${spec.output.uri}${f}`])),
      },
    },
    settings: spec.settings,
    resources: spec.resources,
    split: spec.split ?? null,
    counts: state.counts,
    columns: state.columns ?? null,
    error: state.error ?? null,
    links: {
      self,
      cancel: `${self}/cancel`,
      outputs: Object.fromEntries(Object.entries(files).map(([k, f]) => [k, `${self}/outputs/${f}`])),
    },
  };
}
