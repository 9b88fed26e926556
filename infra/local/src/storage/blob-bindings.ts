import type { Clock } from '../clock.js';
import { FnHostError } from '../errors.js';
import type { BindingCall, InputBindingProvider, OutputBindingProvider } from '../worker/bindings.js';
import type { RpcTypedData } from '../worker/core-types.js';
import { requiredBindingProperty, statusOf } from './binding-properties.js';
import type { StorageClients } from './connections.js';
import { outputBytes, outputValueOf, typedDataFor } from './typed-data.js';

export interface BlobPath {
  container: string;
  blob: string;
}

const CONTAINER = /^(?:\$root|\$logs|\$web|[a-z0-9](?:[a-z0-9]|-(?!-)){1,61}[a-z0-9])$/;

/** Checks a container name the way the service does, with a message that says what is wrong. */
export function validateContainerName(name: string): void {
  if (!CONTAINER.test(name)) {
    throw new FnHostError(
      'ERR_BINDING',
      `Invalid container name: '${name}'. A name must be 3-63 lower-case letters, digits and single hyphens, starting and ending with a letter or digit.`,
    );
  }
}

/**
 * Splits a resolved blob path `container/name/with/slashes` into container and blob name. An
 * absolute blob URL works too, as in the host (so `{data.url}` from Event Grid can be a path);
 * for path-style URLs (emulators: `http://127.0.0.1:10000/account/container/blob`) the account
 * segment is skipped.
 */
export function parseBlobPath(path: string): BlobPath {
  let rest = path;
  if (/^https?:\/\//i.test(path)) {
    let url: URL;
    try {
      url = new URL(path);
    } catch (err) {
      throw new FnHostError('ERR_BINDING', `'${path}' is not a valid blob URL.`, { cause: err });
    }
    const segments = url.pathname.replace(/^\/+/, '').split('/');
    const pathStyle = /^(?:\d{1,3}(?:\.\d{1,3}){3}|localhost|\[[0-9a-f:]+\])$/i.test(url.hostname) || url.port !== '';
    rest = (pathStyle ? segments.slice(1) : segments).map((s) => decodeURIComponent(s)).join('/');
  }
  const slash = rest.indexOf('/');
  const container = slash < 0 ? rest : rest.slice(0, slash);
  const blob = slash < 0 ? '' : rest.slice(slash + 1);
  if (!container || !blob) {
    throw new FnHostError('ERR_BINDING', `Invalid blob path '${path}': a blob path must have the form 'container/blob'.`);
  }
  validateContainerName(container);
  return { container, blob };
}

/**
 * SDK-type bindings (`sdkBinding: true`) hand the worker a client description (model binding
 * data) instead of content; fnhost cannot produce those.
 */
export function refuseSdkBinding(binding: { properties?: Record<string, string> | null }, what: string): void {
  if (binding.properties?.['supportsDeferredBinding'] === 'true') {
    throw new FnHostError('ERR_NOT_IMPLEMENTED', `${what} uses sdkBinding: true, which fnhost does not support; read the content instead.`);
  }
}

/**
 * The `blob` input binding: the blob at `path` (with binding expressions), as bytes, or as a
 * string with `dataType: 'string'`; `null` when the blob or its container does not exist.
 */
export class BlobInputBinding implements InputBindingProvider {
  readonly type = 'blob';

  constructor(private readonly options: { clients: StorageClients; clock: Clock }) {}

  async resolve(call: BindingCall): Promise<RpcTypedData | null> {
    refuseSdkBinding(call.binding, `Blob input '${call.bindingName}'`);
    const { container, blob } = parseBlobPath(requiredBindingProperty(call, 'path', this.options.clock));
    const client = this.options.clients.blobService(call.binding['connection']).getContainerClient(container).getBlobClient(blob);
    try {
      return typedDataFor(await client.downloadToBuffer(), call.binding.dataType);
    } catch (err) {
      if (statusOf(err) === 404) return null;
      throw err;
    }
  }
}

/**
 * The `blob` output binding: uploads what the function set (text as UTF-8, bytes as they are,
 * objects as JSON) to `path`, creating the container when it does not exist.
 */
export class BlobOutputBinding implements OutputBindingProvider {
  readonly type = 'blob';

  constructor(private readonly options: { clients: StorageClients; clock: Clock }) {}

  async write(call: BindingCall, data: RpcTypedData): Promise<void> {
    const bytes = outputBytes(outputValueOf(data));
    if (bytes === undefined) return;
    const { container, blob } = parseBlobPath(requiredBindingProperty(call, 'path', this.options.clock));
    const containerClient = this.options.clients.blobService(call.binding['connection']).getContainerClient(container);
    const target = containerClient.getBlockBlobClient(blob);
    try {
      await target.uploadData(bytes);
    } catch (err) {
      if (statusOf(err) !== 404) throw err;
      await containerClient.createIfNotExists();
      await target.uploadData(bytes);
    }
  }
}
