/**
 * Azure ML's binding expressions (reference-yaml-core-syntax, "Binding inputs and outputs between
 * steps in a pipeline job"): `${{parent.inputs.<name>}}`, `${{parent.jobs.<step>.outputs.<name>}}`,
 * `${{parent.outputs.<name>}}` in pipeline steps, and `${{inputs.<name>}}` / `${{outputs.<name>}}`
 * inside a component. Spaces inside the braces are allowed, as in Azure ML's examples; the
 * registry stores the expressions without them.
 */

const NAME = '[A-Za-z_][A-Za-z0-9_]*';

const PARENT_INPUT = new RegExp(`^\\$\\{\\{\\s*parent\\.inputs\\.(${NAME})\\s*\\}\\}$`);
const STEP_OUTPUT = new RegExp(`^\\$\\{\\{\\s*parent\\.jobs\\.(${NAME})\\.outputs\\.(${NAME})\\s*\\}\\}$`);
const PARENT_OUTPUT = new RegExp(`^\\$\\{\\{\\s*parent\\.outputs\\.(${NAME})\\s*\\}\\}$`);
const OWN_INPUT = new RegExp(`^\\$\\{\\{\\s*inputs\\.(${NAME})\\s*\\}\\}$`);
const OWN_OUTPUT = new RegExp(`^\\$\\{\\{\\s*outputs\\.(${NAME})\\s*\\}\\}$`);

export type StepInputExpression = { kind: 'parent_input'; name: string } | { kind: 'step_output'; step: string; output: string };

/** Whether a string is meant as a binding expression (and so is never a literal string). */
export function looksLikeBinding(text: string): boolean {
  return text.includes('${{');
}

/** A step input's expression, or undefined when the text is not one of the two a step input takes. */
export function parseStepInput(text: string): StepInputExpression | undefined {
  const parent = PARENT_INPUT.exec(text);
  if (parent?.[1] !== undefined) return { kind: 'parent_input', name: parent[1] };
  const step = STEP_OUTPUT.exec(text);
  if (step?.[1] !== undefined && step[2] !== undefined) return { kind: 'step_output', step: step[1], output: step[2] };
  return undefined;
}

/** The parent output a step output binds to, or undefined when the text is not `${{parent.outputs.<name>}}`. */
export function parseStepOutput(text: string): string | undefined {
  return PARENT_OUTPUT.exec(text)?.[1];
}

/** The input named by `${{inputs.<name>}}` (a parallel component's `input_data`). */
export function parseOwnInput(text: string): string | undefined {
  return OWN_INPUT.exec(text)?.[1];
}

/** The output named by `${{outputs.<name>}}` (a parallel task's `append_row_to`). */
export function parseOwnOutput(text: string): string | undefined {
  return OWN_OUTPUT.exec(text)?.[1];
}

export const expression = {
  parentInput: (name: string): string => `\${{parent.inputs.${name}}}`,
  stepOutput: (step: string, output: string): string => `\${{parent.jobs.${step}.outputs.${output}}}`,
  parentOutput: (name: string): string => `\${{parent.outputs.${name}}}`,
  ownInput: (name: string): string => `\${{inputs.${name}}}`,
  ownOutput: (name: string): string => `\${{outputs.${name}}}`,
};
