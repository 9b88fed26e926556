/**
 * The scoring runtime as the app runs it: the compiled module from dist/ (build first with
 * `npx tsc -p tsconfig.json`), real piscina worker threads, real onnxruntime.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type * as RuntimeModule from '../../../shared/scoring/runtime.js';
import type { ScoreOutcome, ScoreResult, ScorerSpec, ScoringItem, ScoringRuntime } from '../../../shared/scoring/types.js';
import {
  FIXTURES,
  PENGUIN_MODEL,
  ROOT,
  penguinCsv,
  penguinJsonl,
  penguinRows,
  pngFile,
  referenceLabels,
  writeImageModel,
  writePenguinParquet,
} from '../../fixtures/scoring/models.js';

async function loadRuntime(): Promise<typeof RuntimeModule> {
  const src = join(ROOT, 'shared', 'scoring');
  const dist = join(ROOT, 'dist', 'shared', 'scoring');
  for (const file of readdirSync(src).filter((f) => f.endsWith('.ts'))) {
    const js = join(dist, file.replace(/\.ts$/, '.js'));
    if (!existsSync(js) || statSync(js).mtimeMs < statSync(join(src, file)).mtimeMs) {
      throw new Error(`${js} is missing or older than its source: run \`npx tsc -p tsconfig.json\` before these tests`);
    }
  }
  return (await import(pathToFileURL(join(dist, 'runtime.js')).href)) as typeof RuntimeModule;
}

const work = mkdtempSync(join(tmpdir(), 'scoring-runtime-'));
let runtime: ScoringRuntime;
let keys = 0;

beforeAll(async () => {
  runtime = (await loadRuntime()).createScoringRuntime();
});
afterAll(async () => {
  await runtime?.close();
  rmSync(work, { recursive: true, force: true });
});

function scriptSpec(script: string, overrides: Partial<ScorerSpec> = {}): ScorerSpec {
  const key = `job-${++keys}`;
  return {
    key,
    kind: 'script',
    modelDir: work,
    scriptPath: join(FIXTURES, script),
    outputDir: join(work, key, 'outputs'),
    environment: {},
    loggingLevel: 'info',
    maxConcurrency: 1,
    ...overrides,
  };
}

/** Files for one mini-batch, each in its own folder like the scoring activity downloads them. */
function batch(names: string[], content: (name: string) => string | Buffer = (n) => `content of ${n}\n`): ScoringItem[] {
  const dir = join(work, 'inputs', String(++keys));
  return names.map((name, i) => {
    mkdirSync(join(dir, String(i)), { recursive: true });
    const localPath = join(dir, String(i), name);
    writeFileSync(localPath, content(name));
    return { name, localPath };
  });
}

function completed(outcome: ScoreOutcome): ScoreResult {
  if (outcome.status !== 'completed') throw new Error(`expected completed, got ${JSON.stringify(outcome)}`);
  return outcome.result;
}

function logsOf(outcome: ScoreOutcome): ScoreResult['logs'] {
  return outcome.status === 'completed' ? outcome.result.logs : outcome.logs;
}

const T = 10_000;

describe('the scoring runtime with the built-in ONNX runner', () => {
  it('scores CSV, JSONL and Parquet ranges on worker threads exactly as onnxruntime does, byte-identically each time', async () => {
    const a = penguinRows(6, 11);
    const c = penguinRows(3, 12);
    const p = penguinRows(20, 13);
    const items = batch(['a.csv', 'c.jsonl', 'notes.txt'], (n) => (n === 'a.csv' ? penguinCsv(a) : n === 'c.jsonl' ? penguinJsonl(c) : 'x'));
    const parquet = join(work, 'p.parquet');
    writePenguinParquet(parquet, p, 7);
    items.push({ name: 'p.parquet', localPath: parquet, rows: { start: 10, end: 20 }, rowOffset: 10 });
    const spec: ScorerSpec = { ...scriptSpec('unused.js'), kind: 'onnx', scriptPath: undefined, modelDir: join(ROOT, 'scripts', 'demo', 'model'), modelFile: 'penguins.onnx', maxConcurrency: 2 };

    const first = completed(await runtime.score(spec, { items, timeoutMs: T }));
    const expected = [
      ...(await referenceLabels(a)).map((l, i) => `${i},${l},a.csv`),
      ...(await referenceLabels(c)).map((l, i) => `${i},${l},c.jsonl`),
      ...(await referenceLabels(p.slice(10))).map((l, i) => `${10 + i},${l},p.parquet`),
    ];
    expect(first.data.toString()).toBe(`${expected.join('\n')}\n`);
    expect(first.columns).toEqual(['row', 'prediction', 'file_name']);
    expect(first.succeeded).toBe(3);
    expect(first.failed).toEqual([{ file: 'notes.txt', reason: 'unsupported file type .txt (supported: .csv, .jsonl, .ndjson, .parquet, .png, .jpg, .jpeg)' }]);
    expect(first.logs.map((l) => l.message).join('\n')).toContain('loaded the model: inputs: bill_length_mm float32 [N,1]');

    const again = completed(await runtime.score(spec, { items, timeoutMs: T }));
    expect(again.data.toString()).toBe(first.data.toString());
  });

  it('reads each item as it lands while the others still download, from memory or from disk, and fails what never arrived', async () => {
    const a = penguinRows(5, 31);
    const b = penguinRows(4, 32);
    const dir = join(work, 'streamed', String(++keys));
    mkdirSync(dir, { recursive: true });
    const items: ScoringItem[] = [{ name: 'a.csv', localPath: join(dir, 'a.csv') }, { name: 'b.csv', localPath: join(dir, 'b.csv') }];
    const spec: ScorerSpec = { ...scriptSpec('unused.js'), kind: 'onnx', scriptPath: undefined, modelDir: join(ROOT, 'scripts', 'demo', 'model'), modelFile: 'penguins.onnx' };
    // b lands first, in memory; a a little later, as a file on disk. Nothing exists when scoring starts.
    const landB = new Promise<Uint8Array | undefined>((resolve) => setTimeout(() => resolve(Buffer.from(penguinCsv(b))), 30));
    const landA = landB.then(
      () =>
        new Promise<Uint8Array | undefined>((resolve) =>
          setTimeout(() => {
            writeFileSync(join(dir, 'a.csv'), penguinCsv(a));
            resolve(undefined);
          }, 30),
        ),
    );
    const result = completed(await runtime.score(spec, { items, ready: [landA, landB], timeoutMs: T }));
    const expected = [...(await referenceLabels(a)).map((l, i) => `${i},${l},a.csv`), ...(await referenceLabels(b)).map((l, i) => `${i},${l},b.csv`)];
    expect(result.data.toString()).toBe(`${expected.join('\n')}\n`);
    expect(result.succeeded).toBe(2);
    // The built-in runner read b from memory: it never needed a file.
    expect(existsSync(join(dir, 'b.csv'))).toBe(false);

    // A download that fails stops the mini-batch; the caller reports it.
    const broken = await runtime.score(spec, {
      items: [{ name: 'c.csv', localPath: join(dir, 'c.csv') }, { name: 'gone.csv', localPath: join(dir, 'gone.csv') }],
      ready: [Promise.resolve(Buffer.from(penguinCsv(a))), Promise.reject(new Error('404 on gone.csv'))],
      timeoutMs: T,
    });
    expect(completed(broken).failed).toEqual([{ file: 'gone.csv', reason: expect.stringContaining('could not be downloaded: 404 on gone.csv') }]);
  });

  it('scores images', async () => {
    const modelDir = join(work, 'image-model');
    mkdirSync(modelDir);
    writeImageModel(modelDir);
    const items = batch(['grey.png']);
    pngFile(items[0]!.localPath, 3, 3, () => [51, 51, 51]);
    // No modelFile: the only .onnx file in the model folder is used.
    const spec: ScorerSpec = { ...scriptSpec('unused.js'), kind: 'onnx', scriptPath: undefined, modelDir };
    const result = completed(await runtime.score(spec, { items, timeoutMs: T }));
    expect(result.data.toString()).toBe(',0.2,grey.png\n');
  });

  it('fails the mini-batch without retry when the model cannot be loaded', async () => {
    const spec: ScorerSpec = { ...scriptSpec('unused.js'), kind: 'onnx', scriptPath: undefined, modelDir: work, modelFile: 'nope.onnx' };
    const outcome = await runtime.score(spec, { items: batch(['a.csv']), timeoutMs: T });
    expect(outcome).toMatchObject({ status: 'failed', retryable: false, error: expect.stringMatching(/^could not load the ONNX model nope\.onnx/) });
  });

  it('gives an ONNX model with a script the session and onnxruntime in its context', async () => {
    const rows = penguinRows(4, 21);
    const spec: ScorerSpec = { ...scriptSpec('onnx-script.js'), kind: 'onnx', modelDir: join(ROOT, 'scripts', 'demo', 'model'), modelFile: 'penguins.onnx' };
    const result = completed(await runtime.score(spec, { items: batch(['x.csv', 'y.csv'], () => penguinCsv(rows)), timeoutMs: T }));
    expect(result.columns).toEqual(['file_name', 'row', 'species', 'p']);
    const labels = await referenceLabels(rows);
    const lines = result.data.toString().trim().split('\n').map((l) => l.split(','));
    expect(lines.map((l) => l.slice(0, 3))).toEqual([...labels.map((l, i) => ['x.csv', String(i), l]), ...labels.map((l, i) => ['y.csv', String(i), l])]);
    expect(lines.every((l) => Number(l[3]) > 0.33 && Number(l[3]) <= 1)).toBe(true);
    expect(result.succeeded).toBe(2);
    expect(result.logs.map((l) => l.message)).toContain('model inputs: bill_length_mm,bill_depth_mm,flipper_length_mm,body_mass_g');
    expect(PENGUIN_MODEL).toContain('penguins.onnx');
  });
});

describe('the scoring runtime with custom scripts', () => {
  it('initialises each worker once, with the environment, and turns objects into columns', async () => {
    const spec = scriptSpec('behaviours.js', { maxConcurrency: 2, environment: { GREETING: 'hi' } });
    const outcomes = await Promise.all(Array.from({ length: 8 }, (_, i) => runtime.score(spec, { items: batch([`f${i}a.txt`, `f${i}b.txt`]), timeoutMs: T })));
    const results = outcomes.map(completed);
    const inits = results.flatMap((r) => r.logs).filter((l) => l.message.startsWith('init #'));
    expect(inits).toHaveLength(2);
    // Worker threads have their own copy of process.env.
    expect(process.env['GREETING']).not.toBe('hi');
    expect(inits.every((l) => l.message.startsWith('init #1 ') && l.message.endsWith('GREETING=hi context=hi'))).toBe(true);
    const workers = new Set(results.flatMap((r) => r.data.toString().trim().split('\n').map((line) => line.split(',')[2])));
    expect(workers.size).toBe(2);
    expect(results[0]!.columns).toEqual(['file_name', 'chars', 'worker', 'greeting']);
    expect(results[3]!.data.toString()).toMatch(/^f3a\.txt,19,\d+,hi\nf3b\.txt,19,\d+,hi\n$/);
    expect(results.every((r) => r.succeeded === 2 && r.failed.length === 0)).toBe(true);
    // Later runs on a worker do not initialise it again.
    const more = completed(await runtime.score(spec, { items: batch(['g.txt']), timeoutMs: T }));
    expect(more.logs.some((l) => l.message.startsWith('init #'))).toBe(false);
  });

  it("settles the job's columns in the worker when the columns it was given settle them, and asks the host otherwise", async () => {
    const spec = scriptSpec('behaviours.js');
    const asked: string[][] = [];
    const columns = (proposal: { proposed: string[]; seen: string[] }): Promise<{ columns: string[] }> => {
      asked.push(proposal.seen);
      return Promise.resolve({ columns: ['file_name', 'chars'] });
    };
    // Known and covering every key: no round trip, and the rows are in the known order.
    const known = completed(await runtime.score(spec, { items: batch(['k1.txt']), timeoutMs: T, columns, knownColumns: { columns: ['chars', 'file_name', 'worker', 'greeting'], dropped: [] } }));
    expect(asked).toEqual([]);
    expect(known.columns).toEqual(['chars', 'file_name', 'worker', 'greeting']);
    expect(known.data.toString()).toMatch(/^18,k1\.txt,\d+,\n$/);
    // Keys dropped before count as known: still no round trip.
    const dropped = completed(await runtime.score(spec, { items: batch(['k2.txt']), timeoutMs: T, columns, knownColumns: { columns: ['file_name', 'chars'], dropped: ['worker', 'greeting'] } }));
    expect(asked).toEqual([]);
    expect(dropped.data.toString()).toBe('k2.txt,18\n');
    // A key the given columns do not know (a stale copy): the host decides.
    const stale = completed(await runtime.score(spec, { items: batch(['k3.txt']), timeoutMs: T, columns, knownColumns: { columns: ['file_name', 'chars'], dropped: ['worker'] } }));
    expect(asked).toEqual([['file_name', 'chars', 'worker', 'greeting']]);
    expect(stale.data.toString()).toBe('k3.txt,18\n');
    // Dropped keys are the job record's to report (finalize warns once): a mini-batch's log never does.
    expect([...dropped.logs, ...stale.logs].some((l) => l.message.includes('not among the job'))).toBe(false);
  });

  it('calls run() only when every file of a streamed mini-batch is in place, writing what came in memory, and not at all if one never comes', async () => {
    const spec = scriptSpec('behaviours.js');
    const dir = join(work, 'streamed', String(++keys));
    mkdirSync(dir, { recursive: true });
    const items = ['late-1.txt', 'late-2.txt'].map((name) => ({ name, localPath: join(dir, name) }));
    // late-1 arrives in memory (the worker writes it), late-2 as a file the caller wrote.
    const ready = [
      new Promise<Uint8Array | undefined>((resolve) => setTimeout(() => resolve(Buffer.from('late file 0\n')), 40)),
      new Promise<Uint8Array | undefined>((resolve) =>
        setTimeout(() => {
          writeFileSync(join(dir, 'late-2.txt'), 'late file 1\n');
          resolve(undefined);
        }, 20),
      ),
    ];
    const result = completed(await runtime.score(spec, { items, ready, timeoutMs: T }));
    // behaviours.js reads each file: both were complete when run() began.
    expect(result.data.toString()).toMatch(/^late-1\.txt,12,\d+,\nlate-2\.txt,12,\d+,\n$/);
    // The worker removes what it wrote; the caller's own file is the caller's to remove.
    expect(existsSync(join(dir, 'late-1.txt'))).toBe(false);
    expect(existsSync(join(dir, 'late-2.txt'))).toBe(true);

    const failed = await runtime.score(spec, { items, ready: [Promise.resolve(undefined), Promise.reject(new Error('connection reset'))], timeoutMs: T });
    expect(failed).toMatchObject({ status: 'failed', error: expect.stringContaining('could not be downloaded: connection reset') });
    expect(logsOf(failed).some((l) => l.message.startsWith('run() failed'))).toBe(false);
  });

  it('makes the folders for the files it writes and removes them with the files, leaving folders that hold anything else', async () => {
    const spec = scriptSpec('behaviours.js');
    const dir = join(work, 'made-by-worker', String(++keys));
    // Nothing exists yet: same-named files from two folders get a folder each below the mini-batch's.
    const items = [
      { name: 'x/same.txt', localPath: join(dir, '0', 'same.txt') },
      { name: 'y/same.txt', localPath: join(dir, '1', 'same.txt') },
      { name: 'own.txt', localPath: join(dir, 'own.txt') },
    ];
    const result = completed(await runtime.score(spec, { items, ready: items.map((_, n) => Promise.resolve(Buffer.from(`file ${n}\n`))), timeoutMs: T }));
    expect(result.succeeded).toBe(3);
    expect(existsSync(dir)).toBe(false);

    // A file the caller put there keeps its folder (and the mini-batch's) in place.
    mkdirSync(join(dir, '1'), { recursive: true });
    writeFileSync(join(dir, '1', 'same.txt'), 'from the caller\n');
    const mixed = completed(await runtime.score(spec, { items, ready: [Promise.resolve(Buffer.from('a\n')), Promise.resolve(undefined), Promise.resolve(Buffer.from('b\n'))], timeoutMs: T }));
    expect(mixed.succeeded).toBe(3);
    expect(existsSync(join(dir, '0'))).toBe(false);
    expect(existsSync(join(dir, 'own.txt'))).toBe(false);
    expect(readFileSync(join(dir, '1', 'same.txt'), 'utf8')).toBe('from the caller\n');
  });

  it('names the files a script skipped, and counts a shortfall when results do not name files', async () => {
    const named = completed(await runtime.score(scriptSpec('behaviours.js'), { items: batch(['one.txt', 'skip-me.txt', 'two.txt']), timeoutMs: T }));
    expect(named.succeeded).toBe(2);
    expect(named.failed).toEqual([{ file: 'skip-me.txt', reason: 'run() returned no result for this file' }]);

    const counted = completed(await runtime.score(scriptSpec('scalars.js'), { items: batch(['a.txt', 'skip1.txt', 'b.txt', 'skip2.txt', 'c.txt']), timeoutMs: T }));
    expect(counted.columns).toEqual(['prediction']);
    expect(counted.data.toString()).toBe('"first, ""quoted"" a.txt"\n1.5\n3\n');
    expect(counted.succeeded).toBe(3);
    expect(counted.failed).toEqual([{ file: null, reason: 'run() returned 3 results for 5 items', count: 2 }]);
  });

  it('fails a mini-batch when run() throws: retryable unless the error says retryable = false', async () => {
    const spec = scriptSpec('behaviours.js');
    const boom = await runtime.score(spec, { items: batch(['ok.txt', 'boom.txt']), timeoutMs: T });
    expect(boom).toMatchObject({ status: 'failed', error: 'cannot score boom.txt', retryable: true });
    expect(logsOf(boom).find((l) => l.level === 'error')?.message).toMatch(/run\(\) failed: Error: cannot score boom\.txt\n\s+at run/);
    const fatal = await runtime.score(spec, { items: batch(['fatal.txt']), timeoutMs: T });
    expect(fatal).toMatchObject({ status: 'failed', error: 'fatal.txt can never be scored', retryable: false });
    // The worker is still fine.
    expect(completed(await runtime.score(spec, { items: batch(['fine.txt']), timeoutMs: T })).succeeded).toBe(1);
  });

  it('fails every run of a worker whose init failed, without retry and without trying init again', async () => {
    const spec = scriptSpec('behaviours.js', { environment: { FAIL_INIT: 'yes' } });
    const first = await runtime.score(spec, { items: batch(['a.txt']), timeoutMs: T });
    expect(first).toMatchObject({ status: 'failed', retryable: false, error: 'init() failed: init exploded (yes)' });
    expect(logsOf(first).some((l) => l.level === 'error' && l.message.includes('init exploded'))).toBe(true);
    const second = await runtime.score(spec, { items: batch(['b.txt']), timeoutMs: T });
    expect(second).toMatchObject({ status: 'failed', retryable: false, error: 'init() failed: init exploded (yes)' });
    expect(logsOf(second)).toEqual([]);
  });

  it('reports scripts that cannot be used: missing, without run(), returning a non-list, killing their worker', async () => {
    const missing = await runtime.score(scriptSpec('does-not-exist.js'), { items: batch(['a.txt']), timeoutMs: T });
    expect(missing).toMatchObject({ status: 'failed', retryable: false, error: expect.stringMatching(/^could not load the scoring script does-not-exist\.js/) });
    const broken = await runtime.score(scriptSpec('broken.js'), { items: batch(['a.txt']), timeoutMs: T });
    expect(broken).toMatchObject({ status: 'failed', retryable: false, error: 'the scoring script broken.js does not export a run(miniBatch, context) function' });
    const object = await runtime.score(scriptSpec('returns-object.js'), { items: batch(['a.txt']), timeoutMs: T });
    expect(object).toMatchObject({ status: 'failed', retryable: false, error: 'run() must return an array (one element per succeeded file), it returned an object' });
    const exits = await runtime.score(scriptSpec('exits.js'), { items: batch(['a.txt']), timeoutMs: T });
    expect(exits).toMatchObject({ status: 'failed', retryable: true, error: expect.stringMatching(/^the scoring worker stopped/) });
  });

  it('survives a worker that dies between mini-batches and says so in the next logs', async () => {
    const spec = scriptSpec('late-throw.js');
    const first = completed(await runtime.score(spec, { items: batch(['a.txt']), timeoutMs: T }));
    expect(first.data.toString()).toBe('done\n');
    await new Promise((r) => setTimeout(r, 300));
    const second = completed(await runtime.score(spec, { items: batch(['b.txt']), timeoutMs: T }));
    expect(second.logs[0]).toMatchObject({ level: 'error', message: expect.stringMatching(/^a scoring worker stopped between mini-batches: Error: late boom/) });
    expect(second.logs.some((l) => l.message.startsWith('late-throw init #1'))).toBe(true);
  });

  it('reports the files a script wrote to its own output folder, including those written by init', async () => {
    const spec = scriptSpec('behaviours.js', { environment: { INIT_WRITES: '1' } });
    const first = completed(await runtime.score(spec, { items: batch(['write1.txt', 'plain.txt']), timeoutMs: T }));
    const workerDir = first.producedFiles[0]?.localPath.replace(/\/[^/]+$/, '') ?? '';
    expect(workerDir).toMatch(new RegExp(`^${spec.outputDir}/worker-\\d+$`));
    expect(first.producedFiles).toEqual([
      { name: 'from-init.txt', localPath: join(workerDir, 'from-init.txt') },
      { name: 'write1.txt.out', localPath: join(workerDir, 'write1.txt.out') },
    ]);
    const second = completed(await runtime.score(spec, { items: batch(['write2.txt']), timeoutMs: T }));
    expect(second.producedFiles).toEqual([{ name: 'write2.txt.out', localPath: join(workerDir, 'write2.txt.out') }]);
    const none = completed(await runtime.score(spec, { items: batch(['plain.txt']), timeoutMs: T }));
    expect(none.producedFiles).toEqual([]);
  });

  it('keeps logs at or above the logging level, console output included, with ISO times', async () => {
    const warning = completed(await runtime.score(scriptSpec('behaviours.js', { loggingLevel: 'warning' }), { items: batch(['chatty.txt']), timeoutMs: T }));
    expect(warning.logs.map((l) => [l.level, l.message])).toEqual([
      ['warning', 'warning about chatty.txt'],
      ['error', 'error about chatty.txt'],
      ['critical', 'critical about chatty.txt'],
      ['warning', 'console.warn about chatty.txt'],
      ['error', 'console.error about chatty.txt'],
    ]);
    expect(warning.logs.every((l) => new Date(l.time).toISOString() === l.time)).toBe(true);

    const debug = completed(await runtime.score(scriptSpec('behaviours.js', { loggingLevel: 'debug' }), { items: batch(['chatty.txt']), timeoutMs: T }));
    const messages = debug.logs.map((l) => `${l.level} ${l.message}`);
    expect(messages).toEqual(
      expect.arrayContaining(['debug init debug detail', 'debug debug about chatty.txt', 'info info about chatty.txt', 'info console.log about chatty.txt', 'debug console.debug about chatty.txt']),
    );
  });
});

describe('the scoring runtime timeouts', () => {
  it('stops a run stuck in a synchronous loop, then serves the next run on a fresh, re-initialised worker', async () => {
    const spec = scriptSpec('hang.js');
    const ok = completed(await runtime.score(spec, { items: batch(['fine.txt']), timeoutMs: 1000 }));
    const firstInit = ok.logs.find((l) => l.message.startsWith('hang.js init'))?.message;
    expect(firstInit).toMatch(/^hang\.js init #1 on worker \d+$/);

    const started = performance.now();
    const hung = await runtime.score(spec, { items: batch(['hang.txt']), timeoutMs: 1000 });
    const took = performance.now() - started;
    expect(hung).toMatchObject({ status: 'timeout', error: 'mini-batch exceeded the 1 s timeout' });
    expect(took).toBeGreaterThanOrEqual(950);
    expect(took).toBeLessThan(3000);
    // Logs made before the run got stuck are kept.
    expect(logsOf(hung).map((l) => l.message)).toEqual([expect.stringMatching(/^run on worker \d+: hang\.txt$/)]);

    const after = completed(await runtime.score(spec, { items: batch(['fine2.txt']), timeoutMs: 1000 }));
    const secondInit = after.logs.find((l) => l.message.startsWith('hang.js init'))?.message;
    expect(secondInit).toMatch(/^hang\.js init #1 on worker \d+$/);
    expect(secondInit).not.toBe(firstInit);
    expect(after.data.toString()).toBe('ok\n');
  });

  it('stops an init that never finishes', async () => {
    const outcome = await runtime.score(scriptSpec('slow-init.js'), { items: batch(['a.txt']), timeoutMs: 800 });
    expect(outcome).toMatchObject({ status: 'timeout', error: 'init() exceeded the 0.8 s timeout' });
  });

  it('does not count time spent waiting for a busy worker', async () => {
    const spec = scriptSpec('sleepy.js');
    // Two 700 ms runs on one worker: each is within the 1 s timeout, though the second ends 1.4 s after it was asked for.
    const outcomes = await Promise.all([runtime.score(spec, { items: batch(['x.txt']), timeoutMs: 1000 }), runtime.score(spec, { items: batch(['y.txt']), timeoutMs: 1000 })]);
    expect(outcomes.map((o) => o.status)).toEqual(['completed', 'completed']);
  });
});

describe('releasing scorers', () => {
  it('starts over after release: a new pool initialises again', async () => {
    const spec = scriptSpec('behaviours.js');
    const first = completed(await runtime.score(spec, { items: batch(['a.txt']), timeoutMs: T }));
    expect(first.logs.some((l) => l.message.startsWith('init #1'))).toBe(true);
    await runtime.release(spec.key);
    await runtime.release(spec.key);
    const second = completed(await runtime.score(spec, { items: batch(['b.txt']), timeoutMs: T }));
    expect(second.logs.some((l) => l.message.startsWith('init #1'))).toBe(true);
  });

  it('ends runs on a released pool as retryable failures', async () => {
    const spec = scriptSpec('hang.js');
    const running = runtime.score(spec, { items: batch(['hang.txt']), timeoutMs: 20_000 });
    await new Promise((r) => setTimeout(r, 300));
    await runtime.release(spec.key);
    expect(await running).toMatchObject({ status: 'failed', retryable: true, error: 'the scorer was released while this mini-batch ran' });
  });
});

describe('warming up and idle pools', () => {
  it('initialises workers before the first mini-batch, whose logs then carry what init logged', async () => {
    const spec = scriptSpec('behaviours.js', { maxConcurrency: 2 });
    await runtime.warm(spec, { timeoutMs: T });
    const warmedBy = Date.now();
    const first = completed(await runtime.score(spec, { items: batch(['a.txt']), timeoutMs: T }));
    const inits = first.logs.filter((l) => l.message.startsWith('init #'));
    expect(inits).toHaveLength(1);
    expect(Date.parse((inits[0] as { time: string }).time)).toBeLessThanOrEqual(warmedBy);
    // Both workers are initialised: two more mini-batches at once initialise nobody.
    const more = await Promise.all([runtime.score(spec, { items: batch(['b.txt']), timeoutMs: T }), runtime.score(spec, { items: batch(['c.txt']), timeoutMs: T })]);
    const again = more.flatMap((o) => completed(o).logs).filter((l) => l.message.startsWith('init #'));
    expect(again.every((l) => Date.parse(l.time) <= warmedBy)).toBe(true);
  });

  it('stops a warm-up whose init never finishes and says so in the next mini-batch', async () => {
    const spec = scriptSpec('slow-init.js');
    const started = performance.now();
    await runtime.warm(spec, { timeoutMs: 500 });
    expect(performance.now() - started).toBeLessThan(3000);
    const outcome = await runtime.score(spec, { items: batch(['a.txt']), timeoutMs: 500 });
    expect(outcome).toMatchObject({ status: 'timeout', error: 'init() exceeded the 0.5 s timeout' });
    expect(logsOf(outcome).map((l) => l.message)).toContain('warming up a scoring worker: init() exceeded the 0.5 s timeout');
  });

  it('stops pools nobody has used for idleReleaseMs, never one that is running', async () => {
    const idle = (await loadRuntime()).createScoringRuntime({ idleReleaseMs: 100 });
    try {
      const spec = scriptSpec('sleepy.js');
      const running = idle.score(spec, { items: batch(['x.txt']), timeoutMs: T });
      await new Promise((r) => setTimeout(r, 400));
      expect(idle.pools()).toBe(1);
      expect((await running).status).toBe('completed');
      await waitUntil(() => idle.pools() === 0, 2000);
      expect(idle.pools()).toBe(0);
      // A released pool starts again on demand.
      expect((await idle.score(spec, { items: batch(['y.txt']), timeoutMs: T })).status).toBe('completed');
    } finally {
      await idle.close();
    }
  });
});

async function waitUntil(done: () => boolean, timeoutMs: number): Promise<void> {
  const until = performance.now() + timeoutMs;
  while (!done() && performance.now() < until) await new Promise((r) => setTimeout(r, 20));
}
