import { afterEach, describe, expect, it } from 'vitest';
import { Logger, type LogRecord } from '../../../infra/local/src/log.js';
import { TimerSubsystem } from '../../../infra/local/src/timer/timer-trigger.js';
import { BindingRegistry } from '../../../infra/local/src/worker/bindings.js';
import type { ProgrammingModel, RpcRetryContext, RpcRetryOptions } from '../../../infra/local/src/worker/core-types.js';
import { settleFunctionStates } from '../../../infra/local/src/worker/function-states.js';
import { Invoker } from '../../../infra/local/src/worker/invoker.js';
import { exponentialDelays, formatDotnetTimeSpan, parseRetryOptions } from '../../../infra/local/src/worker/retry-policy.js';
import { WorkerRuntime } from '../../../infra/local/src/worker/worker-runtime.js';
import { ManualClock } from './manual-clock.js';

describe('retry options', () => {
  it('reads the options the library registers (durations as whole seconds)', () => {
    const fixed = parseRetryOptions({ retryStrategy: 'fixedDelay', maxRetryCount: 3, delayInterval: { seconds: 5 } }, 'f');
    expect(fixed?.strategy).toBe('fixedDelay');
    expect(fixed?.maxRetryCount).toBe(3);
    const next = fixed?.delays();
    expect([next?.(), next?.(), next?.()]).toEqual([5000, 5000, 5000]);

    const exp = parseRetryOptions(
      { retryStrategy: 'exponentialBackoff', maxRetryCount: -1, minimumInterval: { seconds: 2 }, maximumInterval: { seconds: 10 } },
      'f',
    );
    expect(exp).toMatchObject({ strategy: 'exponentialBackoff', maxRetryCount: -1 });
    expect(parseRetryOptions(undefined, 'f')).toBeUndefined();
    expect(parseRetryOptions(null, 'f')).toBeUndefined();
  });

  it('refuses what the host refuses, naming the function', () => {
    const bad: [RpcRetryOptions, RegExp][] = [
      [{ retryStrategy: 'fixedDelay', maxRetryCount: 1 }, /'f'.*fixedDelay.*delayInterval/],
      [{ retryStrategy: 'exponentialBackoff', maxRetryCount: 1, minimumInterval: { seconds: 1 } }, /minimumInterval and retry.maximumInterval/],
      [
        { retryStrategy: 'exponentialBackoff', maxRetryCount: 1, minimumInterval: { seconds: 9 }, maximumInterval: { seconds: 1 } },
        /minimumInterval must not be greater/,
      ],
      [{ retryStrategy: 'fixedDelay', maxRetryCount: -2, delayInterval: { seconds: 1 } }, /maxRetryCount must be an integer of -1 or more/],
      [{ retryStrategy: 'linear' as never, maxRetryCount: 1 }, /unknown retry strategy "linear"/],
    ];
    for (const [options, message] of bad) expect(() => parseRetryOptions(options, 'f')).toThrow(message);
  });

  it('backs off exponentially from the minimum with the SDK jitter, up to the maximum', () => {
    // random 0.5 is a jitter factor of exactly 1: min, min+min, min+2min, min+4min → capped.
    const mid = exponentialDelays(2000, 10_000, () => 0.5);
    expect([mid(), mid(), mid(), mid(), mid()]).toEqual([2000, 4000, 6000, 10_000, 10_000]);
    // The jitter scales each increment by 0.8 to 1.2.
    const low = exponentialDelays(1000, 60_000, () => 0);
    expect([low(), low(), low()]).toEqual([1000, 1800, 2600]);
    const high = exponentialDelays(1000, 60_000, () => 1);
    expect([high(), high(), high()]).toEqual([1000, 2200, 3400]);
  });

  it('prints delays as .NET prints a TimeSpan', () => {
    expect(formatDotnetTimeSpan(5000)).toBe('00:00:05');
    expect(formatDotnetTimeSpan(1500)).toBe('00:00:01.5000000');
    expect(formatDotnetTimeSpan(90_061_000)).toBe('1.01:01:01');
  });
});

interface Attempt {
  at: number;
  retryContext: unknown;
}

/**
 * A programming model shaped like @azure/functions': the context carries `retryContext` converted
 * from the request the way the library converts it (null → undefined), and the handler gets it.
 */
function modelFor(): ProgrammingModel {
  return {
    name: 'test',
    version: '1',
    getInvocationModel(core) {
      const retry = core.request.retryContext;
      const context = { invocationId: core.invocationId, retryContext: retry === null || retry === undefined ? undefined : { ...retry } };
      return {
        getArguments: () => Promise.resolve({ context, inputs: [{}] }),
        invokeFunction: async (ctx, inputs, callback) => await callback(...inputs, ctx),
        getResponse: () => Promise.resolve({ invocationId: core.invocationId, outputData: [], returnValue: null }),
      };
    },
  };
}

interface Harness {
  clock: ManualClock;
  runtime: WorkerRuntime;
  invoker: Invoker;
  logs: LogRecord[];
  timers: TimerSubsystem;
}

const running: TimerSubsystem[] = [];
afterEach(async () => {
  for (const t of running.splice(0)) await t.stop(0);
});

/** Registers timer functions (hourly) the way the library does, with the given retry options and handlers. */
function harness(functions: Record<string, { retry?: RpcRetryOptions; handler: (timer: unknown, context: { retryContext?: RpcRetryContext }) => unknown }>): Harness {
  const clock = new ManualClock('2026-01-01T00:00:30Z');
  const logs: LogRecord[] = [];
  const logger = new Logger({ sink: (r) => logs.push(r), minLevel: 'debug' });
  const runtime = new WorkerRuntime({ logger, hostVersion: 'test' });
  runtime.programmingModel = modelFor();
  for (const [name, f] of Object.entries(functions)) {
    runtime.registerFunction(
      {
        name,
        bindings: { timer: { type: 'timerTrigger', direction: 'in', schedule: '0 0 * * * *' } },
        ...(f.retry ? { retryOptions: f.retry } : {}),
      },
      f.handler as never,
    );
  }
  settleFunctionStates(runtime, { env: {}, logger, httpStreaming: false });
  const invoker = new Invoker({ runtime, bindings: new BindingRegistry(), logger, clock, functionTimeoutMs: undefined, random: () => 0.5 });
  const timers = new TimerSubsystem({ runtime, invoker, logger, clock, dataDir: undefined });
  running.push(timers);
  return { clock, runtime, invoker, logs, timers };
}

const HOUR = Date.parse('2026-01-01T01:00:00Z');
const messages = (logs: LogRecord[], fn: string): string[] => logs.filter((r) => r.functionName === fn && r.category === 'host').map((r) => r.message);

describe('function retry policies on the timer trigger (manual clock)', () => {
  it('runs a failing timer function again after each fixed delay, with the retry context, then gives up', async () => {
    const attempts: Attempt[] = [];
    const h = harness({
      flaky: {
        retry: { retryStrategy: 'fixedDelay', maxRetryCount: 2, delayInterval: { seconds: 5 } },
        handler: (_timer, context) => {
          attempts.push({ at: h.clock.now(), retryContext: context.retryContext });
          throw new Error(`boom ${attempts.length}`);
        },
      },
    });
    await h.timers.start();
    await h.clock.advance(HOUR - h.clock.now() + 60_000);

    expect(attempts.map((a) => a.at - HOUR)).toEqual([0, 5000, 10_000]);
    expect(attempts[0]?.retryContext).toEqual({ retryCount: 0, maxRetryCount: 2 });
    expect(attempts[1]?.retryContext).toMatchObject({ retryCount: 1, maxRetryCount: 2, exception: { source: 'fnhost' } });
    expect(attempts[2]?.retryContext).toMatchObject({ retryCount: 2, maxRetryCount: 2 });
    // Each retry carries the failure before it.
    const exception = (n: number): string => String((attempts[n]?.retryContext as { exception: { message: string } }).exception.message);
    expect(exception(1)).toContain('Exception while executing function: Functions.flaky');
    expect(exception(1)).toContain('boom 1');
    expect(exception(2)).toContain('boom 2');

    const log = messages(h.logs, 'flaky');
    expect(log.filter((m) => m.startsWith("Executed 'Functions.flaky' (Failed"))).toHaveLength(3);
    expect(log).toContain("Waiting for `00:00:05` before retrying function execution. Next attempt: '1'. Max retry count: '2'.");
    expect(log).toContain("Waiting for `00:00:05` before retrying function execution. Next attempt: '2'. Max retry count: '2'.");
    expect(log).toContain("Function execution failed after '2' retries.");

    // The next occurrence starts a new chain.
    await h.clock.advance(3_600_000);
    expect(attempts.map((a) => a.at - HOUR)).toEqual([0, 5000, 10_000, 3_600_000, 3_605_000, 3_610_000]);
    expect(attempts[3]?.retryContext).toEqual({ retryCount: 0, maxRetryCount: 2 });
  });

  it('stops retrying once an attempt succeeds', async () => {
    const attempts: Attempt[] = [];
    const h = harness({
      once: {
        retry: { retryStrategy: 'fixedDelay', maxRetryCount: 5, delayInterval: { seconds: 1 } },
        handler: (_timer, context) => {
          attempts.push({ at: h.clock.now(), retryContext: context.retryContext });
          if (attempts.length === 1) throw new Error('first try fails');
        },
      },
    });
    await h.timers.start();
    await h.clock.advance(HOUR - h.clock.now() + 60_000);
    expect(attempts.map((a) => a.at - HOUR)).toEqual([0, 1000]);
    expect(messages(h.logs, 'once').filter((m) => m.startsWith("Executed 'Functions.once' (Succeeded"))).toHaveLength(1);
  });

  it('waits with exponential backoff, retrying forever with maxRetryCount -1', async () => {
    const attempts: Attempt[] = [];
    const h = harness({
      backoff: {
        retry: { retryStrategy: 'exponentialBackoff', maxRetryCount: -1, minimumInterval: { seconds: 2 }, maximumInterval: { seconds: 10 } },
        handler: (_timer, context) => {
          attempts.push({ at: h.clock.now(), retryContext: context.retryContext });
          if (attempts.length <= 6) throw new Error('not yet');
        },
      },
    });
    await h.timers.start();
    await h.clock.advance(HOUR - h.clock.now() + 60_000);
    // Delays 2, 4, 6, 10, 10, 10 s (jitter fixed at 1).
    expect(attempts.map((a) => (a.at - HOUR) / 1000)).toEqual([0, 2, 6, 12, 22, 32, 42]);
    expect(attempts.at(-1)?.retryContext).toMatchObject({ retryCount: 6, maxRetryCount: -1 });
  });

  it('does not retry a function without a retry policy, and gives it no retry context', async () => {
    const attempts: Attempt[] = [];
    const h = harness({
      plain: {
        handler: (_timer, context) => {
          attempts.push({ at: h.clock.now(), retryContext: context.retryContext });
          throw new Error('fails');
        },
      },
    });
    await h.timers.start();
    await h.clock.advance(HOUR - h.clock.now() + 600_000);
    expect(attempts).toEqual([{ at: HOUR, retryContext: undefined }]);
  });

  it('ends the wait between retries when the host stops', async () => {
    const attempts: Attempt[] = [];
    const h = harness({
      slowRetry: {
        retry: { retryStrategy: 'fixedDelay', maxRetryCount: 3, delayInterval: { seconds: 3600 } },
        handler: (_timer, context) => {
          attempts.push({ at: h.clock.now(), retryContext: context.retryContext });
          throw new Error('fails');
        },
      },
    });
    await h.timers.start();
    await h.clock.advance(HOUR - h.clock.now() + 1000);
    expect(attempts).toHaveLength(1);
    h.invoker.stop();
    await h.timers.stop(0);
    await h.clock.advance(7_200_000);
    expect(attempts).toHaveLength(1);
    expect(messages(h.logs, 'slowRetry')).toContain('Invocation cancelled - exiting retry loop.');
  });
});
