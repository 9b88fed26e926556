import { FnHostError } from '../errors.js';
import type { RpcDuration, RpcRetryOptions } from './core-types.js';

/**
 * A function-level retry policy (`retry: { strategy, maxRetryCount, … }`), applied the way the
 * WebJobs SDK applies `FixedDelayRetry`/`ExponentialBackoffRetry`: a failed invocation runs again
 * after a delay, up to `maxRetryCount` more times (-1: until it succeeds).
 */
export interface RetryPolicy {
  strategy: 'fixedDelay' | 'exponentialBackoff';
  maxRetryCount: number;
  /**
   * The delays of one chain of attempts, in milliseconds. Exponential backoff keeps its state per
   * chain, as the SDK keeps it in each chain's RetryContext.
   */
  delays(random?: () => number): () => number;
}

/** The SDK's randomization of exponential backoff: each increment is scaled by 0.8–1.2. */
const RANDOMIZATION_FACTOR = 0.2;

function durationMs(value: RpcDuration | null | undefined, name: string, functionName: string): number | undefined {
  if (value === null || value === undefined) return undefined;
  const seconds = Number(value.seconds ?? 0);
  const nanos = Number(value.nanos ?? 0);
  const ms = seconds * 1000 + nanos / 1e6;
  if (!Number.isFinite(ms) || ms < 0) {
    throw new FnHostError('ERR_CONFIG', `Function '${functionName}': retry.${name} must be a non-negative duration.`);
  }
  return Math.round(ms);
}

/**
 * Reads the retry options a function registered (the library sends them in RPC form: durations as
 * `{ seconds }`). Returns undefined when there are none; throws an FnHostError naming what is wrong
 * when they are invalid, where the host puts the function in error.
 */
export function parseRetryOptions(options: RpcRetryOptions | null | undefined, functionName: string): RetryPolicy | undefined {
  if (options === null || options === undefined) return undefined;
  const raw = options.retryStrategy as unknown;
  let strategy: RetryPolicy['strategy'];
  if (raw === 'fixedDelay' || raw === 1) strategy = 'fixedDelay';
  // Over gRPC an unset enum is its first value, exponential_backoff (0); fixed_delay is 1.
  else if (raw === 'exponentialBackoff' || raw === 0 || raw === null || raw === undefined) strategy = 'exponentialBackoff';
  else {
    throw new FnHostError('ERR_CONFIG', `Function '${functionName}': unknown retry strategy ${JSON.stringify(raw)} (use 'fixedDelay' or 'exponentialBackoff').`);
  }
  // An unset int32 arrives as 0 over gRPC: no retries.
  const maxRetryCount = options.maxRetryCount ?? 0;
  if (!Number.isInteger(maxRetryCount) || maxRetryCount < -1) {
    throw new FnHostError('ERR_CONFIG', `Function '${functionName}': retry.maxRetryCount must be an integer of -1 or more, got ${String(maxRetryCount)}.`);
  }
  if (strategy === 'fixedDelay') {
    const delay = durationMs(options.delayInterval, 'delayInterval', functionName);
    if (delay === undefined) {
      throw new FnHostError('ERR_CONFIG', `Function '${functionName}': the fixedDelay retry strategy needs retry.delayInterval.`);
    }
    return { strategy, maxRetryCount, delays: () => () => delay };
  }
  const min = durationMs(options.minimumInterval, 'minimumInterval', functionName);
  const max = durationMs(options.maximumInterval, 'maximumInterval', functionName);
  if (min === undefined || max === undefined) {
    throw new FnHostError(
      'ERR_CONFIG',
      `Function '${functionName}': the exponentialBackoff retry strategy needs retry.minimumInterval and retry.maximumInterval.`,
    );
  }
  if (min > max) {
    throw new FnHostError('ERR_CONFIG', `Function '${functionName}': retry.minimumInterval must not be greater than retry.maximumInterval.`);
  }
  return { strategy, maxRetryCount, delays: (random = Math.random) => exponentialDelays(min, max, random) };
}

/**
 * The SDK's randomized exponential backoff (its delta is the minimum interval): the first retry
 * waits the minimum, each later one adds min × 2^(n-1) × (0.8–1.2), until the maximum is reached.
 */
export function exponentialDelays(minMs: number, maxMs: number, random: () => number): () => number {
  let current = 0;
  let exponent = 0;
  return () => {
    if (current !== maxMs) {
      let next = minMs;
      if (exponent > 0) {
        const factor = 1 - RANDOMIZATION_FACTOR + random() * 2 * RANDOMIZATION_FACTOR;
        next += factor * 2 ** (exponent - 1) * minMs;
      }
      if (next < maxMs) {
        current = next;
        exponent++;
      } else {
        current = maxMs;
      }
    }
    return Math.round(current);
  };
}

/** A .NET TimeSpan as `TimeSpan.ToString()` prints it in the host's retry log ("00:00:05", "00:00:01.5000000"). */
export function formatDotnetTimeSpan(ms: number): string {
  const ticks = Math.round(ms * 10_000);
  const totalSeconds = Math.floor(ticks / 10_000_000);
  const fraction = ticks % 10_000_000;
  const days = Math.floor(totalSeconds / 86_400);
  const hh = String(Math.floor((totalSeconds % 86_400) / 3600)).padStart(2, '0');
  const mm = String(Math.floor((totalSeconds % 3600) / 60)).padStart(2, '0');
  const ss = String(totalSeconds % 60).padStart(2, '0');
  return `${days > 0 ? `${days}.` : ''}${hh}:${mm}:${ss}${fraction > 0 ? `.${String(fraction).padStart(7, '0')}` : ''}`;
}
