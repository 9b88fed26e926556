import { FnHostError } from '../errors.js';

/**
 * Parses a .NET TimeSpan string as host.json uses them ("00:05:00", "1.02:03:04.5", "00:00:00.250")
 * and returns milliseconds. Plain numbers are taken as seconds, which is what the host does for
 * numeric settings such as `visibilityTimeout`.
 */
export function parseTimeSpan(value: string | number, setting: string): number {
  if (typeof value === 'number') return value * 1000;
  const match = /^(-)?(?:(\d+)\.)?(\d{1,2}):(\d{1,2}):(\d{1,2})(?:\.(\d{1,7}))?$/.exec(value.trim());
  if (!match) {
    throw new FnHostError('ERR_CONFIG', `${setting}: "${value}" is not a TimeSpan such as "00:05:00"`);
  }
  const [, sign, days, hours, minutes, seconds, fraction] = match;
  const ms =
    Number(days ?? 0) * 86_400_000 +
    Number(hours) * 3_600_000 +
    Number(minutes) * 60_000 +
    Number(seconds) * 1000 +
    (fraction ? Number(`0.${fraction}`) * 1000 : 0);
  return sign ? -ms : ms;
}

/** Formats milliseconds as a TimeSpan ("d.hh:mm:ss"), as the Durable payload expects. */
export function formatTimeSpan(ms: number): string {
  const totalSeconds = Math.floor(ms / 1000);
  const days = Math.floor(totalSeconds / 86_400);
  const rest = totalSeconds % 86_400;
  const hh = String(Math.floor(rest / 3600)).padStart(2, '0');
  const mm = String(Math.floor((rest % 3600) / 60)).padStart(2, '0');
  const ss = String(rest % 60).padStart(2, '0');
  return `${days > 0 ? `${days}.` : ''}${hh}:${mm}:${ss}`;
}
