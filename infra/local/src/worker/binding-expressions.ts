import { randomUUID } from 'node:crypto';
import { FnHostError } from '../errors.js';
import type { BindingData } from './bindings.js';

/**
 * Binding expressions as the Functions host resolves them in binding properties (`path`,
 * `queueName`, `tableName`, `schedule`, ...): `%AppSetting%` first, then `{name}` tokens from the
 * trigger's binding data. Everything here is pure apart from the injected time and GUID sources,
 * so tests can pin both.
 */

/** Where expressions get their values; only `bindingData` is required. */
export interface ExpressionContext {
  /** What the trigger contributed; names are matched ignoring case. */
  bindingData: BindingData;
  /** The function's name, for `{sys.methodname}`. */
  functionName?: string;
  /** Milliseconds since the epoch, for `{DateTime}` and `{sys.utcnow}`; defaults to Date.now. */
  now?: () => number;
  /** A new GUID, for `{rand-guid}` and `{sys.randguid}`; defaults to crypto.randomUUID. */
  newGuid?: () => string;
  /**
   * Applied to each resolved `{...}` value but not to the literal text around it; the table
   * binding's `filter` uses it to escape quotes in OData string literals.
   */
  escapeValue?: (value: string) => string;
}

/** App settings as a lookup; process.env fits. */
export type SettingsSource = Readonly<Record<string, string | undefined>>;

/**
 * Replaces every `%Name%` with the app setting `Name`, as the host's name resolver does before a
 * function is indexed. A setting that does not exist, or a `%` without its closing `%`, is an error.
 */
export function resolveAppSettings(template: string, settings: SettingsSource = process.env): string {
  let out = '';
  let i = 0;
  while (i < template.length) {
    const start = template.indexOf('%', i);
    if (start < 0) {
      out += template.slice(i);
      break;
    }
    const end = template.indexOf('%', start + 1);
    if (end < 0) {
      throw new FnHostError('ERR_CONFIG', `The '%' at position ${start} of '${template}' does not have a closing '%'.`);
    }
    const name = template.slice(start + 1, end);
    const value = settings[name];
    if (value === undefined) {
      throw new FnHostError('ERR_CONFIG', `'%${name}%' does not resolve to a value: app setting '${name}' is not defined.`, {
        details: { setting: name },
      });
    }
    out += template.slice(i, start) + value;
    i = end + 1;
  }
  return out;
}

/** One piece of a parsed `{...}` template. */
export type TemplateToken = { kind: 'literal'; text: string } | { kind: 'expression'; expression: string; position: number };

/**
 * Splits a template into literal text and `{expression}` tokens. `{{` and `}}` stand for literal
 * braces; an unbalanced brace or an empty `{}` is an error, as in the host's template parser.
 */
export function parseBindingTemplate(template: string): TemplateToken[] {
  const tokens: TemplateToken[] = [];
  let literal = '';
  let i = 0;
  while (i < template.length) {
    const ch = template[i];
    if (ch === '{') {
      if (template[i + 1] === '{') {
        literal += '{';
        i += 2;
        continue;
      }
      const close = template.indexOf('}', i + 1);
      const nextOpen = template.indexOf('{', i + 1);
      if (close < 0 || (nextOpen >= 0 && nextOpen < close)) {
        throw new FnHostError('ERR_BINDING', `Invalid template '${template}'. Missing closing bracket at position ${i}.`);
      }
      const expression = template.slice(i + 1, close).trim();
      if (expression === '') {
        throw new FnHostError('ERR_BINDING', `Invalid template '${template}'. Empty parameter name at position ${i}.`);
      }
      if (literal) tokens.push({ kind: 'literal', text: literal });
      literal = '';
      tokens.push({ kind: 'expression', expression, position: i });
      i = close + 1;
      continue;
    }
    if (ch === '}') {
      if (template[i + 1] === '}') {
        literal += '}';
        i += 2;
        continue;
      }
      throw new FnHostError('ERR_BINDING', `Invalid template '${template}'. Missing opening bracket at position ${i}.`);
    }
    literal += ch;
    i += 1;
  }
  if (literal) tokens.push({ kind: 'literal', text: literal });
  return tokens;
}

/**
 * Resolves `{...}` tokens of an (already `%`-resolved) template against binding data, with the
 * host's builtins `{rand-guid}`, `{DateTime}` and `{sys.randguid|utcnow|methodname}`.
 */
export function resolveBindingExpressions(template: string, context: ExpressionContext): string {
  let out = '';
  for (const token of parseBindingTemplate(template)) {
    if (token.kind === 'literal') {
      out += token.text;
      continue;
    }
    const value = evaluate(token.expression, context);
    out += context.escapeValue ? context.escapeValue(value) : value;
  }
  return out;
}

/** `%AppSetting%` then `{...}`: what the host does to every string binding property. */
export function resolveBindingTemplate(
  template: string,
  context: ExpressionContext,
  settings: SettingsSource = process.env,
): string {
  return resolveBindingExpressions(resolveAppSettings(template, settings), context);
}

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_-]*$/;
const BUILTINS = new Set(['rand-guid', 'datetime']);

function splitExpression(expression: string): { path: string[]; format: string | undefined } {
  const colon = expression.indexOf(':');
  const name = (colon < 0 ? expression : expression.slice(0, colon)).trim();
  const format = colon < 0 ? undefined : expression.slice(colon + 1);
  return { path: name.split('.'), format };
}

/** Finds a key ignoring case; an exact match wins over a case-insensitive one. */
function lookup(record: Record<string, unknown>, key: string): { found: boolean; value: unknown } {
  if (Object.prototype.hasOwnProperty.call(record, key)) return { found: true, value: record[key] };
  const lower = key.toLowerCase();
  for (const [k, v] of Object.entries(record)) {
    if (k.toLowerCase() === lower) return { found: true, value: v };
  }
  return { found: false, value: undefined };
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Date);
}

function evaluate(expression: string, context: ExpressionContext): string {
  const { path, format } = splitExpression(expression);
  const [first, ...members] = path;
  if (first === undefined || path.some((segment) => !IDENTIFIER.test(segment))) {
    throw new FnHostError('ERR_BINDING', `'${expression}' is not a valid binding expression.`);
  }
  const now = context.now ?? Date.now;
  const newGuid = context.newGuid ?? randomUUID;
  const builtin = first.toLowerCase();
  if (first.includes('-') && !BUILTINS.has(builtin)) {
    throw new FnHostError('ERR_BINDING', `'${expression}' is not a valid binding expression: '-' is only allowed in builtins.`);
  }

  let value: unknown;
  const fromData = lookup(context.bindingData, first);
  if (fromData.found) {
    value = fromData.value;
  } else if (builtin === 'sys') {
    value = {
      randguid: newGuid(),
      utcnow: new Date(now()),
      methodname: context.functionName ?? '',
    } satisfies Record<string, unknown>;
  } else if (builtin === 'rand-guid' && members.length === 0) {
    return formatGuid(newGuid(), format);
  } else if (builtin === 'datetime' && members.length === 0) {
    return formatDateTime(now(), format ?? DEFAULT_DATE_FORMAT);
  } else {
    throw new FnHostError('ERR_BINDING', `No value for named parameter '${first}'.`, { details: { parameter: first } });
  }

  for (const member of members) {
    const found = isRecord(value) ? lookup(value, member) : { found: false, value: undefined };
    if (!found.found) {
      throw new FnHostError('ERR_BINDING', `Error while accessing '${member}' of '${expression}': property doesn't exist.`);
    }
    value = found.value;
  }
  // A GUID-valued property of sys takes Guid formats.
  if (builtin === 'sys' && !fromData.found && members[0]?.toLowerCase() === 'randguid' && typeof value === 'string') {
    return formatGuid(value, format);
  }
  return toBindingString(value, path.join('.'), format);
}

/** The host's default format for DateTime values in binding expressions ({DateTime}, sys.utcnow). */
export const DEFAULT_DATE_FORMAT = 'yyyy-MM-ddTHH-mm-ssK';

/**
 * Turns a binding-data value into the text a binding expression inserts: primitives as text,
 * dates in the default format, objects and arrays are errors (the host yields no value for them).
 */
export function toBindingString(value: unknown, name: string, format?: string): string {
  if (value === null || value === undefined) return '';
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'bigint') return String(value);
  // .NET's Boolean.ToString, which is what the host inserts.
  if (typeof value === 'boolean') return value ? 'True' : 'False';
  if (value instanceof Date) return formatDateTime(value.getTime(), format ?? DEFAULT_DATE_FORMAT);
  throw new FnHostError(
    'ERR_BINDING',
    `Binding parameter '${name}' is an object or an array; binding expressions must resolve to a primitive value.`,
  );
}

/** Formats a GUID with a .NET Guid format specifier (D, N, B, P). */
export function formatGuid(guid: string, format: string | undefined): string {
  const hex = guid.replace(/[{}()-]/g, '').toLowerCase();
  const dashed = `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
  switch ((format ?? 'D').trim()) {
    case 'D':
    case 'd':
    case '':
      return dashed;
    case 'N':
    case 'n':
      return hex;
    case 'B':
    case 'b':
      return `{${dashed}}`;
    case 'P':
    case 'p':
      return `(${dashed})`;
    default:
      throw new FnHostError('ERR_BINDING', `'${format}' is not a GUID format fnhost supports (D, N, B, P).`);
  }
}

const MONTHS = ['January', 'February', 'March', 'April', 'May', 'June', 'July', 'August', 'September', 'October', 'November', 'December'];
const DAYS = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday'];

/** Invariant-culture expansions of the .NET standard date formats. */
const STANDARD_FORMATS: Record<string, string> = {
  d: 'MM/dd/yyyy',
  D: 'dddd, dd MMMM yyyy',
  f: 'dddd, dd MMMM yyyy HH:mm',
  F: 'dddd, dd MMMM yyyy HH:mm:ss',
  g: 'MM/dd/yyyy HH:mm',
  G: 'MM/dd/yyyy HH:mm:ss',
  m: 'MMMM dd',
  M: 'MMMM dd',
  o: "yyyy'-'MM'-'dd'T'HH':'mm':'ss'.'fffffffK",
  O: "yyyy'-'MM'-'dd'T'HH':'mm':'ss'.'fffffffK",
  r: "ddd, dd MMM yyyy HH':'mm':'ss 'GMT'",
  R: "ddd, dd MMM yyyy HH':'mm':'ss 'GMT'",
  s: "yyyy'-'MM'-'dd'T'HH':'mm':'ss",
  t: 'HH:mm',
  T: 'HH:mm:ss',
  u: "yyyy'-'MM'-'dd HH':'mm':'ss'Z'",
  y: 'yyyy MMMM',
  Y: 'yyyy MMMM',
};

/**
 * Formats a UTC instant with a .NET date format string (custom specifiers such as `yyyy-MM-dd`,
 * `HH`, `fff`, `K`, quoted literals, `\` escapes, or a one-letter standard format), in the invariant
 * culture, as `{DateTime:format}` does.
 */
export function formatDateTime(ms: number, format: string): string {
  const date = new Date(ms);
  const pattern = format.length === 1 ? (STANDARD_FORMATS[format] ?? format) : format;
  const pad = (n: number, width: number): string => String(n).padStart(width, '0');
  const year = date.getUTCFullYear();
  const month = date.getUTCMonth();
  const day = date.getUTCDate();
  const hour = date.getUTCHours();
  const minute = date.getUTCMinutes();
  const second = date.getUTCSeconds();
  const millis = date.getUTCMilliseconds();
  let out = '';
  let i = 0;
  while (i < pattern.length) {
    const ch = pattern[i] as string;
    let run = 1;
    while (pattern[i + run] === ch) run += 1;
    switch (ch) {
      case 'y':
        out += run <= 2 ? pad(year % 100, run) : pad(year, run);
        break;
      case 'M':
        out += run >= 4 ? MONTHS[month] : run === 3 ? MONTHS[month]?.slice(0, 3) : pad(month + 1, run);
        break;
      case 'd':
        out += run >= 4 ? DAYS[date.getUTCDay()] : run === 3 ? DAYS[date.getUTCDay()]?.slice(0, 3) : pad(day, run);
        break;
      case 'H':
        out += pad(hour, Math.min(run, 2));
        break;
      case 'h':
        out += pad(hour % 12 === 0 ? 12 : hour % 12, Math.min(run, 2));
        break;
      case 'm':
        out += pad(minute, Math.min(run, 2));
        break;
      case 's':
        out += pad(second, Math.min(run, 2));
        break;
      case 'f':
      case 'F': {
        const digits = (pad(millis, 3) + '0000').slice(0, Math.min(run, 7));
        out += ch === 'F' ? digits.replace(/0+$/, '') : digits;
        break;
      }
      case 't':
        out += (hour < 12 ? 'AM' : 'PM').slice(0, run === 1 ? 1 : 2);
        break;
      case 'K':
        out += 'Z'.repeat(run);
        break;
      case 'z':
        out += run === 1 ? '+0' : run === 2 ? '+00' : '+00:00';
        break;
      case "'":
      case '"': {
        const close = pattern.indexOf(ch, i + 1);
        if (close < 0) throw new FnHostError('ERR_BINDING', `Date format '${format}' has an unterminated quote.`);
        out += pattern.slice(i + 1, close);
        i = close + 1;
        continue;
      }
      case '\\':
        out += pattern[i + 1] ?? '';
        i += 2;
        continue;
      case '%':
        // `%d` is the custom specifier `d` on its own, not the standard format.
        i += 1;
        continue;
      default:
        out += ch.repeat(run);
    }
    i += run;
  }
  return out;
}
