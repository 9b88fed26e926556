/**
 * Read-only views of a job's report files for the web page and API: the mini-batch timeline (from
 * `processed_mini_batches.csv`), the failure breakdown (from `errors.jsonl`) and the tail of
 * `logs/job.log`. They read the files finalize wrote, with the parsers of ./report.ts, so they say
 * exactly what the files say. While a job runs its records are still in its journal, whose blocks
 * only finalize may commit (a reader committing them could drop a block staged meanwhile), so these
 * views are empty (`complete: false`) until the files exist.
 */
import { BatchError } from '../errors.js';
import type { JobsService } from './jobs-service.js';
import { type FailureReason, type ReportRow, failureBreakdown, parseErrorLines, parseReport } from './report.js';
import { ERRORS_FILE, type Job, LOG_FILE, REPORT_FILE, isPipelineSpec } from './types.js';

/**
 * Where a report file is among the outputs: the job's own (a model deployment's job), or for a
 * pipeline's parallel step in the output its rows go to (`append_row_to`, where the runner writes
 * the step's reports). Command steps have none.
 */
function reportPath(job: Job, step: string | undefined, name: string): string {
  if (step === undefined || !isPipelineSpec(job.spec)) return name;
  const found = job.spec.pipeline.steps.find((s) => s.name === step);
  if (found?.type !== 'parallel') {
    throw new BatchError('not_found', `Job '${job.spec.id}' has no parallel step '${step}' (only parallel steps have mini-batch reports).`, { details: { resource: 'Step', name: step, field: 'step' } });
  }
  return `${found.append_row_to}/${name}`;
}

/** A report file's text, or undefined when it is not written (yet); `tailBytes`: only its last bytes. */
async function readFile(jobs: JobsService, job: Job, step: string | undefined, name: string, tailBytes?: number): Promise<{ text: string; size: number } | undefined> {
  // The same owner check as the output files' route: another job's report in a reused folder is a 410.
  return jobs.readOutput(job, step, reportPath(job, step, name), async ({ blob, properties, etag }) => {
    const size = properties.contentLength ?? 0;
    const offset = tailBytes === undefined ? 0 : Math.max(0, size - tailBytes);
    const conditions = { conditions: { ifMatch: etag } };
    const buffer = size === 0 ? Buffer.alloc(0) : await blob.downloadToBuffer(offset, size - offset, conditions);
    return { text: buffer.toString('utf8'), size };
  });
}

/** A mini-batch's final attempt, as `GET /api/jobs/{id}/mini-batches` shows it (the report's columns). */
export interface MiniBatchView {
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

function miniBatchView(row: ReportRow): MiniBatchView {
  return {
    mini_batch_id: row.index,
    attempts: row.attempt,
    items: row.items,
    succeeded: row.succeeded,
    failed: row.failed,
    seconds: row.seconds,
    status: row.status,
    error: row.error || null,
    started_at: row.startedAt ?? null,
  };
}

/** Each mini-batch's final attempt, in mini-batch order, once the report is written. */
export async function miniBatchTimeline(jobs: JobsService, job: Job, step: string | undefined): Promise<{ complete: boolean; value: MiniBatchView[] }> {
  const file = await readFile(jobs, job, step, REPORT_FILE);
  if (!file) return { complete: false, value: [] };
  return { complete: true, value: parseReport(file.text).map(miniBatchView) };
}

/** Failed items by reason (counts and sample items), once errors.jsonl is written. */
export async function failuresOf(jobs: JobsService, job: Job, step: string | undefined): Promise<{ complete: boolean; items: number; reasons: FailureReason[] }> {
  const file = await readFile(jobs, job, step, ERRORS_FILE);
  if (!file) return { complete: false, items: 0, reasons: [] };
  return { complete: true, ...failureBreakdown(parseErrorLines(file.text)) };
}

/** The most bytes of the log read for its tail: enough for the most lines asked of lines of ordinary length. */
const LOG_TAIL_BYTES = 256 * 1024;

/** The last `lines` lines of the job's log, once it is written; `truncated` when earlier lines were left out. */
export async function logTail(jobs: JobsService, job: Job, step: string | undefined, lines: number): Promise<{ complete: boolean; lines: string[]; truncated: boolean }> {
  const file = await readFile(jobs, job, step, LOG_FILE, LOG_TAIL_BYTES);
  if (!file) return { complete: false, lines: [], truncated: false };
  const all = file.text.split('\n');
  if (all[all.length - 1] === '') all.pop();
  // A read that began mid-file began mid-line: that partial line is left out.
  const whole = file.size > LOG_TAIL_BYTES ? all.slice(1) : all;
  return { complete: true, lines: whole.slice(-lines), truncated: whole.length > lines || file.size > LOG_TAIL_BYTES };
}
