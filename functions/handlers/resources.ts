import type { HttpRequest, HttpResponseInit } from '@azure/functions';
import { componentBody, componentName, componentVersion } from '../../shared/components/schemas.js';
import { BatchError, notFound } from '../../shared/errors.js';
import { assetName, assetVersion, dataAssetBody, datastoreBody, deploymentBody, endpointBody, endpointName, modelBody } from '../../shared/schemas/resources.js';
import { parseOrThrow } from '../../shared/schemas/validate.js';
import { services } from '../../shared/services.js';
import { componentView, dataAssetView, datastoreView, deploymentView, endpointView, modelView } from '../../shared/views.js';
import { baseUrl, json, param, readJson } from '../lib/http.js';

/** Path and body must agree on a name when the body repeats it. */
function sameName(field: string, inPath: string, inBody: string | undefined): void {
  if (inBody !== undefined && inBody !== inPath) {
    throw new BatchError('validation_failed', `${field} in the body ("${inBody}") differs from the path ("${inPath}").`, {
      issues: [{ field, message: `must be "${inPath}" (the path) or omitted` }],
    });
  }
}

function created(request: HttpRequest, isNew: boolean, body: unknown): HttpResponseInit {
  return json(isNew ? 201 : 200, body, isNew ? { location: new URL(request.url).pathname } : {});
}

// ---------------------------------------------------------------- datastores

export async function putDatastore(request: HttpRequest): Promise<HttpResponseInit> {
  const name = param(request, 'name', assetName);
  const body = parseOrThrow(datastoreBody, await readJson(request), 'datastore');
  sameName('name', name, body.name);
  const { stored, created: isNew } = await services().registry.putDatastore(name, body);
  return created(request, isNew, datastoreView(stored));
}

export async function getDatastore(request: HttpRequest): Promise<HttpResponseInit> {
  const name = param(request, 'name', assetName);
  const found = await services().registry.getDatastore(name);
  if (!found) throw notFound('Datastore', name, { field: 'name' });
  return json(200, datastoreView(found));
}

export async function listDatastores(): Promise<HttpResponseInit> {
  return json(200, { value: (await services().registry.listDatastores()).map(datastoreView) });
}

export async function deleteDatastore(request: HttpRequest): Promise<HttpResponseInit> {
  await services().registry.deleteDatastore(param(request, 'name', assetName));
  return { status: 204 };
}

// ---------------------------------------------------------------- data assets

export async function putDataAsset(request: HttpRequest): Promise<HttpResponseInit> {
  const name = param(request, 'name', assetName);
  const version = param(request, 'version', assetVersion);
  const body = parseOrThrow(dataAssetBody, await readJson(request), 'data asset');
  sameName('name', name, body.name);
  sameName('version', version, body.version);
  const { stored, created: isNew } = await services().registry.createDataAsset(name, version, body);
  return created(request, isNew, dataAssetView(stored));
}

export async function getDataAsset(request: HttpRequest): Promise<HttpResponseInit> {
  const name = param(request, 'name', assetName);
  const version = param(request, 'version', assetVersion);
  const found = await services().registry.getDataAsset(name, version);
  if (!found) throw notFound('Data asset', `${name}:${version}`, { field: 'version' });
  return json(200, dataAssetView(found));
}

export async function listDataAssets(request: HttpRequest): Promise<HttpResponseInit> {
  const name = request.params['name'] === undefined ? undefined : param(request, 'name', assetName);
  const registry = services().registry;
  const all = name ? await registry.listDataAssetVersions(name) : await registry.listAllDataAssets();
  if (name && all.length === 0) throw notFound('Data asset', name, { field: 'name' });
  return json(200, { value: all.map(dataAssetView) });
}

export async function deleteDataAsset(request: HttpRequest): Promise<HttpResponseInit> {
  await services().registry.deleteDataAsset(param(request, 'name', assetName), param(request, 'version', assetVersion));
  return { status: 204 };
}

// ---------------------------------------------------------------- models

export async function putModel(request: HttpRequest): Promise<HttpResponseInit> {
  const name = param(request, 'name', assetName);
  const version = param(request, 'version', assetVersion);
  const body = parseOrThrow(modelBody, await readJson(request), 'model');
  sameName('name', name, body.name);
  sameName('version', version, body.version);
  const { stored, created: isNew } = await services().registry.createModel(name, version, body);
  return created(request, isNew, modelView(stored));
}

export async function getModel(request: HttpRequest): Promise<HttpResponseInit> {
  const name = param(request, 'name', assetName);
  const version = param(request, 'version', assetVersion);
  const found = await services().registry.getModel(name, version);
  if (!found) throw notFound('Model', `${name}:${version}`, { field: 'version' });
  return json(200, modelView(found));
}

export async function listModels(request: HttpRequest): Promise<HttpResponseInit> {
  const name = request.params['name'] === undefined ? undefined : param(request, 'name', assetName);
  const registry = services().registry;
  const all = name ? await registry.listModelVersions(name) : await registry.listAllModels();
  if (name && all.length === 0) throw notFound('Model', name, { field: 'name' });
  return json(200, { value: all.map(modelView) });
}

export async function deleteModel(request: HttpRequest): Promise<HttpResponseInit> {
  await services().registry.deleteModel(param(request, 'name', assetName), param(request, 'version', assetVersion));
  return { status: 204 };
}

// ---------------------------------------------------------------- endpoints

export async function putEndpoint(request: HttpRequest): Promise<HttpResponseInit> {
  const name = param(request, 'endpoint', endpointName);
  const body = parseOrThrow(endpointBody, await readJson(request), 'endpoint');
  sameName('name', name, body.name);
  const { stored, created: isNew } = await services().registry.putEndpoint(name, body);
  return created(request, isNew, endpointView(stored, baseUrl(request)));
}

export async function getEndpoint(request: HttpRequest): Promise<HttpResponseInit> {
  return json(200, endpointView(await services().registry.requireEndpoint(param(request, 'endpoint', endpointName)), baseUrl(request)));
}

export async function listEndpoints(request: HttpRequest): Promise<HttpResponseInit> {
  return json(200, { value: (await services().registry.listEndpoints()).map((e) => endpointView(e, baseUrl(request))) });
}

export async function deleteEndpoint(request: HttpRequest): Promise<HttpResponseInit> {
  await services().registry.deleteEndpoint(param(request, 'endpoint', endpointName));
  return { status: 204 };
}

// ---------------------------------------------------------------- deployments

export async function putDeployment(request: HttpRequest): Promise<HttpResponseInit> {
  const endpoint = param(request, 'endpoint', endpointName);
  const name = param(request, 'deployment', endpointName);
  const body = parseOrThrow(deploymentBody, await readJson(request), 'deployment');
  sameName('name', name, body.name);
  sameName('endpoint_name', endpoint, body.endpoint_name);
  const registry = services().registry;
  const { stored, created: isNew } = await registry.putDeployment(endpoint, name, body);
  const ep = await registry.requireEndpoint(endpoint);
  return created(request, isNew, deploymentView(stored, ep.doc.defaults.deployment_name === name));
}

export async function getDeployment(request: HttpRequest): Promise<HttpResponseInit> {
  const endpoint = param(request, 'endpoint', endpointName);
  const name = param(request, 'deployment', endpointName);
  const registry = services().registry;
  const ep = await registry.requireEndpoint(endpoint);
  const found = await registry.getAnyDeployment(endpoint, name);
  if (!found) throw notFound('Deployment', `${endpoint}/${name}`, { field: 'deployment' });
  return json(200, deploymentView(found, ep.doc.defaults.deployment_name === name));
}

export async function listDeployments(request: HttpRequest): Promise<HttpResponseInit> {
  const endpoint = param(request, 'endpoint', endpointName);
  const registry = services().registry;
  const ep = await registry.requireEndpoint(endpoint);
  const all = await registry.listDeployments(endpoint);
  return json(200, { value: all.map((d) => deploymentView(d, ep.doc.defaults.deployment_name === d.doc.name)) });
}

export async function deleteDeployment(request: HttpRequest): Promise<HttpResponseInit> {
  await services().registry.deleteDeployment(param(request, 'endpoint', endpointName), param(request, 'deployment', endpointName));
  return { status: 204 };
}

// ---------------------------------------------------------------- components

export async function putComponent(request: HttpRequest): Promise<HttpResponseInit> {
  const name = param(request, 'name', componentName);
  const version = param(request, 'version', componentVersion);
  const body = parseOrThrow(componentBody, await readJson(request), 'component');
  sameName('name', name, body.name);
  sameName('version', version, body.version);
  const { stored, created: isNew } = await services().registry.createComponent(name, version, body);
  return created(request, isNew, componentView(stored));
}

export async function getComponent(request: HttpRequest): Promise<HttpResponseInit> {
  const name = param(request, 'name', componentName);
  const version = param(request, 'version', componentVersion);
  const found = await services().registry.getComponent(name, version);
  if (!found) throw notFound('Component', `${name}:${version}`, { field: 'version' });
  return json(200, componentView(found));
}

export async function listComponents(request: HttpRequest): Promise<HttpResponseInit> {
  const name = request.params['name'];
  const registry = services().registry;
  const all = name ? await registry.listComponentVersions(param(request, 'name', componentName)) : await registry.listComponents();
  if (name && all.length === 0) throw notFound('Component', name, { field: 'name' });
  return json(200, { value: all.map(componentView) });
}

export async function deleteComponent(request: HttpRequest): Promise<HttpResponseInit> {
  await services().registry.deleteComponent(param(request, 'name', componentName), param(request, 'version', componentVersion));
  return { status: 204 };
}
