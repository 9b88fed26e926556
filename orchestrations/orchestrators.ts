/** Registers the batch job orchestrators, wired to the activity handles. */
import {
  cancelSteps,
  finalizeJob,
  finalizePipeline,
  finishStep,
  haltJob,
  preparePipeline,
  prepareJob,
  prepareStep,
  awaitPlan,
  planPages,
  recordJournal,
  recordMiniBatchFailure,
  recordProgress,
  runCommandStep,
  scoreMiniBatch,
  startSteps,
  PIPELINE_STEP_ORCHESTRATOR,
} from './activities.js';
import { type ChunkInput, batchChunk } from './job/batch-chunk.js';
import { batchJob } from './job/batch-job.js';
import { type LaneInput, batchLane } from './job/batch-lane.js';
import { type PlannerInput, batchPlanner } from './job/batch-planner.js';
import { pipelineJob } from './job/pipeline-job.js';
import { pipelineStep } from './job/pipeline-step.js';
import { typedOrchestration } from './job/typed-durable.js';

export const batchChunkOrchestration = typedOrchestration<ChunkInput, unknown>('batchChunk', (context, input) =>
  batchChunk(context, input, { scoreMiniBatch, recordMiniBatchFailure, recordProgress, recordJournal, haltJob }),
);

export const batchLaneOrchestration = typedOrchestration<LaneInput, unknown>('batchLane', (context, input) =>
  batchLane(context, input, { batchChunk: batchChunkOrchestration, haltJob, awaitPlan }),
);

export const batchPlannerOrchestration = typedOrchestration<PlannerInput, unknown>('batchPlanner', (context, input) => batchPlanner(context, input, { planPages, haltJob }));

const engine = { prepareJob, finalizeJob, batchLane: batchLaneOrchestration, batchPlanner: batchPlannerOrchestration, scoreMiniBatch, recordJournal };

/**
 * Jobs created before steps existed: they run to their end on this orchestrator, unchanged, so a
 * deploy never breaks a job in flight (Durable Functions' versioning: new work gets new names).
 */
export const batchJobOrchestration = typedOrchestration<{ jobId: string }, unknown>('batchJob', (context, input) => batchJob(context, input, engine));

/** One step of a job (see pipelineStep). */
export const pipelineStepOrchestration = typedOrchestration<{ jobId: string; step: string }, unknown>(PIPELINE_STEP_ORCHESTRATOR, (context, input) =>
  pipelineStep(context, input, { ...engine, prepareStep, runCommandStep, finishStep }),
);

/** Every job created now: a graph of steps (a model deployment's job is one parallel step). */
export const pipelineJobOrchestration = typedOrchestration<{ jobId: string }, unknown>('pipelineJob', (context, input) =>
  pipelineJob(context, input, { preparePipeline, startSteps, cancelSteps, finalizePipeline }),
);
