/**
 * Registers the HTTP API (thin: handlers live in ./handlers). Routes follow Azure ML's resource
 * model: datastores, data assets, models, components, endpoints, deployments, jobs.
 */
import azureFunctions from '@azure/functions';
import * as df from 'durable-functions';
import { apiAuthLevel } from '../shared/config.js';
import { cancelJob, getFailures, getJob, getJobOutput, getJobStatus, getLogTail, getMiniBatches, getStepOutput, invokeEndpoint, listAllJobs, listJobs, rerunJob, submitJob } from './handlers/jobs.js';
import { getConnectorDefinition, getOpenApi } from './handlers/openapi.js';
import * as r from './handlers/resources.js';
import { requires } from './lib/auth.js';
import { api, type Handler } from './lib/http.js';
import type { Permission } from '../shared/auth/permissions.js';

const { app } = azureFunctions;

// Job outputs can be large: stream request and response bodies instead of buffering them.
app.setup({ enableHttpStream: true });

const authLevel = apiAuthLevel();
type Method = 'GET' | 'PUT' | 'POST' | 'DELETE';

/**
 * The permission each route needs (see shared/auth/permissions.ts): reading anything needs `read`;
 * invoking, submitting and canceling jobs `invoke`; creating, changing and deleting resources `manage`.
 */
const NEEDS: Record<Method, Permission> = { GET: 'read', POST: 'invoke', PUT: 'manage', DELETE: 'manage' };

function route(name: string, path: string, method: Method, handler: Handler, withClient = false): void {
  app.http(name, {
    route: path,
    methods: [method],
    authLevel,
    extraInputs: withClient ? [df.input.durableClient()] : [],
    handler: api(requires(NEEDS[method], handler)),
  });
}

route('listDatastores', 'datastores', 'GET', r.listDatastores);
route('getDatastore', 'datastores/{name}', 'GET', r.getDatastore);
route('putDatastore', 'datastores/{name}', 'PUT', r.putDatastore);
route('deleteDatastore', 'datastores/{name}', 'DELETE', r.deleteDatastore);

route('listDataAssets', 'data', 'GET', r.listDataAssets);
route('listDataAssetVersions', 'data/{name}/versions', 'GET', r.listDataAssets);
route('getDataAsset', 'data/{name}/versions/{version}', 'GET', r.getDataAsset);
route('putDataAsset', 'data/{name}/versions/{version}', 'PUT', r.putDataAsset);
route('deleteDataAsset', 'data/{name}/versions/{version}', 'DELETE', r.deleteDataAsset);

route('listModels', 'models', 'GET', r.listModels);
route('listModelVersions', 'models/{name}/versions', 'GET', r.listModels);
route('getModel', 'models/{name}/versions/{version}', 'GET', r.getModel);
route('putModel', 'models/{name}/versions/{version}', 'PUT', r.putModel);
route('deleteModel', 'models/{name}/versions/{version}', 'DELETE', r.deleteModel);

route('listEndpoints', 'endpoints', 'GET', r.listEndpoints);
route('getEndpoint', 'endpoints/{endpoint}', 'GET', r.getEndpoint);
route('putEndpoint', 'endpoints/{endpoint}', 'PUT', r.putEndpoint);
route('deleteEndpoint', 'endpoints/{endpoint}', 'DELETE', r.deleteEndpoint);

route('listDeployments', 'endpoints/{endpoint}/deployments', 'GET', r.listDeployments);
route('getDeployment', 'endpoints/{endpoint}/deployments/{deployment}', 'GET', r.getDeployment);
route('putDeployment', 'endpoints/{endpoint}/deployments/{deployment}', 'PUT', r.putDeployment);
route('deleteDeployment', 'endpoints/{endpoint}/deployments/{deployment}', 'DELETE', r.deleteDeployment);

route('listComponents', 'components', 'GET', r.listComponents);
route('listComponentVersions', 'components/{name}/versions', 'GET', r.listComponents);
route('getComponent', 'components/{name}/versions/{version}', 'GET', r.getComponent);
route('putComponent', 'components/{name}/versions/{version}', 'PUT', r.putComponent);
route('deleteComponent', 'components/{name}/versions/{version}', 'DELETE', r.deleteComponent);

route('invokeEndpoint', 'endpoints/{endpoint}/jobs', 'POST', invokeEndpoint, true);
route('listJobs', 'endpoints/{endpoint}/jobs', 'GET', listJobs);
route('submitJob', 'jobs', 'POST', submitJob, true);
route('listAllJobs', 'jobs', 'GET', listAllJobs);
route('getJob', 'jobs/{id}', 'GET', getJob);
route('getJobStatus', 'jobs/{id}/status', 'GET', getJobStatus);
route('cancelJob', 'jobs/{id}/cancel', 'POST', cancelJob, true);
route('rerunJob', 'jobs/{id}/rerun', 'POST', rerunJob, true);
route('getJobOutput', 'jobs/{id}/outputs/{*file}', 'GET', getJobOutput);
route('getStepOutput', 'jobs/{id}/steps/{step}/outputs/{*file}', 'GET', getStepOutput);
route('getMiniBatches', 'jobs/{id}/mini-batches', 'GET', getMiniBatches);
route('getFailures', 'jobs/{id}/failures', 'GET', getFailures);
route('getLogTail', 'jobs/{id}/log', 'GET', getLogTail);

app.http('openapi', { route: 'openapi.json', methods: ['GET'], authLevel: 'anonymous', handler: api(getOpenApi) });
app.http('connectorDefinition', { route: 'connector/swagger.json', methods: ['GET'], authLevel: 'anonymous', handler: api(getConnectorDefinition) });
