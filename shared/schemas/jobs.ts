import { z } from 'zod';
import { environmentOverrides } from './environment.js';
import { identifier, stepName } from './names.js';
import { dataPath, endpointName, inputColumnName, joinSetting, loggingLevel, outputFileName, splitSettings } from './resources.js';

/** The body of `POST /api/endpoints/{endpoint}/jobs` (invoke). */

const inputName = identifier;

/** A step's name in a pipeline (see shared/schemas/names.ts). */
export { stepName };

/** The most files a file-list input names, and the most characters their names and ETags take together. */
export const MAX_LISTED_FILES = 500;
export const MAX_FILE_LIST_CHARS = 24_000;

/**
 * The name of a file in a file-list input: a blob name relative to the input folder (not
 * percent-encoded). Any name a folder listing scores is one (control characters included: a blob
 * name may hold them, and a folder of such files is scored), so a folder and a list of its files
 * agree on what can be scored. The one check of such names: blob-created triggers
 * (shared/triggers/) refuse a file whose blob name fails it when its event arrives, since no job
 * could list it.
 */
export const listedFileName = z
  .string()
  .min(1)
  .max(1024)
  .refine((n) => !n.split('/').some((s) => s === '.' || s === '..' || s === ''), 'must be a file name relative to the folder: no leading or trailing "/", no empty, "." or ".." segments');

/** Why a file name cannot be listed (the messages of {@link listedFileName}, joined), or undefined when it can. */
export function listedFileNameProblem(name: string): string | undefined {
  const parsed = listedFileName.safeParse(name);
  return parsed.success ? undefined : parsed.error.issues.map((i) => i.message).join('; ');
}

/** A file of a file-list input: its blob name relative to the input folder (not percent-encoded), and the version to read. */
export const listedFile = z.strictObject({
  name: listedFileName,
  /** The ETag of the version to score; without one, the version there when the job lists it. */
  etag: z.string().min(1).max(128).optional(),
});
export type ListedFile = z.infer<typeof listedFile>;

/** Characters a file list takes in a job record (names and ETags): bounded by {@link MAX_FILE_LIST_CHARS}. */
export function fileListChars(files: readonly ListedFile[]): number {
  return files.reduce((n, f) => n + f.name.length + (f.etag?.length ?? 0) + 24, 0);
}

export const jobInput = z
  .strictObject({
    /** Defaults to uri_folder when the path ends with "/", uri_file otherwise. */
    type: z.enum(['uri_folder', 'uri_file']).optional(),
    path: dataPath,
    /**
     * A file list: the job scores exactly these files of the folder `path` (each at the ETag given),
     * instead of everything in it. A file gone or rewritten by the time it is read fails its
     * mini-batch's items, not the job.
     */
    files: z.array(listedFile).min(1).max(MAX_LISTED_FILES).optional(),
  })
  .superRefine((input, ctx) => {
    if (!input.files) return;
    if (input.type === 'uri_file') ctx.addIssue({ code: 'custom', path: ['type'], message: 'a file list is a folder input (uri_folder)' });
    const seen = new Set<string>();
    input.files.forEach((f, i) => {
      if (seen.has(f.name)) ctx.addIssue({ code: 'custom', path: ['files', i, 'name'], message: `"${f.name}" is listed twice` });
      seen.add(f.name);
    });
    if (fileListChars(input.files) > MAX_FILE_LIST_CHARS) {
      ctx.addIssue({ code: 'custom', path: ['files'], message: `the list is too long (at most ${MAX_FILE_LIST_CHARS} characters of names and ETags)` });
    }
  });

/** A literal input of a pipeline job (Azure ML: `{type: literal, value}`, or the bare value). */
export const literalInput = z.union([
  z.strictObject({ type: z.literal('literal'), value: z.union([z.string(), z.number(), z.boolean()]) }),
  z.string(),
  z.number(),
  z.boolean(),
]);

export const invokeInput = z.union([jobInput, literalInput]);

/** An output: a folder (model deployments), or for pipeline outputs of that type a file. */
export const jobOutput = z.strictObject({
  type: z.enum(['uri_folder', 'uri_file']).optional(),
  path: dataPath,
});

/** Every deployment setting can be overridden for one job; omitted fields keep the deployment's value. */
export const settingsOverride = z.strictObject({
  max_concurrency_per_instance: z.number().int().min(1).max(64).optional(),
  mini_batch_size: z.number().int().min(1).max(100_000).optional(),
  error_threshold: z.number().int().min(-1).optional(),
  retry_settings: z
    .strictObject({
      max_retries: z.number().int().min(0).max(100).optional(),
      timeout: z.number().int().min(1).max(86_400).optional(),
    })
    .optional(),
  output_action: z.enum(['append_row', 'summary_only']).optional(),
  output_file_name: outputFileName.optional(),
  logging_level: loggingLevel.optional(),
  /** Literals only (see ./environment.ts). */
  environment_variables: environmentOverrides.optional(),
  /** `null` turns off the deployment's join (as `split: null` does its split). */
  join: joinSetting.nullable().optional(),
  key_field: inputColumnName.nullable().optional(),
  csv_header: z.boolean().optional(),
});
export type SettingsOverride = z.infer<typeof settingsOverride>;

export const invokeBody = z
  .strictObject({
    /** A display name for the job. */
    display_name: z.string().max(256).optional(),
    description: z.string().max(5000).optional(),
    tags: z.record(z.string().max(256), z.string().max(1024)).default({}),
    /** Data (`{type, path}`); for pipeline deployments also literals, bare or `{type: "literal", value}`. */
    inputs: z.record(inputName, invokeInput).default({}),
    outputs: z.record(inputName, jobOutput).optional(),
    settings: settingsOverride.optional(),
    resources: z.strictObject({ instance_count: z.number().int().min(1).max(100).optional() }).optional(),
    split: splitSettings.nullable().optional(),
  })
  .meta({ id: 'InvokeRequest' });
export type InvokeBody = z.infer<typeof invokeBody>;

/**
 * The body of `POST /api/jobs/{id}/rerun` (all optional). Only what leaves the plan and the rows'
 * layout as they were can change: retries, timeout, concurrency, the error threshold, logging,
 * the deployment (with `force` when its model or code differ from the parent's), the output folder.
 */
export const rerunBody = z
  .strictObject({
    /** Another deployment of the parent's endpoint; by default the parent's. */
    deployment: endpointName.optional(),
    /** Run even though the deployment's model or scoring code is not the parent's: the rows then come from two scorers. */
    force: z.boolean().default(false),
    settings: settingsOverride.pick({ retry_settings: true, max_concurrency_per_instance: true, error_threshold: true, logging_level: true }).optional(),
    resources: z.strictObject({ instance_count: z.number().int().min(1).max(100).optional() }).optional(),
    outputs: z.record(inputName, jobOutput).optional(),
    display_name: z.string().max(256).optional(),
    tags: z.record(z.string().max(256), z.string().max(1024)).optional(),
  })
  .meta({ id: 'RerunRequest' });
export type RerunBody = z.infer<typeof rerunBody>;

/**
 * A standalone pipeline job (`POST /api/jobs`), in Azure ML's pipeline job shape
 * (reference-yaml-job-pipeline): `inputs` are values (data or literals) that steps bind with
 * `${{parent.inputs.x}}`; `jobs` is the graph, or `component` names a registered pipeline component.
 */
export const pipelineJobBody = z
  .strictObject({
    type: z.literal('pipeline'),
    display_name: z.string().max(256).optional(),
    description: z.string().max(5000).optional(),
    tags: z.record(z.string().max(256), z.string().max(1024)).default({}),
    /** Accepted for Azure ML YAML; jobs here are not grouped by experiment. */
    experiment_name: z.string().max(256).optional(),
    component: z.string().min(1).optional(),
    inputs: z.record(inputName, invokeInput).default({}),
    outputs: z.record(inputName, jobOutput).default({}),
    settings: z
      .strictObject({
        continue_on_step_failure: z.boolean().default(false),
        default_datastore: z.string().regex(/^(azureml:)?[a-zA-Z0-9][a-zA-Z0-9_.-]{0,254}$/, 'must be a datastore name (or azureml:{name})').default('workspaceblobstore'),
        force_rerun: z.boolean().default(false),
        /** Accepted for Azure ML YAML; steps run in the app. */
        default_compute: z.string().optional(),
      })
      .prefault({}),
    jobs: z.record(z.string(), z.looseObject({}).meta({ description: 'A pipeline step (PipelineStepRequest).' })).optional(),
  })
  .superRefine((body, ctx) => {
    if ((body.component === undefined) === (body.jobs === undefined)) ctx.addIssue({ code: 'custom', path: ['jobs'], message: 'give jobs (the graph) or component (a registered pipeline component), one of them' });
  })
  .meta({ id: 'PipelineJobRequest' });
export type PipelineJobBody = z.infer<typeof pipelineJobBody>;

/** The output of a model deployment's job when the invoke names none (Azure ML's name). */
export const DEFAULT_OUTPUT_NAME = 'score';

/**
 * The steps of a pipeline job body (`POST /api/jobs`, read before validation) that bring their own
 * component inline rather than naming a registered one: such a job runs code (and environment
 * variables, app setting references included) that nobody holding `Workspace.Manage` registered,
 * so submitting it needs that permission too; `Jobs.Invoke` runs what is registered.
 */
export function inlineComponentSteps(body: unknown): string[] {
  const jobs = typeof body === 'object' && body !== null ? (body as { jobs?: unknown }).jobs : undefined;
  if (typeof jobs !== 'object' || jobs === null) return [];
  return Object.entries(jobs as Record<string, unknown>)
    .filter(([, step]) => typeof step === 'object' && step !== null && typeof (step as { component?: unknown }).component === 'object' && (step as { component?: unknown }).component !== null)
    .map(([name]) => name);
}

export const JOB_STATUSES = [
  'NotStarted',
  'Preparing',
  'Running',
  'Finalizing',
  'Completed',
  'Failed',
  'Canceling',
  'Canceled',
] as const;
export type JobStatus = (typeof JOB_STATUSES)[number];

export const TERMINAL_JOB_STATUSES: readonly JobStatus[] = ['Completed', 'Failed', 'Canceled'];

export function isTerminalJob(status: JobStatus): boolean {
  return TERMINAL_JOB_STATUSES.includes(status);
}
