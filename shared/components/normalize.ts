import { rowJoinOf, rowJoinProblem } from '../scoring/columns.js';
import { own } from '../schemas/names.js';
import { BatchError } from '../errors.js';
import type { ModelDoc } from '../registry/types.js';
import { expression, looksLikeBinding, parseOwnInput, parseStepInput, parseStepOutput } from './bindings.js';
import { type StepComponents, analysePipeline, nestedPipelineError } from './graph.js';
import { checkLiteral } from './literals.js';
import {
  type CommandComponentBody,
  type ComponentBody,
  type InputSpecBody,
  type ParallelComponentBody,
  type PipelineComponentBody,
  rowsOutput,
} from './schemas.js';
import type {
  CommandComponentDoc,
  ComponentDoc,
  ComponentRef,
  InputSpec,
  LiteralValue,
  OutputSpec,
  ParallelComponentDoc,
  PipelineComponentDoc,
  PipelineStepDoc,
  StepComponentDoc,
  UriType,
} from './types.js';
import { isUriType } from './types.js';

/**
 * Turns a validated component body into the document the registry stores: data paths resolved to
 * their canonical URIs (and the entry script checked to exist, as deployments check
 * `scoring_script`), model and component references pinned to the version they name now, literal
 * values normalized, the pipeline graph checked. Errors name fields under `prefix`.
 */

/** What normalizing needs from the registry. */
export interface ComponentResolver {
  /** The canonical URI of a code folder, once `script` is found in it (errors name the two fields). */
  resolveCode(code: string, script: string, codeField: string, scriptField: string): Promise<string>;
  /** The canonical URI of a data path of the given type. */
  resolveData(path: string, field: string, type: UriType): Promise<string>;
  /** A model reference, azureml:{name}:{version} or azureml:{name}@latest, resolved now. */
  resolveModel(text: string, field: string): Promise<ModelDoc>;
  /** A registered component by reference text, pinned to the version it names now. */
  resolveComponentText(text: string, field: string): Promise<{ ref: ComponentRef; doc: ComponentDoc }>;
}

function join(prefix: string, field: string): string {
  return prefix ? `${prefix}.${field}` : field;
}

async function normalizeInputs(inputs: Record<string, InputSpecBody>, resolver: ComponentResolver, prefix: string): Promise<Record<string, InputSpec>> {
  const out: Record<string, InputSpec> = {};
  for (const [name, spec] of Object.entries(inputs)) {
    const field = join(prefix, `inputs.${name}.default`);
    let value: LiteralValue | undefined;
    if (spec.default !== undefined) {
      value = isUriType(spec.type) ? await resolver.resolveData(String(spec.default), field, spec.type) : checkLiteral(spec, spec.default, field);
    }
    out[name] = {
      type: spec.type,
      description: spec.description,
      default: value,
      optional: spec.optional,
      enum: spec.enum,
      min: spec.min,
      max: spec.max,
    };
  }
  return out;
}

function normalizeOutputs(outputs: Record<string, OutputSpec>): Record<string, OutputSpec> {
  return Object.fromEntries(Object.entries(outputs).map(([name, spec]) => [name, { type: spec.type, description: spec.description }]));
}

async function common(
  body: ComponentBody,
  resolver: ComponentResolver,
  prefix: string,
): Promise<Pick<ComponentDoc, 'name' | 'version' | 'display_name' | 'description' | 'tags' | 'inputs' | 'outputs'>> {
  return {
    name: body.name,
    version: body.version,
    display_name: body.display_name,
    description: body.description,
    tags: body.tags,
    inputs: await normalizeInputs(body.inputs, resolver, prefix),
    outputs: normalizeOutputs(body.outputs),
  };
}

async function normalizeCommand(body: CommandComponentBody, resolver: ComponentResolver, prefix: string): Promise<CommandComponentDoc> {
  const base = await common(body, resolver, prefix);
  const code = await resolver.resolveCode(body.code, body.entry_script, join(prefix, 'code'), join(prefix, 'entry_script'));
  return {
    ...base,
    type: 'command',
    code,
    entry_script: body.entry_script,
    environment_variables: body.environment_variables,
    limits: { timeout: body.limits.timeout },
    retry_settings: { max_retries: body.retry_settings.max_retries },
  };
}

async function normalizeParallel(body: ParallelComponentBody, resolver: ComponentResolver, prefix: string): Promise<ParallelComponentDoc> {
  const base = await common(body, resolver, prefix);
  const model = await resolver.resolveModel(body.model, join(prefix, 'model'));
  const task = body.task;
  // As model deployments: an ONNX model scores without a script, a custom model needs one.
  if (model.type === 'custom_model' && task?.entry_script === undefined) {
    const field = join(prefix, 'task');
    const message = 'required for custom_model models: task.code and task.entry_script (a scoring script)';
    throw new BatchError('validation_failed', `${field}: ${message}.`, { issues: [{ field, message }] });
  }
  const code =
    task?.code !== undefined && task.entry_script !== undefined
      ? await resolver.resolveCode(task.code, task.entry_script, join(prefix, 'task.code'), join(prefix, 'task.entry_script'))
      : undefined;
  // The scoring script is given its mini-batch and nothing else (init()/run(mini_batch) as a
  // model deployment's): another input would be accepted and then silently never reach it.
  const splitName = parseOwnInput(body.input_data.replace(/\s+/g, ''));
  const extra = Object.keys(body.inputs).find((name) => name !== splitName);
  if (extra !== undefined) {
    const field = join(prefix, `inputs.${extra}`);
    const message = `a parallel component takes one input, its input_data (${splitName ?? '?'}); the scoring script would never see "${extra}". Use environment_variables, or a command step`;
    throw new BatchError('validation_failed', `${field}: ${message}.`, { issues: [{ field, message }] });
  }
  const joinProblem = rowJoinProblem(rowJoinOf(body), { script: code !== undefined, field: prefix === '' ? '' : prefix });
  if (joinProblem) {
    const field = joinProblem.field.replace(/^\./, '');
    throw new BatchError('validation_failed', `${field}: ${joinProblem.message}.`, { issues: [{ field, message: joinProblem.message }] });
  }
  const rows = rowsOutput(body.outputs, task?.append_row_to, body.output_action);
  if (!rows.ok) {
    // The schema refuses these already; kept so this function is safe on its own.
    const field = join(prefix, rows.field.join('.'));
    throw new BatchError('validation_failed', `${field}: ${rows.message}.`, { issues: [{ field, message: rows.message }] });
  }
  return {
    ...base,
    type: 'parallel',
    input_data: body.input_data.replace(/\s+/g, ''),
    model: { name: model.name, version: model.version },
    task: { type: 'run_function', code, entry_script: code === undefined ? undefined : task?.entry_script, append_row_to: expression.ownOutput(rows.name) },
    max_concurrency_per_instance: body.max_concurrency_per_instance,
    mini_batch_size: body.mini_batch_size,
    error_threshold: body.error_threshold,
    retry_settings: body.retry_settings,
    output_action: body.output_action,
    output_file_name: body.output_file_name,
    logging_level: body.logging_level,
    environment_variables: body.environment_variables,
    ...(body.join === undefined ? {} : { join: body.join }),
    ...(body.key_field === undefined ? {} : { key_field: body.key_field }),
    ...(body.csv_header === undefined ? {} : { csv_header: body.csv_header }),
    resources: body.resources,
    split: body.split,
  };
}

/** The stored form of a step input: bindings without spaces, literals as checked. */
function canonicalInput(value: unknown, bound: LiteralValue | undefined): LiteralValue {
  if (typeof value === 'string' && looksLikeBinding(value)) {
    const b = parseStepInput(value);
    if (b) return b.kind === 'parent_input' ? expression.parentInput(b.name) : expression.stepOutput(b.step, b.output);
  }
  if (bound === undefined) throw new BatchError('internal', 'A literal step input was not checked.');
  return bound;
}

async function normalizePipeline(body: PipelineComponentBody, resolver: ComponentResolver, prefix: string): Promise<PipelineComponentDoc> {
  const base = await common(body, resolver, prefix);
  const components: StepComponents = {};
  for (const [stepName, step] of Object.entries(body.jobs)) {
    const field = join(prefix, `jobs.${stepName}.component`);
    if (step.type === 'pipeline') throw nestedPipelineError(join(prefix, `jobs.${stepName}.type`), stepName);
    let loaded: { component: StepComponentDoc; ref?: ComponentRef };
    if (typeof step.component === 'string') {
      const { ref, doc } = await resolver.resolveComponentText(step.component, field);
      if (doc.type === 'pipeline') throw nestedPipelineError(field, stepName);
      loaded = { component: doc, ref };
    } else if (step.component.type === 'command') {
      loaded = { component: await normalizeCommand(step.component, resolver, field) };
    } else if (step.component.type === 'parallel') {
      loaded = { component: await normalizeParallel(step.component, resolver, field) };
    } else {
      throw nestedPipelineError(field, stepName);
    }
    if (step.type !== undefined && step.type !== loaded.component.type) {
      const typeField = join(prefix, `jobs.${stepName}.type`);
      const message = `the component is a ${loaded.component.type} component`;
      throw new BatchError('validation_failed', `${typeField}: ${message}.`, { issues: [{ field: typeField, message }] });
    }
    components[stepName] = loaded;
  }
  const resolved = analysePipeline({ inputs: base.inputs, outputs: base.outputs, jobs: body.jobs }, components, prefix);
  const jobs: Record<string, PipelineStepDoc> = {};
  for (const step of resolved.steps) {
    const given = own(body.jobs, step.name);
    if (!given) continue;
    const inputs: Record<string, LiteralValue> = {};
    for (const [name, value] of Object.entries(given.inputs)) {
      const binding = own(step.inputs, name);
      inputs[name] = canonicalInput(value, binding?.kind === 'literal' ? binding.value : undefined);
    }
    const outputs: Record<string, string> = {};
    for (const [name, text] of Object.entries(given.outputs)) outputs[name] = expression.parentOutput(parseStepOutput(text) ?? '');
    jobs[step.name] = { type: step.type, component: step.ref ?? step.component, inputs, outputs };
  }
  return { ...base, type: 'pipeline', jobs };
}

/** The stored document of a component body (see the module comment). */
export async function normalizeComponent(body: ComponentBody, resolver: ComponentResolver, prefix = ''): Promise<ComponentDoc> {
  switch (body.type) {
    case 'command':
      return normalizeCommand(body, resolver, prefix);
    case 'parallel':
      return normalizeParallel(body, resolver, prefix);
    case 'pipeline':
      return normalizePipeline(body, resolver, prefix);
  }
}
