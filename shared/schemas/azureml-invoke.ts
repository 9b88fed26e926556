import { z } from 'zod';
import { BatchError, type FieldIssue } from '../errors.js';
import type { SettingsOverride } from './jobs.js';
import { dataPath } from './resources.js';
import { parseOrThrow } from './validate.js';

/**
 * Azure ML's batch-endpoint REST invoke body (what Logic Apps and scripts send to a batch
 * endpoint's scoring URI), accepted by `POST /api/endpoints/{endpoint}/jobs` beside the native
 * body and mapped to it here, in one place:
 *
 * ```json
 * { "properties": {
 *     "InputData":  { "<name>": { "JobInputType": "UriFolder" | "UriFile" | "Literal", "Uri": "…", "Value": … } },
 *     "OutputData": { "<name>": { "JobOutputType": "UriFolder" | "UriFile", "Uri": "…" } },
 *     "OutputFileName": "…", "MiniBatchSize": 10, "ErrorThreshold": -1,
 *     "RetrySettings": { "MaxRetries": 3, "Timeout": "PT30S" }, "Compute": { "InstanceCount": 2 } } }
 * ```
 *
 * Azure ML's service reads these keys whatever their case: its documentation writes them in
 * PascalCase, its Python SDK sends camelCase (`inputData`, `jobInputType`, `uri`), and type names
 * come as `UriFolder` or `uri_folder`. So keys and type names match case-insensitively (and type
 * names without `_`); errors name the field in the documented PascalCase, with the path from the
 * body's root (`properties.InputData.x.Uri`), including errors found after mapping (a path that
 * does not exist, a literal given to a model deployment).
 */

const name = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]{0,254}$/, 'must be an identifier');

/** Azure ML's data modes; each is accepted and has no effect here (inputs are read directly). */
const mode = z.string().max(64).optional().meta({ description: 'Accepted for Azure ML compatibility; no effect' });

const inputData = z
  .strictObject({
    JobInputType: z.enum(['UriFolder', 'UriFile', 'Literal'], { error: 'must be UriFolder, UriFile or Literal' }),
    Uri: dataPath.optional(),
    Value: z.union([z.string(), z.number(), z.boolean()]).optional(),
    Mode: mode,
    Description: z.string().max(5000).optional(),
  })
  .superRefine((v, ctx) => {
    if (v.JobInputType === 'Literal') {
      if (v.Value === undefined) ctx.addIssue({ code: 'custom', path: ['Value'], message: 'required for a Literal input' });
      if (v.Uri !== undefined) ctx.addIssue({ code: 'custom', path: ['Uri'], message: 'a Literal input has a Value, not a Uri' });
    } else {
      if (v.Uri === undefined) ctx.addIssue({ code: 'custom', path: ['Uri'], message: `required for a ${v.JobInputType} input` });
      if (v.Value !== undefined) ctx.addIssue({ code: 'custom', path: ['Value'], message: `a ${v.JobInputType} input has a Uri, not a Value` });
    }
  });

const outputData = z.strictObject({
  JobOutputType: z.enum(['UriFolder', 'UriFile'], { error: 'must be UriFolder or UriFile' }),
  Uri: dataPath,
  Mode: mode,
  Description: z.string().max(5000).optional(),
});

/** ISO 8601 durations as Azure ML sends them (`PT30S`, `PT1H30M`), or seconds. */
const ISO_DURATION = /^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$/i;

const timeout = z.union([z.number(), z.string()]).transform((v, ctx) => {
  if (typeof v === 'number') return v;
  const m = ISO_DURATION.exec(v.trim());
  if (!m || v.trim().toUpperCase() === 'P' || v.trim().toUpperCase().endsWith('T')) {
    ctx.addIssue({ code: 'custom', message: 'must be seconds or an ISO 8601 duration such as PT30S' });
    return z.NEVER;
  }
  const [, d, h, min, s] = m;
  return Number(d ?? 0) * 86_400 + Number(h ?? 0) * 3600 + Number(min ?? 0) * 60 + Number(s ?? 0);
});

export const azureMlInvokeBody = z
  .strictObject({
    properties: z.strictObject({
      InputData: z.record(name, inputData).default({}),
      OutputData: z.record(name, outputData).optional(),
      OutputFileName: z.string().optional(),
      MiniBatchSize: z.number().optional(),
      ErrorThreshold: z.number().optional(),
      RetrySettings: z.strictObject({ MaxRetries: z.number().optional(), Timeout: timeout.optional() }).optional(),
      Compute: z.strictObject({ InstanceCount: z.number().optional() }).optional(),
    }),
  })
  .meta({ id: 'AzureMLInvokeRequest', description: "Azure ML's batch-endpoint REST invoke body (keys match case-insensitively)" });
export type AzureMlInvokeBody = z.infer<typeof azureMlInvokeBody>;

/** The documented spelling of every key, by where it may appear. */
const KEYS = {
  root: ['properties'],
  properties: ['InputData', 'OutputData', 'OutputFileName', 'MiniBatchSize', 'ErrorThreshold', 'RetrySettings', 'Compute'],
  input: ['JobInputType', 'Uri', 'Value', 'Mode', 'Description'],
  output: ['JobOutputType', 'Uri', 'Mode', 'Description'],
  retry: ['MaxRetries', 'Timeout'],
  compute: ['InstanceCount'],
} as const;

const TYPE_NAMES = ['UriFolder', 'UriFile', 'Literal'];

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** `value` with its keys spelt as documented (a key not known here is kept as sent, to be refused by name). */
function canonical(value: unknown, keys: readonly string[], each: Record<string, (v: unknown) => unknown> = {}): unknown {
  if (!isRecord(value)) return value;
  const out: Record<string, unknown> = {};
  for (const [key, v] of Object.entries(value)) {
    const known = keys.find((k) => k.toLowerCase() === key.toLowerCase());
    // Two spellings of one key: the second stays as sent and is refused as an unknown field.
    const target = known !== undefined && !(known in out) ? known : key;
    out[target] = each[target] ? each[target](v) : v;
  }
  return out;
}

function typeName(v: unknown): unknown {
  if (typeof v !== 'string') return v;
  return TYPE_NAMES.find((t) => t.toLowerCase() === v.replace(/_/g, '').toLowerCase()) ?? v;
}

function mapValues(v: unknown, f: (item: unknown) => unknown): unknown {
  return isRecord(v) ? Object.fromEntries(Object.entries(v).map(([k, item]) => [k, f(item)])) : v;
}

function canonicalBody(raw: unknown): unknown {
  return canonical(raw, KEYS.root, {
    properties: (p) =>
      canonical(p, KEYS.properties, {
        InputData: (d) => mapValues(d, (i) => canonical(i, KEYS.input, { JobInputType: typeName })),
        OutputData: (d) => mapValues(d, (o) => canonical(o, KEYS.output, { JobOutputType: typeName })),
        RetrySettings: (r) => canonical(r, KEYS.retry),
        Compute: (c) => canonical(c, KEYS.compute),
      }),
  });
}

/** Whether a request body is Azure ML's REST form: an object with `properties` (the native body has none). */
export function isAzureMlInvokeBody(raw: unknown): boolean {
  return isRecord(raw) && Object.keys(raw).some((k) => k.toLowerCase() === 'properties');
}

export interface MappedInvokeBody {
  /** The native invoke body (still to be validated as one, which then checks every value). */
  body: Record<string, unknown>;
  /** The Azure ML field a native field came from (`inputs.x.path` → `properties.InputData.x.Uri`). */
  fields: [native: string, azureMl: string][];
}

/**
 * Validates Azure ML's REST body and maps it to the native invoke body. Only the shape is checked
 * here; values (paths, settings' ranges, literals against the deployment) are checked by the
 * native invoke, and {@link azureMlError} names them as Azure ML fields.
 */
export function fromAzureMlInvokeBody(raw: unknown): MappedInvokeBody {
  const { properties: p } = parseOrThrow(azureMlInvokeBody, canonicalBody(raw), 'request body (Azure ML batch endpoint invoke)');
  const fields: [string, string][] = [
    ['inputs', 'properties.InputData'],
    ['outputs', 'properties.OutputData'],
  ];
  const inputs: Record<string, unknown> = {};
  for (const [key, input] of Object.entries(p.InputData)) {
    const at = `properties.InputData.${key}`;
    fields.push([`inputs.${key}.type`, `${at}.JobInputType`], [`inputs.${key}.path`, `${at}.Uri`], [`inputs.${key}.value`, `${at}.Value`], [`inputs.${key}`, at]);
    if (input.JobInputType === 'Literal') inputs[key] = { type: 'literal', value: input.Value };
    else inputs[key] = { type: input.JobInputType === 'UriFolder' ? 'uri_folder' : 'uri_file', path: input.Uri };
  }
  const outputs = p.OutputData === undefined ? undefined : Object.fromEntries(
    Object.entries(p.OutputData).map(([key, output]) => {
      const at = `properties.OutputData.${key}`;
      fields.push([`outputs.${key}.type`, `${at}.JobOutputType`], [`outputs.${key}.path`, `${at}.Uri`], [`outputs.${key}`, at]);
      return [key, { type: output.JobOutputType === 'UriFolder' ? 'uri_folder' : 'uri_file', path: output.Uri }];
    }),
  );
  const settings: SettingsOverride = {};
  if (p.OutputFileName !== undefined) settings.output_file_name = p.OutputFileName;
  if (p.MiniBatchSize !== undefined) settings.mini_batch_size = p.MiniBatchSize;
  if (p.ErrorThreshold !== undefined) settings.error_threshold = p.ErrorThreshold;
  if (p.RetrySettings?.MaxRetries !== undefined || p.RetrySettings?.Timeout !== undefined) {
    settings.retry_settings = {
      ...(p.RetrySettings.MaxRetries === undefined ? {} : { max_retries: p.RetrySettings.MaxRetries }),
      ...(p.RetrySettings.Timeout === undefined ? {} : { timeout: p.RetrySettings.Timeout }),
    };
  }
  fields.push(
    ['settings.output_file_name', 'properties.OutputFileName'],
    ['settings.mini_batch_size', 'properties.MiniBatchSize'],
    ['settings.error_threshold', 'properties.ErrorThreshold'],
    ['settings.retry_settings.max_retries', 'properties.RetrySettings.MaxRetries'],
    ['settings.retry_settings.timeout', 'properties.RetrySettings.Timeout'],
    ['settings.retry_settings', 'properties.RetrySettings'],
    ['settings', 'properties'],
    ['resources.instance_count', 'properties.Compute.InstanceCount'],
    ['resources', 'properties.Compute'],
  );
  const body: Record<string, unknown> = { inputs };
  if (outputs !== undefined) body['outputs'] = outputs;
  if (Object.keys(settings).length > 0) body['settings'] = settings;
  if (p.Compute?.InstanceCount !== undefined) body['resources'] = { instance_count: p.Compute.InstanceCount };
  // Longest first, so a field is renamed by its most specific mapping.
  fields.sort((a, b) => b[0].length - a[0].length);
  return { body, fields };
}

function renameField(field: string, fields: MappedInvokeBody['fields']): string {
  for (const [native, azureMl] of fields) {
    if (field === native || field.startsWith(`${native}.`) || field.startsWith(`${native}[`)) return azureMl + field.slice(native.length);
  }
  return field;
}

function renameInText(text: string, fields: MappedInvokeBody['fields']): string {
  let out = text;
  // Only dotted fields: a bare `settings` or `inputs` in a message is as often a plain word.
  for (const [native, azureMl] of fields.filter(([n]) => n.includes('.'))) {
    out = out.replace(new RegExp(`(^|[\\s'"(])${native.replace(/[.[\]]/g, '\\$&')}(?=[\\s:'"),.]|$)`, 'g'), (_, pre: string) => `${pre}${azureMl}`);
  }
  return out;
}

/** A validation error of the native invoke, with its fields named as the Azure ML body's. */
export function azureMlError(err: unknown, fields: MappedInvokeBody['fields']): unknown {
  if (!(err instanceof BatchError) || (err.issues.length === 0 && typeof err.details['field'] !== 'string')) return err;
  const issues: FieldIssue[] = err.issues.map((i) => ({ field: renameField(i.field, fields), message: i.message }));
  const details = typeof err.details['field'] === 'string' ? { ...err.details, field: renameField(err.details['field'], fields) } : err.details;
  return new BatchError(err.code, renameInText(err.message, fields), { cause: err, kind: err.kind, retryable: err.retryable, issues, details });
}

/**
 * Runs an invoke with the native body: `raw` itself, or Azure ML's REST body mapped to it, in
 * which case errors name the Azure ML fields.
 */
export async function withNativeInvokeBody<T>(raw: unknown, invoke: (body: unknown) => Promise<T>): Promise<T> {
  if (!isAzureMlInvokeBody(raw)) return invoke(raw);
  const { body, fields } = fromAzureMlInvokeBody(raw);
  try {
    return await invoke(body);
  } catch (err) {
    throw azureMlError(err, fields);
  }
}
