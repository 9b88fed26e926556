/**
 * Tester's probes of job-size caps on a folder listed page by page: a folder whose first listing
 * page already holds more files (or mini-batches) than BATCH_MAX_FILES_PER_JOB
 * (BATCH_MAX_MINI_BATCHES_PER_JOB) allows must not score more than the cap, as a folder of one
 * page scores nothing.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Api, customDeployment, ds, invoke, startProductHost, upload, waitForJob } from '../support/batch.js';
import { type FnHostProcess } from '../support/fnhost.js';
import { uniqueName } from '../support/ports.js';

let host: FnHostProcess;
let api: Api;
const MAX_FILES = 6;
const MAX_MINI_BATCHES = 4;

beforeAll(async () => {
  ({ host, api } = await startProductHost({
    BATCH_LIST_PAGE_SIZE: '10',
    BATCH_CHUNK_SIZE: '1',
    BATCH_MAX_FILES_PER_JOB: String(MAX_FILES),
    BATCH_MAX_MINI_BATCHES_PER_JOB: String(MAX_MINI_BATCHES),
  }));
});

afterAll(async () => {
  await host?.stop();
});

/** A folder of `count` files, then `subfolders` subfolders (listed after the files). */
async function folder(endpoint: string, count: number, subfolders = 0): Promise<string> {
  const prefix = `data/${endpoint}/in/`;
  await upload(host.storageConnection, {
    ...Object.fromEntries(Array.from({ length: count }, (_, i) => [`${prefix}f-${String(i).padStart(3, '0')}.txt`, `line ${i}\n`])),
    ...Object.fromEntries(Array.from({ length: subfolders }, (_, i) => [`${prefix}s-${i}/nested.txt`, 'nested\n'])),
  });
  return ds(prefix);
}

describe('job-size caps when the first page already passes them', () => {
  it('a folder of one page over BATCH_MAX_MINI_BATCHES_PER_JOB fails before anything is scored', async () => {
    const endpoint = uniqueName('cap-one');
    await customDeployment(host, api, { endpoint, deployment: 'dep', script: 'slow-lines.js', settings: { mini_batch_size: 1, environment_variables: { SLOW_MS: '50' } } });
    const job = await invoke(api, endpoint, { inputs: { x: { path: await folder(endpoint, 5) } } });
    const done = await waitForJob(api, job.id, 120_000);
    expect(done.status).toBe('Failed');
    expect(done.error).toMatchObject({ code: 'limit_exceeded' });
    expect(done.counts.items.succeeded).toBe(0);
  }, 180_000);

  it('a folder of several pages whose first page passes BATCH_MAX_MINI_BATCHES_PER_JOB scores no more than the cap', async () => {
    const endpoint = uniqueName('cap-mb');
    await customDeployment(host, api, { endpoint, deployment: 'dep', script: 'slow-lines.js', settings: { mini_batch_size: 1, max_concurrency_per_instance: 2, environment_variables: { SLOW_MS: '50' } } });
    // 6 files (the files cap) in mini-batches of 1, and subfolders after them: two listing pages.
    const job = await invoke(api, endpoint, { inputs: { x: { path: await folder(endpoint, MAX_FILES, 10) } } });
    const done = await waitForJob(api, job.id, 120_000);
    expect(done.status).toBe('Failed');
    expect(done.error).toMatchObject({ code: 'limit_exceeded' });
    expect(done.error.message).toMatch(/BATCH_MAX_MINI_BATCHES_PER_JOB/);
    // The first page alone passes the cap: the job fails before anything is scored, and a rerun has
    // no plan to go on from.
    expect(done.counts.mini_batches.succeeded, JSON.stringify(done.counts)).toBe(0);
    const rerun = await api.call('POST', `jobs/${job.id as string}/rerun`, {});
    expect(rerun.status, JSON.stringify(rerun.body)).toBe(409);
    expect(rerun.body.detail).toMatch(/never planned its work/);
  }, 180_000);

  it('a folder of several pages whose first page passes BATCH_MAX_FILES_PER_JOB scores no more than the cap', async () => {
    const endpoint = uniqueName('cap-files');
    await customDeployment(host, api, { endpoint, deployment: 'dep', script: 'slow-lines.js', settings: { mini_batch_size: 3, max_concurrency_per_instance: 2, environment_variables: { SLOW_MS: '50' } } });
    // 25 files in mini-batches of 3: 9 mini-batches, over the mini-batch cap too; files are checked first.
    const job = await invoke(api, endpoint, { inputs: { x: { path: await folder(endpoint, 25) } } });
    const done = await waitForJob(api, job.id, 120_000);
    expect(done.status).toBe('Failed');
    expect(done.error).toMatchObject({ code: 'limit_exceeded' });
    expect(done.counts.items.succeeded, JSON.stringify(done.counts)).toBeLessThanOrEqual(MAX_FILES);
  }, 180_000);
});
