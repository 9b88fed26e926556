import { isDeepStrictEqual } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Api, type Json, deploy, ds, fixtureScript, startProductHost, upload, waitForJob } from '../support/batch.js';
import { type FnHostProcess } from '../support/fnhost.js';
import { uniqueName } from '../support/ports.js';

/** Issue 12's concurrency cases, on one real host over Azurite. */

let host: FnHostProcess;
let api: Api;

beforeAll(async () => {
  ({ host, api } = await startProductHost({
    // These tests invoke in bursts on purpose.
    BATCH_INVOKE_RATE_PER_MINUTE: '0',
    CONCURRENCY_STORE: 'UseDevelopmentStorage=true',
  }));
  await upload(host.storageConnection, { 'models/dummy/model.txt': 'a model file the custom scripts ignore' });
});

afterAll(async () => {
  await host?.stop();
});

async function lineCounter(endpoint: string, settings: Record<string, unknown> = {}): Promise<void> {
  const codeDir = `code/${endpoint}/`;
  await upload(host.storageConnection, { [`${codeDir}score.js`]: fixtureScript('count-lines.js') });
  await deploy(api, {
    endpoint,
    deployment: 'lines',
    model: { name: 'dummy', version: '1', type: 'custom_model', path: ds('models/dummy/') },
    deploymentBody: { code_configuration: { code: ds(codeDir), scoring_script: 'score.js' }, settings },
  });
}

async function outputText(jobId: string, file: string): Promise<string> {
  const res = await fetch(`${host.url}/api/jobs/${jobId}/outputs/${file}`, { headers: { 'x-functions-key': host.masterKey } });
  expect(res.status).toBe(200);
  return res.text();
}

/** predictions.csv of count-lines.js as sorted [file name, lines] pairs. */
function linesOf(csv: string): [string, string][] {
  return csv
    .trim()
    .split('\n')
    .map((l) => l.split(','))
    .map((r): [string, string] => [r[0]?.split('/').pop() ?? '', r[1] ?? ''])
    .sort((a, b) => a[0].localeCompare(b[0]));
}

/** Whether `got` holds every member of `sent` with the same value (what the API adds is ignored). */
function holds(got: Json, sent: Json): boolean {
  if (typeof sent !== 'object' || sent === null || Array.isArray(sent)) return isDeepStrictEqual(got, sent);
  return typeof got === 'object' && got !== null && Object.entries(sent as Record<string, unknown>).every(([k, v]) => holds((got as Record<string, unknown>)[k], v));
}

describe('concurrency on fnhost', () => {
  it('100 concurrent invokes with one Idempotency-Key make exactly one job, and every answer names it', async () => {
    const endpoint = uniqueName('idem');
    const prefix = `data/${endpoint}/`;
    await upload(host.storageConnection, { [`${prefix}a.txt`]: 'x\n', [`${prefix}b.txt`]: 'x\ny\n' });
    await lineCounter(endpoint);
    const key = `key-${endpoint}`;
    const body = { inputs: { text: { type: 'uri_folder', path: ds(prefix) } } };
    const answers = await Promise.all(Array.from({ length: 100 }, () => api.call('POST', `endpoints/${endpoint}/jobs`, body, { 'idempotency-key': key })));

    const statuses = answers.map((a) => a.status);
    expect(statuses.filter((s) => s !== 202), JSON.stringify(answers.find((a) => a.status !== 202)?.body)).toEqual([]);
    const ids = new Set(answers.map((a) => a.body.id as string));
    expect([...ids]).toHaveLength(1);
    const [id] = [...ids];
    // One answer made the job; the other 99 replayed it, and say so.
    expect(answers.filter((a) => a.headers.get('idempotent-replayed') === null)).toHaveLength(1);
    expect(answers.filter((a) => a.headers.get('idempotent-replayed') === 'true')).toHaveLength(99);
    for (const a of answers) expect(a.headers.get('location')).toContain(`/api/jobs/${id}/status`);

    const listed = await api.call('GET', `endpoints/${endpoint}/jobs`);
    expect(listed.body.value.map((j: Json) => j.id)).toEqual([id]);
    const job = await waitForJob(api, id ?? '');
    expect(job.status).toBe('Completed');
    expect(linesOf(await outputText(job.id, 'predictions.csv'))).toEqual([
      ['a.txt', '1'],
      ['b.txt', '2'],
    ]);
  });

  it('50 concurrent jobs on one host all complete with their own, correct outputs', async () => {
    const endpoint = uniqueName('fifty');
    await lineCounter(endpoint, { mini_batch_size: 10 });
    const JOBS = 50;
    const files: Record<string, string> = {};
    for (let j = 0; j < JOBS; j++) {
      // Job j: three files of j+1, j+2 and j+3 lines.
      for (let f = 0; f < 3; f++) files[`data/${endpoint}/job${j}/f${f}.txt`] = 'line\n'.repeat(j + f + 1);
    }
    await upload(host.storageConnection, files);
    const started = Date.now();
    const invoked = await Promise.all(
      Array.from({ length: JOBS }, (_, j) => api.call('POST', `endpoints/${endpoint}/jobs`, { inputs: { text: { type: 'uri_folder', path: ds(`data/${endpoint}/job${j}/`) } } })),
    );
    expect(invoked.filter((r) => r.status !== 202).map((r) => JSON.stringify(r.body))).toEqual([]);
    expect(new Set(invoked.map((r) => r.body.id)).size).toBe(JOBS);
    const jobs = await Promise.all(invoked.map((r) => waitForJob(api, r.body.id as string, 100_000)));
    const notCompleted = jobs.filter((j) => j.status !== 'Completed').map((j) => `${j.id}: ${j.status} ${JSON.stringify(j.error)}`);
    expect(notCompleted).toEqual([]);
    for (let j = 0; j < JOBS; j++) {
      const job = jobs[j];
      expect(job.counts.items).toEqual({ total: 3, succeeded: 3, failed: 0 });
      expect(linesOf(await outputText(job.id, 'predictions.csv'))).toEqual([
        ['f0.txt', String(j + 1)],
        ['f1.txt', String(j + 2)],
        ['f2.txt', String(j + 3)],
      ]);
    }
    console.log(`50 concurrent jobs completed in ${Date.now() - started} ms`);
  });

  it('concurrent PUTs of one resource end with exactly one of the bodies, never a mix', async () => {
    const N = 8;
    const name = uniqueName('race');
    await upload(host.storageConnection, { [`code/${name}/main.js`]: 'console.log("hi")\n' });
    await lineCounter(name);
    const variants = (make: (i: number) => Json): Json[] => Array.from({ length: N }, (_, i) => make(i));
    // Each body differs from the others in several members, so a mix of two is never one of them.
    const cases: { path: string; bodies: Json[]; created: number[] }[] = [
      {
        path: `datastores/${name}`,
        bodies: variants((i) => ({
          description: `store ${i}`,
          tags: { [`t${i}`]: String(i) },
          account_name: 'devstoreaccount1',
          container_name: `c${i}-${name}`.slice(0, 60),
          credentials: { type: 'connection_string', setting: 'CONCURRENCY_STORE' },
        })),
        created: [200, 201],
      },
      {
        path: `endpoints/${name}e`,
        bodies: variants((i) => ({ description: `endpoint ${i}`, tags: { [`t${i}`]: String(i), [`u${i}`]: 'x' } })),
        created: [200, 201],
      },
      {
        path: `endpoints/${name}/deployments/racer`,
        bodies: variants((i) => ({
          description: `deployment ${i}`,
          tags: { [`t${i}`]: String(i) },
          model: 'azureml:dummy:1',
          code_configuration: { code: ds(`code/${name}/`), scoring_script: 'score.js' },
          settings: { mini_batch_size: i + 1, error_threshold: i, environment_variables: { V: String(i) } },
        })),
        created: [200, 201],
      },
      {
        path: `components/${name}/versions/1`,
        bodies: variants((i) => ({
          type: 'command',
          description: `component ${i}`,
          tags: { [`t${i}`]: String(i) },
          code: ds(`code/${name}/`),
          entry_script: 'main.js',
          inputs: { data: { type: 'uri_folder' } },
          outputs: { [`out${i}`]: { type: 'uri_folder' } },
          environment_variables: { V: String(i) },
        })),
        // Versions are immutable: one PUT creates it, the others conflict.
        created: [201],
      },
    ];
    for (const c of cases) {
      const answers = await Promise.all(c.bodies.map((b) => api.call('PUT', c.path, b)));
      // Exactly one PUT created it; the others replaced it (200), or, for an immutable version, conflict.
      const expected = c.created.length === 1 ? [201, ...Array<number>(N - 1).fill(409)] : [201, ...Array<number>(N - 1).fill(200)];
      expect(answers.map((a) => a.status).sort(), `${c.path}: ${JSON.stringify(answers.filter((a) => a.status >= 300).map((a) => a.body))}`).toEqual(expected.sort());
      const final = await api.call('GET', c.path);
      expect(final.status).toBe(200);
      const matching = c.bodies.filter((b) => holds(final.body, b));
      expect(matching.length, `${c.path}: ${JSON.stringify(final.body)}`).toBe(1);
      // The final state is the body of a PUT that succeeded.
      const winner = c.bodies.indexOf(matching[0]);
      expect(answers[winner]?.status, c.path).toBeLessThan(300);
    }
  });
});
