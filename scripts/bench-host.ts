/**
 * `npm run bench:host`: measures fnhost's Durable engine on fan-out/fan-in shapes, each in a fresh
 * host process, and compares CPU-bound work under fnhost with the same calls in a bare loop.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { freePort } from './lib/ports.js';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { FNHOST_NODE_FLAGS } from '../infra/local/src/node-flags.js';

const ROOT = resolve(import.meta.dirname, '..', '..');
const APP = join(ROOT, 'scripts', 'bench', 'host-app');
const BIN = join(ROOT, 'infra', 'local', 'bin', 'fnhost.js');

interface Host {
  url: string;
  key: string;
  child: ChildProcess;
  dir: string;
}


async function startHost(): Promise<Host> {
  const dir = mkdtempSync(join(tmpdir(), 'fnhost-bench-'));
  const port = await freePort();
  const child = spawn(process.execPath, [...FNHOST_NODE_FLAGS, BIN, 'start', '--script-root', APP, '--port', String(port), '--data', dir, '--no-azurite'], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, AzureWebJobsStorage: '' },
  });
  let out = '';
  child.stdout?.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr?.on('data', (c: Buffer) => (out += c.toString()));
  await new Promise<void>((ok, fail) => {
    const t = setInterval(() => {
      if (out.includes('is listening on')) {
        clearInterval(t);
        ok();
      }
    }, 20);
    child.once('exit', () => {
      clearInterval(t);
      fail(new Error(`fnhost exited:\n${out}`));
    });
  });
  const keys = JSON.parse(readFileSync(join(dir, 'keys.json'), 'utf8')) as { master: string; system: Record<string, string> };
  return { url: `http://127.0.0.1:${port}`, key: keys.master, child, dir };
}

async function stopHost(host: Host): Promise<void> {
  const exited = new Promise((r) => host.child.once('exit', r));
  host.child.kill('SIGTERM');
  await exited;
  rmSync(host.dir, { recursive: true, force: true });
}

/** Peak resident set size of a process (Linux), in MB. */
function peakRssMb(pid: number | undefined): number {
  const status = readFileSync(`/proc/${String(pid)}/status`, 'utf8');
  const kb = Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0);
  return kb / 1024;
}

async function runOrchestration(host: Host, name: string, input: unknown): Promise<{ ms: number; output: unknown }> {
  const base = `${host.url}/runtime/webhooks/durabletask`;
  const started = performance.now();
  const res = await fetch(`${base}/orchestrators/${name}?code=${host.key}`, { method: 'POST', body: JSON.stringify(input) });
  if (res.status !== 202) throw new Error(`start ${name}: ${res.status} ${await res.text()}`);
  const { statusQueryGetUri } = (await res.json()) as { statusQueryGetUri: string };
  for (;;) {
    const status = (await (await fetch(statusQueryGetUri)).json()) as { runtimeStatus: string; output: unknown };
    if (status.runtimeStatus === 'Completed') return { ms: performance.now() - started, output: status.output };
    if (status.runtimeStatus === 'Failed' || status.runtimeStatus === 'Terminated') throw new Error(JSON.stringify(status));
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function stats(host: Host): Promise<{ episodes: number; activities: number }> {
  const res = await fetch(`${host.url}/admin/host/status`, { headers: { 'x-functions-key': host.key } });
  return ((await res.json()) as { durable: { episodes: number; activities: number } }).durable;
}

interface Row {
  scenario: string;
  activities: number;
  'wall s': string;
  'activities/s': string;
  'µs/activity': string;
  episodes: number;
  'peak RSS MB': string;
}

async function scenario(label: string, name: string, input: unknown, activities: number): Promise<Row> {
  const host = await startHost();
  try {
    const { ms } = await runOrchestration(host, name, input);
    const s = await stats(host);
    return {
      scenario: label,
      activities,
      'wall s': (ms / 1000).toFixed(2),
      'activities/s': Math.round(activities / (ms / 1000)).toString(),
      'µs/activity': Math.round((ms * 1000) / activities).toString(),
      episodes: s.episodes,
      'peak RSS MB': peakRssMb(host.child.pid).toFixed(0),
    };
  } finally {
    await stopHost(host);
  }
}

async function main(): Promise<void> {
  const rows: Row[] = [];
  rows.push(await scenario('fan-out/fan-in 1,000 no-op', 'fanOutNoop', { n: 1000 }, 1000));
  rows.push(await scenario('fan-out/fan-in 10,000 no-op', 'fanOutNoop', { n: 10_000 }, 10_000));
  rows.push(await scenario('100 sub-orchestrations x 100', 'subOrchestrations', { children: 100, perChild: 100 }, 10_000));
  rows.push(await scenario('500 x 20 ms CPU', 'fanOutBurn', { n: 500, ms: 20 }, 500));
  console.log('\nfnhost durable engine (each scenario in a fresh host; wall = start request to Completed)\n');
  console.table(rows);

  // Baseline: the same 500 CPU-bound calls in a bare loop in this process.
  const { burn } = (await import(pathToFileURL(join(APP, 'src', 'burn.js')).href)) as { burn: (ms: number) => number };
  const t0 = performance.now();
  for (let i = 0; i < 500; i++) burn(20);
  const bare = performance.now() - t0;
  const hosted = Number(rows[3]?.['wall s']) * 1000;
  console.log(`\n500 x 20 ms CPU: fnhost ${(hosted / 1000).toFixed(2)} s, bare loop ${(bare / 1000).toFixed(2)} s, ratio ${(hosted / bare).toFixed(3)} (aim <= 1.10)`);
  const tenK = rows[1];
  if (tenK) {
    console.log(`10,000 no-op: ${tenK['activities/s']} activities/s (aim >= 2,000), peak RSS ${tenK['peak RSS MB']} MB (aim < 300 MB)`);
  }
}

await main();
