/**
 * Names users give to inputs, outputs and steps, and the one way to look them up. Such names are
 * keys of plain objects throughout (parsed JSON), so a name that every JavaScript object already
 * has (`constructor`, `toString`, `__proto__`, …) would find Object.prototype's member instead of
 * nothing, or be dropped when the object is built. Those names are refused where names enter,
 * and every lookup by a user's name goes through {@link own}.
 */
import { z } from 'zod';

const OBJECT_MEMBERS: ReadonlySet<string> = new Set(Object.getOwnPropertyNames(Object.prototype));

/** Whether a name is one every JavaScript object has (and so cannot be a user's input, output or step name). */
export function isObjectMember(name: string): boolean {
  return OBJECT_MEMBERS.has(name);
}

const notMember = [(name: string): boolean => !isObjectMember(name), { message: 'is reserved (every JavaScript object has a member of that name); choose another name' }] as const;

/** An input or output name: an identifier (Azure ML's rule), not an object member's name. */
export const identifier = z
  .string()
  .regex(/^[A-Za-z_][A-Za-z0-9_]{0,254}$/, 'must be an identifier: letters, digits and "_", not starting with a digit')
  .refine(...notMember);

/** A pipeline step's name (Azure ML's rule: letters, digits and "_", starting with a letter). */
export const stepName = z
  .string()
  .regex(/^[A-Za-z][A-Za-z0-9_]{0,254}$/, 'must start with a letter and hold only letters, digits and "_"')
  .refine(...notMember);

/** `record[key]` when the record itself has that key (never a member inherited from Object.prototype). */
export function own<T>(record: Readonly<Record<string, T>>, key: string): T | undefined {
  return Object.hasOwn(record, key) ? record[key] : undefined;
}
