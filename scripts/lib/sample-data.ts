/** Sample input files made from the penguins table, for the demo, tests and benchmarks. */
import { BlobServiceClient } from '@azure/storage-blob';
import { stringify } from 'csv-stringify/sync';
import { FEATURES, type Penguin, loadPenguins } from '../train-penguins.js';

export const COLUMNS = ['island', ...FEATURES, 'sex'] as const;

/** `rows` penguin rows; beyond the 342 real ones, measurements are jittered deterministically. */
export function penguinRows(rows: number, seed = 1): Penguin[] {
  const base = loadPenguins();
  let state = seed >>> 0 || 1;
  const random = (): number => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return (state >>> 0) / 4294967296;
  };
  const out: Penguin[] = [];
  for (let i = 0; i < rows; i++) {
    const p = base[i % base.length] as Penguin;
    if (i < base.length) {
      out.push(p);
      continue;
    }
    const jitter = (v: number, scale: number): number => Math.round((v + (random() - 0.5) * scale) * 10) / 10;
    out.push({
      ...p,
      bill_length_mm: jitter(p.bill_length_mm, 2),
      bill_depth_mm: jitter(p.bill_depth_mm, 1),
      flipper_length_mm: Math.round(jitter(p.flipper_length_mm, 6)),
      body_mass_g: Math.round(jitter(p.body_mass_g, 200)),
    });
  }
  return out;
}

export function toCsv(rows: Penguin[]): string {
  return stringify(
    rows.map((r) => COLUMNS.map((c) => r[c] ?? '')),
    { header: true, columns: [...COLUMNS], record_delimiter: '\n' },
  );
}

export function toJsonl(rows: Penguin[]): string {
  return rows.map((r) => JSON.stringify(Object.fromEntries(COLUMNS.map((c) => [c, r[c]])))).join('\n') + '\n';
}

/** Uploads `files` (name → content) under `prefix` in `container`, creating the container. */
export async function uploadFiles(connection: string, container: string, prefix: string, files: Record<string, string | Uint8Array>): Promise<void> {
  const client = BlobServiceClient.fromConnectionString(connection).getContainerClient(container);
  await client.createIfNotExists();
  const entries = Object.entries(files);
  for (let i = 0; i < entries.length; i += 16) {
    await Promise.all(
      entries.slice(i, i + 16).map(([name, content]) => {
        const body = typeof content === 'string' ? Buffer.from(content) : Buffer.from(content);
        return client.getBlockBlobClient(`${prefix}${name}`).upload(body, body.length);
      }),
    );
  }
}
