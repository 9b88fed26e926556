import { z } from 'zod';
import type { EventRecord } from './filters.js';
import type { DeliverySchema } from './settings.js';

/**
 * Event shapes: the storage account's Microsoft.Storage.BlobCreated events, and the conversions
 * between the Event Grid schema and CloudEvents 1.0 that a subscription's `eventDeliverySchema`
 * asks for.
 */

/** The Azure resource ids fnhost's local resources go by (no Azure subscription is involved). */
export const LOCAL_SUBSCRIPTION = '00000000-0000-0000-0000-000000000000';
export const LOCAL_RESOURCE_GROUP = 'fnhost';

export function storageAccountResourceId(account: string): string {
  return `/subscriptions/${LOCAL_SUBSCRIPTION}/resourceGroups/${LOCAL_RESOURCE_GROUP}/providers/Microsoft.Storage/storageAccounts/${account}`;
}

export function topicResourceId(topic: string): string {
  return `/subscriptions/${LOCAL_SUBSCRIPTION}/resourceGroups/${LOCAL_RESOURCE_GROUP}/providers/Microsoft.EventGrid/topics/${topic}`;
}

/** One finished blob write, as Azurite's preload journals it (storage/azurite-preload.ts). */
export const blobWriteSchema = z.object({
  id: z.string().min(1),
  time: z.string().min(1),
  api: z.string().min(1),
  account: z.string().min(1),
  container: z.string().min(1),
  blob: z.string().min(1),
  eTag: z.string(),
  contentType: z.string(),
  contentLength: z.number(),
  blobType: z.string(),
  requestId: z.string(),
  clientRequestId: z.string().optional().default(''),
});
export type BlobWrite = z.infer<typeof blobWriteSchema>;

export const BLOB_CREATED = 'Microsoft.Storage.BlobCreated';

/** A blob's URL under `blobEndpoint` (`http://127.0.0.1:10000`), each path segment percent-encoded. */
export function blobUrl(blobEndpoint: string, write: Pick<BlobWrite, 'account' | 'container' | 'blob'>): string {
  const path = write.blob.split('/').map(encodeURIComponent).join('/');
  return `${blobEndpoint.replace(/\/+$/, '')}/${write.account}/${write.container}/${path}`;
}

/**
 * The BlobCreated event Event Grid's storage system topic sends for a write. `sequencer` orders
 * the events of one blob when compared as strings: fnhost uses the write's position in the
 * journal, which only grows.
 */
export function blobCreatedEvent(write: BlobWrite, options: { position: number; blobEndpoint: string; schema: DeliverySchema }): EventRecord {
  const data = {
    api: write.api,
    clientRequestId: write.clientRequestId,
    requestId: write.requestId,
    eTag: write.eTag,
    contentType: write.contentType,
    contentLength: write.contentLength,
    blobType: write.blobType,
    url: blobUrl(options.blobEndpoint, write),
    sequencer: options.position.toString(16).toUpperCase().padStart(32, '0'),
    storageDiagnostics: { batchId: write.requestId },
  };
  const topic = storageAccountResourceId(write.account);
  const subject = `/blobServices/default/containers/${write.container}/blobs/${write.blob}`;
  if (options.schema === 'CloudEventSchemaV1_0') {
    return { source: topic, subject, type: BLOB_CREATED, time: write.time, id: write.id, data, specversion: '1.0' };
  }
  return { topic, subject, eventType: BLOB_CREATED, id: write.id, data, dataVersion: '', metadataVersion: '1', eventTime: write.time };
}

export function isCloudEvent(event: EventRecord): boolean {
  return 'specversion' in event;
}

/** `event` as `schema` asks; `topic` is the resource id an Event Grid event's `topic` gets when it has none. */
export function inSchema(event: EventRecord, schema: DeliverySchema, topic: string, receivedAt: string): EventRecord {
  if (schema === 'CloudEventSchemaV1_0') {
    if (isCloudEvent(event)) return event;
    const out: EventRecord = {
      specversion: '1.0',
      id: event['id'],
      source: event['topic'] ?? topic,
      type: event['eventType'],
      time: event['eventTime'],
      data: event['data'],
    };
    if (typeof event['subject'] === 'string' && event['subject'] !== '') out['subject'] = event['subject'];
    if (typeof event['dataVersion'] === 'string' && event['dataVersion'] !== '') out['dataschema'] = event['dataVersion'];
    return out;
  }
  if (!isCloudEvent(event)) return { ...event, topic: event['topic'] ?? topic, dataVersion: event['dataVersion'] ?? '', metadataVersion: '1' };
  return {
    id: event['id'],
    topic,
    subject: event['subject'] ?? '',
    eventType: event['type'],
    eventTime: event['time'] ?? receivedAt,
    data: event['data'] ?? null,
    dataVersion: '',
    metadataVersion: '1',
  };
}
