/**
 * Listing jobs over HTTP on fnhost: `GET /api/jobs` across endpoints and the per-endpoint list,
 * newest first, filtered by endpoint, status and invoker, paged with next_link; bad filters are
 * problem+json naming the parameter.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Api, type Json, customDeployment, expectProblem, invoke, startProductHost, textFiles, waitForJob } from '../support/batch.js';
import { type FnHostProcess } from '../support/fnhost.js';
import { uniqueName } from '../support/ports.js';

let host: FnHostProcess;
let api: Api;
const A = uniqueName('lista');
const B = uniqueName('listb');
/** Jobs in the order they were invoked: A completed, B failed, A completed. */
const jobs: Json[] = [];

beforeAll(async () => {
  ({ host, api } = await startProductHost());
  const good = await textFiles(host, `data/${A}/`, ['one.txt', 'two.txt']);
  const bad = await textFiles(host, `data/${B}/`, ['boom.txt']);
  await customDeployment(host, api, { endpoint: A, deployment: 'lines', script: 'count-lines.js' });
  await customDeployment(host, api, { endpoint: B, deployment: 'lines', script: 'count-lines.js', settings: { error_threshold: 0, retry_settings: { max_retries: 0 } } });
  for (const [endpoint, input] of [[A, good], [B, bad], [A, good]] as const) {
    const job = await invoke(api, endpoint, { inputs: { text: { type: 'uri_folder', path: input } } });
    jobs.push(await waitForJob(api, job.id as string));
  }
}, 180_000);

afterAll(async () => {
  await host?.stop();
});

const ids = (body: Json): string[] => (body.value as Json[]).map((j) => j.id as string);

/** Follows next_link from `first` to the end; returns the ids of every page. */
async function allPages(first: string): Promise<string[][]> {
  const pages: string[][] = [];
  let path: string | null = first;
  while (path !== null) {
    const res = await api.call('GET', path);
    expect(res.status).toBe(200);
    pages.push(ids(res.body));
    const next: string | null = res.body.next_link;
    path = next === null ? null : next.substring(`${host.url}/api/`.length);
  }
  return pages;
}

describe('job lists', () => {
  it('lists jobs of all endpoints newest first, filtered by endpoint and status', async () => {
    expect(jobs.map((j) => j.status)).toEqual(['Completed', 'Failed', 'Completed']);
    const [a1, b1, a2] = jobs.map((j) => j.id as string);

    const all = await api.call('GET', 'jobs?top=100');
    expect(all.status).toBe(200);
    expect(ids(all.body).filter((id) => [a1, b1, a2].includes(id))).toEqual([a2, b1, a1]);
    expect(all.body.value[0]).toMatchObject({ id: a2, endpoint: A, status: 'Completed' });

    expect(ids((await api.call('GET', `jobs?endpoint=${A}`)).body)).toEqual([a2, a1]);
    expect(ids((await api.call('GET', `jobs?endpoint=${B}&status=failed`)).body)).toEqual([b1]);
    expect(ids((await api.call('GET', `jobs?endpoint=${A}&status=Failed`)).body)).toEqual([]);
    expect(ids((await api.call('GET', 'jobs?status=Failed,Canceled&top=100')).body)).toContain(b1);
    expect(ids((await api.call('GET', 'jobs?status=Failed,Canceled&top=100')).body)).not.toContain(a1);
    expect(ids((await api.call('GET', `endpoints/${A}/jobs?status=Completed`)).body)).toEqual([a2, a1]);
    expect(ids((await api.call('GET', `endpoints/${B}/jobs?status=Completed,Running`)).body)).toEqual([]);
  });

  it('pages with next_link, keeping the filters, and every job appears once', async () => {
    const [a1, b1, a2] = jobs.map((j) => j.id as string);
    const pages = await allPages('jobs?top=1');
    expect(pages.every((p) => p.length <= 1)).toBe(true);
    expect(pages.flat().filter((id) => [a1, b1, a2].includes(id))).toEqual([a2, b1, a1]);
    expect(new Set(pages.flat()).size).toBe(pages.flat().length);

    const first = await api.call('GET', `jobs?endpoint=${A}&status=Completed&top=1`);
    expect(ids(first.body)).toEqual([a2]);
    const next = new URL(first.body.next_link as string);
    expect(Object.fromEntries(next.searchParams)).toMatchObject({ endpoint: A, status: 'Completed', top: '1' });
    expect((await allPages(`jobs?endpoint=${A}&status=Completed&top=1`)).flat()).toEqual([a2, a1]);
    expect((await allPages(`endpoints/${A}/jobs?status=Completed&top=1`)).flat()).toEqual([a2, a1]);
  });

  it('refuses bad filters with problem+json naming the parameter', async () => {
    const cases: [string, string, number][] = [
      ['jobs?status=Sleeping', 'status', 400],
      ['jobs?status=', 'status', 400],
      [`endpoints/${A}/jobs?status=Done`, 'status', 400],
      ['jobs?endpoint=x', 'endpoint', 400],
      ['jobs?top=0', 'top', 400],
      ['jobs?top=101', 'top', 400],
      ['jobs?invoked_by=nobody%27', 'invoked_by', 400],
      ['jobs?continuation=bm90IGEgdG9rZW4', 'continuation', 400],
      ['jobs?endpoint=no-such-endpoint', 'endpoint', 404],
    ];
    for (const [path, field, status] of cases) await expectProblem(api, 'GET', path, undefined, status, status === 400 ? field : undefined);
    // A token of one listing is not a token of another.
    const page = await api.call('GET', `jobs?endpoint=${A}&top=1`);
    const token = new URL(page.body.next_link as string).searchParams.get('continuation') ?? '';
    await expectProblem(api, 'GET', `endpoints/${B}/jobs?continuation=${encodeURIComponent(token)}`, undefined, 400, 'continuation');
  });

  it("reads a job's report files back: mini-batches, failure reasons and the log's tail", async () => {
    const [a1, b1] = jobs.map((j) => j.id as string);
    const batches = await api.call('GET', `jobs/${a1}/mini-batches`);
    expect(batches.status).toBe(200);
    expect(batches.body).toMatchObject({ status: 'Completed', complete: true });
    expect(batches.body.value).toEqual([expect.objectContaining({ mini_batch_id: 0, attempts: 1, items: 2, succeeded: 2, failed: 0, status: 'completed', error: null })]);
    expect(Date.parse(batches.body.value[0].started_at as string)).toBeGreaterThanOrEqual(Date.parse(jobs[0].created_at as string));
    // The step of a model deployment's job is the job.
    expect((await api.call('GET', `jobs/${a1}/mini-batches?step=batchscoring`)).body.value).toEqual(batches.body.value);

    const failures = await api.call('GET', `jobs/${b1}/failures`);
    expect(failures.body).toMatchObject({ status: 'Failed', complete: true, items: 1 });
    expect(failures.body.reasons).toEqual([{ reason: expect.stringContaining('cannot score boom.txt'), count: 1, samples: [{ mini_batch: 0, file: 'boom.txt' }] }]);
    expect((await api.call('GET', `jobs/${a1}/failures`)).body).toMatchObject({ complete: true, items: 0, reasons: [] });

    const tail = await api.call('GET', `jobs/${a1}/log?tail=1`);
    expect(tail.body.lines).toHaveLength(1);
    expect(tail.body.lines[0]).toContain(`job ${a1}`);
    expect(tail.body.truncated).toBe(true);
    const whole = (await api.call('GET', `jobs/${a1}/log?tail=1000`)).body;
    expect(whole.truncated).toBe(false);
    const file = await fetch(`${host.url}/api/jobs/${a1}/outputs/logs/job.log`, { headers: { 'x-functions-key': host.masterKey } });
    expect(whole.lines.join('\n')).toBe((await file.text()).trimEnd());

    for (const [path, status, field] of [
      [`jobs/${a1}/log?tail=0`, 400, 'tail'],
      [`jobs/${a1}/failures?step=no%20such`, 400, 'step'],
      [`jobs/${a1}/mini-batches?step=other`, 404, 'step'],
      ['jobs/bj-nothing-here/failures', 404, 'id'],
    ] as const) {
      await expectProblem(api, 'GET', path, undefined, status, field);
    }
  });

  it('answers complete: false while a job has not written its reports', async () => {
    const input = await textFiles(host, `data/${A}-slow/`, ['s1.txt', 's2.txt']);
    const slow = uniqueName('slow');
    await customDeployment(host, api, { endpoint: slow, deployment: 'lines', script: 'slow-lines.js', settings: { mini_batch_size: 1, environment_variables: { SLOW_MS: '3000' } } });
    const job = await invoke(api, slow, { inputs: { text: { type: 'uri_folder', path: input } } });
    const running = await api.call('GET', `jobs/${job.id as string}/mini-batches`);
    expect(running.body).toMatchObject({ complete: false, value: [] });
    expect(['NotStarted', 'Queued', 'Preparing', 'Running']).toContain(running.body.status);
    expect((await api.call('GET', `jobs/${job.id as string}/log`)).body).toMatchObject({ complete: false, lines: [] });
    await waitForJob(api, job.id as string);
    expect((await api.call('GET', `jobs/${job.id as string}/mini-batches`)).body.value).toHaveLength(2);
  }, 120_000);
});

