/**
 * The bare baseline's worker thread: downloads its share of the CSV files (each while the one
 * before is scored), parses them, runs the same ONNX model and formats rows, with none of the app
 * around it.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { BlobServiceClient } from '@azure/storage-blob';
import { parse } from 'csv-parse/sync';
import ort from 'onnxruntime-node';

interface Task {
  connection: string;
  container: string;
  blobs: string[];
  model: string;
  features: string[];
}

const task = workerData as Task;
const container = BlobServiceClient.fromConnectionString(task.connection).getContainerClient(task.container);
const session = await ort.InferenceSession.create(task.model);
let rows = 0;
let out = 0;
/** One GET per file (downloadToBuffer without a count makes a HEAD first). */
async function fetchText(blob: string): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of (await container.getBlobClient(blob).download()).readableStreamBody ?? []) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

// The next file downloads while this one is scored, as a careful hand-written script would do.
let next = task.blobs[0] === undefined ? undefined : fetchText(task.blobs[0]);
for (const [i, blob] of task.blobs.entries()) {
  const text = await (next as Promise<string>);
  const following = task.blobs[i + 1];
  next = following === undefined ? undefined : fetchText(following);
  const records = parse(text, { columns: true, skip_empty_lines: true }) as Record<string, string>[];
  const feeds: Record<string, ort.Tensor> = {};
  for (const name of task.features) {
    feeds[name] = new ort.Tensor('float32', Float32Array.from(records.map((r) => Number(r[name]))), [records.length, 1]);
  }
  const result = await session.run(feeds);
  const labels = result['label']?.data as string[];
  const name = blob.split('/').pop() ?? blob;
  out += labels.map((l, i) => `${i},${l},${name}\n`).join('').length;
  rows += records.length;
}
parentPort?.postMessage({ rows, bytes: out });
