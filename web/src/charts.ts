/**
 * The job page's charts, drawn by uPlot (canvas). Each chart also sets `data-marks` on its
 * container (the points it drew), and the page shows the same data as a table for screen readers
 * and keyboard users.
 */
import uPlot from 'uplot';
import type { MiniBatch } from './types.js';

const COLORS = { ok: '#2f6fb3', retried: '#d98c00', failed: '#c62828', line: '#2f6fb3', rate: '#2e7d32' };

/** A chart that follows its container's width. */
function mount(el: HTMLElement, options: Omit<uPlot.Options, 'width' | 'height'>, data: uPlot.AlignedData, height = 220): uPlot {
  el.replaceChildren();
  const width = Math.max(280, el.clientWidth);
  const chart = new uPlot({ ...options, width, height }, data, el);
  const observer = new ResizeObserver(() => {
    if (!el.isConnected) {
      observer.disconnect();
      chart.destroy();
      return;
    }
    const w = Math.max(280, el.clientWidth);
    if (w !== chart.width) chart.setSize({ width: w, height });
  });
  observer.observe(el);
  return chart;
}

/** The series of the timeline: one bar per mini-batch in exactly one of three series. */
export function timelineSeries(batches: readonly MiniBatch[]): { x: number[]; ok: (number | null)[]; retried: (number | null)[]; failed: (number | null)[] } {
  const sorted = [...batches].sort((a, b) => a.mini_batch_id - b.mini_batch_id);
  const kind = (b: MiniBatch): 'ok' | 'retried' | 'failed' => (b.status !== 'completed' || b.failed > 0 ? 'failed' : b.attempts > 1 ? 'retried' : 'ok');
  return {
    x: sorted.map((b) => b.mini_batch_id),
    ok: sorted.map((b) => (kind(b) === 'ok' ? b.seconds : null)),
    retried: sorted.map((b) => (kind(b) === 'retried' ? b.seconds : null)),
    failed: sorted.map((b) => (kind(b) === 'failed' ? b.seconds : null)),
  };
}

/** Duration of each mini-batch (its final attempt) as a bar; retried ones amber, ones with failures red. */
export function timelineChart(el: HTMLElement, batches: readonly MiniBatch[]): void {
  const s = timelineSeries(batches);
  const bars = uPlot.paths.bars?.({ size: [0.8, 40], align: 0 });
  const series = (label: string, color: string): uPlot.Series => ({ label, fill: color, stroke: color, width: 0, paths: bars, points: { show: false } });
  mount(
    el,
    {
      title: 'Mini-batch durations',
      scales: { x: { time: false, range: (_u, min, max) => [min - 0.6, max + 0.6] }, y: { range: (_u, _min, max) => [0, Math.max(max, 0.001) * 1.1] } },
      // Mini-batch ids are whole numbers: ticks only at whole steps.
      axes: [{ label: 'mini-batch', incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000] }, { label: 'seconds' }],
      series: [{ label: 'mini-batch' }, series('first try', COLORS.ok), series('retried', COLORS.retried), series('with failures', COLORS.failed)],
      legend: { live: true },
    },
    [s.x, s.ok, s.retried, s.failed],
  );
  el.dataset['marks'] = String(s.ok.filter((v) => v !== null).length + s.retried.filter((v) => v !== null).length + s.failed.filter((v) => v !== null).length);
}

/** Items done by a time (epoch seconds). */
export interface Sample {
  t: number;
  done: number;
}

/** Samples from the report: each mini-batch's items are done when its final attempt ended. */
export function samplesOfReport(batches: readonly MiniBatch[]): Sample[] {
  const timed = batches.filter((b) => b.started_at !== null).map((b) => ({ start: Date.parse(b.started_at as string) / 1000, end: Date.parse(b.started_at as string) / 1000 + b.seconds, items: b.items }));
  if (timed.length === 0) return [];
  const events = timed.sort((a, b) => a.end - b.end);
  const samples: Sample[] = [{ t: Math.min(...timed.map((e) => e.start)), done: 0 }];
  let done = 0;
  for (const e of events) {
    done += e.items;
    samples.push({ t: e.end, done });
  }
  return samples;
}

/** Items per second in up to `bins` equal intervals, with the items done by the end of each. */
export function throughputSeries(samples: readonly Sample[], bins = 30): { t: number[]; done: number[]; rate: number[] } {
  const first = samples[0];
  const last = samples[samples.length - 1];
  if (!first || !last || last.t <= first.t) return { t: [], done: [], rate: [] };
  const n = Math.max(1, Math.min(bins, samples.length - 1));
  const width = (last.t - first.t) / n;
  const doneAt = (t: number): number => {
    // Items done by t, linear between samples.
    let prev = first;
    for (const s of samples) {
      if (s.t >= t) return s.t === prev.t ? s.done : prev.done + ((s.done - prev.done) * (t - prev.t)) / (s.t - prev.t);
      prev = s;
    }
    return last.done;
  };
  const out = { t: [first.t], done: [first.done], rate: [0] };
  for (let i = 1; i <= n; i++) {
    const t = first.t + i * width;
    const done = doneAt(t);
    out.rate.push((done - (out.done[out.done.length - 1] ?? 0)) / width);
    out.t.push(t);
    out.done.push(done);
  }
  return out;
}

/** Items done (line) and items per second (bars) over time. */
export function throughputChart(el: HTMLElement, samples: readonly Sample[]): void {
  const s = throughputSeries(samples);
  if (s.t.length === 0) {
    el.replaceChildren();
    el.dataset['marks'] = '0';
    el.textContent = 'Not enough progress yet to plot.';
    return;
  }
  mount(
    el,
    {
      title: 'Throughput',
      scales: { x: { time: true }, items: { range: (_u, _min, max) => [0, Math.max(max, 1)] }, rate: { range: (_u, _min, max) => [0, Math.max(max, 0.001) * 1.15] } },
      axes: [{}, { scale: 'items', label: 'items done' }, { scale: 'rate', side: 1, label: 'items/s', grid: { show: false } }],
      series: [
        {},
        { label: 'items done', scale: 'items', stroke: COLORS.line, width: 2 },
        { label: 'items/s', scale: 'rate', stroke: COLORS.rate, fill: 'rgba(46,125,50,0.15)', width: 1, paths: uPlot.paths.stepped?.({ align: -1 }) },
      ],
    },
    [s.t, s.done, s.rate],
  );
  el.dataset['marks'] = String(s.t.length);
}
