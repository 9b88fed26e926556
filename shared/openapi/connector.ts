import { openApi30 } from './api-document.js';
import { toSwagger2 } from './swagger2.js';

/**
 * The Logic Apps / Power Automate custom connector: its API definition (OpenAPI 2.0, converted from
 * the same OpenAPI 3.0 document `/api/openapi.json` is generated with, so it follows the zod
 * schemas) and its `apiProperties.json`. `GET /api/connector/swagger.json` serves the definition
 * with the app's own host; `npm run build` writes both to `infra/azure/connector/` with a
 * placeholder host (see infra/azure/README.md).
 *
 * What the connector platform adds to plain 2.0:
 * - `x-ms-visibility` on operations (set where each operation is registered) and parameters:
 *   `important` shows at once, `advanced` behind "Show advanced options", `internal` never (the
 *   job status URL, which Logic Apps polls by itself after an invoke: the long-running-operation
 *   pattern);
 * - `x-ms-summary`: the display name of every parameter and schema property;
 * - security: the function key (`x-functions-key` header, or `code` in the query) and OAuth 2
 *   with Microsoft Entra ID (authorization code flow), with placeholders for the tenant and the
 *   app registration's client id.
 */

type Json = Record<string, unknown>;

/** Placeholders of the connector files in the repository; replace them when importing the connector. */
export const CONNECTOR_PLACEHOLDERS = {
  host: 'your-function-app.azurewebsites.net',
  tenantId: '00000000-0000-0000-0000-000000000000',
  clientId: '11111111-1111-1111-1111-111111111111',
} as const;

export interface ConnectorOptions {
  host: string;
  scheme?: 'http' | 'https';
  /** Microsoft Entra tenant (id or domain) of the app registration that protects the app. */
  tenantId?: string;
  /** Application (client) id of that app registration. */
  clientId?: string;
}

function isJson(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** `mini_batch_size` → `Mini batch size`, `azureml-model-deployment` → `Azureml model deployment`. */
export function displayName(name: string): string {
  const words = name.replace(/([a-z0-9])([A-Z])/g, '$1 $2').replace(/[_-]+/g, ' ').trim().toLowerCase();
  return words.charAt(0).toUpperCase() + words.slice(1);
}

/** Adds `x-ms-summary` to every property of `schema` and the schemas within it. */
function summarize(schema: unknown): void {
  if (!isJson(schema)) return;
  if (isJson(schema['properties'])) {
    for (const [name, property] of Object.entries(schema['properties'])) {
      // Nothing may stand beside a $ref in a connector definition.
      if (isJson(property) && !('$ref' in property) && property['x-ms-summary'] === undefined) property['x-ms-summary'] = displayName(name);
      summarize(property);
    }
  }
  if (isJson(schema['additionalProperties'])) summarize(schema['additionalProperties']);
  if (isJson(schema['items'])) summarize(schema['items']);
}

const PARAMETER_SUMMARIES: Record<string, string> = {
  'azureml-model-deployment': 'Deployment',
  'idempotency-key': 'Idempotency key',
  id: 'Job id',
};

/** The connector's API definition (OpenAPI 2.0). */
export function connectorDefinition(options: ConnectorOptions): Json {
  const tenant = options.tenantId ?? CONNECTOR_PLACEHOLDERS.tenantId;
  const client = options.clientId ?? CONNECTOR_PLACEHOLDERS.clientId;
  const doc = toSwagger2(structuredClone(openApi30()), { host: options.host, basePath: '/', schemes: [options.scheme ?? 'https'] });
  doc['info'] = {
    ...(isJson(doc['info']) ? doc['info'] : {}),
    title: 'Batch Endpoints',
    description: 'Invoke batch inference endpoints and wait for their jobs (Azure ML batch endpoints on Azure Functions).',
  };
  for (const item of Object.values(isJson(doc['paths']) ? doc['paths'] : {})) {
    for (const op of Object.values(isJson(item) ? item : {})) {
      if (!isJson(op)) continue;
      for (const p of Array.isArray(op['parameters']) ? (op['parameters'] as unknown[]) : []) {
        if (!isJson(p) || typeof p['name'] !== 'string') continue;
        p['x-ms-summary'] ??= PARAMETER_SUMMARIES[p['name']] ?? displayName(p['name']);
        p['x-ms-visibility'] ??= p['in'] === 'path' || p['in'] === 'body' ? 'important' : 'advanced';
        if (p['in'] === 'body') summarize(p['schema']);
      }
      for (const r of Object.values(isJson(op['responses']) ? op['responses'] : {})) if (isJson(r)) summarize(r['schema']);
      if (op['operationId'] === 'InvokeEndpoint') {
        // The designer builds its form from the body schema; 2.0 has no unions, so the connector
        // offers the native body (Azure ML's REST body is accepted too, see /api/openapi.json).
        const body = (op['parameters'] as Json[]).find((p) => p['in'] === 'body');
        if (body) {
          body['schema'] = { $ref: '#/definitions/InvokeRequest' };
          body['description'] = "The inputs, outputs and settings of the job (Azure ML's REST invoke body is accepted as well).";
        }
      }
    }
  }
  for (const definition of Object.values(isJson(doc['definitions']) ? doc['definitions'] : {})) summarize(definition);
  doc['securityDefinitions'] = {
    function_key: { type: 'apiKey', in: 'header', name: 'x-functions-key', description: 'A function key of the app' },
    function_key_query: { type: 'apiKey', in: 'query', name: 'code', description: 'A function key of the app, in the query' },
    entra_id: {
      type: 'oauth2',
      flow: 'accessCode',
      description: 'Microsoft Entra ID (BATCH_AUTH_MODE=entra, or App Service authentication in front of the app with BATCH_AUTH_MODE=easy_auth)',
      authorizationUrl: `https://login.microsoftonline.com/${tenant}/oauth2/v2.0/authorize`,
      tokenUrl: `https://login.microsoftonline.com/${tenant}/oauth2/v2.0/token`,
      scopes: { [`api://${client}/user_impersonation`]: 'Invoke endpoints and read jobs as the signed-in user' },
    },
  };
  doc['security'] = [{ function_key: [] }, { function_key_query: [] }, { entra_id: [`api://${client}/user_impersonation`] }];
  return doc;
}

/**
 * The connector's `apiProperties.json`: how a connection authenticates. Two connection types
 * (`connectionParameterSets`, the connector platform's multi-auth; import with `paconn` or `pac
 * connector`): a function key, or Microsoft Entra ID (OAuth 2 authorization code flow).
 */
export function connectorProperties(options: Omit<ConnectorOptions, 'host' | 'scheme'> = {}): Json {
  const tenant = options.tenantId ?? CONNECTOR_PLACEHOLDERS.tenantId;
  const client = options.clientId ?? CONNECTOR_PLACEHOLDERS.clientId;
  return {
    properties: {
      iconBrandColor: '#0078d4',
      capabilities: [],
      publisher: 'batch-endpoints',
      stackOwner: 'batch-endpoints',
      connectionParameterSets: {
        uiDefinition: { displayName: 'Authentication type', description: 'How the connection signs in to the app.' },
        values: [
          {
            name: 'function-key',
            uiDefinition: { displayName: 'Function key', description: 'A function key of the app (x-functions-key).' },
            parameters: {
              api_key: {
                type: 'securestring',
                uiDefinition: {
                  displayName: 'Function key',
                  description: 'A function key of the app (Azure portal: Function App, App keys).',
                  tooltip: 'Sent as the x-functions-key header',
                  constraints: { tabIndex: 2, clearText: false, required: 'true' },
                },
              },
            },
          },
          {
            name: 'entra-id',
            uiDefinition: { displayName: 'Microsoft Entra ID', description: 'Sign in with Microsoft Entra ID (the app behind App Service authentication).' },
            parameters: {
              token: {
                type: 'oauthSetting',
                oAuthSettings: {
                  identityProvider: 'aad',
                  clientId: client,
                  scopes: [`api://${client}/user_impersonation`],
                  redirectMode: 'GlobalPerConnector',
                  redirectUrl: 'https://global.consent.azure-apim.net/redirect',
                  properties: { IsFirstParty: 'False', AzureActiveDirectoryResourceId: `api://${client}`, IsOnbehalfofLoginSupported: true },
                  customParameters: {
                    loginUri: { value: 'https://login.microsoftonline.com' },
                    tenantId: { value: tenant },
                    resourceUri: { value: `api://${client}` },
                    enableOnbehalfOfLogin: { value: 'false' },
                  },
                },
              },
            },
          },
        ],
      },
      policyTemplateInstances: [],
    },
  };
}
