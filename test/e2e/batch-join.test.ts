/**
 * Carrying inputs into predictions over HTTP on fnhost: `join` and `key_field` on CSV, JSON Lines
 * and Parquet inputs write each input row's values beside its prediction, row for row, in the same
 * order with and without `split`; `.jsonl` predictions are JSON objects with named fields;
 * `csv_header` opens the file with the job's columns; missing columns are a 400 at invoke for a
 * single file and a failed item with its reason inside a folder.
 */
import { parse } from 'csv-parse/sync';
import { parquetWriteBuffer } from 'hyparquet-writer';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FEATURES, penguinRows, referenceLabels } from '../fixtures/scoring/models.js';
import { type Api, type Json, deploy, ds, fixtureScript, jobOutput, upload, waitForJob, startBatchHost } from '../support/batch.js';
import { type FnHostProcess } from '../support/fnhost.js';
import { uniqueName } from '../support/ports.js';

let host: FnHostProcess;
let api: Api;

const PENGUINS = { name: 'penguins', version: '1', type: 'onnx', path: ds('models/penguins/penguins.onnx') } as const;
const ISLANDS = ['Biscoe', 'Dream', 'Torgersen'];

/** One input row: an id, an island, the four features and a sex, as every format holds them. */
interface Row {
  id: string;
  island: string;
  features: number[];
  sex: string;
}

const rowsOf = (prefix: string, n: number, seed: number): Row[] =>
  penguinRows(n, seed).map((features, i) => ({ id: `${prefix}-${i}`, island: ISLANDS[i % 3] as string, features, sex: i % 2 === 0 ? 'female' : 'male' }));

const INPUT_COLUMNS = ['id', 'island', ...FEATURES, 'sex'];
const csvOf = (rows: Row[]): string => `${INPUT_COLUMNS.join(',')}\n${rows.map((r) => [r.id, r.island, ...r.features, r.sex].join(',')).join('\n')}\n`;
const jsonlOf = (rows: Row[]): string => rows.map((r) => JSON.stringify({ id: r.id, island: r.island, ...Object.fromEntries(FEATURES.map((f, j) => [f, r.features[j]])), sex: r.sex })).join('\n') + '\n';
const parquetOf = (rows: Row[]): Buffer =>
  Buffer.from(
    parquetWriteBuffer({
      columnData: [
        { name: 'id', data: rows.map((r) => r.id), type: 'STRING' },
        { name: 'island', data: rows.map((r) => r.island), type: 'STRING' },
        ...FEATURES.map((name, j) => ({ name, data: rows.map((r) => r.features[j] as number), type: 'DOUBLE' as const })),
        { name: 'sex', data: rows.map((r) => r.sex), type: 'STRING' },
      ],
      rowGroupSize: 3,
    }),
  );

/** The same rows in a CSV, a JSON Lines and a Parquet file, in that (name) order. */
const FILES: [string, Row[]][] = [
  ['a.csv', rowsOf('a', 7, 11)],
  ['b.jsonl', rowsOf('b', 5, 12)],
  ['c.parquet', rowsOf('c', 8, 13)],
];

let labels: Map<string, string>;

const cellsOf = (text: string): string[][] => parse(text);

beforeAll(async () => {
  ({ host, api } = await startBatchHost());
  labels = new Map();
  for (const [, rows] of FILES) {
    const predicted = await referenceLabels(rows.map((r) => r.features));
    rows.forEach((r, i) => labels.set(r.id, predicted[i] as string));
  }
});

afterAll(async () => {
  await host?.stop();
});

/** Uploads FILES (and `extra`) under a fresh folder and deploys the penguin model there with `settings`. */
async function setUp(settings: Record<string, unknown>, extra: Record<string, string | Buffer> = {}): Promise<{ endpoint: string; folder: string }> {
  const endpoint = uniqueName('join');
  const folder = `data/${endpoint}/`;
  const files: Record<string, string | Buffer> = {};
  for (const [name, rows] of FILES) files[`${folder}${name}`] = name.endsWith('.csv') ? csvOf(rows) : name.endsWith('.jsonl') ? jsonlOf(rows) : parquetOf(rows);
  for (const [name, content] of Object.entries(extra)) files[`${folder}${name}`] = content;
  await upload(host.storageConnection, files);
  await deploy(api, {
    endpoint,
    deployment: 'joined',
    model: PENGUINS,
    deploymentBody: { settings: { mini_batch_size: 1, max_concurrency_per_instance: 2, retry_settings: { max_retries: 0, timeout: 60 }, ...settings } },
  });
  return { endpoint, folder };
}

async function run(endpoint: string, path: string, body: Record<string, unknown> = {}): Promise<Json> {
  const res = await api.call('POST', `endpoints/${endpoint}/jobs`, { inputs: { data: { path: ds(path) } }, ...body });
  if (res.status !== 202) throw new Error(`invoke: ${res.status} ${JSON.stringify(res.body)}`);
  return waitForJob(api, res.body.id as string);
}

/** What a row of a file must carry: its input values by column name, and its prediction. */
function expected(file: string, row: Row): Record<string, string> {
  return {
    id: row.id,
    prediction: labels.get(row.id) as string,
    file_name: file,
    island: row.island,
    ...Object.fromEntries(FEATURES.map((f, j) => [f, String(row.features[j])])),
    sex: row.sex,
  };
}

describe('join and key_field', () => {
  it('copies every input column beside each prediction, keyed, row for row, the same with and without split (CSV, JSON Lines, Parquet)', async () => {
    const { endpoint, folder } = await setUp({ join: 'all', key_field: 'id' });
    const whole = await run(endpoint, folder);
    const split = await run(endpoint, folder, { split: { by: 'rows', max_rows: 2 } });
    const columns = ['id', 'prediction', 'file_name', 'island', ...FEATURES, 'sex'];
    for (const job of [whole, split]) {
      expect(job.status).toBe('Completed');
      expect(job.columns).toEqual(columns);
      expect(job.counts.items.failed).toBe(0);
    }
    expect(split.counts.mini_batches.total).toBeGreaterThan(whole.counts.mini_batches.total);
    const text = await jobOutput(host, whole.id, 'predictions.csv');
    expect(await jobOutput(host, split.id, 'predictions.csv')).toBe(text);
    const got = cellsOf(text).map((cells) => Object.fromEntries(columns.map((c, k) => [c, cells[k]])));
    const want = FILES.flatMap(([file, rows]) => rows.map((r) => expected(file, r)));
    expect(got).toEqual(want);
    // The labels differ from row to row, so a row's values next to another row's prediction would show.
    expect(new Set(want.map((w) => w['prediction'])).size).toBeGreaterThan(1);
  });

  it('writes JSON Lines for a .jsonl output_file_name: one object per prediction, named fields, the job columns in order', async () => {
    const { endpoint, folder } = await setUp({ join: { columns: ['sex', 'island'] }, key_field: 'id', output_file_name: 'predictions.jsonl' });
    const job = await run(endpoint, folder, { split: { by: 'rows', max_rows: 3 } });
    expect(job.status).toBe('Completed');
    expect(job.columns).toEqual(['id', 'prediction', 'file_name', 'sex', 'island']);
    const res = await fetch(`${host.url}/api/jobs/${job.id}/outputs/predictions.jsonl`, { headers: { 'x-functions-key': host.masterKey } });
    expect(res.headers.get('content-type')).toContain('application/x-ndjson');
    const lines = (await res.text()).split('\n');
    expect(lines.pop()).toBe('');
    const objects = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    for (const o of objects) expect(Object.keys(o)).toEqual(job.columns);
    expect(objects).toEqual(FILES.flatMap(([file, rows]) => rows.map((r) => ({ id: r.id, prediction: labels.get(r.id), file_name: file, sex: r.sex, island: r.island }))));
  });

  it('without a key keeps the row numbers; csv_header: true opens the file with the columns (a job setting over the deployment)', async () => {
    const { endpoint, folder } = await setUp({ join: { columns: ['island'] } });
    const job = await run(endpoint, `${folder}a.csv`, { settings: { csv_header: true } });
    expect(job.status).toBe('Completed');
    expect(job.columns).toEqual(['row', 'prediction', 'file_name', 'island']);
    const lines = (await jobOutput(host, job.id, 'predictions.csv')).split('\n');
    expect(lines[0]).toBe('row,prediction,file_name,island');
    const rows = FILES[0]?.[1] ?? [];
    expect(lines.slice(1, -1)).toEqual(rows.map((r, i) => `${i},${labels.get(r.id)},a.csv,${r.island}`));
    // join: null turns the deployment's join off for one job: Azure ML's layout, no header.
    const plain = await run(endpoint, `${folder}a.csv`, { settings: { join: null } });
    expect(plain.columns).toEqual(['row', 'prediction', 'file_name']);
    expect((await jobOutput(host, plain.id, 'predictions.csv')).split('\n')[0]).toBe(`0,${labels.get(rows[0]?.id ?? '')},a.csv`);
  });

  it('refuses missing columns at invoke for a single file (400 naming the setting), and fails only the file without them inside a folder', async () => {
    const { endpoint, folder } = await setUp({ join: { columns: ['island', 'sex'] } }, { 'd.csv': `island,${FEATURES.join(',')}\nDream,39.1,18.7,181,3750\n` });
    for (const [settings, field] of [
      [{ join: { columns: ['island', 'colour'] } }, 'settings.join.columns'],
      [{ key_field: 'ring' }, 'settings.key_field'],
    ] as const) {
      for (const file of ['a.csv', 'c.parquet']) {
        const res = await api.call('POST', `endpoints/${endpoint}/jobs`, { inputs: { data: { path: ds(`${folder}${file}`) } }, settings });
        expect(res.status, `${file} ${JSON.stringify(settings)}`).toBe(400);
        expect(res.headers.get('content-type')).toContain('application/problem+json');
        expect(res.body.errors.map((e: { field: string }) => e.field)).toContain(field);
        expect(res.body.detail).toContain(settings.key_field ?? 'colour');
      }
    }
    const job = await run(endpoint, folder);
    expect(job.status).toBe('Completed');
    expect(job.counts.items).toMatchObject({ total: 4, succeeded: 3, failed: 1 });
    const errors = (await jobOutput(host, job.id, 'errors.jsonl')).trim().split('\n').map((l) => JSON.parse(l) as { file: string; reason: string });
    expect(errors).toEqual([{ mini_batch: 3, file: 'd.csv', reason: `column "sex" is missing (join): the file's columns are island, ${FEATURES.join(', ')}` }]);
    const predicted = cellsOf(await jobOutput(host, job.id, 'predictions.csv'));
    expect(predicted.map((cells) => cells[2])).not.toContain('d.csv');
    expect(predicted).toHaveLength(FILES.reduce((n, [, rows]) => n + rows.length, 0));
  });

  it('refuses join with a scoring script, and a joined column named like one the runner writes', async () => {
    const endpoint = uniqueName('joinbad');
    await upload(host.storageConnection, { [`code/${endpoint}/score.js`]: fixtureScript('count-lines.js') });
    await api.call('PUT', `models/${PENGUINS.name}/versions/${PENGUINS.version}`, { type: PENGUINS.type, path: PENGUINS.path });
    await api.call('PUT', `endpoints/${endpoint}`, {});
    const put = (body: Record<string, unknown>): Promise<{ status: number; body: Json }> => api.call('PUT', `endpoints/${endpoint}/deployments/dep`, body);
    const script = await put({ model: 'azureml:penguins:1', code_configuration: { code: ds(`code/${endpoint}/`), scoring_script: 'score.js' }, settings: { join: 'all' } });
    expect(script.status).toBe(400);
    expect(script.body.errors.map((e: { field: string }) => e.field)).toContain('settings.join');
    const clash = await put({ model: 'azureml:penguins:1', settings: { join: { columns: ['island', 'prediction'] } } });
    expect(clash.status).toBe(400);
    expect(clash.body.errors.map((e: { field: string }) => e.field)).toContain('settings.join.columns');
    expect((await api.call('GET', `endpoints/${endpoint}/deployments/dep`)).status).toBe(404);
  });
});
