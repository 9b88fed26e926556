import type { DeploymentDoc, ModelRef } from '../registry/types.js';
import type { DeploymentSettings, SplitSettings } from '../schemas/resources.js';

/**
 * Components as the registry stores them: Azure ML's component YAML shapes (command, parallel and
 * pipeline components; https://learn.microsoft.com/azure/machine-learning/reference-yaml-component-command,
 * reference-yaml-component-pipeline, reference-yaml-job-parallel), with every data path in its
 * canonical form (azureml://datastores/{name}/paths/{path}, encoded once, as deployments store
 * `code_configuration.code`) and every reference pinned to a version when the component was
 * registered (`@latest` is resolved then, so a registered component never changes under anyone).
 */

export type UriType = 'uri_file' | 'uri_folder';
export type LiteralType = 'string' | 'integer' | 'number' | 'boolean';
export type InputType = UriType | LiteralType;
export type LiteralValue = string | number | boolean;

export const URI_TYPES: readonly UriType[] = ['uri_file', 'uri_folder'];
export const LITERAL_TYPES: readonly LiteralType[] = ['string', 'integer', 'number', 'boolean'];

export function isUriType(type: InputType): type is UriType {
  return type === 'uri_file' || type === 'uri_folder';
}

/**
 * A component input (Azure ML "Component input"): `enum` only on strings, `min`/`max` only on
 * integers and numbers; `default` satisfies all of them. A uri input's default is a data path,
 * stored canonical.
 */
export interface InputSpec {
  type: InputType;
  description?: string | undefined;
  default?: LiteralValue | undefined;
  /** Azure ML's default: false (the input is required unless it has a default). */
  optional: boolean;
  enum?: string[] | undefined;
  min?: number | undefined;
  max?: number | undefined;
}

/** A component output (Azure ML "Component output"). */
export interface OutputSpec {
  type: UriType;
  description?: string | undefined;
}

/** A registered component version, named by its name and version. */
export interface ComponentRef {
  name: string;
  version: string;
}

interface ComponentCommon {
  /** Present on registered components; inline components may have none. */
  name?: string | undefined;
  version?: string | undefined;
  display_name?: string | undefined;
  description?: string | undefined;
  tags: Record<string, string>;
  inputs: Record<string, InputSpec>;
  outputs: Record<string, OutputSpec>;
}

/**
 * `type: command`: one run of `run(inputs, outputs, context)` exported by `entry_script`, an ES
 * module in the `code` folder (Azure ML runs `command` in an `environment`; here the code is
 * JavaScript and runs in the app).
 */
export interface CommandComponentDoc extends ComponentCommon {
  type: 'command';
  /** Canonical URI of the code folder. */
  code: string;
  /** Path of the ES module inside `code`. */
  entry_script: string;
  environment_variables: Record<string, string>;
  /** Azure ML's command `limits.timeout`, seconds (default 3600). */
  limits: { timeout: number };
  /** Runs again after a failure, up to `max_retries` times (default 0). */
  retry_settings: { max_retries: number };
}

/**
 * The parallel task: Azure ML's `task` of a parallel component. `code`/`entry_script` are a
 * scoring script (both or neither); `append_row_to` is always stored, as `${{outputs.<name>}}`,
 * naming the uri_folder output that receives the rows and the job's reports.
 */
export interface ParallelTask {
  type: 'run_function';
  code?: string | undefined;
  entry_script?: string | undefined;
  append_row_to: string;
}

/**
 * `type: parallel`: the mini-batch engine model deployments use, with the deployment settings
 * (mini_batch_size, error_threshold, retry_settings, ...) at the top level as in Azure ML's parallel
 * YAML, and `input_data: ${{inputs.<name>}}` naming the input that is split into mini-batches.
 */
export interface ParallelComponentDoc extends ComponentCommon, DeploymentSettings {
  type: 'parallel';
  /** `${{inputs.<name>}}`, a uri_folder or uri_file input. */
  input_data: string;
  /** Pinned when the component was registered. */
  model: ModelRef;
  task: ParallelTask;
  resources: { instance_count: number };
  split?: SplitSettings | undefined;
}

/** A component a pipeline step can run. */
export type StepComponentDoc = CommandComponentDoc | ParallelComponentDoc;

/**
 * A step of a pipeline (Azure ML's `jobs.<step>`). `component` is a pinned reference or an inline
 * command/parallel component; `inputs` hold binding expressions (`${{parent.inputs.x}}`,
 * `${{parent.jobs.<step>.outputs.y}}`) or literal values (checked against the input and stored
 * bare); `outputs` hold `${{parent.outputs.z}}` (an output left out is an intermediate).
 */
export interface PipelineStepDoc {
  type: StepComponentDoc['type'];
  component: ComponentRef | StepComponentDoc;
  inputs: Record<string, LiteralValue>;
  outputs: Record<string, string>;
}

/** `type: pipeline`: a graph of command and parallel steps. */
export interface PipelineComponentDoc extends ComponentCommon {
  type: 'pipeline';
  jobs: Record<string, PipelineStepDoc>;
}

export type ComponentDoc = CommandComponentDoc | ParallelComponentDoc | PipelineComponentDoc;

/** Whether a step's (or a deployment's) component is a reference rather than an inline component. */
export function isComponentRef(component: ComponentRef | ComponentDoc): component is ComponentRef {
  return !('type' in component);
}

/** Where a step input's value comes from. */
export type InputBinding =
  | { kind: 'parent_input'; name: string }
  | { kind: 'step_output'; step: string; output: string }
  | { kind: 'literal'; value: LiteralValue }
  /** Not bound: the component input's `default` applies, or the optional input is absent. */
  | { kind: 'unbound' };

/** Where a step output goes. */
export type OutputBinding =
  | { kind: 'parent_output'; name: string }
  /** An intermediate: stored per job (under the default datastore, azureml/{job}/{step}/{output}/). */
  | { kind: 'unbound' };

export type Binding = InputBinding | OutputBinding;

/** A pipeline step with its component loaded and every input and output of the component bound. */
export interface ResolvedStep {
  name: string;
  type: StepComponentDoc['type'];
  /** The full component, references resolved. */
  component: StepComponentDoc;
  /** The registered version it came from; absent for an inline component. */
  ref?: ComponentRef | undefined;
  /** One entry per input the component declares. */
  inputs: Record<string, InputBinding>;
  /** One entry per output the component declares. */
  outputs: Record<string, OutputBinding>;
  /** Steps whose outputs this step reads, in declaration order. */
  depends_on: string[];
}

export interface ResolvedPipeline {
  steps: ResolvedStep[];
  /** Step names in a topological order (ties in declaration order). */
  order: string[];
}

/** Azure ML's pipeline deployment `settings` (default_compute has no meaning here). */
export interface PipelineDeploymentSettings {
  /** Keep running the steps that do not depend on a failed one (default false). */
  continue_on_step_failure: boolean;
  /** Datastore name where outputs without a path go (default workspaceblobstore). */
  default_datastore: string;
  /** Run every step again even when its inputs and component are unchanged (default false). */
  force_rerun: boolean;
}

/** A deployment of `type: pipeline`. */
export interface PipelineDeploymentDoc {
  name: string;
  endpoint_name: string;
  type: 'pipeline';
  description?: string | undefined;
  tags: Record<string, string>;
  /** A pinned reference to a registered pipeline component, or the pipeline component inline. */
  component: ComponentRef | PipelineComponentDoc;
  /** `azureml:<job id>` when the component was taken from a pipeline job. */
  job_definition?: string | undefined;
  settings: PipelineDeploymentSettings;
}

/** A deployment of either type, as the registry stores it (model deployments unchanged). */
export type AnyDeploymentDoc = DeploymentDoc | PipelineDeploymentDoc;
