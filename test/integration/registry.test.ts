import { BlobServiceClient } from '@azure/storage-blob';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AppConfig, loadConfig } from '../../shared/config.js';
import { BatchError } from '../../shared/errors.js';
import { Registry } from '../../shared/registry/registry.js';
import { componentBody } from '../../shared/components/schemas.js';
import type { PipelineDeploymentDoc } from '../../shared/components/types.js';
import { dataAssetBody, deploymentBody, endpointBody, modelBody } from '../../shared/schemas/resources.js';
import { accountOf } from '../../shared/storage/clients.js';
import { startAzurite } from '../support/azurite.js';
import { uniqueName } from '../support/ports.js';

let storage: { connectionString: string; stop: () => Promise<void> };
let config: AppConfig;
let registry: Registry;

beforeAll(async () => {
  storage = await startAzurite();
  config = loadConfig({ AzureWebJobsStorage: storage.connectionString, BATCH_TABLE_PREFIX: uniqueName('t').replace(/[^a-z0-9]/g, '') });
  registry = new Registry({ config });
  const container = BlobServiceClient.fromConnectionString(storage.connectionString).getContainerClient(config.workspaceContainer);
  await container.createIfNotExists();
  for (const name of ['models/m/model.onnx', 'data/a.csv', 'data/b.csv', 'code/score.js', 'code/main.js']) {
    await container.getBlockBlobClient(name).upload('x', 1);
  }
});

afterAll(async () => {
  await storage?.stop();
});

async function rejects(p: Promise<unknown>): Promise<BatchError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof BatchError) return err;
    throw err;
  }
  throw new Error('expected a BatchError');
}

const ds = (path: string): string => `azureml://datastores/workspaceblobstore/paths/${path}`;

describe('registry (Azurite)', () => {
  it('has the built-in workspace datastore, which cannot be changed or deleted', async () => {
    const list = await registry.listDatastores();
    expect(list[0]?.doc).toMatchObject({ name: 'workspaceblobstore', account_name: 'devstoreaccount1', container_name: config.workspaceContainer });
    expect((await rejects(registry.deleteDatastore('workspaceblobstore'))).code).toBe('conflict');
  });

  it('resolves datastore URIs, registered blob URLs and data assets; refuses unregistered accounts', async () => {
    const viaDatastore = await registry.resolveData(ds('data/'), 'p');
    expect(viaDatastore).toMatchObject({ path: 'data/', type: 'uri_folder', uri: ds('data/') });
    const url = `${accountOf(storage.connectionString).blobEndpoint}/${config.workspaceContainer}/data/a.csv`;
    expect(await registry.resolveData(url, 'p')).toMatchObject({ path: 'data/a.csv', type: 'uri_file', uri: ds('data/a.csv') });
    const other = await rejects(registry.resolveData('https://someoneelse.blob.core.windows.net/c/x.csv', 'inputs.x.path'));
    expect(other.code).toBe('path_outside_datastores');
    expect(other.issues[0]?.field).toBe('inputs.x.path');
    const missing = await rejects(registry.resolveData('azureml://datastores/nope/paths/x', 'p'));
    expect(missing.code).toBe('not_found');

    await registry.createDataAsset('penguins', '1', dataAssetBody.parse({ type: 'uri_folder', path: ds('data/') }));
    expect(await registry.resolveData('azureml:penguins:1', 'p')).toMatchObject({ uri: ds('data/'), type: 'uri_folder' });
    expect(await registry.resolveData('azureml:penguins@latest', 'p')).toMatchObject({ uri: ds('data/') });
  });

  it('reaches a datastore only at an allowed endpoint: one stored before the check, or whose setting changed, is a configuration error, never a request', async () => {
    const base = { name: 'old', type: 'azure_blob' as const, tags: {}, account_name: 'acct', container_name: 'data', endpoint: 'core.windows.net', protocol: 'https' as const };
    for (const account_url of ['http://169.254.169.254/metadata', 'https://acct.blob.core.windows.net.evil.com', `${accountOf(storage.connectionString).blobEndpoint.replace('devstoreaccount1', 'acct')}`]) {
      const err = (() => {
        try {
          registry.containerOf({ ...base, credentials: { type: 'managed_identity', account_url } });
        } catch (e) {
          return e as BatchError;
        }
        throw new Error('expected a refusal');
      })();
      expect(err.code).toBe('configuration');
    }
    expect(registry.containerOf({ ...base, credentials: { type: 'managed_identity' } }).url).toBe('https://acct.blob.core.windows.net/data');
    expect(registry.containerOf({ ...base, endpoint: 'core.chinacloudapi.cn', credentials: { type: 'managed_identity' } }).url).toBe('https://acct.blob.core.chinacloudapi.cn/data');
    // A blob URL of a registered account name on another endpoint is not that account.
    const elsewhere = await rejects(registry.resolveData(`http://127.0.0.1:1/devstoreaccount1/${config.workspaceContainer}/data/a.csv`, 'inputs.x.path'));
    expect(elsewhere.code).toBe('path_outside_datastores');
    expect(elsewhere.issues[0]?.field).toBe('inputs.x.path');
  });

  it("reserves 'latest' and resolves it to the newest version, the same way for models, data and components", async () => {
    let clock = new Date('2030-01-01T00:00:00Z');
    const timed = new Registry({ config, now: () => clock });
    const later = (): void => {
      clock = new Date(clock.getTime() + 1000);
    };
    const model = modelBody.parse({ type: 'onnx', path: ds('models/m/model.onnx') });
    const data = dataAssetBody.parse({ type: 'uri_folder', path: ds('data/') });
    const component = componentBody.parse({ type: 'command', code: ds('code/'), entry_script: 'main.js', inputs: {}, outputs: {} });
    for (const [what, create] of [
      ['model', (v: string) => timed.createModel('lm', v, { ...model, description: v })],
      ['data', (v: string) => timed.createDataAsset('ld', v, { ...data, description: v })],
      ['component', (v: string) => timed.createComponent('lc', v, { ...component, description: v })],
    ] as const) {
      const reserved = await rejects(create('latest'));
      expect(reserved.code, what).toBe('validation_failed');
      expect(reserved.issues[0]?.field, what).toBe('version');
      // Newest by registration, not by the version's text ('2' sorts after '10').
      await create('10');
      later();
      await create('2');
      later();
    }
    expect((await timed.getModel('lm', 'latest'))?.doc.version).toBe('2');
    expect((await timed.getDataAsset('ld', 'latest'))?.doc.version).toBe('2');
    expect((await timed.getComponent('lc', 'latest'))?.doc.version).toBe('2');
    for (const ref of ['azureml:lm@latest', 'azureml:lm:latest', 'lm:latest']) expect((await timed.resolveModelRef(ref, 'model')).version, ref).toBe('2');
    for (const ref of ['azureml:ld@latest', 'azureml:ld:latest']) expect((await timed.resolveData(ref, 'p')).uri, ref).toBe(ds('data/'));
    for (const ref of ['azureml:lc@latest', 'azureml:lc:latest']) expect((await timed.resolveComponentRef(ref, 'component')).ref, ref).toEqual({ name: 'lc', version: '2' });
    expect(await rejects(timed.resolveModelRef('azureml:nolm@latest', 'model'))).toMatchObject({ code: 'not_found', message: "Model 'nolm@latest' does not exist." });
    // A delete names a version exactly: 'latest' is never one.
    expect((await rejects(timed.deleteModel('lm', 'latest'))).code).toBe('not_found');
    expect((await rejects(timed.deleteComponent('lc', 'latest'))).code).toBe('not_found');
    expect((await timed.getModel('lm', '10'))?.doc.version).toBe('10');
  });

  it("refuses a model whose path holds no files at registration (400 naming path), as a missing scoring script is", async () => {
    for (const path of [ds('models/none/'), ds('models/none'), ds('models/m/nosuch.onnx')]) {
      const err = await rejects(registry.createModel('empty', '1', modelBody.parse({ type: 'custom_model', path })));
      expect(err, path).toMatchObject({ code: 'validation_failed', issues: [{ field: 'path' }] });
      expect(err.message, path).toContain('holds no files');
    }
    expect(await registry.getModel('empty', '1')).toBeUndefined();
    // A file, or a folder with files under it (nested too), is accepted.
    expect((await registry.createModel('full', '1', modelBody.parse({ type: 'onnx', path: ds('models/m/model.onnx') }))).created).toBe(true);
    expect((await registry.createModel('full', '2', modelBody.parse({ type: 'custom_model', path: ds('models/') }))).created).toBe(true);
  });

  it('keeps asset versions immutable', async () => {
    const body = modelBody.parse({ type: 'onnx', path: ds('models/m/model.onnx') });
    expect((await registry.createModel('m', '1', body)).created).toBe(true);
    expect((await registry.createModel('m', '1', body)).created).toBe(false);
    const changed = await rejects(registry.createModel('m', '1', { ...body, description: 'other' }));
    expect(changed.code).toBe('conflict');
  });

  it('enforces references between endpoints, deployments and models', async () => {
    await registry.createModel('m2', '1', modelBody.parse({ type: 'onnx', path: ds('models/m/model.onnx') }));
    expect((await rejects(registry.putDeployment('noep', 'dep1', deploymentBody.parse({ model: 'azureml:m2:1' })))).code).toBe('not_found');
    await registry.putEndpoint('endp1', endpointBody.parse({}));
    const unknownModel = await rejects(registry.putDeployment('endp1', 'dep1', deploymentBody.parse({ model: 'azureml:nomodel:1' })));
    expect(unknownModel).toMatchObject({ code: 'not_found', message: "Model 'nomodel:1' does not exist." });
    await registry.putDeployment('endp1', 'dep1', deploymentBody.parse({ model: 'azureml:m2@latest' }));
    expect((await registry.getDeployment('endp1', 'dep1'))?.doc.model).toEqual({ name: 'm2', version: '1' });

    const noDeployment = await rejects(registry.putEndpoint('endp1', endpointBody.parse({ defaults: { deployment_name: 'nope' } })));
    expect(noDeployment.code).toBe('not_found');
    await registry.putEndpoint('endp1', endpointBody.parse({ defaults: { deployment_name: 'dep1' } }));
    expect((await rejects(registry.deleteDeployment('endp1', 'dep1'))).code).toBe('conflict');
    expect((await rejects(registry.deleteModel('m2', '1'))).code).toBe('conflict');

    const custom = await rejects(
      (async () => {
        await registry.createModel('cm', '1', modelBody.parse({ type: 'custom_model', path: ds('models/m/') }));
        await registry.putDeployment('endp1', 'dep2', deploymentBody.parse({ model: 'azureml:cm:1' }));
      })(),
    );
    expect(custom.issues[0]?.field).toBe('code_configuration');
    const missingScript = await rejects(
      registry.putDeployment('endp1', 'dep2', deploymentBody.parse({ model: 'azureml:cm:1', code_configuration: { code: ds('code/'), scoring_script: 'nope.js' } })),
    );
    expect(missingScript.issues[0]?.field).toBe('code_configuration.scoring_script');
    await registry.putDeployment('endp1', 'dep2', deploymentBody.parse({ model: 'azureml:cm:1', code_configuration: { code: ds('code/'), scoring_script: 'score.js' } }));

    await registry.deleteEndpoint('endp1');
    expect(await registry.getDeployment('endp1', 'dep1')).toBeUndefined();
    await registry.deleteModel('m2', '1');
    expect(await registry.getModel('m2', '1')).toBeUndefined();
  });

  it('resolves a pipeline deployment to its graph: steps loaded, bindings named, a topological order', async () => {
    await registry.createModel('pm', '1', modelBody.parse({ type: 'onnx', path: ds('models/m/model.onnx') }));
    await registry.createComponent(
      'prep',
      '1',
      componentBody.parse({ code: ds('code/'), entry_script: 'main.js', inputs: { raw: { type: 'uri_folder' }, n: { type: 'integer', min: 1, default: 2 } }, outputs: { clean: { type: 'uri_folder' } } }),
    );
    await registry.createComponent(
      'score',
      '1',
      componentBody.parse({ type: 'parallel', model: 'azureml:pm@latest', input_data: '${{inputs.data}}', inputs: { data: { type: 'uri_folder' } }, outputs: { out: { type: 'uri_folder' } } }),
    );
    const pipeline = componentBody.parse({
      type: 'pipeline',
      inputs: { input_data: { type: 'uri_folder' } },
      outputs: { scores: { type: 'uri_folder' } },
      jobs: {
        score: { component: 'azureml:score:1', inputs: { data: '${{parent.jobs.prep.outputs.clean}}' }, outputs: { out: '${{parent.outputs.scores}}' } },
        prep: { component: 'azureml:prep@latest', inputs: { raw: '${{parent.inputs.input_data}}', n: '5' } },
      },
    });
    expect((await registry.createComponent('pipe', '1', pipeline)).created).toBe(true);
    await registry.putEndpoint('pipes', endpointBody.parse({}));
    const { stored } = await registry.putDeployment('pipes', 'd', deploymentBody.parse({ type: 'pipeline', component: 'azureml:pipe:1' }));
    expect(stored.doc).toMatchObject({ type: 'pipeline', component: { name: 'pipe', version: '1' } });

    const found = await registry.getAnyDeployment('pipes', 'd');
    expect(found?.doc.type).toBe('pipeline');
    const resolved = await registry.resolveDeploymentPipeline(found?.doc as PipelineDeploymentDoc);
    expect(resolved.order).toEqual(['prep', 'score']);
    const [prep, score] = resolved.order.map((n) => resolved.steps.find((s) => s.name === n));
    expect(prep).toMatchObject({ type: 'command', ref: { name: 'prep', version: '1' }, inputs: { raw: { kind: 'parent_input', name: 'input_data' }, n: { kind: 'literal', value: 5 } }, depends_on: [] });
    expect(prep?.component).toMatchObject({ type: 'command', code: ds('code/'), entry_script: 'main.js' });
    expect(score).toMatchObject({ type: 'parallel', inputs: { data: { kind: 'step_output', step: 'prep', output: 'clean' } }, outputs: { out: { kind: 'parent_output', name: 'scores' } }, depends_on: ['prep'] });
    expect(score?.component).toMatchObject({ model: { name: 'pm', version: '1' } });

    // Model deployments' callers get a clear refusal rather than a model deployment it is not.
    expect((await rejects(registry.getDeployment('pipes', 'd'))).code).toBe('unsupported');
    expect((await rejects(registry.deleteComponent('score', '1'))).code).toBe('conflict');
    expect((await rejects(registry.deleteModel('pm', '1'))).code).toBe('conflict');
    expect((await rejects(registry.deleteComponent('pipe', '1'))).code).toBe('conflict');
    await registry.deleteEndpoint('pipes');
    await registry.deleteComponent('pipe', '1');
    await registry.deleteComponent('score', '1');
    await registry.deleteModel('pm', '1');
  });
});
