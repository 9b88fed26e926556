/**
 * The web page in a real browser (Debian's chromium, driven by playwright-core) against fnhost:
 * a running job's page follows it until Completed; the failure breakdown is errors.jsonl's; the
 * timeline has one mark per mini-batch; endpoints and the filtered job list show what the API
 * says. Screenshots go to test-artifacts/web/.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseErrorLines, parseReport } from '../../shared/jobs/report.js';
import { type Api, type Json, customDeployment, invoke, startProductHost, textFiles, waitForJob } from '../support/batch.js';
import { artifact, launchChromium } from '../support/browser.js';
import { ROOT } from '../support/compiled.js';
import { type FnHostProcess } from '../support/fnhost.js';
import { uniqueName } from '../support/ports.js';
import { BatchClient } from '../../scripts/lib/batch-client.js';
import { penguinCsvsWithMissing, pipelineInvokeBody, setUpPipelineDemo } from '../../scripts/lib/pipeline-demo.js';

let host: FnHostProcess;
let api: Api;
let browser: { context: BrowserContext; close: () => Promise<void> };
const ENDPOINT = uniqueName('web');
const RUN_ID = uniqueName('run');
/** 14 files, one per mini-batch: 2 with no result, 1 that always throws, 1 that throws once. */
const FILES = ['a01.txt', 'a02.txt', 'bad1.txt', 'a03.txt', 'boom.txt', 'a04.txt', 'flaky.txt', 'a05.txt', 'bad2.txt', 'a06.txt', 'a07.txt', 'a08.txt', 'a09.txt', 'a10.txt'];

beforeAll(async () => {
  if (!existsSync(join(ROOT, 'dist', 'web', 'index.html')) || !existsSync(join(ROOT, 'dist', 'web', 'js', 'main.js'))) {
    throw new Error('The web page is not built: run `npm run build:web` before these tests.');
  }
  ({ host, api } = await startProductHost());
  await customDeployment(host, api, { endpoint: ENDPOINT, deployment: 'blue', script: 'web-demo.js', settings: { mini_batch_size: 1, retry_settings: { max_retries: 1, timeout: 30 } } });
  await customDeployment(host, api, { endpoint: ENDPOINT, deployment: 'green', script: 'web-demo.js', makeDefault: false });
  browser = await launchChromium();
}, 180_000);

afterAll(async () => {
  await browser?.close();
  await host?.stop();
});

async function signedInPage(): Promise<Page> {
  const page = await browser.context.newPage();
  await page.goto(`${host.url}/api/app/`);
  // The first visit asks for a credential.
  await page.locator('#sign-in-dialog').waitFor({ state: 'visible' });
  await page.locator('input[name="kind"][value="key"]').check();
  await page.locator('#credential-value').fill(host.masterKey);
  await page.locator('#sign-in-dialog button[value="save"]').click();
  await page.locator('#sign-in', { hasText: 'Function key set' }).waitFor();
  return page;
}

async function text(path: string): Promise<string> {
  const res = await fetch(`${host.url}/api/${path}`, { headers: { 'x-functions-key': host.masterKey } });
  if (res.status !== 200) throw new Error(`GET ${path}: ${res.status}`);
  return res.text();
}

describe('web page', () => {
  let job: Json;
  let page: Page;

  it('serves the page and its files from the app, with a content security policy', async () => {
    const index = await fetch(`${host.url}/api/app/`);
    expect(index.status).toBe(200);
    expect(index.headers.get('content-type')).toContain('text/html');
    expect(index.headers.get('content-security-policy')).toMatch(/script-src 'self' 'sha256-/);
    expect((await fetch(`${host.url}/api/app/js/main.js`)).headers.get('content-type')).toContain('javascript');
    expect((await fetch(`${host.url}/api/app/vendor/uPlot.esm.js`)).status).toBe(200);
    const redirect = await fetch(`${host.url}/api/app`, { redirect: 'manual' });
    expect(redirect.status).toBe(301);
    expect(redirect.headers.get('location')).toBe('/api/app/');
    const missing = await fetch(`${host.url}/api/app/../host.json`);
    expect(missing.status).toBe(404);
    expect((await fetch(`${host.url}/api/app/nothing.js`)).status).toBe(404);
  });

  it("follows a running job's status and progress until Completed", async () => {
    page = await signedInPage();
    const input = await textFiles(host, `data/${ENDPOINT}/`, FILES);
    job = await invoke(api, ENDPOINT, { inputs: { text: { type: 'uri_folder', path: input } }, settings: { environment_variables: { SLOW_MS: '350', RUN_ID } } });
    await page.goto(`${host.url}/api/app/#/jobs/${job.id as string}`);
    const seen: { status: string; progress: number }[] = [];
    let shotWhileRunning = false;
    const deadline = Date.now() + 150_000;
    for (;;) {
      const status = (await page.locator('#job-status').getAttribute('data-status')) ?? '';
      const progress = Number((await page.locator('#job-progress').getAttribute('aria-valuenow')) ?? '0');
      if (status && (seen.length === 0 || seen[seen.length - 1]?.status !== status || seen[seen.length - 1]?.progress !== progress)) seen.push({ status, progress });
      if (status === 'Running' && progress > 0 && !shotWhileRunning) {
        await page.screenshot({ path: artifact('web', 'job-running.png'), fullPage: true });
        shotWhileRunning = true;
      }
      if (['Completed', 'Failed', 'Canceled'].includes(status)) break;
      if (Date.now() > deadline) throw new Error(`the page never showed the job end: ${JSON.stringify(seen)}`);
      await page.waitForTimeout(100);
    }
    // The page showed the job running, its progress moving, and then Completed.
    expect(seen[seen.length - 1]).toEqual({ status: 'Completed', progress: 100 });
    expect(seen.some((s) => s.status === 'Running')).toBe(true);
    const running = seen.filter((s) => s.status === 'Running').map((s) => s.progress);
    expect(new Set(running).size).toBeGreaterThan(1);
    expect(running).toEqual([...running].sort((a, b) => a - b));
    const final = await waitForJob(api, job.id as string);
    expect(final.status).toBe('Completed');
    expect(await page.locator('#job-counts').getAttribute('data-items-failed')).toBe(String(final.counts.items.failed));
    await page.locator('main[data-reports="shown"]').waitFor({ timeout: 30_000 });
    await page.screenshot({ path: artifact('web', 'job-completed.png'), fullPage: true });
  }, 240_000);

  it("shows the failure breakdown exactly as errors.jsonl has it, with sample items", async () => {
    const records = parseErrorLines(await text(`jobs/${job.id as string}/outputs/errors.jsonl`));
    expect(records.length).toBeGreaterThan(0);
    const expected = new Map<string, number>();
    for (const r of records) expected.set(r.reason, (expected.get(r.reason) ?? 0) + (r.count ?? 1));
    const rows = page.locator('#failures tbody tr');
    const shown = new Map<string, number>();
    for (let i = 0; i < (await rows.count()); i++) {
      const row = rows.nth(i);
      shown.set(((await row.locator('th.reason').textContent()) ?? '').trim(), Number(await row.getAttribute('data-count')));
    }
    expect(shown).toEqual(expected);
    expect(await page.locator('#failures').getAttribute('data-items')).toBe(String(records.length));
    // The samples name the files that failed.
    const samples = (await page.locator('#failures .samples').allTextContents()).join(' ');
    for (const name of ['bad1.txt', 'bad2.txt', 'boom.txt']) expect(samples).toContain(name);
  });

  it('draws one timeline mark per mini-batch, the retried and failed ones set apart', async () => {
    const report = parseReport(await text(`jobs/${job.id as string}/outputs/processed_mini_batches.csv`));
    expect(report).toHaveLength(FILES.length);
    expect(await page.locator('#timeline-chart').getAttribute('data-marks')).toBe(String(FILES.length));
    expect(await page.locator('#timeline-chart canvas').count()).toBeGreaterThan(0);
    await page.locator('#timeline-table summary').click();
    expect(await page.locator('#timeline-table tbody tr').count()).toBe(FILES.length);
    const failed = report.filter((r) => r.status !== 'completed' || r.failed > 0).length;
    const retried = report.filter((r) => r.status === 'completed' && r.failed === 0 && r.attempt > 1).length;
    expect(failed).toBe(3);
    expect(retried).toBe(1);
    expect(await page.locator('#timeline-table tr.row-failed').count()).toBe(failed);
    expect(await page.locator('#timeline-table tr.row-retried').count()).toBe(retried);
    expect(Number(await page.locator('#throughput-chart').getAttribute('data-marks'))).toBeGreaterThan(1);
    expect(await page.locator('#job-log').textContent()).toMatch(new RegExp(`job ${job.id as string} (step batchscoring )?Completed`));
    const outputs = await page.locator('#outputs').textContent();
    for (const file of ['predictions.csv', 'errors.jsonl', 'processed_mini_batches.csv', 'job.log']) expect(outputs).toContain(file);
  });

  it('downloads an output with the credential, from the keyboard', async () => {
    const button = page.locator('#outputs button', { hasText: 'predictions.csv' });
    await button.focus();
    const [download] = await Promise.all([page.waitForEvent('download'), page.keyboard.press('Enter')]);
    expect(download.suggestedFilename()).toBe('predictions.csv');
    const path = await download.path();
    const { readFileSync } = await import('node:fs');
    expect(readFileSync(path, 'utf8')).toBe(await text(`jobs/${job.id as string}/outputs/predictions.csv`));
  });

  it('lists endpoints with the default deployment marked, and jobs filtered by endpoint and status', async () => {
    await page.goto(`${host.url}/api/app/#/endpoints`);
    const card = page.locator('section.card', { has: page.locator(`h2#ep-${ENDPOINT}`) });
    await card.waitFor();
    await expect.poll(() => card.locator('tbody tr').count()).toBe(2);
    expect(await card.locator('tr.default th').textContent()).toContain('blue');
    expect(await card.locator('.default-badge').count()).toBe(1);
    await page.screenshot({ path: artifact('web', 'endpoints.png'), fullPage: true });

    await page.goto(`${host.url}/api/app/#/jobs?endpoint=${ENDPOINT}&status=Completed`);
    await page.locator('#jobs tbody tr a').first().waitFor();
    expect(await page.locator('#jobs tbody tr a').allTextContents()).toEqual([job.id]);
    expect(await page.locator('#filter-status').inputValue()).toBe('Completed');
    await page.screenshot({ path: artifact('web', 'jobs.png'), fullPage: true });
    await page.locator('#filter-status').selectOption('Failed');
    await page.locator('#jobs tbody tr td.muted', { hasText: 'No jobs.' }).waitFor();
  });

  it("shows a pipeline job's steps, and its parallel step's timeline", async () => {
    const endpoint = uniqueName('webpipe');
    const dataPrefix = `data/${endpoint}/`;
    await setUpPipelineDemo(new BatchClient(host.url, host.masterKey), host.storageConnection, { dataPrefix, files: penguinCsvsWithMissing(3, 20).files, endpoint, deployment: 'pipe', miniBatchSize: 1, maxConcurrency: 1 });
    const pipelineJob = await invoke(api, endpoint, pipelineInvokeBody(dataPrefix, true));
    const done = await waitForJob(api, pipelineJob.id as string, 150_000);
    expect(done.status).toBe('Completed');
    await page.goto(`${host.url}/api/app/#/jobs/${pipelineJob.id as string}`);
    await page.locator('main[data-reports="shown"]').waitFor({ timeout: 30_000 });
    const rows = page.locator('#steps tbody tr');
    expect(await rows.locator('th').allTextContents()).toEqual(['prepare', 'score', 'summarize']);
    expect(await rows.locator('.badge').allTextContents()).toEqual(['Completed', 'Completed', 'Completed']);
    const score = (done.steps as Json[]).find((st) => st.name === 'score');
    expect(Number(await page.locator('#timeline-chart').getAttribute('data-marks'))).toBe(score.counts.mini_batches.total);
    expect(score.counts.mini_batches.total).toBe(3);
    await page.screenshot({ path: artifact('web', 'job-pipeline.png'), fullPage: true });
  }, 240_000);

  it('fits a phone screen', async () => {
    const phone = await launchChromium({ viewport: { width: 390, height: 844 } });
    try {
      const p = await phone.context.newPage();
      await p.goto(`${host.url}/api/app/`);
      // The page's code runs in the browser; these expressions are evaluated there.
      await p.evaluate(`sessionStorage.setItem('batch-endpoints.credential', ${JSON.stringify(JSON.stringify({ kind: 'key', value: host.masterKey }))})`);
      await p.goto(`${host.url}/api/app/#/jobs/${job.id as string}`);
      await p.reload();
      await p.locator('main[data-reports="shown"]').waitFor({ timeout: 30_000 });
      // Nothing wider than the screen but the scrolling tables and the log.
      const overflow = await p.evaluate<number>('document.documentElement.scrollWidth - document.documentElement.clientWidth');
      expect(overflow).toBeLessThanOrEqual(0);
      await p.screenshot({ path: artifact('web', 'job-phone.png'), fullPage: true });
    } finally {
      await phone.close();
    }
  }, 60_000);
});
