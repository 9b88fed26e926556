import { describe, expect, it } from 'vitest';
import { BatchError, toProblem } from '../../../shared/errors.js';
import { invokeBody } from '../../../shared/schemas/jobs.js';
import { deploymentBody, datastoreBody } from '../../../shared/schemas/resources.js';
import { parseOrThrow } from '../../../shared/schemas/validate.js';

function issues(fn: () => unknown): { field: string; message: string }[] {
  try {
    fn();
  } catch (err) {
    if (err instanceof BatchError) return err.issues;
    throw err;
  }
  throw new Error('expected a validation error');
}

describe('deployment schema', () => {
  it("fills Azure ML's defaults", () => {
    const d = parseOrThrow(deploymentBody, { model: 'azureml:m:1' }, 'deployment');
    if (d.type !== 'model') throw new Error(`parsed as ${d.type}`);
    expect(d.resources).toEqual({ instance_count: 1 });
    expect(d.settings).toEqual({
      max_concurrency_per_instance: 1,
      mini_batch_size: 10,
      error_threshold: -1,
      retry_settings: { max_retries: 3, timeout: 30 },
      output_action: 'append_row',
      output_file_name: 'predictions.csv',
      logging_level: 'info',
      environment_variables: {},
    });
  });

  it('names every bad or unknown field', () => {
    const found = issues(() =>
      parseOrThrow(deploymentBody, { model: 'm:1', settings: { mini_batch_size: 0, retry_settings: { timeout: 'x' }, mini_batchsize: 3 } }, 'deployment'),
    );
    expect(found).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ field: 'settings.mini_batch_size' }),
        expect.objectContaining({ field: 'settings.retry_settings.timeout' }),
        { field: 'settings.mini_batchsize', message: 'unknown field' },
      ]),
    );
  });

  it('checks scoring script paths stay in the code folder', () => {
    const found = issues(() => parseOrThrow(deploymentBody, { model: 'm:1', code_configuration: { code: 'azureml://datastores/x/paths/c/', scoring_script: '../evil.js' } }, 'deployment'));
    expect(found[0]?.field).toBe('code_configuration.scoring_script');
  });
});

describe('datastore schema', () => {
  it('accepts a connection-string setting or a managed identity, never a secret', () => {
    expect(parseOrThrow(datastoreBody, { account_name: 'acct1', container_name: 'data', credentials: { type: 'connection_string', setting: 'DATA_CONN' } }, 'ds').protocol).toBe('https');
    const found = issues(() => parseOrThrow(datastoreBody, { account_name: 'acct1', container_name: 'data', credentials: { type: 'account_key', key: 'secret' } }, 'ds'));
    expect(found[0]?.field).toBe('credentials.type');
  });
});

describe('invoke schema', () => {
  it('takes inputs, an optional output and partial setting overrides', () => {
    const body = parseOrThrow(
      invokeBody,
      { inputs: { data: { path: 'azureml:ds:1' } }, settings: { mini_batch_size: 5, retry_settings: { max_retries: 0 } }, resources: { instance_count: 2 } },
      'body',
    );
    expect(body.settings).toEqual({ mini_batch_size: 5, retry_settings: { max_retries: 0 } });
    expect(body.resources).toEqual({ instance_count: 2 });
  });

  it('leaves counting inputs to the deployment (a pipeline may need none; a model deployment takes exactly one)', () => {
    expect(parseOrThrow(invokeBody, {}, 'body').inputs).toEqual({});
    expect(parseOrThrow(invokeBody, { inputs: { n: 3, flag: { type: 'literal', value: true } } }, 'body').inputs).toEqual({ n: 3, flag: { type: 'literal', value: true } });
    expect(issues(() => parseOrThrow(invokeBody, { inputs: { x: { path: 'azureml://datastores/d/paths/p/', value: 1 } } }, 'body'))[0]?.field).toMatch(/^inputs\.x/);
  });
});

describe('output_file_name', () => {
  it('cannot be the name of a file the job writes itself, wherever it is given', () => {
    for (const name of ['job.json', 'processed_mini_batches.csv', 'errors.jsonl', 'logs', 'JOB.JSON']) {
      expect(issues(() => parseOrThrow(deploymentBody, { model: 'azureml:m:1', settings: { output_file_name: name } }, 'deployment'))[0]?.field).toBe('settings.output_file_name');
      expect(issues(() => parseOrThrow(invokeBody, { inputs: {}, settings: { output_file_name: name } }, 'body'))[0]?.field).toBe('settings.output_file_name');
    }
    expect(parseOrThrow(invokeBody, { settings: { output_file_name: 'scores.csv' } }, 'body').settings?.output_file_name).toBe('scores.csv');
  });
});

describe('problem details', () => {
  it('maps codes to status and keeps the field list', () => {
    const err = new BatchError('validation_failed', 'bad', { issues: [{ field: 'a', message: 'm' }] });
    expect(toProblem(err, '/api/x')).toMatchObject({ status: 400, code: 'validation_failed', detail: 'bad', instance: '/api/x', errors: [{ field: 'a', message: 'm' }] });
    expect(toProblem(new BatchError('not_found', 'gone')).status).toBe(404);
    expect(toProblem(new BatchError('output_exists', 'x')).status).toBe(409);
    expect(toProblem(new Error('secret internals'))).toMatchObject({ status: 500, detail: 'An unexpected error occurred. It has been logged.' });
  });
});

describe('problem details extensions', () => {
  it('never let details replace the standard members', () => {
    const problem = toProblem(new BatchError('conflict', 'busy', { details: { status: 'Canceled', code: 'x', job_status: 'Canceled' } }));
    expect(problem).toMatchObject({ status: 409, code: 'conflict', job_status: 'Canceled' });
  });
});
