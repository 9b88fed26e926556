import { resolve } from 'node:path';
import { QueueServiceClient } from '@azure/storage-queue';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type FnHostProcess, MASTER_KEY, startFnHost } from '../support/fnhost.js';
import { waitFor } from '../support/wait.js';

const FEATURES_APP = resolve(import.meta.dirname, '..', 'fixtures', 'fnhost-features-app');

interface Run {
  invocationId: string;
  retryContext: { retryCount: number; maxRetryCount: number; exception?: { message?: string; source?: string } } | null;
}
type Runs = Partial<Record<string, Run[]>>;

let host: FnHostProcess;
let open: FnHostProcess | undefined;

beforeAll(async () => {
  // The queue trigger is disabled through the environment, the rest through local.settings.json.
  host = await startFnHost({ appDir: FEATURES_APP, env: { AzureWebJobs_disabledQueue_Disabled: 'true' } });
});

afterAll(async () => {
  await Promise.all([host?.stop(), open?.stop()]);
});

const runs = async (h: FnHostProcess): Promise<Runs> => (await (await fetch(`${h.url}/api/runs`)).json()) as Runs;

async function waitForRuns(h: FnHostProcess, name: string, count: number): Promise<Run[]> {
  return waitFor(
    async () => {
      const list = (await runs(h))[name] ?? [];
      return list.length >= count ? list : undefined;
    },
    { what: `${count} run(s) of ${name}`, timeoutMs: 20_000 },
  );
}

describe('fnhost start-up output', () => {
  it('prints the lines tools wait for, and the Functions listing as func start does', async () => {
    const leaseLine = /\] Host lock lease acquired by instance ID '[0-9A-Fa-f]{32}'\.$/m;
    // The harness stops waiting at "is listening on"; the lock-lease line follows it.
    const out = await waitFor(() => (leaseLine.test(host.output()) ? host.output() : undefined), { what: 'the lock-lease line' });
    const lines = out.split('\n');
    const index = (pattern: RegExp): number => lines.findIndex((l) => pattern.test(l));

    const worker = index(/\] Worker process started and initialized\.$/);
    const listing = index(/^Functions:$/);
    const listening = index(/fnhost \S+ is listening on http:\/\/127\.0\.0\.1:\d+$/);
    const lease = index(/\] Host lock lease acquired by instance ID '[0-9A-Fa-f]{32}'\.$/);
    expect(worker).toBeGreaterThan(-1);
    expect(listing).toBeGreaterThan(worker);
    expect(listening).toBeGreaterThan(listing);
    // The lock-lease line comes last: once a tool sees it, the host serves requests.
    expect(lease).toBeGreaterThan(listening);
    expect(out).toMatch(/\] Host started \(\d+ms\)/);
    expect(out).toContain('] Job host started');

    const base = host.url;
    expect(lines).toContain(`\tenabledPage: [GET] ${base}/api/enabledPage`);
    expect(lines).toContain('\tretryingTimer: timerTrigger');
    expect(lines).toContain('\tenabledQueue: queueTrigger');
    // Keys are checked, so a function-level URL carries its key.
    expect(lines.some((l) => l.startsWith(`\tfunctionLevel: [GET] ${base}/api/functionLevel?code=`))).toBe(true);
    // Disabled functions are named after the listing instead of in it.
    for (const name of ['disabledPage', 'disabledTimer', 'disabledQueue']) {
      expect(lines).toContain(`Function ${name} is disabled.`);
      expect(lines.some((l) => l.startsWith(`\t${name}:`))).toBe(false);
    }
    expect(lines.some((l) => l.startsWith('\tenabledPage'))).toBe(true);
  });

  it('reports each trigger it cannot run, by name and type, and does not list it', () => {
    const out = host.output();
    for (const [name, type] of [
      ['cosmosChanges', 'cosmosDBTrigger'],
      ['serviceBusOrders', 'serviceBusTrigger'],
      ['hubEvents', 'eventHubTrigger'],
      ['sqlChanges', 'sqlTrigger'],
      ['mcpEcho', 'mcpToolTrigger'],
    ]) {
      expect(out).toContain(`Function '${name}' (${type}): not supported by fnhost, will not run.`);
      expect(out).not.toContain(`\t${name}:`);
    }
  });
});

describe('fnhost retry policies', () => {
  it('runs a failing timer function again as its retry policy says, with context.retryContext', async () => {
    const attempts = await waitForRuns(host, 'retryingTimer', 3);
    await waitFor(() => (host.output().includes("Function execution failed after '2' retries.") ? true : undefined), {
      what: 'the retries to end',
    });
    const final = (await runs(host))['retryingTimer'] ?? [];
    expect(final).toHaveLength(3);
    expect(final.map((a) => a.retryContext?.retryCount)).toEqual([0, 1, 2]);
    expect(final.map((a) => a.retryContext?.maxRetryCount)).toEqual([2, 2, 2]);
    // The first attempt has no failure to report; each retry carries the one before it.
    expect(attempts[0]?.retryContext?.exception).toBeUndefined();
    expect(final[1]?.retryContext?.exception?.message).toContain('attempt 1 failed');
    expect(final[2]?.retryContext?.exception?.message).toContain('attempt 2 failed');
    // Each attempt is an invocation of its own.
    expect(new Set(final.map((a) => a.invocationId)).size).toBe(3);
    expect(host.output().match(/Executed 'Functions\.retryingTimer' \(Failed/g)).toHaveLength(3);
  });

  it('runs a failing function without a policy once, without a retry context', async () => {
    const [only] = await waitForRuns(host, 'plainTimer', 1);
    expect(only?.retryContext).toBeNull();
    // By the time the retrying timer has given up, a retry of this one would have happened too.
    await waitFor(() => (host.output().includes("Function execution failed after '2' retries.") ? true : undefined));
    expect((await runs(host))['plainTimer']).toHaveLength(1);
  });
});

describe('fnhost disabled functions', () => {
  it('answers 404 for a disabled HTTP function unless the caller has the master key', async () => {
    expect((await fetch(`${host.url}/api/disabledPage`)).status).toBe(404);
    const admin = await fetch(`${host.url}/api/disabledPage`, { headers: { 'x-functions-key': MASTER_KEY } });
    expect(admin.status).toBe(200);
    expect(await admin.text()).toBe('disabled page ran');
    // "false" leaves a function enabled.
    expect(await (await fetch(`${host.url}/api/enabledPage`)).text()).toBe('enabled page ran');
  });

  it('does not fire a disabled timer nor dequeue for a disabled queue trigger', async () => {
    const queues = QueueServiceClient.fromConnectionString(host.storageConnection);
    const disabled = queues.getQueueClient('fnhost-features-disabled');
    const enabled = queues.getQueueClient('fnhost-features-enabled');
    await Promise.all([disabled.createIfNotExists(), enabled.createIfNotExists()]);
    await disabled.sendMessage(Buffer.from('left alone').toString('base64'));
    await enabled.sendMessage(Buffer.from('taken').toString('base64'));
    // The enabled trigger took its message, so queue triggers were polling.
    await waitForRuns(host, 'enabledQueue', 1);
    const [waiting] = (await disabled.peekMessages({ numberOfMessages: 1 })).peekedMessageItems;
    expect(waiting?.dequeueCount).toBe(0);
    // The start-up timers ran long ago (the plain one is recorded); the disabled one did not.
    await waitForRuns(host, 'plainTimer', 1);
    const seen = await runs(host);
    expect(seen['disabledTimer']).toBeUndefined();
    expect(seen['disabledQueue']).toBeUndefined();
  });

  it('marks them disabled in the admin function list', async () => {
    const list = (await (await fetch(`${host.url}/admin/functions`, { headers: { 'x-functions-key': MASTER_KEY } })).json()) as {
      name: string;
      isDisabled: boolean;
    }[];
    const disabled = list.filter((f) => f.isDisabled).map((f) => f.name).sort();
    expect(disabled).toEqual(['disabledPage', 'disabledQueue', 'disabledTimer']);
  });
});

describe('fnhost keys', () => {
  it('checks keys by default', async () => {
    expect((await fetch(`${host.url}/api/functionLevel`)).status).toBe(401);
    expect((await fetch(`${host.url}/api/adminLevel`)).status).toBe(401);
    expect((await fetch(`${host.url}/admin/host/status`)).status).toBe(401);
  });

  it('with --no-auth lets every request in as func start does without --enableAuth', async () => {
    // Same storage as the first host: this one needs no Azurite of its own.
    open = await startFnHost({
      appDir: FEATURES_APP,
      args: ['--no-auth'],
      storageConnection: host.storageConnection,
      env: { AzureWebJobs_disabledQueue_Disabled: 'true' },
    });
    expect(open.output()).toContain('Keys are not checked (--no-auth)');
    expect(await (await fetch(`${open.url}/api/functionLevel`)).text()).toBe('function level ran');
    expect(await (await fetch(`${open.url}/api/adminLevel`)).text()).toBe('admin level ran');
    // What VS Code polls before it attaches a debugger.
    const status = await fetch(`${open.url}/admin/host/status`);
    expect(status.status).toBe(200);
    expect(await status.json()).toMatchObject({ state: 'Running' });
    // Every caller is admin, and an admin caller reaches a disabled HTTP function.
    expect((await fetch(`${open.url}/api/disabledPage`)).status).toBe(200);
    // The listing shows plain URLs, without keys.
    expect(open.output().split('\n')).toContain(`\tfunctionLevel: [GET] ${open.url}/api/functionLevel`);
  });
});
