/** Registers the web page (thin: the handler lives in ./handlers/web.ts). */
import azureFunctions from '@azure/functions';
import { getWebConfig, getWebFile } from './handlers/web.js';
import { api } from './lib/http.js';

// A literal route outranks the catch-all below (the Functions host's route precedence, fnhost's too).
azureFunctions.app.http('webConfig', { route: 'app/config.json', methods: ['GET'], authLevel: 'anonymous', handler: api(getWebConfig) });
azureFunctions.app.http('webPage', { route: 'app/{*path}', methods: ['GET'], authLevel: 'anonymous', handler: api(getWebFile) });
