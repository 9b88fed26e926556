import type { RpcTypedData } from '../worker/core-types.js';
import type { FailureDetails } from './history.js';

/** The JSON text a function's return value is stored as (what `JSON.parse` in the library reads back). */
export function jsonTextOfTypedData(data: RpcTypedData | null | undefined): string {
  if (!data) return 'null';
  if (typeof data.json === 'string') return data.json;
  if (typeof data.string === 'string') return JSON.stringify(data.string);
  if (typeof data.int === 'number') return String(data.int);
  if (typeof data.double === 'number') return String(data.double);
  const bytes = data.bytes ?? data.stream;
  if (bytes) return JSON.stringify(Buffer.from(bytes).toString('base64'));
  return 'null';
}

interface SerializedFailure {
  errorType: string;
  errorMessage: string;
  stackTrace?: string;
  isNonRetriable?: boolean;
  properties?: Record<string, unknown>;
}

/**
 * durable-functions 3.5 replaces an activity error's message with a JSON description when the app
 * registered an exception-properties provider. Recognise it so failures carry structured
 * FailureDetails (error type, custom properties) to the orchestrator.
 */
export function parseSerializedFailure(message: string): SerializedFailure | undefined {
  const text = message.trim();
  if (!text.startsWith('{')) return undefined;
  try {
    const value = JSON.parse(text) as Record<string, unknown>;
    if (typeof value['errorType'] !== 'string' || typeof value['errorMessage'] !== 'string') return undefined;
    const result: SerializedFailure = { errorType: value['errorType'], errorMessage: value['errorMessage'] };
    if (typeof value['stackTrace'] === 'string') result.stackTrace = value['stackTrace'];
    if (typeof value['isNonRetriable'] === 'boolean') result.isNonRetriable = value['isNonRetriable'];
    if (typeof value['properties'] === 'object' && value['properties'] !== null) {
      result.properties = value['properties'] as Record<string, unknown>;
    }
    return result;
  } catch {
    return undefined;
  }
}

export interface TaskFailure {
  reason: string;
  details: string;
  failureDetails: FailureDetails | undefined;
}

/** Turns an activity's error into TaskFailed fields, as the Durable extension records them. */
export function activityFailure(functionName: string, error: Error): TaskFailure {
  const structured = parseSerializedFailure(error.message);
  if (structured) {
    return {
      reason: `Activity function '${functionName}' failed: ${structured.errorMessage}`,
      details: structured.stackTrace ?? '',
      failureDetails: {
        ErrorType: structured.errorType,
        ErrorMessage: structured.errorMessage,
        StackTrace: structured.stackTrace,
        IsNonRetriable: structured.isNonRetriable ?? false,
        Properties: structured.properties,
      },
    };
  }
  return {
    reason: `Activity function '${functionName}' failed: ${error.message}`,
    details: error.stack ?? '',
    failureDetails: undefined,
  };
}
