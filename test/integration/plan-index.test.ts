/**
 * A job's plan index against real storage (Azurite): two executions planning the same page (an
 * activity run twice) never leave chunks that disagree with the index; only the recorded writer's
 * chunk is read, by this host and by any other.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AppConfig, loadConfig } from '../../shared/config.js';
import { JobWorkArea, type PlanIndex } from '../../shared/jobs/work-area.js';
import { type MiniBatch, planPage } from '../../shared/planning/plan.js';
import { startAzurite } from '../support/azurite.js';
import { uniqueName } from '../support/ports.js';

let storage: { connectionString: string; stop: () => Promise<void> };
let config: AppConfig;

beforeAll(async () => {
  storage = await startAzurite();
  config = loadConfig({ AzureWebJobsStorage: storage.connectionString, BATCH_TABLE_PREFIX: uniqueName('t').replace(/[^a-z0-9]/g, '') });
});

afterAll(async () => {
  await storage?.stop();
});

const items = (names: string[]) => names.map((name) => ({ name, blob: `in/${name}`, size: 1, etag: `"${name}"` }));

function index(plan: ReturnType<typeof planPage>['plan'], writers: PlanIndex['writers'], marker: string): PlanIndex {
  return { ...plan, chunkSize: 1, lanes: 2, marker, done: marker === '', files: plan.items + plan.pending.length, writers };
}

describe('the plan index', () => {
  it('records one of two executions that plan the same page, and every reader sees that one', async () => {
    const area = new JobWorkArea({ config });
    const job = uniqueName('job');
    const first = planPage({ miniBatches: 0, chunks: 0, items: 0, pending: [] }, items(['a', 'b']), { miniBatchSize: 2, chunkSize: 1, last: false });
    expect(await area.advancePlan(job, undefined, index(first.plan, [{ first: 0, nonce: 'aaaa0000' }], 'm1'), first.chunks)).toBeDefined();
    // A second prepare: its plan is not recorded, the first one stands.
    expect(await area.advancePlan(job, undefined, index(first.plan, [{ first: 0, nonce: 'bbbb0000' }], 'm1'), first.chunks)).toBeUndefined();
    const recorded = await area.readPlan(job);
    expect(recorded?.index.writers).toEqual([{ first: 0, nonce: 'aaaa0000' }]);

    // Two executions list the next page, and the folder changed between their listings.
    const mine = planPage(first.plan, items(['c', 'd']), { miniBatchSize: 2, chunkSize: 1, last: true });
    const rival = planPage(first.plan, items(['c2', 'd2']), { miniBatchSize: 2, chunkSize: 1, last: true });
    const from = { etag: recorded?.etag ?? '' };
    const won = await area.advancePlan(job, from, index(rival.plan, [{ first: 0, nonce: 'aaaa0000' }, { first: 1, nonce: 'cccc0000' }], ''), rival.chunks);
    const lost = await area.advancePlan(job, from, index(mine.plan, [{ first: 0, nonce: 'aaaa0000' }, { first: 1, nonce: 'dddd0000' }], ''), mine.chunks);
    expect(won).toBeDefined();
    expect(lost).toBeUndefined();
    // The loser wrote its chunk too, under its own name: what anyone reads is the winner's.
    const names = (batch: MiniBatch) => batch.items.map((i) => i.name);
    const elsewhere = new JobWorkArea({ config });
    for (const reader of [area, elsewhere]) {
      expect(names(await reader.miniBatch(job, 1, 0))).toEqual(['a', 'b']);
      expect(names(await reader.miniBatch(job, 1, 1))).toEqual(['c2', 'd2']);
      expect((await reader.plan(job)).map(names)).toEqual([
        ['a', 'b'],
        ['c2', 'd2'],
      ]);
    }
  });

  it('reads a chunk planned after a reader first looked (the index is read again)', async () => {
    const area = new JobWorkArea({ config });
    const job = uniqueName('job');
    const first = planPage({ miniBatches: 0, chunks: 0, items: 0, pending: [] }, items(['a']), { miniBatchSize: 1, chunkSize: 1, last: false });
    const etag = await area.advancePlan(job, undefined, index(first.plan, [{ first: 0, nonce: 'aaaa0000' }], 'm1'), first.chunks);
    const reader = new JobWorkArea({ config });
    expect((await reader.miniBatch(job, 1, 0)).items.map((i) => i.name)).toEqual(['a']);
    const next = planPage(first.plan, items(['b']), { miniBatchSize: 1, chunkSize: 1, last: true });
    await area.advancePlan(job, { etag: etag ?? '' }, index(next.plan, [{ first: 0, nonce: 'aaaa0000' }, { first: 1, nonce: 'bbbb0000' }], ''), next.chunks);
    expect((await reader.miniBatch(job, 1, 1)).items.map((i) => i.name)).toEqual(['b']);
  });
});
