import Module from 'node:module';

const CORE_MODULE = '@azure/functions-core';

type RequireFn = (this: unknown, id: string) => unknown;

/**
 * Makes `require('@azure/functions-core')` return fnhost's worker API, the way the Node.js worker
 * does: by wrapping `Module.prototype.require`. Nothing inside `@azure/functions` is touched.
 * Returns a function that removes the hook.
 */
export function installCoreModule(coreApi: Record<string, unknown>): () => void {
  const proto = Module.prototype as unknown as { require: RequireFn };
  const original = proto.require;
  proto.require = new Proxy(original, {
    apply(target, thisArg: unknown, args: [string]) {
      if (args[0] === CORE_MODULE) return coreApi;
      return Reflect.apply(target, thisArg, args);
    },
  });
  return () => {
    proto.require = original;
  };
}
