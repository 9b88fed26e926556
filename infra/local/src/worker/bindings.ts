import { FnHostError, describeError } from '../errors.js';
import type { BindingData } from './binding-data.js';
import type { RpcBindingInfo, RpcInvocationResponse, RpcParameterBinding, RpcTypedData } from './core-types.js';
import type { RegisteredFunction } from './worker-runtime.js';

export interface BindingCall {
  fn: RegisteredFunction;
  bindingName: string;
  binding: RpcBindingInfo;
  /** What the trigger offers to binding expressions (trigger-binding-data.ts). */
  bindingData: BindingData;
  invocationId: string;
}

/** Supplies the value of an input binding of one type before an invocation. */
export interface InputBindingProvider {
  readonly type: string;
  resolve(call: BindingCall): Promise<RpcTypedData | null | undefined>;
}

/** Writes what an invocation returned for an output binding of one type. */
export interface OutputBindingProvider {
  readonly type: string;
  write(call: BindingCall, data: RpcTypedData): Promise<void>;
}

/** Output binding types that their trigger handles itself (the HTTP response). */
const TRIGGER_OWNED_OUTPUTS = new Set(['http']);

/**
 * Resolves input bindings and writes output bindings for every trigger type, so a trigger only
 * produces its own input and binding data.
 */
export class BindingRegistry {
  readonly #inputs = new Map<string, InputBindingProvider>();
  readonly #outputs = new Map<string, OutputBindingProvider>();

  addInput(provider: InputBindingProvider): void {
    this.#inputs.set(provider.type.toLowerCase(), provider);
  }

  addOutput(provider: OutputBindingProvider): void {
    this.#outputs.set(provider.type.toLowerCase(), provider);
  }

  /** Binding types the app uses that nothing here can serve, for a start-up warning. */
  unsupported(fn: RegisteredFunction): string[] {
    const missing: string[] = [];
    for (const [name, binding] of Object.entries(fn.bindings)) {
      if (name === fn.triggerName) continue;
      const type = String(binding.type ?? '').toLowerCase();
      if (binding.direction === 'in' && !this.#inputs.has(type)) missing.push(`${name} (${type} input)`);
      if (binding.direction === 'out' && !TRIGGER_OWNED_OUTPUTS.has(type) && !this.#outputs.has(type)) {
        missing.push(`${name} (${type} output)`);
      }
    }
    return missing;
  }

  async resolveInputs(fn: RegisteredFunction, bindingData: BindingData, invocationId: string): Promise<RpcParameterBinding[]> {
    const result: RpcParameterBinding[] = [];
    for (const [bindingName, binding] of Object.entries(fn.bindings)) {
      if (bindingName === fn.triggerName || binding.direction !== 'in') continue;
      const provider = this.#inputs.get(String(binding.type ?? '').toLowerCase());
      if (!provider) {
        throw new FnHostError('ERR_BINDING', `fnhost does not support input bindings of type "${String(binding.type)}"`);
      }
      try {
        const data = await provider.resolve({ fn, bindingName, binding, bindingData, invocationId });
        result.push({ name: bindingName, data: data ?? null });
      } catch (err) {
        // The WebJobs SDK's wording for a binding that fails before the function runs. The message
        // carries the whole inner chain already; a cause would print it twice in the log.
        throw new FnHostError('ERR_BINDING', `Exception binding parameter '${bindingName}': ${describeError(err)}`, {
          details: { binding: bindingName },
        });
      }
    }
    return result;
  }

  async writeOutputs(
    fn: RegisteredFunction,
    response: RpcInvocationResponse,
    bindingData: BindingData,
    invocationId: string,
  ): Promise<void> {
    const values = new Map<string, RpcTypedData>();
    for (const out of response.outputData ?? []) {
      if (out.name && out.data) values.set(out.name, out.data);
    }
    if (response.returnValue && fn.bindings['$return']) values.set('$return', response.returnValue);
    for (const [bindingName, data] of values) {
      const binding = fn.bindings[bindingName];
      if (!binding || binding.direction !== 'out') continue;
      const type = String(binding.type ?? '').toLowerCase();
      if (TRIGGER_OWNED_OUTPUTS.has(type)) continue;
      const provider = this.#outputs.get(type);
      if (!provider) {
        throw new FnHostError('ERR_BINDING', `fnhost does not support output bindings of type "${type}"`);
      }
      try {
        await provider.write({ fn, bindingName, binding, bindingData, invocationId }, data);
      } catch (err) {
        // The WebJobs SDK's wording for an output binding that fails after the function returned.
        throw new FnHostError('ERR_BINDING', `Error while handling parameter ${bindingName} after function returned: ${describeError(err)}`, {
          details: { binding: bindingName },
        });
      }
    }
  }
}
