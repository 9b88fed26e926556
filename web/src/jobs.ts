/** The job list, filtered by endpoint and status (GET /api/jobs), newest first, a page at a time. */
import { getJson } from './api.js';
import { errorBox, fill, h, statusBadge, when } from './dom.js';
import type { Endpoint, Job, Page } from './types.js';

const STATUSES = ['NotStarted', 'Preparing', 'Running', 'Finalizing', 'Completed', 'Failed', 'Canceling', 'Canceled'];

export async function jobsPage(main: HTMLElement, query: URLSearchParams): Promise<void> {
  const endpoint = query.get('endpoint') ?? '';
  const status = query.get('status') ?? '';
  const endpoints = await getJson<Page<Endpoint>>('endpoints').then((p) => p.value.map((e) => e.name)).catch(() => [] as string[]);
  const go = (): void => {
    const q = new URLSearchParams();
    if (endpointSelect.value) q.set('endpoint', endpointSelect.value);
    if (statusSelect.value) q.set('status', statusSelect.value);
    const text = q.toString();
    location.hash = `#/jobs${text ? `?${text}` : ''}`;
  };
  const endpointSelect = h('select', { id: 'filter-endpoint', onchange: go }, h('option', { value: '' }, 'all endpoints'), ...endpoints.map((e) => h('option', { value: e, selected: e === endpoint }, e)));
  const statusSelect = h('select', { id: 'filter-status', onchange: go }, h('option', { value: '' }, 'any status'), ...STATUSES.map((s) => h('option', { value: s, selected: s === status }, s)));
  const body = h('tbody', {});
  const more = h('div', { class: 'more' });
  fill(
    main,
    h('h1', {}, 'Jobs'),
    h('form', { class: 'filters', onsubmit: (e: Event) => e.preventDefault() }, h('label', { for: 'filter-endpoint' }, 'Endpoint'), endpointSelect, h('label', { for: 'filter-status' }, 'Status'), statusSelect),
    h(
      'div',
      { class: 'scroll' },
      h(
        'table',
        { id: 'jobs' },
        h('caption', { class: 'visually-hidden' }, 'Jobs, newest first'),
        h('thead', {}, h('tr', {}, ...['Job', 'Endpoint', 'Status', 'Progress', 'Created'].map((c) => h('th', { scope: 'col' }, c)))),
        body,
      ),
    ),
    more,
  );
  const q = new URLSearchParams({ top: '25' });
  if (endpoint) q.set('endpoint', endpoint);
  if (status) q.set('status', status);
  await loadPage(`jobs?${q.toString()}`, body, more);
}

async function loadPage(path: string, body: HTMLElement, more: HTMLElement): Promise<void> {
  try {
    const page = await getJson<Page<Job>>(path);
    for (const job of page.value) body.append(jobRow(job));
    if (body.children.length === 0 && !page.next_link) body.append(h('tr', {}, h('td', { colspan: 5, class: 'muted' }, 'No jobs.')));
    const next = page.next_link;
    fill(more, next ? h('button', { type: 'button', onclick: () => void loadPage(next, body, more) }, 'More jobs') : null);
  } catch (err) {
    fill(more, errorBox(err));
  }
}

function jobRow(job: Job): HTMLElement {
  const items = job.counts.items;
  const pct = items.total > 0 ? Math.round((100 * (items.succeeded + items.failed)) / items.total) : 0;
  return h(
    'tr',
    {},
    h('th', { scope: 'row' }, h('a', { href: `#/jobs/${job.id}`, class: 'mono' }, job.display_name ?? job.id)),
    h('td', {}, job.endpoint ?? '—', job.deployment ? h('span', { class: 'muted' }, ` / ${job.deployment}`) : null),
    h('td', {}, statusBadge(job.status)),
    h('td', {}, h('progress', { max: 100, value: pct, 'aria-label': `${pct}% of items done` }), ` ${pct}%`),
    h('td', {}, when(job.created_at)),
  );
}
