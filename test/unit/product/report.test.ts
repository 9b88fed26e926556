import { describe, expect, it } from 'vitest';
import { FAILURE_SAMPLES, REPORT_HEADER, errorLines, failureBreakdown, parseErrorLines, parseReport, reportRow } from '../../../shared/jobs/report.js';

describe('job report records', () => {
  it('reads back report rows as written, by column name, errors with commas, quotes and newlines included', () => {
    const rows = [
      { index: 0, attempt: 1, items: 10, succeeded: 10, failed: 0, seconds: 1.23456, status: 'completed', error: '', startedAt: '2026-11-29T10:00:00.000Z' },
      { index: 1, attempt: 3, items: 5, succeeded: 0, failed: 5, seconds: 30, status: 'timeout', error: 'run() failed: "x", then\nmore, and more', startedAt: '2026-11-29T10:00:01.000Z' },
    ];
    const text = REPORT_HEADER + rows.map(reportRow).join('');
    expect(parseReport(text)).toEqual(rows.map((r) => ({ ...r, seconds: Number(r.seconds.toFixed(3)) })));
  });

  it('reads rows written before started_at existed', () => {
    const old = 'mini_batch_id,attempts,items,succeeded,failed,seconds,status,error\n0,1,2,2,0,0.500,completed,\n';
    expect(parseReport(old)).toEqual([{ index: 0, attempt: 1, items: 2, succeeded: 2, failed: 0, seconds: 0.5, status: 'completed', error: '', startedAt: undefined }]);
    // A job that ran across the change: new header, an old row.
    expect(parseReport(`${REPORT_HEADER}0,1,2,2,0,0.500,completed,\n`)[0]?.startedAt).toBeUndefined();
  });

  it('reads back error lines as written and groups them by reason, most items first, a few samples each', () => {
    const text =
      errorLines(0, [
        { file: 'a.csv', reason: 'bad row', rows: { start: 0, end: 5 } },
        { file: 'b.csv', reason: 'no result' },
      ]) +
      errorLines(1, [
        { file: null, reason: 'bad row', count: 3 },
        ...Array.from({ length: 7 }, (_, i) => ({ file: `n${i}.txt`, reason: 'no result' })),
      ]);
    const records = parseErrorLines(text);
    expect(records[0]).toEqual({ mini_batch: 0, file: 'a.csv', rows: { start: 0, end: 5 }, reason: 'bad row' });
    expect(records[2]).toEqual({ mini_batch: 1, file: null, reason: 'bad row', count: 3 });
    const breakdown = failureBreakdown(records);
    expect(breakdown.items).toBe(12);
    expect(breakdown.reasons.map((r) => [r.reason, r.count])).toEqual([
      ['no result', 8],
      ['bad row', 4],
    ]);
    expect(breakdown.reasons[0]?.samples).toHaveLength(FAILURE_SAMPLES);
    expect(breakdown.reasons[1]?.samples).toEqual([
      { mini_batch: 0, file: 'a.csv', rows: { start: 0, end: 5 } },
      { mini_batch: 1, file: null },
    ]);
  });
});
