import type { BlobItem, ContainerClient } from '@azure/storage-blob';
import type { QueueClient } from '@azure/storage-queue';
import type { Clock } from '../clock.js';
import { FnHostError, describeError } from '../errors.js';
import type { Logger } from '../log.js';
import { parseBindingTemplate, resolveAppSettings } from '../worker/binding-expressions.js';
import { type BindingData, DateTimeOffsetValue, EnumValue, OpaqueValue } from '../worker/binding-data.js';
import type { RpcTypedData } from '../worker/core-types.js';
import type { Invoker } from '../worker/invoker.js';
import { blobBindingData } from '../worker/trigger-binding-data.js';
import type { RegisteredFunction } from '../worker/worker-runtime.js';
import { statusOf } from './binding-properties.js';
import { refuseSdkBinding, validateContainerName } from './blob-bindings.js';
import type { BlobReceipts } from './blob-receipts.js';
import type { StorageClients } from './connections.js';
import { encodeQueueMessage } from './queue-messages.js';
import { InFlight, PollLoop, within } from './polling.js';
import { typedDataFor } from './typed-data.js';

/** The queue where the host puts blobs whose function failed `maxDequeueCount` times. */
export const BLOB_POISON_QUEUE = 'webjobs-blobtrigger-poison';

/** A compiled blob trigger path such as `samples/{name}.txt`. */
export interface BlobPathPattern {
  container: string;
  /** Literal text before the first capture, to narrow listings. */
  prefix: string;
  /** Capture names, in order. */
  names: string[];
  /** Matches `container/blobName` and returns the captures, or undefined. */
  match(blobPath: string): Record<string, string> | undefined;
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}

/**
 * Compiles a blob trigger path the way the host does: the container is literal; each `{name}` in
 * the rest becomes a greedy capture that also matches `/`; the whole path is anchored and matched
 * case-sensitively against `container/blobName`. A path with only a container matches every blob.
 */
export function compileBlobPathPattern(path: string): BlobPathPattern {
  const trimmed = path.trim();
  const slash = trimmed.indexOf('/');
  const container = slash < 0 ? trimmed : trimmed.slice(0, slash);
  const rest = slash < 0 ? undefined : trimmed.slice(slash + 1);
  if (/[{}]/.test(container)) {
    throw new FnHostError('ERR_CONFIG', `Invalid blob trigger path '${path}': container paths cannot contain {resolve} tokens.`);
  }
  if (container.includes('\\')) throw new FnHostError('ERR_CONFIG', `Invalid blob trigger path '${path}': '\\' is not allowed.`);
  if (rest === '') throw new FnHostError('ERR_CONFIG', `Invalid blob trigger path '${path}': nothing follows the '/'.`);
  try {
    validateContainerName(container);
  } catch (err) {
    throw new FnHostError('ERR_CONFIG', `Invalid blob trigger path '${path}': ${describeError(err)}`, { cause: err });
  }
  if (rest === undefined) {
    return { container, prefix: '', names: [], match: (p) => (p.startsWith(`${container}/`) ? {} : undefined) };
  }
  const names: string[] = [];
  let source = `^${escapeRegExp(container)}/`;
  let prefix = '';
  let sawCapture = false;
  for (const token of parseBindingTemplate(rest)) {
    if (token.kind === 'literal') {
      source += escapeRegExp(token.text);
      if (!sawCapture) prefix += token.text;
      continue;
    }
    if (!/^[A-Za-z_][A-Za-z0-9_-]*$/.test(token.expression)) {
      throw new FnHostError(
        'ERR_CONFIG',
        `Invalid blob trigger path '${path}': '{${token.expression}}' is not a plain name (dot expressions and formats are not allowed here).`,
      );
    }
    names.push(token.expression);
    source += '(.*)';
    sawCapture = true;
  }
  const regex = new RegExp(`${source}$`, 's');
  return {
    container,
    prefix,
    names,
    match(blobPath) {
      const m = regex.exec(blobPath);
      if (!m) return undefined;
      const captures: Record<string, string> = {};
      names.forEach((n, i) => {
        captures[n] = m[i + 1] ?? '';
      });
      return captures;
    },
  };
}

const BLOB_TYPES = ['BlockBlob', 'PageBlob', 'AppendBlob'];
const LEASE_STATES = ['available', 'leased', 'expired', 'breaking', 'broken'];
const LEASE_STATUSES = ['locked', 'unlocked'];

/** An enum value by its position in the .NET enum, or an opaque value if it is not one. */
function dotnetEnum(names: string[], name: string | undefined): unknown {
  if (name === undefined) return undefined;
  const code = names.findIndex((n) => n.toLowerCase() === name.toLowerCase());
  return code < 0 ? new OpaqueValue(name) : new EnumValue(code, name);
}

/**
 * Blob properties with the host's (Azure.Storage.Blobs BlobProperties) names and value types, so
 * `{properties.contentLength}` and `{properties.contentType}` resolve as in Azure and the
 * DateTimeOffset, ETag and bool values give ''.
 */
function blobProperties(item: BlobItem): Record<string, unknown> {
  const p = item.properties;
  const out: Record<string, unknown> = {
    LastModified: new DateTimeOffsetValue(p.lastModified.getTime()),
    CreatedOn: p.createdOn ? new DateTimeOffsetValue(p.createdOn.getTime()) : undefined,
    ContentLength: p.contentLength,
    ContentType: p.contentType,
    ContentEncoding: p.contentEncoding,
    ContentLanguage: p.contentLanguage,
    ContentDisposition: p.contentDisposition,
    CacheControl: p.cacheControl,
    ContentHash: p.contentMD5 ? new OpaqueValue(Buffer.from(p.contentMD5).toString('base64')) : undefined,
    ETag: p.etag === undefined ? undefined : new OpaqueValue(p.etag),
    BlobType: dotnetEnum(BLOB_TYPES, p.blobType),
    AccessTier: p.accessTier === undefined ? undefined : new OpaqueValue(p.accessTier),
    LeaseState: dotnetEnum(LEASE_STATES, p.leaseState),
    LeaseStatus: dotnetEnum(LEASE_STATUSES, p.leaseStatus),
    IsServerEncrypted: p.serverEncrypted === undefined ? undefined : new OpaqueValue(p.serverEncrypted),
  };
  for (const k of Object.keys(out)) if (out[k] === undefined) delete out[k];
  return out;
}

/** What a blob trigger hands to an invocation. */
export function blobTriggerInput(options: {
  container: string;
  item: BlobItem;
  url: string;
  captures: Record<string, string>;
  content: Buffer;
  dataType: unknown;
}): { triggerData: RpcTypedData; bindingData: BindingData } {
  const triggerData = typedDataFor(options.content, options.dataType);
  return {
    triggerData,
    bindingData: blobBindingData({
      path: `${options.container}/${options.item.name}`,
      uri: options.url,
      properties: blobProperties(options.item),
      metadata: options.item.metadata ?? {},
      captures: options.captures,
      text: triggerData.string ?? undefined,
    }),
  };
}

export interface BlobListenerOptions {
  fn: RegisteredFunction;
  invoker: Invoker;
  clients: StorageClients;
  logger: Logger;
  clock: Clock;
  receipts: BlobReceipts;
  /** Attempts per blob version before it goes to the poison queue (host.json queues.maxDequeueCount). */
  maxDequeueCount: number;
  pollIntervalMs: number;
  /** Blobs processed at once per function. */
  maxParallelism: number;
}

/**
 * Runs one blob-triggered function by scanning its container every few seconds: each blob whose
 * name matches the path and whose current ETag has no receipt is passed to the function; success
 * records a receipt, failure retries on a later scan, and after `maxDequeueCount` failures the
 * blob is reported on the `webjobs-blobtrigger-poison` queue (and given a receipt, as the host
 * gives up on it too).
 */
export class BlobListener {
  readonly fn: RegisteredFunction;
  readonly pattern: BlobPathPattern;
  readonly #o: BlobListenerOptions;
  readonly #container: ContainerClient;
  #poison: QueueClient | undefined;
  readonly #inFlight = new InFlight();
  readonly #running = new Set<string>();
  readonly #failures = new Map<string, { etag: string; count: number }>();
  readonly #loop: PollLoop;
  /** Cancels a listing in progress (the SDK retries unreachable storage for a long time) on stop. */
  readonly #abort = new AbortController();
  #poisonReady = false;
  #lastScanError: string | undefined;

  /** Validates the trigger's settings; throws an FnHostError the host reports for the function. */
  constructor(options: BlobListenerOptions) {
    this.#o = options;
    this.fn = options.fn;
    const rawPath = options.fn.trigger['path'];
    if (typeof rawPath !== 'string' || rawPath === '') throw new FnHostError('ERR_CONFIG', 'A blob trigger needs a path.');
    refuseSdkBinding(options.fn.trigger, 'The blob trigger');
    this.pattern = compileBlobPathPattern(resolveAppSettings(rawPath));
    this.#container = options.clients.blobService(options.fn.trigger['connection']).getContainerClient(this.pattern.container);
    this.#loop = new PollLoop({
      clock: options.clock,
      tick: () => this.#scan(),
      onError: (err) => {
        if (this.#loop.stopped) return 0;
        const text = describeError(err);
        if (text !== this.#lastScanError) {
          this.#o.logger.warn(`Blob trigger '${this.fn.name}' cannot list container '${this.pattern.container}': ${text}`);
        }
        this.#lastScanError = text;
        return this.#o.pollIntervalMs;
      },
    });
  }

  start(): void {
    this.#loop.start(0);
  }

  /** Stops scanning, then waits up to `graceMs` for blobs being processed. */
  async stop(graceMs: number): Promise<void> {
    const clock = this.#o.clock;
    const deadline = clock.now() + graceMs;
    this.#abort.abort();
    // A scan waiting for a free slot notices the stop once a blob finishes, so bound the wait.
    await within(clock, this.#loop.stop(), graceMs);
    if (!(await this.#inFlight.drained(clock, deadline - clock.now()))) {
      this.#o.logger.warn(`Blob trigger '${this.fn.name}': ${this.#inFlight.size} blob(s) still running after ${graceMs}ms.`);
    }
  }

  async #scan(): Promise<number> {
    const listing = this.#container.listBlobsFlat({
      includeMetadata: true,
      abortSignal: this.#abort.signal,
      ...(this.pattern.prefix ? { prefix: this.pattern.prefix } : {}),
    });
    try {
      for await (const item of listing) {
        if (this.#loop.stopped) break;
        const blobPath = `${this.pattern.container}/${item.name}`;
        const captures = this.pattern.match(blobPath);
        const etag = item.properties.etag;
        if (!captures || !etag || this.#running.has(blobPath) || this.#o.receipts.has(this.fn.name, blobPath, etag)) continue;
        await this.#inFlight.atMost(this.#o.maxParallelism - 1);
        if (this.#loop.stopped) break;
        this.#running.add(blobPath);
        this.#inFlight.track(this.#process(item, etag, captures).finally(() => this.#running.delete(blobPath)));
      }
    } catch (err) {
      // A container that does not exist yet has no blobs.
      if (statusOf(err) !== 404) throw err;
    }
    this.#lastScanError = undefined;
    return this.#o.pollIntervalMs;
  }

  async #process(item: BlobItem, etag: string, captures: Record<string, string>): Promise<void> {
    const blobPath = `${this.pattern.container}/${item.name}`;
    try {
      const client = this.#container.getBlobClient(item.name);
      let content: Buffer;
      try {
        content = await client.downloadToBuffer(0, undefined, { conditions: { ifMatch: etag } });
      } catch (err) {
        // Deleted (404) or changed (412) since the listing: the next scan sees its new state.
        if (statusOf(err) === 404 || statusOf(err) === 412) return;
        throw err;
      }
      const input = blobTriggerInput({
        container: this.pattern.container,
        item,
        url: client.url,
        captures,
        content,
        dataType: this.fn.trigger.dataType,
      });
      const outcome = await this.#o.invoker.invoke(this.fn, input);
      if (!outcome.error) {
        this.#failures.delete(blobPath);
        await this.#o.receipts.add(this.fn.name, blobPath, etag);
        return;
      }
      const previous = this.#failures.get(blobPath);
      const count = previous?.etag === etag ? previous.count + 1 : 1;
      this.#failures.set(blobPath, { etag, count });
      if (count < this.#o.maxDequeueCount) return;
      this.#failures.delete(blobPath);
      await this.#sendToPoison(item, etag);
      await this.#o.receipts.add(this.fn.name, blobPath, etag);
    } catch (err) {
      this.#o.logger.warn(`Blob trigger '${this.fn.name}': processing '${blobPath}' failed: ${describeError(err)}`);
    }
  }

  async #sendToPoison(item: BlobItem, etag: string): Promise<void> {
    this.#o.logger.warn(
      `Blob '${this.pattern.container}/${item.name}' failed ${this.#o.maxDequeueCount} time(s) in '${this.fn.name}'. Moving it to queue '${BLOB_POISON_QUEUE}'.`,
    );
    // The poison queue lives in the host's storage account (AzureWebJobsStorage), as the host's does.
    this.#poison ??= this.#o.clients.queueService(undefined).getQueueClient(BLOB_POISON_QUEUE);
    if (!this.#poisonReady) {
      await this.#poison.createIfNotExists();
      this.#poisonReady = true;
    }
    const message = {
      Type: 'BlobTrigger',
      FunctionId: `Host.Functions.${this.fn.name}`,
      BlobType: item.properties.blobType === 'PageBlob' ? 'PageBlob' : item.properties.blobType === 'AppendBlob' ? 'AppendBlob' : 'BlockBlob',
      ContainerName: this.pattern.container,
      BlobName: item.name,
      ETag: etag,
    };
    await this.#poison.sendMessage(encodeQueueMessage(JSON.stringify(message)));
  }
}
