/**
 * The command runner with real worker threads (the worker compiled under dist/: build first with
 * `npx tsc -p tsconfig.json`) and the fixture scripts in test/fixtures/commands/.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CommandInputValue } from '../../../shared/steps/command-protocol.js';
import { type CommandRequest, type CommandResult, commandWorkerFile, runCommand } from '../../../shared/steps/command-runner.js';
import { ROOT, assertBuilt } from '../../support/compiled.js';

const FIXTURES = join(ROOT, 'test', 'fixtures', 'commands');
const work = mkdtempSync(join(tmpdir(), 'command-runner-'));
let runs = 0;

beforeAll(() => assertBuilt('shared/steps', 'shared'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** A request for a fixture script, each run with folders of its own. */
function request(entryScript: string, overrides: Partial<CommandRequest> & { outputNames?: string[] } = {}): CommandRequest {
  const dir = join(work, `run-${++runs}`);
  const { outputNames = ['out'], ...rest } = overrides;
  return {
    codeDir: FIXTURES,
    entryScript,
    inputs: {},
    outputs: Object.fromEntries(outputNames.map((name) => [name, join(dir, 'outputs', name)])),
    environment: {},
    workDir: join(dir, 'work'),
    stepName: 'step-a',
    jobId: 'job-1',
    attempt: 1,
    timeoutMs: 30_000,
    ...rest,
  };
}

function json(path: string): unknown {
  return JSON.parse(readFileSync(path, 'utf8'));
}

/** What probe.js records about its run. */
interface Probe {
  runs: number;
  globalRuns: number;
  inputs: Record<string, { type: string; value?: unknown }>;
  inputNames: string[];
  outputs: Record<string, { exists: boolean; entries: number }>;
  greetingAtLoad: string | null;
  greeting: string | null;
  environment: Record<string, string>;
  context: { stepName: string; jobId: string; attempt: number; workDir: string; workDirExists: boolean };
  loggerLevels: string[];
}

function probeOf(req: CommandRequest): Probe {
  return json(join(req.outputs['out']!, 'probe.json')) as Probe;
}

function messages(result: CommandResult): string[] {
  return result.logs.map((l) => `${l.level}: ${l.message}`);
}

describe('runCommand', () => {
  it('finds the compiled worker under dist/ when it runs as TypeScript source', () => {
    expect(commandWorkerFile()).toBe(join(ROOT, 'dist', 'shared', 'steps', 'command-worker.js'));
  });

  it('runs a synchronous run() that writes a folder output (nested) and a single-file output', async () => {
    const req = request('writes.js', { inputs: { tag: 'v1' }, outputNames: ['folder', 'single'] });
    const result = await runCommand(req);
    expect(result).toMatchObject({ status: 'completed', retryable: false });
    expect(result.error).toBeUndefined();
    expect(result.seconds).toBeGreaterThan(0);
    const folder = req.outputs['folder']!;
    expect(readFileSync(join(folder, 'top.txt'), 'utf8')).toBe('top v1\n');
    expect(readFileSync(join(folder, 'nested', 'deeper', 'leaf.csv'), 'utf8')).toBe('a,b\n1,2\n');
    expect(json(join(req.outputs['single']!, 'result.json'))).toEqual({ tag: 'v1' });
  });

  it('hands an async run() local file and folder inputs, and undefined for an optional input left out', async () => {
    const data = join(work, 'data');
    mkdirSync(join(data, 'images', 'a', 'b'), { recursive: true });
    writeFileSync(join(data, 'table.csv'), 'x,y\n1,2\n');
    writeFileSync(join(data, 'images', 'one.txt'), 'one');
    writeFileSync(join(data, 'images', 'a', 'b', 'two.txt'), 'two');
    const req = request('reads.js', { inputs: { table: join(data, 'table.csv'), images: join(data, 'images'), optional: undefined } });
    const result = await runCommand(req);
    expect(result.status).toBe('completed');
    expect(json(join(req.outputs['out']!, 'found.json'))).toEqual({
      fileName: 'table.csv',
      fileText: 'x,y\n1,2\n',
      folder: { 'one.txt': 'one', 'a/b/two.txt': 'two' },
      optional: 'left out',
    });
    expect(messages(result)).toContain('info: read 2 files from the folder');
  });

  it('passes literals typed, outputs as existing empty folders, and the context', async () => {
    const inputs: Record<string, CommandInputValue> = { text: 'hello', count: 42, ratio: 0.25, flag: false, yes: true, empty: '', gone: undefined };
    const req = request('probe.js', { inputs, outputNames: ['out', 'other'], stepName: 'train', jobId: 'job-42', attempt: 3 });
    const result = await runCommand(req);
    expect(result.status).toBe('completed');
    const probe = probeOf(req);
    expect(probe.inputs).toEqual({
      text: { type: 'string', value: 'hello' },
      count: { type: 'number', value: 42 },
      ratio: { type: 'number', value: 0.25 },
      flag: { type: 'boolean', value: false },
      yes: { type: 'boolean', value: true },
      empty: { type: 'string', value: '' },
      gone: { type: 'undefined' },
    });
    // An optional input left out is there, undefined, as Azure ML passes None.
    expect(probe.inputNames).toContain('gone');
    expect(probe.outputs).toEqual({ out: { exists: true, entries: 0 }, other: { exists: true, entries: 0 } });
    expect(probe.context).toEqual({ stepName: 'train', jobId: 'job-42', attempt: 3, workDir: req.workDir, workDirExists: true });
    expect(probe.loggerLevels).toEqual(['critical', 'debug', 'error', 'info', 'warning']);
  });

  it('sets environment variables before the module loads, and they do not leak to the host or the next run', async () => {
    expect(process.env['STEP_GREETING']).toBeUndefined();
    const first = request('probe.js', { environment: { STEP_GREETING: 'hi' } });
    expect((await runCommand(first)).status).toBe('completed');
    const seen = probeOf(first);
    expect(seen).toMatchObject({ greetingAtLoad: 'hi', greeting: 'hi', environment: { STEP_GREETING: 'hi' } });
    expect(process.env['STEP_GREETING']).toBeUndefined();

    const second = request('probe.js');
    expect((await runCommand(second)).status).toBe('completed');
    expect(probeOf(second)).toMatchObject({ greetingAtLoad: null, greeting: null, environment: {} });
  });

  it('starts every run with fresh module and global state', async () => {
    for (let n = 0; n < 2; n++) {
      const req = request('probe.js');
      expect((await runCommand(req)).status).toBe('completed');
      expect(probeOf(req)).toMatchObject({ runs: 1, globalRuns: 1 });
    }
  });

  it('runs runs side by side, each in its own thread', async () => {
    const reqs = [request('probe.js', { inputs: { n: 1 } }), request('probe.js', { inputs: { n: 2 } })];
    const results = await Promise.all(reqs.map((r) => runCommand(r)));
    expect(results.map((r) => r.status)).toEqual(['completed', 'completed']);
    expect(reqs.map((r) => probeOf(r).inputs['n']?.value)).toEqual([1, 2]);
  });

  it('runs a CommonJS module whose run arrives on the default export', async () => {
    const req = request('cjs-style.cjs');
    expect((await runCommand(req)).status).toBe('completed');
    expect(readFileSync(join(req.outputs['out']!, 'cjs.txt'), 'utf8')).toBe('from commonjs\n');
  });

  it('fails retryably when run() throws, with the message as the error and the stack in the logs', async () => {
    const result = await runCommand(request('throws.js', { inputs: { mode: 'retryable' } }));
    expect(result).toMatchObject({ status: 'failed', error: 'something went wrong this time', retryable: true });
    expect(messages(result)[0]).toBe('info: about to fail (retryable)');
    expect(result.logs.find((l) => l.level === 'error')?.message).toMatch(/^run\(\) failed: Error: something went wrong this time\n\s+at run \(.*throws\.js/);
  });

  it('fails non-retryably when the error says retryable = false', async () => {
    const result = await runCommand(request('throws.js', { inputs: { mode: 'fatal' } }));
    expect(result).toMatchObject({ status: 'failed', error: 'the input can never be processed', retryable: false });
  });

  it('fails for a rejection after a tick and for a thrown string alike', async () => {
    expect(await runCommand(request('throws.js', { inputs: { mode: 'async' } }))).toMatchObject({ status: 'failed', error: 'rejected later', retryable: true });
    expect(await runCommand(request('throws.js', { inputs: { mode: 'string' } }))).toMatchObject({ status: 'failed', error: 'a bare string', retryable: true });
  });

  it('times out a run that never ends, keeps what it logged, and terminates its worker', async () => {
    const req = request('hang.js', { timeoutMs: 600 });
    const result = await runCommand(req);
    expect(result).toMatchObject({ status: 'timeout', error: 'the step exceeded its 0.6 s timeout; its worker was stopped', retryable: true });
    expect(result.seconds).toBeGreaterThanOrEqual(0.6);
    expect(messages(result)).toEqual(['info: hanging now', 'error: the step exceeded its 0.6 s timeout; its worker was stopped']);
    // The heartbeat the script left running stopped with its thread.
    const beat = join(req.workDir, 'heartbeat');
    expect(existsSync(beat)).toBe(true);
    const last = readFileSync(beat, 'utf8');
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(readFileSync(beat, 'utf8')).toBe(last);
  });

  it('times out a run that spins synchronously', async () => {
    const result = await runCommand(request('spin.js', { timeoutMs: 500 }));
    expect(result).toMatchObject({ status: 'timeout', retryable: true });
    expect(messages(result)[0]).toBe('info: spinning now');
  });

  it('fails non-retryably, saying why, for a module without run, one that does not load, or no module at all', async () => {
    const noRun = await runCommand(request('no-run.js'));
    expect(noRun).toMatchObject({ status: 'failed', error: 'the entry script no-run.js does not export a run(inputs, outputs, context) function', retryable: false });
    const broken = await runCommand(request('broken.js'));
    expect(broken).toMatchObject({ status: 'failed', error: 'could not load the entry script broken.js: this module cannot load', retryable: false });
    expect(messages(broken).some((m) => m.startsWith('error: could not load the entry script: Error: this module cannot load'))).toBe(true);
    const missing = await runCommand(request('nope.js'));
    expect(missing).toMatchObject({ status: 'failed', error: 'the entry script nope.js is not in the code folder', retryable: false });
    const outside = await runCommand(request('../scoring/behaviours.js'));
    expect(outside).toMatchObject({ status: 'failed', error: 'the entry script ../scoring/behaviours.js is not a path inside the code folder', retryable: false });
  });

  it('fails at once, non-retryably, when the script awaits a promise nothing is left to settle', async () => {
    const waiting = await runCommand(request('never-settles.js', { timeoutMs: 60_000 }));
    expect(waiting).toMatchObject({ status: 'failed', error: 'run() never finished: it awaits a promise that nothing is left to settle', retryable: false });
    expect(waiting.seconds).toBeLessThan(30);
    expect(messages(waiting)).toEqual(['info: waiting for nothing']);
    const loading = await runCommand(request('never-loads.js', { timeoutMs: 60_000 }));
    expect(loading).toMatchObject({ status: 'failed', error: 'the entry script never-loads.js never finished loading: it awaits a promise that nothing is left to settle', retryable: false });
  });

  it('fails retryably when the script ends its thread', async () => {
    const result = await runCommand(request('exits.js'));
    expect(result).toMatchObject({ status: 'failed', error: 'the command worker exited (code 3) before run() finished', retryable: true });
    expect(messages(result)[0]).toBe('info: exiting');
  });

  it('captures the logger, the console and direct stdout/stderr writes in the logs', async () => {
    const result = await runCommand(request('chatty.js'));
    expect(result.status).toBe('completed');
    const logged = messages(result);
    expect(logged).toEqual(
      expect.arrayContaining([
        'debug: logger debug',
        'info: logger info',
        'warning: logger warning',
        'error: logger error',
        'critical: logger critical',
        'info: console.log formatted',
        'info: console.info',
        'warning: console.warn',
        'error: console.error',
        'debug: console.debug',
        'info: raw stdout line',
        'info: partial stdout',
        'warning: raw stderr line',
      ]),
    );
    expect(logged.some((m) => m.startsWith('info: ') && m.includes('table cell'))).toBe(true);
    // Entries of one channel keep their order (the logger's; stdio comes on a channel of its own).
    expect(logged.filter((m) => m.includes('logger '))).toEqual(['debug: logger debug', 'info: logger info', 'warning: logger warning', 'error: logger error', 'critical: logger critical']);
    for (const entry of result.logs) expect(Number.isNaN(Date.parse(entry.time))).toBe(false);
  });

  it('stamps the entries it writes itself (stdio lines, its notes) with the given clock; the script\'s carry the worker\'s time', async () => {
    const fixed = '2030-05-06T07:08:09.000Z';
    const now = (): Date => new Date(fixed);
    const chatty = await runCommand(request('chatty.js', { now }));
    expect(chatty.logs.find((l) => l.message === 'raw stdout line')?.time).toBe(fixed);
    expect(chatty.logs.find((l) => l.message === 'raw stderr line')?.time).toBe(fixed);
    expect(chatty.logs.find((l) => l.message === 'logger info')?.time).not.toBe(fixed);
    const timedOut = await runCommand(request('hang.js', { timeoutMs: 300, now }));
    expect(timedOut.logs.at(-1)).toMatchObject({ level: 'error', time: fixed });
  });

  it('throws for a missing worker module (a build problem, not the script\'s)', async () => {
    await expect(runCommand(request('probe.js', { workerFile: join(work, 'no-worker.js') }))).rejects.toThrow(/command worker module .* is missing/);
  });
});
