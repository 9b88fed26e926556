/**
 * pipelineJob and pipelineStep, in process, against fake activities: each orchestrator runs
 * through the durable-functions library exactly as a host runs it (episode by episode, the whole
 * history replayed each time), and fnhost's replay shim turns what it returns into this episode's
 * work. The fakes answer activities (at once, or when the test says), and the test raises the
 * events (`stepDone`, `cancel`) the step orchestrations and the API would.
 */
import type * as df from 'durable-functions';
import { describe, expect, it } from 'vitest';
import { classifyEpisode, orchestratorResultOf, orchestratorTriggerFields, shimEpisode } from '../../../infra/local/src/durable/episode-protocol.js';
import { EventType, type HistoryEvent, makeEvent, parseJsonText } from '../../../infra/local/src/durable/history.js';
import type { BatchJobActivities } from '../../../orchestrations/job/batch-job.js';
import { type PipelineJobActivities, pipelineJob } from '../../../orchestrations/job/pipeline-job.js';
import { type PipelineStepActivities, pipelineStep } from '../../../orchestrations/job/pipeline-step.js';
import type { TypedActivity } from '../../../orchestrations/job/typed-durable.js';
import type { CommandAttempt, PipelinePlan, PreparedStep, StepEnd } from '../../../shared/jobs/pipeline-runner.js';
import { activityHandle, invokeListener, orchestrationHandle, orchestratorListener } from '../../support/in-process-durable.js';

const SCHEMA_VERSION = 3;

/** What a fake activity answers: a result, a failure (the activity threw), or nothing yet (the test completes it later). */
type Answer = { result: unknown } | { error: string } | 'held';
type Fake = (input: Record<string, unknown>) => Answer;

interface Call {
  id: number;
  name: string;
  input: Record<string, unknown>;
}

/**
 * One orchestration instance run the way fnhost's engine runs it, with fake activities: an episode
 * per batch of new events, each activity's answer delivered in the next episode.
 */
class Instance {
  readonly history: HistoryEvent[] = [];
  /** Every activity the orchestrator called, in order. */
  readonly calls: Call[] = [];
  status: 'running' | 'completed' | 'failed' = 'running';
  output: unknown;
  error: string | undefined;
  readonly #held = new Map<number, Call>();
  #inbox: HistoryEvent[] = [];
  #now = Date.parse('2026-01-01T00:00:00Z');

  constructor(
    readonly name: string,
    readonly listener: ReturnType<typeof orchestratorListener>,
    readonly fakes: Record<string, Fake>,
    readonly input: unknown,
    readonly instanceId = 'job-1',
  ) {}

  /** Starts the instance and runs it until it waits for something only the test can give. */
  async start(): Promise<this> {
    await this.#episode([
      makeEvent(EventType.ExecutionStarted, this.#now, {
        Name: this.name,
        Input: JSON.stringify(this.input),
        OrchestrationInstance: { InstanceId: this.instanceId, ExecutionId: 'exec-1' },
      }),
    ]);
    return this;
  }

  /** Raises an event to the instance and runs it on. */
  async raise(name: string, data: unknown): Promise<void> {
    await this.#episode([makeEvent(EventType.EventRaised, this.#now, { Name: name, Input: JSON.stringify(data) })]);
  }

  /** Answers a held activity call (the oldest of that name) and runs the instance on. */
  async answer(name: string, answer: Exclude<Answer, 'held'>): Promise<void> {
    const call = [...this.#held.values()].find((c) => c.name === name);
    if (!call) throw new Error(`no call of ${name} is waiting for an answer`);
    this.#held.delete(call.id);
    await this.#episode([this.#completion(call.id, answer)]);
  }

  /** The inputs of the calls of one activity. */
  inputsOf(name: string): Record<string, unknown>[] {
    return this.calls.filter((c) => c.name === name).map((c) => c.input);
  }

  /** The activities called, by name, in order. */
  get names(): string[] {
    return this.calls.map((c) => c.name);
  }

  #completion(id: number, answer: Exclude<Answer, 'held'>): HistoryEvent {
    return 'result' in answer
      ? makeEvent(EventType.TaskCompleted, this.#now, { TaskScheduledId: id, Result: JSON.stringify(answer.result) })
      : makeEvent(EventType.TaskFailed, this.#now, { TaskScheduledId: id, Reason: answer.error, Details: '', FailureDetails: { ErrorType: 'Error', ErrorMessage: answer.error } });
  }

  async #episode(events: HistoryEvent[]): Promise<void> {
    if (this.status !== 'running') throw new Error(`${this.name} has ended (${this.status}); it gets no more events`);
    for (let next = events; next.length > 0; next = this.#takeInbox()) {
      this.#now += 1000;
      const old = this.history.map((e) => ({ ...e, IsPlayed: true }));
      const fresh = [makeEvent(EventType.OrchestratorStarted, this.#now), ...next];
      const episodeHistory = [...old, ...fresh];
      const startEvent = episodeHistory.find((e) => e.EventType === EventType.ExecutionStarted) as HistoryEvent;
      const trigger = {
        history: episodeHistory,
        ...orchestratorTriggerFields({ instanceId: this.instanceId, startEvent, isReplaying: old.length > 0, schemaVersion: SCHEMA_VERSION }),
      };
      const outcome = await invokeListener(this.listener, trigger, this.name);
      const result = orchestratorResultOf({ error: outcome.error, returnValue: outcome.error ? undefined : { json: JSON.stringify(outcome.returnValue) } }, SCHEMA_VERSION);
      const shim = result.state ? shimEpisode(episodeHistory, result.state, { now: this.#now, instanceId: this.instanceId, executionId: 'exec-1' }) : undefined;
      const { kind, errorMessage } = classifyEpisode(result, shim);
      this.history.push(...fresh);
      for (const decision of shim?.decisions ?? []) {
        if (decision.kind !== 'activity') throw new Error(`${this.name} made an unexpected ${decision.kind} decision: ${JSON.stringify(decision)}`);
        this.history.push(makeEvent(EventType.TaskScheduled, this.#now, { EventId: decision.id, Name: decision.name, Input: decision.input }));
        const call: Call = { id: decision.id, name: decision.name, input: parseJsonText(decision.input) as Record<string, unknown> };
        this.calls.push(call);
        const fake = this.fakes[decision.name];
        if (!fake) throw new Error(`${this.name} called ${decision.name}, which has no fake`);
        const answer = fake(call.input);
        if (answer === 'held') this.#held.set(call.id, call);
        else this.#inbox.push(this.#completion(call.id, answer));
      }
      this.history.push(makeEvent(EventType.OrchestratorCompleted, this.#now));
      if (kind === 'completed') {
        this.status = 'completed';
        this.output = result.state?.output;
      } else if (kind !== 'running') {
        this.status = 'failed';
        this.error = errorMessage;
      }
      if (this.status !== 'running') return;
    }
  }

  #takeInbox(): HistoryEvent[] {
    const taken = this.#inbox;
    this.#inbox = [];
    return taken;
  }
}

/** A typed activity handle that schedules the named activity without registering anything. */
function fakeHandle<I, O>(name: string): TypedActivity<I, O> {
  const handle = activityHandle(name) as (input: I) => df.RegisteredActivityTask;
  return Object.assign(handle, { activityName: name, resultOf: (task: df.Task) => task.result as O });
}

const ok = (result: unknown): Answer => ({ result });

// --- pipelineJob ------------------------------------------------------------------------------

function jobActivities(): PipelineJobActivities {
  return {
    preparePipeline: fakeHandle('preparePipeline'),
    startSteps: fakeHandle('startSteps'),
    cancelSteps: fakeHandle('cancelSteps'),
    finalizePipeline: fakeHandle('finalizePipeline'),
  };
}

const jobListener = orchestratorListener(function* (context: df.OrchestrationContext) {
  return yield* pipelineJob(context, context.df.getInput<{ jobId: string }>(), jobActivities());
});

/** A pipelineJob instance whose plan is `plan`; every other activity succeeds at once. */
function startJob(plan: Partial<PipelinePlan> & Pick<PipelinePlan, 'steps'>): Promise<Instance> {
  const full: PipelinePlan = { status: 'ready', continueOnStepFailure: false, ...plan };
  return new Instance('pipelineJob', jobListener, {
    preparePipeline: () => ok(full),
    startSteps: () => ok(null),
    cancelSteps: () => ok(null),
    finalizePipeline: (input) => ok({ status: input['canceled'] ? 'Canceled' : input['error'] ? 'Failed' : 'Completed' }),
  }, { jobId: 'job-1' }).start();
}

const done = (step: string, status: StepEnd): { step: string; status: StepEnd } => ({ step, status });
const started = (job: Instance): string[][] => job.inputsOf('startSteps').map((i) => i['steps'] as string[]);

describe('pipelineJob', () => {
  it('starts independent steps together and each step once the steps it needs have completed', async () => {
    const job = await startJob({
      steps: [
        { name: 'a', needs: [] },
        { name: 'b', needs: [] },
        { name: 'c', needs: ['a'] },
        { name: 'd', needs: ['a', 'b'] },
      ],
    });
    expect(job.names).toEqual(['preparePipeline', 'startSteps']);
    expect(job.inputsOf('startSteps')).toEqual([{ jobId: 'job-1', steps: ['a', 'b'] }]);
    await job.raise('stepDone', done('a', 'Completed'));
    expect(started(job)).toEqual([['a', 'b'], ['c']]);
    await job.raise('stepDone', done('c', 'Completed'));
    // d still waits for b.
    expect(started(job)).toEqual([['a', 'b'], ['c']]);
    await job.raise('stepDone', done('b', 'Completed'));
    expect(started(job)).toEqual([['a', 'b'], ['c'], ['d']]);
    expect(job.status).toBe('running');
    await job.raise('stepDone', done('d', 'Completed'));
    expect(job.status).toBe('completed');
    expect(job.names).toEqual(['preparePipeline', 'startSteps', 'startSteps', 'startSteps', 'finalizePipeline']);
    expect(job.inputsOf('finalizePipeline')).toEqual([{ jobId: 'job-1', canceled: false }]);
    expect(job.output).toEqual({ jobId: 'job-1', status: 'Completed' });
  });

  it('a chain of steps runs one after another; a step two levels down waits for both', async () => {
    const job = await startJob({ steps: [{ name: 'prepare', needs: [] }, { name: 'score', needs: ['prepare'] }, { name: 'summarize', needs: ['score', 'prepare'] }] });
    expect(started(job)).toEqual([['prepare']]);
    await job.raise('stepDone', done('prepare', 'Completed'));
    expect(started(job)).toEqual([['prepare'], ['score']]);
    await job.raise('stepDone', done('score', 'Completed'));
    expect(started(job)).toEqual([['prepare'], ['score'], ['summarize']]);
    await job.raise('stepDone', done('summarize', 'Completed'));
    expect(job.output).toEqual({ jobId: 'job-1', status: 'Completed' });
  });

  const forked = [
    { name: 'a', needs: [] },
    { name: 'b', needs: [] },
    { name: 'after_a', needs: ['a'] },
    { name: 'after_b', needs: ['b'] },
  ];

  it('continue_on_step_failure false: a failed step cancels the running steps, and nothing starts after it', async () => {
    const job = await startJob({ steps: forked, continueOnStepFailure: false });
    expect(started(job)).toEqual([['a', 'b']]);
    await job.raise('stepDone', done('a', 'Failed'));
    expect(job.inputsOf('cancelSteps')).toEqual([{ jobId: 'job-1', steps: ['b'] }]);
    // b finished anyway before the cancel reached it: its dependant is not started either.
    await job.raise('stepDone', done('b', 'Completed'));
    expect(started(job)).toEqual([['a', 'b']]);
    expect(job.status).toBe('completed');
    expect(job.names).toEqual(['preparePipeline', 'startSteps', 'cancelSteps', 'finalizePipeline']);
    expect(job.inputsOf('finalizePipeline')).toEqual([{ jobId: 'job-1', canceled: false }]);
  });

  it('continue_on_step_failure false: a failed step with nothing else running cancels nothing', async () => {
    const job = await startJob({ steps: [{ name: 'a', needs: [] }, { name: 'after_a', needs: ['a'] }] });
    await job.raise('stepDone', done('a', 'Failed'));
    expect(job.status).toBe('completed');
    expect(job.names).toEqual(['preparePipeline', 'startSteps', 'finalizePipeline']);
  });

  it('continue_on_step_failure true: independent steps go on and their dependants start; the failed step\'s never do', async () => {
    const job = await startJob({ steps: forked, continueOnStepFailure: true });
    await job.raise('stepDone', done('a', 'Failed'));
    expect(job.inputsOf('cancelSteps')).toEqual([]);
    await job.raise('stepDone', done('b', 'Completed'));
    expect(started(job)).toEqual([['a', 'b'], ['after_b']]);
    await job.raise('stepDone', done('after_b', 'Completed'));
    expect(job.status).toBe('completed');
    expect(job.names).toEqual(['preparePipeline', 'startSteps', 'startSteps', 'finalizePipeline']);
    expect(started(job).flat()).not.toContain('after_a');
  });

  it('a cancel event cancels every running step; nothing new starts; finalize hears canceled', async () => {
    const job = await startJob({ steps: forked });
    await job.raise('cancel', { at: '2026-01-01T00:00:00Z' });
    expect(job.inputsOf('cancelSteps')).toEqual([{ jobId: 'job-1', steps: ['a', 'b'] }]);
    // a had completed as the cancel came: after_a is not started.
    await job.raise('stepDone', done('a', 'Completed'));
    // A second cancel does not cancel again.
    await job.raise('cancel', { at: '2026-01-01T00:00:01Z' });
    expect(job.inputsOf('cancelSteps')).toHaveLength(1);
    await job.raise('stepDone', done('b', 'Canceled'));
    expect(job.status).toBe('completed');
    expect(started(job)).toEqual([['a', 'b']]);
    expect(job.inputsOf('finalizePipeline')).toEqual([{ jobId: 'job-1', canceled: true }]);
    expect(job.output).toEqual({ jobId: 'job-1', status: 'Canceled' });
  });

  it('a cancel after a failure halted the job cancels the steps still running', async () => {
    const job = await startJob({ steps: [...forked, { name: 'c', needs: [] }] });
    await job.raise('stepDone', done('a', 'Failed'));
    expect(job.inputsOf('cancelSteps')).toEqual([{ jobId: 'job-1', steps: ['b', 'c'] }]);
    await job.raise('stepDone', done('b', 'Canceled'));
    await job.raise('cancel', {});
    expect(job.inputsOf('cancelSteps')).toEqual([
      { jobId: 'job-1', steps: ['b', 'c'] },
      { jobId: 'job-1', steps: ['c'] },
    ]);
    await job.raise('stepDone', done('c', 'Canceled'));
    expect(job.inputsOf('finalizePipeline')).toEqual([{ jobId: 'job-1', canceled: true }]);
  });

  it('a step reported twice counts once; a report of a step not running is ignored', async () => {
    const job = await startJob({ steps: [{ name: 'a', needs: [] }, { name: 'b', needs: [] }, { name: 'c', needs: ['a'] }] });
    await job.raise('stepDone', done('a', 'Completed'));
    expect(started(job)).toEqual([['a', 'b'], ['c']]);
    // The same report again (finishStep ran twice), then a late contradicting one: neither counts.
    await job.raise('stepDone', done('a', 'Completed'));
    await job.raise('stepDone', done('a', 'Failed'));
    await job.raise('stepDone', done('nope', 'Completed'));
    expect(job.names).toEqual(['preparePipeline', 'startSteps', 'startSteps']);
    await job.raise('stepDone', done('b', 'Completed'));
    await job.raise('stepDone', done('b', 'Completed'));
    expect(job.status).toBe('running');
    await job.raise('stepDone', done('c', 'Completed'));
    expect(job.status).toBe('completed');
    expect(job.names).toEqual(['preparePipeline', 'startSteps', 'startSteps', 'finalizePipeline']);
    expect(job.output).toEqual({ jobId: 'job-1', status: 'Completed' });
  });

  it('a plan that says canceled or failed starts no step and finalizes at once', async () => {
    const canceled = await startJob({ status: 'canceled', steps: [{ name: 'a', needs: [] }] });
    expect(canceled.names).toEqual(['preparePipeline', 'finalizePipeline']);
    expect(canceled.inputsOf('finalizePipeline')).toEqual([{ jobId: 'job-1', canceled: true }]);
    const error = { code: 'not_found', message: 'gone' };
    const failed = await startJob({ status: 'failed', error, steps: [] });
    expect(failed.inputsOf('finalizePipeline')).toEqual([{ jobId: 'job-1', canceled: false, error }]);
    expect(failed.output).toEqual({ jobId: 'job-1', status: 'Failed' });
  });
});

// --- pipelineStep -----------------------------------------------------------------------------

function stepActivities(): PipelineStepActivities {
  const engine: BatchJobActivities = {
    prepareJob: fakeHandle('prepareJob'),
    finalizeJob: fakeHandle('finalizeJob'),
    batchLane: Object.assign(orchestrationHandle('batchLane'), { orchestrationName: 'batchLane' }),
    batchPlanner: Object.assign(orchestrationHandle('batchPlanner'), { orchestrationName: 'batchPlanner' }),
    scoreMiniBatch: fakeHandle('scoreMiniBatch'),
    recordJournal: fakeHandle('recordJournal'),
  };
  return { ...engine, prepareStep: fakeHandle('prepareStep'), runCommandStep: fakeHandle('runCommandStep'), finishStep: fakeHandle('finishStep') };
}

const stepListener = orchestratorListener(function* (context: df.OrchestrationContext) {
  return yield* pipelineStep(context, context.df.getInput<{ jobId: string; step: string }>(), stepActivities());
});

/** A command step whose attempts end as `attempts` says, in order ('held': the test ends it). */
function startStep(prepared: Partial<PreparedStep>, attempts: (CommandAttempt | { throws: string } | 'held')[]): Promise<Instance> {
  let next = 0;
  return new Instance('pipelineStep', stepListener, {
    prepareStep: () => ok({ status: 'ready', type: 'command', maxRetries: 0, ...prepared }),
    runCommandStep: () => {
      const outcome = attempts[next++];
      if (outcome === undefined) throw new Error('an attempt more than the test planned');
      if (outcome === 'held') return 'held';
      return 'throws' in outcome ? { error: outcome.throws } : ok(outcome);
    },
    finishStep: (input) => ok({ status: input['status'] }),
  }, { jobId: 'job-1', step: 'train' }, 'job-1:step-train').start();
}

const failed = (error: string, retryable: boolean): CommandAttempt => ({ status: 'failed', retryable, error });
const attemptNumbers = (step: Instance): unknown[] => step.inputsOf('runCommandStep').map((i) => i['attempt']);
const finished = (step: Instance): Record<string, unknown> | undefined => step.inputsOf('finishStep')[0];

describe('pipelineStep (command)', () => {
  it('runs once and finishes Completed', async () => {
    const step = await startStep({ maxRetries: 2 }, [{ status: 'completed', retryable: false }]);
    expect(step.names).toEqual(['prepareStep', 'runCommandStep', 'finishStep']);
    expect(step.inputsOf('runCommandStep')).toEqual([{ jobId: 'job-1', step: 'train', attempt: 1 }]);
    expect(finished(step)).toEqual({ jobId: 'job-1', step: 'train', status: 'Completed', attempts: 1 });
    expect(step.output).toEqual({ status: 'Completed' });
  });

  it('retries a retryable failure while attempts are left, and completes', async () => {
    const step = await startStep({ maxRetries: 2 }, [failed('flaky', true), { status: 'timeout', retryable: true, error: 'slow' }, { status: 'completed', retryable: false }]);
    expect(attemptNumbers(step)).toEqual([1, 2, 3]);
    expect(finished(step)).toEqual({ jobId: 'job-1', step: 'train', status: 'Completed', attempts: 3 });
  });

  it('fails once max_retries retries are spent, with the last attempt\'s error', async () => {
    const step = await startStep({ maxRetries: 1 }, [failed('flaky', true), failed('flaky again', true)]);
    expect(attemptNumbers(step)).toEqual([1, 2]);
    expect(finished(step)).toEqual({ jobId: 'job-1', step: 'train', status: 'Failed', attempts: 2, error: { code: 'step_failed', message: 'flaky again' } });
    expect(step.output).toEqual({ status: 'Failed' });
  });

  it('max_retries 0: a retryable failure is not retried; a timeout says so', async () => {
    const step = await startStep({ maxRetries: 0 }, [{ status: 'timeout', retryable: true, error: 'ran past 10 s' }]);
    expect(attemptNumbers(step)).toEqual([1]);
    expect(finished(step)).toMatchObject({ status: 'Failed', attempts: 1, error: { code: 'step_timeout', message: 'ran past 10 s' } });
  });

  it('stops at a non-retryable failure however many retries are left', async () => {
    const step = await startStep({ maxRetries: 5 }, [failed('flaky', true), failed('the input has no rows', false)]);
    expect(attemptNumbers(step)).toEqual([1, 2]);
    expect(finished(step)).toEqual({ jobId: 'job-1', step: 'train', status: 'Failed', attempts: 2, error: { code: 'step_failed', message: 'the input has no rows' } });
  });

  it('an attempt whose activity throws is retried like a retryable failure, then fails with its message', async () => {
    const step = await startStep({ maxRetries: 1 }, [{ throws: 'storage hiccup' }, { throws: 'storage down' }]);
    expect(attemptNumbers(step)).toEqual([1, 2]);
    expect(finished(step)).toMatchObject({ status: 'Failed', attempts: 2, error: { code: 'step_failed' } });
    expect(String((finished(step)?.['error'] as { message: string }).message)).toContain('storage down');
  });

  it('cancel during an attempt: the attempt runs to its end, no retry starts, the step is Canceled', async () => {
    const step = await startStep({ maxRetries: 3 }, ['held']);
    expect(step.names).toEqual(['prepareStep', 'runCommandStep']);
    await step.raise('cancel', { at: '2026-01-01T00:00:00Z' });
    // Still waiting for the attempt in flight.
    expect(step.names).toEqual(['prepareStep', 'runCommandStep']);
    expect(step.status).toBe('running');
    await step.answer('runCommandStep', ok(failed('stopped', true)) as { result: unknown });
    expect(attemptNumbers(step)).toEqual([1]);
    expect(finished(step)).toEqual({ jobId: 'job-1', step: 'train', status: 'Canceled', attempts: 1 });
    expect(step.output).toEqual({ status: 'Canceled' });
  });

  it('an attempt that says canceled ends the step Canceled', async () => {
    const step = await startStep({ maxRetries: 3 }, [{ status: 'canceled', retryable: false }]);
    expect(finished(step)).toEqual({ jobId: 'job-1', step: 'train', status: 'Canceled', attempts: 1 });
  });

  it('a reused, canceled or failed-to-prepare step runs nothing and reports how it ended', async () => {
    const reused = await startStep({ status: 'reused' }, []);
    expect(reused.names).toEqual(['prepareStep', 'finishStep']);
    expect(finished(reused)).toEqual({ jobId: 'job-1', step: 'train', status: 'Completed' });
    const canceled = await startStep({ status: 'canceled' }, []);
    expect(finished(canceled)).toEqual({ jobId: 'job-1', step: 'train', status: 'Canceled' });
    const error = { code: 'internal', message: 'no output' };
    const broken = await startStep({ status: 'failed', error }, []);
    expect(broken.names).toEqual(['prepareStep', 'finishStep']);
    expect(finished(broken)).toEqual({ jobId: 'job-1', step: 'train', status: 'Failed', error });
  });
});
