import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type FnHostProcess, SYSTEM_KEYS, TEST_APP, startFnHost } from '../support/fnhost.js';
import { getStatus, startOrchestration, waitForCompletion, waitForStatus } from '../support/durable.js';
import { uniqueName } from '../support/ports.js';
import { waitFor } from '../support/wait.js';

let host: FnHostProcess;

beforeAll(async () => {
  host = await startFnHost({ appDir: TEST_APP });
});

afterAll(async () => {
  await host?.stop();
});

function eventTypes(history: Record<string, unknown>[] | undefined): string[] {
  return (history ?? []).map((e) => String(e['EventType']));
}

describe('fnhost durable functions', () => {
  it('runs an activity sequence and reports its history', async () => {
    const started = await startOrchestration(host.url, 'helloSequence');
    const status = await waitForCompletion(started.statusQueryGetUri);
    expect(status.runtimeStatus).toBe('Completed');
    expect(status.output).toEqual(['Hello Tokyo!', 'Hello Seattle!', 'Hello London!']);
    expect(eventTypes(status.historyEvents)).toEqual([
      'ExecutionStarted',
      'TaskCompleted',
      'TaskCompleted',
      'TaskCompleted',
      'ExecutionCompleted',
    ]);
    const completed = status.historyEvents?.filter((e) => e['EventType'] === 'TaskCompleted') ?? [];
    expect(completed.map((e) => e['FunctionName'])).toEqual(['sayHello', 'sayHello', 'sayHello']);
    expect(completed.map((e) => e['Result'])).toEqual(['Hello Tokyo!', 'Hello Seattle!', 'Hello London!']);
    expect(completed[0]?.['Input']).toBe('"Tokyo"');
  });

  it('answers the status API with the extension status codes and shapes', async () => {
    const started = await startOrchestration(host.url, 'waitForever');
    const running = await waitForStatus(started.statusQueryGetUri, 'Running');
    const res = await fetch(started.statusQueryGetUri);
    expect(res.status).toBe(202);
    expect(res.headers.get('retry-after')).toBe('5');
    expect(running.customStatus).toBe('waiting for ever');
    expect(running.createdTime).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    expect(running).not.toHaveProperty('historyEvents');

    const unknown = await fetch(`${host.url}/runtime/webhooks/durabletask/instances/nope?code=${SYSTEM_KEYS.durabletask_extension}`);
    expect(unknown.status).toBe(404);
    const noKey = await fetch(`${host.url}/runtime/webhooks/durabletask/instances/${started.id}`);
    expect(noKey.status).toBe(401);
    const wrongKey = await fetch(`${host.url}/runtime/webhooks/durabletask/instances/${started.id}?code=wrong`);
    expect(wrongKey.status).toBe(401);

    await fetch(started.terminatePostUri.replace('{text}', 'done+testing'), { method: 'POST' });
    const terminated = await waitForCompletion(started.statusQueryGetUri);
    expect(terminated.runtimeStatus).toBe('Terminated');
    expect(terminated.output).toBe('done testing');
    expect(eventTypes(terminated.historyEvents)).toContain('ExecutionTerminated');
  });

  it('fans out 300 activities and fans in their results', async () => {
    const started = await startOrchestration(host.url, 'fanOut', { n: 300 });
    const status = await waitForCompletion(started.statusQueryGetUri);
    expect(status.runtimeStatus).toBe('Completed');
    let expected = 0;
    for (let i = 0; i < 300; i++) expected += i * i;
    expect(status.output).toBe(expected);
    expect(eventTypes(status.historyEvents).filter((t) => t === 'TaskCompleted')).toHaveLength(300);
  });

  it('runs a Task.any sliding window without scheduling running tasks twice', async () => {
    const started = await startOrchestration(host.url, 'slidingWindow', { n: 40, window: 4 });
    const status = await waitForCompletion(started.statusQueryGetUri);
    expect(status.runtimeStatus).toBe('Completed');
    expect(status.output).toEqual({ sum: (39 * 40) / 2, runs: 40, maxRuns: 1 });
    expect(host.output()).toContain('passes tasks it already yielded to Task.any/Task.all');
  });

  it('retries an activity with a retry policy until it succeeds', async () => {
    const key = uniqueName('flaky');
    const started = await startOrchestration(host.url, 'retrying', { key, succeedOn: 3, maxAttempts: 5 });
    const status = await waitForCompletion(started.statusQueryGetUri);
    expect(status.output).toEqual({ attempts: 3 });
    const types = eventTypes(status.historyEvents);
    // Two failed attempts, each followed by a retry timer, then the successful attempt.
    expect(types.filter((t) => t === 'TaskFailed')).toHaveLength(2);
    expect(types.filter((t) => t === 'TimerFired')).toHaveLength(2);
    expect(types.filter((t) => t === 'TaskCompleted')).toHaveLength(1);
  });

  it('gives up after maxNumberOfAttempts and surfaces the last error', async () => {
    const key = uniqueName('flaky');
    const started = await startOrchestration(host.url, 'retrying', { key, succeedOn: 10, maxAttempts: 2 });
    const status = await waitForCompletion(started.statusQueryGetUri);
    expect(status.output).toMatchObject({ failed: true });
    expect(String((status.output as { message: string }).message)).toContain('flaky attempt 2 failed');
    expect(eventTypes(status.historyEvents).filter((t) => t === 'TaskFailed')).toHaveLength(2);
  });

  it('carries structured failure details from an exception-properties provider', async () => {
    const started = await startOrchestration(host.url, 'failureDetails');
    const status = await waitForCompletion(started.statusQueryGetUri);
    expect(status.output).toEqual({ name: 'TaskFailedError', type: 'InventoryError', properties: { sku: 'SKU-42', retryable: false } });
  });

  it('fails an orchestration that throws, with the message in output', async () => {
    const started = await startOrchestration(host.url, 'throws');
    const status = await waitForCompletion(started.statusQueryGetUri);
    expect(status.runtimeStatus).toBe('Failed');
    expect(status.output).toBe("Orchestrator function 'throws' failed: orchestrator blew up");
    const failed = status.historyEvents?.find((e) => e['EventType'] === 'ExecutionCompleted');
    expect(failed?.['OrchestrationStatus']).toBe('Failed');
    const res = await fetch(`${started.statusQueryGetUri}&returnInternalServerErrorOnFailure=true`);
    expect(res.status).toBe(500);
  });

  it('runs sub-orchestrations with explicit and generated instance ids', async () => {
    const id = uniqueName('parent');
    const started = await startOrchestration(host.url, 'parent', { children: 3 }, id);
    expect(started.id).toBe(id);
    const status = await waitForCompletion(started.statusQueryGetUri);
    expect(status.output).toEqual({ sums: [0, 1, 5], auto: ['Hello Tokyo!', 'Hello Seattle!', 'Hello London!'] });
    const child = await getStatus(started.statusQueryGetUri.replace(id, `${id}-child-2`));
    expect(child.body.runtimeStatus).toBe('Completed');
    expect(child.body.output).toBe(5);
  });

  it('retries a failing sub-orchestration, then reports its failure', async () => {
    const started = await startOrchestration(host.url, 'subRetry');
    const status = await waitForCompletion(started.statusQueryGetUri);
    expect(status.output).toMatchObject({ failed: true });
    expect(eventTypes(status.historyEvents).filter((t) => t === 'SubOrchestrationInstanceFailed')).toHaveLength(2);
  });

  it('delivers an external event and cancels the competing timer', async () => {
    const started = await startOrchestration(host.url, 'approval', { timeoutSeconds: 300 });
    const waiting = await waitFor(
      async () => {
        const { body } = await getStatus(started.statusQueryGetUri);
        return (body.customStatus as { stage?: string } | null)?.stage === 'waiting' ? body : undefined;
      },
      { what: 'waiting stage' },
    );
    expect(waiting.runtimeStatus).toBe('Running');
    const res = await fetch(started.sendEventPostUri.replace('{eventName}', 'approval'), {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify('alice'),
    });
    expect(res.status).toBe(202);
    const status = await waitForCompletion(started.statusQueryGetUri, 20_000);
    expect(status.output).toEqual({ approved: true, by: 'alice' });
    expect(status.customStatus).toEqual({ stage: 'approved' });
    expect(eventTypes(status.historyEvents)).toContain('EventRaised');
    expect(eventTypes(status.historyEvents)).not.toContain('TimerFired');
  });

  it('fires a durable timer', async () => {
    const started = await startOrchestration(host.url, 'approval', { timeoutSeconds: 1 });
    const status = await waitForCompletion(started.statusQueryGetUri, 20_000);
    expect(status.output).toEqual({ approved: false });
    expect(eventTypes(status.historyEvents)).toEqual(expect.arrayContaining(['TimerCreated', 'TimerFired']));
  });

  it('buffers events that arrive before the orchestrator waits for them', async () => {
    const started = await startOrchestration(host.url, 'eventCollector');
    const raise = async (name: string, value: unknown): Promise<number> =>
      (
        await fetch(started.sendEventPostUri.replace('{eventName}', name), {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify(value),
        })
      ).status;
    expect(await raise('second', 2)).toBe(202);
    expect(await raise('first', 1)).toBe(202);
    const status = await waitForCompletion(started.statusQueryGetUri);
    expect(status.output).toEqual([1, 2]);
    // A finished instance no longer takes events.
    expect(await raise('first', 3)).toBe(410);
  });

  it('continues as new with fresh history', async () => {
    const started = await startOrchestration(host.url, 'counterLoop', { n: 0 });
    const status = await waitForCompletion(started.statusQueryGetUri);
    expect(status.output).toEqual({ final: 4 });
    expect(status.input).toEqual({ n: 4 });
    // Only the last generation's history remains.
    expect(eventTypes(status.historyEvents).filter((t) => t === 'TaskCompleted')).toHaveLength(1);
  });

  it('suspends and resumes an instance, holding its events meanwhile', async () => {
    const started = await startOrchestration(host.url, 'eventCollector');
    await waitForStatus(started.statusQueryGetUri, 'Running');
    expect((await fetch(started.suspendPostUri.replace('{text}', 'pause'), { method: 'POST' })).status).toBe(202);
    await waitForStatus(started.statusQueryGetUri, 'Suspended');
    for (const [name, value] of [['first', 'a'], ['second', 'b']] as const) {
      await fetch(started.sendEventPostUri.replace('{eventName}', name), {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(value),
      });
    }
    await new Promise((r) => setTimeout(r, 300));
    expect((await getStatus(started.statusQueryGetUri)).body.runtimeStatus).toBe('Suspended');
    expect((await fetch(started.resumePostUri.replace('{text}', 'go'), { method: 'POST' })).status).toBe(202);
    const status = await waitForCompletion(started.statusQueryGetUri);
    expect(status.output).toEqual(['a', 'b']);
    expect(eventTypes(status.historyEvents)).toEqual(expect.arrayContaining(['ExecutionSuspended', 'ExecutionResumed']));
  });

  it('signals and calls entities from orchestrations and clients', async () => {
    const key = uniqueName('ctr');
    const started = await startOrchestration(host.url, 'entityUser', { key });
    const status = await waitForCompletion(started.statusQueryGetUri);
    expect(status.output).toBe(12);

    const base = `${host.url}/runtime/webhooks/durabletask/entities/counter/${key}?code=${SYSTEM_KEYS.durabletask_extension}`;
    const signal = await fetch(`${base}&op=add`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '30' });
    expect(signal.status).toBe(202);
    const state = await waitFor(async () => {
      const res = await fetch(base);
      const value = res.status === 200 ? ((await res.json()) as number) : undefined;
      return value === 42 ? value : undefined;
    });
    expect(state).toBe(42);

    // Through the durable-functions client library.
    await fetch(`${host.url}/api/client/signal/${key}?op=add&value=8`, { method: 'POST' });
    const read = await waitFor(async () => {
      const body = (await (await fetch(`${host.url}/api/client/entity/${key}`)).json()) as { entityExists: boolean; entityState: number };
      return body.entityState === 50 ? body : undefined;
    });
    expect(read).toEqual({ entityExists: true, entityState: 50 });
    const missing = await fetch(`${host.url}/runtime/webhooks/durabletask/entities/counter/${uniqueName('none')}?code=${SYSTEM_KEYS.durabletask_extension}`);
    expect(missing.status).toBe(404);
  });

  it('locks entities for a critical section', async () => {
    const started = await startOrchestration(host.url, 'lockUser');
    const status = await waitForCompletion(started.statusQueryGetUri);
    expect(status.output).toBe(3);
  });

  it('supports the durable-functions client API end to end', async () => {
    const started = await startOrchestration(host.url, 'eventCollector');
    const id = started.id;
    expect((await fetch(`${host.url}/api/client/raise/${id}?event=first`, { method: 'POST', body: '"x"' })).status).toBe(202);
    expect((await fetch(`${host.url}/api/client/raise/${id}?event=second`, { method: 'POST', body: '"y"' })).status).toBe(202);
    const waited = await fetch(`${host.url}/api/client/wait/${id}`);
    expect(waited.status).toBe(200);
    expect(await waited.json()).toEqual(['x', 'y']);
    const status = (await (await fetch(`${host.url}/api/client/status/${id}`)).json()) as { runtimeStatus: string; output: unknown };
    expect(status.runtimeStatus).toBe('Completed');
    const listed = (await (await fetch(`${host.url}/api/client/list/${id}`)).json()) as string[];
    expect(listed).toContain(id);
    const purged = (await (await fetch(`${host.url}/api/client/purge/${id}`, { method: 'POST' })).json()) as { instancesDeleted: number };
    expect(purged.instancesDeleted).toBe(1);
    expect((await fetch(started.statusQueryGetUri)).status).toBe(404);
  });

  it('lists instances with filters and continuation tokens', async () => {
    const prefix = uniqueName('list');
    for (let i = 0; i < 5; i++) await startOrchestration(host.url, 'helloSequence', undefined, `${prefix}-${i}`);
    const base = `${host.url}/runtime/webhooks/durabletask/instances?code=${SYSTEM_KEYS.durabletask_extension}&instanceIdPrefix=${prefix}&top=2`;
    const ids: string[] = [];
    let token: string | null = null;
    let pages = 0;
    do {
      const res: Response = await fetch(base, token ? { headers: { 'x-ms-continuation-token': token } } : {});
      expect(res.status).toBe(200);
      const page = (await res.json()) as { instanceId: string }[];
      ids.push(...page.map((p) => p.instanceId));
      token = res.headers.get('x-ms-continuation-token');
      pages++;
    } while (token);
    expect(pages).toBe(3);
    expect(ids.sort()).toEqual([0, 1, 2, 3, 4].map((i) => `${prefix}-${i}`));
  });

  it('refuses bad starts and bad event bodies without side effects', async () => {
    const unknown = await fetch(`${host.url}/runtime/webhooks/durabletask/orchestrators/noSuchOrchestrator?code=${SYSTEM_KEYS.durabletask_extension}`, { method: 'POST' });
    expect(unknown.status).toBe(400);
    const badJson = await fetch(`${host.url}/runtime/webhooks/durabletask/orchestrators/helloSequence?code=${SYSTEM_KEYS.durabletask_extension}`, {
      method: 'POST',
      body: '{not json',
    });
    expect(badJson.status).toBe(400);
    const id = uniqueName('dup');
    const first = await startOrchestration(host.url, 'waitForever', undefined, id);
    const second = await fetch(`${host.url}/runtime/webhooks/durabletask/orchestrators/waitForever/${id}?code=${SYSTEM_KEYS.durabletask_extension}`, { method: 'POST' });
    expect(second.status).toBe(409);
    const wrongType = await fetch(first.sendEventPostUri.replace('{eventName}', 'x'), { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'hi' });
    expect(wrongType.status).toBe(400);
    const rewind = await fetch(first.statusQueryGetUri.replace('?', '/rewind?'), { method: 'POST' });
    expect(rewind.status).toBe(501);
    await fetch(first.terminatePostUri.replace('{text}', 'cleanup'), { method: 'POST' });
  });
});
