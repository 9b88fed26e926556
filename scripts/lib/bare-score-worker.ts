/**
 * A worker thread of the pipeline benchmark's bare run (`npm run bench -- --only pipeline`): scores
 * its share of the cleaned local CSV files with the penguin model through onnxruntime-node, parsed
 * as scenario (a)'s bare worker does, and sends back predictions.csv's lines (`row,prediction,file`,
 * as the score step writes them). Two of them run side by side, as the score step's
 * max_concurrency_per_instance 2 does, so the bare run is not held to one thread.
 */
import { readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import { parentPort, workerData } from 'node:worker_threads';
import { parse } from 'csv-parse/sync';
import ort from 'onnxruntime-node';

export interface BareScoreTask {
  model: string;
  features: string[];
  /** Absolute paths of the CSV files to score. */
  files: string[];
}

const task = workerData as BareScoreTask;
const session = await ort.InferenceSession.create(task.model);
const lines: string[] = [];
// The next file is read while this one is scored, as a careful hand-written script would do.
let next = task.files[0] === undefined ? undefined : readFile(task.files[0], 'utf8');
for (const [i, file] of task.files.entries()) {
  const text = await (next as Promise<string>);
  const following = task.files[i + 1];
  next = following === undefined ? undefined : readFile(following, 'utf8');
  const records: Record<string, string>[] = parse(text, { columns: true, skip_empty_lines: true });
  const feeds: Record<string, ort.Tensor> = {};
  for (const name of task.features) feeds[name] = new ort.Tensor('float32', Float32Array.from(records.map((r) => Number(r[name]))), [records.length, 1]);
  const labels = (await session.run(feeds))['label']?.data as string[];
  const name = basename(file);
  lines.push(labels.map((label, row) => `${row},${label},${name}\n`).join(''));
}
await session.release();
parentPort?.postMessage(lines.join(''));
