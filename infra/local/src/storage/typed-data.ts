import { FnHostError } from '../errors.js';
import type { RpcTypedData } from '../worker/core-types.js';

/**
 * What an output binding received, in the shapes storage writes need. The library turns a string
 * into `string`, a Buffer/TypedArray into `bytes`, a number into `int`/`double` and anything else
 * into `json`.
 */
export type OutputValue =
  | { kind: 'text'; text: string }
  | { kind: 'bytes'; bytes: Buffer }
  | { kind: 'json'; value: unknown }
  | { kind: 'none' };

export function outputValueOf(data: RpcTypedData): OutputValue {
  if (data.string !== undefined && data.string !== null) return { kind: 'text', text: data.string };
  if (data.json !== undefined && data.json !== null) {
    try {
      return { kind: 'json', value: JSON.parse(data.json) as unknown };
    } catch (err) {
      throw new FnHostError('ERR_BINDING', 'The output value is not valid JSON.', { cause: err });
    }
  }
  if (data.bytes) return { kind: 'bytes', bytes: Buffer.from(data.bytes) };
  if (data.stream) return { kind: 'bytes', bytes: Buffer.from(data.stream) };
  if (typeof data.int === 'number') return { kind: 'text', text: String(data.int) };
  if (typeof data.double === 'number') return { kind: 'text', text: String(data.double) };
  if (data.collectionString?.string) return { kind: 'json', value: data.collectionString.string };
  if (data.collectionDouble?.double) return { kind: 'json', value: data.collectionDouble.double };
  if (data.collectionSint64?.sint64) return { kind: 'json', value: data.collectionSint64.sint64 };
  if (data.collectionBytes?.bytes) return { kind: 'json', value: data.collectionBytes.bytes.map((b) => Buffer.from(b)) };
  return { kind: 'none' };
}

/** The bytes a blob output writes for a value: text as UTF-8, JSON as its text. */
export function outputBytes(value: OutputValue): Buffer | undefined {
  switch (value.kind) {
    case 'text':
      return Buffer.from(value.text, 'utf8');
    case 'bytes':
      return value.bytes;
    case 'json':
      return Buffer.from(JSON.stringify(value.value), 'utf8');
    case 'none':
      return undefined;
  }
}

/** A trigger or input value as the worker expects it for the binding's `dataType`. */
export function typedDataFor(bytes: Buffer, dataType: unknown): RpcTypedData {
  return dataType === 'string' ? { string: bytes.toString('utf8') } : { bytes };
}

/** Wraps a value as JSON typed data, the way the host passes objects to workers. */
export function jsonData(value: unknown): RpcTypedData {
  return { json: JSON.stringify(value) };
}
