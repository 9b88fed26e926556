import type { RpcTypedData } from './core-types.js';

/**
 * Binding data: the named values one invocation offers to binding expressions (`{name}`,
 * `{queueTrigger}`, `{data.url}`) and, converted, to the worker as `triggerMetadata`.
 *
 * The values keep the .NET types the host has for them, because the host's path converter
 * (BindingDataPathHelper) prints only some of them: strings, integers, DateTime and Guid. A
 * DateTimeOffset, a Uri, a bool or an object the host holds resolves to '' in a path, while JSON
 * values print their text. {@link DateTimeOffsetValue}, {@link OpaqueValue} and {@link EnumValue}
 * stand for the .NET types; plain objects are JSON objects (looked up ignoring case, like JObject)
 * and a {@link Dictionary} is a .NET dictionary with ordinal keys (looked up by exact name).
 */

/** A .NET dictionary with ordinal (exact-case) keys, such as the HTTP trigger's `Query`. */
export class Dictionary extends Map<string, string> {
  toJSON(): Record<string, string> {
    return Object.fromEntries(this);
  }
}

/** A .NET DateTimeOffset (queue message times, blob times): '' in a path, ISO text in metadata. */
export class DateTimeOffsetValue {
  constructor(readonly ms: number) {}

  /** As the host's JSON serializer writes a DateTimeOffset (`2024-05-01T10:04:00+00:00`). */
  toJSON(): string {
    return new Date(this.ms).toISOString().replace(/\.000Z$/, 'Z').replace(/Z$/, '+00:00');
  }
}

/** A .NET value the host's path converter cannot print (Uri, ETag, bool, byte[]): '' in a path. */
export class OpaqueValue {
  constructor(readonly json: unknown) {}

  toJSON(): unknown {
    return this.json;
  }
}

/**
 * A .NET enum (a blob's BlobType, LeaseState): the host's path converter prints an enum as its
 * underlying Int32, so `{properties.blobType}` is '0' for a block blob.
 */
export class EnumValue {
  constructor(
    readonly code: number,
    readonly name: string,
  ) {}

  toJSON(): string {
    return this.name;
  }
}

/**
 * A JSON scalar the host holds as a JToken (an activity's or Event Grid event's `data` when it is
 * not an object): its text in a path, and JSON in `triggerMetadata`, so `"42"` stays a string.
 */
export class JsonScalar {
  constructor(readonly value: string | number | boolean) {}

  toJSON(): string | number | boolean {
    return this.value;
  }
}

/** A parsed JSON value as the host holds it: scalars become {@link JsonScalar}, the rest stays. */
export function jsonToken(value: unknown): unknown {
  return typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean' ? new JsonScalar(value) : value;
}

/**
 * The binding data of one invocation: names match ignoring case, and setting a name that exists
 * in another case replaces its value but keeps the first spelling, as the host's
 * `Dictionary<string, object>(StringComparer.OrdinalIgnoreCase)` does. Order is insertion order.
 */
export class BindingData {
  readonly #entries = new Map<string, { key: string; value: unknown }>();

  static from(record: Readonly<Record<string, unknown>>): BindingData {
    const data = new BindingData();
    for (const [key, value] of Object.entries(record)) data.set(key, value);
    return data;
  }

  get size(): number {
    return this.#entries.size;
  }

  has(key: string): boolean {
    return this.#entries.has(key.toLowerCase());
  }

  /** `found` tells a missing name from one whose value is null. */
  lookup(key: string): { found: boolean; value: unknown } {
    const entry = this.#entries.get(key.toLowerCase());
    return entry ? { found: true, value: entry.value } : { found: false, value: undefined };
  }

  get(key: string): unknown {
    return this.#entries.get(key.toLowerCase())?.value;
  }

  set(key: string, value: unknown): this {
    const folded = key.toLowerCase();
    const entry = this.#entries.get(folded);
    if (entry) entry.value = value;
    else this.#entries.set(folded, { key, value });
    return this;
  }

  /** For values the host adds only when nothing of that name is there yet (HTTP `Query`, `Headers`). */
  setIfAbsent(key: string, value: unknown): this {
    return this.has(key) ? this : this.set(key, value);
  }

  *entries(): IterableIterator<[string, unknown]> {
    for (const { key, value } of this.#entries.values()) yield [key, value];
  }

  /** A plain copy, for logs and tests. */
  toRecord(): Record<string, unknown> {
    return Object.fromEntries(this.entries());
  }
}

/** True for JSON objects, which binding expressions walk with dots. */
export function isJsonObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && Object.getPrototypeOf(value) === Object.prototype;
}

/**
 * Adds the top-level properties of a JSON-object payload to binding data, as the host does with a
 * trigger value that is a string (the worker invoker's `Utility.ApplyBindingData`) and with an HTTP
 * body: payload properties replace trigger metadata of the same name; null and array properties
 * are left out (so `{x}` for `"x": null` has no value); objects stay objects for `{a.b}`; other
 * values become the text .NET gives them. Anything that is not a JSON object adds nothing.
 */
export function applyJsonPayload(data: BindingData, text: string | null | undefined): void {
  if (!text) return;
  const trimmed = text.trim();
  // The host only tries text that looks like JSON; a JSON array then fails to parse as an object.
  if (!(trimmed.startsWith('{') && trimmed.endsWith('}'))) return;
  let parsed: unknown;
  try {
    parsed = JSON.parse(trimmed);
  } catch {
    return;
  }
  if (isJsonObject(parsed) && !deeperThan(parsed, JSON_NET_MAX_DEPTH)) applyJsonObject(data, parsed);
}

/**
 * Json.NET's default MaxDepth (Newtonsoft.Json 13): the host cannot read a payload nested deeper,
 * so it adds nothing of it to binding data. (Nothing deeper may reach `triggerMetadata` either:
 * the worker library converts it recursively, and a deep enough value overflows its stack.)
 */
export const JSON_NET_MAX_DEPTH = 64;

/** Whether objects and arrays nest in `value` more than `max` levels (walked without recursion). */
export function deeperThan(value: unknown, max: number): boolean {
  const stack: [unknown, number][] = [[value, 1]];
  while (stack.length > 0) {
    const [v, depth] = stack.pop() as [unknown, number];
    if (typeof v !== 'object' || v === null) continue;
    if (depth > max) return true;
    for (const inner of Object.values(v)) stack.push([inner, depth + 1]);
  }
  return false;
}

/** {@link applyJsonPayload} for a payload already parsed, so a large one is not parsed twice. */
export function applyJsonObject(data: BindingData, payload: Record<string, unknown>): void {
  for (const [key, value] of Object.entries(payload)) {
    if (value === null || Array.isArray(value)) continue;
    data.set(key, isJsonObject(value) ? value : jsonPropertyText(value));
  }
}

/**
 * A top-level JSON value as text, as `(string)JToken` gives it: strings as they are, except that
 * Json.NET reads ISO-8601 date-times as DateTime, which then print in the invariant culture
 * (`2024-05-01T10:00:00Z` becomes `05/01/2024 10:00:00`); booleans as `True`/`False`.
 */
function jsonPropertyText(value: unknown): string {
  if (typeof value === 'string') return jsonNetDateText(value) ?? value;
  if (typeof value === 'boolean') return value ? 'True' : 'False';
  return String(value);
}

const ISO_DATE = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,7}))?(Z|z|[+-]\d{2}(?::?\d{2})?)?$/;
const MS_DATE = /^\/Date\((-?\d+)([+-]\d{4})?\)\/$/;

/**
 * The text .NET gives a JSON string that Json.NET reads as a DateTime (its ISO-8601 pattern or
 * `/Date(ms)/`), or undefined for any other string. Times with an offset are converted to the
 * machine's local time, which is UTC on Azure Functions unless WEBSITE_TIME_ZONE is set; fnhost
 * uses UTC.
 */
export function jsonNetDateText(text: string): string | undefined {
  let ms: number;
  const ms1 = MS_DATE.exec(text);
  if (ms1) {
    ms = Number(ms1[1]);
  } else {
    if (text.length < 19 || text.length > 40) return undefined;
    const m = ISO_DATE.exec(text);
    if (!m) return undefined;
    const [year, month, day, hour, minute, second] = m.slice(1, 7).map(Number) as [number, number, number, number, number, number];
    const daysInMonth = new Date(Date.UTC(year, month, 0)).getUTCDate();
    if (year < 1 || month < 1 || month > 12 || day < 1 || day > daysInMonth) return undefined;
    if (hour > 24 || minute > 59 || second > 59 || (hour === 24 && (minute !== 0 || second !== 0 || Number(m[7] ?? 0) !== 0))) {
      return undefined;
    }
    const fraction = Number(`0.${m[7] ?? '0'}`);
    ms = Date.UTC(year, month - 1, day, hour, minute, second) + Math.floor(fraction * 1000);
    const zone = m[8];
    if (zone && zone !== 'Z' && zone !== 'z') {
      const sign = zone.startsWith('-') ? -1 : 1;
      const digits = zone.slice(1).replace(':', '');
      const offsetMinutes = Number(digits.slice(0, 2)) * 60 + Number(digits.slice(2) || '0');
      ms -= sign * offsetMinutes * 60_000;
    }
  }
  const d = new Date(ms);
  if (Number.isNaN(d.getTime())) return undefined;
  const pad = (n: number, w = 2): string => String(n).padStart(w, '0');
  return `${pad(d.getUTCMonth() + 1)}/${pad(d.getUTCDate())}/${pad(d.getUTCFullYear(), 4)} ${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}`;
}

/**
 * JSON text already known for a parsed value (an activity's input), so `triggerMetadata` does not
 * serialise a large input again.
 */
const knownJsonText = new WeakMap<object, string>();

/** Records that `value` was parsed from `text`. */
export function withJsonText<T>(value: T, text: string): T {
  if (typeof value === 'object' && value !== null) knownJsonText.set(value, text);
  return value;
}

/**
 * The worker's `triggerMetadata`: every binding-data value except nulls, strings as strings and
 * everything else as JSON, as the host converts binding data for an invocation request
 * (`ScriptInvocationContextExtensions.ToRpcInvocationRequest`). The host's `sys` object is never
 * part of it, and fnhost never stores one.
 */
export function triggerMetadataOf(data: BindingData): Record<string, RpcTypedData> {
  const out: Record<string, RpcTypedData> = {};
  for (const [key, value] of data.entries()) {
    if (value === null || value === undefined) continue;
    if (typeof value === 'string') out[key] = { string: value };
    else out[key] = { json: (typeof value === 'object' ? knownJsonText.get(value) : undefined) ?? JSON.stringify(value) };
  }
  return out;
}
