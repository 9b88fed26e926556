import { BlobServiceClient } from '@azure/storage-blob';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AppConfig, loadConfig } from '../../shared/config.js';
import { BatchError } from '../../shared/errors.js';
import { Registry } from '../../shared/registry/registry.js';
import { dataAssetBody, deploymentBody, endpointBody, modelBody } from '../../shared/schemas/resources.js';
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
  for (const name of ['models/m/model.onnx', 'data/a.csv', 'data/b.csv', 'code/score.js']) {
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
    const url = `http://127.0.0.1:10000/devstoreaccount1/${config.workspaceContainer}/data/a.csv`;
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
});
