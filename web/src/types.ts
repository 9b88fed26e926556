/** The API's JSON as the page reads it (see shared/views.ts and GET /api/openapi.json). */

export type JobStatus = 'NotStarted' | 'Queued' | 'Preparing' | 'Running' | 'Finalizing' | 'Completed' | 'Failed' | 'Canceling' | 'Canceled';
export const TERMINAL: readonly string[] = ['Completed', 'Failed', 'Canceled'];

export interface Counts {
  mini_batches: { total: number; succeeded: number; failed: number; retried?: number };
  items: { total: number; succeeded: number; failed: number };
}

export interface Step {
  name: string;
  type: 'command' | 'parallel';
  component: string;
  status: string;
  started_at: string | null;
  completed_at: string | null;
  reused: boolean;
  counts?: Counts | null;
  log: string | null;
  error: { code: string; message: string } | null;
  outputs: Record<string, { uri: string }>;
}

export interface Job {
  id: string;
  type: 'model' | 'pipeline';
  display_name: string | null;
  endpoint: string | null;
  deployment: string | null;
  model?: string;
  status: JobStatus;
  created_at: string;
  started_at: string | null;
  completed_at: string | null;
  counts: Counts;
  error: { code: string; message: string } | null;
  outputs: Record<string, { path: string; files?: Record<string, string> }>;
  settings?: { mini_batch_size?: number; error_threshold?: number };
  steps?: Step[];
  links: { self: string; outputs?: Record<string, string> };
}

export interface Page<T> {
  value: T[];
  next_link: string | null;
}

export interface Endpoint {
  name: string;
  description: string | null;
  defaults: { deployment_name?: string | null };
  scoring_uri: string;
}

export interface Deployment {
  name: string;
  type: 'model' | 'pipeline';
  model?: string;
  component?: unknown;
  is_default: boolean;
  description: string | null;
}

export interface MiniBatch {
  mini_batch_id: number;
  attempts: number;
  items: number;
  succeeded: number;
  failed: number;
  seconds: number;
  status: string;
  error: string | null;
  started_at: string | null;
}

export interface Report<T> {
  status: JobStatus;
  complete: boolean;
  value: T[];
}

export interface FailureReason {
  reason: string;
  count: number;
  samples: { mini_batch: number; file: string | null; rows?: { start: number; end: number } }[];
}

export interface Failures {
  status: JobStatus;
  complete: boolean;
  items: number;
  reasons: FailureReason[];
}

export interface LogTail {
  status: JobStatus;
  complete: boolean;
  lines: string[];
  truncated: boolean;
}
