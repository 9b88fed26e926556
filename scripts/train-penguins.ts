/**
 * Trains the demo model: multinomial logistic regression predicting a penguin's species from its
 * measurements (the penguins table that ships in the vega-datasets npm package), exported as ONNX
 * with one input per feature column, so CSV/JSONL/Parquet columns feed it by name.
 *
 *   npm run train   (writes scripts/demo/model/penguins.onnx and penguins.card.json)
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { FLOAT, STRING, encodeModel, floatTensor, node, stringTensor, valueInfo } from './onnx-builder.js';

export const FEATURES = ['bill_length_mm', 'bill_depth_mm', 'flipper_length_mm', 'body_mass_g'] as const;
export const SPECIES = ['Adelie', 'Chinstrap', 'Gentoo'] as const;

export interface Penguin {
  species: string;
  island: string;
  bill_length_mm: number;
  bill_depth_mm: number;
  flipper_length_mm: number;
  body_mass_g: number;
  sex: string | null;
}

/** The penguins table from vega-datasets, cleaned (rows with missing measurements dropped). */
export function loadPenguins(): Penguin[] {
  const require = createRequire(import.meta.url);
  const file = join(dirname(require.resolve('vega-datasets')), '..', 'data', 'penguins.json');
  const raw = JSON.parse(readFileSync(file, 'utf8')) as Record<string, string | number | null>[];
  const rows: Penguin[] = [];
  for (const r of raw) {
    const values = [r['Beak Length (mm)'], r['Beak Depth (mm)'], r['Flipper Length (mm)'], r['Body Mass (g)']];
    if (values.some((v) => typeof v !== 'number')) continue;
    rows.push({
      species: String(r['Species']),
      island: String(r['Island']),
      bill_length_mm: values[0] as number,
      bill_depth_mm: values[1] as number,
      flipper_length_mm: values[2] as number,
      body_mass_g: values[3] as number,
      sex: typeof r['Sex'] === 'string' ? r['Sex'] : null,
    });
  }
  return rows;
}

function train(rows: Penguin[]): { mean: number[]; std: number[]; w: number[][]; b: number[]; accuracy: number } {
  const k = SPECIES.length;
  const f = FEATURES.length;
  const x = rows.map((r) => FEATURES.map((name) => r[name]));
  const y = rows.map((r) => SPECIES.indexOf(r.species as (typeof SPECIES)[number]));
  const mean = FEATURES.map((_, j) => x.reduce((a, row) => a + (row[j] ?? 0), 0) / x.length);
  const std = FEATURES.map((_, j) => Math.sqrt(x.reduce((a, row) => a + ((row[j] ?? 0) - (mean[j] ?? 0)) ** 2, 0) / x.length));
  const z = x.map((row) => row.map((v, j) => (v - (mean[j] ?? 0)) / (std[j] ?? 1)));
  const w = Array.from({ length: f }, () => new Array<number>(k).fill(0));
  const b = new Array<number>(k).fill(0);
  const rate = 0.5;
  const l2 = 1e-3;
  // Full-batch gradient descent from zeros: deterministic, so the exported model is reproducible.
  for (let epoch = 0; epoch < 2000; epoch++) {
    const gw = Array.from({ length: f }, () => new Array<number>(k).fill(0));
    const gb = new Array<number>(k).fill(0);
    z.forEach((row, i) => {
      const logits = b.map((bc, c) => bc + row.reduce((a, v, j) => a + v * (w[j]?.[c] ?? 0), 0));
      const max = Math.max(...logits);
      const exps = logits.map((l) => Math.exp(l - max));
      const sum = exps.reduce((a, e) => a + e, 0);
      exps.forEach((e, c) => {
        const grad = e / sum - (c === y[i] ? 1 : 0);
        gb[c] = (gb[c] ?? 0) + grad;
        row.forEach((v, j) => {
          const gRow = gw[j] as number[];
          gRow[c] = (gRow[c] ?? 0) + grad * v;
        });
      });
    });
    for (let c = 0; c < k; c++) {
      b[c] = (b[c] ?? 0) - (rate * (gb[c] ?? 0)) / z.length;
      for (let j = 0; j < f; j++) {
        const wRow = w[j] as number[];
        wRow[c] = (wRow[c] ?? 0) - rate * ((gw[j]?.[c] ?? 0) / z.length + l2 * (wRow[c] ?? 0));
      }
    }
  }
  let correct = 0;
  z.forEach((row, i) => {
    const logits = b.map((bc, c) => bc + row.reduce((a, v, j) => a + v * (w[j]?.[c] ?? 0), 0));
    if (logits.indexOf(Math.max(...logits)) === y[i]) correct++;
  });
  return { mean, std, w, b, accuracy: correct / z.length };
}

export function exportModel(params: { mean: number[]; std: number[]; w: number[][]; b: number[] }): Uint8Array {
  return encodeModel({
    name: 'penguin_species',
    docString: 'Multinomial logistic regression: penguin species from bill, flipper and mass measurements.',
    metadata: { features: FEATURES.join(','), classes: SPECIES.join(',') },
    inputs: FEATURES.map((name) => valueInfo(name, FLOAT, ['N', 1])),
    outputs: [valueInfo('label', STRING, ['N']), valueInfo('probabilities', FLOAT, ['N', SPECIES.length])],
    initializers: [
      floatTensor('mean', [FEATURES.length], params.mean),
      floatTensor('std', [FEATURES.length], params.std),
      floatTensor('weights', [FEATURES.length, SPECIES.length], params.w.flat()),
      floatTensor('bias', [SPECIES.length], params.b),
      stringTensor('classes', [...SPECIES]),
    ],
    nodes: [
      node('Concat', [...FEATURES], ['features'], { axis: 1 }),
      node('Sub', ['features', 'mean'], ['centered']),
      node('Div', ['centered', 'std'], ['scaled']),
      node('MatMul', ['scaled', 'weights'], ['projected']),
      node('Add', ['projected', 'bias'], ['logits']),
      node('Softmax', ['logits'], ['probabilities'], { axis: 1 }),
      node('ArgMax', ['logits'], ['class_index'], { axis: 1, keepdims: 0 }),
      node('Gather', ['classes', 'class_index'], ['label'], { axis: 0 }),
    ],
  });
}

function main(): void {
  const rows = loadPenguins();
  const params = train(rows);
  const out = resolve(import.meta.dirname, '..', '..', 'scripts', 'demo', 'model');
  writeFileSync(join(out, 'penguins.onnx'), exportModel(params));
  writeFileSync(
    join(out, 'penguins.card.json'),
    `${JSON.stringify({ rows: rows.length, trainingAccuracy: Number(params.accuracy.toFixed(4)), features: FEATURES, classes: SPECIES }, null, 2)}\n`,
  );
  console.log(`trained on ${rows.length} penguins, training accuracy ${(params.accuracy * 100).toFixed(1)}% -> ${join(out, 'penguins.onnx')}`);
}

if (process.argv[1] && resolve(process.argv[1]).endsWith(join('scripts', 'train-penguins.js'))) main();
