import { z } from 'zod';
import { settingsOverride } from './jobs.js';
import { MAX_LISTED_FILES } from './jobs.js';
import { assetName, endpointName } from './resources.js';

/**
 * The body of `PUT /api/endpoints/{endpoint}/triggers/{name}`: a blob-created trigger rule. Files
 * written under `source` start jobs of the endpoint, batched (see shared/triggers/).
 */

export const triggerName = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/, 'must be 1-64 letters, digits, "_" or "-", starting with a letter or digit');

/** The placeholders an output path template may hold. */
export const OUTPUT_PLACEHOLDERS = ['date', 'rule', 'job_id'] as const;

// eslint-disable-next-line no-control-regex -- these are exactly what is refused
const CONTROL = /[\u0000-\u001f\u007f]/;

export const triggerSource = z.strictObject({
  /** A registered datastore: events for its account and container are the ones that count. */
  datastore: assetName,
  /**
   * Blob names starting with this (in the datastore's container) start work, as Event Grid's
   * `subjectBeginsWith`; a plain blob name prefix, not percent-encoded. The job's input folder is
   * the prefix up to its last "/"; files are named relative to it.
   */
  path_prefix: z
    .string()
    .max(1024)
    .refine((p) => !p.startsWith('/'), 'must not start with "/" (it is a blob name prefix inside the container)')
    .refine((p) => !CONTROL.test(p), 'must not hold control characters')
    .refine((p) => !p.split('/').some((s) => s === '.' || s === '..'), 'must not hold "." or ".." segments')
    .default(''),
  /** Only names ending with one of these (case-insensitively), e.g. [".csv"]; none: every file. */
  suffixes: z
    .array(
      z
        .string()
        .min(1)
        .max(64)
        .refine((x) => !x.includes('/'), 'a suffix ends a file name: no "/"')
        .refine((x) => !CONTROL.test(x), 'must not hold control characters'),
    )
    .max(20)
    .optional(),
});

export const triggerBatching = z.strictObject({
  /** How long a batch stays open after its first file arrives. */
  window_seconds: z.number().int().min(1, 'must be at least 1 second').max(3600, 'must be at most 3600 seconds (an hour)').default(30),
  /** A batch closes at once when it holds this many files; files beyond start the next batch. */
  max_files: z.number().int().min(1).max(MAX_LISTED_FILES, `must be at most ${MAX_LISTED_FILES}`).default(100),
});

export const triggerBody = z
  .strictObject({
    name: triggerName.optional(),
    endpoint_name: endpointName.optional(),
    description: z.string().max(5000).optional(),
    source: triggerSource,
    /** The deployment its jobs run on; without one, the endpoint's default when each job is made. */
    deployment: endpointName.optional(),
    /** Deployment settings overridden for its jobs, as in an invoke body. */
    settings: settingsOverride.optional(),
    /**
     * Where each job writes: a folder on a datastore, with `{date}` (the job's UTC day, YYYY-MM-DD),
     * `{rule}` (the rule's name) and `{job_id}` (required: each job needs a folder of its own).
     * Without it, a job writes to `azureml/{job id}/score/` on the workspace datastore.
     */
    output_path: z.string().min(1).max(2048).optional(),
    batching: triggerBatching.prefault({}),
    enabled: z.boolean().default(true),
  })
  .meta({ id: 'TriggerRuleRequest' });
export type TriggerBody = z.infer<typeof triggerBody>;
