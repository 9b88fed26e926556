import { describe, expect, it } from 'vitest';
import { KeyStore } from '../../../infra/local/src/http/keys.js';
import { Logger, type LogRecord } from '../../../infra/local/src/log.js';
import { functionsListing, hostInstanceId, lockLeaseLine } from '../../../infra/local/src/startup-lines.js';
import type { FunctionMetadata } from '../../../infra/local/src/worker/core-types.js';
import { isDisabledBySetting, settleFunctionStates } from '../../../infra/local/src/worker/function-states.js';
import { WorkerRuntime } from '../../../infra/local/src/worker/worker-runtime.js';

function runtimeWith(functions: FunctionMetadata[], env: NodeJS.ProcessEnv = {}, httpStreaming = false): { runtime: WorkerRuntime; logs: LogRecord[] } {
  const logs: LogRecord[] = [];
  const logger = new Logger({ sink: (r) => logs.push(r), minLevel: 'debug' });
  const runtime = new WorkerRuntime({ logger, hostVersion: 'test' });
  for (const metadata of functions) runtime.registerFunction(metadata, () => undefined);
  settleFunctionStates(runtime, { env, logger, httpStreaming });
  return { runtime, logs };
}

const http = (name: string, extra: Record<string, unknown> = {}): FunctionMetadata => ({
  name,
  bindings: {
    req: { type: 'httpTrigger', direction: 'in', authLevel: 'anonymous', methods: ['GET', 'POST'], ...extra },
    $return: { type: 'http', direction: 'out' },
  },
});
const trigger = (name: string, type: string, retryOptions?: FunctionMetadata['retryOptions']): FunctionMetadata => ({
  name,
  bindings: { t: { type, direction: 'in' } },
  ...(retryOptions ? { retryOptions } : {}),
});
const texts = (logs: LogRecord[], level: LogRecord['level']): string[] => logs.filter((r) => r.level === level).map((r) => r.message);

describe('AzureWebJobs.<function>.Disabled', () => {
  it('is true for "true" or "1", in either spelling of the setting name, whatever the case', () => {
    expect(isDisabledBySetting('orders', { 'AzureWebJobs.orders.Disabled': 'true' })).toBe(true);
    expect(isDisabledBySetting('orders', { 'AzureWebJobs.orders.Disabled': '1' })).toBe(true);
    expect(isDisabledBySetting('Orders', { 'azurewebjobs.orders.disabled': 'TRUE' })).toBe(true);
    expect(isDisabledBySetting('orders', { AzureWebJobs_orders_Disabled: 'true' })).toBe(true);
    expect(isDisabledBySetting('orders', { 'AzureWebJobs.orders.Disabled': 'false' })).toBe(false);
    expect(isDisabledBySetting('orders', { 'AzureWebJobs.orders.Disabled': '0' })).toBe(false);
    expect(isDisabledBySetting('orders', { 'AzureWebJobs.orders.Disabled': 'yes' })).toBe(false);
    expect(isDisabledBySetting('orders', { 'AzureWebJobs.other.Disabled': 'true' })).toBe(false);
  });

  it('leaves a disabled function out of its trigger, except for HTTP routes', () => {
    const { runtime } = runtimeWith([trigger('tick', 'timerTrigger'), trigger('tock', 'timerTrigger'), http('page')], {
      'AzureWebJobs.tick.Disabled': 'true',
      'AzureWebJobs.page.Disabled': '1',
    });
    expect(runtime.functionsWithTrigger('timerTrigger').map((f) => f.name)).toEqual(['tock']);
    expect(runtime.functionsWithTrigger('httpTrigger')).toEqual([]);
    expect(runtime.functionsWithTrigger('httpTrigger', { includeDisabled: true }).map((f) => [f.name, f.disabled])).toEqual([['page', true]]);
  });
});

describe('functions fnhost cannot run', () => {
  it('reports each unsupported trigger by name and type, and runs none of them', () => {
    const { runtime, logs } = runtimeWith([
      trigger('changes', 'cosmosDBTrigger'),
      trigger('events', 'eventHubTrigger'),
      trigger('orders', 'serviceBusTrigger'),
      trigger('rows', 'sqlTrigger'),
      trigger('tool', 'mcpToolTrigger'),
      trigger('tick', 'timerTrigger'),
    ]);
    expect(texts(logs, 'warning')).toEqual([
      "Function 'changes' (cosmosDBTrigger): not supported by fnhost, will not run.",
      "Function 'events' (eventHubTrigger): not supported by fnhost, will not run.",
      "Function 'orders' (serviceBusTrigger): not supported by fnhost, will not run.",
      "Function 'rows' (sqlTrigger): not supported by fnhost, will not run.",
      "Function 'tool' (mcpToolTrigger): not supported by fnhost, will not run.",
    ]);
    expect(runtime.functionsWithTrigger('cosmosDBTrigger')).toEqual([]);
    expect(runtime.getFunction('tick')?.error).toBeUndefined();
  });

  it('puts a function with invalid retry options in error, as the host does', () => {
    const { runtime, logs } = runtimeWith([trigger('tick', 'timerTrigger', { retryStrategy: 'fixedDelay', maxRetryCount: 2 })]);
    expect(runtime.getFunction('tick')?.error).toMatch(/delayInterval/);
    expect(runtime.functionsWithTrigger('timerTrigger')).toEqual([]);
    expect(texts(logs, 'error')[0]).toMatch(/^The 'tick' function is in error: .*delayInterval/);
  });
});

describe('which triggers get a retry policy', () => {
  const fixed = { retryStrategy: 'fixedDelay' as const, maxRetryCount: 1, delayInterval: { seconds: 1 } };

  it('applies it to timers silently, and to other triggers with the SDK warning', () => {
    const { runtime, logs } = runtimeWith([trigger('tick', 'timerTrigger', fixed), trigger('work', 'queueTrigger', fixed), http('page')]);
    expect(runtime.getFunction('tick')?.retry?.maxRetryCount).toBe(1);
    expect(runtime.getFunction('work')?.retry?.maxRetryCount).toBe(1);
    expect(runtime.getFunction('page')?.retry).toBeUndefined();
    expect(texts(logs, 'warning')).toEqual([
      "Soon retries will not be supported for function 'Functions.work'. For more information, please visit http://aka.ms/func-retry-policies.",
    ]);
  });

  it('does not apply it to durable triggers, nor to HTTP when requests stream', () => {
    const { runtime, logs } = runtimeWith(
      [trigger('act', 'activityTrigger', fixed), { ...http('page'), retryOptions: fixed }],
      {},
      true,
    );
    expect(runtime.getFunction('act')?.retry).toBeUndefined();
    expect(runtime.getFunction('page')?.retry).toBeUndefined();
    expect(texts(logs, 'warning')).toHaveLength(2);
  });
});

describe('start-up lines', () => {
  it('reports the instance id the SDK derives from the machine name, or WEBSITE_INSTANCE_ID', () => {
    // hash = 23 * 31 + 'a' (97) = 810 = 0x32A
    expect(hostInstanceId({}, 'a')).toBe(`${'0'.repeat(29)}32A`);
    // Only the name up to the first dot counts; the 32-bit hash wraps like .NET's unchecked int.
    expect(hostInstanceId({}, 'a.example.com')).toBe(hostInstanceId({}, 'a'));
    expect(hostInstanceId({}, 'build-agent-0042')).toMatch(/^0{24}[0-9A-F]{8}$/);
    expect(hostInstanceId({ WEBSITE_INSTANCE_ID: 'x'.repeat(40) }, 'a')).toBe('x'.repeat(32));
    expect(lockLeaseLine('0000000000000000000000000000032A')).toBe("Host lock lease acquired by instance ID '0000000000000000000000000000032A'.");
  });

  it('lists functions in the Functions: format of func start', () => {
    const { runtime } = runtimeWith(
      [
        http('hello'),
        http('items', { route: 'items/{id:int}', methods: ['get', 'delete'], authLevel: 'function' }),
        trigger('tick', 'timerTrigger'),
        http('off'),
        trigger('changes', 'cosmosDBTrigger'),
      ],
      { 'AzureWebJobs.off.Disabled': 'true' },
    );
    const lines = functionsListing(runtime.functions.values(), {
      baseUrl: 'http://127.0.0.1:7071',
      routePrefix: 'api',
      keyFor: (fn) => (fn.name === 'items' ? 'KEY' : undefined),
    });
    expect(lines).toEqual([
      '',
      'Functions:',
      '',
      '\thello: [GET,POST] http://127.0.0.1:7071/api/hello',
      '',
      '\titems: [GET,DELETE] http://127.0.0.1:7071/api/items/{id:int}?code=KEY',
      '',
      '\ttick: timerTrigger',
      '',
      'Function off is disabled.',
    ]);
    expect(functionsListing([], { baseUrl: 'http://h', routePrefix: '', keyFor: () => undefined })).toEqual([]);
  });
});

describe('keys', () => {
  it('grant admin access to every request when not enforced, as func start without --enableAuth', () => {
    const enforced = KeyStore.load({ file: undefined, settings: { master: 'm' }, functionNames: ['f'] });
    expect(enforced.levelOf(undefined, { functionName: 'f' })).toBe('anonymous');
    expect(enforced.levelOf('m', {})).toBe('admin');
    const open = KeyStore.load({ file: undefined, settings: { master: 'm' }, functionNames: ['f'], enforced: false });
    expect(open.levelOf(undefined, { functionName: 'f' })).toBe('admin');
    expect(open.levelOf('wrong', { systemName: 'durabletask_extension' })).toBe('admin');
  });
});
