import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { TEST_APP, startFnHost, tempDir } from '../support/fnhost.js';
import { freePort } from '../support/ports.js';
import { waitFor } from '../support/wait.js';

const BIN = resolve(import.meta.dirname, '..', '..', 'infra', 'local', 'bin', 'fnhost.js');

async function runFnHost(args: string[]): Promise<{ code: number | null; output: string }> {
  const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (c: Buffer) => (output += c.toString()));
  child.stderr.on('data', (c: Buffer) => (output += c.toString()));
  const code = await new Promise<number | null>((r) => child.once('exit', r));
  return { code, output };
}

function writeApp(dir: string, files: Record<string, string>, hostJson: unknown = { version: '2.0' }): void {
  mkdirSync(join(dir, 'src'), { recursive: true });
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ type: 'module', main: 'src/*.js' }));
  writeFileSync(join(dir, 'host.json'), JSON.stringify(hostJson));
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, 'src', name), text);
}

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

describe('fnhost start-up', () => {
  it('exits non-zero naming the file when an entry module throws while loading', async () => {
    const app = tempDir('fnhost-bad-');
    cleanups.push(app.remove);
    writeApp(app.path, {
      'a.js': "import { app } from '@azure/functions';\napp.http('ok', { handler: () => ({}) });\n",
      'broken.js': "throw new Error('database url missing');\n",
    });
    // The app must resolve @azure/functions from this repository.
    writeFileSync(join(app.path, 'src', 'a.js'), `import { app } from '${resolve('node_modules/@azure/functions/dist/azure-functions.js')}';\napp.http('ok', { handler: () => ({}) });\n`);
    const result = await runFnHost(['start', '--script-root', app.path, '--port', String(await freePort()), '--in-memory', '--no-azurite']);
    expect(result.code).not.toBe(0);
    expect(result.output).toContain('Failed to load "src/broken.js"');
    expect(result.output).toContain('database url missing');
  });

  it('exits non-zero with a readable message for invalid host.json and missing main', async () => {
    const app = tempDir('fnhost-cfg-');
    cleanups.push(app.remove);
    writeApp(app.path, {}, { version: '1.0' });
    const bad = await runFnHost(['start', '--script-root', app.path, '--in-memory', '--no-azurite']);
    expect(bad.code).not.toBe(0);
    expect(bad.output).toContain('host.json "version" must be "2.0"');

    writeFileSync(join(app.path, 'host.json'), '{"version": "2.0"}');
    writeFileSync(join(app.path, 'package.json'), '{"type":"module"}');
    const noMain = await runFnHost(['start', '--script-root', app.path, '--in-memory', '--no-azurite']);
    expect(noMain.code).not.toBe(0);
    expect(noMain.output).toContain('has no "main"');
  });

  it('refuses a port that is in use', async () => {
    const server = createServer();
    const port = await new Promise<number>((r) => server.listen(0, '127.0.0.1', () => r((server.address() as { port: number }).port)));
    try {
      const result = await runFnHost(['start', '--script-root', TEST_APP, '--port', String(port), '--in-memory', '--no-azurite']);
      expect(result.code).not.toBe(0);
      expect(result.output).toContain(`Port ${port} is unavailable`);
    } finally {
      server.close();
    }
  });

  it('stops on SIGTERM: lets a running request finish, then exits 0', async () => {
    const host = await startFnHost({ appDir: TEST_APP });
    const slow = fetch(`${host.url}/api/slow?ms=1500`);
    await waitFor(() => (host.output().includes('slow started for 1500ms') ? true : undefined));
    const code = await host.stop();
    expect(code).toBe(0);
    const res = await slow;
    expect(res.status).toBe(200);
    expect(await res.text()).toBe('slept 1500');
    expect(host.output()).toContain('SIGTERM received');
    // Requests after the stop began are not served.
    await expect(fetch(`${host.url}/api/hello`)).rejects.toThrow();
  });
});
