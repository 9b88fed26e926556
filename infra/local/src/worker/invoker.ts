import { randomUUID } from 'node:crypto';
import type { Clock } from '../clock.js';
import { FnHostError, describeError, toError } from '../errors.js';
import type { Logger } from '../log.js';
import { formatTimeSpan } from '../config/timespan.js';
import { BindingData, triggerMetadataOf } from './binding-data.js';
import type { BindingRegistry } from './bindings.js';
import type {
  CoreInvocationContext,
  InvocationState,
  RpcInvocationRequest,
  RpcInvocationResponse,
  RpcLogCategory,
  RpcLogLevel,
  RpcException,
  RpcParameterBinding,
  RpcRetryContext,
  RpcTypedData,
} from './core-types.js';
import { formatDotnetTimeSpan } from './retry-policy.js';
import type { RegisteredFunction, WorkerRuntime } from './worker-runtime.js';

export interface InvokeOptions {
  /** The trigger's value, under the trigger binding's name. */
  triggerData: RpcTypedData | null;
  /**
   * What the trigger offers to binding expressions of the other bindings (built in
   * trigger-binding-data.ts); the worker also gets it as `triggerMetadata`, as from the host.
   */
  bindingData?: BindingData;
  retryContext?: RpcRetryContext;
  invocationId?: string;
  /** Why the function runs, for the log line ("This function was programmatically called via the host APIs."). */
  reason?: string;
  /** Skip input/output bindings: Durable triggers carry none. */
  skipBindings?: boolean;
  /**
   * Runs once the programming model has produced the response, before output bindings are
   * written; if it rejects, the invocation fails and no output is written. The host does the
   * same for an HTTP stream: it waits until the response was forwarded before it takes the
   * invocation's outputs.
   */
  beforeOutputs?: () => Promise<void>;
}

export interface InvocationOutcome {
  invocationId: string;
  functionName: string;
  durationMs: number;
  /** Present when the function succeeded. */
  response?: RpcInvocationResponse;
  /** Present when the function (or a binding, or a hook) failed. */
  error?: Error;
}

/**
 * The failure a retry is about, as the host hands it to the worker: the host wraps the worker's
 * failure ("Result: Failure / Exception: … / Stack: …") in "Exception while executing function".
 */
function retryException(fn: RegisteredFunction, error: Error): RpcException {
  return {
    message: `Exception while executing function: Functions.${fn.name} ---> Result: Failure\nException: ${error.message}\nStack: ${error.stack ?? ''}`,
    stackTrace: error.stack ?? '',
    source: 'fnhost',
  };
}

class CoreContext implements CoreInvocationContext {
  state?: InvocationState;
  invocationContext: unknown;

  constructor(
    readonly invocationId: string,
    readonly request: RpcInvocationRequest,
    readonly metadata: RegisteredFunction['metadata'],
    readonly onLog: (ctx: CoreContext, level: RpcLogLevel, category: RpcLogCategory, message: string) => void,
  ) {}

  log(level: RpcLogLevel, category: RpcLogCategory, message: string): void {
    this.onLog(this, level, category, message);
  }
}

function readOnly(name: string): never {
  throw new TypeError(`Cannot assign to read only property '${name}'`);
}

/** A hook's context object: `readOnly` properties read through their getters and refuse writes. */
function hookContext<T extends object>(readOnlyFields: Record<string, () => unknown>, writable: T): T {
  const target = { ...writable };
  for (const [name, get] of Object.entries(readOnlyFields)) {
    Object.defineProperty(target, name, { get, set: () => readOnly(name), enumerable: true, configurable: false });
  }
  return target;
}

/**
 * Runs one invocation the way the Node.js worker does: the programming model builds the
 * arguments, pre-invocation hooks run, the callback runs, post-invocation hooks run, and the
 * model converts the result into an invocation response. Input and output bindings are resolved
 * around it as the host does.
 */
export class Invoker {
  readonly #runtime: WorkerRuntime;
  readonly #bindings: BindingRegistry;
  readonly #logger: Logger;
  readonly #clock: Clock;
  readonly #functionTimeoutMs: number | undefined;
  readonly #random: (() => number) | undefined;
  /** Cancels of the waits between retries in progress. */
  readonly #waits = new Set<() => void>();
  #stopping = false;

  constructor(options: {
    runtime: WorkerRuntime;
    bindings: BindingRegistry;
    logger: Logger;
    clock: Clock;
    functionTimeoutMs: number | undefined;
    /** Jitter of exponential backoff between retries; tests pass a fixed source. */
    random?: () => number;
  }) {
    this.#runtime = options.runtime;
    this.#bindings = options.bindings;
    this.#logger = options.logger;
    this.#clock = options.clock;
    this.#functionTimeoutMs = options.functionTimeoutMs;
    this.#random = options.random;
  }

  /**
   * Runs the function once, or, when it has a retry policy, again after each failure as the WebJobs
   * SDK's executor does: every attempt gets `retryContext` ({retryCount: 0, maxRetryCount} on the
   * first, with the previous failure from the second on), the delay between attempts comes from the
   * policy on the injected clock, and the outcome is the last attempt's.
   */
  async invoke(fn: RegisteredFunction, options: InvokeOptions): Promise<InvocationOutcome> {
    const policy = fn.retry;
    if (!policy) return this.#attempt(fn, options);
    const nextDelay = policy.delays(this.#random);
    let retryContext: RpcRetryContext = { retryCount: 0, maxRetryCount: policy.maxRetryCount };
    for (;;) {
      const outcome = await this.#attempt(fn, {
        ...options,
        retryContext,
        // Each attempt is a new invocation, as each is a new function instance in the host.
        ...(retryContext.retryCount === 0 ? {} : { invocationId: randomUUID() }),
      });
      const error = outcome.error;
      if (!error) return outcome;
      const attempt = retryContext.retryCount ?? 0;
      if (policy.maxRetryCount !== -1 && attempt >= policy.maxRetryCount) {
        this.#hostLog(fn, 'error', `Function execution failed after '${attempt}' retries.`);
        return outcome;
      }
      const delay = nextDelay();
      this.#hostLog(
        fn,
        'debug',
        `Waiting for \`${formatDotnetTimeSpan(delay)}\` before retrying function execution. Next attempt: '${attempt + 1}'. Max retry count: '${policy.maxRetryCount}'.`,
      );
      if (!(await this.#wait(delay))) {
        this.#hostLog(fn, 'warning', 'Invocation cancelled - exiting retry loop.');
        return outcome;
      }
      retryContext = { retryCount: attempt + 1, maxRetryCount: policy.maxRetryCount, exception: retryException(fn, error) };
    }
  }

  /** Cancels the waits between retries, as host shutdown cancels them: each chain ends with its last failure. */
  stop(): void {
    this.#stopping = true;
    for (const cancel of [...this.#waits]) cancel();
  }

  /** Resolves true after `ms`, or false at once or as soon as the invoker stops. */
  #wait(ms: number): Promise<boolean> {
    if (this.#stopping) return Promise.resolve(false);
    return new Promise((resolve) => {
      const done = (waited: boolean): void => {
        this.#waits.delete(cancel);
        this.#clock.clearTimeout(handle);
        resolve(waited);
      };
      const cancel = (): void => done(false);
      const handle = this.#clock.setTimeout(() => done(true), ms);
      this.#waits.add(cancel);
    });
  }

  #hostLog(fn: RegisteredFunction, level: 'debug' | 'warning' | 'error', message: string): void {
    this.#logger.write({ level, category: 'host', functionName: fn.name, message });
  }

  async #attempt(fn: RegisteredFunction, options: InvokeOptions): Promise<InvocationOutcome> {
    const invocationId = options.invocationId ?? randomUUID();
    const started = this.#clock.now();
    const bindingData = options.bindingData ?? new BindingData();
    let outcome: InvocationOutcome;
    try {
      const response = await this.#withTimeout(fn, this.#run(fn, invocationId, options, bindingData));
      outcome = { invocationId, functionName: fn.name, durationMs: this.#clock.now() - started, response };
    } catch (err) {
      outcome = { invocationId, functionName: fn.name, durationMs: this.#clock.now() - started, error: toError(err) };
    }
    if (outcome.error) {
      this.#logger.write({
        level: 'error',
        category: 'host',
        functionName: fn.name,
        invocationId,
        message: `Executed 'Functions.${fn.name}' (Failed, Id=${invocationId}, Duration=${outcome.durationMs}ms): ${describeError(outcome.error)}`,
      });
    } else {
      this.#logger.write({
        level: 'information',
        category: 'host',
        functionName: fn.name,
        invocationId,
        message: `Executed 'Functions.${fn.name}' (Succeeded, Id=${invocationId}, Duration=${outcome.durationMs}ms)`,
      });
    }
    return outcome;
  }

  async #withTimeout<T>(fn: RegisteredFunction, work: Promise<T>): Promise<T> {
    const limit = this.#functionTimeoutMs;
    if (limit === undefined || limit <= 0) return work;
    let handle: unknown;
    const timeout = new Promise<never>((_, reject) => {
      handle = this.#clock.setTimeout(() => {
        reject(
          new FnHostError(
            'ERR_INVOCATION',
            `Timeout value of ${formatTimeSpan(limit)} was exceeded by function: Functions.${fn.name}`,
          ),
        );
      }, limit);
    });
    try {
      return await Promise.race([work, timeout]);
    } finally {
      this.#clock.clearTimeout(handle);
    }
  }

  async #run(
    fn: RegisteredFunction,
    invocationId: string,
    options: InvokeOptions,
    bindingData: BindingData,
  ): Promise<RpcInvocationResponse> {
    const model = this.#runtime.programmingModel;
    if (!model) {
      throw new FnHostError(
        'ERR_APP_LOAD',
        'No programming model is registered: does the app import "@azure/functions"?',
      );
    }
    const inputData: RpcParameterBinding[] = [{ name: fn.triggerName, data: options.triggerData }];
    if (!options.skipBindings) {
      inputData.push(...(await this.#bindings.resolveInputs(fn, bindingData, invocationId)));
    }
    const request: RpcInvocationRequest = {
      invocationId,
      functionId: fn.metadata.functionId ?? fn.name,
      inputData,
      triggerMetadata: triggerMetadataOf(bindingData),
      traceContext: { traceParent: null, traceState: null, attributes: {} },
      retryContext: options.retryContext ?? null,
    };
    const coreCtx = new CoreContext(invocationId, request, fn.metadata, (ctx, level, category, message) =>
      this.#runtime.log(level, category, message, {
        functionName: fn.name,
        invocationId,
        invocationContext: ctx.invocationContext,
      }),
    );
    const invocationModel = await model.getInvocationModel(coreCtx);
    const { context, inputs: initialInputs } = await invocationModel.getArguments();
    coreCtx.invocationContext = context;
    const runtime = this.#runtime;
    const hookData: Record<string, unknown> = {};
    let callback = fn.callback;
    let inputs = initialInputs;

    // What every hook sees and may not replace, as in the Node.js worker.
    const shared = { hookData: () => hookData, appHookData: () => runtime.appHookData, invocationContext: () => context };
    if (runtime.hasHooks('preInvocation')) {
      const pre = hookContext(shared, { functionCallback: callback, inputs });
      coreCtx.state = 'preInvocationHooks';
      try {
        await runtime.executeHooks('preInvocation', pre);
      } finally {
        coreCtx.state = undefined;
      }
      callback = pre.functionCallback;
      inputs = pre.inputs;
    }

    let result: unknown = null;
    let error: unknown = null;
    coreCtx.state = 'invocation';
    try {
      result = await invocationModel.invokeFunction(context, inputs, callback);
    } catch (err) {
      error = err;
    } finally {
      coreCtx.state = undefined;
    }

    if (runtime.hasHooks('postInvocation')) {
      const post = hookContext(shared, { inputs, result, error });
      coreCtx.state = 'postInvocationHooks';
      try {
        await runtime.executeHooks('postInvocation', post);
      } finally {
        coreCtx.state = undefined;
      }
      result = post.result;
      error = post.error;
    }

    if (error !== null && error !== undefined) throw toError(error);
    const response = await invocationModel.getResponse(context, result);
    await options.beforeOutputs?.();
    if (!options.skipBindings) {
      await this.#bindings.writeOutputs(fn, response, bindingData, invocationId);
    }
    return response;
  }
}

