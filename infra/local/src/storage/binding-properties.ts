import type { Clock } from '../clock.js';
import { FnHostError } from '../errors.js';
import { resolveBindingTemplate } from '../worker/binding-expressions.js';
import type { BindingCall } from '../worker/bindings.js';

/**
 * Reads a string property of a binding (`path`, `queueName`, `tableName`, ...) with `%setting%`
 * and `{expression}` resolved for this invocation; undefined when the app did not set it.
 */
export function bindingProperty(
  call: BindingCall,
  property: string,
  clock: Clock,
  escapeValue?: (value: string) => string,
): string | undefined {
  const raw = call.binding[property];
  if (raw === undefined || raw === null || raw === '') return undefined;
  if (typeof raw !== 'string' && typeof raw !== 'number') {
    throw new FnHostError('ERR_BINDING', `Binding property '${property}' must be a string.`);
  }
  return resolveBindingTemplate(String(raw), {
    bindingData: call.bindingData,
    functionName: call.fn.name,
    now: () => clock.now(),
    ...(escapeValue ? { escapeValue } : {}),
  });
}

/** Like {@link bindingProperty}, for properties the binding cannot work without. */
export function requiredBindingProperty(call: BindingCall, property: string, clock: Clock): string {
  const value = bindingProperty(call, property, clock);
  if (value === undefined || value === '') {
    throw new FnHostError('ERR_BINDING', `The ${String(call.binding.type)} binding '${call.bindingName}' needs a '${property}'.`);
  }
  return value;
}

/** The HTTP status of a storage SDK error (RestError), if it has one. */
export function statusOf(err: unknown): number | undefined {
  if (typeof err === 'object' && err !== null && 'statusCode' in err) {
    const status = (err).statusCode;
    return typeof status === 'number' ? status : undefined;
  }
  return undefined;
}

/** The storage error code of an SDK error (`BlobNotFound`, `TableNotFound`, ...), if it has one. */
export function storageCodeOf(err: unknown): string | undefined {
  if (typeof err === 'object' && err !== null && 'code' in err) {
    const code = (err).code;
    if (typeof code === 'string') return code;
  }
  return undefined;
}
