/**
 * The demo penguin model's inputs and its reference answers, for tests that compare a job's
 * predictions with what onnxruntime gives for the same rows directly.
 */
import { join, resolve } from 'node:path';
import ort from 'onnxruntime-node';

export const PENGUIN_MODEL = join(resolve(import.meta.dirname, '..', '..'), 'scripts', 'demo', 'model', 'penguins.onnx');

/** The model's numeric input columns, in its input order. */
export const FEATURES = ['bill_length_mm', 'bill_depth_mm', 'flipper_length_mm', 'body_mass_g'] as const;

/** A CSV of penguins on one island: a header of `island` and {@link FEATURES}, one line per row of features. */
export function penguinCsv(rows: number[][], island = 'Biscoe'): string {
  return `island,${FEATURES.join(',')}\n${rows.map((r) => `${island},${r.join(',')}`).join('\n')}\n`;
}

/** The labels the penguin model gives for these rows of {@link FEATURES}, scored directly with onnxruntime. */
export async function referencePredictions(rows: number[][]): Promise<string[]> {
  const session = await ort.InferenceSession.create(PENGUIN_MODEL);
  const feeds: Record<string, ort.Tensor> = {};
  FEATURES.forEach((name, j) => {
    feeds[name] = new ort.Tensor('float32', Float32Array.from(rows.map((r) => r[j] as number)), [rows.length, 1]);
  });
  const out = await session.run(feeds);
  return [...(out['label']?.data as string[])];
}
