import { BatchError } from '../errors.js';
import { type InputSpec, type LiteralValue, isUriType } from './types.js';

/**
 * Literal inputs (Azure ML: `string`, `integer`, `number`, `boolean` inputs; `enum` on strings,
 * `min`/`max` on numbers, both inclusive). Literal values reach the app in three shapes:
 * - bare, as in pipeline YAML (`score_mode: append`, `threshold: 0.5`);
 * - `{ "type": "literal", "value": ... }`;
 * - Azure ML's REST invoke body, `{ "JobInputType": "Literal", "Value": "..." }`.
 * The REST API sends every literal as a string, so a string that spells a number (or true/false)
 * is read as one where the input is an integer, number or boolean.
 */

export type LiteralCheck = { ok: true; value: LiteralValue } | { ok: false; message: string };

const INTEGER = /^[+-]?\d+$/;
const NUMBER = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'string') return `the string ${JSON.stringify(value)}`;
  if (typeof value === 'number' || typeof value === 'boolean') return `${typeof value} ${String(value)}`;
  return typeof value === 'object' ? 'an object' : typeof value;
}

function asNumber(value: unknown): number | undefined {
  if (typeof value === 'number') return value;
  if (typeof value === 'string' && NUMBER.test(value.trim())) return Number(value.trim());
  return undefined;
}

/** Checks a bare value against a literal input: its type, integer-ness, enum and min/max. */
export function literalCheck(spec: InputSpec, value: unknown): LiteralCheck {
  if (isUriType(spec.type)) return { ok: false, message: `a ${spec.type} input takes data, not a literal value` };
  switch (spec.type) {
    case 'string': {
      if (typeof value !== 'string') return { ok: false, message: `must be a string, not ${describe(value)}` };
      if (spec.enum && !spec.enum.includes(value)) {
        return { ok: false, message: `must be one of ${spec.enum.map((e) => JSON.stringify(e)).join(', ')}` };
      }
      return { ok: true, value };
    }
    case 'boolean': {
      if (typeof value === 'boolean') return { ok: true, value };
      if (typeof value === 'string' && /^(true|false)$/i.test(value.trim())) return { ok: true, value: value.trim().toLowerCase() === 'true' };
      return { ok: false, message: `must be true or false, not ${describe(value)}` };
    }
    case 'integer':
    case 'number': {
      const n = typeof value === 'string' && spec.type === 'integer' && !INTEGER.test(value.trim()) ? undefined : asNumber(value);
      if (n === undefined || !Number.isFinite(n)) return { ok: false, message: `must be ${spec.type === 'integer' ? 'an integer' : 'a number'}, not ${describe(value)}` };
      if (spec.type === 'integer' && !Number.isSafeInteger(n)) return { ok: false, message: `must be an integer, not ${n}` };
      if (spec.min !== undefined && n < spec.min) return { ok: false, message: `must be at least ${spec.min}, not ${n}` };
      if (spec.max !== undefined && n > spec.max) return { ok: false, message: `must be at most ${spec.max}, not ${n}` };
      return { ok: true, value: n };
    }
  }
}

function invalid(field: string, message: string): BatchError {
  return new BatchError('validation_failed', `${field}: ${message}.`, { issues: [{ field, message }] });
}

/**
 * The value inside Azure ML's literal shapes, or the value itself when it is bare. An object that
 * is not a literal shape (a data input, a misspelt key) is a 400 naming the field.
 */
export function unwrapLiteral(value: unknown, field: string): unknown {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return value;
  const entries = Object.entries(value as Record<string, unknown>);
  const keys = entries.map(([k]) => k);
  const sdk = keys.includes('type') || keys.includes('value');
  const [typeKey, valueKey] = sdk ? ['type', 'value'] : ['JobInputType', 'Value'];
  const kind = (value as Record<string, unknown>)[typeKey];
  if (typeof kind !== 'string' || kind.toLowerCase() !== 'literal') {
    throw invalid(keys.includes(typeKey) ? `${field}.${typeKey}` : field, `a literal is a bare value or {"${typeKey}": "${sdk ? 'literal' : 'Literal'}", "${valueKey}": ...}`);
  }
  const unknown = keys.find((k) => k !== typeKey && k !== valueKey);
  if (unknown !== undefined) throw invalid(`${field}.${unknown}`, 'unknown field');
  if (!keys.includes(valueKey)) throw invalid(`${field}.${valueKey}`, 'required');
  return (value as Record<string, unknown>)[valueKey];
}

/**
 * A literal value for `spec`, checked and normalized (numbers and booleans read from strings):
 * accepts a bare value, `{type: "literal", value}` or `{JobInputType: "Literal", Value}`. Anything
 * else, or a value outside the input's type, enum or min/max, is a 400 naming `field`.
 */
export function checkLiteral(spec: InputSpec, value: unknown, field: string): LiteralValue {
  const result = literalCheck(spec, unwrapLiteral(value, field));
  if (!result.ok) throw invalid(field, result.message);
  return result.value;
}
