/**
 * Split by rows over HTTP on fnhost: the same input scored with and without `split` gives the same
 * predictions, the same item failures and reasons, and the same accounting of files without rows.
 */
import { parse } from 'csv-parse/sync';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Api, type Json, deploy, ds, fixtureScript, upload, waitForJob, startBatchHost } from '../support/batch.js';
import { type FnHostProcess } from '../support/fnhost.js';
import { uniqueName } from '../support/ports.js';
import { FEATURES, referencePredictions } from '../support/penguins.js';

let host: FnHostProcess;
let api: Api;

const HEADER = 'island,bill_length_mm,bill_depth_mm,flipper_length_mm,body_mass_g,sex';
const PENGUINS = { name: 'penguins', version: '1', type: 'onnx', path: ds('models/penguins/penguins.onnx') } as const;
const NO_ROWS = 'the file has no rows (only a header)';

beforeAll(async () => {
  ({ host, api } = await startBatchHost());
});

afterAll(async () => {
  await host?.stop();
});

/** Penguins as [island, features..., sex]. */
type Penguin = [string, number, number, number, number, string];

const BIRDS: Penguin[] = [
  ['Biscoe', 45.1, 14.5, 215, 5000, 'female'],
  ['Dream', 39.5, 16.7, 178, 3250, 'female'],
  ['Torgersen', 38.9, 17.8, 181, 3625, 'female'],
  ['Biscoe', 50, 15.2, 218, 5700, 'male'],
  ['Dream', 46.5, 17.9, 192, 3500, 'female'],
  ['Biscoe', 49.9, 16.1, 213, 5400, 'male'],
];

const features = (birds: Penguin[]): number[][] => birds.map((b) => b.slice(1, 5) as number[]);
const csvLine = (b: Penguin): string => b.join(',');
const jsonLine = (b: Penguin): string => JSON.stringify({ island: b[0], ...Object.fromEntries(FEATURES.map((f, j) => [f, b[j + 1]])), sex: b[5] });

/** `row,prediction,file_name` lines of each file's rows, rows numbered from 0. */
async function expectedLines(files: [string, Penguin[], number[]?][]): Promise<string[]> {
  const lines: string[] = [];
  for (const [file, birds, rows] of files) {
    const labels = await referencePredictions(features(birds));
    labels.forEach((label, i) => lines.push(`${rows?.[i] ?? i},${label},${file}`));
  }
  return lines;
}

async function output(jobId: string, file: string): Promise<string> {
  const res = await fetch(`${host.url}/api/jobs/${jobId}/outputs/${file}`, { headers: { 'x-functions-key': host.masterKey } });
  if (res.status !== 200) throw new Error(`GET outputs/${file} of ${jobId}: ${res.status}`);
  return res.text();
}

interface Outcome {
  job: Json;
  predictions: string[];
  errors: { mini_batch: number; file: string | null; rows?: { start: number; end: number }; reason: string }[];
  /** processed_mini_batches.csv rows by mini-batch id: items, succeeded, failed, status. */
  report: Map<number, { items: number; succeeded: number; failed: number; status: string }>;
  log: string;
}

async function outcomeOf(job: Json): Promise<Outcome> {
  const predictions = job.status === 'Completed' ? (await output(job.id, 'predictions.csv')).split('\n').filter(Boolean) : [];
  const errors = (await output(job.id, 'errors.jsonl'))
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Outcome['errors'][number]);
  const rows = parse<Record<string, string>>(await output(job.id, 'processed_mini_batches.csv'), { columns: true });
  const report = new Map(rows.map((r) => [Number(r['mini_batch_id']), { items: Number(r['items']), succeeded: Number(r['succeeded']), failed: Number(r['failed']), status: r['status'] ?? '' }]));
  return { job, predictions, errors, report, log: await output(job.id, 'logs/job.log') };
}

/**
 * Deploys the penguin model twice on one endpoint, `whole` without split and `split` with
 * `max_rows`, scores the folder with each (one item per mini-batch) and returns both outcomes.
 */
async function scoreBothWays(files: Record<string, string>, maxRows: number, model: 'penguins' | { script: string } = 'penguins'): Promise<{ whole: Outcome; split: Outcome }> {
  const endpoint = uniqueName('rec');
  const prefix = `data/${endpoint}/`;
  await upload(host.storageConnection, Object.fromEntries(Object.entries(files).map(([name, text]) => [`${prefix}${name}`, text])));
  const settings = { mini_batch_size: 1, max_concurrency_per_instance: 2, retry_settings: { max_retries: 0, timeout: 30 } };
  let body: Record<string, unknown> = { settings };
  let registered: { name: string; version: string; type: 'onnx' | 'custom_model'; path: string } = { ...PENGUINS };
  if (model !== 'penguins') {
    const codeDir = `code/${endpoint}/`;
    await upload(host.storageConnection, { [`${codeDir}score.js`]: fixtureScript(model.script) });
    body = { ...body, code_configuration: { code: ds(codeDir), scoring_script: 'score.js' } };
    registered = { name: 'dummy', version: '1', type: 'custom_model', path: ds('models/dummy/') };
  }
  await deploy(api, { endpoint, deployment: 'whole', model: registered, deploymentBody: body });
  await deploy(api, { endpoint, deployment: 'split', model: registered, deploymentBody: { ...body, split: { by: 'rows', max_rows: maxRows } }, makeDefault: false });
  const run = async (deployment: string): Promise<Outcome> => {
    const res = await api.call('POST', `endpoints/${endpoint}/jobs`, { inputs: { data: { type: 'uri_folder', path: ds(prefix) } } }, { 'azureml-model-deployment': deployment });
    if (res.status !== 202) throw new Error(`invoke ${deployment}: ${res.status} ${JSON.stringify(res.body)}`);
    return outcomeOf(await waitForJob(api, res.body.id as string));
  };
  // One after the other: the two jobs would only compete for the same two cores.
  const whole = await run('whole');
  const split = await run('split');
  expect(whole.job.deployment).toBe('whole');
  expect(split.job.deployment).toBe('split');
  return { whole, split };
}

/** An errors.jsonl line without its mini-batch, which differs when split adds items before it. */
const failure = ({ file, rows, reason }: Outcome['errors'][number]): Json => ({ file, ...(rows ? { rows } : {}), reason });

/** Asserts that a header-only file is one failed item, in the counts, errors.jsonl, the report and the log. */
function expectHeaderOnlyReported(outcome: Outcome, file: string): void {
  const lines = outcome.errors.filter((e) => e.file === file);
  expect(lines).toEqual([{ mini_batch: expect.any(Number), file, reason: NO_ROWS }]);
  const index = lines[0]?.mini_batch as number;
  expect(outcome.report.get(index)).toEqual({ items: 1, succeeded: 0, failed: 1, status: 'completed' });
  expect(outcome.log).toMatch(new RegExp(`WARNING \\[mini-batch ${index} attempt 1\\] item failed: ${file.replace('.', '\\.')}: ${NO_ROWS.replace(/[()]/g, '\\$&')}\\n`));
  expect(outcome.log).toContain(`[mini-batch ${index} attempt 1] completed: 0/1 item(s) succeeded`);
  expect(outcome.job.counts.items.failed).toBeGreaterThanOrEqual(1);
}

describe('split by rows reads the same records as reading whole files', () => {
  it('blank lines, .ndjson, CRLF JSON Lines, \\r\\r\\n CSV and a header-only CSV: same predictions and failures either way', async () => {
    const gaps = BIRDS.slice(0, 4);
    const files: Record<string, string> = {
      // 1a: records separated by blank lines, ending in a blank line.
      'gaps.csv': `${HEADER}\n\n${gaps.map(csvLine).join('\n\n')}\n\n`,
      // 1b: JSON Lines under its other name.
      'b.ndjson': `${BIRDS.slice(0, 3).map(jsonLine).join('\n')}\n`,
      'crlf.jsonl': `${BIRDS.slice(3, 6).map(jsonLine).join('\r\n')}\r\n`,
      'crcrlf.csv': `${HEADER}\r\r\n${BIRDS.slice(1, 4).map(csvLine).join('\r\r\n')}\r\r\n`,
      // 1c: a header and nothing else.
      'header-only.csv': `${HEADER}\n`,
    };
    const { whole, split } = await scoreBothWays(files, 2);

    const expected = await expectedLines([
      ['b.ndjson', BIRDS.slice(0, 3)],
      ['crcrlf.csv', BIRDS.slice(1, 4)],
      ['crlf.jsonl', BIRDS.slice(3, 6)],
      ['gaps.csv', gaps],
    ]);
    expect(new Set(expected.map((l) => l.split(',')[1])).size).toBeGreaterThan(1);
    expect(whole.predictions).toEqual(expected);
    expect(split.predictions).toEqual(expected);

    // Same failures and reasons; the header-only file is counted, reported and logged both ways.
    expect(whole.errors.map(failure)).toEqual([{ file: 'header-only.csv', reason: NO_ROWS }]);
    expect(split.errors.map(failure)).toEqual(whole.errors.map(failure));
    expect(whole.job.status).toBe('Completed');
    expect(split.job.status).toBe('Completed');
    expect(whole.job.counts.items).toEqual({ total: 5, succeeded: 4, failed: 1 });
    // Two ranges for each file with records (3 or 4 rows, max_rows 2), the header-only file whole.
    expect(split.job.counts.items).toEqual({ total: 9, succeeded: 8, failed: 1 });
    expect(split.job.counts.mini_batches).toEqual({ total: 9, succeeded: 9, failed: 0, retried: 0 });
    for (const outcome of [whole, split]) {
      expectHeaderOnlyReported(outcome, 'header-only.csv');
      expect(outcome.log).not.toContain('unsupported');
    }
  });

  it('a folder holding only a header-only CSV fails the job for that file, not for an empty input, either way', async () => {
    const { whole, split } = await scoreBothWays({ 'header-only.csv': `${HEADER}\r\n` }, 2);
    for (const outcome of [whole, split]) {
      expect(outcome.job.status).toBe('Failed');
      expect(outcome.job.error.code).toBe('no_item_succeeded');
      expect(outcome.job.counts).toEqual({ mini_batches: { total: 1, succeeded: 1, failed: 0, retried: 0 }, items: { total: 1, succeeded: 0, failed: 1 } });
      expect(outcome.errors).toEqual([{ mini_batch: 0, file: 'header-only.csv', reason: NO_ROWS }]);
      expect(outcome.report.size).toBe(1);
      expectHeaderOnlyReported(outcome, 'header-only.csv');
    }
    expect(split.errors).toEqual(whole.errors);
  });

  it('a failed row range is named by file and rows in errors.jsonl, its bad row by the same number as without split', async () => {
    const bad = BIRDS.map((b, i) => (i === 3 ? csvLine(b).replace(',50,', ',abc,') : csvLine(b)));
    const files = { 'bad.csv': `${HEADER}\n${bad.join('\n')}\n`, 'ok.csv': `${HEADER}\n${BIRDS.slice(4).map(csvLine).join('\n')}\n` };
    const { whole, split } = await scoreBothWays(files, 2);
    const reason = 'column "bill_length_mm", row 3: "abc" is not a number (the input is float32)';
    expect(whole.errors).toEqual([{ mini_batch: 0, file: 'bad.csv', reason }]);
    expect(split.errors).toEqual([{ mini_batch: 1, file: 'bad.csv', rows: { start: 2, end: 4 }, reason }]);
    expect(split.log).toContain(`item failed: bad.csv (rows 2-3): ${reason}`);
    expect(whole.log).toContain(`item failed: bad.csv: ${reason}`);
    // Without split the whole file fails; with it, only the range holding the bad row.
    expect(whole.predictions).toEqual(await expectedLines([['ok.csv', BIRDS.slice(4)]]));
    const good = [0, 1, 4, 5];
    expect(split.predictions).toEqual(
      await expectedLines([
        ['bad.csv', good.map((i) => BIRDS[i] as Penguin), good],
        ['ok.csv', BIRDS.slice(4)],
      ]),
    );
  });

  it('a missing, null, empty, NA or quoted value and a duplicate header column: same reasons, rows and counts with split as without', async () => {
    const record = (b: Penguin): Record<string, unknown> => JSON.parse(jsonLine(b)) as Record<string, unknown>;
    const jsonl = (records: Record<string, unknown>[]): string => `${records.map((r) => JSON.stringify(r)).join('\n')}\n`;
    const { bill_depth_mm: _absent, ...noDepth } = record(BIRDS[1] as Penguin);
    const files: Record<string, string> = {
      // Row 1 lacks a model input's key: scored as NaN before when whole, "column missing" when split.
      'absent.jsonl': jsonl([record(BIRDS[0] as Penguin), noDepth, record(BIRDS[2] as Penguin)]),
      // The header is the schema: a name given twice fails every range of the file.
      'dupe.csv': `${HEADER},flipper_length_mm\n${BIRDS.slice(0, 2)
        .map((b) => `${csvLine(b)},999`)
        .join('\n')}\n`,
      'empty.csv': `${HEADER}\n${csvLine(BIRDS[0] as Penguin)}\nBiscoe,50.0,,,5700,male\n${csvLine(BIRDS[2] as Penguin)}\n`,
      'na.csv': `${HEADER}\nDream,NA,16.7,178,3250,female\n${csvLine(BIRDS[1] as Penguin)}\n`,
      'null.jsonl': jsonl([record(BIRDS[3] as Penguin), { ...record(BIRDS[4] as Penguin), bill_depth_mm: null }, record(BIRDS[5] as Penguin)]),
      'ok.csv': `${HEADER}\n${BIRDS.slice(4).map(csvLine).join('\n')}\n`,
      // A JSON string is not a number, however it reads (CSV text is decoded, JSON values keep their type).
      'string.jsonl': jsonl([{ ...record(BIRDS[3] as Penguin), flipper_length_mm: '218' }, record(BIRDS[4] as Penguin)]),
    };
    const { whole, split } = await scoreBothWays(files, 1);
    const noValue = (column: string, row: number, why = ''): string => `column "${column}", row ${row} has no value (${why}the model's input ${column} is float32)`;
    const dupe = 'could not read the file: the header names column "flipper_length_mm" twice (fields 4 and 7); every column name must be unique';
    const bad: [string, number, string][] = [
      ['absent.jsonl', 1, noValue('bill_depth_mm', 1, 'the row has no such key; ')],
      ['empty.csv', 1, noValue('bill_depth_mm', 1)],
      ['na.csv', 0, 'column "bill_length_mm", row 0: "NA" is not a number (the input is float32)'],
      ['null.jsonl', 1, noValue('bill_depth_mm', 1)],
      ['string.jsonl', 0, `column "flipper_length_mm", row 0: "218" is a string, not a number (the input is float32); JSON Lines and Parquet values must have the input's type (write it without quotes)`],
    ];
    const byFile = (a: Json, b: Json): number => String(a.file).localeCompare(String(b.file)) || (a.rows?.start ?? 0) - (b.rows?.start ?? 0);
    expect(whole.errors.map(failure).sort(byFile)).toEqual([...bad.map(([file, , reason]) => ({ file, reason })), { file: 'dupe.csv', reason: dupe }].sort(byFile));
    expect(split.errors.map(failure).sort(byFile)).toEqual(
      [...bad.map(([file, row, reason]) => ({ file, rows: { start: row, end: row + 1 }, reason })), ...[0, 1].map((row) => ({ file: 'dupe.csv', rows: { start: row, end: row + 1 }, reason: dupe }))].sort(byFile),
    );
    // Whole, every file but ok.csv fails; split, only the bad rows (and the duplicate-header file) do.
    expect(whole.predictions).toEqual(await expectedLines([['ok.csv', BIRDS.slice(4)]]));
    expect(split.predictions).toEqual(
      await expectedLines([
        ['absent.jsonl', [BIRDS[0], BIRDS[2]] as Penguin[], [0, 2]],
        ['empty.csv', [BIRDS[0], BIRDS[2]] as Penguin[], [0, 2]],
        ['na.csv', [BIRDS[1]] as Penguin[], [1]],
        ['null.jsonl', [BIRDS[3], BIRDS[5]] as Penguin[], [0, 2]],
        ['ok.csv', BIRDS.slice(4)],
        ['string.jsonl', [BIRDS[4]] as Penguin[], [1]],
      ]),
    );
    expect(whole.job.status).toBe('Completed');
    expect(split.job.status).toBe('Completed');
    expect(whole.job.counts.items).toEqual({ total: 7, succeeded: 1, failed: 6 });
    // One item per row: 3 + 2 + 3 + 2 + 3 + 2 + 2.
    expect(split.job.counts.items).toEqual({ total: 17, succeeded: 10, failed: 7 });
  });

  it('a scoring script that fails row ranges: errors.jsonl names each range', async () => {
    // count-lines.js returns nothing for files named *bad* and throws on *boom*.
    const csv = (n: number): string => `${HEADER}\n${BIRDS.slice(0, n).map(csvLine).join('\n')}\n`;
    const { whole, split } = await scoreBothWays({ 'bad.csv': csv(4), 'boom.csv': csv(3), 'ok.csv': csv(1) }, 2, { script: 'count-lines.js' });
    expect(whole.errors.map(failure)).toEqual([
      { file: 'bad.csv', reason: 'run() returned no result for this file' },
      { file: 'boom.csv', reason: 'run() failed: cannot score boom.csv' },
    ]);
    expect(split.job.status).toBe('Completed');
    expect(split.job.counts.items).toEqual({ total: 5, succeeded: 1, failed: 4 });
    expect(split.errors.map(failure)).toEqual([
      { file: 'bad.csv', rows: { start: 0, end: 2 }, reason: 'run() returned no result for this file' },
      { file: 'bad.csv', rows: { start: 2, end: 4 }, reason: 'run() returned no result for this file' },
      { file: 'boom.csv', rows: { start: 0, end: 2 }, reason: 'run() failed: cannot score boom.csv' },
      { file: 'boom.csv', rows: { start: 2, end: 3 }, reason: 'run() failed: cannot score boom.csv' },
    ]);
  });
});
