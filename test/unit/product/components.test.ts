import { describe, expect, it } from 'vitest';
import { type PipelineShape, type StepComponents, analysePipeline } from '../../../shared/components/graph.js';
import { checkLiteral, literalCheck } from '../../../shared/components/literals.js';
import { componentBody } from '../../../shared/components/schemas.js';
import type { CommandComponentDoc, InputSpec, OutputSpec } from '../../../shared/components/types.js';
import { BatchError, type FieldIssue, toProblem } from '../../../shared/errors.js';
import { deploymentBody } from '../../../shared/schemas/resources.js';
import { parseOrThrow } from '../../../shared/schemas/validate.js';

function command(inputs: Record<string, InputSpec>, outputs: Record<string, OutputSpec>): CommandComponentDoc {
  return {
    type: 'command',
    tags: {},
    inputs,
    outputs,
    code: 'azureml://datastores/workspaceblobstore/paths/code/',
    entry_script: 'main.js',
    environment_variables: {},
    limits: { timeout: 3600 },
    retry_settings: { max_retries: 0 },
  };
}

const folderIn: InputSpec = { type: 'uri_folder', optional: false };
const folderOut: OutputSpec = { type: 'uri_folder' };

/** prep (folder → folder) then score (folder + string mode → folder). */
function components(): StepComponents {
  return {
    prep: { component: command({ data: folderIn }, { prepared: folderOut }) },
    score: {
      component: command(
        { model_input: folderIn, mode: { type: 'string', optional: false, enum: ['append', 'summary'] }, threshold: { type: 'number', optional: true, min: 0, max: 1 } },
        { scores: folderOut },
      ),
    },
  };
}

function pipeline(jobs: PipelineShape['jobs']): PipelineShape {
  return { inputs: { input_data: { type: 'uri_folder', optional: false }, score_mode: { type: 'string', optional: false, default: 'append' } }, outputs: { scores: { type: 'uri_folder' } }, jobs };
}

const goodJobs = (): PipelineShape['jobs'] => ({
  prep: { inputs: { data: '${{parent.inputs.input_data}}' }, outputs: {} },
  score: { inputs: { model_input: '${{ parent.jobs.prep.outputs.prepared }}', mode: '${{parent.inputs.score_mode}}', threshold: '0.5' }, outputs: { scores: '${{parent.outputs.scores}}' } },
});

/** The 400 a failing call throws, as the API sends it: status and the named fields. */
function problemOf(fn: () => unknown): { status: number; fields: string[]; errors: FieldIssue[] } {
  try {
    fn();
  } catch (err) {
    if (!(err instanceof BatchError)) throw err;
    const problem = toProblem(err);
    const errors = problem.errors ?? [];
    return { status: problem.status, fields: errors.map((e) => e.field), errors };
  }
  throw new Error('expected a BatchError');
}

describe('pipeline graph', () => {
  it('binds a valid graph and orders its steps', () => {
    const jobs = goodJobs();
    const resolved = analysePipeline(pipeline({ score: jobs['score'] ?? { inputs: {}, outputs: {} }, prep: jobs['prep'] ?? { inputs: {}, outputs: {} } }), components());
    expect(resolved.order).toEqual(['prep', 'score']);
    const score = resolved.steps.find((s) => s.name === 'score');
    expect(score?.depends_on).toEqual(['prep']);
    expect(score?.inputs).toEqual({
      model_input: { kind: 'step_output', step: 'prep', output: 'prepared' },
      mode: { kind: 'parent_input', name: 'score_mode' },
      threshold: { kind: 'literal', value: 0.5 },
    });
    expect(score?.outputs).toEqual({ scores: { kind: 'parent_output', name: 'scores' } });
    expect(resolved.steps.find((s) => s.name === 'prep')?.outputs).toEqual({ prepared: { kind: 'unbound' } });
  });

  it('refuses a cycle, naming the step input that closes it', () => {
    const jobs: PipelineShape['jobs'] = {
      prep: { inputs: { data: '${{parent.jobs.score.outputs.scores}}' }, outputs: {} },
      score: { inputs: { model_input: '${{parent.jobs.prep.outputs.prepared}}', mode: 'append' }, outputs: { scores: '${{parent.outputs.scores}}' } },
    };
    const p = problemOf(() => analysePipeline(pipeline(jobs), components()));
    expect(p.status).toBe(400);
    expect(p.fields).toEqual(['jobs.prep.inputs.data']);
    expect(p.errors[0]?.message).toContain('cycle: prep → score → prep');
  });

  it('refuses a step reading its own output', () => {
    const jobs = { ...goodJobs(), prep: { inputs: { data: '${{parent.jobs.prep.outputs.prepared}}' }, outputs: {} } };
    const p = problemOf(() => analysePipeline(pipeline(jobs), components()));
    expect(p).toMatchObject({ status: 400, fields: ['jobs.prep.inputs.data'] });
    expect(p.errors[0]?.message).toContain('cycle');
  });

  it('refuses dangling bindings: a missing step, step output, pipeline input or pipeline output', () => {
    const jobs = goodJobs();
    const cases: [PipelineShape['jobs'], string, string][] = [
      [{ ...jobs, score: { ...jobs['score']!, inputs: { ...jobs['score']!.inputs, model_input: '${{parent.jobs.nope.outputs.prepared}}' } } }, 'jobs.score.inputs.model_input', 'there is no step "nope"'],
      [{ ...jobs, score: { ...jobs['score']!, inputs: { ...jobs['score']!.inputs, model_input: '${{parent.jobs.prep.outputs.other}}' } } }, 'jobs.score.inputs.model_input', 'step "prep" has no output "other"'],
      [{ ...jobs, prep: { inputs: { data: '${{parent.inputs.missing}}' }, outputs: {} } }, 'jobs.prep.inputs.data', 'the pipeline has no input "missing"'],
      [{ ...jobs, prep: { inputs: { data: '${{parent.inputs.input_data}}', extra: 1 }, outputs: {} } }, 'jobs.prep.inputs.extra', 'the component has no input "extra"'],
      [{ ...jobs, score: { ...jobs['score']!, outputs: { scores: '${{parent.outputs.nope}}' } } }, 'jobs.score.outputs.scores', 'the pipeline has no output "nope"'],
      [{ ...jobs, prep: { inputs: { data: '${{inputs.input_data}}' }, outputs: {} } }, 'jobs.prep.inputs.data', 'must be ${{parent.inputs.<name>}}'],
    ];
    for (const [bad, field, message] of cases) {
      const p = problemOf(() => analysePipeline(pipeline(bad), components()));
      expect(p.status).toBe(400);
      expect(p.fields).toContain(field);
      expect(p.errors.find((e) => e.field === field)?.message).toContain(message);
    }
  });

  it('refuses a pipeline output no step binds', () => {
    const jobs = goodJobs();
    const p = problemOf(() => analysePipeline(pipeline({ ...jobs, score: { ...jobs['score']!, outputs: {} } }), components()));
    expect(p).toMatchObject({ status: 400, fields: ['outputs.scores'] });
  });

  it('refuses type mismatches between a binding and the input it feeds', () => {
    const jobs = goodJobs();
    // A string pipeline input into a uri_folder step input.
    const p = problemOf(() => analysePipeline(pipeline({ ...jobs, prep: { inputs: { data: '${{parent.inputs.score_mode}}' }, outputs: {} } }), components()));
    expect(p.status).toBe(400);
    expect(p.fields).toEqual(['jobs.prep.inputs.data']);
    expect(p.errors[0]?.message).toBe('pipeline input "score_mode" is string; this input is uri_folder');
    // A uri_file step output into a uri_folder input.
    const fileOut = components();
    fileOut['prep'] = { component: command({ data: folderIn }, { prepared: { type: 'uri_file' } }) };
    const q = problemOf(() => analysePipeline(pipeline(goodJobs()), fileOut));
    expect(q.fields).toEqual(['jobs.score.inputs.model_input']);
    expect(q.errors[0]?.message).toContain('is uri_file; this input is uri_folder');
    // A literal into a data input.
    const r = problemOf(() => analysePipeline(pipeline({ ...jobs, prep: { inputs: { data: 'some/path' }, outputs: {} } }), components()));
    expect(r.fields).toEqual(['jobs.prep.inputs.data']);
  });

  it('refuses a required input left unbound, and accepts one with a default or marked optional', () => {
    const jobs = goodJobs();
    const withoutMode = { ...jobs['score']!, inputs: { model_input: '${{parent.jobs.prep.outputs.prepared}}' } };
    const p = problemOf(() => analysePipeline(pipeline({ ...jobs, score: withoutMode }), components()));
    expect(p).toMatchObject({ status: 400, fields: ['jobs.score.inputs.mode'] });
    expect(p.errors[0]?.message).toContain('required');

    const withDefault = components();
    const score = withDefault['score']!.component;
    withDefault['score'] = { component: { ...score, inputs: { ...score.inputs, mode: { type: 'string', optional: false, default: 'append' } } } };
    const resolved = analysePipeline(pipeline({ ...jobs, score: withoutMode }), withDefault);
    expect(resolved.steps.find((s) => s.name === 'score')?.inputs['mode']).toEqual({ kind: 'unbound' });
  });

  it('checks literal step inputs against the component input, naming the field', () => {
    const jobs = goodJobs();
    const withInputs = (inputs: Record<string, unknown>): PipelineShape['jobs'] => ({ ...jobs, score: { ...jobs['score']!, inputs: { ...jobs['score']!.inputs, ...inputs } } });
    const enumFail = problemOf(() => analysePipeline(pipeline(withInputs({ mode: 'overwrite' })), components()));
    expect(enumFail).toMatchObject({ status: 400, fields: ['jobs.score.inputs.mode'] });
    expect(enumFail.errors[0]?.message).toBe('must be one of "append", "summary"');
    const maxFail = problemOf(() => analysePipeline(pipeline(withInputs({ threshold: 2 })), components()));
    expect(maxFail.errors).toEqual([{ field: 'jobs.score.inputs.threshold', message: 'must be at most 1, not 2' }]);
    const typeFail = problemOf(() => analysePipeline(pipeline(withInputs({ threshold: true })), components()));
    expect(typeFail.errors).toEqual([{ field: 'jobs.score.inputs.threshold', message: 'must be a number, not boolean true' }]);
    const wrapped = analysePipeline(pipeline(withInputs({ mode: { type: 'literal', value: 'summary' } })), components());
    expect(wrapped.steps.find((s) => s.name === 'score')?.inputs['mode']).toEqual({ kind: 'literal', value: 'summary' });
  });

  it('collects every problem, each naming its own field', () => {
    const p = problemOf(() =>
      analysePipeline(
        pipeline({
          prep: { inputs: {}, outputs: { prepared: '${{parent.outputs.nope}}' } },
          score: { inputs: { model_input: '${{parent.jobs.prep.outputs.prepared}}', mode: 'bad' }, outputs: {} },
        }),
        components(),
      ),
    );
    expect(p.fields.sort()).toEqual(['jobs.prep.inputs.data', 'jobs.prep.outputs.prepared', 'jobs.score.inputs.mode', 'outputs.scores']);
  });
});

describe('literal inputs', () => {
  const int: InputSpec = { type: 'integer', optional: false, min: 1, max: 10 };
  const num: InputSpec = { type: 'number', optional: false, min: -1.5 };
  const str: InputSpec = { type: 'string', optional: false, enum: ['a', 'b'] };
  const bool: InputSpec = { type: 'boolean', optional: false };

  it('checks type, integer-ness, enum and inclusive min/max', () => {
    expect(literalCheck(int, 1)).toEqual({ ok: true, value: 1 });
    expect(literalCheck(int, 10)).toEqual({ ok: true, value: 10 });
    expect(literalCheck(int, 11)).toEqual({ ok: false, message: 'must be at most 10, not 11' });
    expect(literalCheck(int, 0)).toEqual({ ok: false, message: 'must be at least 1, not 0' });
    expect(literalCheck(int, 2.5)).toEqual({ ok: false, message: 'must be an integer, not 2.5' });
    expect(literalCheck(int, 'x')).toEqual({ ok: false, message: 'must be an integer, not the string "x"' });
    expect(literalCheck(num, -1.5)).toEqual({ ok: true, value: -1.5 });
    expect(literalCheck(num, -2)).toEqual({ ok: false, message: 'must be at least -1.5, not -2' });
    expect(literalCheck(str, 'a')).toEqual({ ok: true, value: 'a' });
    expect(literalCheck(str, 'c')).toEqual({ ok: false, message: 'must be one of "a", "b"' });
    expect(literalCheck(str, 3)).toEqual({ ok: false, message: 'must be a string, not number 3' });
    expect(literalCheck(bool, false)).toEqual({ ok: true, value: false });
    expect(literalCheck(bool, 'yes')).toEqual({ ok: false, message: 'must be true or false, not the string "yes"' });
    expect(literalCheck({ type: 'uri_folder', optional: false }, 'x').ok).toBe(false);
  });

  it("reads Azure ML REST literals (strings) as the input's type", () => {
    expect(literalCheck(int, ' 7 ')).toEqual({ ok: true, value: 7 });
    expect(literalCheck(int, '7.0')).toMatchObject({ ok: false });
    expect(literalCheck(num, '1e2')).toEqual({ ok: true, value: 100 });
    expect(literalCheck(bool, 'TRUE')).toEqual({ ok: true, value: true });
  });

  it('unwraps {type: literal} and {JobInputType: Literal}, and names the field of anything else', () => {
    expect(checkLiteral(int, { type: 'literal', value: '3' }, 'inputs.n')).toBe(3);
    expect(checkLiteral(str, { JobInputType: 'Literal', Value: 'b' }, 'inputs.s')).toBe('b');
    const bad = problemOf(() => checkLiteral(int, { JobInputType: 'UriFolder', Uri: 'x' }, 'inputs.n'));
    expect(bad).toMatchObject({ status: 400, fields: ['inputs.n.JobInputType'] });
    const extra = problemOf(() => checkLiteral(int, { type: 'literal', value: 1, other: 2 }, 'inputs.n'));
    expect(extra.fields).toEqual(['inputs.n.other']);
    const range = problemOf(() => checkLiteral(int, 42, 'inputs.n'));
    expect(range.errors).toEqual([{ field: 'inputs.n', message: 'must be at most 10, not 42' }]);
  });
});

describe('component schemas', () => {
  const code = 'azureml://datastores/workspaceblobstore/paths/code/';

  function fields(value: unknown): string[] {
    return problemOf(() => parseOrThrow(componentBody, value, 'component')).fields;
  }

  it('defaults type to command and fills limits and retries', () => {
    const body = parseOrThrow(componentBody, { code, entry_script: 'main.js' }, 'component');
    expect(body).toMatchObject({ type: 'command', limits: { timeout: 3600 }, retry_settings: { max_retries: 0 }, environment_variables: {}, inputs: {}, outputs: {} });
  });

  it('keeps enum to strings and min/max to numbers, and checks defaults against them', () => {
    expect(fields({ code, entry_script: 'm.js', inputs: { n: { type: 'integer', enum: ['1'] } } })).toEqual(['inputs.n.enum']);
    expect(fields({ code, entry_script: 'm.js', inputs: { s: { type: 'string', min: 1 } } })).toEqual(['inputs.s.min']);
    expect(fields({ code, entry_script: 'm.js', inputs: { n: { type: 'integer', min: 5, max: 1 } } })).toEqual(['inputs.n.max']);
    expect(fields({ code, entry_script: 'm.js', inputs: { n: { type: 'integer', max: 3, default: 4 } } })).toEqual(['inputs.n.default']);
    expect(fields({ code, entry_script: 'm.js', inputs: { s: { type: 'string', enum: ['a'], default: 'b' } } })).toEqual(['inputs.s.default']);
    expect(fields({ code, entry_script: 'm.js', inputs: { x: { type: 'mltable' } } })).toEqual(['inputs.x.type']);
    expect(fields({ code, entry_script: 'm.js', outputs: { x: { type: 'string' } } })).toEqual(['outputs.x.type']);
  });

  it('names the parallel fields that do not hold together', () => {
    const parallel = { type: 'parallel', model: 'azureml:m:1', inputs: { data: { type: 'uri_folder' }, n: { type: 'integer' } }, outputs: { out: { type: 'uri_folder' } } };
    expect(fields({ ...parallel, input_data: '${{inputs.n}}' })).toEqual(['input_data']);
    expect(fields({ ...parallel, input_data: '${{inputs.nope}}' })).toEqual(['input_data']);
    expect(fields({ ...parallel, input_data: '${{inputs.data}}', mini_batch_size: 0 })).toEqual(['mini_batch_size']);
    expect(fields({ ...parallel, input_data: '${{inputs.data}}', outputs: { a: { type: 'uri_folder' }, b: { type: 'uri_folder' } } })).toEqual(['task.append_row_to']);
    expect(parseOrThrow(componentBody, { ...parallel, input_data: '${{inputs.data}}' }, 'component')).toMatchObject({ type: 'parallel', error_threshold: -1, mini_batch_size: 10 });
  });

  it('names the step field of a bad pipeline step', () => {
    const base = { type: 'pipeline', jobs: { score: { component: 'azureml:c:1', inputs: {} } } };
    expect(fields({ ...base, jobs: {} })).toEqual(['jobs']);
    expect(fields({ ...base, jobs: { score: { component: 'azureml:c:1', input: {} } } })).toEqual(['jobs.score.input']);
    expect(fields({ ...base, jobs: { score: { component: { type: 'command', code, entry_script: 'm.js', limits: { timeout: 0 } } } } })).toEqual(['jobs.score.component.limits.timeout']);
    expect(fields({ ...base, jobs: { '1bad': { component: 'azureml:c:1' } } })).toEqual(['jobs.1bad']);
  });
});

describe('pipeline deployment schema', () => {
  it('accepts type pipeline with a component and fills the settings', () => {
    const d = parseOrThrow(deploymentBody, { type: 'pipeline', component: 'azureml:p@latest' }, 'deployment');
    expect(d).toMatchObject({ type: 'pipeline', component: 'azureml:p@latest', settings: { continue_on_step_failure: false, default_datastore: 'workspaceblobstore', force_rerun: false } });
    const model = parseOrThrow(deploymentBody, { model: 'azureml:m:1' }, 'deployment');
    expect(model.type).toBe('model');
  });

  it('names the fields a pipeline deployment gets wrong', () => {
    expect(problemOf(() => parseOrThrow(deploymentBody, { type: 'pipeline' }, 'deployment')).fields).toEqual(['component']);
    expect(problemOf(() => parseOrThrow(deploymentBody, { type: 'pipeline', component: 'azureml:p:1', model: 'azureml:m:1' }, 'deployment')).fields).toEqual(['model']);
    expect(problemOf(() => parseOrThrow(deploymentBody, { type: 'pipeline', component: 'azureml:p:1', settings: { default_compute: 'cpu' } }, 'deployment')).fields).toEqual(['settings.default_compute']);
    expect(problemOf(() => parseOrThrow(deploymentBody, { type: 'other', model: 'azureml:m:1' }, 'deployment')).fields).toEqual(['type']);
  });
});
