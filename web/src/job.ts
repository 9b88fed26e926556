/**
 * A job's page: status, progress and counts follow the job live (GET /api/jobs/{id} every
 * POLL_MS until it ends); throughput is sampled from those counts while the page watches, and
 * comes from the mini-batch report once the job has ended, with the timeline, the failure
 * breakdown and the log tail (GET …/mini-batches, …/failures, …/log).
 */
import { download, getJson } from './api.js';
import { type Sample, samplesOfReport, throughputChart, timelineChart } from './charts.js';
import { errorBox, fill, h, seconds, statusBadge, when } from './dom.js';
import { type Failures, type Job, type LogTail, type MiniBatch, type Report, type Step, TERMINAL } from './types.js';

const POLL_MS = 1000;
const LOG_LINES = 200;

export function jobPage(main: HTMLElement, id: string): () => void {
  let stopped = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const samples: Sample[] = [];
  const path = `jobs/${encodeURIComponent(id)}`;
  delete main.dataset['reports'];

  const title = h('h1', { class: 'mono' }, id);
  const status = h('div', { id: 'job-status', class: 'status-line', role: 'status', 'aria-live': 'polite' });
  const progress = h('div', { id: 'job-progress', class: 'progress', role: 'progressbar', 'aria-valuemin': 0, 'aria-valuemax': 100, 'aria-valuenow': 0, 'aria-label': 'Items done' }, h('div', { class: 'bar ok' }), h('div', { class: 'bar failed' }));
  const counts = h('dl', { id: 'job-counts', class: 'counts' });
  const facts = h('dl', { class: 'facts' });
  const throughput = h('div', { id: 'throughput-chart', class: 'chart' });
  const timeline = h('div', { id: 'timeline-chart', class: 'chart' });
  const timelineTable = h('details', { id: 'timeline-table', hidden: true });
  const failures = h('div', { id: 'failures' });
  const steps = h('section', { id: 'steps', class: 'card', hidden: true, 'aria-labelledby': 'steps-h' });
  const outputs = h('ul', { id: 'outputs', class: 'outputs' });
  const outputsNote = h('p', { class: 'muted small' }, 'The outputs are complete once the job has ended.');
  const log = h('pre', { id: 'job-log', class: 'log', tabindex: 0, 'aria-label': 'Job log, last lines' });
  const problem = h('div', {});

  fill(
    main,
    h('p', {}, h('a', { href: '#/jobs' }, '← Jobs')),
    title,
    status,
    progress,
    problem,
    h('div', { class: 'grid' }, h('section', { class: 'card', 'aria-labelledby': 'counts-h' }, h('h2', { id: 'counts-h' }, 'Counts'), counts), h('section', { class: 'card', 'aria-labelledby': 'facts-h' }, h('h2', { id: 'facts-h' }, 'Job'), facts)),
    steps,
    h('section', { class: 'card', 'aria-labelledby': 'tp-h' }, h('h2', { id: 'tp-h' }, 'Throughput over time'), throughput),
    h('section', { class: 'card', 'aria-labelledby': 'tl-h' }, h('h2', { id: 'tl-h' }, 'Mini-batch timeline'), timeline, timelineTable),
    h('section', { class: 'card', 'aria-labelledby': 'fail-h' }, h('h2', { id: 'fail-h' }, 'Failure reasons'), failures),
    h('section', { class: 'card', 'aria-labelledby': 'out-h' }, h('h2', { id: 'out-h' }, 'Outputs'), outputsNote, outputs),
    h('section', { class: 'card', 'aria-labelledby': 'log-h' }, h('h2', { id: 'log-h' }, 'Log (last lines)'), log),
  );
  fill(timeline, h('p', { class: 'muted' }, 'The timeline is drawn from the mini-batch report, written when the job finalizes.'));
  fill(failures, h('p', { class: 'muted' }, 'Failure reasons come from errors.jsonl, written when the job finalizes.'));
  fill(log, 'The log is written when the job finalizes.');

  const poll = async (): Promise<void> => {
    if (stopped) return;
    let job: Job;
    try {
      job = await getJson<Job>(path);
      fill(problem);
    } catch (err) {
      fill(problem, errorBox(err));
      timer = setTimeout(() => void poll(), POLL_MS * 3);
      return;
    }
    if (stopped) return;
    showJob(job);
    const ended = TERMINAL.includes(job.status);
    if (!ended) {
      // No item was done when the job started: a page opened mid-job still plots from the start.
      if (samples.length === 0 && job.started_at) samples.push({ t: Date.parse(job.started_at) / 1000, done: 0 });
      samples.push({ t: Date.now() / 1000, done: job.counts.items.succeeded + job.counts.items.failed });
      throughputChart(throughput, samples);
      timer = setTimeout(() => void poll(), POLL_MS);
      return;
    }
    await showReports(job);
  };

  const showJob = (job: Job): void => {
    title.textContent = job.display_name ?? job.id;
    document.title = `${job.status} · ${job.display_name ?? job.id} · batch-endpoints`;
    outputsNote.hidden = TERMINAL.includes(job.status);
    const items = job.counts.items;
    const done = items.succeeded + items.failed;
    const pct = items.total > 0 ? (100 * done) / items.total : job.status === 'Completed' ? 100 : 0;
    fill(status, statusBadge(job.status), ` ${Math.round(pct)}% · ${done} of ${items.total || '?'} items`, job.error ? h('span', { class: 'error-text' }, ` · ${job.error.code}: ${job.error.message}`) : null);
    status.dataset['status'] = job.status;
    progress.setAttribute('aria-valuenow', String(Math.round(pct)));
    progress.setAttribute('aria-valuetext', `${Math.round(pct)}% (${items.succeeded} succeeded, ${items.failed} failed)`);
    const [ok, failed] = [...progress.children] as HTMLElement[];
    if (ok && failed && items.total > 0) {
      ok.style.width = `${(100 * items.succeeded) / items.total}%`;
      failed.style.width = `${(100 * items.failed) / items.total}%`;
    } else if (ok) ok.style.width = `${pct}%`;
    const mb = job.counts.mini_batches;
    fill(
      counts,
      ...pair('Mini-batches', `${mb.succeeded + mb.failed} / ${mb.total}`),
      ...pair('Mini-batches failed', mb.failed),
      ...pair('Retries', mb.retried ?? 0),
      ...pair('Items succeeded', items.succeeded),
      ...pair('Items failed', items.failed),
      ...pair('Items total', items.total),
    );
    counts.dataset['itemsFailed'] = String(items.failed);
    counts.dataset['miniBatches'] = String(mb.total);
    fill(
      facts,
      ...pair('Endpoint', job.endpoint ? h('a', { href: `#/jobs?endpoint=${encodeURIComponent(job.endpoint)}` }, job.endpoint) : '—'),
      ...pair('Deployment', job.deployment ?? '—'),
      ...pair(job.type === 'model' ? 'Model' : 'Type', job.model ?? job.type),
      ...pair('Created', when(job.created_at)),
      ...pair('Started', when(job.started_at)),
      ...pair('Completed', when(job.completed_at)),
    );
    if (job.type === 'pipeline' && job.steps) showSteps(job.steps);
    showOutputs(job);
  };

  const showSteps = (list: Step[]): void => {
    steps.hidden = false;
    fill(
      steps,
      h('h2', { id: 'steps-h' }, 'Steps'),
      h(
        'div',
        { class: 'scroll' },
        h(
          'table',
          {},
          h('thead', {}, h('tr', {}, ...['Step', 'Type', 'Status', 'Items', 'Started', 'Log'].map((c) => h('th', { scope: 'col' }, c)))),
          h(
            'tbody',
            {},
            ...list.map((s) => {
              const c = s.counts?.items;
              return h(
                'tr',
                {},
                h('th', { scope: 'row' }, s.name),
                h('td', {}, s.type),
                h('td', {}, statusBadge(s.status), s.reused ? h('span', { class: 'muted' }, ' reused') : null, s.error ? h('div', { class: 'error-text small' }, s.error.message) : null),
                h('td', {}, c ? `${c.succeeded + c.failed} / ${c.total}${c.failed ? ` (${c.failed} failed)` : ''}` : '—'),
                h('td', {}, when(s.started_at)),
                h('td', {}, s.log ? downloadButton(s.log, `${s.name}.log`, 'log') : '—'),
              );
            }),
          ),
        ),
      ),
    );
  };

  const showOutputs = (job: Job): void => {
    const links = job.links.outputs;
    if (links) {
      fill(outputs, ...Object.entries(links).map(([name, url]) => h('li', {}, downloadButton(url, url.split('/').pop() ?? name, name), h('span', { class: 'muted small' }, ` ${name}`))));
    } else {
      fill(outputs, ...Object.entries(job.outputs).map(([name, o]) => h('li', {}, h('strong', {}, name), ' ', h('span', { class: 'mono small' }, o.path))));
    }
  };

  const showReports = async (job: Job): Promise<void> => {
    // A pipeline job's reports are its parallel steps'; the page shows the first one's.
    const step = job.type === 'pipeline' ? job.steps?.find((s) => s.type === 'parallel')?.name : undefined;
    const q = step ? `?step=${encodeURIComponent(step)}` : '';
    const [report, errors, tail] = await Promise.all([
      getJson<Report<MiniBatch>>(`${path}/mini-batches${q}`).catch(asError),
      getJson<Failures>(`${path}/failures${q}`).catch(asError),
      getJson<LogTail>(`${path}/log${q}${q ? '&' : '?'}tail=${LOG_LINES}`).catch(asError),
    ]);
    if (stopped) return;
    if (report instanceof Error) fill(timeline, errorBox(report));
    else if (!report.complete) fill(timeline, h('p', { class: 'muted' }, 'This job wrote no mini-batch report.'));
    else {
      timelineChart(timeline, report.value);
      showTimelineTable(report.value);
      const fromReport = samplesOfReport(report.value);
      throughputChart(throughput, fromReport.length > 1 ? fromReport : samples);
    }
    if (errors instanceof Error) fill(failures, errorBox(errors));
    else if (!errors.complete) fill(failures, h('p', { class: 'muted' }, 'This job wrote no errors.jsonl.'));
    else showFailures(errors);
    if (tail instanceof Error) fill(log, errorBox(tail));
    else if (!tail.complete) fill(log, 'This job wrote no log.');
    else fill(log, `${tail.truncated ? '…\n' : ''}${tail.lines.join('\n')}`);
    main.dataset['reports'] = 'shown';
  };

  const showTimelineTable = (batches: MiniBatch[]): void => {
    timelineTable.hidden = false;
    fill(
      timelineTable,
      h('summary', {}, `Mini-batches as a table (${batches.length})`),
      h(
        'div',
        { class: 'scroll' },
        h(
          'table',
          {},
          h('thead', {}, h('tr', {}, ...['Mini-batch', 'Status', 'Attempts', 'Items', 'Failed', 'Duration', 'Started'].map((c) => h('th', { scope: 'col' }, c)))),
          h(
            'tbody',
            {},
            ...batches.map((b) =>
              h(
                'tr',
                { class: b.status !== 'completed' || b.failed > 0 ? 'row-failed' : b.attempts > 1 ? 'row-retried' : undefined },
                h('th', { scope: 'row' }, b.mini_batch_id),
                h('td', {}, b.status, b.error ? h('div', { class: 'small error-text' }, b.error) : null),
                h('td', {}, b.attempts),
                h('td', {}, b.items),
                h('td', {}, b.failed),
                h('td', {}, seconds(b.seconds)),
                h('td', {}, when(b.started_at)),
              ),
            ),
          ),
        ),
      ),
    );
  };

  const showFailures = (f: Failures): void => {
    if (f.reasons.length === 0) {
      fill(failures, h('p', {}, 'No item failed.'));
      failures.dataset['items'] = '0';
      return;
    }
    const max = Math.max(...f.reasons.map((r) => r.count));
    fill(
      failures,
      h('p', {}, `${f.items} item(s) failed, for ${f.reasons.length} reason(s).`),
      h(
        'div',
        { class: 'scroll' },
        h(
          'table',
          { class: 'failures' },
          h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Reason'), h('th', { scope: 'col' }, 'Items'), h('th', { scope: 'col' }, 'Sample items'))),
          h(
            'tbody',
            {},
            ...f.reasons.map((r) =>
              h(
                'tr',
                { 'data-count': r.count },
                h('th', { scope: 'row', class: 'reason' }, r.reason),
                h('td', { class: 'count' }, h('span', { class: 'share', style: `width:${Math.max(4, (60 * r.count) / max)}px`, 'aria-hidden': 'true' }), ` ${r.count}`),
                h('td', {}, h('ul', { class: 'samples' }, ...r.samples.map((s) => h('li', { class: 'mono small' }, `${s.file ?? '(unnamed)'}${s.rows ? ` rows ${s.rows.start}–${s.rows.end - 1}` : ''} · mini-batch ${s.mini_batch}`)))),
              ),
            ),
          ),
        ),
      ),
    );
    failures.dataset['items'] = String(f.items);
  };

  void poll();
  return () => {
    stopped = true;
    if (timer) clearTimeout(timer);
  };
}

function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}

function pair(term: string, value: Node | string | number): HTMLElement[] {
  return [h('dt', {}, term), h('dd', {}, value)];
}

function downloadButton(url: string, file: string, label: string): HTMLElement {
  const button = h('button', { type: 'button', class: 'link' }, `Download ${label === file ? file : `${file}`}`);
  button.addEventListener('click', () => {
    button.setAttribute('aria-busy', 'true');
    download(url, file)
      .catch((err: unknown) => button.after(errorBox(err)))
      .finally(() => button.removeAttribute('aria-busy'));
  });
  return button;
}
