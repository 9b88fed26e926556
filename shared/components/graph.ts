import { own } from '../schemas/names.js';
import { BatchError, type FieldIssue, notFound } from '../errors.js';
import type { Stored } from '../storage/doc-table.js';
import { expression, looksLikeBinding, parseStepInput, parseStepOutput } from './bindings.js';
import { literalCheck, unwrapLiteral } from './literals.js';
import {
  type ComponentDoc,
  type ComponentRef,
  type InputBinding,
  type InputSpec,
  type InputType,
  type OutputBinding,
  type OutputSpec,
  type PipelineComponentDoc,
  type ResolvedPipeline,
  type ResolvedStep,
  type StepComponentDoc,
  isComponentRef,
  isUriType,
} from './types.js';

/**
 * The pipeline graph: Azure ML's rules for wiring steps (reference-yaml-core-syntax, "Binding inputs
 * and outputs between steps in a pipeline job"; reference-yaml-component-pipeline), checked when a
 * pipeline component is registered and again whenever it is resolved, so a job never starts on a
 * graph that does not hold together.
 */

/** What a pipeline graph is made of: the pipeline's own inputs and outputs, and its steps' wiring. */
export interface PipelineShape {
  inputs: Record<string, InputSpec>;
  outputs: Record<string, OutputSpec>;
  jobs: Record<string, { inputs: Record<string, unknown>; outputs: Record<string, string> }>;
}

/** The component each step runs, loaded. */
export type StepComponents = Record<string, { component: StepComponentDoc; ref?: ComponentRef | undefined }>;

/**
 * Whether a value of type `source` can feed an input of type `target`: data to data of the same
 * uri type; literals to literals of the same type, and an integer to a number.
 */
export function fits(source: InputType, target: InputType): boolean {
  return source === target || (source === 'integer' && target === 'number');
}

function join(prefix: string, field: string): string {
  return prefix ? `${prefix}.${field}` : field;
}

function listed(names: string[]): string {
  return names.length === 0 ? 'none' : names.map((n) => `"${n}"`).join(', ');
}

/**
 * Checks the graph and binds every input and output of every step. Every problem is collected
 * and thrown as one 400 whose issues name the exact field (`jobs.score.inputs.input_data`,
 * `outputs.scores`), with `prefix` before them (`component` for a deployment's inline pipeline).
 * Throws when: a binding names an input, step or output that does not exist; a binding joins
 * types that do not fit; a literal falls outside its input's type, enum or min/max; a required
 * input is left unbound without a default; a pipeline output is bound by no step, or by two; the
 * steps form a cycle (named step by step).
 */
export function analysePipeline(pipeline: PipelineShape, components: StepComponents, prefix = ''): ResolvedPipeline {
  const issues: FieldIssue[] = [];
  const problem = (field: string, message: string): void => {
    issues.push({ field: join(prefix, field), message });
  };
  const stepNames = Object.keys(pipeline.jobs);
  const steps: ResolvedStep[] = [];
  /** For each step, the steps it reads and the input through which (for naming a cycle). */
  const reads = new Map<string, Map<string, string>>();
  const boundBy = new Map<string, string>();

  for (const stepName of stepNames) {
    const step = own(pipeline.jobs, stepName);
    const loaded = own(components, stepName);
    if (!step || !loaded) continue;
    const component = loaded.component;
    const inputs: Record<string, InputBinding> = {};
    const outputs: Record<string, OutputBinding> = {};
    const stepReads = new Map<string, string>();
    reads.set(stepName, stepReads);

    for (const [inputName, value] of Object.entries(step.inputs)) {
      const field = `jobs.${stepName}.inputs.${inputName}`;
      const spec = own(component.inputs, inputName);
      if (!spec) {
        problem(field, `the component has no input "${inputName}" (its inputs: ${listed(Object.keys(component.inputs))})`);
        continue;
      }
      if (typeof value === 'string' && looksLikeBinding(value)) {
        const bound = parseStepInput(value);
        if (!bound) {
          problem(
            field,
            parseStepOutput(value) !== undefined
              ? 'a step input cannot read a pipeline output; bind it to ${{parent.inputs.<name>}} or ${{parent.jobs.<step>.outputs.<name>}}'
              : 'must be ${{parent.inputs.<name>}} or ${{parent.jobs.<step>.outputs.<name>}}',
          );
          continue;
        }
        if (bound.kind === 'parent_input') {
          const source = own(pipeline.inputs, bound.name);
          if (!source) {
            problem(field, `the pipeline has no input "${bound.name}" (its inputs: ${listed(Object.keys(pipeline.inputs))})`);
            continue;
          }
          if (!fits(source.type, spec.type)) {
            problem(field, `pipeline input "${bound.name}" is ${source.type}; this input is ${spec.type}`);
            continue;
          }
          // A required step input fed by an optional pipeline input with no default would run without it.
          if (!spec.optional && spec.default === undefined && source.optional && source.default === undefined) {
            problem(field, `required (the component input has no default), but pipeline input "${bound.name}" is optional with no default; give that input a default or make it required`);
            continue;
          }
          if (source.default !== undefined && !isUriType(spec.type)) {
            const checked = literalCheck(spec, source.default);
            if (!checked.ok) problem(field, `the default of pipeline input "${bound.name}" does not fit: ${checked.message}`);
          }
          inputs[inputName] = { kind: 'parent_input', name: bound.name };
        } else {
          const other = own(pipeline.jobs, bound.step);
          const otherComponent = own(components, bound.step)?.component;
          if (!other || !otherComponent) {
            problem(field, `there is no step "${bound.step}" (steps: ${listed(stepNames)})`);
            continue;
          }
          const output = own(otherComponent.outputs, bound.output);
          if (!output) {
            problem(field, `step "${bound.step}" has no output "${bound.output}" (its outputs: ${listed(Object.keys(otherComponent.outputs))})`);
            continue;
          }
          if (output.type !== spec.type) {
            problem(field, `output "${bound.output}" of step "${bound.step}" is ${output.type}; this input is ${spec.type}`);
            continue;
          }
          if (!stepReads.has(bound.step)) stepReads.set(bound.step, inputName);
          inputs[inputName] = { kind: 'step_output', step: bound.step, output: bound.output };
        }
        continue;
      }
      if (isUriType(spec.type)) {
        problem(field, `a ${spec.type} input takes data: bind it to \${{parent.inputs.<name>}} or to a step's output`);
        continue;
      }
      let raw: unknown;
      try {
        raw = unwrapLiteral(value, field);
      } catch (err) {
        if (!(err instanceof BatchError)) throw err;
        for (const issue of err.issues) problem(issue.field, issue.message);
        continue;
      }
      // Azure ML reads any value holding ${{ as a binding; a literal one would be stored as text that
      // later reads as a binding, so it is refused rather than change meaning.
      if (typeof raw === 'string' && looksLikeBinding(raw)) {
        problem(field, 'a literal value cannot contain "${{" (Azure ML reads it as a binding expression)');
        continue;
      }
      const checked = literalCheck(spec, raw);
      if (!checked.ok) problem(field, checked.message);
      else inputs[inputName] = { kind: 'literal', value: checked.value };
    }

    for (const [inputName, spec] of Object.entries(component.inputs)) {
      if (Object.hasOwn(step.inputs, inputName)) continue;
      if (!spec.optional && spec.default === undefined) {
        problem(`jobs.${stepName}.inputs.${inputName}`, 'required: the component input has no default and is not optional; bind it or give a value');
      }
      inputs[inputName] = { kind: 'unbound' };
    }

    for (const [outputName, text] of Object.entries(step.outputs)) {
      const field = `jobs.${stepName}.outputs.${outputName}`;
      const spec = own(component.outputs, outputName);
      if (!spec) {
        problem(field, `the component has no output "${outputName}" (its outputs: ${listed(Object.keys(component.outputs))})`);
        continue;
      }
      const target = parseStepOutput(text);
      if (target === undefined) {
        problem(field, 'must be ${{parent.outputs.<name>}} (leave the output out to keep it an intermediate)');
        continue;
      }
      const parent = own(pipeline.outputs, target);
      if (!parent) {
        problem(field, `the pipeline has no output "${target}" (its outputs: ${listed(Object.keys(pipeline.outputs))})`);
        continue;
      }
      if (parent.type !== spec.type) {
        problem(field, `pipeline output "${target}" is ${parent.type}; this output is ${spec.type}`);
        continue;
      }
      const first = boundBy.get(target);
      if (first !== undefined) {
        problem(field, `pipeline output "${target}" is already bound by ${join(prefix, first)}; each pipeline output is bound by exactly one step output`);
        continue;
      }
      boundBy.set(target, field);
      outputs[outputName] = { kind: 'parent_output', name: target };
    }
    for (const outputName of Object.keys(component.outputs)) outputs[outputName] ??= { kind: 'unbound' };

    steps.push({ name: stepName, type: component.type, component, ref: loaded.ref, inputs, outputs, depends_on: [...stepReads.keys()] });
  }

  for (const name of Object.keys(pipeline.outputs)) {
    if (!boundBy.has(name)) problem(`outputs.${name}`, `no step output binds it; add ${expression.parentOutput(name)} to a step's outputs`);
  }
  if (issues.length > 0) throw graphError(issues);

  return { steps, order: topologicalOrder(stepNames, reads, prefix) };
}

function graphError(issues: FieldIssue[]): BatchError {
  const [first] = issues;
  const more = issues.length > 1 ? ` (and ${issues.length - 1} more)` : '';
  return new BatchError('validation_failed', `The pipeline is not valid: ${first ? `${first.field}: ${first.message}` : 'invalid'}${more}.`, { issues });
}

/**
 * Kahn's algorithm, taking ready steps in declaration order so the order is stable. Steps left
 * over lie on or behind a cycle; one cycle is followed and named, through the input that closes it.
 */
function topologicalOrder(names: string[], reads: Map<string, Map<string, string>>, prefix: string): string[] {
  const done = new Set<string>();
  const order: string[] = [];
  while (order.length < names.length) {
    const ready = names.find((n) => !done.has(n) && [...(reads.get(n)?.keys() ?? [])].every((dep) => done.has(dep)));
    if (ready === undefined) break;
    done.add(ready);
    order.push(ready);
  }
  if (order.length === names.length) return order;

  // Every left-over step reads at least one left-over step, so following those reads must loop.
  const start = names.find((n) => !done.has(n)) ?? '';
  const path: string[] = [];
  let at = start;
  while (!path.includes(at)) {
    path.push(at);
    at = [...(reads.get(at)?.keys() ?? [])].find((dep) => !done.has(dep)) ?? start;
  }
  const cycle = [...path.slice(path.indexOf(at)), at];
  const [from, to] = cycle;
  const input = from !== undefined && to !== undefined ? reads.get(from)?.get(to) : undefined;
  const field = join(prefix, `jobs.${from ?? start}.inputs.${input ?? ''}`);
  const message = `the steps form a cycle: ${cycle.join(' → ')} (each reads an output of the next)`;
  throw new BatchError('validation_failed', `The pipeline is not valid: ${field}: ${message}.`, { issues: [{ field, message }] });
}

/** Loads registered components by name and version (the Registry is one). */
export interface ComponentSource {
  getComponent(name: string, version: string): Promise<Stored<ComponentDoc> | undefined>;
}

/** A nested pipeline step, refused with the step's name (Azure ML allows them; not supported here yet). */
export function nestedPipelineError(field: string, stepName: string): BatchError {
  const message = `step "${stepName}" is a pipeline; nested pipeline steps are not supported yet (use command and parallel steps)`;
  return new BatchError('unsupported', `${field}: ${message}.`, { issues: [{ field, message }] });
}

/**
 * A stored pipeline component resolved for running: each step's component loaded (references are
 * pinned, so this is what was validated at registration), every input and output bound, and a
 * topological `order` of the steps. `prefix` goes before field names in errors.
 */
export async function resolvePipeline(doc: PipelineComponentDoc, registry: ComponentSource, prefix = ''): Promise<ResolvedPipeline> {
  const components: StepComponents = {};
  for (const [stepName, step] of Object.entries(doc.jobs)) {
    const field = join(prefix, `jobs.${stepName}.component`);
    if (!isComponentRef(step.component)) {
      components[stepName] = { component: step.component };
      continue;
    }
    const { name, version } = step.component;
    const found = await registry.getComponent(name, version);
    if (!found) throw notFound('Component', `${name}:${version}`, { field });
    if (found.doc.type === 'pipeline') throw nestedPipelineError(field, stepName);
    components[stepName] = { component: found.doc, ref: { name, version } };
  }
  return analysePipeline(doc, components, prefix);
}

/** The registered components a component refers to, with the step that does (for "in use" checks). */
export function componentRefsIn(doc: ComponentDoc): { step: string; ref: ComponentRef }[] {
  if (doc.type !== 'pipeline') return [];
  return Object.entries(doc.jobs).flatMap(([step, s]) => (isComponentRef(s.component) ? [{ step, ref: s.component }] : []));
}

/** A component and the command/parallel components inline in it (for model and datastore "in use" checks). */
export function componentsWithin(doc: ComponentDoc): StepComponentDoc[] {
  if (doc.type !== 'pipeline') return [doc];
  return Object.values(doc.jobs).flatMap((s) => (isComponentRef(s.component) ? [] : [s.component]));
}

/** Every data URI a component (and what is inline in it) reads: code folders and uri defaults. */
export function dataUrisOf(doc: ComponentDoc): string[] {
  const uris: string[] = [];
  const defaults = (inputs: Record<string, InputSpec>): void => {
    for (const spec of Object.values(inputs)) if (isUriType(spec.type) && typeof spec.default === 'string') uris.push(spec.default);
  };
  defaults(doc.inputs);
  for (const c of componentsWithin(doc)) {
    if (c !== doc) defaults(c.inputs);
    if (c.type === 'command') uris.push(c.code);
    else if (c.task.code !== undefined) uris.push(c.task.code);
  }
  return uris;
}
