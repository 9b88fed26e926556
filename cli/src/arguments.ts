/**
 * Parsers of option arguments, given to commander (`.option(flags, description, parser, default)`):
 * a wrong argument throws commander's InvalidArgumentError, so it is reported as commander reports
 * every wrong command line (the message, then the help) and exits 2 (cli/README.md, exit codes),
 * before anything is read or sent.
 */
import { InvalidArgumentError } from 'commander';
import { CliError } from './errors.js';
import { type Assignment, parseAssignment } from './yaml-source.js';

/** A number of seconds, at least `min`. */
export function seconds(min: number): (text: string) => number {
  return (text) => {
    const value = Number(text);
    if (text.trim() === '' || !(value >= min)) throw new InvalidArgumentError(`It must be a number of seconds, at least ${min}.`);
    return value;
  };
}

/** A whole number, at least `min`. */
export function wholeNumber(min: number): (text: string) => number {
  return (text) => {
    const value = Number(text);
    if (text.trim() === '' || !Number.isInteger(value) || value < min) throw new InvalidArgumentError(`It must be a whole number, at least ${min}.`);
    return value;
  };
}

/** A repeatable `--set key=value`, parsed once here (see parseAssignment). */
export function assignments(text: string, previous: Assignment[] = []): Assignment[] {
  try {
    return [...previous, parseAssignment(text)];
  } catch (err) {
    if (err instanceof CliError) throw new InvalidArgumentError(err.message);
    throw err;
  }
}
