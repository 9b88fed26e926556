import { type AnyDeploymentDoc, type ComponentDoc, type ComponentRef, type PipelineComponentDoc, isComponentRef } from './components/types.js';
import { outputFiles } from './jobs/jobs-service.js';
import { type Job, MODEL_STEP, type StepInput, type StepState, isPipelineSpec } from './jobs/types.js';
import { WORKSPACE_DATASTORE } from './registry/registry.js';
import type { DataAssetDoc, DatastoreDoc, EndpointDoc, ModelDoc } from './registry/types.js';
import type { Stored } from './storage/doc-table.js';
import type { ListedFile } from './schemas/jobs.js';
import type { TriggerRuleDoc } from './registry/triggers.js';
import { environmentView } from './schemas/environment.js';

/**
 * The JSON the API returns for each resource, with Azure ML's field names. Secrets never appear:
 * datastore credentials show the setting name or identity, not the value; environment variables
 * show their values as given, secrets being `${{app_settings.NAME}}` references (see
 * schemas/environment.ts).
 */

/** Settings as views show them: environment variables through {@link environmentView}. */
function settingsView<T extends { environment_variables?: Record<string, string> }>(settings: T): T {
  return settings.environment_variables === undefined ? settings : { ...settings, environment_variables: environmentView(settings.environment_variables) };
}

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
  if (d.type !== 'pipeline') body['environment_variables'] = environmentView(d.environment_variables);
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
    settings: settingsView(d.settings),
    split: d.split ?? null,
    ...tail,
  };
}

/** A step's path segment in links (step names are letters, digits and `_`). */
function stepLink(self: string, step: string): string {
  return `${self}/steps/${step}`;
}

function stepView(
  self: string,
  step: { name: string; type: 'command' | 'parallel'; component: string; inputs: Record<string, unknown>; outputs: Record<string, string> },
  state: StepState | undefined,
  files: Record<string, string> | undefined,
): Record<string, unknown> {
  const outputs = state?.outputs ? Object.fromEntries(Object.entries(state.outputs).map(([k, o]) => [k, o.uri])) : step.outputs;
  return {
    name: step.name,
    type: step.type,
    component: step.component,
    status: state?.status ?? 'NotStarted',
    started_at: state?.started_at ?? null,
    completed_at: state?.completed_at ?? null,
    reused: state?.reused_from !== undefined,
    reused_from: state?.reused_from ?? null,
    inputs: step.inputs,
    outputs: Object.fromEntries(
      Object.entries(outputs).map(([name, uri]) => [name, { uri, ...(files && name === Object.keys(outputs)[0] ? { files: Object.fromEntries(Object.entries(files).map(([k, f]) => [k, `${uri}${f}`])) } : {}) }]),
    ),
    ...(step.type === 'parallel'
      ? { counts: state?.counts ?? null, columns: state?.columns ?? null, log: `${stepLink(self, step.name)}/outputs/${Object.keys(outputs).length > 1 ? `${Object.keys(outputs)[0] ?? ''}/` : ''}logs/job.log` }
      : { attempts: state?.attempts ?? null, log: state?.logs ? `${stepLink(self, step.name)}/outputs/user_logs/attempt-${state.attempts ?? 1}.log` : null }),
    error: state?.error ?? null,
    links: { outputs: `${stepLink(self, step.name)}/outputs/` },
  };
}

/** How a step input shows: a data input's URI, a literal's value, or the step output it takes. */
function inputView(input: StepInput): unknown {
  switch (input.type) {
    case 'literal':
      return { type: 'literal', value: input.value };
    case 'step_output':
      return { type: 'step_output', step: input.step, output: input.output };
    case 'none':
      return null;
    default:
      return { type: input.type, uri: input.uri };
  }
}

/** A file-list input's files as the job shows them: how many, and each name with the version it reads. */
function fileListView(files: readonly ListedFile[] | undefined): Record<string, unknown> {
  if (!files) return {};
  return { file_count: files.length, files: files.map((f) => ({ name: f.name, etag: f.etag ?? null })) };
}

export function jobView(job: Job, baseUrl: string): Record<string, unknown> {
  const { spec, state } = job;
  const self = `${baseUrl}/api/jobs/${spec.id}`;
  const common = {
    id: spec.id,
    name: spec.id,
    display_name: spec.display_name ?? null,
    description: spec.description ?? null,
    tags: spec.tags,
    endpoint: spec.endpoint || null,
    deployment: spec.deployment || null,
    status: state.status,
    created_at: spec.created_at,
    started_at: state.started_at ?? null,
    completed_at: state.completed_at ?? null,
    invoked_by: spec.invoked_by,
  };
  if (isPipelineSpec(spec)) {
    const pipeline = spec.pipeline;
    return {
      ...common,
      type: 'pipeline',
      component: pipeline.component ? `azureml:${pipeline.component.name}:${pipeline.component.version}` : null,
      inputs: Object.fromEntries(Object.entries(pipeline.inputs).map(([k, v]) => [k, v.type === 'literal' ? { type: 'literal', value: v.value } : { type: v.type, path: v.path, uri: v.uri }])),
      outputs: Object.fromEntries(Object.entries(pipeline.outputs).map(([k, o]) => [k, { type: o.type, path: o.uri }])),
      settings: pipeline.settings,
      counts: state.counts,
      error: state.error ?? null,
      steps: pipeline.steps.map((step) =>
        stepView(
          self,
          {
            name: step.name,
            type: step.type,
            component: step.component.name ? `azureml:${step.component.name}:${step.component.version ?? ''}` : 'inline',
            inputs: Object.fromEntries(Object.entries(step.inputs).map(([k, v]) => [k, inputView(v)])),
            outputs: Object.fromEntries(Object.entries(step.outputs).map(([k, o]) => [k, o.uri])),
          },
          job.steps?.[step.name],
          step.type === 'parallel' ? outputFiles(step.work) : undefined,
        ),
      ),
      links: { self, cancel: `${self}/cancel` },
    };
  }
  const files = outputFiles(spec);
  const modelStep = job.steps?.[MODEL_STEP];
  return {
    ...common,
    type: 'model',
    model: `azureml:${spec.model.name}:${spec.model.version}`,
    inputs: { [spec.input.name]: { type: spec.input.type, path: spec.input.path, uri: spec.input.uri, ...fileListView(spec.input.files) } },
    outputs: {
      [spec.output.name]: {
        type: 'uri_folder',
        path: spec.output.uri,
        files: Object.fromEntries(Object.entries(files).map(([k, f]) => [k, `${spec.output.uri}${f}`])),
      },
    },
    settings: settingsView(spec.settings),
    resources: spec.resources,
    split: spec.split ?? null,
    // A rerun: its parent, and what it reused from it and what it scored anew (mini-batches, items).
    ...(spec.rerun_of
      ? { rerun_of: { job: spec.rerun_of.job, link: `${baseUrl}/api/jobs/${spec.rerun_of.job}`, force: spec.rerun_of.force, reused: spec.rerun_of.reused, scored: spec.rerun_of.scored } }
      : {}),
    counts: state.counts,
    columns: state.columns ?? modelStep?.columns ?? null,
    error: state.error ?? null,
    // A model deployment's job is one parallel step, as in Azure ML (jobs from before steps show it too).
    steps: [
      stepView(
        self,
        {
          name: MODEL_STEP,
          type: 'parallel',
          component: `azureml:${spec.model.name}:${spec.model.version}`,
          inputs: { [spec.input.name]: { type: spec.input.type, uri: spec.input.uri } },
          outputs: { [spec.output.name]: spec.output.uri },
        },
        modelStep ?? { ...state, status: state.status },
        files,
      ),
    ],
    links: {
      self,
      cancel: `${self}/cancel`,
      outputs: Object.fromEntries(Object.entries(files).map(([k, f]) => [k, `${self}/outputs/${f}`])),
    },
  };
}

export function triggerView(s: Stored<TriggerRuleDoc>, baseUrl: string): Record<string, unknown> {
  const d = s.doc;
  return {
    name: d.name,
    endpoint_name: d.endpoint_name,
    description: d.description ?? null,
    source: d.source,
    deployment: d.deployment,
    settings: d.settings,
    output_path: d.output_path,
    batching: d.batching,
    enabled: d.enabled,
    last_error: d.last_error ?? null,
    links: { jobs: `${baseUrl}/api/endpoints/${d.endpoint_name}/jobs` },
    ...stamps(s),
  };
}
