import type { Limits } from './config.js';
import { type BatchError, limitExceeded } from './errors.js';

/**
 * Limits of requests and jobs. Each is reported as problem+json naming the limit (`limit`) and its
 * value (`limit_value`); see shared/errors.ts limitExceeded.
 */

/**
 * Mini-batches per segment of a job (the most, and the default of BATCH_SEGMENT_SIZE): each segment
 * has a journal blob and a part blob per output file of its own, so no blob of a job grows with the
 * job (see README, "How it works", and shared/jobs/work-area.ts). A blob holds 100,000 uncommitted
 * and 50,000 committed blocks; a segment's journal holds at most a block per attempt (up to 101
 * with retry_settings.max_retries 100) of each of its mini-batches: 256 × 101 < 50,000.
 */
export const SEGMENT_SIZE = 256;

/**
 * The first limit a job of `files` input files cut into `miniBatches` mini-batches exceeds, or
 * undefined. `field` names the request field the problem points at (at invoke), if any.
 */
export function jobSizeProblem(limits: Pick<Limits, 'filesPerJob' | 'miniBatchesPerJob'>, size: { files: number; miniBatches: number }, field?: string): BatchError | undefined {
  if (size.files > limits.filesPerJob) {
    return limitExceeded('limit_exceeded', `The input has ${size.files} files; a job scores at most ${limits.filesPerJob} (BATCH_MAX_FILES_PER_JOB).`, {
      name: 'BATCH_MAX_FILES_PER_JOB',
      value: limits.filesPerJob,
      actual: size.files,
      field,
    });
  }
  if (size.miniBatches > limits.miniBatchesPerJob) {
    return limitExceeded(
      'limit_exceeded',
      `The input makes ${size.miniBatches} mini-batches; a job has at most ${limits.miniBatchesPerJob} (BATCH_MAX_MINI_BATCHES_PER_JOB). Raise settings.mini_batch_size, or split the input into several jobs.`,
      { name: 'BATCH_MAX_MINI_BATCHES_PER_JOB', value: limits.miniBatchesPerJob, actual: size.miniBatches, field },
    );
  }
  return undefined;
}

/**
 * A token bucket per key: `burst` tokens, refilled at `ratePerMinute`. In memory, so each host
 * instance keeps its own buckets (a caller spread over N instances gets up to N times the rate);
 * buckets full again are forgotten. The clock is injected (tests never wait for a window).
 */
export class RateLimiter {
  readonly #ratePerMs: number;
  readonly #burst: number;
  readonly #now: () => number;
  readonly #buckets = new Map<string, { tokens: number; at: number }>();

  constructor(options: { ratePerMinute: number; burst: number; now?: () => number }) {
    this.#ratePerMs = options.ratePerMinute / 60_000;
    this.#burst = options.burst;
    this.#now = options.now ?? Date.now;
  }

  /** Takes a token of `key`'s bucket: undefined when there was one, else the seconds until there is. */
  take(key: string): number | undefined {
    if (this.#ratePerMs <= 0) return undefined;
    const now = this.#now();
    const bucket = this.#buckets.get(key) ?? { tokens: this.#burst, at: now };
    const tokens = Math.min(this.#burst, bucket.tokens + Math.max(0, now - bucket.at) * this.#ratePerMs);
    if (tokens >= 1) {
      this.#buckets.set(key, { tokens: tokens - 1, at: now });
      this.#sweep(now);
      return undefined;
    }
    this.#buckets.set(key, { tokens, at: now });
    return Math.max(1, Math.ceil((1 - tokens) / this.#ratePerMs / 1000));
  }

  /** Forgets buckets that have refilled (a few at a time, so taking stays cheap). */
  #sweep(now: number): void {
    if (this.#buckets.size < 1000) return;
    let n = 0;
    for (const [key, b] of this.#buckets) {
      if (b.tokens + (now - b.at) * this.#ratePerMs >= this.#burst) this.#buckets.delete(key);
      if (++n >= 100) break;
    }
  }

  /** Throws 429 (rate_limited, with the seconds to wait) when `key` has no token left. */
  check(key: string, limits: Pick<Limits, 'invokeRatePerMinute' | 'invokeBurst'>): void {
    const wait = this.take(key);
    if (wait === undefined) return;
    throw limitExceeded('rate_limited', `Too many invocations by this caller: at most ${limits.invokeRatePerMinute} a minute (bursts of ${limits.invokeBurst}). Retry after ${wait} s.`, {
      name: 'BATCH_INVOKE_RATE_PER_MINUTE',
      value: limits.invokeRatePerMinute,
      retryAfterSeconds: wait,
    });
  }
}
