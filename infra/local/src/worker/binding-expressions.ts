import { randomUUID } from 'node:crypto';
import { FnHostError } from '../errors.js';
import { type BindingData, EnumValue, JsonScalar, isJsonObject } from './binding-data.js';

/**
 * Binding expressions as the Functions host resolves them in binding properties (`path`,
 * `queueName`, `tableName`, `schedule`, ...): `%AppSetting%` first, then `{name}` tokens from the
 * trigger's binding data. Everything here is pure apart from the injected time and GUID sources,
 * so tests can pin both.
 */

/** Where expressions get their values; only `bindingData` is required. */
export interface ExpressionContext {
  /** What the trigger contributed (trigger-binding-data.ts); names are matched ignoring case. */
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
export type TemplateToken =
  | { kind: 'literal'; text: string }
  | { kind: 'expression'; expression: string; position: number; parsed: ParsedExpression };

/** An expression split the way the host's template parser splits it. */
export interface ParsedExpression {
  /** `a.b.c` as ['a', 'b', 'c']; for a builtin, the first part still carries its format. */
  parts: string[];
  /** Text after the first ':' (not split off for builtins, which read it themselves). */
  format: string | undefined;
  builtin: 'rand-guid' | 'datetime' | undefined;
}

// The host's grammar: '{{' and '}}' escape a brace, '{...}' without braces inside is an
// expression, other text is literal, and any brace left over is unbalanced.
const TOKEN = /(\{\{|\}\})|\{([^{}]*)\}|([^{}]+)|([{}])/g;

// A C# identifier that may also contain '.' and '-' (the host's IdentifierPattern).
const IDENTIFIER =
  /^(?:\p{Lu}|\p{Ll}|\p{Lt}|\p{Lm}|\p{Lo}|\p{Nl}|_)(?:\p{Lu}|\p{Ll}|\p{Lt}|\p{Lm}|\p{Lo}|\p{Nl}|\p{Nd}|\p{Pc}|\p{Mn}|\p{Mc}|\.|-|\p{Cf})*$/u;

const BUILTINS = ['rand-guid', 'datetime'] as const;

/**
 * Splits a template into literal text and `{expression}` tokens as the host's BindingTemplateParser
 * does, with its error texts (positions count from 1). `{{` and `}}` stand for literal braces.
 */
export function parseBindingTemplate(template: string): TemplateToken[] {
  const tokens: TemplateToken[] = [];
  const invalid = (reason: string): FnHostError => new FnHostError('ERR_BINDING', `Invalid template '${template}'. ${reason}`);
  for (const m of template.matchAll(TOKEN)) {
    const [, escape, expression, literal, unbalanced] = m;
    if (escape !== undefined) {
      tokens.push({ kind: 'literal', text: escape.charAt(0) });
    } else if (expression !== undefined) {
      if (expression === '') throw invalid(`The parameter name at position ${m.index + 1} is empty.`);
      tokens.push({ kind: 'expression', expression, position: m.index, parsed: parseExpression(expression, invalid) });
    } else if (literal !== undefined) {
      tokens.push({ kind: 'literal', text: literal });
    } else if (unbalanced !== undefined) {
      throw invalid(`Missing ${unbalanced === '{' ? 'closing' : 'opening'} bracket at position ${m.index + 1}.`);
    }
  }
  // Adjacent literals (an escape next to text) read more easily as one.
  return tokens.reduce<TemplateToken[]>((out, token) => {
    const last = out[out.length - 1];
    if (token.kind === 'literal' && last?.kind === 'literal') last.text += token.text;
    else out.push(token);
    return out;
  }, []);
}

function parseExpression(text: string, invalid: (reason: string) => FnHostError): ParsedExpression {
  const lower = text.toLowerCase();
  // The host matches builtins by prefix and leaves their format in place, so `{DateTime:yyyy}`
  // is looked up in binding data as 'DateTime:yyyy' (never found) before the builtin answers.
  const builtin = BUILTINS.find((name) => lower.startsWith(name));
  let name = text;
  let format: string | undefined;
  if (!builtin) {
    const colon = text.indexOf(':');
    if (colon > 0) {
      format = text.slice(colon + 1);
      name = text.slice(0, colon);
    }
    if (!IDENTIFIER.test(name)) throw invalid(`Invalid template expression '${name}'.`);
  }
  const parts = name.split('.');
  if (!builtin && parts[0]?.includes('-')) throw invalid(`The parameter name '${parts[0]}' is invalid.`);
  if (parts.some((part) => part.trim() === '')) throw invalid(`Illegal expression '${name}': a name between dots is empty.`);
  return { parts, format, builtin };
}

/**
 * Resolves `{...}` tokens of an (already `%`-resolved) template against binding data, with the
 * host's builtins `{rand-guid}`, `{DateTime}` and `{sys.RandGuid|UtcNow|MethodName}`.
 */
export function resolveBindingExpressions(template: string, context: ExpressionContext): string {
  let out = '';
  for (const token of parseBindingTemplate(template)) {
    if (token.kind === 'literal') {
      out += token.text;
      continue;
    }
    const value = evaluate(token.parsed, context);
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

/** A .NET Guid value (sys.RandGuid): printed with a Guid format, 'D' by default. */
class GuidValue {
  constructor(readonly text: string) {}
}

/**
 * The host's `sys` object: its properties are read ignoring case, RandGuid is new on every read,
 * UtcNow is a DateTime (so it takes date formats).
 */
class SystemBindingData {
  constructor(readonly context: ExpressionContext) {}

  property(name: string): { found: boolean; value: unknown } {
    switch (name.toLowerCase()) {
      case 'methodname':
        return { found: true, value: this.context.functionName ?? null };
      case 'utcnow':
        return { found: true, value: new Date((this.context.now ?? Date.now)()) };
      case 'randguid':
        return { found: true, value: new GuidValue((this.context.newGuid ?? randomUUID)()) };
      default:
        return { found: false, value: undefined };
    }
  }
}

/** A JSON object's property ignoring case; an exact-case match wins, as JObject's lookup does. */
function jsonProperty(record: Record<string, unknown>, key: string): { found: boolean; value: unknown } {
  if (Object.prototype.hasOwnProperty.call(record, key)) return { found: true, value: record[key] };
  const lower = key.toLowerCase();
  for (const [k, v] of Object.entries(record)) {
    if (k.toLowerCase() === lower) return { found: true, value: v };
  }
  return { found: false, value: undefined };
}

/** One step of `a.b`: JSON objects and `sys` ignore case; dictionaries match exactly. */
function member(value: unknown, name: string): unknown {
  let found: { found: boolean; value: unknown };
  if (value === null || value === undefined) {
    throw new FnHostError('ERR_BINDING', `Error while accessing '${name}': Object reference not set to an instance of an object.`);
  } else if (value instanceof SystemBindingData) {
    found = value.property(name);
  } else if (value instanceof Map) {
    const map = value as Map<string, unknown>;
    found = map.has(name) ? { found: true, value: map.get(name) } : { found: false, value: undefined };
  } else if (isJsonObject(value)) {
    found = jsonProperty(value, name);
  } else {
    found = { found: false, value: undefined };
  }
  if (!found.found) throw new FnHostError('ERR_BINDING', `Error while accessing '${name}': property doesn't exist.`);
  return found.value;
}

function evaluate(expression: ParsedExpression, context: ExpressionContext): string {
  const [first, ...members] = expression.parts as [string, ...string[]];
  let hit = context.bindingData.lookup(first);
  // The host puts its `sys` object into binding data only when the trigger has no value named sys.
  if (!hit.found && first.toLowerCase() === 'sys') hit = { found: true, value: new SystemBindingData(context) };
  if (hit.found) {
    let value = hit.value;
    for (const name of members) value = member(value, name);
    return pathText(value, expression.format);
  }
  if (expression.builtin) {
    // Anything after the builtin's name other than ':format' is ignored, as in the host.
    const formatAt = expression.builtin.length;
    const format = first.charAt(formatAt) === ':' ? first.slice(formatAt + 1) : undefined;
    const value = expression.builtin === 'rand-guid' ? new GuidValue((context.newGuid ?? randomUUID)()) : new Date((context.now ?? Date.now)());
    return pathText(value, format);
  }
  throw new FnHostError('ERR_BINDING', `No value for named parameter '${first}'.`, { details: { parameter: first } });
}

/** The host's default format for DateTime values in binding expressions ({DateTime}, sys.utcnow). */
export const DEFAULT_DATE_FORMAT = 'yyyy-MM-ddTHH-mm-ssK';

/**
 * The text a binding-data value puts into a path, as the host's BindingDataPathHelper gives it:
 * strings, numbers and JSON booleans as text, DateTime and Guid with the format (or their
 * default), enums as their number, null as ''. Objects, arrays, dictionaries and the .NET values
 * it cannot print (DateTimeOffset, Uri) also give '': the host does not fail for them.
 */
export function pathText(value: unknown, format?: string): string {
  const fmt = format === undefined || format.trim() === '' ? undefined : format;
  if (value === null || value === undefined) return '';
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'bigint') return String(value);
  if (typeof value === 'boolean') return value ? 'True' : 'False';
  if (value instanceof Date) return formatDateTime(value.getTime(), fmt ?? DEFAULT_DATE_FORMAT);
  if (value instanceof GuidValue) return formatGuid(value.text, fmt);
  if (value instanceof EnumValue) return String(value.code);
  if (value instanceof JsonScalar) return pathText(value.value);
  return '';
}

/** Formats a GUID with a .NET Guid format specifier (D, N, B, P, X). */
export function formatGuid(guid: string, format: string | undefined): string {
  const hex = guid.replace(/[{}()-]/g, '').toLowerCase();
  const dashed = `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
  switch (format ?? 'D') {
    case 'D':
    case 'd':
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
    case 'X':
    case 'x': {
      const bytes = (from: number, to: number): string[] => (hex.slice(from, to).match(/../g) ?? []).map((b) => `0x${b}`);
      return `{0x${hex.slice(0, 8)},0x${hex.slice(8, 12)},0x${hex.slice(12, 16)},{${bytes(16, 32).join(',')}}}`;
    }
    default:
      throw new FnHostError('ERR_BINDING', 'Format string can be only "D", "d", "N", "n", "P", "p", "B", "b", "X" or "x".');
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
  U: 'dddd, dd MMMM yyyy HH:mm:ss',
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
  // One letter is always a standard format in .NET; an unknown one is an error, not literal text.
  const pattern = format.length === 1 ? STANDARD_FORMATS[format] : format;
  if (pattern === undefined) throw new FnHostError('ERR_BINDING', `Input string was not in a correct format ('${format}' is not a date format).`);
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
