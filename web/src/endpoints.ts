/** Endpoints with their deployments, the default marked. */
import { getJson } from './api.js';
import { errorBox, fill, h } from './dom.js';
import type { Deployment, Endpoint, Page } from './types.js';

export async function endpointsPage(main: HTMLElement): Promise<void> {
  fill(main, h('h1', {}, 'Endpoints'), h('p', { class: 'muted' }, 'Loading…'));
  try {
    const endpoints = (await getJson<Page<Endpoint>>('endpoints')).value;
    const deployments = await Promise.all(endpoints.map((e) => getJson<Page<Deployment>>(`endpoints/${encodeURIComponent(e.name)}/deployments`).then((p) => p.value)));
    const cards = endpoints.map((e, i) =>
      h(
        'section',
        { class: 'card', 'aria-labelledby': `ep-${e.name}` },
        h('h2', { id: `ep-${e.name}` }, e.name, ' ', h('a', { href: `#/jobs?endpoint=${encodeURIComponent(e.name)}`, class: 'small' }, 'jobs →')),
        e.description ? h('p', { class: 'muted' }, e.description) : null,
        h('p', { class: 'small mono' }, e.scoring_uri),
        deploymentTable(deployments[i] ?? []),
      ),
    );
    fill(main, h('h1', {}, 'Endpoints'), ...(cards.length ? cards : [h('p', {}, 'No endpoints yet.')]));
  } catch (err) {
    fill(main, h('h1', {}, 'Endpoints'), errorBox(err));
  }
}

function deploymentTable(deployments: Deployment[]): HTMLElement {
  if (deployments.length === 0) return h('p', { class: 'muted' }, 'No deployments.');
  return h(
    'div',
    { class: 'scroll' },
    h(
      'table',
      {},
      h('caption', { class: 'visually-hidden' }, 'Deployments'),
      h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Deployment'), h('th', { scope: 'col' }, 'Type'), h('th', { scope: 'col' }, 'Runs'))),
      h(
        'tbody',
        {},
        ...deployments.map((d) =>
          h(
            'tr',
            { class: d.is_default ? 'default' : undefined },
            h('th', { scope: 'row' }, d.name, d.is_default ? h('span', { class: 'badge default-badge', title: 'Invocations without azureml-model-deployment go here' }, 'default') : null),
            h('td', {}, d.type),
            h('td', { class: 'mono' }, d.type === 'model' ? (d.model ?? '') : typeof d.component === 'string' ? d.component : 'inline pipeline'),
          ),
        ),
      ),
    ),
  );
}
