import type { Clock } from '../clock.js';
import type { BindingCall, OutputBindingProvider } from '../worker/bindings.js';
import type { RpcTypedData } from '../worker/core-types.js';
import { requiredBindingProperty, statusOf } from './binding-properties.js';
import type { StorageClients } from './connections.js';
import { encodeQueueMessage, queueMessagesFor, validateQueueName } from './queue-messages.js';
import { outputValueOf } from './typed-data.js';

/**
 * The `queue` output binding: sends what the function set to `queueName` (with binding
 * expressions, lower-cased as the host does), one message per array element, Base64-encoded as
 * the host does by default, creating the queue when it does not exist.
 */
export class QueueOutputBinding implements OutputBindingProvider {
  readonly type = 'queue';

  /**
   * @param options.sent called after messages went to a queue, so a queue trigger in this host
   * can poll at once instead of waiting out its backoff (the host's shared queue watcher).
   */
  constructor(
    private readonly options: {
      clients: StorageClients;
      clock: Clock;
      sent?: (connectionString: string, queueName: string) => void;
    },
  ) {}

  async write(call: BindingCall, data: RpcTypedData): Promise<void> {
    const messages = queueMessagesFor(outputValueOf(data));
    if (messages.length === 0) return;
    const name = requiredBindingProperty(call, 'queueName', this.options.clock).toLowerCase();
    validateQueueName(name);
    const queue = this.options.clients.queueService(call.binding['connection']).getQueueClient(name);
    for (const message of messages) {
      const encoded = encodeQueueMessage(message);
      try {
        await queue.sendMessage(encoded);
      } catch (err) {
        if (statusOf(err) !== 404) throw err;
        await queue.createIfNotExists();
        await queue.sendMessage(encoded);
      }
    }
    this.options.sent?.(this.options.clients.connectionString(call.binding['connection']), name);
  }
}
