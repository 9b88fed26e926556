import {
  BindingData,
  DateTimeOffsetValue,
  Dictionary,
  OpaqueValue,
  applyJsonObject,
  applyJsonPayload,
  isJsonObject,
  jsonToken,
  withJsonText,
} from './binding-data.js';

/**
 * The binding data each kind of trigger contributes, in one place: which names exist, what type
 * each has, and which wins when two share a name. Every trigger in fnhost builds its binding data
 * here and the invoker turns it into `triggerMetadata`; binding expressions resolve against it
 * (binding-expressions.ts). The rules follow the host's trigger bindings (HTTP, storage queue and
 * blob, timer, Event Grid, Durable activity) and the worker invoker, which adds the properties of
 * a JSON-object trigger value last, so they replace trigger metadata of the same name.
 */

export interface HttpRequestFacts {
  /** The body as received; its JSON properties count only when Content-Length says it has some. */
  body: Buffer;
  headers: Readonly<Record<string, string>>;
  url: URL;
  /** Route values of the matched route template. */
  params: Readonly<Record<string, string>>;
}

/**
 * HTTP: properties of a JSON-object body (whatever the content type), then query values (the last
 * of repeated names; not `code`, which carries the function key), then route values, each
 * replacing the one before; `Query` (a dictionary with exact-case names, including `code`) and
 * `Headers` (names in any case) unless a value of that name exists already.
 */
export function httpBindingData(request: HttpRequestFacts): BindingData {
  const data = new BindingData();
  const length = Number(request.headers['content-length'] ?? '0');
  // The host reads the body for binding data only when Content-Length is above zero.
  if (length > 0 && request.body.length > 0) applyJsonPayload(data, request.body.toString('utf8'));
  const query = new Dictionary();
  for (const [key, value] of request.url.searchParams) query.set(key, value);
  for (const [key, value] of query) {
    if (key.toLowerCase() !== 'code') data.set(key, value);
  }
  for (const [key, value] of Object.entries(request.params)) data.set(key, value);
  data.setIfAbsent('Query', query);
  data.setIfAbsent('Headers', { ...request.headers });
  return data;
}

export interface QueueMessageFacts {
  /** The message text (Base64 already decoded). */
  text: string;
  dequeueCount: number;
  id: string;
  popReceipt: string;
  expiresOn: Date | undefined;
  insertedOn: Date | undefined;
  nextVisibleOn: Date | undefined;
}

/** The largest DateTimeOffset, which the host uses for a missing expiry or visibility time. */
const DATETIMEOFFSET_MAX = Date.UTC(9999, 11, 31, 23, 59, 59, 999);

/**
 * Storage queue: `QueueTrigger`, `DequeueCount`, `ExpirationTime`, `Id`, `InsertionTime`,
 * `NextVisibleTime`, `PopReceipt`, then the properties of a JSON-object message when the function
 * receives it as text (a binary trigger's bytes are not parsed).
 */
export function queueBindingData(message: QueueMessageFacts, options: { now: number; payloadIsText: boolean }): BindingData {
  const data = new BindingData()
    .set('QueueTrigger', message.text)
    .set('DequeueCount', message.dequeueCount)
    .set('ExpirationTime', new DateTimeOffsetValue(message.expiresOn?.getTime() ?? DATETIMEOFFSET_MAX))
    .set('Id', message.id)
    .set('InsertionTime', new DateTimeOffsetValue(message.insertedOn?.getTime() ?? options.now))
    .set('NextVisibleTime', new DateTimeOffsetValue(message.nextVisibleOn?.getTime() ?? DATETIMEOFFSET_MAX))
    .set('PopReceipt', message.popReceipt);
  if (options.payloadIsText) applyJsonPayload(data, message.text);
  return data;
}

export interface BlobFacts {
  /** `container/name`. */
  path: string;
  uri: string;
  /** The blob's properties with the host's (Azure.Storage.Blobs) names and value types. */
  properties: Record<string, unknown>;
  metadata: Readonly<Record<string, string>>;
  /** The `{name}` parts of the trigger's path pattern. */
  captures: Readonly<Record<string, string>>;
  /** The content, when the function receives it as text (dataType 'string'). */
  text: string | undefined;
}

/**
 * Storage blob: `BlobTrigger`, `Uri` (a System.Uri, so '' in a path), `Properties`, `Metadata`,
 * then the parts of the path pattern (they win over the names before), then the properties of a
 * JSON-object blob received as text.
 */
export function blobBindingData(blob: BlobFacts): BindingData {
  const data = new BindingData()
    .set('BlobTrigger', blob.path)
    .set('Uri', new OpaqueValue(blob.uri))
    .set('Properties', blob.properties)
    .set('Metadata', { ...blob.metadata });
  for (const [key, value] of Object.entries(blob.captures)) data.set(key, value);
  if (blob.text !== undefined) applyJsonPayload(data, blob.text);
  return data;
}

/**
 * Timer: only `TimerTrigger`, the time of the call as .NET's `DateTime.Now.ToString()` prints it
 * (local time, which is UTC on Azure Functions unless WEBSITE_TIME_ZONE is set).
 */
export function timerBindingData(text: string): BindingData {
  return new BindingData().set('TimerTrigger', text);
}

/**
 * Event Grid (one event per invocation): `data`, then every top-level field of the event (`id`,
 * `subject`, `eventType`, `eventTime`, `topic`, or the CloudEvents names), since the worker gets
 * the event as JSON text.
 */
export function eventGridBindingData(event: Readonly<Record<string, unknown>>, eventText: string): BindingData {
  const data = new BindingData().set('data', jsonToken(event['data'] ?? null));
  applyJsonPayload(data, eventText);
  return data;
}

export interface ActivityFacts {
  instanceId: string;
  /** The name of the function's activityTrigger binding. */
  triggerName: string;
  /** The activity's input as JSON text; null when the orchestrator passed none. */
  input: string | null;
}

/**
 * Durable activity: `instanceId`, the trigger binding's name (the input as the text a JavaScript
 * activity receives: a string input as it is, anything else as JSON), `data` (the input as JSON,
 * for `{data.folder}`), then the top-level properties of an object input (`{folder}`).
 */
export function activityBindingData(activity: ActivityFacts): BindingData {
  const data = new BindingData().set('instanceId', activity.instanceId);
  let parsed: unknown = null;
  let text: string | null = null;
  if (activity.input !== null) {
    try {
      parsed = withJsonText(JSON.parse(activity.input), activity.input);
    } catch {
      parsed = activity.input;
    }
    text = inputText(parsed, activity.input);
  }
  data.set(activity.triggerName, text);
  data.set('data', jsonToken(parsed));
  // The worker invoker parses the text it hands over, so a string input that is itself a JSON
  // object contributes its properties too.
  if (isJsonObject(parsed)) applyJsonObject(data, parsed);
  else if (text !== null) applyJsonPayload(data, text);
  return data;
}

/** How the extension hands a JavaScript activity its input: scalars as their text, the rest as JSON. */
function inputText(parsed: unknown, json: string): string | null {
  if (parsed === null) return null;
  if (typeof parsed === 'string') return parsed;
  if (typeof parsed === 'boolean') return parsed ? 'True' : 'False';
  if (typeof parsed === 'number') return String(parsed);
  return json;
}

/**
 * Orchestrations: only the instance id (they have no other bindings). The host also passes the
 * whole orchestration context under the trigger's name, which the library never reads; fnhost
 * leaves it out so a long history is not copied on every episode.
 */
export function orchestrationBindingData(instanceId: string): BindingData {
  return new BindingData().set('instanceId', instanceId);
}
