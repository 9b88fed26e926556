/**
 * Blob-created triggers, durably batched (see README.md, "Blob-created triggers"):
 *
 * - `triggerBatcher`, an entity per trigger rule (key: the rule's uid), holds the rule's open batch.
 *   Its operations run one at a time, so each file joins exactly one batch.
 * - `triggerFile`, an orchestration per file and rule (instance `trigger-file:{rule uid}:{write key}`,
 *   started once per blob version by the blobCreated function after its dedup record), adds the
 *   file to the batcher. The file that opens a batch keeps its window: a durable timer of
 *   `window_seconds`, then `close`. A batch that fills up (`max_files`) is closed by the file that
 *   filled it. Either way exactly one orchestration gets each closed batch, and it calls
 *   `startTriggeredJob`, which invokes the endpoint with the batch id as Idempotency-Key.
 *
 * Only ids, counts and blob names (with their eTags) cross the orchestration.
 */
import * as df from 'durable-functions';
import { type AddInput, type AddResult, type BatcherState, type ClosedBatch, addFile, closeBatch, emptyBatcher } from '../shared/triggers/batcher.js';
import type { FileTask, RuleRef, StartJobResult } from '../shared/triggers/trigger-service.js';
import { services } from '../shared/services.js';
import { typedClientActivity, typedOrchestration } from './job/typed-durable.js';
import { pipelineJobOrchestration } from './orchestrators.js';

export const TRIGGER_BATCHER = 'triggerBatcher';

df.app.entity<BatcherState>(TRIGGER_BATCHER, (context) => {
  const state = context.df.getState(emptyBatcher) ?? emptyBatcher();
  switch (context.df.operationName) {
    case 'add': {
      const done = addFile(state, context.df.getInput<AddInput>() as AddInput);
      context.df.setState(done.state);
      context.df.return(done.result);
      break;
    }
    case 'close': {
      const done = closeBatch(state, (context.df.getInput<{ batch: string }>() as { batch: string }).batch);
      context.df.setState(done.state);
      context.df.return(done.result);
      break;
    }
    default:
      throw new Error(`${TRIGGER_BATCHER}: unknown operation '${context.df.operationName ?? ''}'`);
  }
});

/** Makes a closed batch's job (idempotently: its id is the invocation's Idempotency-Key). */
export const startTriggeredJob = typedClientActivity<{ rule: RuleRef; batch: ClosedBatch }, StartJobResult>('startTriggeredJob', (input, client) =>
  services().triggers.startJob(input, async (jobId) => {
    await client.startNew(pipelineJobOrchestration.orchestrationName, { instanceId: jobId, input: { jobId } });
  }),
);

/** Storage hiccups while making the job are retried; what a retry cannot mend comes back as a result. */
const START_RETRY = new df.RetryOptions(2000, 5);

export interface FileOutcome {
  batch: string | null;
  jobs: { batch: string; result: StartJobResult }[];
}

export const triggerFileOrchestration = typedOrchestration<FileTask, FileOutcome>('triggerFile', function* (context, input) {
  const batcher = new df.EntityId(TRIGGER_BATCHER, input.rule.uid);
  const added = (yield context.df.callEntity(batcher, 'add', { rule: input.rule.uid, file: input.file, maxFiles: input.maxFiles } satisfies AddInput)) as AddResult;
  const jobs: FileOutcome['jobs'] = [];
  const makeJob = function* (batch: ClosedBatch): Generator<df.Task, void, unknown> {
    const result = (yield context.df.callActivityWithRetry(startTriggeredJob.activityName, START_RETRY, { rule: input.rule, batch })) as StartJobResult;
    jobs.push({ batch: batch.id, result });
    if (!context.df.isReplaying) {
      const what = `trigger ${input.rule.endpoint}/${input.rule.name}: batch ${batch.id} (${batch.files.length} file(s))`;
      if (result.status === 'failed') context.error(`${what}: no job could be made: ${result.error.code}: ${result.error.message}`);
      else if (result.status === 'dropped') context.warn(`${what}: no job made: ${result.reason}`);
      if (result.status !== 'failed') for (const f of result.skipped ?? []) context.warn(`${what}: ${f.blob} not scored: ${f.reason}`);
    }
  };
  for (const batch of added.closed) yield* makeJob(batch);
  if (added.opened && added.batch !== null && !added.closed.some((b) => b.id === added.batch)) {
    yield context.df.createTimer(new Date(context.df.currentUtcDateTime.getTime() + input.windowSeconds * 1000));
    const closed = (yield context.df.callEntity(batcher, 'close', { batch: added.batch })) as ClosedBatch | null;
    if (closed) yield* makeJob(closed);
  }
  return { batch: added.batch, jobs };
});
