import { join } from 'node:path';
import type { Clock } from '../clock.js';
import { FnHostError } from '../errors.js';
import type { HostRequest, HostResponse } from '../http/types.js';
import type { Logger } from '../log.js';
import type { Invoker } from '../worker/invoker.js';
import { eventGridBindingData } from '../worker/trigger-binding-data.js';
import type { RegisteredFunction, WorkerRuntime } from '../worker/worker-runtime.js';
import { type AttemptResult, SubscriptionDelivery } from './delivery.js';
import { CursorStore, type EventLog, FileEventLog, MemoryEventLog, appendJsonLine } from './event-log.js';
import { type EventRecord, matchesFilter } from './filters.js';
import { NOT_RETRIED_FUNCTION, NOT_RETRIED_WEBHOOK } from './retry-schedule.js';
import { blobCreatedEvent, blobWriteSchema, inSchema } from './schemas.js';
import type { EventGridSettings, StorageSubscription } from './settings.js';
import { type LocalTopic, type TopicEntry, TopicPublisher, WebhookDestination, localTopic, topicEnvironmentName } from './topics.js';

/** The storage account's blob writes, as Azurite reports them, and where its blobs are reached. */
export interface BlobWriteFeed {
  log: EventLog;
  /** `http://127.0.0.1:10000`: blob URLs in events are this, the account, the container and the name. */
  blobEndpoint: string;
}

export interface EventGridSubsystemOptions {
  settings: EventGridSettings;
  runtime: WorkerRuntime;
  invoker: Invoker;
  logger: Logger;
  clock: Clock;
  dataDir: string | undefined;
  /** Undefined when fnhost runs no Azurite (--no-azurite): there is no system topic then. */
  blobWrites: BlobWriteFeed | undefined;
  masterKey: string;
  random?: () => number;
}

/** Where Event Grid's state lives in a data folder. */
export function eventGridPaths(dataDir: string): { cursors: string; deadLetters: string; topic: (name: string) => string } {
  const dir = join(dataDir, 'eventgrid');
  return {
    cursors: join(dir, 'cursors.json'),
    deadLetters: join(dir, 'dead-letters.jsonl'),
    topic: (name) => join(dir, 'topics', `${name.toLowerCase()}.jsonl`),
  };
}

/** A webhook endpoint with its `%NAME%` app-setting references filled in; an http(s) URL. */
function resolveEndpoint(template: string, what: string): string {
  const endpoint = template.replace(/%([^%]+)%/g, (_whole, name: string) => {
    const value = process.env[name];
    if (value === undefined) throw new FnHostError('ERR_CONFIG', `local.settings.json ${what}: the endpoint refers to app setting '${name}', which is not set.`);
    return value;
  });
  let url: URL | undefined;
  try {
    url = new URL(endpoint);
  } catch {
    url = undefined;
  }
  if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:')) {
    throw new FnHostError('ERR_CONFIG', `local.settings.json ${what}: the endpoint '${endpoint}' is not an http(s) URL.`);
  }
  return endpoint;
}

/**
 * fnhost's Event Grid: the storage account's system topic, delivering BlobCreated events for
 * Azurite's blob writes to the app's Event Grid functions, and custom topics that take publishes
 * and deliver them to webhooks. Subscriptions come from local.settings.json (`EventGrid`).
 */
export class EventGridSubsystem {
  readonly #o: EventGridSubsystemOptions;
  readonly #cursors: CursorStore;
  readonly #topics: LocalTopic[];
  readonly #deliveries: SubscriptionDelivery[] = [];
  readonly publisher: TopicPublisher;

  constructor(options: EventGridSubsystemOptions) {
    this.#o = options;
    const { settings, dataDir, clock, logger } = options;
    const paths = dataDir ? eventGridPaths(dataDir) : undefined;
    this.#cursors = new CursorStore({ path: paths?.cursors, clock, logger });
    this.#topics = settings.topics.map((t) =>
      localTopic(t, { masterKey: options.masterKey, log: paths ? new FileEventLog({ path: paths.topic(t.name), clock, logger }) : new MemoryEventLog() }),
    );
    this.publisher = new TopicPublisher({ topics: this.#topics, clock });

    const functions = new Map(options.runtime.functionsWithTrigger('eventGridTrigger', { includeDisabled: true }).map((f) => [f.name.toLowerCase(), f]));
    let blobWritesWait = false;
    for (const sub of settings.storageSubscriptions) {
      const fn = functions.get(sub.function.toLowerCase());
      if (!fn) {
        const known = [...functions.values()].map((f) => f.name).join(', ') || 'none';
        throw new FnHostError(
          'ERR_CONFIG',
          `local.settings.json EventGrid.storageSubscriptions '${sub.name}' names function '${sub.function}', which is not an Event Grid function of the app (Event Grid functions: ${known}).`,
        );
      }
      if (fn.disabled) {
        blobWritesWait = true;
        // Its events wait in the journal: the subscription's cursor does not move while it is off.
        logger.warn(`Event Grid subscription '${sub.name}': function '${fn.name}' is disabled; its events are delivered once it is enabled again.`);
        continue;
      }
      if (!options.blobWrites) {
        logger.warn(`Event Grid subscription '${sub.name}': fnhost runs no Azurite here (--no-azurite), so there are no blob events to deliver.`);
        continue;
      }
      this.#deliveries.push(this.#storageDelivery(sub, fn, options.blobWrites));
    }
    for (const topic of this.#topics) {
      for (const sub of topic.settings.subscriptions) {
        const endpoint = resolveEndpoint(sub.endpoint, `EventGrid.topics '${topic.settings.name}' subscription '${sub.name}'`);
        const destination = new WebhookDestination({ subscription: { ...sub, endpoint }, topic, clock });
        this.#deliveries.push(
          this.#delivery({
            name: `topics/${topic.settings.name}/${sub.name}`,
            log: topic.log,
            retryPolicy: sub.retryPolicy,
            notRetried: NOT_RETRIED_WEBHOOK,
            deliver: (event, count) => destination.deliver(event, count),
            select: (value) => {
              const entry = value as TopicEntry;
              const event = inSchema(entry.event, sub.eventDeliverySchema, topic.resourceId, entry.receivedAt);
              if (!matchesFilter(sub.filter, event)) return undefined;
              return { event, subject: typeof event['subject'] === 'string' ? event['subject'] : '', publishedAt: Date.parse(entry.receivedAt) };
            },
          }),
        );
      }
    }
    if (!blobWritesWait) this.#retainOnlyNeeded(options.blobWrites?.log);
    for (const topic of this.#topics) this.#retainOnlyNeeded(topic.log);
  }

  /**
   * A log in memory keeps only what its subscriptions may still read, and nothing when it has
   * none (a subscription whose function is disabled keeps all of its log, for when it is enabled).
   */
  #retainOnlyNeeded(log: EventLog | undefined): void {
    if (!(log instanceof MemoryEventLog)) return;
    const readers = this.#deliveries.filter((d) => d.log === log);
    log.retainFrom = () => readers.reduce((least, d) => Math.min(least, d.neededFrom()), Infinity);
  }

  /** Each topic's endpoint and key, for the app's environment (see infra/local/README.md). */
  environment(baseUrl: string): Record<string, string> {
    const env: Record<string, string> = {};
    for (const t of this.#topics) {
      env[topicEnvironmentName(t.settings.name, 'ENDPOINT')] = `${baseUrl}/runtime/eventgrid/topics/${t.settings.name}/api/events`;
      env[topicEnvironmentName(t.settings.name, 'KEY')] = t.key;
    }
    return env;
  }

  /** `POST /runtime/eventgrid/topics/{topic}/api/events`; `path` follows `/runtime/eventgrid`. */
  handle(request: HostRequest, path: string): Promise<HostResponse> {
    return this.publisher.handle(request, path);
  }

  async start(): Promise<void> {
    for (const d of this.#deliveries) await d.start();
  }

  async stop(graceMs: number): Promise<void> {
    await Promise.all(this.#deliveries.map((d) => d.stop(graceMs)));
    this.#cursors.flush();
  }

  #storageDelivery(sub: StorageSubscription, fn: RegisteredFunction, feed: BlobWriteFeed): SubscriptionDelivery {
    const { invoker, logger } = this.#o;
    return this.#delivery({
      name: `storage/${sub.name}`,
      log: feed.log,
      retryPolicy: sub.retryPolicy,
      notRetried: NOT_RETRIED_FUNCTION,
      deliver: async (event): Promise<AttemptResult> => {
        const eventText = JSON.stringify(event);
        const outcome = await invoker.invoke(fn, { triggerData: { json: eventText }, bindingData: eventGridBindingData(event, eventText) });
        // The Event Grid extension answers a failed invocation with 500, which Event Grid retries.
        return outcome.error ? { ok: false, status: 500, reason: `function '${fn.name}' failed: ${outcome.error.message}` } : { ok: true };
      },
      select: (value, position) => {
        const parsed = blobWriteSchema.safeParse(value);
        if (!parsed.success) {
          logger.warn(`Event Grid: a blob write record at ${position} is not understood and is skipped.`);
          return undefined;
        }
        const event = blobCreatedEvent(parsed.data, { position, blobEndpoint: feed.blobEndpoint, schema: sub.eventDeliverySchema });
        if (!matchesFilter(sub.filter, event)) return undefined;
        return { event, subject: String(event['subject']), publishedAt: Date.parse(parsed.data.time) };
      },
    });
  }

  #delivery(init: {
    name: string;
    log: EventLog;
    retryPolicy: StorageSubscription['retryPolicy'];
    notRetried: ReadonlySet<number>;
    deliver: (event: EventRecord, deliveryCount: number) => Promise<AttemptResult>;
    select: (value: unknown, position: number) => { event: EventRecord; subject: string; publishedAt: number } | undefined;
  }): SubscriptionDelivery {
    const { clock, logger, dataDir, settings, random } = this.#o;
    const deadLetters = dataDir ? eventGridPaths(dataDir).deadLetters : undefined;
    return new SubscriptionDelivery({
      name: init.name,
      log: init.log,
      cursors: this.#cursors,
      select: (entry) => init.select(entry.value, entry.position),
      deliver: init.deliver,
      notRetried: init.notRetried,
      retryPolicy: init.retryPolicy,
      scale: settings.retryDelayScale,
      clock,
      logger,
      ...(random ? { random } : {}),
      deadLetter: async (event, why, deliveryCount) => {
        if (!deadLetters) return;
        // Event Grid's dead-letter record: the event with why and when it was given up on.
        await appendJsonLine(deadLetters, {
          subscription: init.name,
          deadLetterReason: why,
          deliveryAttempts: deliveryCount,
          lastDeliveryAttemptTime: new Date(clock.now()).toISOString(),
          event,
        });
      },
    });
  }
}
