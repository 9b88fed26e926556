import type { HttpRequest, HttpResponseInit, InvocationContext } from '@azure/functions';
import * as df from 'durable-functions';
import { triggerFileOrchestration } from '../../orchestrations/triggers.js';
import { BatchError } from '../../shared/errors.js';
import { endpointName } from '../../shared/schemas/resources.js';
import { triggerBody, triggerName } from '../../shared/schemas/triggers.js';
import { parseOrThrow } from '../../shared/schemas/validate.js';
import { services } from '../../shared/services.js';
import type { ReceiveOutcome } from '../../shared/triggers/trigger-service.js';
import { triggerView } from '../../shared/views.js';
import { baseUrl, json, param, readJson } from '../lib/http.js';

// ---------------------------------------------------------------- the rule resource

export async function putTrigger(request: HttpRequest): Promise<HttpResponseInit> {
  const endpoint = param(request, 'endpoint', endpointName);
  const name = param(request, 'name', triggerName);
  const body = parseOrThrow(triggerBody, await readJson(request), 'trigger rule');
  for (const [field, inPath, inBody] of [['name', name, body.name], ['endpoint_name', endpoint, body.endpoint_name]] as const) {
    if (inBody !== undefined && inBody !== inPath) {
      throw new BatchError('validation_failed', `${field} in the body ("${inBody}") differs from the path ("${inPath}").`, { issues: [{ field, message: `must be "${inPath}" (the path) or omitted` }] });
    }
  }
  const { stored, created } = await services().triggerRules.put(endpoint, name, body);
  return json(created ? 201 : 200, triggerView(stored, baseUrl(request)), created ? { location: new URL(request.url).pathname } : {});
}

export async function getTrigger(request: HttpRequest): Promise<HttpResponseInit> {
  const found = await services().triggerRules.require(param(request, 'endpoint', endpointName), param(request, 'name', triggerName));
  return json(200, triggerView(found, baseUrl(request)));
}

export async function listTriggers(request: HttpRequest): Promise<HttpResponseInit> {
  const all = await services().triggerRules.list(param(request, 'endpoint', endpointName));
  return json(200, { value: all.map((t) => triggerView(t, baseUrl(request))) });
}

export async function deleteTrigger(request: HttpRequest): Promise<HttpResponseInit> {
  await services().triggerRules.delete(param(request, 'endpoint', endpointName), param(request, 'name', triggerName));
  return { status: 204 };
}

// ---------------------------------------------------------------- Event Grid

async function instanceExists(client: df.DurableClient, instanceId: string): Promise<boolean> {
  try {
    const status = await client.getStatus(instanceId);
    return typeof status?.runtimeStatus === 'string';
  } catch {
    return false;
  }
}

/**
 * `blobCreated`: one Microsoft.Storage.BlobCreated event (Event Grid schema or CloudEvents 1.0).
 * An event it cannot act on is acknowledged (and logged), so it is not redelivered for ever;
 * storage failures are thrown, so Event Grid delivers the event again.
 */
export async function blobCreated(event: unknown, context: InvocationContext): Promise<ReceiveOutcome> {
  const client = df.getClient(context);
  const outcome = await services().triggers.receive(event, {
    start: async (instanceId, task) => {
      await client.startNew(triggerFileOrchestration.orchestrationName, { instanceId, input: task });
    },
    exists: (instanceId) => instanceExists(client, instanceId),
  });
  if (outcome.status === 'refused') context.warn(`blobCreated: ${outcome.reason}.`);
  else if (outcome.status === 'malformed') context.warn(`blobCreated: ${outcome.reason}; acknowledged and ignored.`);
  else if (outcome.status === 'ignored') context.log(`blobCreated: ${outcome.reason}.`);
  else if (outcome.status === 'accepted') context.log(`blobCreated: ${outcome.blob}: ${outcome.rules.map((r) => `${r.endpoint}/${r.rule} ${r.outcome}`).join(', ')}.`);
  return outcome;
}
