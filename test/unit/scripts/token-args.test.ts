// `npm run token` and `npm run issuer` command lines, run as npm runs them (the compiled scripts):
// --help prints the usage, a wrong command line is one readable line and exit 2 (no stack trace).
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { assertBuilt, ROOT } from '../../support/compiled.js';

function run(script: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [join(ROOT, 'dist', 'scripts', `${script}.js`), ...args], { cwd: ROOT }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

beforeAll(() => {
  assertBuilt('scripts', 'scripts/lib');
});

describe('token and issuer scripts', () => {
  it.each(['token', 'issuer'])('%s --help prints the usage and exits 0', async (script) => {
    const out = await run(script, ['--help']);
    expect(out.code).toBe(0);
    expect(out.stdout).toContain(`Usage: npm run ${script} -- [options]`);
    expect(out.stdout).toContain(script === 'token' ? '--scope <scope>' : '--port <port>');
  });

  it.each([
    ['token', ['--nosuch'], "error: unknown option '--nosuch'"],
    ['token', ['--scope', 'Jobs.Read', '--minutes', 'soon'], "option '--minutes <n>' argument 'soon' is invalid"],
    ['issuer', ['--port', 'x'], "option '--port <port>' argument 'x' is invalid"],
    ['issuer', ['--nosuch'], "error: unknown option '--nosuch'"],
  ])('%s %j is refused with a readable message and exit 2', async (script, args, message) => {
    const out = await run(script, args);
    expect(out.stderr).toContain(message);
    expect(out.stderr).not.toMatch(/ERR_PARSE_ARGS|\n\s+at /);
    expect(out.code).toBe(2);
  });
});
