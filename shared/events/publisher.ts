import { BatchError } from '../errors.js';
import type { CloudEvent } from './job-events.js';

/** Where events go: resolves once the topic has accepted them all, throws otherwise. */
export interface EventPublisher {
  publish(events: readonly CloudEvent[]): Promise<void>;
}

/** How long one publish may take before it counts as failed. */
const PUBLISH_TIMEOUT_MS = 30_000;

/**
 * Publishes CloudEvents to an Event Grid topic with its REST protocol: `POST {endpoint}` with the
 * access key in `aeg-sas-key` and the events as a CloudEvents batch (a JSON array), which is what
 * `@azure/eventgrid`'s EventGridPublisherClient sends for the CloudEvents schema. Any 2xx is
 * acceptance; anything else (or no answer) is a failure to retry.
 */
export class EventGridPublisher implements EventPublisher {
  readonly #url: string;
  readonly #key: string;
  readonly #fetch: typeof fetch;

  constructor(options: { endpoint: string; key: string; fetch?: typeof fetch }) {
    const url = new URL(options.endpoint);
    if (!url.searchParams.has('api-version')) url.searchParams.set('api-version', '2018-01-01');
    this.#url = url.toString();
    this.#key = options.key;
    this.#fetch = options.fetch ?? fetch;
  }

  async publish(events: readonly CloudEvent[]): Promise<void> {
    if (events.length === 0) return;
    let res: Response;
    try {
      res = await this.#fetch(this.#url, {
        method: 'POST',
        headers: { 'aeg-sas-key': this.#key, 'content-type': 'application/cloudevents-batch+json; charset=utf-8' },
        body: JSON.stringify(events),
        // A redirect is not followed: the topic's key would go with the body to wherever it points.
        redirect: 'manual',
        signal: AbortSignal.timeout(PUBLISH_TIMEOUT_MS),
      });
    } catch (err) {
      throw new BatchError('event_publish_failed', `The event topic could not be reached: ${(err as Error).message}`, { cause: err });
    }
    const text = await res.text().catch(() => '');
    if (!res.ok) throw new BatchError('event_publish_failed', `The event topic answered ${res.status}${text ? `: ${text.substring(0, 300)}` : ''}.`, { details: { status: res.status } });
  }
}
