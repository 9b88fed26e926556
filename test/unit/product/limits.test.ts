import { HttpRequest, InvocationContext } from '@azure/functions';
import { describe, expect, it } from 'vitest';
import { api, callerKey, readText } from '../../../functions/lib/http.js';
import { loadConfig } from '../../../shared/config.js';
import { BatchError, toProblem } from '../../../shared/errors.js';
import { RateLimiter, jobSizeProblem } from '../../../shared/limits.js';

const storage = { AzureWebJobsStorage: 'UseDevelopmentStorage=true' };

describe('limit settings', () => {
  it('has defaults and reads each setting; the mini-batch cap is not bound by a blob\'s block limit', () => {
    expect(loadConfig({ ...storage }).limits).toEqual({
      requestBodyBytes: 1024 * 1024,
      filesPerJob: 10_000_000,
      miniBatchesPerJob: 1_000_000,
      invokeRatePerMinute: 600,
      invokeBurst: 200,
    });
    expect(
      loadConfig({
        ...storage,
        BATCH_MAX_REQUEST_BODY_BYTES: '2048',
        BATCH_MAX_FILES_PER_JOB: '7',
        BATCH_MAX_MINI_BATCHES_PER_JOB: '3',
        BATCH_INVOKE_RATE_PER_MINUTE: '0',
        BATCH_INVOKE_BURST: '5',
      }).limits,
    ).toEqual({ requestBodyBytes: 2048, filesPerJob: 7, miniBatchesPerJob: 3, invokeRatePerMinute: 0, invokeBurst: 5 });
    expect(loadConfig({ ...storage, BATCH_MAX_MINI_BATCHES_PER_JOB: '5000000' }).limits.miniBatchesPerJob).toBe(5_000_000);
    expect(() => loadConfig({ ...storage, BATCH_MAX_MINI_BATCHES_PER_JOB: '0' })).toThrow(/BATCH_MAX_MINI_BATCHES_PER_JOB/);
    expect(() => loadConfig({ ...storage, BATCH_MAX_REQUEST_BODY_BYTES: '10' })).toThrow(/BATCH_MAX_REQUEST_BODY_BYTES/);
  });
});

describe('job size', () => {
  const limits = { filesPerJob: 10, miniBatchesPerJob: 1_000_000 };

  it('names the files cap, then the mini-batches cap, as problem+json', () => {
    expect(jobSizeProblem(limits, { files: 10, miniBatches: 1_000_000 })).toBeUndefined();
    const files = toProblem(jobSizeProblem(limits, { files: 11, miniBatches: 1 }, 'inputs.x.files'));
    expect(files).toMatchObject({ status: 400, code: 'limit_exceeded', limit: 'BATCH_MAX_FILES_PER_JOB', limit_value: 10, actual: 11, errors: [{ field: 'inputs.x.files' }] });
    const blocks = toProblem(jobSizeProblem(limits, { files: 1, miniBatches: 1_000_001 }));
    expect(blocks).toMatchObject({ status: 400, limit: 'BATCH_MAX_MINI_BATCHES_PER_JOB', limit_value: 1_000_000, actual: 1_000_001 });
    expect(blocks.detail).toContain('mini_batch_size');
    expect(blocks.errors).toBeUndefined();
    const configured = toProblem(jobSizeProblem({ filesPerJob: 10, miniBatchesPerJob: 4 }, { files: 5, miniBatches: 5 }));
    expect(configured).toMatchObject({ limit: 'BATCH_MAX_MINI_BATCHES_PER_JOB', limit_value: 4 });
  });
});

describe('invoke rate (token bucket)', () => {
  it('allows a burst, then one token per interval, per caller; the clock is injected', () => {
    let now = 1_000_000;
    const limiter = new RateLimiter({ ratePerMinute: 6, burst: 3, now: () => now });
    expect([limiter.take('a'), limiter.take('a'), limiter.take('a')]).toEqual([undefined, undefined, undefined]);
    expect(limiter.take('a')).toBe(10); // one token every 10 s
    expect(limiter.take('b')).toBeUndefined(); // another caller has a bucket of its own
    now += 4_000;
    expect(limiter.take('a')).toBe(6);
    now += 6_000;
    expect(limiter.take('a')).toBeUndefined();
    expect(limiter.take('a')).toBe(10);
    now += 3_600_000; // refills to the burst, no further
    expect([limiter.take('a'), limiter.take('a'), limiter.take('a'), limiter.take('a')]).toEqual([undefined, undefined, undefined, 10]);
  });

  it('is off at rate 0, and 429 names the limit with Retry-After', async () => {
    const off = new RateLimiter({ ratePerMinute: 0, burst: 1 });
    for (let i = 0; i < 100; i++) expect(off.take('a')).toBeUndefined();

    const limits = { invokeRatePerMinute: 1, invokeBurst: 1 };
    const limiter = new RateLimiter({ ratePerMinute: 1, burst: 1, now: () => 0 });
    const handler = api(() => {
      limiter.check('k', limits);
      return Promise.resolve({ status: 202 });
    });
    const request = (): HttpRequest => new HttpRequest({ url: 'http://localhost/api/endpoints/e/jobs', method: 'POST' });
    expect((await handler(request(), new InvocationContext())).status).toBe(202);
    const res = await handler(request(), new InvocationContext());
    expect(res.status).toBe(429);
    expect(res.headers).toMatchObject({ 'retry-after': '60', 'content-type': 'application/problem+json' });
    expect(JSON.parse(res.body as string)).toMatchObject({ code: 'rate_limited', limit: 'BATCH_INVOKE_RATE_PER_MINUTE', limit_value: 1, retry_after_seconds: 60 });
  });

  it('keys callers by how they authenticated and who they are', () => {
    expect(callerKey({ name: 'alice', id: 'oid-1', via: 'easy_auth' })).toBe('easy_auth:oid-1');
    expect(callerKey({ name: 'function key', via: 'function_key' })).toBe('function_key:function key');
    expect(callerKey({ name: 'anonymous', via: 'anonymous' })).not.toBe(callerKey({ name: 'anonymous', via: 'easy_auth' }));
  });
});

describe('request body size', () => {
  const body = (text: string, headers: Record<string, string> = {}): HttpRequest =>
    new HttpRequest({ url: 'http://localhost/api/endpoints/e', method: 'PUT', body: { string: text }, headers });

  it('reads a body up to the limit and refuses one over it, by Content-Length or by what arrives', async () => {
    expect(await readText(body('x'.repeat(100)), 100)).toBe('x'.repeat(100));
    expect(await readText(body('é'.repeat(50)), 100)).toBe('é'.repeat(50));
    for (const request of [body('x'.repeat(101)), body('x', { 'content-length': '5000' })]) {
      const err = await readText(request, 100).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(BatchError);
      expect(toProblem(err)).toMatchObject({ status: 413, code: 'payload_too_large', limit: 'BATCH_MAX_REQUEST_BODY_BYTES', limit_value: 100 });
    }
  });
});
