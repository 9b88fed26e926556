/**
 * The web page's "Sign in with Microsoft" in a real browser (Debian's chromium, playwright-core),
 * fully local: the app in entra mode on fnhost, and the local OpenID issuer
 * (scripts/lib/oidc-issuer.ts) as the authority. The page runs the authorization code flow with
 * PKCE through real redirects, redeems the code by a CORS POST, and calls the API with the access
 * token the app validates (real RSA signatures). A forged state and a wrong verifier are refused;
 * a 401 asks to sign in again. Screenshots go to test-artifacts/web/.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Json, apiOf, customDeployment, invoke, startProductHost, textFiles, waitForJob } from '../support/batch.js';
import { artifact, launchChromium } from '../support/browser.js';
import { ROOT } from '../support/compiled.js';
import { type FnHostProcess } from '../support/fnhost.js';
import { uniqueName } from '../support/ports.js';
import { waitFor } from '../support/wait.js';
import { LOCAL_AUDIENCE, LOCAL_TENANT, LOCAL_WEB_CLIENT, LocalIssuer } from '../../scripts/lib/oidc-issuer.js';

let issuer: LocalIssuer;
let host: FnHostProcess;
let browser: { context: BrowserContext; close: () => Promise<void> };
const ENDPOINT = uniqueName('signin');
const ADA = randomUUID();
const BOB = randomUUID();
const jobs: Record<string, string> = {};

beforeAll(async () => {
  if (!existsSync(join(ROOT, 'dist', 'web', 'js', 'sign-in.js'))) throw new Error('The web page is not built: run `npm run build:web` before these tests.');
  issuer = await LocalIssuer.create();
  await issuer.start();
  ({ host } = await startProductHost({
    BATCH_AUTH_MODE: 'entra',
    BATCH_AUTH_TENANTS: LOCAL_TENANT,
    BATCH_AUTH_AUDIENCES: LOCAL_AUDIENCE,
    BATCH_AUTH_METADATA_URL: issuer.metadataUrl,
    BATCH_WEB_CLIENT_ID: LOCAL_WEB_CLIENT,
  }));
  // The app registration's "single-page application" redirect URI is the page.
  issuer.registerSpa({ clientId: LOCAL_WEB_CLIENT, redirectUris: [`${host.url}/api/app/`], user: { username: 'ada@contoso.test', oid: ADA }, consented: ['Jobs.Invoke'] });
  const admin = apiOf(host, { authorization: `Bearer ${await issuer.token({ roles: ['Workspace.Manage'], appId: 'admin-app' })}` });
  await customDeployment(host, admin, { endpoint: ENDPOINT, deployment: 'blue', script: 'web-demo.js', settings: { mini_batch_size: 1, environment_variables: { SLOW_MS: '10' } } });
  const input = await textFiles(host, `data/${ENDPOINT}/`, ['a.txt', 'b.txt']);
  // One job of Ada's (who signs in) and one of Bob's: a user holding Jobs.Invoke sees their own only.
  for (const [who, oid] of [['ada', ADA], ['bob', BOB]] as const) {
    const user = apiOf(host, { authorization: `Bearer ${await issuer.token({ scopes: ['Jobs.Invoke'], oid, username: `${who}@contoso.test` })}` });
    jobs[who] = (await invoke(user, ENDPOINT, { inputs: { text: { type: 'uri_folder', path: input } } })).id as string;
  }
  for (const id of Object.values(jobs)) expect((await waitForJob(admin, id)).status).toBe('Completed');
  browser = await launchChromium();
}, 180_000);

afterAll(async () => {
  await browser?.close();
  await host?.stop();
  await issuer?.stop();
});

/** What the page keeps in the tab's sessionStorage under `key` (parsed), or null. */
async function stored(page: Page, key: string): Promise<Json> {
  return JSON.parse((await page.evaluate<string | null>(`sessionStorage.getItem(${JSON.stringify(key)})`)) ?? 'null');
}

/** The job ids the job list shows. */
async function listedJobs(page: Page): Promise<string[]> {
  await page.locator('#jobs tbody tr a').first().waitFor();
  return page.locator('#jobs tbody tr a').allTextContents();
}

/**
 * Starts the sign-in but holds the tab at the authority's door: the authorize request is answered
 * 204 (the browser then stays where it is), so the test can tamper with the flow before it goes on.
 */
async function authorizeUrlOf(page: Page): Promise<string> {
  let captured = '';
  const pattern = `${issuer.url}/**/oauth2/v2.0/authorize?**`;
  await page.route(pattern, (route) => {
    captured = route.request().url();
    return route.fulfill({ status: 204 });
  });
  await page.goto(`${host.url}/api/app/#/jobs`);
  await page.locator('#sign-in-microsoft').click();
  await waitFor(() => Promise.resolve(captured || undefined), { timeoutMs: 30_000, intervalMs: 50, what: 'the authorize request' });
  await page.unroute(pattern);
  return captured;
}

describe('web page: sign in with Microsoft (authorization code + PKCE)', () => {
  it('tells the page how to sign in, and lets it reach the token endpoint only', async () => {
    const res = await fetch(`${host.url}/api/app/config.json`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({
      auth_mode: 'entra',
      sign_in: {
        client_id: LOCAL_WEB_CLIENT,
        tenant: LOCAL_TENANT,
        authorization_endpoint: `${issuer.url}/${LOCAL_TENANT}/oauth2/v2.0/authorize`,
        token_endpoint: `${issuer.url}/${LOCAL_TENANT}/oauth2/v2.0/token`,
        scopes: [`${LOCAL_AUDIENCE}/.default`],
      },
    });
    const policy = (await fetch(`${host.url}/api/app/`)).headers.get('content-security-policy') ?? '';
    expect(policy).toContain(`connect-src 'self' ${issuer.url};`);
  });

  it("signs in through the redirect, lists the user's own jobs, and signs out", async () => {
    const before = issuer.tokenRequests.length;
    const page = await browser.context.newPage();
    await page.goto(`${host.url}/api/app/#/jobs?endpoint=${ENDPOINT}`);
    await page.locator('#sign-in-dialog').waitFor({ state: 'visible' });
    await page.locator('#entra-sign-in').waitFor({ state: 'visible' });
    await page.locator('#sign-in-microsoft').click();
    await page.locator('#sign-in', { hasText: 'Signed in as ada@contoso.test' }).waitFor({ timeout: 30_000 });
    // Back where the user was, without the code in the address bar.
    expect(page.url()).toBe(`${host.url}/api/app/#/jobs?endpoint=${ENDPOINT}`);
    expect(await listedJobs(page)).toEqual([jobs['ada']]);
    const credential = await stored(page, 'batch-endpoints.credential');
    expect(credential).toMatchObject({ kind: 'bearer', signedIn: true, user: 'ada@contoso.test' });
    expect(await stored(page, 'batch-endpoints.sign-in')).toBeNull();
    expect(issuer.tokenRequests.slice(before)).toEqual([{}]);
    // The token is the API's: the app knows the caller as Ada, signed in through the page's client.
    const me = await apiOf(host, { authorization: `Bearer ${credential.value as string}` }).call('GET', `jobs/${jobs['ada']}`);
    expect(me.body.invoked_by).toMatchObject({ id: ADA, kind: 'user' });
    expect(await page.locator('#sign-in-dialog').isVisible()).toBe(false);
    await page.screenshot({ path: artifact('web', 'signed-in.png'), fullPage: true });

    await page.locator('#sign-in').click();
    await page.locator('#sign-out').click();
    await page.locator('#sign-in', { hasText: /^Sign in$/ }).waitFor();
    expect(await stored(page, 'batch-endpoints.credential')).toEqual({ kind: 'none' });
    // The API now refuses the page, which asks to sign in again.
    await page.locator('#sign-in-message', { hasText: 'Sign in again' }).waitFor();
    await page.close();
  }, 120_000);

  it('refuses an answer whose state is not the one it sent, without redeeming its code', async () => {
    const page = await browser.context.newPage();
    const url = new URL(await authorizeUrlOf(page));
    expect(url.searchParams.get('code_challenge_method')).toBe('S256');
    expect(url.searchParams.get('state')).toBe((await stored(page, 'batch-endpoints.sign-in')).state);
    url.searchParams.set('state', randomBytes(16).toString('base64url'));
    const before = issuer.tokenRequests.length;
    // The authority signs the user in and sends the (real) code back with the forged state.
    await page.goto(url.toString());
    await page.locator('#sign-in-message', { hasText: 'state does not match' }).waitFor({ timeout: 30_000 });
    expect(issuer.tokenRequests.length).toBe(before);
    expect(await stored(page, 'batch-endpoints.credential')).toBeNull();
    expect(await stored(page, 'batch-endpoints.sign-in')).toBeNull();
    expect(await page.locator('#sign-in').textContent()).toBe('Sign in');
    expect(page.url()).not.toContain('code=');
    await page.close();
  }, 60_000);

  it("refuses a code redeemed with a verifier other than the one its challenge was made from", async () => {
    const page = await browser.context.newPage();
    const url = await authorizeUrlOf(page);
    const pending = await stored(page, 'batch-endpoints.sign-in');
    pending.verifier = randomBytes(32).toString('base64url');
    await page.evaluate(`sessionStorage.setItem('batch-endpoints.sign-in', ${JSON.stringify(JSON.stringify(pending))})`);
    const before = issuer.tokenRequests.length;
    await page.goto(url);
    await page.locator('#sign-in-message', { hasText: 'code_verifier does not match' }).waitFor({ timeout: 30_000 });
    expect(issuer.tokenRequests.slice(before)).toEqual([{ error: 'invalid_grant' }]);
    expect(await stored(page, 'batch-endpoints.credential')).toBeNull();
    expect(await page.locator('#sign-in').textContent()).toBe('Sign in');
    await page.screenshot({ path: artifact('web', 'sign-in-refused.png') });
    await page.close();
  }, 60_000);

  it('asks to sign in again when the API answers 401 (an expired token), and signs in again', async () => {
    const page = await browser.context.newPage();
    const expired = await issuer.token({ scopes: ['Jobs.Invoke'], oid: ADA, username: 'ada@contoso.test', expiresIn: -600 });
    // The tab holds a token from an earlier sign-in, expired since, before the page's code first runs.
    const seed = JSON.stringify(JSON.stringify({ kind: 'bearer', value: expired, signedIn: true, user: 'ada@contoso.test' }));
    await page.addInitScript(`if (location.origin === ${JSON.stringify(host.url)} && !sessionStorage.getItem('test.seeded')) { sessionStorage.setItem('test.seeded', '1'); sessionStorage.setItem('batch-endpoints.credential', ${seed}); }`);
    await page.goto(`${host.url}/api/app/#/jobs/${jobs['ada']}`);
    await page.locator('#sign-in-message', { hasText: /Sign in again.*expired/ }).waitFor({ timeout: 30_000 });
    expect(await page.locator('#sign-in').textContent()).toBe('Sign in');
    await page.locator('#sign-in-microsoft').click();
    await page.locator('#sign-in', { hasText: 'Signed in as ada@contoso.test' }).waitFor({ timeout: 30_000 });
    expect(page.url()).toBe(`${host.url}/api/app/#/jobs/${jobs['ada']}`);
    await page.locator('#job-status[data-status="Completed"]').waitFor({ timeout: 30_000 });
    await page.close();
  }, 60_000);

  it('still takes a pasted token', async () => {
    const page = await browser.context.newPage();
    await page.goto(`${host.url}/api/app/#/jobs?endpoint=${ENDPOINT}`);
    await page.locator('#sign-in-dialog').waitFor({ state: 'visible' });
    await page.locator('input[name="kind"][value="bearer"]').check();
    await page.locator('#credential-value').fill(await issuer.token({ scopes: ['Jobs.Read'], oid: BOB, username: 'bob@contoso.test' }));
    await page.locator('#sign-in-dialog button[value="save"]').click();
    await page.locator('#sign-in', { hasText: 'Entra token set' }).waitFor();
    expect(await listedJobs(page)).toEqual([jobs['bob']]);
    await page.close();
  }, 60_000);
});
