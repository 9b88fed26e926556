import type { HttpRequest, HttpResponseInit } from '@azure/functions';
import { connectorDefinition } from '../../shared/openapi/connector.js';
import { openApi31 } from '../../shared/openapi/api-document.js';
import { json } from '../lib/http.js';

/** GET /api/openapi.json: the API's OpenAPI 3.1 document, generated from the zod schemas that validate requests. */
export function getOpenApi(): Promise<HttpResponseInit> {
  return Promise.resolve(json(200, openApi31()));
}

/**
 * GET /api/connector/swagger.json: the same API as a Logic Apps / Power Automate custom connector
 * definition (OpenAPI 2.0), its `host` this app's.
 */
export function getConnectorDefinition(request: HttpRequest): Promise<HttpResponseInit> {
  const url = new URL(request.url);
  return Promise.resolve(json(200, connectorDefinition({ host: url.host, scheme: url.protocol === 'http:' ? 'http' : 'https' })));
}
