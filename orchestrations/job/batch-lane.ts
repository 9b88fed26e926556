import type * as df from 'durable-functions';
import { chunkInstanceId } from '../../shared/jobs/jobs-service.js';
import { type JobCounts, addCounts, emptyCounts } from '../../shared/jobs/types.js';
import { chunkRange } from '../../shared/planning/plan.js';
import type { ChunkInput, ChunkResult } from './batch-chunk.js';
import type { TypedOrchestration } from './typed-durable.js';

export interface LaneInput {
  jobId: string;
  lane: number;
  lanes: number;
  chunks: number;
  chunkSize: number;
  miniBatches: number;
  maxRetries: number;
  errorThreshold: number;
  progressIntervalSeconds: number;
}

export interface LaneResult {
  counts: JobCounts;
  canceled: boolean;
  thresholdExceeded: boolean;
  columns?: string[] | undefined;
}

/**
 * One of the job's lanes: runs chunks lane, lane + lanes, … one after another, each a
 * sub-orchestration. Lanes run side by side, so instance_count × max_concurrency_per_instance
 * mini-batches are in flight and a slow mini-batch holds up only its own lane.
 */
export function* batchLane(context: df.OrchestrationContext, input: LaneInput, steps: { batchChunk: TypedOrchestration<ChunkInput> }): Generator<df.Task, LaneResult, unknown> {
  let counts = emptyCounts();
  let columns: string[] | undefined;
  for (let chunk = input.lane; chunk < input.chunks; chunk += input.lanes) {
    const range = chunkRange(chunk, input.chunkSize, input.miniBatches);
    const result = (yield steps.batchChunk(
      {
        jobId: input.jobId,
        chunk,
        lane: input.lane,
        chunkSize: input.chunkSize,
        start: range.start,
        end: range.end,
        maxRetries: input.maxRetries,
        errorThreshold: input.errorThreshold,
        progressIntervalSeconds: input.progressIntervalSeconds,
        laneBase: counts,
      },
      chunkInstanceId(input.jobId, chunk),
    )) as ChunkResult;
    counts = addCounts(counts, result.counts);
    columns ??= result.columns;
    if (result.canceled || result.thresholdExceeded) return { counts, canceled: result.canceled, thresholdExceeded: result.thresholdExceeded, columns };
  }
  return { counts, canceled: false, thresholdExceeded: false, columns };
}
