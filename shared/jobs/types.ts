import type { DataLocation } from '../registry/registry.js';
import type { ModelDoc } from '../registry/types.js';
import type { DeploymentSettings, SplitSettings } from '../schemas/resources.js';
import type { JobStatus } from '../schemas/jobs.js';

/** Who started a job. */
export interface Invoker {
  /** A display name: the signed-in principal, the key used, or "anonymous". */
  name: string;
  id?: string | undefined;
  via: 'easy_auth' | 'function_key' | 'anonymous' | 'event_grid';
}

/** Everything fixed when a job is created; it never changes afterwards. */
export interface JobSpec {
  id: string;
  endpoint: string;
  /** The endpoint's incarnation (EndpointDoc.uid) when the job was invoked. */
  endpoint_uid?: string | undefined;
  deployment: string;
  display_name?: string | undefined;
  description?: string | undefined;
  tags: Record<string, string>;
  model: ModelDoc;
  code_configuration?: { code: string; scoring_script: string } | undefined;
  /**
   * Where the model's files and the scoring code were when the job was invoked: a job never looks a
   * name up again, so re-registering a datastore, model or code folder under the same name cannot
   * change what a running job reads.
   */
  model_location: DataLocation;
  code_location?: DataLocation | undefined;
  /**
   * What the model's and code's files were at invoke (a hash of each file's path, size and ETag):
   * every instance that runs a mini-batch checks it, so a job never mixes two versions of a model
   * rewritten in place while it runs.
   */
  model_content?: string | undefined;
  code_content?: string | undefined;
  settings: DeploymentSettings;
  resources: { instance_count: number };
  split?: SplitSettings | undefined;
  /** `path` as the caller wrote it; `uri` canonical (encoded once); `location` resolved and decoded. */
  input: { name: string; type: 'uri_folder' | 'uri_file'; path: string; uri: string; location: DataLocation };
  /** The output folder, claimed for this job alone at invoke (see JobStore.claimOutput). */
  output: { name: string; uri: string; location: DataLocation };
  invoked_by: Invoker;
  created_at: string;
}

export interface JobCounts {
  mini_batches: { total: number; succeeded: number; failed: number; retried: number };
  items: { total: number; succeeded: number; failed: number };
}

export interface JobError {
  code: string;
  message: string;
  details?: Record<string, unknown> | undefined;
}

/** What moves while the job runs. */
export interface JobState {
  status: JobStatus;
  started_at?: string | undefined;
  completed_at?: string | undefined;
  counts: JobCounts;
  error?: JobError | undefined;
  /** How many sub-orchestrations (chunks of mini-batches) the plan has. */
  chunks?: number | undefined;
  /**
   * Items that failed for good so far, added as each mini-batch ends (not at progress intervals):
   * lanes running side by side check the error threshold against it.
   */
  failures?: number | undefined;
  /**
   * Column names of the prediction rows (predictions.csv has no header, as in Azure ML). Fixed for
   * the whole job by the first mini-batch that returns rows (an atomic update of this record); every
   * mini-batch writes its rows in this order, by name.
   */
  columns?: string[] | undefined;
  /** Result keys that were not among the columns and were dropped; each is warned about once. */
  dropped_columns?: string[] | undefined;
  /**
   * Set when part of the job failed for a reason that must stop all of it (a lane could not record
   * its work): every lane's next mini-batch sees it and stops, and the job ends Failed with it.
   */
  halt?: JobError | undefined;
}

export interface Job {
  spec: JobSpec;
  state: JobState;
  etag: string;
}

export function emptyCounts(): JobCounts {
  return {
    mini_batches: { total: 0, succeeded: 0, failed: 0, retried: 0 },
    items: { total: 0, succeeded: 0, failed: 0 },
  };
}

/** Names of the files a job writes beside its predictions. */
export const REPORT_FILE = 'processed_mini_batches.csv';
export const ERRORS_FILE = 'errors.jsonl';
export const SUMMARY_FILE = 'job.json';
export const LOG_FILE = 'logs/job.log';

/** Sums two sets of counts (totals are the larger of the two: they are the plan's, not summed). */
export function addCounts(a: JobCounts, b: JobCounts): JobCounts {
  return {
    mini_batches: {
      total: Math.max(a.mini_batches.total, b.mini_batches.total),
      succeeded: a.mini_batches.succeeded + b.mini_batches.succeeded,
      failed: a.mini_batches.failed + b.mini_batches.failed,
      retried: a.mini_batches.retried + b.mini_batches.retried,
    },
    items: {
      total: Math.max(a.items.total, b.items.total),
      succeeded: a.items.succeeded + b.items.succeeded,
      failed: a.items.failed + b.items.failed,
    },
  };
}
