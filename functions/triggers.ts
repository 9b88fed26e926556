/**
 * Registers blob-created triggers: the rule resource under `/api/endpoints/{endpoint}/triggers`
 * and the Event Grid function that receives Microsoft.Storage.BlobCreated events (thin: handlers
 * live in ./handlers/triggers.ts).
 */
import azureFunctions from '@azure/functions';
import * as df from 'durable-functions';
import { requires } from './lib/auth.js';
import { apiAuthLevel } from '../shared/config.js';
import { blobCreated, deleteTrigger, getTrigger, listTriggers, putTrigger } from './handlers/triggers.js';
import { api, type Handler } from './lib/http.js';

const { app } = azureFunctions;
const authLevel = apiAuthLevel();

function route(name: string, path: string, method: 'GET' | 'PUT' | 'DELETE', handler: Handler): void {
  // Reading rules needs `read`; creating, changing and deleting them `manage` (see functions/api.ts).
  app.http(name, { route: path, methods: [method], authLevel, handler: api(requires(method === 'GET' ? 'read' : 'manage', handler)) });
}

route('listTriggers', 'endpoints/{endpoint}/triggers', 'GET', listTriggers);
route('getTrigger', 'endpoints/{endpoint}/triggers/{name}', 'GET', getTrigger);
route('putTrigger', 'endpoints/{endpoint}/triggers/{name}', 'PUT', putTrigger);
route('deleteTrigger', 'endpoints/{endpoint}/triggers/{name}', 'DELETE', deleteTrigger);

app.eventGrid('blobCreated', {
  extraInputs: [df.input.durableClient()],
  handler: async (event, context) => {
    await blobCreated(event, context);
  },
});
