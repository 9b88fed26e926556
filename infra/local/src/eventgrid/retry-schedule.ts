/**
 * Event Grid's delivery retry schedule: after a failed attempt it waits 10 s, 30 s, 1 min, 5 min,
 * 10 min, 30 min, 1 h, 3 h, 6 h, then every 12 h, each step with a little randomization, until
 * the subscription's `maxDeliveryAttempts` or `eventTimeToLiveInMinutes` runs out. fnhost waits the
 * same steps multiplied by `scale` (EventGrid.retryDelayScale), so local runs retry in seconds.
 */

const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;

export const EVENT_GRID_SCHEDULE_MS: readonly number[] = [10 * SECOND, 30 * SECOND, MINUTE, 5 * MINUTE, 10 * MINUTE, 30 * MINUTE, HOUR, 3 * HOUR, 6 * HOUR];
const THEREAFTER_MS = 12 * HOUR;

/** How far the randomization moves a step, either way. */
const JITTER = 0.1;

/**
 * Webhook answers Event Grid does not retry: the request or the endpoint's configuration is wrong,
 * and no retry can fix it. The event is dead-lettered (fnhost: logged and written to the
 * dead-letter file) at once. Functions are Azure resources, for which 401 is retried.
 */
export const NOT_RETRIED_WEBHOOK = new Set([400, 401, 403, 413]);
export const NOT_RETRIED_FUNCTION = new Set([400, 403, 413]);

/**
 * The wait before attempt `failedAttempts + 1`, after `failedAttempts` failures (1 = the wait
 * before the first retry). `random` is in [0, 1): 0.5 gives the step exactly.
 */
export function retryDelayMs(failedAttempts: number, options: { scale: number; random?: () => number }): number {
  const step = EVENT_GRID_SCHEDULE_MS[failedAttempts - 1] ?? THEREAFTER_MS;
  const random = options.random ?? Math.random;
  const jitter = 1 + (random() * 2 - 1) * JITTER;
  return Math.round(step * options.scale * jitter);
}

export type RetryVerdict = { retry: true; delayMs: number } | { retry: false; why: string };

/**
 * What to do after a failed attempt: wait and retry, or give up (dead-letter) because the answer
 * is one Event Grid does not retry, the attempts are used up, or the event would outlive its
 * time to live by the next attempt.
 */
export function afterFailure(options: {
  failedAttempts: number;
  status: number | undefined;
  notRetried: ReadonlySet<number>;
  maxDeliveryAttempts: number;
  /** When the event was published (ms). */
  publishedAt: number;
  timeToLiveMs: number;
  now: number;
  scale: number;
  random?: () => number;
}): RetryVerdict {
  if (options.status !== undefined && options.notRetried.has(options.status)) {
    return { retry: false, why: `the endpoint answered ${options.status}, which Event Grid does not retry` };
  }
  if (options.failedAttempts >= options.maxDeliveryAttempts) {
    return { retry: false, why: `MaxDeliveryAttemptsExceeded (${options.maxDeliveryAttempts} attempts)` };
  }
  const delayMs = retryDelayMs(options.failedAttempts, { scale: options.scale, ...(options.random ? { random: options.random } : {}) });
  if (options.now + delayMs > options.publishedAt + options.timeToLiveMs) {
    return { retry: false, why: `TimeToLiveExceeded (${Math.round(options.timeToLiveMs / MINUTE)} min)` };
  }
  return { retry: true, delayMs };
}
