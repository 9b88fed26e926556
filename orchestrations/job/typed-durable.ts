import * as df from 'durable-functions';

/** A registered activity called through its handle: input and result types travel with it. */
export interface TypedActivity<I, O> {
  (input: I): df.RegisteredActivityTask;
  readonly activityName: string;
  /** Reads the result of a completed task of this activity (e.g. inside Task.all). */
  resultOf(task: df.Task): O;
}

/** Registers an activity and returns a typed handle for orchestrators. */
export function typedActivity<I, O>(name: string, handler: (input: I) => Promise<O>): TypedActivity<I, O> {
  const registered = df.app.activity(name, { handler: (input: unknown) => handler(input as I) });
  return Object.assign((input: I) => registered(input), {
    activityName: name,
    resultOf: (task: df.Task) => task.result as O,
  });
}

/**
 * Registers an activity that also gets a Durable client (to start orchestrations or raise events to
 * them), and returns a typed handle.
 */
export function typedClientActivity<I, O>(name: string, handler: (input: I, client: df.DurableClient) => Promise<O>): TypedActivity<I, O> {
  const registered = df.app.activity(name, {
    extraInputs: [df.input.durableClient()],
    handler: (input: unknown, context) => handler(input as I, df.getClient(context)),
  });
  return Object.assign((input: I) => registered(input), {
    activityName: name,
    resultOf: (task: df.Task) => task.result as O,
  });
}

export interface TypedOrchestration<I> {
  (input: I, instanceId: string): df.RegisteredOrchestrationTask;
  readonly orchestrationName: string;
}

/** Registers an orchestrator and returns a typed handle for parents and clients. */
export function typedOrchestration<I, O>(
  name: string,
  handler: (context: df.OrchestrationContext, input: I) => Generator<df.Task, O, unknown>,
): TypedOrchestration<I> {
  const registered = df.app.orchestration(name, function* (context: df.OrchestrationContext) {
    return yield* handler(context, context.df.getInput<I>());
  });
  return Object.assign((input: I, instanceId: string) => registered(input, instanceId), { orchestrationName: name });
}
