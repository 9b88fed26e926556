import { createHmac, randomUUID, timingSafeEqual } from 'node:crypto';
import type { Clock } from '../clock.js';
import { describeError } from '../errors.js';
import { type HostRequest, type HostResponse, empty, header, json } from '../http/types.js';
import type { AttemptResult } from './delivery.js';
import type { EventLog } from './event-log.js';
import type { EventRecord } from './filters.js';
import { topicResourceId } from './schemas.js';
import type { TopicSettings, WebhookSubscription } from './settings.js';
import { invalidEventReason } from './webhook.js';

/**
 * Custom topics: `POST /runtime/eventgrid/topics/{topic}/api/events` takes events as an Event Grid
 * topic endpoint does (key in `aeg-sas-key`, a JSON array of Event Grid events or CloudEvents 1.0,
 * 200 once stored), and webhook subscribers get them with Event Grid's handshake and headers.
 */

/** One stored publish: the event as published, and what the topic made of it. */
export interface TopicEntry {
  receivedAt: string;
  event: EventRecord;
}

export interface LocalTopic {
  settings: TopicSettings;
  key: string;
  resourceId: string;
  log: EventLog;
}

/** Event Grid's limit on one publish request. */
const MAX_PUBLISH_BYTES = 1024 * 1024;

/**
 * A topic's key when local.settings.json gives none: derived from the host's master key, so it
 * stays the same across restarts (as the master key does) without a file of its own.
 */
export function derivedTopicKey(masterKey: string, topic: string): string {
  return createHmac('sha256', masterKey).update(`eventgrid-topic:${topic.toLowerCase()}`).digest('base64');
}

/** `FNHOST_EVENTGRID_<TOPIC>_ENDPOINT` / `_KEY`: the topic name upper-cased, "-" as "_". */
export function topicEnvironmentName(topic: string, what: 'ENDPOINT' | 'KEY'): string {
  return `FNHOST_EVENTGRID_${topic.toUpperCase().replace(/-/g, '_')}_${what}`;
}

function sameKey(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

function problem(status: number, code: string, message: string): HostResponse {
  // Event Grid's error body.
  return json(status, { error: { code, message } });
}

export class TopicPublisher {
  readonly #topics: Map<string, LocalTopic>;
  readonly #clock: Clock;

  constructor(options: { topics: LocalTopic[]; clock: Clock }) {
    this.#topics = new Map(options.topics.map((t) => [t.settings.name.toLowerCase(), t]));
    this.#clock = options.clock;
  }

  /** `path` is what follows `/runtime/eventgrid`. */
  async handle(request: HostRequest, path: string): Promise<HostResponse> {
    const match = /^\/topics\/([^/]+)\/api\/events\/?$/i.exec(path);
    if (!match) return empty(404);
    const topic = this.#topics.get(decodeURIComponent(match[1] ?? '').toLowerCase());
    if (!topic) return problem(404, 'NotFound', `The topic '${match[1] ?? ''}' is not declared in local.settings.json (EventGrid.topics).`);
    if (request.method.toUpperCase() !== 'POST') return empty(405, { allow: 'POST' });

    const key = header(request.headers, 'aeg-sas-key');
    if (key === undefined || !sameKey(key, topic.key)) {
      return problem(401, 'Unauthorized', `The request authorization key is not authorized for ${topic.resourceId}. Send the topic's key in the aeg-sas-key header.`);
    }
    if (request.body.length > MAX_PUBLISH_BYTES) return problem(413, 'RequestEntityTooLarge', 'A publish request may carry at most 1 MB of events.');

    let body: unknown;
    try {
      body = JSON.parse(request.body.toString('utf8'));
    } catch (err) {
      return problem(400, 'BadRequest', `The request body is not valid JSON: ${describeError(err)}`);
    }
    const contentType = (header(request.headers, 'content-type') ?? '').toLowerCase();
    // A single CloudEvent may come in structured mode (application/cloudevents+json); everything
    // else is an array, as Event Grid requires.
    const events: unknown[] = Array.isArray(body) ? body : contentType.startsWith('application/cloudevents+json') ? [body] : [];
    if (!Array.isArray(body) && events.length === 0) return problem(400, 'BadRequest', 'The body must be a JSON array of events.');
    if (events.length === 0) return problem(400, 'BadRequest', 'The request contains no events.');
    const problems = events.map(invalidEventReason).filter((p): p is string => p !== undefined);
    if (problems.length > 0) return problem(400, 'BadRequest', problems.join('; '));
    const cloud = events.filter((e) => 'specversion' in (e as EventRecord)).length;
    if (cloud !== 0 && cloud !== events.length) return problem(400, 'BadRequest', 'One request must not mix CloudEvents and Event Grid events.');

    const receivedAt = new Date(this.#clock.now()).toISOString();
    const entries: TopicEntry[] = events.map((e) => {
      const event = { ...(e as EventRecord) };
      // Event Grid fills in the topic of Event Grid schema events with the topic's resource id.
      if (!('specversion' in event)) event['topic'] = topic.resourceId;
      return { receivedAt, event };
    });
    await topic.log.append(entries);
    return empty(200);
  }
}

/** Webhook answers Event Grid counts as delivered. */
const DELIVERED = new Set([200, 201, 202, 203, 204]);
/** How long Event Grid waits for an answer before it counts the attempt as failed. */
const ATTEMPT_TIMEOUT_MS = 30_000;
const ORIGIN = 'eventgrid.azure.net';

/**
 * A webhook subscriber. Before its first delivery (in each run of the host) it is asked to
 * validate the subscription, as Event Grid asks when a subscription is created: an Event Grid
 * schema endpoint gets a SubscriptionValidationEvent to answer with its code, a CloudEvents one
 * the OPTIONS abuse-protection request. Until it answers, deliveries fail and are retried.
 */
export class WebhookDestination {
  readonly #sub: WebhookSubscription;
  readonly #topic: LocalTopic;
  readonly #clock: Clock;
  #validated = false;

  constructor(options: { subscription: WebhookSubscription; topic: LocalTopic; clock: Clock }) {
    this.#sub = options.subscription;
    this.#topic = options.topic;
    this.#clock = options.clock;
  }

  async #fetch(init: RequestInit & { headers: Record<string, string> }): Promise<Response> {
    const controller = new AbortController();
    const timer = this.#clock.setTimeout(() => controller.abort(new Error(`no answer within ${ATTEMPT_TIMEOUT_MS / 1000} s`)), ATTEMPT_TIMEOUT_MS);
    try {
      return await fetch(this.#sub.endpoint, { ...init, signal: controller.signal });
    } finally {
      this.#clock.clearTimeout(timer);
    }
  }

  async #validate(): Promise<AttemptResult> {
    const subscriptionName = this.#sub.name.toUpperCase();
    if (this.#sub.eventDeliverySchema === 'CloudEventSchemaV1_0') {
      const res = await this.#fetch({ method: 'OPTIONS', headers: { 'webhook-request-origin': ORIGIN } });
      await res.arrayBuffer();
      const allowed = (res.headers.get('webhook-allowed-origin') ?? '').toLowerCase();
      if (res.status === 200 && (allowed === ORIGIN || allowed === '*')) return { ok: true };
      return { ok: false, reason: `the CloudEvents validation handshake (OPTIONS) was answered ${res.status} with WebHook-Allowed-Origin '${allowed}'` };
    }
    const code = randomUUID();
    const event = {
      id: randomUUID(),
      topic: this.#topic.resourceId,
      subject: '',
      data: { validationCode: code },
      eventType: 'Microsoft.EventGrid.SubscriptionValidationEvent',
      eventTime: new Date(this.#clock.now()).toISOString(),
      metadataVersion: '1',
      dataVersion: '2',
    };
    const res = await this.#fetch({
      method: 'POST',
      headers: { 'content-type': 'application/json; charset=utf-8', 'aeg-event-type': 'SubscriptionValidation', 'aeg-subscription-name': subscriptionName },
      body: JSON.stringify([event]),
    });
    const text = await res.text();
    let answer: unknown;
    try {
      answer = JSON.parse(text);
    } catch {
      answer = undefined;
    }
    const entries: [string, unknown][] = typeof answer === 'object' && answer !== null ? Object.entries(answer as Record<string, unknown>) : [];
    // ASP.NET and other frameworks may camel- or Pascal-case the property.
    const given = entries.find(([k]) => k.toLowerCase() === 'validationresponse')?.[1];
    if (res.status === 200 && given === code) return { ok: true };
    return { ok: false, reason: `the validation handshake was answered ${res.status} without {"validationResponse": "<code>"}` };
  }

  async deliver(event: EventRecord, deliveryCount: number): Promise<AttemptResult> {
    try {
      if (!this.#validated) {
        const validation = await this.#validate();
        // A failed handshake is retried whatever it answered: it says the endpoint is not ready, not that the event is bad.
        if (!validation.ok) return { ok: false, reason: validation.reason };
        this.#validated = true;
      }
      const cloud = this.#sub.eventDeliverySchema === 'CloudEventSchemaV1_0';
      const headers: Record<string, string> = {
        'content-type': cloud ? 'application/cloudevents+json; charset=utf-8' : 'application/json; charset=utf-8',
        'aeg-event-type': 'Notification',
        'aeg-subscription-name': this.#sub.name.toUpperCase(),
        'aeg-delivery-count': String(deliveryCount),
        'aeg-metadata-version': '1',
      };
      if (!cloud) headers['aeg-data-version'] = typeof event['dataVersion'] === 'string' ? event['dataVersion'] : '';
      // One event per request (Event Grid's default maxEventsPerBatch): an array of one in the
      // Event Grid schema, a structured-mode CloudEvent in CloudEvents.
      const res = await this.#fetch({ method: 'POST', headers, body: JSON.stringify(cloud ? event : [event]) });
      await res.arrayBuffer();
      if (DELIVERED.has(res.status)) return { ok: true };
      return { ok: false, status: res.status, reason: `${this.#sub.endpoint} answered ${res.status}` };
    } catch (err) {
      return { ok: false, reason: `${this.#sub.endpoint}: ${describeError(err)}` };
    }
  }
}

export function localTopic(settings: TopicSettings, options: { masterKey: string; log: EventLog }): LocalTopic {
  return { settings, key: settings.key ?? derivedTopicKey(options.masterKey, settings.name), resourceId: topicResourceId(settings.name), log: options.log };
}
