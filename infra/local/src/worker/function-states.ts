import { describeError } from '../errors.js';
import type { Logger } from '../log.js';
import { parseRetryOptions } from './retry-policy.js';
import type { RegisteredFunction, WorkerRuntime } from './worker-runtime.js';

/** Trigger types fnhost runs (lower case). */
const SUPPORTED_TRIGGERS = new Set([
  'httptrigger',
  'eventgridtrigger',
  'queuetrigger',
  'blobtrigger',
  'timertrigger',
  'orchestrationtrigger',
  'activitytrigger',
  'entitytrigger',
]);

/**
 * Triggers whose bindings carry the WebJobs SDK's [SupportsRetry]: timer, and (not run by fnhost)
 * Event Hubs, Kafka and Cosmos DB. The SDK still applies a retry policy to any other trigger but
 * warns that it soon will not.
 */
const RETRY_SUPPORTED_TRIGGERS = new Set(['timertrigger']);

/** Durable triggers: their retries are the orchestration's business (callActivityWithRetry). */
const DURABLE_TRIGGERS = new Set(['orchestrationtrigger', 'activitytrigger', 'entitytrigger']);

/**
 * Whether `AzureWebJobs.<name>.Disabled` (or `AzureWebJobs_<name>_Disabled`, for environments
 * that cannot hold dots) is "true" or "1". Setting names are matched case-insensitively, as .NET
 * configuration matches them.
 */
export function isDisabledBySetting(functionName: string, env: NodeJS.ProcessEnv): boolean {
  const names = new Set([`azurewebjobs.${functionName}.disabled`, `azurewebjobs_${functionName}_disabled`].map((n) => n.toLowerCase()));
  for (const [key, value] of Object.entries(env)) {
    if (value === undefined || !names.has(key.toLowerCase())) continue;
    const v = value.trim().toLowerCase();
    if (v === 'true' || v === '1') return true;
  }
  return false;
}

export interface FunctionStateOptions {
  /** App settings: local.settings.json Values merged into the environment. */
  env: NodeJS.ProcessEnv;
  logger: Logger;
  /** With HTTP streaming a request body is forwarded once, so an HTTP function cannot run again. */
  httpStreaming: boolean;
}

function settle(fn: RegisteredFunction, options: FunctionStateOptions): void {
  const { logger } = options;
  const trigger = fn.triggerType.toLowerCase();
  if (!SUPPORTED_TRIGGERS.has(trigger)) {
    fn.error = `${fn.triggerType} is not supported by fnhost`;
    logger.warn(`Function '${fn.name}' (${fn.triggerType}): not supported by fnhost, will not run.`);
    return;
  }
  try {
    const retry = parseRetryOptions(fn.metadata.retryOptions, fn.name);
    if (retry && DURABLE_TRIGGERS.has(trigger)) {
      logger.warn(`Function '${fn.name}': fnhost does not apply retry options to ${fn.triggerType} functions; use the orchestration's retry options.`);
    } else if (retry && trigger === 'httptrigger' && options.httpStreaming) {
      logger.warn(`Function '${fn.name}': retry options are not applied with HTTP streaming, where a request body can be read only once.`);
    } else if (retry) {
      fn.retry = retry;
      if (!RETRY_SUPPORTED_TRIGGERS.has(trigger)) {
        // The SDK's own words: it applies the policy, and says this trigger will lose it.
        logger.warn(`Soon retries will not be supported for function 'Functions.${fn.name}'. For more information, please visit http://aka.ms/func-retry-policies.`);
      }
    }
  } catch (err) {
    fn.error = describeError(err);
    logger.error(`The '${fn.name}' function is in error: ${fn.error}`);
    return;
  }
  fn.disabled = isDisabledBySetting(fn.name, options.env);
}

/**
 * Decides, once the app has registered its functions, which of them run: unsupported triggers and
 * invalid retry options put a function in error (reported, never run), `AzureWebJobs.<name>.Disabled`
 * disables it, and valid retry options become its retry policy.
 */
export function settleFunctionStates(runtime: WorkerRuntime, options: FunctionStateOptions): void {
  for (const fn of runtime.functions.values()) settle(fn, options);
}
