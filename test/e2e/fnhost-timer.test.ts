import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cleanupsAfterAll } from '../support/cleanups.js';
import { type FnHostProcess, startFnHost, tempDir } from '../support/fnhost.js';
import { waitFor } from '../support/wait.js';

const STORAGE_APP = resolve(import.meta.dirname, '..', 'fixtures', 'fnhost-storage-app');

interface Run {
  at: number;
  invocationId: string;
  timer: {
    schedule: { adjustForDST: boolean };
    scheduleStatus: { last: string; next: string; lastUpdated: string } | null;
    isPastDue: boolean;
  };
}

type Runs = Partial<Record<'everyTwoSeconds' | 'startupTimer' | 'hourlyTimer', Run[]>>;

const cleanups = cleanupsAfterAll();

async function runs(host: FnHostProcess): Promise<Runs> {
  return (await (await fetch(`${host.url}/api/timerRuns`)).json()) as Runs;
}

async function waitForRuns(host: FnHostProcess, name: keyof Runs, count: number): Promise<Run[]> {
  return waitFor(
    async () => {
      const list = (await runs(host))[name] ?? [];
      return list.length >= count ? list : undefined;
    },
    { what: `${count} run(s) of ${name}`, timeoutMs: 20_000 },
  );
}

describe('fnhost timer trigger', () => {
  it('fires a six-field NCRONTAB schedule on time and runs runOnStartup timers once at start', async () => {
    const host = await startFnHost({ appDir: STORAGE_APP });
    cleanups.push(() => host.stop());

    const ticks = await waitForRuns(host, 'everyTwoSeconds', 2);
    for (const tick of ticks) {
      // Sub-minute schedules keep no status; the library camel-cases the host's TimerInfo.
      expect(tick.timer).toEqual({ schedule: { adjustForDST: true }, scheduleStatus: null, isPastDue: false });
    }
    // `*/2` fires on even seconds, once per occurrence.
    const seconds = ticks.map((t) => Math.floor(t.at / 1000));
    for (const s of seconds) expect(s % 2).toBe(0);
    expect(new Set(seconds).size).toBe(seconds.length);

    const startup = await waitForRuns(host, 'startupTimer', 1);
    expect(startup).toHaveLength(1);
    const nextNewYear = `${new Date().getUTCFullYear() + 1}-01-01T00:00:00Z`;
    expect(startup[0]?.timer).toMatchObject({
      isPastDue: false,
      scheduleStatus: { last: '0001-01-01T00:00:00', next: nextNewYear },
    });
    expect((await runs(host)).hourlyTimer).toBeUndefined();
  });

  it('keeps schedule status in the data folder: a missed occurrence runs as past due after a restart', async () => {
    const data = tempDir('fnhost-timer-');
    cleanups.push(data.remove);
    // The status a host would have left if it went down in 2020 before the 01:00 run.
    mkdirSync(join(data.path, 'timers'), { recursive: true });
    const statusFile = join(data.path, 'timers', 'hourlytimer.json');
    writeFileSync(statusFile, JSON.stringify({ Last: '2020-01-01T00:00:00Z', Next: '2020-01-01T01:00:00Z', LastUpdated: '2020-01-01T00:00:00Z' }));

    const first = await startFnHost({ appDir: STORAGE_APP, dataDir: data.path });
    cleanups.push(() => first.stop());
    const [pastDue] = await waitForRuns(first, 'hourlyTimer', 1);
    expect(pastDue?.timer).toEqual({
      schedule: { adjustForDST: true },
      scheduleStatus: { last: '2020-01-01T00:00:00Z', next: '2020-01-01T01:00:00Z', lastUpdated: '2020-01-01T00:00:00Z' },
      isPastDue: true,
    });
    await first.stop();

    // The run was recorded: Next is the coming full hour.
    const status = JSON.parse(readFileSync(statusFile, 'utf8')) as { Last: string; Next: string };
    const next = Date.parse(status.Next);
    expect(next).toBeGreaterThan(Date.now());
    expect(next % 3_600_000).toBe(0);
    expect(Date.now() - Date.parse(status.Last)).toBeLessThan(60_000);

    // Started again before that hour: nothing is past due. (Within seconds of the full hour the
    // hour may really pass during the restart, so the check needs some margin.)
    const second = await startFnHost({ appDir: STORAGE_APP, dataDir: data.path, port: first.port });
    cleanups.push(() => second.stop());
    await waitForRuns(second, 'startupTimer', 1);
    await waitForRuns(second, 'everyTwoSeconds', 1);
    if (next - Date.now() > 10_000) {
      expect((await runs(second)).hourlyTimer).toBeUndefined();
      expect(JSON.parse(readFileSync(statusFile, 'utf8'))).toEqual(status);
    }
  });
});
