import { describeError } from '../errors.js';
import type { KeyStore } from '../http/keys.js';
import { presentedKey } from '../http/keys.js';
import { type HostRequest, type HostResponse, empty, header, json, text } from '../http/types.js';
import type { Invoker } from '../worker/invoker.js';
import { eventGridBindingData } from '../worker/trigger-binding-data.js';
import type { RegisteredFunction } from '../worker/worker-runtime.js';

/**
 * The Event Grid trigger webhook: `POST /runtime/webhooks/EventGrid?functionName=NAME`, with the
 * subscription-validation handshake, Event Grid and CloudEvents 1.0 schemas, batches, and the
 * CloudEvents OPTIONS abuse-protection handshake.
 */

const EVENT_GRID_ORIGINS = [
  'eventgrid.azure.net',
  'eventgrid.azure.us',
  'eventgrid.azure.eaglex.ic.gov',
  'eventgrid.azure.microsoft.scloud',
  'eventgrid.azure.cn',
];

type EventRecord = Record<string, unknown>;

function isRecord(v: unknown): v is EventRecord {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Returns why an event is not a valid Event Grid or CloudEvents event, or undefined. */
export function invalidEventReason(event: unknown, index: number): string | undefined {
  if (!isRecord(event)) return `event ${index} is not a JSON object`;
  const str = (k: string): boolean => {
    const v = event[k];
    return typeof v === 'string' && v.length > 0;
  };
  if ('specversion' in event) {
    if (event['specversion'] !== '1.0') return `event ${index}: "specversion" must be "1.0"`;
    for (const k of ['id', 'source', 'type']) if (!str(k)) return `event ${index}: CloudEvents attribute "${k}" is required`;
    return undefined;
  }
  for (const k of ['id', 'eventType', 'subject', 'eventTime']) {
    if (!str(k)) return `event ${index}: Event Grid field "${k}" is required`;
  }
  if (!('data' in event)) return `event ${index}: Event Grid field "data" is required`;
  return undefined;
}

export class EventGridWebhook {
  readonly #functions: Map<string, RegisteredFunction>;
  readonly #invoker: Invoker;
  readonly #keys: KeyStore;

  constructor(options: { functions: RegisteredFunction[]; invoker: Invoker; keys: KeyStore }) {
    this.#functions = new Map(options.functions.map((f) => [f.name.toLowerCase(), f]));
    this.#invoker = options.invoker;
    this.#keys = options.keys;
  }

  async handle(request: HostRequest): Promise<HostResponse> {
    const level = this.#keys.levelOf(presentedKey(request.headers, request.url.searchParams), {
      systemName: 'eventgrid_extension',
    });
    if (level !== 'admin' && level !== 'system') return empty(401);

    const name = request.url.searchParams.get('functionName') ?? '';
    const fn = this.#functions.get(name.toLowerCase());
    if (!fn) return text(404, `cannot find function: '${name}'`);

    const method = request.method.toUpperCase();
    if (method === 'OPTIONS') {
      const origin = header(request.headers, 'webhook-request-origin')?.toLowerCase();
      return empty(200, {
        'webhook-allowed-origin': origin && EVENT_GRID_ORIGINS.includes(origin) ? origin : (origin ?? 'eventgrid.azure.net'),
        'webhook-allowed-rate': '*',
        allow: 'POST',
      });
    }
    if (method !== 'POST') return empty(405, { allow: 'POST, OPTIONS' });

    const eventType = header(request.headers, 'aeg-event-type')?.toLowerCase();
    let body: unknown;
    try {
      body = JSON.parse(request.body.toString('utf8'));
    } catch (err) {
      return json(400, { error: `The request body is not valid JSON: ${describeError(err)}` });
    }
    const events: unknown[] = Array.isArray(body) ? body : [body];

    switch (eventType) {
      case 'subscriptionvalidation': {
        const first = events[0];
        let data: unknown = isRecord(first) ? first['data'] : undefined;
        if (typeof data === 'string') {
          try {
            data = JSON.parse(data);
          } catch {
            data = undefined;
          }
        }
        const code = isRecord(data) ? data['validationCode'] : undefined;
        if (typeof code !== 'string') {
          return json(400, { error: 'A SubscriptionValidation event needs data.validationCode.' });
        }
        return {
          status: 200,
          headers: { 'content-type': 'text/plain; charset=utf-8' },
          body: JSON.stringify({ validationResponse: code }),
        };
      }
      case 'unsubscribe':
        return empty(202);
      case 'notification':
        break;
      default:
        return json(400, {
          error: 'The aeg-event-type header must be Notification, SubscriptionValidation or Unsubscribe.',
        });
    }

    if (events.length === 0) return json(400, { error: 'The request contains no events.' });
    const problems = events.map(invalidEventReason).filter((p): p is string => p !== undefined);
    if (problems.length > 0) return json(400, { error: 'Malformed event(s)', details: problems });

    const outcomes = await Promise.all(
      events.map((event) => {
        const record = event as EventRecord;
        const eventText = JSON.stringify(record);
        return this.#invoker.invoke(fn, {
          triggerData: { json: eventText },
          bindingData: eventGridBindingData(record, eventText),
        });
      }),
    );
    const failed = outcomes.find((o) => o.error);
    if (failed?.error) return text(500, failed.error.message);
    return empty(202);
  }
}
