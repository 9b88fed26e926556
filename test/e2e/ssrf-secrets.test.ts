import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { BlobServiceClient } from '@azure/storage-blob';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { accountOf } from '../../shared/storage/clients.js';
import { type Api, type Json, PENGUIN_MODEL, WORKSPACE_CONTAINER, deploy, ds, startProductHost, upload, waitForJob } from '../support/batch.js';
import { type FnHostProcess } from '../support/fnhost.js';
import { uniqueName } from '../support/ports.js';
import { readFileSync } from 'node:fs';

/**
 * Issue 12 over HTTP on fnhost: no URL a caller gives makes the app contact anything but the
 * accounts of registered datastores (a local server on a loopback port counts every request it
 * gets: it must get none), and a SAS a caller sends never shows again anywhere.
 */

let host: FnHostProcess;
let api: Api;
let trap: { port: number; hits: string[]; close: () => Promise<void> };
const ENDPOINT = 'ssrf-ep';
const SIG = 'c2VjcmV0LXNhcy1zaWduYXR1cmU';
/** A token as a script might log it (header.payload.signature). */
const JWT = 'eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJsZWFrZWQtdG9rZW4ifQ.c2lnbmF0dXJlLW9mLWEtdG9rZW4';

beforeAll(async () => {
  const hits: string[] = [];
  const server = http.createServer((req, res) => {
    hits.push(`${req.method ?? ''} ${req.url ?? ''}`);
    res.writeHead(200, { 'content-type': 'application/xml' }).end('<EnumerationResults/>');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  trap = { port, hits, close: () => new Promise((resolve) => server.close(() => resolve())) };
  ({ host, api } = await startProductHost({
    // A connection string that reaches the trap: an app setting a datastore may name, but not use.
    // A secret a deployment's environment variable refers to (never gives).
    SSRF_API_KEY: `api-key-${SIG}`,
    TRAP_CONNECTION: `DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=${SIG};BlobEndpoint=http://127.0.0.1:${port}/devstoreaccount1;`,
  }));
  await upload(host.storageConnection, {
    'models/ssrf/penguins.onnx': readFileSync(PENGUIN_MODEL),
    'data/ssrf/a.csv': 'island,bill_length_mm,bill_depth_mm,flipper_length_mm,body_mass_g\nBiscoe,39.1,18.7,181,3750\n',
  });
  await deploy(api, { endpoint: ENDPOINT, deployment: 'blue', model: { name: 'ssrf-model', version: '1', type: 'onnx', path: ds('models/ssrf/penguins.onnx') } });
});

afterAll(async () => {
  await host?.stop();
  await trap?.close();
});

function expectRefusal(res: { status: number; body: Json; headers: Headers }, field: string): void {
  expect(res.status, JSON.stringify(res.body)).toBe(400);
  expect(res.headers.get('content-type')).toMatch(/application\/problem\+json/);
  expect((res.body.errors as { field: string }[]).map((e) => e.field)).toContain(field);
}

const hostileAccountUrls = (): string[] => [
  'http://169.254.169.254/metadata',
  'http://2852039166/',
  'http://0xA9FEA9FE/',
  'http://0251.0376.0251.0376/',
  'http://[::ffff:169.254.169.254]/',
  'http://localhost/',
  `http://127.0.0.1:${trap.port}/devstoreaccount1`,
  `http://localhost:${trap.port}/devstoreaccount1`,
  'http://10.0.0.1/',
  'http://172.16.0.1/',
  'http://192.168.0.1/',
  'http://[fd00::1]/',
  'file:///etc/passwd',
  'ftp://ssrfacct.blob.core.windows.net/',
  'javascript:alert(1)',
  'https://ssrfacct.blob.core.windows.net.evil.com',
  'https://ssrfacct-blob.core.windows.net',
  'https://evilcore.windows.net',
  'https://ssrfacct%2eblob.core.windows.net',
  'https://xn--ssrfcct-2ni.blob.core.windows.net',
  'https://ssrfacct.blob.core.windows.net.',
  'https://SSRFACCT.blob.core.windows.net',
  'https://user:pass@ssrfacct.blob.core.windows.net',
  'https://ssrfacct.blob.core.windows.net@evil.com',
];

const hostileBlobUrls = (): string[] => [
  `http://127.0.0.1:${trap.port}/devstoreaccount1/${WORKSPACE_CONTAINER}/data/ssrf/a.csv`,
  `http://localhost:${trap.port}/devstoreaccount1/${WORKSPACE_CONTAINER}/data/ssrf/a.csv`,
  'http://169.254.169.254/devstoreaccount1/c/a.csv',
  'http://0xA9FEA9FE/devstoreaccount1/c/a.csv',
  'http://[::ffff:169.254.169.254]/devstoreaccount1/c/a.csv',
  'http://10.0.0.1/devstoreaccount1/c/a.csv',
  'http://192.168.1.1/devstoreaccount1/c/a.csv',
  'http://[fd00::1]/devstoreaccount1/c/a.csv',
  'file:///etc/passwd',
  'ftp://devstoreaccount1.blob.core.windows.net/c/a.csv',
  'https://devstoreaccount1.blob.core.windows.net.evil.com/c/a.csv',
  'https://devstoreaccount1-blob.core.windows.net/c/a.csv',
  'https://devstoreaccount1%2eblob.core.windows.net/c/a.csv',
  'https://DEVSTOREACCOUNT1.blob.core.windows.net./c/a.csv',
  'https://user:pass@devstoreaccount1.blob.core.windows.net/c/a.csv',
  'https://devstoreaccount1.blob.core.windows.net@evil.com/c/a.csv',
];

describe('no SSRF (fnhost over HTTP)', () => {
  it('refuses every datastore account URL that is not the account’s own blob endpoint: 400 naming the field, nothing created, nothing contacted', async () => {
    for (const accountUrl of hostileAccountUrls()) {
      const name = uniqueName('ds');
      const res = await api.call('PUT', `datastores/${name}`, { account_name: 'ssrfacct', container_name: 'data', credentials: { type: 'managed_identity', account_url: accountUrl } });
      expectRefusal(res, 'credentials.account_url');
      expect((await api.call('GET', `datastores/${name}`)).status).toBe(404);
    }
    const endpoint = await api.call('PUT', 'datastores/ssrf-endpoint', { account_name: 'ssrfacct', container_name: 'data', endpoint: 'evil.com', credentials: { type: 'managed_identity' } });
    expectRefusal(endpoint, 'endpoint');
    const protocol = await api.call('PUT', 'datastores/ssrf-protocol', { account_name: 'ssrfacct', container_name: 'data', protocol: 'http', credentials: { type: 'managed_identity' } });
    expectRefusal(protocol, 'protocol');
    const viaSetting = await api.call('PUT', 'datastores/ssrf-setting', { account_name: 'devstoreaccount1', container_name: 'data', credentials: { type: 'connection_string', setting: 'TRAP_CONNECTION' } });
    expectRefusal(viaSetting, 'credentials.setting');
    expect(JSON.stringify(viaSetting.body)).not.toContain(SIG);
    expect(JSON.stringify(viaSetting.body)).not.toContain(String(trap.port));
    const list = await api.call('GET', 'datastores');
    expect((list.body.value as { name: string }[]).map((d) => d.name).filter((n) => n.startsWith('ssrf') || n.startsWith('ds'))).toEqual([]);
    // The same account at its own endpoint is accepted, and its URL is the one the app derives.
    const ok = await api.call('PUT', 'datastores/ssrfok', { account_name: 'ssrfacct', container_name: 'data', credentials: { type: 'managed_identity', account_url: 'https://ssrfacct.blob.core.windows.net/' } });
    expect(ok.status).toBe(201);
    expect(ok.body.credentials).toEqual({ type: 'managed_identity', account_url: 'https://ssrfacct.blob.core.windows.net' });
    expect((await api.call('DELETE', 'datastores/ssrfok')).status).toBeLessThan(300);
    expect(trap.hits).toEqual([]);
  });

  it('refuses blob URLs of other hosts as job inputs and outputs, data assets, model and code paths: 400 naming the field, no job, nothing contacted', async () => {
    for (const url of hostileBlobUrls()) {
      expectRefusal(await api.call('POST', `endpoints/${ENDPOINT}/jobs`, { inputs: { x: { type: 'uri_file', path: url } } }), 'inputs.x.path');
      expectRefusal(await api.call('POST', `endpoints/${ENDPOINT}/jobs`, { inputs: { x: { path: ds('data/ssrf/') } }, outputs: { score: { path: url } } }), 'outputs.score.path');
      expectRefusal(await api.call('PUT', `data/${uniqueName('d')}/versions/1`, { type: 'uri_file', path: url }), 'path');
      expectRefusal(await api.call('PUT', `models/${uniqueName('m')}/versions/1`, { type: 'onnx', path: url }), 'path');
      expectRefusal(
        await api.call('PUT', `endpoints/${ENDPOINT}/deployments/${uniqueName('d')}`, { model: 'azureml:ssrf-model:1', code_configuration: { code: url, scoring_script: 'score.js' } }),
        'code_configuration.code',
      );
    }
    const jobs = await api.call('GET', `endpoints/${ENDPOINT}/jobs`);
    expect(jobs.body.value).toEqual([]);
    expect(trap.hits).toEqual([]);
  });
});

describe('no secrets anywhere visible (fnhost over HTTP)', () => {
  it('a SAS sent with an input URL never appears in a response, job.json, job.log, errors.jsonl or the host’s output', async () => {
    const blobEndpoint = accountOf(host.storageConnection).blobEndpoint;
    const sas = `sv=2024-05-04&se=2030-01-01T00%3A00%3A00Z&sr=b&sp=r&sig=${SIG}`;
    const input = `${blobEndpoint}/${WORKSPACE_CONTAINER}/data/ssrf/a.csv?${sas}`;
    const seen: string[] = [];
    const call = async (method: string, path: string, body?: unknown): Promise<{ status: number; body: Json; headers: Headers }> => {
      const res = await api.call(method, path, body);
      seen.push(typeof res.body === 'string' ? res.body : String(JSON.stringify(res.body)));
      return res;
    };
    const invoked = await call('POST', `endpoints/${ENDPOINT}/jobs`, { inputs: { x: { type: 'uri_file', path: input } } });
    expect(invoked.status).toBe(202);
    const done = await waitForJob(api, invoked.body.name as string);
    expect(done.status).toBe('Completed');
    // The input is shown as given, its query replaced; the job read it through the datastore.
    expect(done.inputs.x.path).toBe(`${blobEndpoint}/${WORKSPACE_CONTAINER}/data/ssrf/a.csv?<redacted>`);
    expect(done.inputs.x.uri).toBe(ds('data/ssrf/a.csv'));
    await call('GET', `jobs/${done.name as string}`);
    await call('GET', `endpoints/${ENDPOINT}/jobs`);
    // Refusals that echo the URL: a fragment after the SAS, a file that is not there, a folder claimed as a file.
    expect((await call('POST', `endpoints/${ENDPOINT}/jobs`, { inputs: { x: { path: `${input}#frag` } } })).status).toBe(400);
    expect((await call('POST', `endpoints/${ENDPOINT}/jobs`, { inputs: { x: { type: 'uri_file', path: `${blobEndpoint}/${WORKSPACE_CONTAINER}/data/ssrf/missing.csv?${sas}` } } })).status).toBe(400);
    expect((await call('POST', `endpoints/${ENDPOINT}/jobs`, { inputs: { x: { type: 'uri_folder', path: input } } })).status).toBe(400);
    const container = BlobServiceClient.fromConnectionString(host.storageConnection).getContainerClient(WORKSPACE_CONTAINER);
    const folder = `azureml/${done.name as string}/score/`;
    for (const file of ['job.json', 'logs/job.log', 'errors.jsonl', 'predictions.csv']) {
      seen.push((await container.getBlobClient(`${folder}${file}`).downloadToBuffer()).toString('utf8'));
      await call('GET', `jobs/${done.name as string}/outputs/${file}`);
    }
    seen.push(host.output());
    for (const text of seen) {
      expect(text, text.substring(Math.max(0, text.indexOf(SIG) - 300), text.indexOf(SIG) + 50)).not.toContain(SIG);
      expect(text).not.toContain('sig=c2Vj');
    }
    expect(seen.join('\n')).toContain('data/ssrf/a.csv');
  });

  it('a SAS in what a scoring script logs or throws is redacted in job.log, errors.jsonl, job.json and the job view', async () => {
    const leaked = `https://ssrfacct.blob.core.windows.net/c/a.csv?sv=2024-05-04&sp=r&sig=${SIG}`;
    await upload(host.storageConnection, {
      'code/ssrf/score.js': `export async function run(miniBatch, context) {\n  context.logger.info('reading ${leaked}');\n  console.log('AccountKey=${SIG};');\n  context.logger.info('calling with Authorization: Bearer ${SIG}${SIG}');\n  console.log('token ${JWT}');\n  throw new Error('could not read ${leaked}');\n}\n`,
      'models/ssrf-custom/model.txt': 'unused',
    });
    await deploy(api, {
      endpoint: 'ssrf-leaky',
      deployment: 'blue',
      model: { name: 'ssrf-custom', version: '1', type: 'custom_model', path: ds('models/ssrf-custom/') },
      deploymentBody: { code_configuration: { code: ds('code/ssrf/'), scoring_script: 'score.js' }, settings: { retry_settings: { max_retries: 0 } } },
    });
    const invoked = await api.call('POST', 'endpoints/ssrf-leaky/jobs', { inputs: { x: { path: ds('data/ssrf/') } } });
    expect(invoked.status).toBe(202);
    const done = await waitForJob(api, invoked.body.name as string);
    expect(done.status).toBe('Failed');
    const container = BlobServiceClient.fromConnectionString(host.storageConnection).getContainerClient(WORKSPACE_CONTAINER);
    const read = async (file: string): Promise<string> => (await container.getBlobClient(`azureml/${done.name as string}/score/${file}`).downloadToBuffer()).toString('utf8');
    const errors = await read('errors.jsonl');
    const log = await read('logs/job.log');
    expect(errors).toContain('could not read https://ssrfacct.blob.core.windows.net/c/a.csv?<redacted>');
    expect(log).toContain('reading https://ssrfacct.blob.core.windows.net/c/a.csv?<redacted>');
    expect(log).toContain('AccountKey=<redacted>');
    expect(log).toContain('Authorization: Bearer <redacted>');
    expect(log).toContain('token <redacted>');
    for (const text of [errors, log, await read('job.json'), JSON.stringify(done), JSON.stringify((await api.call('GET', `jobs/${done.name as string}`)).body), host.output()]) {
      expect(text).not.toContain(SIG);
      expect(text).not.toContain(JWT.split('.')[1]);
    }
  });

  it('environment variables: a secret is an app setting reference, resolved only in the worker; a literal secret is refused; views and job.json show the reference', async () => {
    await upload(host.storageConnection, {
      'code/ssrf-env/score.js':
        "import { createHash } from 'node:crypto';\nexport function init() {}\nexport async function run(miniBatch) {\n  const sha = createHash('sha256').update(process.env.API_KEY ?? '').digest('hex');\n  return miniBatch.map((f) => ({ file_name: f, key_sha: sha, plain: process.env.PLAIN ?? '' }));\n}\n",
      'models/ssrf-env/model.txt': 'unused',
    });
    const reference = '${{app_settings.SSRF_API_KEY}}';
    const settings = (env: Record<string, string>): Record<string, unknown> => ({ code_configuration: { code: ds('code/ssrf-env/'), scoring_script: 'score.js' }, settings: { environment_variables: env } });
    await deploy(api, { endpoint: 'ssrf-env', deployment: 'blue', model: { name: 'ssrf-env', version: '1', type: 'custom_model', path: ds('models/ssrf-env/') }, deploymentBody: settings({ API_KEY: reference, PLAIN: 'shown' }) });
    // Literal secrets are refused, naming the variable: a storage key, a SAS, a token, a connection string's key, a function key.
    const literals = [
      `${'k'.repeat(43)}${'Q'.repeat(43)}==`,
      `https://acct.blob.core.windows.net/c?sv=2024-05-04&sig=${SIG}`,
      `Bearer ${SIG}${SIG}`,
      JWT,
      `DefaultEndpointsProtocol=https;AccountName=a;AccountKey=${SIG};`,
      `https://app.azurewebsites.net/api/f?code=${SIG}`,
    ];
    for (const secret of literals) {
      const res = await api.call('PUT', 'endpoints/ssrf-env/deployments/green', { model: 'azureml:ssrf-env:1', ...settings({ API_KEY: secret }) });
      expectRefusal(res, 'settings.environment_variables.API_KEY');
      expect(JSON.stringify(res.body)).not.toContain(SIG);
    }
    expectRefusal(await api.call('PUT', 'endpoints/ssrf-env/deployments/green', { model: 'azureml:ssrf-env:1', ...settings({ API_KEY: '${{app_settings.NOT_SET_ANYWHERE}}' }) }), 'settings.environment_variables.API_KEY');
    // A job's own overrides are literals: an invoker cannot pull an app setting into a job.
    expectRefusal(await api.call('POST', 'endpoints/ssrf-env/jobs', { inputs: { x: { path: ds('data/ssrf/') } }, settings: { environment_variables: { PLAIN: '${{app_settings.TRAP_CONNECTION}}' } } }), 'settings.environment_variables.PLAIN');
    expect((await api.call('GET', 'endpoints/ssrf-env/deployments/green')).status).toBe(404);

    const invoked = await api.call('POST', 'endpoints/ssrf-env/jobs', { inputs: { x: { path: ds('data/ssrf/') } } });
    expect(invoked.status).toBe(202);
    const done = await waitForJob(api, invoked.body.name as string);
    expect(done.status).toBe('Completed');
    const container = BlobServiceClient.fromConnectionString(host.storageConnection).getContainerClient(WORKSPACE_CONTAINER);
    const read = async (file: string): Promise<string> => (await container.getBlobClient(`azureml/${done.name as string}/score/${file}`).downloadToBuffer()).toString('utf8');
    // The script saw the setting's value...
    const { createHash } = await import('node:crypto');
    const predictions = await read('predictions.csv');
    expect(predictions).toContain(createHash('sha256').update(`api-key-${SIG}`).digest('hex'));
    expect(predictions).toContain('shown');
    // ...which no view, job.json or log shows: they show the reference.
    const deployment = await api.call('GET', 'endpoints/ssrf-env/deployments/blue');
    expect(deployment.body.settings.environment_variables).toEqual({ API_KEY: reference, PLAIN: 'shown' });
    expect(done.settings.environment_variables).toEqual({ API_KEY: reference, PLAIN: 'shown' });
    const summary = await read('job.json');
    expect(summary).toContain(reference);
    for (const text of [summary, await read('logs/job.log'), JSON.stringify(done), JSON.stringify(deployment.body), host.output()]) expect(text).not.toContain(SIG);
  });
});
