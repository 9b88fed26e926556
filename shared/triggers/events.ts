import { createHash } from 'node:crypto';
import { blobUrlAccount } from '../storage/endpoints.js';

/**
 * `Microsoft.Storage.BlobCreated` events, in the Event Grid schema or as CloudEvents 1.0, read into
 * what a trigger needs: which blob, which version, and whether the write is finished. Pure: no
 * storage is touched here, and a URL is only parsed, never fetched.
 */

export const BLOB_CREATED = 'Microsoft.Storage.BlobCreated';

/**
 * The storage APIs whose BlobCreated event means the blob is complete. ADLS Gen2 first sends
 * `CreateFile` (0 bytes) and then `FlushWithClose`; block uploads send `PutBlockList` once.
 */
export const FINISHED_WRITES: readonly string[] = ['PutBlob', 'PutBlockList', 'CopyBlob', 'FlushWithClose'];

/** A finished blob write, as an event reported it. */
export interface BlobWrite {
  eventId: string;
  api: string;
  /** The blob's URL as the event gave it. */
  url: string;
  /** What identifies the container: scheme, host, and for path-style (emulator) URLs the account. */
  containerUrl: string;
  account: string;
  container: string;
  /** The blob's name in the container, decoded. */
  blob: string;
  /** Without quotes. */
  etag: string;
  contentLength: number | undefined;
  /** `data.sequencer`: orders the events of one blob name (see batcher.ts, newerWrite). */
  sequencer: string | undefined;
}

export type EventReading = { kind: 'write'; write: BlobWrite } | { kind: 'ignored'; reason: string } | { kind: 'malformed'; reason: string };

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function text(v: unknown): string | undefined {
  return typeof v === 'string' && v.length > 0 ? v : undefined;
}

/** Where a container URL (or a blob URL) points: its account and container, and what identifies them. */
export interface ContainerPlace {
  containerUrl: string;
  account: string;
  container: string;
}

/**
 * A blob URL's container, read as storage/endpoints.ts reads every blob URL (an account's own blob
 * endpoint, or the emulator's path-style URL): only compared with registered datastores'
 * containers, never fetched. A URL it refuses is no blob of any datastore.
 */
function containerOfUrl(raw: string): (ContainerPlace & { rest: string[] }) | undefined {
  let where: ReturnType<typeof blobUrlAccount>;
  try {
    where = blobUrlAccount(raw, 'url');
  } catch {
    return undefined;
  }
  if (!where) return undefined;
  const segments = where.path.split('/');
  const container = segments.shift();
  if (!container) return undefined;
  return { containerUrl: `${where.base}/${container}`, account: where.account, container, rest: segments };
}

/**
 * The account and container a blob URL names (`https://{account}.blob.{suffix}/{container}/…` or
 * path-style `http://host:port/{account}/{container}/…`); whatever follows is not read. An event's
 * URL holds the blob name unencoded (a `#` or `?` in it would cut it short), so the name is taken
 * from the event's subject instead.
 */
export function parseContainerUrl(raw: string): ContainerPlace | undefined {
  const found = containerOfUrl(raw);
  return found ? { containerUrl: found.containerUrl, account: found.account, container: found.container } : undefined;
}

/** Where a (properly encoded) blob URL points: its container, and the blob's name decoded. */
export function parseBlobUrl(raw: string): (ContainerPlace & { blob: string }) | undefined {
  const found = containerOfUrl(raw);
  if (!found || found.rest.length === 0) return undefined;
  let blob: string;
  try {
    blob = found.rest.map((s) => decodeURIComponent(s)).join('/');
  } catch {
    return undefined;
  }
  if (blob === '') return undefined;
  return { containerUrl: found.containerUrl, account: found.account, container: found.container, blob };
}

/** A BlobCreated event's subject: `/blobServices/default/containers/{container}/blobs/{name}` (the name as it is, not encoded). */
export function parseBlobSubject(subject: string): { container: string; blob: string } | undefined {
  const m = /^\/blobServices\/default\/containers\/([^/]+)\/blobs\/(.+)$/s.exec(subject);
  return m ? { container: m[1] as string, blob: m[2] as string } : undefined;
}

/**
 * Reads one event. `malformed`: not an event this function can act on (no id, a BlobCreated event
 * without a blob URL or eTag). `ignored`: another event type, or a write that is not finished yet.
 */
export function readBlobCreated(event: unknown): EventReading {
  if (!isRecord(event)) return { kind: 'malformed', reason: 'the event is not a JSON object' };
  const id = text(event['id']);
  if (!id) return { kind: 'malformed', reason: 'the event has no id' };
  const cloudEvent = 'specversion' in event;
  const type = text(cloudEvent ? event['type'] : event['eventType']);
  if (!type) return { kind: 'malformed', reason: `event ${id} has no ${cloudEvent ? 'type' : 'eventType'}` };
  if (type !== BLOB_CREATED) return { kind: 'ignored', reason: `event ${id} is ${type}, not ${BLOB_CREATED}` };
  let data = event['data'];
  if (typeof data === 'string') {
    try {
      data = JSON.parse(data) as unknown;
    } catch {
      return { kind: 'malformed', reason: `event ${id}: data is not JSON` };
    }
  }
  if (!isRecord(data)) return { kind: 'malformed', reason: `event ${id} has no data` };
  const api = text(data['api']);
  if (!api) return { kind: 'malformed', reason: `event ${id}: data.api is missing` };
  if (!FINISHED_WRITES.includes(api)) return { kind: 'ignored', reason: `event ${id}: ${api} does not finish a blob (only ${FINISHED_WRITES.join(', ')} do)` };
  // The blob's container and name from the subject; its account (and host) from the URL, whose
  // container must agree.
  const subject = text(event['subject']);
  const named = subject ? parseBlobSubject(subject) : undefined;
  if (!named) return { kind: 'malformed', reason: `event ${id}: subject is not /blobServices/default/containers/{container}/blobs/{name}` };
  const url = text(data['url']);
  const place = url ? parseContainerUrl(url) : undefined;
  if (!url || !place) return { kind: 'malformed', reason: `event ${id}: data.url is not a blob URL` };
  if (place.container !== named.container) {
    return { kind: 'ignored', reason: `event ${id}: data.url's container "${place.container}" is not the subject's "${named.container}"` };
  }
  const where = { ...place, blob: named.blob };
  const etag = text(data['eTag'])?.replace(/^"|"$/g, '');
  if (!etag) return { kind: 'malformed', reason: `event ${id}: data.eTag is missing` };
  const length = data['contentLength'];
  return {
    kind: 'write',
    write: { eventId: id, api, url, ...where, etag, contentLength: typeof length === 'number' && Number.isFinite(length) ? length : undefined, sequencer: text(data['sequencer']) },
  };
}

/**
 * The key that makes one blob version one file, however many events report it (redeliveries of
 * one event, the several events of one write, CreateFile then FlushWithClose): a hash of the
 * account, container, blob name and eTag.
 */
export function writeKey(write: Pick<BlobWrite, 'account' | 'container' | 'blob' | 'etag'>): string {
  return createHash('sha256').update(JSON.stringify([write.account.toLowerCase(), write.container, write.blob, write.etag])).digest('hex').substring(0, 40);
}

/** Whether a blob name falls under a rule's source: the prefix, and one of the suffixes (case-insensitively) if it has any. */
export function matchesSource(blob: string, source: { path_prefix: string; suffixes: readonly string[] | null }): boolean {
  if (!blob.startsWith(source.path_prefix)) return false;
  if (!source.suffixes || source.suffixes.length === 0) return true;
  const lower = blob.toLowerCase();
  return source.suffixes.some((s) => lower.endsWith(s.toLowerCase()));
}
