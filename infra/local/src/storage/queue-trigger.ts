import type { DequeuedMessageItem, QueueClient } from '@azure/storage-queue';
import type { Clock } from '../clock.js';
import type { HostSettings } from '../config/app-config.js';
import { FnHostError, describeError } from '../errors.js';
import type { Logger } from '../log.js';
import { resolveAppSettings } from '../worker/binding-expressions.js';
import type { BindingData } from '../worker/binding-data.js';
import type { RpcTypedData } from '../worker/core-types.js';
import type { Invoker } from '../worker/invoker.js';
import { queueBindingData } from '../worker/trigger-binding-data.js';
import type { RegisteredFunction } from '../worker/worker-runtime.js';
import { statusOf } from './binding-properties.js';
import type { StorageClients } from './connections.js';
import { decodeQueueMessage, isBase64Text, poisonQueueName, validateQueueName } from './queue-messages.js';
import { InFlight, PollLoop, within, RandomizedBackoff } from './polling.js';

/** How long a received message stays invisible while its function runs; renewed at half-time. */
const RECEIVE_VISIBILITY_S = 600;
/** The shortest wait between polls of an empty queue. */
const MIN_POLL_MS = 100;

/** What a queue trigger hands to an invocation, built from one dequeued message. */
export function queueTriggerInput(
  message: DequeuedMessageItem,
  dataType: unknown,
  now: number,
): { triggerData: RpcTypedData; bindingData: BindingData } {
  const text = decodeQueueMessage(message.messageText);
  const bytes = isBase64Text(message.messageText) ? Buffer.from(message.messageText, 'base64') : Buffer.from(message.messageText, 'utf8');
  const binary = dataType === 'binary' || dataType === 'stream';
  const triggerData: RpcTypedData = binary ? { bytes } : { string: text };
  const bindingData = queueBindingData(
    {
      text,
      dequeueCount: message.dequeueCount,
      id: message.messageId,
      popReceipt: message.popReceipt,
      expiresOn: message.expiresOn,
      insertedOn: message.insertedOn,
      nextVisibleOn: message.nextVisibleOn,
    },
    { now, payloadIsText: !binary },
  );
  return { triggerData, bindingData };
}

export interface QueueListenerOptions {
  fn: RegisteredFunction;
  invoker: Invoker;
  clients: StorageClients;
  logger: Logger;
  clock: Clock;
  queues: HostSettings['queues'];
  /** For the backoff's jitter; tests pass a fixed source. */
  random?: () => number;
}

/**
 * Runs one queue-triggered function the way the host's queue listener does: polls with
 * randomized exponential backoff up to `maxPollingInterval` while the queue is empty, takes up to
 * `batchSize` messages at a time and fetches more when no more than `newBatchThreshold` are
 * running, deletes a message when its function succeeds, makes it visible again after
 * `visibilityTimeout` when it fails, and moves it to `<queue>-poison` once it has been tried
 * `maxDequeueCount` times.
 */
export class QueueListener {
  readonly fn: RegisteredFunction;
  readonly queueName: string;
  /** The storage account, as its connection string, for matching notifications. */
  readonly connectionString: string;
  readonly #o: QueueListenerOptions;
  readonly #queue: QueueClient;
  readonly #poisonName: string | undefined;
  readonly #poison: QueueClient | undefined;
  readonly #backoff: RandomizedBackoff;
  readonly #inFlight = new InFlight();
  readonly #loop: PollLoop;
  /** Cancels a receive in progress (the SDK retries unreachable storage for a long time) on stop. */
  readonly #abort = new AbortController();
  #poisonReady = false;
  #lastPollError: string | undefined;

  /** Validates the trigger's settings; throws an FnHostError the host reports for the function. */
  constructor(options: QueueListenerOptions) {
    this.#o = options;
    this.fn = options.fn;
    const rawName = options.fn.trigger['queueName'];
    if (typeof rawName !== 'string' || rawName === '') {
      throw new FnHostError('ERR_CONFIG', 'A queue trigger needs a queueName.');
    }
    const name = resolveAppSettings(rawName).toLowerCase();
    if (/[{}]/.test(name)) throw new FnHostError('ERR_CONFIG', `The queue name '${name}' cannot contain binding expressions.`);
    validateQueueName(name);
    this.queueName = name;
    this.connectionString = options.clients.connectionString(options.fn.trigger['connection']);
    const service = options.clients.queueService(options.fn.trigger['connection']);
    this.#queue = service.getQueueClient(name);
    this.#poisonName = poisonQueueName(name);
    this.#poison = this.#poisonName ? service.getQueueClient(this.#poisonName) : undefined;
    this.#backoff = new RandomizedBackoff({
      minMs: MIN_POLL_MS,
      maxMs: Math.max(MIN_POLL_MS, options.queues.maxPollingIntervalMs),
      ...(options.random ? { random: options.random } : {}),
    });
    this.#loop = new PollLoop({
      clock: options.clock,
      tick: () => this.#poll(),
      onError: (err) => this.#pollFailed(err),
    });
  }

  start(): void {
    this.#loop.start(0);
  }

  /** Polls now: a message was just sent to this queue from this host. */
  wake(): void {
    this.#backoff.next(true);
    this.#loop.wake();
  }

  /** Stops polling, then waits up to `graceMs` for messages being processed. */
  async stop(graceMs: number): Promise<void> {
    const clock = this.#o.clock;
    const deadline = clock.now() + graceMs;
    this.#abort.abort();
    // A poll waiting for the batch threshold returns once messages finish, so bound the wait.
    await within(clock, this.#loop.stop(), graceMs);
    const drained = await this.#inFlight.drained(clock, deadline - clock.now());
    if (!drained) {
      this.#o.logger.warn(
        `Queue trigger '${this.fn.name}': ${this.#inFlight.size} message(s) still running after ${graceMs}ms; they become visible again later.`,
      );
    }
  }

  async #poll(): Promise<number> {
    let messages: DequeuedMessageItem[];
    try {
      const response = await this.#queue.receiveMessages({
        numberOfMessages: Math.min(32, Math.max(1, this.#o.queues.batchSize)),
        visibilityTimeout: RECEIVE_VISIBILITY_S,
        abortSignal: this.#abort.signal,
      });
      messages = response.receivedMessageItems;
    } catch (err) {
      // A queue that does not exist yet is an empty queue, as in the host.
      if (statusOf(err) !== 404) throw err;
      messages = [];
    }
    this.#lastPollError = undefined;
    if (this.#loop.stopped) {
      await Promise.all(messages.map((m) => this.#release(m.messageId, m.popReceipt, 0)));
      return 0;
    }
    if (messages.length === 0) return this.#backoff.next(false);
    this.#backoff.next(true);
    for (const message of messages) this.#inFlight.track(this.#process(message));
    await this.#inFlight.atMost(this.#o.queues.newBatchThreshold);
    return 0;
  }

  #pollFailed(err: unknown): number {
    if (this.#loop.stopped) return 0;
    const text = describeError(err);
    // One warning per kind of failure, not one every poll while storage is down.
    if (text !== this.#lastPollError) this.#o.logger.warn(`Queue trigger '${this.fn.name}' cannot read queue '${this.queueName}': ${text}`);
    this.#lastPollError = text;
    return this.#backoff.next(false);
  }

  async #process(message: DequeuedMessageItem): Promise<void> {
    const { maxDequeueCount, visibilityTimeoutMs } = this.#o.queues;
    let popReceipt = message.popReceipt;
    try {
      if (message.dequeueCount > maxDequeueCount && this.#poison) {
        await this.#moveToPoison(message, popReceipt);
        return;
      }
      const input = queueTriggerInput(message, this.fn.trigger.dataType, this.#o.clock.now());
      // Keep the message invisible while a long invocation runs, as the host's renewal does.
      let renewal: unknown;
      let renewing: Promise<void> | undefined;
      let settled = false;
      const renew = (): void => {
        if (settled) return;
        renewal = this.#o.clock.setTimeout(() => {
          renewing = this.#queue
            .updateMessage(message.messageId, popReceipt, undefined, RECEIVE_VISIBILITY_S)
            .then((r) => {
              if (r.popReceipt) popReceipt = r.popReceipt;
              renew();
            })
            .catch((err: unknown) => this.#o.logger.warn(`Queue trigger '${this.fn.name}': renewing message visibility failed: ${describeError(err)}`));
        }, (RECEIVE_VISIBILITY_S * 1000) / 2);
      };
      renew();
      let failed: boolean;
      try {
        const outcome = await this.#o.invoker.invoke(this.fn, {
          triggerData: input.triggerData,
          bindingData: input.bindingData,
        });
        failed = outcome.error !== undefined;
      } finally {
        settled = true;
        this.#o.clock.clearTimeout(renewal);
        // A renewal in flight changes the pop receipt the delete or release below needs.
        await renewing;
      }
      if (!failed) {
        await this.#queue.deleteMessage(message.messageId, popReceipt);
      } else if (message.dequeueCount >= maxDequeueCount && this.#poison) {
        await this.#moveToPoison(message, popReceipt);
      } else {
        await this.#release(message.messageId, popReceipt, visibilityTimeoutMs);
      }
    } catch (err) {
      this.#o.logger.warn(`Queue trigger '${this.fn.name}': handling message ${message.messageId} failed: ${describeError(err)}`);
    }
  }

  async #release(messageId: string, popReceipt: string, delayMs: number): Promise<void> {
    try {
      await this.#queue.updateMessage(messageId, popReceipt, undefined, Math.max(0, Math.round(delayMs / 1000)));
    } catch (err) {
      this.#o.logger.warn(`Queue trigger '${this.fn.name}': releasing message ${messageId} failed: ${describeError(err)}`);
    }
  }

  async #moveToPoison(message: DequeuedMessageItem, popReceipt: string): Promise<void> {
    const poison = this.#poison;
    if (!poison) return;
    this.#o.logger.warn(
      `Message has reached MaxDequeueCount of ${this.#o.queues.maxDequeueCount}. Moving message to queue '${this.#poisonName ?? ''}'.`,
    );
    if (!this.#poisonReady) {
      await poison.createIfNotExists();
      this.#poisonReady = true;
    }
    // The content is copied as stored, so its encoding is the original writer's.
    await poison.sendMessage(message.messageText);
    await this.#queue.deleteMessage(message.messageId, popReceipt);
  }
}
