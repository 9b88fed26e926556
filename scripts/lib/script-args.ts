/**
 * The command lines of the small scripts (`npm run token`, `npm run issuer`), read with commander as
 * the CLI's are: `--help` prints the usage, and a wrong command line (an unknown option, a bad
 * argument) is one readable line plus the usage, exit code 2, never a stack trace.
 */
import { type Command, CommanderError } from 'commander';

export { wholeNumber } from '../../cli/src/arguments.js';

/** Parses `argv` (process.argv) with `command`; prints help and exits 0 for --help, exits 2 for a wrong command line. */
export function parseScriptArgs<T extends Record<string, unknown>>(command: Command, argv: readonly string[] = process.argv): T {
  command.exitOverride().showHelpAfterError();
  try {
    command.parse([...argv]);
  } catch (err) {
    if (err instanceof CommanderError) process.exit(err.exitCode === 0 ? 0 : 2);
    throw err;
  }
  return command.opts<T>();
}

/** Collects a repeatable option. */
export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}
