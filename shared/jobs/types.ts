import type { DataLocation } from '../registry/registry.js';
import type { PipelineComponentDoc } from '../components/types.js';
import type { ModelDoc } from '../registry/types.js';
import type { DeploymentSettings, SplitSettings } from '../schemas/resources.js';
import type { JobStatus, ListedFile } from '../schemas/jobs.js';
import type { RerunOf } from './rerun.js';

/** Who started a job. */
export interface Invoker {
  /** A display name: the signed-in user's name (or the application's id), the key used, or "anonymous". */
  name: string;
  /** The principal's object id (`oid`) in Microsoft Entra ID. */
  id?: string | undefined;
  /** The principal's tenant (`tid`). */
  tenant?: string | undefined;
  /** The client application that obtained the token (`azp`/`appid`); for an application or managed identity, itself. */
  app_id?: string | undefined;
  /** `user` (delegated scopes) or `app` (an application or managed identity, app roles). */
  kind?: 'user' | 'app' | undefined;
  /** How the caller authenticated: a bearer token validated by the app, App Service authentication, a function key, none; or a trigger. */
  via: 'entra' | 'easy_auth' | 'function_key' | 'anonymous' | 'event_grid';
  /** For `event_grid`: the trigger rule and the batch of files that made the job. */
  trigger?: { rule: string; batch: string } | undefined;
}

/**
 * What the mini-batch engine runs (Azure ML's `parallel` step): a model deployment job's own
 * fields, or one parallel step of a pipeline job.
 */
export interface ParallelWork {
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
  input: DataValue & { name: string };
  /** The output folder, claimed for this job alone at invoke (see JobStore.claimOutput). */
  output: { name: string; uri: string; location: DataLocation };
}

/** A data input as resolved at invoke: `path` as the caller wrote it, `uri` canonical, `location` decoded. */
export interface DataValue {
  type: 'uri_folder' | 'uri_file';
  path: string;
  uri: string;
  location: DataLocation;
  /**
   * A file list (a folder input that names its files): the job scores exactly these files of the
   * folder, each at its ETag, rather than everything listed there (see shared/planning/list-input.ts).
   */
  files?: ListedFile[] | undefined;
  /**
   * A pipeline job's data input: what it held at invoke (folderContent's key). Steps that read it
   * check it first, so a job never reads an input rewritten after it was invoked.
   */
  content?: string | undefined;
}

/** A literal input (pipeline jobs only), checked against the component's type at invoke. */
export interface LiteralValue {
  type: 'literal';
  value: string | number | boolean;
}

/** Where a job or step output goes: a folder (or file) claimed for this job at invoke. */
export interface OutputTarget {
  type: 'uri_folder' | 'uri_file';
  uri: string;
  location: DataLocation;
}

interface JobSpecBase {
  id: string;
  /** The endpoint invoked; empty for a standalone pipeline job (`POST /api/jobs`). */
  endpoint: string;
  /** The endpoint's incarnation (EndpointDoc.uid) when the job was invoked. */
  endpoint_uid?: string | undefined;
  deployment: string;
  display_name?: string | undefined;
  description?: string | undefined;
  tags: Record<string, string>;
  invoked_by: Invoker;
  created_at: string;
  /**
   * How the job runs. Absent in jobs created before pipelines existed: they run on the `batchJob`
   * orchestrator with their state in the job record. `steps`: the `pipelineJob` orchestrator runs
   * the job as a graph of steps (a model deployment's job is one `parallel` step, `batchscoring`,
   * as in Azure ML), each step's state in a record of its own.
   */
  runs_as?: 'steps' | undefined;
}

/** Everything fixed when a model deployment's job is created; it never changes afterwards. */
export interface ModelJobSpec extends JobSpecBase, ParallelWork {
  kind?: 'model' | undefined;
  /** A rerun (POST /api/jobs/{id}/rerun): the job it reruns and what it reuses (see shared/jobs/rerun.ts). */
  rerun_of?: RerunOf | undefined;
}

/** Everything fixed when a pipeline job is created (see PipelineSpec). */
export interface PipelineJobSpec extends JobSpecBase {
  kind: 'pipeline';
  pipeline: PipelineSpec;
  runs_as: 'steps';
}

export type JobSpec = ModelJobSpec | PipelineJobSpec;

export function isPipelineSpec(spec: JobSpec): spec is PipelineJobSpec {
  return spec.kind === 'pipeline';
}

/** The step a model deployment's job runs as (Azure ML's name for it). */
export const MODEL_STEP = 'batchscoring';

/** Settings of a pipeline job (Azure ML's pipeline deployment `settings`). */
export interface PipelineSettings {
  continue_on_step_failure: boolean;
  default_datastore: string;
  force_rerun: boolean;
}

/** A pipeline job's graph, resolved at invoke: every component pinned, every location decided. */
export interface PipelineSpec {
  /** The deployed pipeline component, when there is one (not for an inline graph). */
  component?: { name: string; version: string } | undefined;
  /**
   * The pipeline component the job ran, as normalized when it was invoked: what
   * `job_definition: azureml:<job>` deploys. Absent in jobs of model deployments.
   */
  definition?: PipelineComponentDoc | undefined;
  settings: PipelineSettings;
  inputs: Record<string, DataValue | LiteralValue>;
  outputs: Record<string, OutputTarget>;
  /** In an order where every step comes after the steps it takes inputs from. */
  steps: StepSpec[];
}

/** A step input as bound at invoke: a job input's value, a literal, another step's output, or nothing. */
export type StepInput = DataValue | LiteralValue | { type: 'step_output'; step: string; output: string } | { type: 'none' };

interface StepSpecBase {
  name: string;
  /** The component it runs, as registered (`name`/`version`), or inline. */
  component: { name?: string | undefined; version?: string | undefined };
  /** The steps whose outputs it takes. */
  needs: string[];
  inputs: Record<string, StepInput>;
  /** Where each of its outputs goes (a job output, or a folder of this job's own). */
  outputs: Record<string, OutputTarget>;
}

export interface CommandStepSpec extends StepSpecBase {
  type: 'command';
  code: { uri: string; location: DataLocation; content: string };
  entry_script: string;
  environment_variables: Record<string, string>;
  /** Seconds (`limits.timeout`). */
  timeout: number;
  max_retries: number;
}

export interface ParallelStepSpec extends StepSpecBase {
  type: 'parallel';
  /** The engine's work but for its input, which is bound when the step starts (see StepInput). */
  work: Omit<ParallelWork, 'input' | 'output'>;
  /** The input it splits into mini-batches, and the output its rows go to. */
  input_data: string;
  append_row_to: string;
}

export type StepSpec = CommandStepSpec | ParallelStepSpec;

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
   * The mini-batch that met each of dropped_columns first (in the same update), for the job log's
   * warning about them, which finalize writes once from this record. Absent in records written
   * before it: the warning then names the keys only.
   */
  dropped_by?: { column: string; mini_batch: number }[] | undefined;
  /**
   * Set when part of the job failed for a reason that must stop all of it (a lane could not record
   * its work): every lane's next mini-batch sees it and stops, and the job ends Failed with it.
   */
  halt?: JobError | undefined;
  /**
   * Mini-batches per segment of the job's journal and output parts (see JobWorkArea.SEGMENT_SIZE),
   * fixed when the job is prepared. Unset for jobs prepared before segments: their mini-batches
   * stage predictions on the output file itself and journal into one blob, and they finalize so.
   */
  segment_size?: number | undefined;
}

export interface Job {
  spec: JobSpec;
  state: JobState;
  etag: string;
  /** Its steps' records, by name (jobs that run as steps; filled in where the API shows a job). */
  steps?: Record<string, StepState> | undefined;
}

export type StepStatus = JobStatus | 'Skipped';

/**
 * What moves while a step of a `steps` job runs, in a record of its own beside the job's. A
 * parallel step's engine fields are those of a job's (JobState); a step also records where its
 * outputs are (its own, or an earlier run's when it was reused).
 */
export interface StepState extends Omit<JobState, 'status' | 'counts'> {
  status: StepStatus;
  counts?: JobCounts | undefined;
  outputs?: Record<string, StepOutput> | undefined;
  /** What decides reuse (see PipelineRunner.prepareStep); steps that take its outputs include it in theirs. */
  fingerprint?: string | undefined;
  /** Where a command step's log is (one blob per attempt under it). */
  logs?: { uri: string; location: DataLocation } | undefined;
  /** The earlier run whose outputs it reused (force_rerun false, nothing changed). */
  reused_from?: { job: string; step: string } | undefined;
  attempts?: number | undefined;
  /** A parallel step's input, bound when it started (a job input, or another step's output). */
  input?: (DataValue & { name: string }) | undefined;
}

/** Where a step's output is: its own place, or an earlier run's when it was reused. */
export interface StepOutput {
  type?: 'uri_folder' | 'uri_file' | undefined;
  uri: string;
  location: DataLocation;
}

export function emptyCounts(): JobCounts {
  return {
    mini_batches: { total: 0, succeeded: 0, failed: 0, retried: 0 },
    items: { total: 0, succeeded: 0, failed: 0 },
  };
}

/** Names of the files a job writes beside its predictions. */
export { ERRORS_FILE, LOG_FILE, REPORT_FILE, SUMMARY_FILE } from '../schemas/resources.js';

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
