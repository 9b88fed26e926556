import { own } from '../schemas/names.js';
/**
 * Turns a pipeline component and the caller's named inputs and outputs into a pipeline job's spec
 * (PipelineSpec), fixed at invoke: every input checked against the pipeline's declared types
 * (type, enum, min/max; Azure ML's rules, reference-yaml-component-pipeline), every data path
 * resolved once, every step's component, model and code pinned to their content, and every output
 * given its place. Nothing is looked up by name again while the job runs.
 */
import { datastoreUri, parseDataUri } from '../data/data-uri.js';
import { parseOwnInput, parseOwnOutput, parseStepOutput } from '../components/bindings.js';
import { checkLiteral, literalCheck } from '../components/literals.js';
import type { InputSpec, OutputSpec, PipelineComponentDoc, ResolvedPipeline, ResolvedStep } from '../components/types.js';
import { isUriType } from '../components/types.js';
import { BatchError, notFound } from '../errors.js';
import { redactSecrets } from '../redact.js';
import { folderPrefix } from '../planning/list-input.js';
import { folderContent } from './local-files.js';
import type { DataLocation, Registry, ResolvedData } from '../registry/registry.js';
import { jobInput } from '../schemas/jobs.js';
import type { DataValue, LiteralValue, OutputTarget, PipelineSettings, PipelineSpec, StepInput, StepSpec } from './types.js';

/** What the builder needs from the jobs service (the same checks a model deployment's job gets). */
export interface PipelineSpecContext {
  registry: Registry;
  /** The content key of a location (model, code), pinned for the job; no files there is a 400 naming `field`. */
  content(location: DataLocation, field: string, what: string, options?: { file?: boolean }): Promise<string>;
  /** Settles whether an input is a file or a folder, as for a model deployment's input. */
  inputData(input: ResolvedData, field: string): Promise<ResolvedData>;
}

export interface PipelineSpecRequest {
  jobId: string;
  pipeline: PipelineComponentDoc;
  resolved: ResolvedPipeline;
  component?: { name: string; version: string } | undefined;
  settings: PipelineSettings;
  /** As the caller sent them (data: `{type?, path}`; literals: bare or `{type: literal, value}`). */
  inputs: Record<string, unknown>;
  outputs: Record<string, { type?: string | undefined; path: string }>;
}

/** A step's own folder on the default datastore: its intermediate outputs, and its logs (user-logs/). */
export function stepFolder(jobId: string, step: string): string {
  return `azureml/${jobId}/step-${step}/`;
}

function invalid(field: string, message: string, text?: string): BatchError {
  return new BatchError('validation_failed', text ?? `${field}: ${message}.`, { issues: [{ field, message }] });
}

function datastoreName(setting: string): string {
  return setting.startsWith('azureml:') ? setting.substring('azureml:'.length) : setting;
}

/**
 * A place for an output the caller gave no path, on the default datastore: a job output at
 * azureml/{job}/{output}/ (Azure ML's layout), a step's own at azureml/{job}/step-{step}/outputs/{output}/.
 * Output names are identifiers, so `step-…` can never be a job output's folder, and a step's
 * outputs and its user-logs/ never share a folder (see stepFolder).
 */
async function defaultTarget(ctx: PipelineSpecContext, settings: PipelineSettings, type: OutputSpec['type'], place: { job: string; step?: string; output: string }, field: string): Promise<OutputTarget> {
  const folder = place.step === undefined ? `azureml/${place.job}/${place.output}/` : `${stepFolder(place.job, place.step)}outputs/${place.output}/`;
  // A uri_file output without a path gets a folder; the file keeps the name the step gives it.
  const path = folder;
  const data = await ctx.registry.resolveData(datastoreUri(datastoreName(settings.default_datastore), path), field, type);
  return targetOf(data, type);
}

function targetOf(data: ResolvedData, type: OutputSpec['type']): OutputTarget {
  if (type === 'uri_file') return { type, uri: data.uri, location: data.location };
  return { type, uri: data.uri.replace(/\/?$/, '/'), location: { ...data.location, path: folderPrefix(data.location.path) } };
}

/** A data input's value, resolved; `declared` is the input's type in the component. */
async function dataValue(ctx: PipelineSpecContext, path: string, stated: 'uri_file' | 'uri_folder' | undefined, declared: 'uri_file' | 'uri_folder', field: string): Promise<DataValue> {
  if (stated !== undefined && stated !== declared) throw invalid(`${field}.type`, `the input is ${declared}, not ${stated}`);
  const resolved = await ctx.inputData(await ctx.registry.resolveData(path, `${field}.path`, declared), `${field}.path`);
  const content = (await folderContent(ctx.registry, resolved.location, { file: resolved.type === 'uri_file' })).key;
  // The path as given is kept for the job's view, without a SAS it may carry.
  return { type: resolved.type, path: redactSecrets(path), uri: resolved.uri, location: resolved.location, content };
}

/** A component input's default as a value, or undefined when it has none. */
async function defaultValue(ctx: PipelineSpecContext, spec: InputSpec, field: string): Promise<DataValue | LiteralValue | undefined> {
  if (spec.default === undefined) return undefined;
  if (isUriType(spec.type)) return dataValue(ctx, String(spec.default), undefined, spec.type, field);
  return { type: 'literal', value: spec.default };
}

/** The job's inputs, checked against the pipeline's: unknown names, wrong kinds, bad literals and missing required inputs are 400s naming the input. */
async function jobInputs(ctx: PipelineSpecContext, pipeline: PipelineComponentDoc, given: Record<string, unknown>): Promise<Record<string, DataValue | LiteralValue>> {
  const values: Record<string, DataValue | LiteralValue> = {};
  for (const [name, value] of Object.entries(given)) {
    const field = `inputs.${name}`;
    const spec = own(pipeline.inputs, name);
    if (!spec) {
      const known = Object.keys(pipeline.inputs);
      throw invalid(field, `the pipeline has no input '${name}'`, `${field}: the pipeline has no input '${name}' (its inputs: ${known.join(', ') || 'none'}).`);
    }
    const isData = typeof value === 'object' && value !== null && 'path' in value;
    if (isUriType(spec.type)) {
      if (!isData) throw invalid(field, `must be data: {"type": "${spec.type}", "path": "azureml://datastores/…"}`);
      const parsed = jobInput.safeParse(value);
      if (!parsed.success) throw invalid(field, parsed.error.issues[0]?.message ?? 'not a data input');
      if (parsed.data.files) throw invalid(`${field}.files`, "a file list is an input of a model deployment's job; a pipeline's inputs are folders or files");
      values[name] = await dataValue(ctx, parsed.data.path, parsed.data.type, spec.type, field);
    } else {
      if (isData) throw invalid(field, `is a literal input of type ${spec.type}, not data`);
      values[name] = { type: 'literal', value: checkLiteral(spec, value, field) };
    }
  }
  for (const [name, spec] of Object.entries(pipeline.inputs)) {
    if (own(values, name) !== undefined) continue;
    const fallback = await defaultValue(ctx, spec, `inputs.${name}`);
    if (fallback) values[name] = fallback;
    else if (!spec.optional) throw invalid(`inputs.${name}`, `is required (${spec.type})`, `inputs.${name}: the pipeline's input '${name}' (${spec.type}) is required.`);
  }
  return values;
}

/** The job's outputs: the caller's paths, or places of the job's own. */
async function jobOutputs(ctx: PipelineSpecContext, request: PipelineSpecRequest): Promise<Record<string, OutputTarget>> {
  const targets: Record<string, OutputTarget> = {};
  for (const name of Object.keys(request.outputs)) {
    if (!own(request.pipeline.outputs, name)) {
      const known = Object.keys(request.pipeline.outputs);
      throw invalid(`outputs.${name}`, `the pipeline has no output '${name}'`, `outputs.${name}: the pipeline has no output '${name}' (its outputs: ${known.join(', ') || 'none'}).`);
    }
  }
  for (const [name, spec] of Object.entries(request.pipeline.outputs)) {
    const field = `outputs.${name}.path`;
    const given = own(request.outputs, name);
    if (!given) {
      targets[name] = await defaultTarget(ctx, request.settings, spec.type, { job: request.jobId, output: name }, field);
      continue;
    }
    if (given.type !== undefined && given.type !== spec.type) throw invalid(`outputs.${name}.type`, `the output is ${spec.type}, not ${given.type}`);
    if (parseDataUri(given.path, field).kind === 'asset') throw invalid(field, 'a data asset cannot be an output');
    targets[name] = targetOf(await ctx.registry.resolveData(given.path, field, spec.type), spec.type);
  }
  return targets;
}

async function stepSpec(ctx: PipelineSpecContext, request: PipelineSpecRequest, step: ResolvedStep, inputs: Record<string, DataValue | LiteralValue>, outputs: Record<string, OutputTarget>): Promise<StepSpec> {
  const component = step.component;
  const where = `jobs.${step.name}`;
  const bound: Record<string, StepInput> = {};
  for (const [name, binding] of Object.entries(step.inputs)) {
    const spec = own(component.inputs, name);
    let value: StepInput | undefined;
    if (binding.kind === 'parent_input') {
      value = own(inputs, binding.name);
      // The step's own constraints (type, enum, min/max) hold too, not only the pipeline input's.
      if (value?.type === 'literal' && spec && !isUriType(spec.type)) {
        const checked = literalCheck(spec, value.value);
        if (!checked.ok) throw invalid(`inputs.${binding.name}`, `${checked.message} (step '${step.name}', input '${name}')`);
        value = { type: 'literal', value: checked.value };
      }
    }
    else if (binding.kind === 'step_output') value = { type: 'step_output', step: binding.step, output: binding.output };
    else if (binding.kind === 'literal') value = { type: 'literal', value: binding.value };
    if (value === undefined && spec) value = await defaultValue(ctx, spec, `${where}.inputs.${name}`);
    bound[name] = value ?? { type: 'none' };
  }
  const places: Record<string, OutputTarget> = {};
  for (const [name, binding] of Object.entries(step.outputs)) {
    const type = own(component.outputs, name)?.type ?? 'uri_folder';
    const parent = binding.kind === 'parent_output' ? own(outputs, binding.name) : undefined;
    places[name] = parent ?? (await defaultTarget(ctx, request.settings, type, { job: request.jobId, step: step.name, output: name }, `${where}.outputs.${name}`));
  }
  const base = { name: step.name, component: { name: step.ref?.name ?? component.name, version: step.ref?.version ?? component.version }, needs: step.depends_on, inputs: bound, outputs: places };
  if (component.type === 'command') {
    const code = await ctx.registry.resolveData(component.code, `${where}.component.code`, 'uri_folder');
    const content = await ctx.content(code.location, `${where}.component.code`, `The code of step '${step.name}'`, { file: false });
    return {
      ...base,
      type: 'command',
      code: { uri: code.uri, location: code.location, content },
      entry_script: component.entry_script,
      environment_variables: component.environment_variables,
      timeout: component.limits.timeout,
      max_retries: component.retry_settings.max_retries,
    };
  }
  const inputData = parseOwnInput(component.input_data);
  const appendTo = parseOwnOutput(component.task.append_row_to);
  if (inputData === undefined || appendTo === undefined) throw new BatchError('internal', `${where}: the parallel component's input_data or append_row_to is not an expression.`);
  const model = await ctx.registry.getModel(component.model.name, component.model.version);
  if (!model) throw notFound('Model', `${component.model.name}:${component.model.version}`, { field: `${where}.component.model` });
  const modelData = await ctx.registry.resolveData(model.doc.path, `${where}.component.model`);
  const code = component.task.code ? await ctx.registry.resolveData(component.task.code, `${where}.component.task.code`, 'uri_folder') : undefined;
  const [modelContent, codeContent] = await Promise.all([
    ctx.content(modelData.location, `${where}.component.model`, `The model ${model.doc.name}:${model.doc.version}`),
    code ? ctx.content(code.location, `${where}.component.task.code`, `The scoring code of step '${step.name}'`, { file: false }) : undefined,
  ]);
  const { max_concurrency_per_instance, mini_batch_size, error_threshold, retry_settings, output_action, output_file_name, logging_level, environment_variables, join, key_field, csv_header } = component;
  return {
    ...base,
    type: 'parallel',
    input_data: inputData,
    append_row_to: appendTo,
    work: {
      model: model.doc,
      model_location: modelData.location,
      model_content: modelContent,
      code_configuration: component.task.code && component.task.entry_script ? { code: component.task.code, scoring_script: component.task.entry_script } : undefined,
      code_location: code?.location,
      code_content: codeContent,
      settings: {
        max_concurrency_per_instance,
        mini_batch_size,
        error_threshold,
        retry_settings,
        output_action,
        output_file_name,
        logging_level,
        environment_variables,
        ...(join === undefined ? {} : { join }),
        ...(key_field === undefined ? {} : { key_field }),
        ...(csv_header === undefined ? {} : { csv_header }),
      },
      resources: component.resources,
      split: component.split,
    },
  };
}

/** The spec of a pipeline job (see the module's comment); every error is a 400 naming its field. */
export async function buildPipelineSpec(ctx: PipelineSpecContext, request: PipelineSpecRequest): Promise<PipelineSpec> {
  const inputs = await jobInputs(ctx, request.pipeline, request.inputs);
  const outputs = await jobOutputs(ctx, request);
  const byName = new Map(request.resolved.steps.map((s) => [s.name, s]));
  const steps: StepSpec[] = [];
  for (const name of request.resolved.order) {
    const step = byName.get(name);
    if (step) steps.push(await stepSpec(ctx, request, step, inputs, outputs));
  }
  return { component: request.component, definition: request.pipeline, settings: request.settings, inputs, outputs, steps };
}

/** The type of an input a standalone pipeline job gives a value for (its graph declares none). */
function inferredInput(value: unknown): InputSpec {
  if (typeof value === 'object' && value !== null && 'path' in value) {
    const data = value as { type?: string; path?: unknown };
    const type = data.type === 'uri_file' || data.type === 'uri_folder' ? data.type : 'uri_folder';
    return { type, optional: false };
  }
  const bare = typeof value === 'object' && value !== null && 'value' in value ? (value).value : value;
  if (typeof bare === 'boolean') return { type: 'boolean', optional: false };
  if (typeof bare === 'number') return { type: Number.isInteger(bare) ? 'integer' : 'number', optional: false };
  return { type: 'string', optional: false };
}

/**
 * A standalone pipeline job's graph as a pipeline component body: its inputs declared from the
 * values given (data as uri_folder unless typed, literals by their JSON type, as Azure ML infers
 * them), its outputs from the job's outputs and from what the steps bind with ${{parent.outputs.z}}.
 */
export function pipelineBodyOfJob(body: { inputs: Record<string, unknown>; outputs: Record<string, { type?: string | undefined }>; jobs: Record<string, unknown> }): Record<string, unknown> {
  const inputs = Object.fromEntries(Object.entries(body.inputs).map(([name, value]) => [name, inferredInput(value)]));
  const outputs: Record<string, { type: 'uri_folder' | 'uri_file' }> = {};
  for (const step of Object.values(body.jobs)) {
    const bound = typeof step === 'object' && step !== null ? (step as { outputs?: unknown }).outputs : undefined;
    if (typeof bound !== 'object' || bound === null) continue;
    for (const text of Object.values(bound)) {
      const name = typeof text === 'string' ? parseStepOutput(text) : undefined;
      if (name !== undefined) outputs[name] = { type: 'uri_folder' };
    }
  }
  for (const [name, output] of Object.entries(body.outputs)) outputs[name] = { type: output.type === 'uri_file' ? 'uri_file' : 'uri_folder' };
  return { type: 'pipeline', inputs, outputs, jobs: body.jobs };
}
