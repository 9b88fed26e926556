import { z } from 'zod';
import { ENDPOINT_SUFFIXES } from '../storage/endpoints.js';
import { environmentVariables } from './environment.js';

/**
 * Request bodies of the resource API, with Azure ML's field names and defaults
 * (batch deployment YAML: mini_batch_size, error_threshold, retry_settings, output_action, ...).
 * Objects are strict: an unknown or misspelt field is an error that names it.
 */

/** Azure ML endpoint and deployment names: 3-32 characters, letters, digits and dashes. */
export const endpointName = z
  .string()
  .regex(/^[a-zA-Z][a-zA-Z0-9-]{1,30}[a-zA-Z0-9]$/, 'must be 3-32 characters: letters, digits and dashes, starting with a letter');

/** Asset names (models, data, datastores). */
export const assetName = z
  .string()
  .regex(/^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,254}$/, 'must be letters, digits, "-", "_" or "." and start with a letter or digit');

export const assetVersion = z
  .string()
  .regex(/^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}$/, 'must be letters, digits, "-", "_" or "." and start with a letter or digit');

export const tags = z.record(z.string().max(256), z.string().max(1024)).default({});
const description = z.string().max(5000).optional();

/** A pointer to data: azureml://datastores/{name}/paths/{path}, a registered account's blob URL, or azureml:{asset}:{version}. */
export const dataPath = z.string().min(1, 'must not be empty').max(4096);

export const datastoreCredentials = z.discriminatedUnion('type', [
  z.strictObject({
    type: z.literal('connection_string'),
    /** The app setting holding the connection string (never the secret itself). */
    setting: z.string().regex(/^[A-Za-z_][A-Za-z0-9_:.-]*$/, 'must be an app setting name'),
  }),
  z.strictObject({
    type: z.literal('managed_identity'),
    /**
     * The account's own blob endpoint, `https://{account_name}.blob.{endpoint}` (derived when left
     * out); the local emulator's `http://127.0.0.1:{port}/{account}` only when the app's storage is
     * the emulator. Anything else is refused (storage/endpoints.ts decides).
     */
    account_url: z.string().max(2048).optional(),
    client_id: z.string().optional(),
  }),
]);

export const datastoreBody = z
  .strictObject({
    name: assetName.optional(),
    type: z.literal('azure_blob').default('azure_blob'),
    description,
    tags,
    account_name: z.string().regex(/^[a-z0-9]{3,24}$/, 'must be a storage account name (3-24 lower-case letters and digits)'),
    container_name: z.string().regex(/^[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}$/, 'must be a blob container name'),
    /** The Azure cloud's storage endpoint suffix (allow-listed in storage/endpoints.ts). */
    endpoint: z.enum(ENDPOINT_SUFFIXES, { error: `must be an Azure storage endpoint suffix: ${ENDPOINT_SUFFIXES.join(', ')}` }).default('core.windows.net'),
    protocol: z.enum(['https', 'http']).default('https'),
    credentials: datastoreCredentials,
  })
  .meta({ id: 'DatastoreRequest' });
export type DatastoreBody = z.infer<typeof datastoreBody>;

export const dataAssetBody = z
  .strictObject({
    name: assetName.optional(),
    version: assetVersion.optional(),
    type: z.enum(['uri_folder', 'uri_file']),
    path: dataPath,
    description,
    tags,
  })
  .meta({ id: 'DataAssetRequest' });
export type DataAssetBody = z.infer<typeof dataAssetBody>;

export const modelBody = z
  .strictObject({
    name: assetName.optional(),
    version: assetVersion.optional(),
    type: z.enum(['onnx', 'custom_model']),
    path: dataPath,
    description,
    tags,
    properties: z.record(z.string(), z.string()).default({}),
  })
  .meta({ id: 'ModelRequest' });
export type ModelBody = z.infer<typeof modelBody>;

export const endpointBody = z
  .strictObject({
    name: endpointName.optional(),
    description,
    tags,
    defaults: z
      .strictObject({
        deployment_name: endpointName.nullable().optional(),
      })
      .optional(),
  })
  .meta({ id: 'EndpointRequest' });
export type EndpointBody = z.infer<typeof endpointBody>;

const retrySettings = z.strictObject({
  max_retries: z.number().int().min(0).max(100).default(3),
  /** Seconds one mini-batch may run before it is stopped and retried. */
  timeout: z.number().int().min(1).max(86_400).default(30),
});

/** Names of the files a job writes beside its predictions (in its output folder). */
export const REPORT_FILE = 'processed_mini_batches.csv';
export const ERRORS_FILE = 'errors.jsonl';
export const SUMMARY_FILE = 'job.json';
export const LOG_FILE = 'logs/job.log';
/** Names a predictions file cannot take: it would overwrite a report (or sit beside the logs folder). */
const REPORT_NAMES: readonly string[] = [REPORT_FILE, ERRORS_FILE, SUMMARY_FILE, LOG_FILE.split('/')[0] ?? 'logs'];

/** `output_file_name`, in deployments, invoke overrides and trigger rules alike. */
export const outputFileName = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$/, 'must be a plain file name such as predictions.csv')
  .refine((name) => !REPORT_NAMES.includes(name.toLowerCase()), `is the name of a file the job writes itself (${REPORT_NAMES.join(', ')}); choose another`);

export const loggingLevel = z.enum(['debug', 'info', 'warning', 'error', 'critical']);

/** A column of a tabular input, as `join.columns` and `key_field` name it (CSV header, Parquet schema, JSON Lines key). */
export const inputColumnName = z.string().min(1).max(256);

/**
 * `join`: input columns copied beside each prediction of the built-in runner (SageMaker's
 * JoinSource): `"all"`, or `{columns: [...]}` (each named once).
 */
export const joinSetting = z.union([
  z.literal('all'),
  z.strictObject({
    columns: z
      .array(inputColumnName)
      .min(1)
      .max(1000)
      .refine((c) => new Set(c).size === c.length, 'each column may be named once'),
  }),
]);
export type JoinSetting = z.infer<typeof joinSetting>;

export const deploymentSettings = z.strictObject({
  max_concurrency_per_instance: z.number().int().min(1).max(64).default(1),
  /** Files per mini-batch (row ranges when `split` is set). */
  mini_batch_size: z.number().int().min(1).max(100_000).default(10),
  /** Failed items tolerated before the job fails; -1 = unlimited. */
  error_threshold: z.number().int().min(-1).default(-1),
  retry_settings: retrySettings.prefault({}),
  output_action: z.enum(['append_row', 'summary_only']).default('append_row'),
  output_file_name: outputFileName.default('predictions.csv'),
  logging_level: loggingLevel.default('info'),
  /** Literals, or `${{app_settings.NAME}}` for secrets (see ./environment.ts). */
  environment_variables: environmentVariables.default({}),
  /** Input columns copied beside each prediction (tabular inputs, built-in runner); see shared/scoring/columns.ts. */
  join: joinSetting.optional(),
  /** An input column whose value replaces `row` (Vertex AI's keyField). */
  key_field: inputColumnName.optional(),
  /** A header line opens a CSV predictions file (Azure ML's append_row writes none: off by default). */
  csv_header: z.boolean().optional(),
});
export type DeploymentSettings = z.infer<typeof deploymentSettings>;

/** Split large tabular files into row ranges so one file fans out over many mini-batches. */
export const splitSettings = z.strictObject({
  by: z.literal('rows'),
  max_rows: z.number().int().min(1).max(100_000_000),
});
export type SplitSettings = z.infer<typeof splitSettings>;

export const resources = z.strictObject({
  instance_count: z.number().int().min(1).max(100).default(1),
});

export const codeConfiguration = z.strictObject({
  /** Folder holding the scoring script and anything it imports. */
  code: dataPath,
  scoring_script: z
    .string()
    .regex(/^[A-Za-z0-9_][A-Za-z0-9_./-]*\.(js|mjs)$/, 'must be a relative path to a .js or .mjs file')
    .refine((p) => !p.split('/').includes('..'), 'must stay inside the code folder'),
});

/** A model deployment (`type: model`, the default): today's deployment body, unchanged. */
export const modelDeploymentBody = z
  .strictObject({
    name: endpointName.optional(),
    endpoint_name: endpointName.optional(),
    type: z.literal('model').default('model'),
    description,
    tags,
    /** azureml:{name}:{version}, {name}:{version}, or azureml:{name}@latest */
    model: z.string().min(1),
    code_configuration: codeConfiguration.optional(),
    resources: resources.prefault({}),
    settings: deploymentSettings.prefault({}),
    split: splitSettings.optional(),
  })
  .meta({ id: 'ModelDeploymentRequest' });
export type ModelDeploymentBody = z.infer<typeof modelDeploymentBody>;

/**
 * Azure ML's pipeline deployment `settings` (reference-yaml-deployment-batch, "settings" of a
 * pipeline component deployment). `default_compute` has no meaning here and is not accepted.
 */
export const pipelineDeploymentSettings = z.strictObject({
  /** Keep running steps that do not depend on a failed one (Azure ML's default: false). */
  continue_on_step_failure: z.boolean().default(false),
  /** The datastore for outputs given no path: a name, or azureml:{name} as Azure ML writes it. */
  default_datastore: z
    .string()
    .regex(/^(azureml:)?[a-zA-Z0-9][a-zA-Z0-9_.-]{0,254}$/, 'must be a datastore name (or azureml:{name})')
    .default('workspaceblobstore'),
  /** Run every step again even when its inputs and component are unchanged (Azure ML's default: false). */
  force_rerun: z.boolean().default(false),
});

/**
 * A pipeline component deployment (`type: pipeline`): `component` (azureml:{name}:{version},
 * azureml:{name}@latest, or a pipeline component inline, checked in full when the deployment is
 * created) or `job_definition: azureml:{job id}`, exactly one of them. No model or code here.
 */
export const pipelineDeploymentBody = z
  .strictObject({
    name: endpointName.optional(),
    endpoint_name: endpointName.optional(),
    type: z.literal('pipeline'),
    description,
    tags,
    // The inline form is a pipeline component body (shared/components/schemas.ts), parsed by the
    // registry with field names under "component"; importing it here would make the two schema
    // modules import each other.
    component: z.union([z.string().min(1), z.looseObject({}).meta({ description: 'An inline pipeline component (PipelineComponentRequest).' })]).optional(),
    /** azureml:{pipeline job id}: deploy the graph of an existing pipeline job. */
    job_definition: z.string().min(1).optional(),
    settings: pipelineDeploymentSettings.prefault({}),
  })
  .superRefine((body, ctx) => {
    if (body.component === undefined && body.job_definition === undefined) {
      ctx.addIssue({ code: 'custom', path: ['component'], message: 'a pipeline deployment needs component (or job_definition)' });
    } else if (body.component !== undefined && body.job_definition !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['job_definition'], message: 'give component or job_definition, not both' });
    }
  })
  .meta({ id: 'PipelineDeploymentRequest' });
export type PipelineDeploymentBody = z.infer<typeof pipelineDeploymentBody>;

/** A deployment body: `type` (default model) chooses the shape. */
export const deploymentBody = z
  .discriminatedUnion('type', [modelDeploymentBody, pipelineDeploymentBody], {
    error: (issue) => (issue.code === 'invalid_union' ? 'must be "model" or "pipeline"' : undefined),
  })
  .meta({ id: 'DeploymentRequest' });
export type DeploymentBody = z.infer<typeof deploymentBody>;
