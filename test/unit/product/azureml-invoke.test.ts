import { describe, expect, it } from 'vitest';
import { BatchError } from '../../../shared/errors.js';
import { azureMlError, fromAzureMlInvokeBody, isAzureMlInvokeBody, withNativeInvokeBody } from '../../../shared/schemas/azureml-invoke.js';
import { invokeBody } from '../../../shared/schemas/jobs.js';
import { parseOrThrow } from '../../../shared/schemas/validate.js';

const URI = 'azureml://datastores/workspaceblobstore/paths/data/x/';

function issuesOf(fn: () => unknown): string[] {
  try {
    fn();
  } catch (err) {
    if (err instanceof BatchError) return err.issues.map((i) => i.field);
    throw err;
  }
  throw new Error('expected a validation error');
}

describe("Azure ML's REST invoke body", () => {
  it('is told from the native body by its properties', () => {
    expect(isAzureMlInvokeBody({ properties: {} })).toBe(true);
    expect(isAzureMlInvokeBody({ Properties: {} })).toBe(true);
    expect(isAzureMlInvokeBody({ inputs: {} })).toBe(false);
    expect(isAzureMlInvokeBody([])).toBe(false);
    expect(isAzureMlInvokeBody(null)).toBe(false);
  });

  it('maps every field to the native body, which then parses', () => {
    const { body } = fromAzureMlInvokeBody({
      properties: {
        InputData: { data: { JobInputType: 'UriFolder', Uri: URI }, file: { JobInputType: 'UriFile', Uri: `${URI}a.csv` }, mode: { JobInputType: 'Literal', Value: 'append' } },
        OutputData: { score: { JobOutputType: 'UriFolder', Uri: `${URI}out/` } },
        OutputFileName: 'scores.csv',
        MiniBatchSize: 3,
        ErrorThreshold: -1,
        RetrySettings: { MaxRetries: 1, Timeout: 'PT1H2M3S' },
        Compute: { InstanceCount: 2 },
      },
    });
    expect(body).toEqual({
      inputs: { data: { type: 'uri_folder', path: URI }, file: { type: 'uri_file', path: `${URI}a.csv` }, mode: { type: 'literal', value: 'append' } },
      outputs: { score: { type: 'uri_folder', path: `${URI}out/` } },
      settings: { output_file_name: 'scores.csv', mini_batch_size: 3, error_threshold: -1, retry_settings: { max_retries: 1, timeout: 3723 } },
      resources: { instance_count: 2 },
    });
    expect(() => parseOrThrow(invokeBody, body, 'body')).not.toThrow();
  });

  it('reads keys and type names whatever their case, as Azure ML does (the SDK sends camelCase and snake_case)', () => {
    const { body } = fromAzureMlInvokeBody({ properties: { inputData: { d: { jobInputType: 'uri_folder', uri: URI, mode: 'ReadOnlyMount' } }, outputdata: { o: { JOBOUTPUTTYPE: 'urifolder', Uri: URI } }, retrySettings: { timeout: 45 } } });
    expect(body).toEqual({ inputs: { d: { type: 'uri_folder', path: URI } }, outputs: { o: { type: 'uri_folder', path: URI } }, settings: { retry_settings: { timeout: 45 } } });
    expect(fromAzureMlInvokeBody({ properties: {} }).body).toEqual({ inputs: {} });
  });

  it('names the Azure ML field of every shape error', () => {
    expect(issuesOf(() => fromAzureMlInvokeBody({ properties: { InputData: { x: { JobInputType: 'UriFolder' } } } }))).toEqual(['properties.InputData.x.Uri']);
    expect(issuesOf(() => fromAzureMlInvokeBody({ properties: { InputData: { x: { JobInputType: 'MLTable', Uri: URI } } } }))).toEqual(['properties.InputData.x.JobInputType']);
    expect(issuesOf(() => fromAzureMlInvokeBody({ properties: { InputData: { x: { JobInputType: 'Literal' } } } }))).toEqual(['properties.InputData.x.Value']);
    expect(issuesOf(() => fromAzureMlInvokeBody({ properties: { InputData: { x: { JobInputType: 'UriFile', Uri: URI, Value: 1 } } } }))).toEqual(['properties.InputData.x.Value']);
    expect(issuesOf(() => fromAzureMlInvokeBody({ properties: { InputData: { 'not a name': { JobInputType: 'UriFile', Uri: URI } } } }))).toEqual(['properties.InputData.not a name']);
    expect(issuesOf(() => fromAzureMlInvokeBody({ properties: { InputData: {}, Foo: 1 }, bar: 2 })).sort()).toEqual(['bar', 'properties.Foo']);
    expect(issuesOf(() => fromAzureMlInvokeBody({ properties: { OutputData: { o: { JobOutputType: 'Literal', Uri: URI } } } }))).toEqual(['properties.OutputData.o.JobOutputType']);
    expect(issuesOf(() => fromAzureMlInvokeBody({ properties: { RetrySettings: { Timeout: 'PT' } } }))).toEqual(['properties.RetrySettings.Timeout']);
    expect(issuesOf(() => fromAzureMlInvokeBody({ properties: 'x' }))).toEqual(['properties']);
    // Two spellings of one key: the second is refused by its own name.
    expect(issuesOf(() => fromAzureMlInvokeBody({ properties: { InputData: { x: { JobInputType: 'UriFile', Uri: URI, uri: URI } } } }))).toEqual(['properties.InputData.x.uri']);
  });

  it('renames the fields of errors found after mapping, most specific first, in the issues, the details and the message', () => {
    const { fields } = fromAzureMlInvokeBody({ properties: { InputData: { x: { JobInputType: 'UriFolder', Uri: URI } }, MiniBatchSize: 0 } });
    const err = azureMlError(
      new BatchError('input_not_found', "inputs.x.path: nothing at 'data/x/'; see inputs.x and settings.mini_batch_size.", {
        issues: [{ field: 'inputs.x.path', message: 'not found' }, { field: 'settings.mini_batch_size', message: 'too small' }, { field: 'inputs', message: 'one' }, { field: 'settings', message: 'no' }],
        details: { field: 'inputs.x.path', resource: 'Data' },
      }),
      fields,
    ) as BatchError;
    expect(err).toBeInstanceOf(BatchError);
    expect(err.code).toBe('input_not_found');
    expect(err.issues.map((i) => i.field)).toEqual(['properties.InputData.x.Uri', 'properties.MiniBatchSize', 'properties.InputData', 'properties']);
    expect(err.details).toEqual({ field: 'properties.InputData.x.Uri', resource: 'Data' });
    expect(err.message).toBe("properties.InputData.x.Uri: nothing at 'data/x/'; see properties.InputData.x and properties.MiniBatchSize.");
    // Anything else passes through untouched.
    const other = new Error('boom');
    expect(azureMlError(other, fields)).toBe(other);
  });

  it('runs the native invoke with the native body as it came, or with the mapped one', async () => {
    const seen: unknown[] = [];
    await withNativeInvokeBody({ inputs: {} }, (b) => Promise.resolve(seen.push(b)));
    await withNativeInvokeBody({ properties: { InputData: { x: { JobInputType: 'UriFolder', Uri: URI } } } }, (b) => Promise.resolve(seen.push(b)));
    expect(seen).toEqual([{ inputs: {} }, { inputs: { x: { type: 'uri_folder', path: URI } } }]);
    await expect(
      withNativeInvokeBody({ properties: { InputData: { x: { JobInputType: 'UriFolder', Uri: URI } } } }, () => Promise.reject(new BatchError('validation_failed', 'x', { issues: [{ field: 'inputs.x.path', message: 'bad' }] }))),
    ).rejects.toMatchObject({ issues: [{ field: 'properties.InputData.x.Uri', message: 'bad' }] });
  });
});
