import type { z } from 'zod';
import { BatchError, type FieldIssue } from '../errors.js';

function fieldOf(path: PropertyKey[], prefix: string): string {
  const parts = path.map((p) => (typeof p === 'number' ? `[${p}]` : String(p)));
  const joined = parts.join('.').replace(/\.\[/g, '[');
  return prefix && joined ? `${prefix}.${joined}` : prefix || joined || '(body)';
}

type Issue = z.core.$ZodIssue;

/**
 * The issues of the union member the value was meant for. A union such as "a reference string or
 * an inline object" fails every member; the members whose own type the value is not (an object
 * given where a string is expected) fail at their root, so the remaining member's issues are the
 * ones that name the real field. With no such member the union's own issue stands.
 */
function unwrapUnion(issue: Issue): Issue[] {
  if (issue.code !== 'invalid_union' || issue.errors.length === 0) return [issue];
  const meant = issue.errors.filter((branch) => !branch.some((i) => i.code === 'invalid_type' && i.path.length === 0));
  const chosen = meant.length === 1 ? meant[0] : undefined;
  if (!chosen) return [issue];
  return chosen.flatMap((inner) => unwrapUnion({ ...inner, path: [...issue.path, ...inner.path] }));
}

/** zod issues as field-named problems; unknown fields are listed one by one. */
export function issuesOf(error: z.ZodError, prefix = ''): FieldIssue[] {
  const issues: FieldIssue[] = [];
  for (const issue of error.issues.flatMap(unwrapUnion)) {
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys) issues.push({ field: fieldOf([...issue.path, key], prefix), message: 'unknown field' });
    } else if (issue.code === 'invalid_key') {
      // A record's key (an input or step name): say what is wrong with the name, not just that it is.
      const reasons = issue.issues.map((i) => i.message).join('; ');
      issues.push({ field: fieldOf(issue.path, prefix), message: `invalid name: ${reasons}` });
    } else {
      issues.push({ field: fieldOf(issue.path, prefix), message: issue.message });
    }
  }
  return issues;
}

/** Parses `value` or throws a validation error that names every offending field. */
export function parseOrThrow<S extends z.ZodType>(schema: S, value: unknown, what: string, prefix = ''): z.infer<S> {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const issues = issuesOf(result.error, prefix);
  const first = issues[0];
  const summary = first ? `${first.field}: ${first.message}` : 'invalid';
  throw new BatchError('validation_failed', `The ${what} is not valid: ${summary}${issues.length > 1 ? ` (and ${issues.length - 1} more)` : ''}.`, { issues });
}
