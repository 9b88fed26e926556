import { join, relative, resolve } from 'node:path';
import type * as df from 'durable-functions';
import { beforeAll, describe, expect, it } from 'vitest';
import { type ChunkInput, batchChunk } from '../../../orchestrations/job/batch-chunk.js';
import { batchJob } from '../../../orchestrations/job/batch-job.js';
import { type LaneInput, batchLane } from '../../../orchestrations/job/batch-lane.js';
import { type RecordedInstance, loadRecordings } from '../../../scripts/lib/history-fixtures.js';
import { EventType } from '../../../infra/local/src/durable/history.js';
import { chunkInstanceId } from '../../../shared/jobs/jobs-service.js';
import { emptyCounts } from '../../../shared/jobs/types.js';
import { chunkRange } from '../../../shared/planning/plan.js';
import { type LoadedApp, loadAppOrchestrators } from '../../support/app-orchestrators.js';
import { type OrchestratorListener, orchestratorListener } from '../../support/in-process-durable.js';
import { replayRecording } from '../../support/replay.js';

const ROOT = resolve(import.meta.dirname, '..', '..', '..');
const FIXTURES = join(ROOT, 'test', 'fixtures');
/** Jobs as they run today: a graph of steps (pipelineJob, pipelineStep, the step's lanes and chunks). */
const current = loadRecordings(join(FIXTURES, 'histories'));
/** Jobs started before steps existed (batchJob): deployed code must still finish them. */
const legacy = loadRecordings(join(FIXTURES, 'histories-batch-job'));
/** Jobs of model deployments (one parallel step), recorded both ways. */
const MODEL_SCENARIOS = ['onnx-two-lanes', 'script-retry-threshold', 'canceled', 'repaired'];
/** Pipeline deployments' jobs (several steps) exist only as jobs run today. */
const SCENARIOS = new Set([...MODEL_SCENARIOS, 'pipeline-three-steps', 'streamed']);
const LEGACY_SCENARIOS = new Set(MODEL_SCENARIOS);

function recording(scenario: string, role: string, from = current): RecordedInstance {
  const found = from.find((r) => r.recording.scenario === scenario && r.recording.role === role);
  if (!found) throw new Error(`no recording ${scenario}/${role}.json`);
  return found.recording;
}

/** The recorded scheduling of sequence number `seq`, and where it is in history. */
function scheduledAt(recorded: RecordedInstance, seq: number): { name: string; index: number } {
  const index = recorded.history.findIndex((e) => e.EventType === EventType.TaskScheduled && e.EventId === seq);
  const name = recorded.history[index]?.Name;
  if (name === undefined) throw new Error(`${recorded.scenario}/${recorded.role}: no activity with sequence number ${seq}`);
  return { name, index };
}

let app: LoadedApp;
beforeAll(async () => {
  app = await loadAppOrchestrators();
});

function production(name: string): OrchestratorListener {
  const listener = app.orchestrators.get(name);
  if (!listener) throw new Error(`the app registers no orchestrator named ${name}`);
  return listener;
}

/** batchChunk as orchestrators.ts wires it, with some activities replaced. */
function chunkWith(change: (steps: Parameters<typeof batchChunk>[2]) => Parameters<typeof batchChunk>[2]): OrchestratorListener {
  const { scoreMiniBatch, recordMiniBatchFailure, recordProgress, recordJournal, haltJob } = app.activities;
  const steps = change({ scoreMiniBatch, recordMiniBatchFailure, recordProgress, recordJournal, haltJob });
  return orchestratorListener((context: df.OrchestrationContext) => batchChunk(context, context.df.getInput<ChunkInput>(), steps));
}

describe("recorded job histories replay against today's orchestrators", () => {
  it('has recordings of every scenario, as jobs run today and as jobs started before steps existed ran', () => {
    expect(new Set(current.map((r) => r.recording.scenario))).toEqual(SCENARIOS);
    expect(new Set(current.map((r) => r.recording.name))).toEqual(new Set(['pipelineJob', 'pipelineStep', 'batchLane', 'batchChunk', 'batchPlanner']));
    expect(new Set(legacy.map((r) => r.recording.scenario))).toEqual(LEGACY_SCENARIOS);
    expect(new Set(legacy.map((r) => r.recording.name))).toEqual(new Set(['batchJob', 'batchLane', 'batchChunk']));
  });

  it('has the three steps of the pipeline scenario, each its own instance, the parallel one with its lanes and chunks', () => {
    const roles = current.filter((r) => r.recording.scenario === 'pipeline-three-steps').map((r) => `${r.recording.role} ${r.recording.name}`);
    expect(roles.sort()).toEqual([
      'job pipelineJob',
      'score.chunk-0 batchChunk',
      'score.chunk-1 batchChunk',
      'score.lane-0 batchLane',
      'score.lane-1 batchLane',
      'step-prepare pipelineStep',
      'step-score pipelineStep',
      'step-summarize pipelineStep',
    ]);
    // The job started each step after the one before it reported back.
    const job = recording('pipeline-three-steps', 'job');
    const starts = job.history.filter((e) => e.EventType === EventType.TaskScheduled && e.Name === 'startSteps').map((e) => (JSON.parse(e.Input ?? '{}') as { steps: string[] }).steps);
    expect(starts).toEqual([['prepare'], ['score'], ['summarize']]);
    expect(job.history.filter((e) => e.EventType === EventType.EventRaised && e.Name === 'stepDone')).toHaveLength(3);
    expect(job.output).toMatchObject({ status: 'Completed' });
  });

  it.each([...current, ...legacy].map((r) => [relative(FIXTURES, r.file), r.recording] as const))('%s', async (_file, recorded) => {
    const report = await replayRecording(recorded, production(recorded.name));
    expect(report.mismatch?.message).toBeUndefined();
    // Every episode but a termination's ran the orchestrator.
    expect(report.episodes).toBe(recorded.history.filter((e) => e.EventType === EventType.OrchestratorStarted).length);
  });
});

describe('the replay tests catch changes that would break jobs in flight', () => {
  it('a chunk that now calls another activity before its first mini-batch', async () => {
    const altered = orchestratorListener(function* (context: df.OrchestrationContext) {
      const input = context.df.getInput<ChunkInput>();
      yield app.activities.recordProgress({ jobId: input.jobId, lane: input.lane, counts: input.laneBase });
      return yield* batchChunk(context, input, app.activities);
    });
    const recorded = recording('onnx-two-lanes', 'batchscoring.chunk-0');
    const first = scheduledAt(recorded, 0);
    expect(first.name).not.toBe('recordProgress');
    const report = await replayRecording(recorded, altered);
    expect(report.mismatch).toMatchObject({ episode: 1, eventIndex: first.index });
    expect(report.mismatch?.message).toContain(
      `episode 1: history has TaskScheduled "${first.name}" (sequence number 0) at history event ${first.index}, ` +
        'but the orchestrator now calls activity "recordProgress" (sequence number 0) (a different name)',
    );
  });

  it('a chunk that swaps one activity for another', async () => {
    const altered = chunkWith((steps) => ({
      ...steps,
      scoreMiniBatch: Object.assign((input: Parameters<typeof steps.scoreMiniBatch>[0]) => steps.recordMiniBatchFailure({ ...input, error: 'x' }), {
        activityName: steps.scoreMiniBatch.activityName,
        resultOf: (task: df.Task) => steps.scoreMiniBatch.resultOf(task),
      }),
    }));
    const report = await replayRecording(recording('script-retry-threshold', 'batchscoring.chunk-0'), altered);
    expect(report.mismatch?.message).toMatch(/history has TaskScheduled "scoreMiniBatch" .*, but the orchestrator now calls activity "recordMiniBatchFailure"/);
  });

  it('a lane that now starts all its chunks at once', async () => {
    const altered = orchestratorListener(function* (context: df.OrchestrationContext) {
      const input = context.df.getInput<LaneInput>();
      const chunks = [];
      for (let chunk = input.lane; chunk < input.chunks; chunk += input.lanes) {
        const range = chunkRange(chunk, input.chunkSize, input.miniBatches);
        chunks.push(
          app.orchestrations.batchChunkOrchestration(
            { ...input, chunk, start: range.start, end: range.end, laneBase: emptyCounts() },
            chunkInstanceId(input.jobId, chunk, input.step),
          ),
        );
      }
      return yield context.df.Task.all(chunks);
    });
    const report = await replayRecording(recording('onnx-two-lanes', 'batchscoring.lane-0'), altered);
    expect(report.mismatch?.episode).toBe(1);
    expect(report.mismatch?.message).toMatch(/history has nothing more there, but the orchestrator now also calls sub-orchestration "batchChunk" as ".*:chunk-2" \(sequence number 1\)/);
  });

  it('a lane of a streamed plan that no longer asks for more of it', async () => {
    const altered = orchestratorListener(function* (context: df.OrchestrationContext) {
      const { streamed: _dropped, ...input } = context.df.getInput<LaneInput>();
      return yield* batchLane(context, input, { batchChunk: app.orchestrations.batchChunkOrchestration, haltJob: app.activities.haltJob, awaitPlan: app.activities.awaitPlan });
    });
    const report = await replayRecording(recording('streamed', 'batchscoring.lane-0'), altered);
    expect(report.mismatch?.message).toMatch(/history has TaskScheduled "awaitPlan" .*, but the orchestrator now ends/);
  });

  it('a job that now returns a different result', async () => {
    const { prepareJob, finalizeJob, scoreMiniBatch, recordJournal } = app.activities;
    const altered = orchestratorListener(function* (context: df.OrchestrationContext) {
      const result = yield* batchJob(context, context.df.getInput<{ jobId: string }>(), { prepareJob, finalizeJob, scoreMiniBatch, recordJournal, batchLane: app.orchestrations.batchLaneOrchestration, batchPlanner: app.orchestrations.batchPlannerOrchestration });
      return { ...result, status: 'Different' };
    });
    const recorded = recording('canceled', 'job', legacy);
    const report = await replayRecording(recorded, altered);
    expect(report.mismatch?.message).toMatch(/history has ExecutionCompleted .* with status 1 and result .*"status":"Canceled".*, but the orchestrator now completes with .*"status":"Different"/);
    expect(report.mismatch?.eventIndex).toBe(recorded.history.length - 1);
  });

  it('non-deterministic code: replaying work of an earlier episode differently', async () => {
    // Runs as recorded the first time, then does something else once it is replayed.
    let runs = 0;
    const altered = orchestratorListener(function* (context: df.OrchestrationContext) {
      runs++;
      const input = context.df.getInput<ChunkInput>();
      if (runs > 1) yield app.activities.recordJournal({ jobId: input.jobId, lines: [] });
      return yield* batchChunk(context, input, app.activities);
    });
    const recorded = recording('canceled', 'batchscoring.chunk-1');
    const first = scheduledAt(recorded, 0);
    const report = await replayRecording(recorded, altered);
    // The first episode is as recorded; the second replays it and does something else there.
    expect(report.mismatch).toMatchObject({ episode: 2, eventIndex: first.index });
    expect(report.mismatch?.message).toContain(
      `episode 2: history has TaskScheduled "${first.name}" (sequence number 0) at history event ${first.index}, but the orchestrator now replays differently ` +
        `(Non-deterministic workflow detected: history has TaskScheduled "${first.name}" with sequence number 0, but the orchestrator now calls activity "recordJournal" there`,
    );
  });

  it('changed inputs pass by default (Durable does not check them) and are reported with compareInputs', async () => {
    const altered = chunkWith((steps) => ({
      ...steps,
      scoreMiniBatch: Object.assign((input: Parameters<typeof steps.scoreMiniBatch>[0]) => steps.scoreMiniBatch({ ...input, deferJournal: false }), {
        activityName: steps.scoreMiniBatch.activityName,
        resultOf: (task: df.Task) => steps.scoreMiniBatch.resultOf(task),
      }),
    }));
    const recorded = recording('onnx-two-lanes', 'batchscoring.chunk-1');
    expect((await replayRecording(recorded, altered)).mismatch).toBeUndefined();
    expect((await replayRecording(recorded, production('batchChunk'), { compareInputs: true })).mismatch).toBeUndefined();
    const strict = await replayRecording(recorded, altered, { compareInputs: true });
    expect(strict.mismatch?.message).toMatch(/TaskScheduled "scoreMiniBatch" \(sequence number 0\).*calls activity "scoreMiniBatch" \(sequence number 0\) \(a different input\)/);
  });
});
