/** Registers the batch job orchestrators, wired to the activity handles. */
import { finalizeJob, haltJob, prepareJob, recordJournal, recordMiniBatchFailure, recordProgress, scoreMiniBatch } from './activities.js';
import { type ChunkInput, batchChunk } from './job/batch-chunk.js';
import { batchJob } from './job/batch-job.js';
import { type LaneInput, batchLane } from './job/batch-lane.js';
import { typedOrchestration } from './job/typed-durable.js';

export const batchChunkOrchestration = typedOrchestration<ChunkInput, unknown>('batchChunk', (context, input) =>
  batchChunk(context, input, { scoreMiniBatch, recordMiniBatchFailure, recordProgress, recordJournal, haltJob }),
);

export const batchLaneOrchestration = typedOrchestration<LaneInput, unknown>('batchLane', (context, input) =>
  batchLane(context, input, { batchChunk: batchChunkOrchestration, haltJob }),
);

export const batchJobOrchestration = typedOrchestration<{ jobId: string }, unknown>('batchJob', (context, input) =>
  batchJob(context, input, { prepareJob, finalizeJob, batchLane: batchLaneOrchestration, scoreMiniBatch, recordJournal }),
);
