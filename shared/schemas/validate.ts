import type { z } from 'zod';
import { BatchError, type FieldIssue } from '../errors.js';

function fieldOf(path: PropertyKey[], prefix: string): string {
  const parts = path.map((p) => (typeof p === 'number' ? `[${p}]` : String(p)));
  const joined = parts.join('.').replace(/\.\[/g, '[');
  return prefix && joined ? `${prefix}.${joined}` : prefix || joined || '(body)';
}

/** zod issues as field-named problems; unknown fields are listed one by one. */
export function issuesOf(error: z.ZodError, prefix = ''): FieldIssue[] {
  const issues: FieldIssue[] = [];
  for (const issue of error.issues) {
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys) issues.push({ field: fieldOf([...issue.path, key], prefix), message: 'unknown field' });
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
