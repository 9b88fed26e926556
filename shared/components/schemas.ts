import { z } from 'zod';
import { identifier, stepName } from '../schemas/names.js';
import { assetVersion, codeConfiguration, dataPath, deploymentSettings, resources, splitSettings, tags } from '../schemas/resources.js';
import { parseOwnInput, parseOwnOutput } from './bindings.js';
import { literalCheck } from './literals.js';
import { type InputType, type OutputSpec, isUriType } from './types.js';

/**
 * Request bodies of `PUT /api/components/{name}/versions/{version}`: Azure ML's component YAML
 * (command, parallel, pipeline) as JSON, with its field names and defaults. Objects are strict: an
 * unknown or misspelt field is an error naming it. What needs the registry (data paths, model and
 * component references, the pipeline graph) is checked when the component is registered
 * (`normalize.ts`, `graph.ts`).
 */

/**
 * Azure ML component names: "Must start with lowercase letter. Allowed characters are lowercase
 * letters, numbers, and underscore(_). Maximum length is 255 characters." (reference-yaml-component-command)
 */
export const componentName = z
  .string()
  .regex(/^[a-z][a-z0-9_]{0,254}$/, 'must start with a lower-case letter and hold only lower-case letters, digits and "_" (at most 255)');

export const componentVersion = assetVersion;

/**
 * Input and output names are identifiers (they appear in `${{inputs.<name>}}`). Azure ML reserves a
 * few that collide with environment variables: "Don't use any of these reserved parameters as your
 * inputs/outputs name: path, ld_library_path, user, logname, home, pwd, shell" (reference-yaml-component-command,
 * "Common errors").
 */
const RESERVED_IO_NAMES = ['path', 'ld_library_path', 'user', 'logname', 'home', 'pwd', 'shell'];
export const ioName = identifier.refine((n) => !RESERVED_IO_NAMES.includes(n.toLowerCase()), `is reserved by Azure ML (${RESERVED_IO_NAMES.join(', ')})`);

/** Azure ML step names (see shared/schemas/names.ts). */
export { stepName };

const description = z.string().max(5000).optional();
const literal = z.union([z.string(), z.number(), z.boolean()]);

/** A relative path to an ES module inside a code folder (the rule of `code_configuration.scoring_script`). */
export const scriptPath = codeConfiguration.shape.scoring_script;

const NUMERIC: readonly InputType[] = ['integer', 'number'];

/**
 * A component input. `enum` only on strings and `min`/`max` only on integers and numbers (Azure ML:
 * "This field can only be specified if `type` field is `number` or `integer`"; "Only applicable if
 * `type` field is `string`"); a default must satisfy the input's own type, enum and min/max. A uri
 * input's default is a data path, resolved when the component is registered.
 */
export const inputSpec = z
  .strictObject({
    type: z.enum(['uri_file', 'uri_folder', 'string', 'integer', 'number', 'boolean']),
    description,
    default: literal.optional(),
    optional: z.boolean().default(false),
    enum: z.array(z.string()).min(1, 'must list at least one value').optional(),
    min: z.number().optional(),
    max: z.number().optional(),
  })
  .superRefine((spec, ctx) => {
    const wrong = (field: string, message: string): void => {
      ctx.addIssue({ code: 'custom', path: [field], message });
    };
    if (spec.enum !== undefined && spec.type !== 'string') wrong('enum', `only string inputs take enum (this input is ${spec.type})`);
    for (const bound of ['min', 'max'] as const) {
      if (spec[bound] !== undefined && !NUMERIC.includes(spec.type)) wrong(bound, `only integer and number inputs take ${bound} (this input is ${spec.type})`);
    }
    if (spec.min !== undefined && spec.max !== undefined && spec.min > spec.max) wrong('max', `must be at least min (${spec.min})`);
    if (spec.default === undefined) return;
    if (isUriType(spec.type)) {
      if (typeof spec.default !== 'string' || spec.default === '') wrong('default', `a ${spec.type} input's default is a data path`);
      return;
    }
    const checked = literalCheck(spec, spec.default);
    if (!checked.ok) wrong('default', checked.message);
  });
export type InputSpecBody = z.infer<typeof inputSpec>;

export const outputSpec = z.strictObject({
  type: z.enum(['uri_file', 'uri_folder']),
  description,
});

const common = {
  name: componentName.optional(),
  version: componentVersion.optional(),
  display_name: z.string().max(256).optional(),
  description,
  tags,
  inputs: z.record(ioName, inputSpec).default({}),
  outputs: z.record(ioName, outputSpec).default({}),
};

/** Azure ML: "Make sure names of inputs and outputs aren't duplicated." */
function distinctNames(body: { inputs: Record<string, unknown>; outputs: Record<string, unknown> }, ctx: z.RefinementCtx): void {
  for (const name of Object.keys(body.outputs)) {
    if (Object.hasOwn(body.inputs, name)) ctx.addIssue({ code: 'custom', path: ['outputs', name], message: `an input is already named "${name}"` });
  }
}

export const commandComponentBody = z
  .strictObject({
    ...common,
    type: z.literal('command').default('command'),
    /** The folder holding the entry script and anything it imports. */
    code: dataPath,
    entry_script: scriptPath,
    environment_variables: deploymentSettings.shape.environment_variables,
    /** Azure ML's command job `limits.timeout`, in seconds. */
    limits: z.strictObject({ timeout: z.number().int().min(1).max(604_800).default(3600) }).prefault({}),
    retry_settings: z.strictObject({ max_retries: z.number().int().min(0).max(100).default(0) }).prefault({}),
  })
  .superRefine(distinctNames)
  .meta({ id: 'CommandComponentRequest' });
export type CommandComponentBody = z.infer<typeof commandComponentBody>;

/**
 * The output a parallel component's rows (and its job reports) go to: `task.append_row_to` when
 * given; otherwise the only uri_folder output. With `append_row` and more than one output,
 * `append_row_to` is required (Azure ML aggregates rows only into the output it names).
 */
export function rowsOutput(
  outputs: Record<string, OutputSpec>,
  appendRowTo: string | undefined,
  outputAction: 'append_row' | 'summary_only',
): { ok: true; name: string } | { ok: false; field: (string | number)[]; message: string } {
  if (appendRowTo !== undefined) {
    const name = parseOwnOutput(appendRowTo);
    const field = ['task', 'append_row_to'];
    if (name === undefined) return { ok: false, field, message: 'must be ${{outputs.<name>}}' };
    const spec = outputs[name];
    if (!spec) return { ok: false, field, message: `there is no output "${name}"` };
    if (spec.type !== 'uri_folder') return { ok: false, field, message: `output "${name}" is a ${spec.type}; rows and reports go to a uri_folder output` };
    return { ok: true, name };
  }
  const names = Object.keys(outputs);
  const folders = names.filter((n) => outputs[n]?.type === 'uri_folder');
  if (outputAction === 'append_row' && names.length > 1) {
    return { ok: false, field: ['task', 'append_row_to'], message: 'required with output_action append_row and more than one output: ${{outputs.<name>}}' };
  }
  const only = folders.length === 1 ? folders[0] : undefined;
  if (only !== undefined) return { ok: true, name: only };
  if (folders.length === 0) return { ok: false, field: ['outputs'], message: 'a parallel component needs a uri_folder output for its rows and reports' };
  return { ok: false, field: ['task', 'append_row_to'], message: 'name the output that receives the rows and reports: ${{outputs.<name>}}' };
}

export const parallelTask = z
  .strictObject({
    type: z.literal('run_function').default('run_function'),
    code: dataPath.optional(),
    entry_script: scriptPath.optional(),
    append_row_to: z.string().optional(),
  })
  .superRefine((task, ctx) => {
    if ((task.code === undefined) !== (task.entry_script === undefined)) {
      ctx.addIssue({ code: 'custom', path: [task.code === undefined ? 'code' : 'entry_script'], message: 'code and entry_script go together' });
    }
  });

export const parallelComponentBody = z
  .strictObject({
    ...common,
    type: z.literal('parallel'),
    /** `${{inputs.<name>}}`: the uri_folder or uri_file input split into mini-batches. */
    input_data: z.string(),
    /** azureml:{name}:{version} or azureml:{name}@latest (pinned when registered). */
    model: z.string().min(1),
    task: parallelTask.optional(),
    ...deploymentSettings.shape,
    resources: resources.prefault({}),
    split: splitSettings.optional(),
  })
  .superRefine((body, ctx) => {
    distinctNames(body, ctx);
    const input = parseOwnInput(body.input_data);
    const spec = input === undefined ? undefined : body.inputs[input];
    if (input === undefined) ctx.addIssue({ code: 'custom', path: ['input_data'], message: 'must be ${{inputs.<name>}}' });
    else if (!spec) ctx.addIssue({ code: 'custom', path: ['input_data'], message: `there is no input "${input}"` });
    else if (!isUriType(spec.type)) ctx.addIssue({ code: 'custom', path: ['input_data'], message: `input "${input}" is a ${spec.type}; input_data is a uri_folder or uri_file input` });
    const rows = rowsOutput(body.outputs, body.task?.append_row_to, body.output_action);
    if (!rows.ok) ctx.addIssue({ code: 'custom', path: rows.field, message: rows.message });
  })
  .meta({ id: 'ParallelComponentRequest' });
export type ParallelComponentBody = z.infer<typeof parallelComponentBody>;

/**
 * A step input: a binding expression (`${{parent.inputs.x}}`, `${{parent.jobs.<step>.outputs.y}}`)
 * or a literal, bare or as `{type: literal, value}`.
 */
export const stepInput = z.union([
  z.string(),
  z.number(),
  z.boolean(),
  z.strictObject({ type: z.literal('literal', { error: 'a step input is a binding ${{parent.inputs.<name>}}, a value, or {"type": "literal", "value": ...}' }), value: literal }),
]);

/** Only refused later, with a message naming the step: nested pipelines are not supported yet. */
const nestedPipeline = z.looseObject({ type: z.literal('pipeline') });

const inlineStepComponent = z.discriminatedUnion('type', [commandComponentBody, parallelComponentBody, nestedPipeline], {
  error: (issue) => (issue.code === 'invalid_union' ? 'must be "command" or "parallel"' : undefined),
});

export const pipelineStep = z.strictObject({
  type: z.enum(['command', 'parallel', 'pipeline']).optional(),
  /** azureml:{name}:{version}, azureml:{name}@latest, or an inline command/parallel component. */
  component: z.union([z.string().min(1), inlineStepComponent]),
  inputs: z.record(ioName, stepInput).default({}),
  /** `${{parent.outputs.<name>}}`; an output left out is an intermediate. */
  outputs: z.record(ioName, z.string()).default({}),
});
export type PipelineStepBody = z.infer<typeof pipelineStep>;

export const pipelineComponentBody = z
  .strictObject({
    ...common,
    type: z.literal('pipeline'),
    jobs: z.record(stepName, pipelineStep).refine((jobs) => Object.keys(jobs).length > 0, 'a pipeline needs at least one step'),
  })
  .superRefine(distinctNames)
  .meta({ id: 'PipelineComponentRequest' });
export type PipelineComponentBody = z.infer<typeof pipelineComponentBody>;

/** Any component; `type` defaults to command, as in Azure ML's component YAML. */
export const componentBody = z
  .discriminatedUnion('type', [commandComponentBody, parallelComponentBody, pipelineComponentBody], {
    error: (issue) => (issue.code === 'invalid_union' ? 'must be "command", "parallel" or "pipeline"' : undefined),
  })
  .meta({ id: 'ComponentRequest' });
export type ComponentBody = z.infer<typeof componentBody>;
