import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Logger } from '../../../infra/local/src/log.js';
import {
  type ScheduleStatus,
  checkPastDue,
  formatScheduleDate,
  parseDotNetTimeSpan,
  parseSchedule,
  timerInfo,
  usesMonitor,
} from '../../../infra/local/src/timer/schedule.js';
import { FileStatusStore, MemoryStatusStore, TimerListener } from '../../../infra/local/src/timer/timer-trigger.js';
import { ManualClock } from './manual-clock.js';

const at = (iso: string): number => Date.parse(iso);
const iso = (ms: number): string => new Date(ms).toISOString();

describe('NCRONTAB schedules', () => {
  it('reads six fields as {second} {minute} {hour} {day} {month} {day-of-week}', () => {
    const every2s = parseSchedule('*/2 * * * * *');
    expect(every2s.kind).toBe('cron');
    expect(iso(every2s.next(at('2024-01-01T00:00:00Z')))).toBe('2024-01-01T00:00:02.000Z');
    expect(iso(every2s.next(at('2024-01-01T00:00:01.500Z')))).toBe('2024-01-01T00:00:02.000Z');
    const weekdays = parseSchedule('0 30 9 * * 1-5');
    // 2024-01-06 is a Saturday.
    expect(iso(weekdays.next(at('2024-01-06T00:00:00Z')))).toBe('2024-01-08T09:30:00.000Z');
    expect(iso(parseSchedule('0 0 0 * * Mon-Fri').next(at('2024-01-06T00:00:00Z')))).toBe('2024-01-08T00:00:00.000Z');
    expect(iso(parseSchedule('0 0 12 1 Feb *').next(at('2024-01-06T00:00:00Z')))).toBe('2024-02-01T12:00:00.000Z');
  });

  it('reads five fields as a classic crontab without seconds', () => {
    expect(iso(parseSchedule('*/5 * * * *').next(at('2024-01-01T00:01:30Z')))).toBe('2024-01-01T00:05:00.000Z');
  });

  it('requires both day of month and day of week to match, as NCRONTAB does', () => {
    // The 13th that is a Friday.
    expect(iso(parseSchedule('0 0 0 13 * 5').next(at('2024-01-01T00:00:00Z')))).toBe('2024-09-13T00:00:00.000Z');
  });

  it('reads fields in the given time zone', () => {
    const nine = parseSchedule('0 0 9 * * *', 'Europe/Berlin');
    expect(iso(nine.next(at('2024-01-01T00:00:00Z')))).toBe('2024-01-01T08:00:00.000Z');
  });

  it('rejects expressions that are neither NCRONTAB nor a TimeSpan', () => {
    expect(() => parseSchedule('0 0 0 ? * *')).toThrow(/not recognized as a valid cron expression or timespan/);
    expect(() => parseSchedule('0 0 0 L * *')).toThrow(/not recognized/);
    expect(() => parseSchedule('0 0 24 * * *')).toThrow(/not recognized/);
    expect(() => parseSchedule('0 0 0 * * 7')).toThrow(/not recognized/);
    expect(() => parseSchedule('every minute')).toThrow(/not recognized/);
    expect(() => parseSchedule('* * * * * * *')).toThrow(/not recognized/);
  });
});

describe('TimeSpan schedules', () => {
  it('parses the .NET forms', () => {
    expect(parseDotNetTimeSpan('00:05:00')).toBe(300_000);
    expect(parseDotNetTimeSpan('01:30')).toBe(5_400_000);
    expect(parseDotNetTimeSpan('1.02:00:00')).toBe(93_600_000);
    expect(parseDotNetTimeSpan('00:00:00.250')).toBe(250);
    expect(parseDotNetTimeSpan('2')).toBe(2 * 86_400_000);
    expect(parseDotNetTimeSpan('00:61:00')).toBeUndefined();
    expect(parseDotNetTimeSpan('soon')).toBeUndefined();
  });

  it('schedules a constant interval after the given time', () => {
    const s = parseSchedule('00:00:10');
    expect(s.kind).toBe('interval');
    expect(s.next(1000)).toBe(11_000);
  });

  it('turns the monitor off for schedules more frequent than once a minute', () => {
    const now = at('2024-01-01T00:00:00Z');
    expect(usesMonitor(parseSchedule('*/2 * * * * *'), undefined, now)).toBe(false);
    expect(usesMonitor(parseSchedule('00:00:30'), undefined, now)).toBe(false);
    expect(usesMonitor(parseSchedule('0 * * * * *'), undefined, now)).toBe(true);
    expect(usesMonitor(parseSchedule('00:05:00'), undefined, now)).toBe(true);
    expect(usesMonitor(parseSchedule('00:05:00'), false, now)).toBe(false);
  });
});

describe('past-due detection', () => {
  const hourly = parseSchedule('0 0 * * * *');

  it('records a first status without being past due', () => {
    const r = checkPastDue(hourly, at('2024-01-01T10:15:00Z'), undefined);
    expect(r).toEqual({
      status: { last: undefined, next: at('2024-01-01T11:00:00Z'), lastUpdated: at('2024-01-01T10:15:00Z') },
      pastDueMs: 0,
      changed: true,
    });
  });

  it('is past due when the recorded next occurrence passed while the host was down', () => {
    const stored: ScheduleStatus = { last: at('2024-01-01T10:00:00Z'), next: at('2024-01-01T11:00:00Z'), lastUpdated: at('2024-01-01T10:00:00Z') };
    const r = checkPastDue(hourly, at('2024-01-01T11:20:00Z'), stored);
    expect(r.changed).toBe(false);
    expect(r.pastDueMs).toBe(20 * 60_000);
    expect(checkPastDue(hourly, at('2024-01-01T10:59:00Z'), stored).pastDueMs).toBe(0);
  });

  it('treats a changed schedule as new rather than past due', () => {
    const stored: ScheduleStatus = { last: at('2024-01-01T10:00:00Z'), next: at('2024-01-01T11:00:00Z'), lastUpdated: at('2024-01-01T10:00:00Z') };
    const everyFive = parseSchedule('0 */5 * * * *');
    const r = checkPastDue(everyFive, at('2024-01-01T11:20:00Z'), stored);
    expect(r.changed).toBe(true);
    expect(r.pastDueMs).toBe(0);
    expect(r.status).toEqual({ last: undefined, next: at('2024-01-01T11:25:00Z'), lastUpdated: at('2024-01-01T11:20:00Z') });
  });

  it('formats the trigger value like the host', () => {
    const status: ScheduleStatus = { last: undefined, next: at('2024-05-01T10:05:00Z'), lastUpdated: at('2024-05-01T10:04:00.003Z') };
    expect(timerInfo(status, false)).toEqual({
      Schedule: { AdjustForDST: true },
      ScheduleStatus: { Last: '0001-01-01T00:00:00', Next: '2024-05-01T10:05:00Z', LastUpdated: '2024-05-01T10:04:00.003Z' },
      IsPastDue: false,
    });
    expect(timerInfo(null, true)).toEqual({ Schedule: { AdjustForDST: true }, ScheduleStatus: null, IsPastDue: true });
    expect(formatScheduleDate(at('2024-05-01T10:04:00.120Z'))).toBe('2024-05-01T10:04:00.12Z');
  });
});

interface Fired {
  at: number;
  value: Record<string, unknown>;
}

function listener(options: {
  clock: ManualClock;
  expression: string;
  store?: MemoryStatusStore;
  runOnStartup?: boolean;
  fired: Fired[];
  fail?: boolean;
}): TimerListener {
  const schedule = parseSchedule(options.expression);
  return new TimerListener({
    name: 'nightly',
    schedule,
    runOnStartup: options.runOnStartup ?? false,
    useMonitor: usesMonitor(schedule, undefined, options.clock.now()),
    store: options.store ?? new MemoryStatusStore(),
    clock: options.clock,
    logger: new Logger({ minLevel: 'none' }),
    invoke: (value) => {
      options.fired.push({ at: options.clock.now(), value });
      return options.fail ? Promise.reject(new Error('boom')) : Promise.resolve();
    },
  });
}

describe('timer listener (driven by a manual clock)', () => {
  it('fires at each occurrence and keeps firing after a failing invocation', async () => {
    const clock = new ManualClock('2024-01-01T00:00:00.500Z');
    const fired: Fired[] = [];
    const timer = listener({ clock, expression: '*/2 * * * * *', fired, fail: true });
    await timer.start();
    await clock.advance(5000);
    expect(fired.map((f) => iso(f.at))).toEqual(['2024-01-01T00:00:02.000Z', '2024-01-01T00:00:04.000Z']);
    // Sub-minute schedules have no monitor, so no status in the value.
    expect(fired[0]?.value).toEqual({ Schedule: { AdjustForDST: true }, ScheduleStatus: null, IsPastDue: false });
    await timer.stop(1000);
    await clock.advance(10_000);
    expect(fired).toHaveLength(2);
  });

  it('runs on startup, then on schedule, reporting the schedule status', async () => {
    const clock = new ManualClock('2024-01-01T10:15:00Z');
    const fired: Fired[] = [];
    const timer = listener({ clock, expression: '0 0 * * * *', runOnStartup: true, fired });
    await timer.start();
    await clock.advance(1);
    expect(fired).toHaveLength(1);
    expect(fired[0]?.value).toMatchObject({
      IsPastDue: false,
      ScheduleStatus: { Last: '0001-01-01T00:00:00', Next: '2024-01-01T11:00:00Z' },
    });
    await clock.advance(45 * 60_000);
    expect(fired.map((f) => iso(f.at))).toEqual(['2024-01-01T10:15:00.000Z', '2024-01-01T11:00:00.000Z']);
    expect(fired[1]?.value).toMatchObject({
      IsPastDue: false,
      ScheduleStatus: { Last: '2024-01-01T10:15:00Z', Next: '2024-01-01T11:00:00Z' },
    });
    expect(timer.status?.next).toBe(at('2024-01-01T12:00:00Z'));
    await timer.stop(0);
  });

  it('notices across a restart that an occurrence was missed and runs it as past due', async () => {
    const store = new MemoryStatusStore();
    const clock = new ManualClock('2024-01-01T10:15:00Z');
    const fired: Fired[] = [];
    const first = listener({ clock, expression: '0 0 * * * *', store, fired });
    await first.start();
    await clock.advance(50 * 60_000);
    expect(fired).toHaveLength(1);
    await first.stop(0);

    // Down from 11:05 until 13:30: the 12:00 and 13:00 occurrences were missed.
    await clock.advance(145 * 60_000);
    const second = listener({ clock, expression: '0 0 * * * *', store, fired });
    await second.start();
    await clock.advance(1);
    expect(fired).toHaveLength(2);
    expect(fired[1]?.value).toMatchObject({ IsPastDue: true, ScheduleStatus: { Last: '2024-01-01T11:00:00Z', Next: '2024-01-01T12:00:00Z' } });
    // Back on schedule afterwards.
    await clock.advance(30 * 60_000);
    expect(fired.map((f) => iso(f.at)).slice(2)).toEqual(['2024-01-01T14:00:00.000Z']);
    expect(fired[2]?.value).toMatchObject({ IsPastDue: false });
    await second.stop(0);
  });

  it('waits out schedules longer than one timer can wait without firing early', async () => {
    const clock = new ManualClock('2024-01-01T00:00:00Z');
    const fired: Fired[] = [];
    const yearly = listener({ clock, expression: '0 0 0 1 1 *', fired });
    await yearly.start();
    await clock.advance(200 * 86_400_000);
    expect(fired).toHaveLength(0);
    await clock.advance(166 * 86_400_000);
    expect(fired.map((f) => iso(f.at))).toEqual(['2025-01-01T00:00:00.000Z']);
    await yearly.stop(0);
  });
});

describe('schedule status files', () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });

  it('round-trips status with the host field names', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'fnhost-timers-'));
    dirs.push(dir);
    const store = new FileStatusStore(dir);
    expect(await store.read('Nightly')).toBeUndefined();
    const status: ScheduleStatus = { last: undefined, next: at('2024-01-01T11:00:00Z'), lastUpdated: at('2024-01-01T10:15:00.5Z') };
    await store.write('Nightly', status);
    expect(await store.read('nightly')).toEqual(status);
  });
});
