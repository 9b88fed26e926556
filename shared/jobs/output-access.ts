/**
 * Reading a job's output files by identity, never by name alone. An output folder is named by its
 * user and can change hands: once a finished job's files are deleted, another job may claim the
 * empty folder (see JobsService.#mayTakeOver) and write files of the same names. Every output blob
 * this app writes carries the id of the job that wrote it (OWNER_METADATA, set at commit or upload,
 * see shared/outputs/output-writer.ts), and every route that serves a job's outputs (the files, the
 * mini-batch report, failures, log, a rerun's reuse of predictions) reads through {@link readOwnedOutput}:
 * a file written by another job answers 410 `outputs_replaced`, naming that job.
 *
 * Files written before owners were recorded carry no owner. For them the rule is by time: a file
 * last modified after its job completed (plus {@link LEGACY_GRACE_MS} for clock skew between the
 * app and storage) was not written by that job, so it is refused in the same way (owner unknown);
 * an older one is served. Only a job that has not ended may have files without an owner and any age.
 */
import type { BlobClient, BlobGetPropertiesResponse } from '@azure/storage-blob';
import { BatchError } from '../errors.js';
import { OWNER_METADATA } from '../outputs/output-writer.js';
import { isNotFound } from '../storage/clients.js';
import type { Job } from './types.js';

/** How much later than its job's completion a file without an owner may have been modified (storage and app clocks differ). */
export const LEGACY_GRACE_MS = 2 * 60_000;

/** The properties of an output file whose owner was checked; reads of it must be conditional on `etag`. */
export interface OwnedOutput {
  blob: BlobClient;
  properties: BlobGetPropertiesResponse;
  etag: string;
}

/** Whose file this is, by its metadata (undefined: written before owners were recorded). */
export function ownerOf(properties: { metadata?: Record<string, string> | undefined }): string | undefined {
  const metadata = properties.metadata ?? {};
  const key = Object.keys(metadata).find((k) => k.toLowerCase() === OWNER_METADATA);
  return key === undefined ? undefined : metadata[key];
}

/**
 * Why `job` may not serve this file (a 410), or undefined when it is its own: written by one of
 * `owners` (the job, or the job whose step run it reuses), or without an owner and no newer than
 * the job's completion (see the module's rule for older files).
 */
export function ownershipProblem(job: Job, owners: readonly string[], properties: BlobGetPropertiesResponse, uri: string): BatchError | undefined {
  const owner = ownerOf(properties);
  if (owner !== undefined) return owners.includes(owner) ? undefined : replaced(job, uri, owner);
  const completed = job.state.completed_at === undefined ? undefined : Date.parse(job.state.completed_at);
  const modified = properties.lastModified?.getTime();
  if (completed === undefined || modified === undefined || Number.isNaN(completed)) return undefined;
  return modified > completed + LEGACY_GRACE_MS ? replaced(job, uri, undefined) : undefined;
}

function replaced(job: Job, uri: string, owner: string | undefined): BatchError {
  return new BatchError(
    'outputs_replaced',
    `The outputs of job '${job.spec.id}' are gone: its output '${uri}' was written by ${owner === undefined ? 'something else' : `job '${owner}'`} after its files were deleted and the folder reused.`,
    { details: { resource: 'Job output', name: uri, field: 'file', job_id: job.spec.id, ...(owner === undefined ? {} : { owner_job_id: owner }) } },
  );
}

function isPreconditionFailed(err: unknown): boolean {
  return (err as { statusCode?: number }).statusCode === 412;
}

/**
 * Reads one of `job`'s output files: its properties are read and its owner checked (else 410
 * `outputs_replaced`), then `read` runs with the ETag that was checked, to pass as `ifMatch` to its
 * download: a file replaced between the check and the read fails with 412, and is checked again
 * once. Undefined when the file does not exist.
 */
export async function readOwnedOutput<T>(
  job: Job,
  owners: readonly string[],
  target: { blob: BlobClient; uri: string },
  read: (owned: OwnedOutput) => Promise<T>,
): Promise<T | undefined> {
  for (let attempt = 0; ; attempt++) {
    let properties: BlobGetPropertiesResponse;
    try {
      properties = await target.blob.getProperties();
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw new BatchError('storage_failed', `Could not read ${target.uri}.`, { cause: err });
    }
    const problem = ownershipProblem(job, owners, properties, target.uri);
    if (problem) throw problem;
    try {
      return await read({ blob: target.blob, properties, etag: properties.etag ?? '' });
    } catch (err) {
      if (isNotFound(err)) return undefined;
      if (isPreconditionFailed(err) && attempt === 0) continue;
      if (err instanceof BatchError) throw err;
      throw new BatchError('storage_failed', `Could not read ${target.uri}.`, { cause: err });
    }
  }
}
