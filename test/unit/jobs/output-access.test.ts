import type { BlobGetPropertiesResponse } from '@azure/storage-blob';
import { describe, expect, it } from 'vitest';
import { LEGACY_GRACE_MS, ownershipProblem } from '../../../shared/jobs/output-access.js';
import type { Job } from '../../../shared/jobs/types.js';

const completedAt = '2026-11-30T10:00:00.000Z';

function job(status: Job['state']['status'], completed?: string): Job {
  return { spec: { id: 'bj-a' }, state: { status, counts: {}, ...(completed ? { completed_at: completed } : {}) } } as unknown as Job;
}

function props(metadata: Record<string, string> | undefined, modifiedMs: number): BlobGetPropertiesResponse {
  return { metadata, lastModified: new Date(Date.parse(completedAt) + modifiedMs) } as unknown as BlobGetPropertiesResponse;
}

describe('whose output file it is', () => {
  it('serves a file its job (or the job a reused step ran in) wrote, whenever it was written', () => {
    expect(ownershipProblem(job('Completed', completedAt), ['bj-a'], props({ batch_job_id: 'bj-a' }, 3_600_000), 'predictions.csv')).toBeUndefined();
    expect(ownershipProblem(job('Completed', completedAt), ['bj-a', 'bj-earlier'], props({ batch_job_id: 'bj-earlier' }, -60_000), 'out/x.csv')).toBeUndefined();
  });

  it("refuses another job's file with 410 outputs_replaced naming that job, even one written before the job ended", () => {
    const problem = ownershipProblem(job('Completed', completedAt), ['bj-a'], props({ batch_job_id: 'bj-b' }, -1000), 'predictions.csv');
    expect(problem).toMatchObject({ code: 'outputs_replaced', details: { job_id: 'bj-a', owner_job_id: 'bj-b', field: 'file' } });
    expect(ownershipProblem(job('Running'), ['bj-a'], props({ batch_job_id: 'bj-b' }, 0), 'predictions.csv')?.code).toBe('outputs_replaced');
  });

  it('judges a file without an owner (written before owners were recorded) by time: no newer than its job\'s end (plus the grace) is its own', () => {
    expect(ownershipProblem(job('Completed', completedAt), ['bj-a'], props(undefined, -5000), 'predictions.csv')).toBeUndefined();
    expect(ownershipProblem(job('Completed', completedAt), ['bj-a'], props({}, LEGACY_GRACE_MS), 'predictions.csv')).toBeUndefined();
    const problem = ownershipProblem(job('Completed', completedAt), ['bj-a'], props(undefined, LEGACY_GRACE_MS + 1), 'predictions.csv');
    expect(problem).toMatchObject({ code: 'outputs_replaced', details: { job_id: 'bj-a' } });
    expect(problem?.details).not.toHaveProperty('owner_job_id');
    // A job that has not ended has no end to compare with: its files are served.
    expect(ownershipProblem(job('Running'), ['bj-a'], props(undefined, 3_600_000), 'predictions.csv')).toBeUndefined();
  });
});
