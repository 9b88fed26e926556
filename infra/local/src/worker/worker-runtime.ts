import { FnHostError, describeError } from '../errors.js';
import type { Logger } from '../log.js';
import type {
  FunctionCallback,
  FunctionMetadata,
  HookCallback,
  HookData,
  HookName,
  ProgrammingModel,
  RpcBindingInfo,
  RpcFunctionMetadata,
  RpcLogCategory,
  RpcLogLevel,
} from './core-types.js';
import type { RetryPolicy } from './retry-policy.js';

/** A function the app registered, with what the host needs to route triggers to it. */
export interface RegisteredFunction {
  name: string;
  metadata: RpcFunctionMetadata;
  bindings: Record<string, RpcBindingInfo>;
  callback: FunctionCallback;
  triggerName: string;
  trigger: RpcBindingInfo;
  /** The trigger type as registered, e.g. `httpTrigger`, `orchestrationTrigger`. */
  triggerType: string;
  /** The entry file that registered it, for error messages. */
  scriptFile: string | undefined;
  /**
   * `AzureWebJobs.<name>.Disabled` is set: its trigger does not fire, and its HTTP route answers
   * 404 to all but admin callers. Decided by the host at start.
   */
  disabled: boolean;
  /** Why the function cannot run at all (an unsupported trigger, invalid options); decided by the host at start. */
  error: string | undefined;
  /** The retry policy the host applies to its failed invocations; decided by the host at start. */
  retry: RetryPolicy | undefined;
}

/** Mirrors `Disposable` of the worker contract. */
export class Disposable {
  #callOnDispose: (() => unknown) | undefined;

  static from(...likes: { dispose: () => unknown }[]): Disposable {
    let items: typeof likes | undefined = likes;
    return new Disposable(() => {
      if (!items) return;
      for (const item of items) item.dispose();
      items = undefined;
    });
  }

  constructor(callOnDispose: () => unknown) {
    this.#callOnDispose = callOnDispose;
  }

  dispose(): void {
    const fn = this.#callOnDispose;
    this.#callOnDispose = undefined;
    fn?.();
  }
}

export interface LogContext {
  functionName?: string;
  invocationId?: string;
  invocationContext?: unknown;
}

const HOOK_NAMES: readonly HookName[] = ['preInvocation', 'postInvocation', 'appStart', 'appTerminate', 'log'];

function isTriggerType(type: unknown): type is string {
  return typeof type === 'string' && /trigger$/i.test(type);
}

/**
 * The in-process side of the Functions worker: the registry of functions, lifecycle hooks and
 * the programming model that `@azure/functions` installs. {@link coreApi} is the object apps get
 * when they require `@azure/functions-core`.
 */
export class WorkerRuntime {
  readonly functions = new Map<string, RegisteredFunction>();
  readonly appHookData: HookData = {};
  readonly appLevelOnlyHookData: HookData = {};
  programmingModel: ProgrammingModel | undefined;
  /** The entry file being loaded; registrations are attributed to it. */
  currentEntryPoint: string | undefined;

  readonly #logger: Logger;
  readonly #hooks = new Map<HookName, HookCallback[]>(HOOK_NAMES.map((n) => [n, []]));
  #registrationOpen = true;
  readonly #coreApi: Record<string, unknown>;

  constructor(options: { logger: Logger; hostVersion: string }) {
    this.#logger = options.logger;
    this.#coreApi = {
      version: '3.12.0',
      hostVersion: options.hostVersion,
      registerFunction: (metadata: FunctionMetadata, callback: FunctionCallback) =>
        this.registerFunction(metadata, callback),
      registerHook: (hookName: string, callback: HookCallback) => this.registerHook(hookName, callback),
      setProgrammingModel: (model: ProgrammingModel) => {
        if (this.programmingModel) {
          this.#logger.debug(`Setting Node.js programming model to "${model.name}" version "${model.version}"`);
        }
        this.programmingModel = model;
      },
      getProgrammingModel: () => this.programmingModel,
      log: (level: RpcLogLevel, category: RpcLogCategory, message: string) => this.log(level, category, message, {}),
      Disposable,
    };
  }

  /** The module object served for `require('@azure/functions-core')`. */
  get coreApi(): Record<string, unknown> {
    return this.#coreApi;
  }

  registerFunction(metadata: FunctionMetadata, callback: FunctionCallback): Disposable {
    if (!this.#registrationOpen) {
      throw new FnHostError(
        'ERR_APP_LOAD',
        `A function can only be registered during app startup (tried to register "${metadata.name}").`,
      );
    }
    if (typeof metadata.name !== 'string' || metadata.name.length === 0) {
      throw new FnHostError('ERR_APP_LOAD', 'A function must have a name.');
    }
    const key = metadata.name.toLowerCase();
    if (this.functions.has(key)) {
      throw new FnHostError('ERR_APP_LOAD', `A function with name "${metadata.name}" has already been registered.`);
    }
    const triggers = Object.entries(metadata.bindings).filter(([, b]) => isTriggerType(b.type));
    const first = triggers[0];
    if (!first || triggers.length !== 1) {
      throw new FnHostError(
        'ERR_APP_LOAD',
        `Function "${metadata.name}" must have exactly one trigger binding, found ${triggers.length}.`,
      );
    }
    const [triggerName, trigger] = first;
    const registered: RegisteredFunction = {
      name: metadata.name,
      metadata: {
        name: metadata.name,
        functionId: metadata.functionId ?? metadata.name,
        bindings: metadata.bindings,
        retryOptions: metadata.retryOptions ?? null,
        scriptFile: this.currentEntryPoint ?? null,
      },
      bindings: metadata.bindings,
      callback,
      triggerName,
      trigger,
      triggerType: String(trigger.type),
      scriptFile: this.currentEntryPoint,
      disabled: false,
      error: undefined,
      retry: undefined,
    };
    this.functions.set(key, registered);
    return new Disposable(() => this.functions.delete(key));
  }

  registerHook(hookName: string, callback: HookCallback): Disposable {
    const list = this.#hooks.get(hookName as HookName);
    if (!list) {
      const err = new RangeError(`Unrecognized hook "${hookName}"`);
      (err as RangeError & { isAzureFunctionsSystemError: boolean }).isAzureFunctionsSystemError = true;
      throw err;
    }
    list.push(callback);
    return new Disposable(() => {
      const i = list.indexOf(callback);
      if (i >= 0) list.splice(i, 1);
    });
  }

  /** Registration closes once the app has started, as in the real worker. */
  closeRegistration(): void {
    this.#registrationOpen = false;
  }

  getFunction(name: string): RegisteredFunction | undefined {
    return this.functions.get(name.toLowerCase());
  }

  /**
   * The functions of one trigger type that run: disabled functions and functions in error are left
   * out, unless `includeDisabled` (HTTP routes of disabled functions still answer admin callers).
   */
  functionsWithTrigger(triggerType: string, options: { includeDisabled?: boolean } = {}): RegisteredFunction[] {
    const wanted = triggerType.toLowerCase();
    return [...this.functions.values()].filter(
      (f) => f.triggerType.toLowerCase() === wanted && f.error === undefined && (options.includeDisabled === true || !f.disabled),
    );
  }

  /** Runs hooks in registration order; a throwing hook stops the chain, as in the real worker. */
  async executeHooks(name: Exclude<HookName, 'log'>, context: object): Promise<void> {
    const list = [...(this.#hooks.get(name) ?? [])];
    for (const hook of list) {
      await hook(context);
    }
  }

  hasHooks(name: HookName): boolean {
    return (this.#hooks.get(name)?.length ?? 0) > 0;
  }

  /** Routes a log through `log` hooks (which may rewrite user logs) to the host logger. */
  log(level: RpcLogLevel, category: RpcLogCategory, message: string, where: LogContext): void {
    let finalLevel = level;
    let finalMessage = message;
    const hooks = this.#hooks.get('log') ?? [];
    if (hooks.length > 0) {
      const ctx = {
        hookData: {} as HookData,
        appHookData: this.appHookData,
        invocationContext: where.invocationContext,
        category,
        level,
        message,
      };
      for (const hook of [...hooks]) {
        try {
          hook(ctx);
        } catch (err) {
          this.#logger.warn(`A log hook threw: ${describeError(err)}`);
        }
      }
      if (category === 'user') {
        finalLevel = ctx.level;
        finalMessage = ctx.message;
      }
    }
    this.#logger.write({
      level: finalLevel,
      category: category === 'user' ? 'user' : 'system',
      ...(where.functionName === undefined ? {} : { functionName: where.functionName }),
      ...(where.invocationId === undefined ? {} : { invocationId: where.invocationId }),
      message: finalMessage,
    });
  }
}
