/**
 * What every worker thread that runs a user's script sets up the same way: the `logger` handed to
 * the script, the console routed into that logger, unhandled rejections logged instead of ending
 * the thread, and how a script's exported functions are found. Used by the scoring worker
 * (`init`/`run` of a scoring script) and by the command worker (`run` of a command component), so
 * that a script behaves the same in both.
 */
import type { ScoringLogger } from './protocol.js';
import type { LogLevel } from './types.js';

/** A function a script exports. */
export type ScriptFunction = (...args: unknown[]) => unknown;

/**
 * Makes the script's logger and routes the thread's console to it: `console.log`/`info` are
 * `info`, `warn` is `warning`, `error` is `error`, `debug`/`trace` are `debug`. What a script
 * prints belongs in its job's logs, not on the host's stdout.
 */
export function installScriptConsole(log: (level: LogLevel, args: unknown[]) => void): ScoringLogger {
  const logger: ScoringLogger = {
    debug: (...args) => log('debug', args),
    info: (...args) => log('info', args),
    warning: (...args) => log('warning', args),
    error: (...args) => log('error', args),
    critical: (...args) => log('critical', args),
  };
  console.log = (...args: unknown[]) => log('info', args);
  console.info = (...args: unknown[]) => log('info', args);
  console.warn = (...args: unknown[]) => log('warning', args);
  console.error = (...args: unknown[]) => log('error', args);
  console.debug = (...args: unknown[]) => log('debug', args);
  console.trace = (...args: unknown[]) => log('debug', args);
  // A forgotten promise in a script should be visible, not end the thread mid-run.
  process.on('unhandledRejection', (reason) => logger.error('unhandled promise rejection:', reason));
  return logger;
}

/**
 * The function `name` a script module exports: a named export of an ES module, or a property of
 * the default export (how a CommonJS script arrives). Undefined when there is none.
 */
export function exportedFunction(module: Record<string, unknown>, name: string): ScriptFunction | undefined {
  const direct = module[name];
  if (typeof direct === 'function') return direct as ScriptFunction;
  const fallback = module['default'];
  if (typeof fallback === 'object' && fallback !== null) {
    const fn = (fallback as Record<string, unknown>)[name];
    if (typeof fn === 'function') return fn as ScriptFunction;
  }
  return undefined;
}
