import { Cron } from 'croner';
import { FnHostError, describeError } from '../errors.js';

/**
 * Timer trigger schedules as the host reads them: an NCRONTAB expression (six fields with
 * seconds, or the classic five) or, failing that, a TimeSpan interval; plus the schedule status
 * bookkeeping that decides whether a start is "past due".
 */

export interface TimerSchedule {
  readonly kind: 'cron' | 'interval';
  /** The expression as written (after `%setting%` resolution). */
  readonly expression: string;
  /** The first occurrence strictly after `afterMs` (epoch milliseconds). */
  next(afterMs: number): number;
  /** For logs: `Cron: '0 0 * * * *'` or `Interval: '00:05:00'`. */
  describe(): string;
}

const MONTH_NAMES = ['JAN', 'FEB', 'MAR', 'APR', 'MAY', 'JUN', 'JUL', 'AUG', 'SEP', 'OCT', 'NOV', 'DEC'];
const DAY_NAMES = ['SUN', 'MON', 'TUE', 'WED', 'THU', 'FRI', 'SAT'];

/** Field limits in NCRONTAB order (second, minute, hour, day, month, day-of-week). */
const LIMITS: readonly (readonly [number, number])[] = [
  [0, 59],
  [0, 59],
  [0, 23],
  [1, 31],
  [1, 12],
  [0, 6],
];

/**
 * Checks one NCRONTAB field: lists of `*`, `n`, `n-m`, each with an optional `/step`; names in the
 * month and day-of-week fields. Croner also accepts Quartz extras (`?`, `L`, `W`, `#`) that the
 * host rejects, so they are refused here first.
 */
function validateField(field: string, index: number): void {
  const limits = LIMITS[index] ?? [0, 59];
  const names = index === 4 ? MONTH_NAMES : index === 5 ? DAY_NAMES : [];
  const value = (text: string): number => {
    const named = names.indexOf(text.toUpperCase());
    if (named >= 0) return index === 4 ? named + 1 : named;
    if (!/^\d+$/.test(text)) throw new Error(`'${text}' is not a number${names.length > 0 ? ' or a name' : ''}`);
    return Number(text);
  };
  for (const item of field.split(',')) {
    const m = /^(\*|[A-Za-z0-9]+(?:-[A-Za-z0-9]+)?)(?:\/(\d+))?$/.exec(item);
    if (!m) throw new Error(`'${item}' is not a valid field item`);
    const range = m[1] ?? '';
    if (m[2] !== undefined && Number(m[2]) === 0) throw new Error(`step 0 in '${item}'`);
    if (range === '*') continue;
    for (const part of range.split('-')) {
      const n = value(part);
      if (n < limits[0] || n > limits[1]) throw new Error(`${n} is outside ${limits[0]}-${limits[1]}`);
    }
  }
}

/** Tries an expression as NCRONTAB; undefined when it is not one. */
function tryCron(expression: string, timezone: string): TimerSchedule | undefined {
  const fields = expression.trim().split(/\s+/);
  // The host counts fields: anything but five means the first field is seconds.
  const withSeconds = fields.length !== 5;
  if (fields.length !== 5 && fields.length !== 6) return undefined;
  try {
    fields.forEach((f, i) => validateField(f, withSeconds ? i : i + 1));
    const cron = new Cron(fields.join(' '), {
      paused: true,
      timezone,
      mode: withSeconds ? '6-part' : '5-part',
      // NCRONTAB requires both the day of month and the day of week to match.
      domAndDow: true,
      sloppyRanges: true,
    });
    return {
      kind: 'cron',
      expression,
      next(afterMs) {
        const next = cron.nextRun(new Date(afterMs));
        if (!next) throw new FnHostError('ERR_CONFIG', `The schedule '${expression}' has no occurrence after ${new Date(afterMs).toISOString()}.`);
        return next.getTime();
      },
      describe: () => `Cron: '${expression}'`,
    };
  } catch {
    return undefined;
  }
}

/**
 * Parses a TimeSpan the way .NET's TimeSpan.TryParse does for the forms people write in
 * schedules: `d`, `hh:mm`, `hh:mm:ss`, `d.hh:mm:ss`, with optional `.fffffff` seconds fractions.
 * Returns milliseconds, or undefined when the text is not a TimeSpan.
 */
export function parseDotNetTimeSpan(text: string): number | undefined {
  const s = text.trim();
  if (/^\d+$/.test(s)) return Number(s) * 86_400_000;
  const m = /^(?:(\d+)\.)?(\d{1,2}):(\d{1,2})(?::(\d{1,2})(?:\.(\d{1,7}))?)?$/.exec(s);
  if (!m) return undefined;
  const [, days, hours, minutes, seconds, fraction] = m;
  if (Number(hours) > 23 || Number(minutes) > 59 || Number(seconds ?? 0) > 59) return undefined;
  return (
    Number(days ?? 0) * 86_400_000 +
    Number(hours) * 3_600_000 +
    Number(minutes) * 60_000 +
    Number(seconds ?? 0) * 1000 +
    (fraction ? Math.round(Number(`0.${fraction}`) * 1000) : 0)
  );
}

/**
 * Parses a timer schedule as the host does: NCRONTAB first, then a TimeSpan interval.
 * `timezone` (an IANA name) is where NCRONTAB fields are read; the host uses the machine's
 * local time, which is UTC in Azure unless WEBSITE_TIME_ZONE says otherwise.
 */
export function parseSchedule(expression: string, timezone = 'UTC'): TimerSchedule {
  const cron = tryCron(expression, timezone);
  if (cron) return cron;
  const interval = parseDotNetTimeSpan(expression);
  if (interval !== undefined && interval > 0) {
    return {
      kind: 'interval',
      expression,
      next: (afterMs) => afterMs + interval,
      describe: () => `Interval: '${expression.trim()}'`,
    };
  }
  throw new FnHostError(
    'ERR_CONFIG',
    `The schedule expression '${expression}' was not recognized as a valid cron expression or timespan string.`,
  );
}

/**
 * Whether the host keeps schedule status (`useMonitor`) for this schedule: on by default, but
 * turned off for schedules that fire more than once a minute.
 */
export function usesMonitor(schedule: TimerSchedule, useMonitor: unknown, nowMs: number): boolean {
  if (useMonitor === false || useMonitor === 'false') return false;
  const first = schedule.next(nowMs);
  if (schedule.kind === 'interval') return first - nowMs >= 60_000;
  return schedule.next(first) > nowMs + 60_000;
}

/** The last recorded schedule status of a timer; undefined dates are .NET's default DateTime. */
export interface ScheduleStatus {
  last: number | undefined;
  next: number;
  lastUpdated: number | undefined;
}

/**
 * The host's start-up check: given the stored status, fixes it up if the schedule changed since
 * it was written, and reports how long the timer is past due (0 when it is not).
 */
export function checkPastDue(
  schedule: TimerSchedule,
  nowMs: number,
  stored: ScheduleStatus | undefined,
): { status: ScheduleStatus; pastDueMs: number; changed: boolean } {
  if (!stored) {
    return { status: { last: undefined, next: schedule.next(nowMs), lastUpdated: nowMs }, pastDueMs: 0, changed: true };
  }
  // `Next` was computed from `Last` (or, before the first run, from `LastUpdated`); if the
  // schedule gives something else now, the schedule has changed.
  const base = stored.last ?? stored.lastUpdated ?? nowMs;
  let expected = schedule.next(base);
  let lastUpdated = base;
  let status = stored;
  let changed = false;
  if (stored.next !== expected) {
    // A changed schedule whose next time has passed is not "past due": start from now.
    if (nowMs > expected) {
      expected = schedule.next(nowMs);
      lastUpdated = nowMs;
    }
    status = { last: undefined, next: expected, lastUpdated };
    changed = true;
  }
  return { status, pastDueMs: nowMs > status.next ? nowMs - status.next : 0, changed };
}

/** .NET's default(DateTime), which the host reports as `Last` before the first run. */
export const DEFAULT_DATE_TEXT = '0001-01-01T00:00:00';

/** A schedule time as the host's JSON writes it: ISO 8601, trailing zero fractions trimmed. */
export function formatScheduleDate(ms: number | undefined): string {
  if (ms === undefined) return DEFAULT_DATE_TEXT;
  return new Date(ms).toISOString().replace(/\.?0*Z$/, 'Z');
}

/** Reads a date the way {@link formatScheduleDate} writes it. */
export function parseScheduleDate(text: unknown): number | undefined {
  if (typeof text !== 'string' || text.startsWith('0001-01-01')) return undefined;
  const ms = Date.parse(text);
  return Number.isNaN(ms) ? undefined : ms;
}

/**
 * The timer trigger's value (the host's TimerInfo, PascalCase as serialized; the library
 * camel-cases it). `status` is null when the schedule has no monitor.
 */
export function timerInfo(status: ScheduleStatus | null, isPastDue: boolean): Record<string, unknown> {
  return {
    Schedule: { AdjustForDST: true },
    ScheduleStatus: status
      ? {
          Last: formatScheduleDate(status.last),
          Next: formatScheduleDate(status.next),
          LastUpdated: formatScheduleDate(status.lastUpdated),
        }
      : null,
    IsPastDue: isPastDue,
  };
}

/** The IANA time zone schedules use: WEBSITE_TIME_ZONE or TZ when valid, else UTC. */
export function scheduleTimeZone(settings: Readonly<Record<string, string | undefined>>, warn: (message: string) => void): string {
  const wanted = settings['WEBSITE_TIME_ZONE'] || settings['TZ'];
  if (!wanted) return 'UTC';
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: wanted });
    return wanted;
  } catch (err) {
    warn(`Time zone '${wanted}' is not an IANA time zone name fnhost knows (${describeError(err)}); timer schedules use UTC.`);
    return 'UTC';
  }
}
