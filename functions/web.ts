/** Registers the web page (thin: the handler lives in ./handlers/web.ts). */
import azureFunctions from '@azure/functions';
import { getWebFile } from './handlers/web.js';
import { api } from './lib/http.js';

azureFunctions.app.http('webPage', { route: 'app/{*path}', methods: ['GET'], authLevel: 'anonymous', handler: api(getWebFile) });
