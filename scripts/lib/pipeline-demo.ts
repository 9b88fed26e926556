/**
 * The pipeline demo's pieces, shared by `npm run demo -- --pipeline` and `npm run bench -- --only
 * pipeline` so that the benchmark measures exactly what the demo runs: penguin CSV files with
 * missing values, the three components (prepare → score → summarize), the pipeline component
 * `penguin_pipeline` and an endpoint whose default deployment is that pipeline.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { BatchClient, StepView } from './batch-client.js';
import { ROOT } from './local-stack.js';
import { penguinRows, toCsv, uploadFiles } from './sample-data.js';

export const WORKSPACE_CONTAINER = 'azureml-blobstore';
export const PIPELINE_SCRIPTS = join(ROOT, 'scripts', 'demo', 'pipeline');
export const PENGUIN_MODEL = join(ROOT, 'scripts', 'demo', 'model', 'penguins.onnx');

export const ds = (path: string): string => `azureml://datastores/workspaceblobstore/paths/${path}`;

/** The measurement columns, the ones a missing value is put into (sex is already empty in some rows). */
const MEASUREMENTS = [1, 2, 3, 4];

/**
 * `files` penguin CSV files of `rows` rows each (penguinRows, so the same penguins as the model
 * demo), with a missing measurement every 37th row: `NA` (as R and pandas write it) and an empty
 * cell in turn. The real table's rows without a recorded sex have an empty cell already. `missing`
 * counts the rows with any missing value: what prepare drops when drop_missing is true.
 */
export function penguinCsvsWithMissing(files: number, rows: number, seed = 7): { files: Record<string, string>; rows: number; missing: number } {
  const all = penguinRows(files * rows, seed);
  const out: Record<string, string> = {};
  let missing = 0;
  let holes = 0;
  for (let f = 0; f < files; f++) {
    const [header, ...lines] = toCsv(all.slice(f * rows, (f + 1) * rows))
      .split('\n')
      .filter((l) => l !== '');
    const edited = lines.map((line, i) => {
      const cells = line.split(',');
      if ((f * rows + i) % 37 === 5) {
        const column = MEASUREMENTS[holes % MEASUREMENTS.length] as number;
        cells[column] = holes % 2 === 0 ? 'NA' : '';
        holes++;
      }
      if (cells.some((c) => c === '' || c === 'NA')) missing++;
      return cells.join(',');
    });
    out[`penguins-${String(f).padStart(3, '0')}.csv`] = `${[header, ...edited].join('\n')}\n`;
  }
  return { files: out, rows: files * rows, missing };
}

export interface PipelineDemoOptions {
  /** Where the raw CSV files go on the workspace datastore (a folder, ending in `/`). */
  dataPrefix: string;
  files: Record<string, string>;
  endpoint: string;
  deployment: string;
  /** The score step's settings. */
  miniBatchSize: number;
  maxConcurrency: number;
  /** The deployment's force_rerun (a benchmark must not time reused steps). */
  forceRerun?: boolean;
}

/** Components as registered (Azure ML's component YAML as JSON). */
export function pipelineComponents(o: Pick<PipelineDemoOptions, 'miniBatchSize' | 'maxConcurrency'>): Record<'prepare' | 'score' | 'summarize' | 'penguin_pipeline', Record<string, unknown>> {
  return {
    prepare: {
      type: 'command',
      description: 'Drops rows with missing values (NA or empty) from penguin CSV files',
      code: ds('code/pipeline/prepare/'),
      entry_script: 'prepare.js',
      inputs: { raw_data: { type: 'uri_folder' }, drop_missing: { type: 'boolean', default: true } },
      outputs: { clean_data: { type: 'uri_folder' } },
    },
    score: {
      type: 'parallel',
      description: 'The penguin classifier (ONNX, no scoring script) over every CSV file',
      inputs: { data: { type: 'uri_folder' } },
      outputs: { predictions: { type: 'uri_folder' } },
      input_data: '${{inputs.data}}',
      model: 'azureml:penguins:1',
      mini_batch_size: o.miniBatchSize,
      max_concurrency_per_instance: o.maxConcurrency,
      task: { type: 'run_function', append_row_to: '${{outputs.predictions}}' },
    },
    summarize: {
      type: 'command',
      description: 'Counts the predicted classes into summary.json',
      code: ds('code/pipeline/summarize/'),
      entry_script: 'summarize.js',
      inputs: { predictions: { type: 'uri_folder' }, class_column: { type: 'string', default: 'prediction' } },
      outputs: { summary: { type: 'uri_folder' } },
    },
    penguin_pipeline: {
      type: 'pipeline',
      description: 'prepare → score → summarize',
      inputs: { raw_data: { type: 'uri_folder' }, drop_missing: { type: 'boolean', default: true } },
      outputs: { predictions: { type: 'uri_folder' }, summary: { type: 'uri_folder' } },
      jobs: {
        prepare: { component: 'azureml:prepare:1', inputs: { raw_data: '${{parent.inputs.raw_data}}', drop_missing: '${{parent.inputs.drop_missing}}' } },
        score: { component: 'azureml:score:1', inputs: { data: '${{parent.jobs.prepare.outputs.clean_data}}' }, outputs: { predictions: '${{parent.outputs.predictions}}' } },
        summarize: { component: 'azureml:summarize:1', inputs: { predictions: '${{parent.jobs.score.outputs.predictions}}' }, outputs: { summary: '${{parent.outputs.summary}}' } },
      },
    },
  };
}

/**
 * Uploads the model, the two scripts (each its own code folder) and the data, registers model
 * penguins:1 and the components, creates the endpoint and makes the pipeline deployment its
 * default. `onStep` hears what is being done, for the demo's narration.
 */
export async function setUpPipelineDemo(client: BatchClient, connection: string, o: PipelineDemoOptions, onStep: (text: string) => void = () => undefined): Promise<void> {
  await uploadFiles(connection, WORKSPACE_CONTAINER, 'models/penguins/1/', { 'penguins.onnx': readFileSync(PENGUIN_MODEL) });
  for (const name of ['prepare', 'summarize']) {
    await uploadFiles(connection, WORKSPACE_CONTAINER, `code/pipeline/${name}/`, { [`${name}.js`]: readFileSync(join(PIPELINE_SCRIPTS, name, `${name}.js`)) });
  }
  await uploadFiles(connection, WORKSPACE_CONTAINER, o.dataPrefix, o.files);
  onStep('uploaded');
  await client.put('models/penguins/versions/1', { type: 'onnx', path: ds('models/penguins/1/penguins.onnx'), description: 'Penguin species from measurements' });
  // Step components first: the pipeline component's references are checked (and pinned) when it is registered.
  for (const [name, body] of Object.entries(pipelineComponents(o))) {
    await client.put(`components/${name}/versions/1`, body);
    onStep(`component ${name}:1 (${String(body['type'])})`);
  }
  await client.put(`endpoints/${o.endpoint}`, { description: 'Penguin species, cleaned, scored and counted' });
  await client.put(`endpoints/${o.endpoint}/deployments/${o.deployment}`, {
    type: 'pipeline',
    component: 'azureml:penguin_pipeline:1',
    settings: { continue_on_step_failure: false, force_rerun: o.forceRerun === true },
  });
  await client.put(`endpoints/${o.endpoint}`, { description: 'Penguin species, cleaned, scored and counted', defaults: { deployment_name: o.deployment } });
}

/** The invoke body: one data input, and drop_missing as a literal. */
export function pipelineInvokeBody(dataPrefix: string, dropMissing: boolean): Record<string, unknown> {
  return { inputs: { raw_data: { type: 'uri_folder', path: ds(dataPrefix) }, drop_missing: { type: 'literal', value: dropMissing } } };
}

/** Seconds between two of a step's (or job's) timestamps, or undefined while one is missing. */
export function secondsBetween(from: string | null, to: string | null): number | undefined {
  if (!from || !to) return undefined;
  return (Date.parse(to) - Date.parse(from)) / 1000;
}

/** Each step's wall time from the job view (its own started_at → completed_at). */
export function stepSeconds(steps: StepView[]): Record<string, number | undefined> {
  return Object.fromEntries(steps.map((s) => [s.name, secondsBetween(s.started_at, s.completed_at)]));
}
