import { describe, expect, it } from 'vitest';
import { type JournalEntry, readJournalLines } from '../../../shared/jobs/journal.js';
import { composeRerun, emptyRerunPlan, extendRerunPlan, failedItemsOf, itemsToScore, planRerun } from '../../../shared/jobs/rerun.js';
import type { MiniBatch } from '../../../shared/planning/plan.js';

const item = (name: string, rows?: { start: number; end: number }): MiniBatch['items'][number] => ({ name, blob: `in/${name}`, size: 10, ...(rows ? { rows } : {}) });

function entry(i: number, fields: Partial<JournalEntry>): JournalEntry & { g: 1 } {
  return { i, a: 1, n: 'abcdef01', status: 'completed', items: 2, succeeded: 2, failed: 0, report: '', errors: '', log: '', g: 1, ...fields };
}

const error = (file: string | null, rows?: { start: number; end: number }): string => `${JSON.stringify({ mini_batch: 0, file, ...(rows ? { rows } : {}), reason: 'x' })}\n`;

describe('planning a rerun from the parent journal', () => {
  const batches: MiniBatch[] = [
    { index: 0, items: [item('a'), item('b')] },
    { index: 1, items: [item('c'), item('d')] },
    { index: 2, items: [item('e', { start: 0, end: 5 }), item('e', { start: 5, end: 9 })] },
    { index: 3, items: [item('f'), item('g')] },
    { index: 4, items: [item('h')] },
  ];
  const lines = [
    entry(0, { part: { id: 'p0', bytes: 30 } }),
    // c failed, d succeeded with 12 bytes; the record names c and each item's bytes.
    entry(1, { part: { id: 'p1', bytes: 12 }, succeeded: 1, failed: 1, errors: error('c'), item_bytes: [0, 12] }),
    // The second range of e failed; a rerun's record: several parts.
    entry(2, { parts: [{ id: 'p2a', bytes: 7 }, { id: 'p2b', bytes: 0 + 1 }], succeeded: 1, failed: 1, errors: error('e', { start: 5, end: 9 }), item_bytes: [8, 0] }),
    // A shortfall that names no file: the whole mini-batch again.
    entry(3, { part: { id: 'p3', bytes: 5 }, succeeded: 1, failed: 1, errors: error(null), item_bytes: [5, 0] }),
    // Mini-batch 4 never ran.
  ];
  const plan = planRerun(batches, readJournalLines(lines, [0, 1, 2, 3, 4]), 10);

  it('reuses whole mini-batches, single items by their recorded bytes, and scores the rest', () => {
    expect(plan.batches.map((b) => b.reuse)).toEqual([
      { rows: { start: 10, end: 40 } },
      { items: [null, { start: 40, end: 52 }] },
      { items: [{ start: 52, end: 60 }, null] },
      undefined,
      undefined,
    ]);
    expect(plan.expectedBytes).toBe(10 + 30 + 12 + 8 + 5);
    expect(plan.reused).toEqual({ mini_batches: 1, items: 4 });
    expect(plan.scored).toEqual({ mini_batches: 4, items: 5 });
    expect(plan.batches.map((b) => itemsToScore(b))).toEqual([[], [0], [1], [0, 1], [0]]);
  });

  it('plans the same segment by segment (each segment\'s journal read on its own, in order) as from one journal', () => {
    // Segments of 2 mini-batches: [0, 1], [2, 3], [4]; each journal holds only its own records.
    const bySegment = emptyRerunPlan(10);
    for (const members of [batches.slice(0, 2), batches.slice(2, 4), batches.slice(4)]) {
      const indexes = members.map((b) => b.index);
      extendRerunPlan(bySegment, members, readJournalLines(lines.filter((l) => indexes.includes(l.i)), indexes));
    }
    expect(bySegment).toEqual(plan);
  });

  it('names failed items by file and row range, and gives up on a line it cannot place', () => {
    expect(failedItemsOf(entry(2, { errors: error('e', { start: 5, end: 9 }) }), batches[2] as MiniBatch)).toEqual(new Set([1]));
    expect(failedItemsOf(entry(2, { errors: error('zzz') }), batches[2] as MiniBatch)).toBeUndefined();
    expect(failedItemsOf(entry(3, { errors: error(null) }), batches[3] as MiniBatch)).toBeUndefined();
  });

  it('places new rows between the copied ones, merging adjacent copies, and refuses what it cannot cut', () => {
    const batch: MiniBatch = { index: 0, items: [item('a'), item('b'), item('c'), item('d')], reuse: { items: [{ start: 0, end: 4 }, { start: 4, end: 9 }, null, { start: 9, end: 9 }] } };
    const composed = composeRerun(batch, [2], Buffer.from('new\n'), undefined);
    expect(composed?.pieces).toEqual([{ copy: { start: 0, end: 9 } }, { data: Buffer.from('new\n') }]);
    expect(composed?.itemBytes).toEqual([4, 5, 4, 0]);
    const split: MiniBatch = { index: 0, items: [item('a'), item('b'), item('c')], reuse: { items: [null, { start: 3, end: 6 }, null] } };
    expect(composeRerun(split, [0, 2], Buffer.from('aa\ncc\n'), undefined)).toBeUndefined();
    expect(composeRerun(split, [0, 2], Buffer.from('aa\ncc\n'), [3, 4])).toBeUndefined();
    expect(composeRerun(split, [0, 2], Buffer.from('aa\ncc\n'), [3, 3])?.pieces).toEqual([{ data: Buffer.from('aa\n') }, { copy: { start: 3, end: 6 } }, { data: Buffer.from('cc\n') }]);
  });
});
