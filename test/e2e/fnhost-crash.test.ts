import { TableClient } from '@azure/data-tables';
import { describe, expect, it } from 'vitest';
import { cleanupsAfterAll } from '../support/cleanups.js';
import { getStatus, startOrchestration, waitForCompletion } from '../support/durable.js';
import { TEST_APP, azuriteAndDataFolder, startFnHost } from '../support/fnhost.js';
import { uniqueName } from '../support/ports.js';
import { waitFor } from '../support/wait.js';

const N = 300;

const cleanups = cleanupsAfterAll();

describe('fnhost crash safety', () => {
  it('resumes a fan-out after kill -9 without re-running completed activities', async () => {
    const { storage, dataDir } = await azuriteAndDataFolder(cleanups, 'fnhost-crash-');
    const first = await startFnHost({ appDir: TEST_APP, dataDir, storageConnection: storage.connectionString });
    cleanups.push(() => first.kill());

    const runId = uniqueName('crash');
    const started = await startOrchestration(first.url, 'crashFanOut', { n: N, delayMs: 40 }, runId);

    // Let roughly a third of the activities finish, note which ones history records as done, kill.
    const completedBeforeKill = await waitFor(
      async () => {
        const { body } = await getStatus(started.statusQueryGetUri, '&showHistory=true');
        const done = (body.historyEvents ?? [])
          .filter((e) => e['EventType'] === 'TaskCompleted')
          .map((e) => (JSON.parse(String(e['Input'])) as { i: number }).i);
        return done.length >= N / 3 ? done : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 20, what: 'a third of the activities' },
    );
    await first.kill();
    expect(completedBeforeKill.length).toBeLessThan(N);

    const second = await startFnHost({ appDir: TEST_APP, dataDir, storageConnection: storage.connectionString, port: first.port });
    cleanups.push(() => second.stop());
    expect(second.output()).toMatch(/resuming \d+ instance\(s\) and \d+ activity task\(s\)/);
    const status = await waitForCompletion(started.statusQueryGetUri.replace(`:${first.port}`, `:${second.port}`), 120_000);
    expect(status.runtimeStatus).toBe('Completed');
    expect(status.output).toBe(N * (N - 1));

    const table = TableClient.fromConnectionString(storage.connectionString, 'crashwork', { allowInsecureConnection: true });
    const runs = new Map<number, number>();
    for await (const row of table.listEntities<{ index: number }>({ queryOptions: { filter: `PartitionKey eq '${runId}'` } })) {
      runs.set(row.index, (runs.get(row.index) ?? 0) + 1);
    }
    // Every activity ran at least once ...
    expect(runs.size).toBe(N);
    // ... and none whose completion was recorded before the kill ran again.
    const rerun = completedBeforeKill.filter((i) => runs.get(i) !== 1);
    expect(rerun).toEqual([]);
  });
});
