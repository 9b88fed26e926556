// The CLI's command-line errors, run as a user runs it (the compiled bin, as a child process): a
// wrong option argument is refused before anything is read or sent, with exit code 2 (cli/README.md).
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assertBuilt, ROOT } from '../support/compiled.js';

const BIN = join(ROOT, 'cli', 'bin', 'batch-endpoints.js');
let home: string;

function cli(args: string[]): Promise<{ code: number; stderr: string }> {
  // No connection at all: a command that got past its arguments would fail with exit 1 instead.
  const env: NodeJS.ProcessEnv = { ...process.env, XDG_CONFIG_HOME: home };
  for (const name of Object.keys(env)) if (name.startsWith('BATCH_ENDPOINTS_') || name === 'AZURE_STORAGE_CONNECTION_STRING') delete env[name];
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { cwd: home, env }, (err, _stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stderr });
    });
  });
}

beforeAll(() => {
  assertBuilt('cli/src');
  home = mkdtempSync(join(tmpdir(), 'cli-args-'));
});

afterAll(() => {
  rmSync(home, { recursive: true, force: true });
});

describe('CLI argument errors', () => {
  it.each([
    [['deployment', 'update', '-f', 'deployment.yml', '--set', 'settings.mini_batch_size'], /--set settings\.mini_batch_size: expected key=value/],
    [['endpoint', 'invoke', '-n', 'ep', '-i', 'x.csv', '--set', '=3'], /expected key=value/],
    [['endpoint', 'invoke', '-n', 'ep', '-i', 'x.csv', '--set', 'settings.x=[1'], /the value is not valid YAML/],
    [['job', 'stream', '-n', 'job1', '--interval', 'abc'], /--interval.*'abc' is invalid.*a number of seconds, at least 0\.1/s],
    [['job', 'stream', '-n', 'job1', '--interval', '0'], /at least 0\.1/],
    [['endpoint', 'invoke', '-n', 'ep', '-i', 'x.csv', '--stream', '--tail', '1.5'], /--tail.*a whole number, at least 0/s],
    [['job', 'list', '--max-results', '-3'], /--max-results.*'-3' is invalid.*a whole number, at least 1/s],
    [['job', 'list', '--max-results', 'many'], /a whole number, at least 1/],
    [['job', 'list', '--nosuch'], /unknown option '--nosuch'/],
  ])('%j exits 2 with a message naming the argument', async (args, message) => {
    const run = await cli(args);
    expect(run.stderr).toMatch(message);
    expect(run.code).toBe(2);
  });

  it('a command line that is right gets past its arguments (here, to the missing connection: exit 1)', async () => {
    const run = await cli(['job', 'list', '--max-results', '3']);
    expect(run.stderr).toMatch(/No API URL/);
    expect(run.code).toBe(1);
  });
});
