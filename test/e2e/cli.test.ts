// The batch-endpoints CLI against fnhost, run as a child process the way a user runs it: YAML
// files in Azure ML's shapes with local paths, a profile in the user's config folder, invoke of a
// local folder, stream, download, exit codes, and errors that name file, line and field.
import { execFile } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { type Api, type Json, PENGUIN_MODEL, fixtureScript, startProductHost, waitForJob } from '../support/batch.js';
import { assertBuilt } from '../support/compiled.js';
import { type FnHostProcess, PRODUCT_APP } from '../support/fnhost.js';
import { uniqueName } from '../support/ports.js';
import { waitFor } from '../support/wait.js';

const BIN = join(PRODUCT_APP, 'cli', 'bin', 'batch-endpoints.js');

let host: FnHostProcess;
let api: Api;
let home: string;
let work: string;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the CLI in `cwd` (default: the work folder) with the test's config folder and nothing else of the environment's connection. */
function cli(args: string[], cwd = work): Promise<Run> {
  const env: NodeJS.ProcessEnv = { ...process.env, XDG_CONFIG_HOME: home };
  for (const name of Object.keys(env)) if (name.startsWith('BATCH_ENDPOINTS_') || name === 'AZURE_STORAGE_CONNECTION_STRING') delete env[name];
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { cwd, env, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

/** Runs the CLI and expects exit 0; answers stdout parsed as JSON (the default output). */
async function ok(args: string[], cwd?: string): Promise<Json> {
  const run = await cli(args, cwd);
  if (run.code !== 0) throw new Error(`batch-endpoints ${args.join(' ')} exited ${run.code}:\n${run.stderr}\n${run.stdout}`);
  return run.stdout.trim() === '' ? undefined : JSON.parse(run.stdout);
}

function write(rel: string, content: string | Buffer): string {
  const path = join(work, rel);
  mkdirSync(join(path, '..'), { recursive: true });
  writeFileSync(path, content);
  return path;
}

const FEATURES = 'island,bill_length_mm,bill_depth_mm,flipper_length_mm,body_mass_g';
const ROWS = ['Biscoe,39.1,18.7,181,3750', 'Biscoe,46.5,17.9,192,3500', 'Dream,49.0,19.5,210,3950', 'Torgersen,38.9,17.8,181,3625'];

beforeAll(async () => {
  assertBuilt('cli/src');
  ({ host, api } = await startProductHost());
  home = mkdtempSync(join(tmpdir(), 'cli-home-'));
  work = mkdtempSync(join(tmpdir(), 'cli-work-'));
  mkdirSync(join(work, 'model'));
  copyFileSync(PENGUIN_MODEL, join(work, 'model', 'penguins.onnx'));
  // The connection, as a user keeps it: a profile in the config folder, written by the CLI.
  const configured = await cli(['configure', '--url', host.url, '--key', host.masterKey, '--storage-connection-string', host.storageConnection]);
  expect(configured.code, configured.stderr).toBe(0);
});

afterAll(async () => {
  await host?.stop();
  for (const dir of [home, work]) if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('batch-endpoints CLI on fnhost', () => {
  it('keeps the connection in a profile in the XDG config folder, readable only by its owner', async () => {
    const file = join(home, 'batch-endpoints', 'config.yaml');
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const config = parse(readFileSync(file, 'utf8'));
    expect(config).toEqual({ default_profile: 'default', profiles: { default: { url: host.url, key: host.masterKey, storage_connection_string: host.storageConnection } } });
    // A wrong key given on the command line wins over the profile's: the API refuses it.
    const refused = await cli(['endpoint', 'list', '--key', 'wrong-key']);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/GET \/api\/endpoints: 401/);
  });

  it('round-trips every resource from YAML: create, show, list, update, delete', async () => {
    const ep = uniqueName('cliep');
    // model.yml with a local folder: uploaded to the workspace datastore, content-keyed.
    write('model.yml', `$schema: https://azuremlschemas.azureedge.net/latest/model.schema.json\nname: ${ep}-model\nversion: 1\ntype: onnx\npath: ./model\ndescription: penguins\ntags:\n  stage: 1\n`);
    const model = await ok(['model', 'create', '-f', 'model.yml']);
    expect(model).toMatchObject({ name: `${ep}-model`, version: '1', type: 'onnx', description: 'penguins', tags: { stage: '1' } });
    expect(model.path).toMatch(/^azureml:\/\/datastores\/workspaceblobstore\/paths\/LocalUpload\/[0-9a-f]{32}\/model\/$/);
    const uploaded = await fetch(`${host.url}/api/models/${ep}-model/versions/1`, { headers: { 'x-functions-key': host.masterKey } });
    expect(((await uploaded.json()) as Json).path).toBe(model.path);
    // The same file again is the same version (immutable: same body, 200); another body is refused, naming the field's line.
    expect(await ok(['model', 'create', '-f', 'model.yml'])).toMatchObject({ path: model.path });
    const changed = await cli(['model', 'update', '-f', 'model.yml', '--set', 'description=other']);
    expect(changed.code).toBe(1);
    expect(changed.stderr).toMatch(/409/);
    const shownYaml = await cli(['model', 'show', '-n', `${ep}-model`, '-v', '1', '-o', 'yaml']);
    expect(parse(shownYaml.stdout)).toMatchObject({ name: `${ep}-model`, version: '1', path: model.path });
    expect((await ok(['model', 'list', '-n', `${ep}-model`])).map((m: Json) => m.version)).toEqual(['1']);

    // data.yml: a local file, version auto-assigned as Azure ML does.
    write('rows/penguins.csv', `${FEATURES}\n${ROWS.join('\n')}\n`);
    write('data.yml', `name: ${ep}-data\ntype: uri_file\npath: rows/penguins.csv\n`);
    const data = await ok(['data', 'create', '-f', 'data.yml']);
    expect(data).toMatchObject({ name: `${ep}-data`, version: '1', type: 'uri_file' });
    expect(data.path).toMatch(/\/LocalUpload\/[0-9a-f]{32}\/penguins\.csv$/);
    expect((await ok(['data', 'show', '-n', `${ep}-data`, '--label', 'latest'])).version).toBe('1');

    // datastore.yml in Azure ML's shape: no credentials means the app's identity.
    write('datastore.yml', `$schema: https://azuremlschemas.azureedge.net/latest/azureBlob.schema.json\nname: ${ep.replace(/-/g, '_')}_store\ntype: azure_blob\naccount_name: cliacct\ncontainer_name: data\ndescription: first\n`);
    const storeName = `${ep.replace(/-/g, '_')}_store`;
    expect(await ok(['datastore', 'create', '-f', 'datastore.yml'])).toMatchObject({ name: storeName, account_name: 'cliacct', credentials: { type: 'managed_identity' } });
    expect((await cli(['datastore', 'create', '-f', 'datastore.yml'])).stderr).toMatch(/already exists; use `datastore update/);
    expect(await ok(['datastore', 'update', '-f', 'datastore.yml', '--set', 'description=second'])).toMatchObject({ description: 'second' });
    expect((await ok(['datastore', 'list'])).map((d: Json) => d.name)).toEqual(expect.arrayContaining(['workspaceblobstore', storeName]));
    await ok(['datastore', 'delete', '-n', storeName, '--yes']);
    expect((await cli(['datastore', 'show', '-n', storeName])).code).toBe(1);

    // endpoint.yml and deployment.yml (an Azure ML file: compute and environment are dropped with a warning).
    write('endpoint.yml', `name: ${ep}\ndescription: scores penguins\nauth_mode: aad_token\n`);
    expect(await ok(['endpoint', 'create', '-f', 'endpoint.yml'])).toMatchObject({ name: ep, description: 'scores penguins', defaults: { deployment_name: null } });
    write(
      'deployment.yml',
      `name: classifier\nendpoint_name: ${ep}\ntype: model\nmodel: azureml:${ep}-model:1\ncompute: azureml:cpu-cluster\nenvironment: azureml:sklearn:1\nresources:\n  instance_count: 1\nsettings:\n  mini_batch_size: 1\n  output_file_name: predictions.csv\n  retry_settings:\n    max_retries: 2\n    timeout: 60\n`,
    );
    const created = await cli(['deployment', 'create', '-f', 'deployment.yml', '--set-default']);
    expect(created.code, created.stderr).toBe(0);
    expect(created.stderr).toMatch(/deployment\.yml:5:1: compute: ignored/);
    expect(created.stderr).toMatch(/deployment\.yml:6:1: environment: ignored/);
    expect(JSON.parse(created.stdout)).toMatchObject({ name: 'classifier', endpoint_name: ep, model: `azureml:${ep}-model:1`, is_default: true, settings: { mini_batch_size: 1, retry_settings: { max_retries: 2, timeout: 60 } } });
    expect(await ok(['endpoint', 'show', '-n', ep])).toMatchObject({ defaults: { deployment_name: 'classifier' }, description: 'scores penguins' });
    expect(await ok(['deployment', 'update', '-f', 'deployment.yml', '--set', 'settings.mini_batch_size=2'])).toMatchObject({ settings: { mini_batch_size: 2 }, is_default: true });
    const table = await cli(['deployment', 'list', '-e', ep, '-o', 'table']);
    expect(table.stdout.split('\n')[0]).toMatch(/^name\s+endpoint_name\s+type\s+model_or_component\s+is_default$/);
    expect(table.stdout).toMatch(new RegExp(`classifier\\s+${ep}\\s+model\\s+azureml:${ep}-model:1\\s+true`));

    // component.yml (command, a local code folder) and a pipeline component whose step is that file.
    write('count/code/run.js', "import { readdir, writeFile } from 'node:fs/promises';\nimport { join } from 'node:path';\nexport async function run(inputs, outputs) {\n  const files = await readdir(inputs.data);\n  await writeFile(join(outputs.result, 'result.json'), JSON.stringify({ files: files.length, greeting: inputs.greeting }));\n}\n");
    const countYml = `$schema: https://azuremlschemas.azureedge.net/latest/commandComponent.schema.json\ntype: command\nname: cli_count\nversion: 1\ncode: ./code\nentry_script: run.js\nenvironment: azureml:node:1\ninputs:\n  data:\n    type: uri_folder\n  greeting:\n    type: string\n    default: hello\noutputs:\n  result:\n    type: uri_folder\n`;
    write('count/count.yml', countYml);
    const component = await ok(['component', 'create', '-f', 'count/count.yml', '--set', `name=${ep.replace(/-/g, '_')}_count`]);
    expect(component).toMatchObject({ type: 'command', entry_script: 'run.js', inputs: { greeting: { type: 'string', default: 'hello' } } });
    expect(component.code).toMatch(/\/LocalUpload\/[0-9a-f]{32}\/code\/$/);
    const pipelineName = `${ep.replace(/-/g, '_')}_pipe`;
    write(
      'pipeline.yml',
      `type: pipeline\nname: ${pipelineName}\nversion: 1\ninputs:\n  data:\n    type: uri_folder\n  greeting:\n    type: string\noutputs:\n  result:\n    type: uri_folder\njobs:\n  count:\n    component: ./count/count.yml\n    inputs:\n      data: \${{parent.inputs.data}}\n      greeting: \${{parent.inputs.greeting}}\n    outputs:\n      result: \${{parent.outputs.result}}\n`,
    );
    const pipeline = await ok(['component', 'create', '-f', 'pipeline.yml']);
    expect(pipeline.jobs.count.component).toMatchObject({ type: 'command', entry_script: 'run.js' });
    expect(pipeline.jobs.count.component.code).toBe(component.code);
    expect((await ok(['component', 'show', '-n', pipelineName, '-v', '1'])).id).toBe(`azureml:${pipelineName}:1`);

    // deployment.yml of type pipeline, then a job with named and literal inputs from an inputs file.
    write('pipeline-deployment.yml', `name: pipe\nendpoint_name: ${ep}\ntype: pipeline\ncomponent: azureml:${pipelineName}:1\nsettings:\n  continue_on_step_failure: false\n`);
    expect(await ok(['deployment', 'create', '-f', 'pipeline-deployment.yml'])).toMatchObject({ type: 'pipeline', component: `azureml:${pipelineName}:1`, is_default: false });
    write('pipe-data/one.txt', 'one');
    write('pipe-data/two.txt', 'two');
    write('inputs.yml', 'inputs:\n  data:\n    type: uri_folder\n    path: ./pipe-data\n  greeting:\n    type: string\n    default: hi there\n');
    const streamed = await cli(['endpoint', 'invoke', '-n', ep, '-d', 'pipe', '--inputs-file', 'inputs.yml', '--stream', '--interval', '0.5']);
    expect(streamed.code, streamed.stderr + streamed.stdout).toBe(0);
    const pipeJob = /Job (\S+) Completed/.exec(streamed.stdout)?.[1] as string;
    expect(pipeJob).toBeDefined();
    const downloaded = await ok(['job', 'download', '-n', pipeJob, '-p', 'pipe-out']);
    expect(downloaded).toEqual([{ file: join('pipe-out', 'named-outputs', 'result', 'result.json') }]);
    expect(JSON.parse(readFileSync(join(work, 'pipe-out', 'named-outputs', 'result', 'result.json'), 'utf8'))).toEqual({ files: 2, greeting: 'hi there' });

    // Deletes, as az ml does them.
    await ok(['deployment', 'delete', '-n', 'pipe', '-e', ep, '--yes']);
    expect((await ok(['deployment', 'list', '-e', ep])).map((d: Json) => d.name)).toEqual(['classifier']);
    await ok(['data', 'delete', '-n', `${ep}-data`, '-v', '1', '--yes']);
    const gone = await cli(['data', 'show', '-n', `${ep}-data`, '-v', '1']);
    expect(gone.code).toBe(1);
    expect(gone.stderr).toMatch(/404/);
    await ok(['endpoint', 'delete', '-n', ep, '--yes']);
    expect((await cli(['endpoint', 'show', '-n', ep])).code).toBe(1);
    await ok(['model', 'delete', '-n', `${ep}-model`, '-v', '1', '--yes']);
  }, 400_000);

  it('invokes a local folder, streams the job to Completed and downloads exactly the predictions the API serves', async () => {
    const ep = uniqueName('clirun');
    // An inline model with a local path: registered on create, as Azure ML does.
    write(`${ep}/deployment.yml`, `name: onnx\nendpoint_name: ${ep}\nmodel:\n  name: ${ep}-m\n  type: onnx\n  path: ../model\nsettings:\n  mini_batch_size: 2\n`);
    write(`${ep}/endpoint.yml`, `name: ${ep}\n`);
    await ok(['endpoint', 'create', '-f', `${ep}/endpoint.yml`]);
    const deployment = await ok(['deployment', 'create', '-f', `${ep}/deployment.yml`, '--set-default']);
    expect(deployment.model).toBe(`azureml:${ep}-m:1`);
    for (let i = 0; i < 5; i++) write(`${ep}/input/part-${i}.csv`, `${FEATURES}\n${ROWS.slice(0, 1 + (i % ROWS.length)).join('\n')}\n`);
    const run = await cli(['endpoint', 'invoke', '-n', ep, '--input', `${ep}/input`, '--set', 'settings.mini_batch_size=1', '--stream', '--interval', '0.5', '--tail', '3']);
    expect(run.code, run.stderr + run.stdout).toBe(0);
    const id = /Job (\S+) Completed: 5 items, 5 succeeded, 0 failed; mini-batches 5\/5/.exec(run.stdout)?.[1] as string;
    expect(id, run.stdout).toBeDefined();
    expect(run.stderr).toMatch(/Uploading .*input.* 100% \| \d+\/\d+ bytes \| 5\/5 files/);
    expect(run.stderr).toMatch(/Completed .* 100% \| mini-batches 5\/5 \| items 5\/5 \| failed 0 \| [\d.]+ items\/s \| ETA/);
    expect(run.stdout).toMatch(/--- logs\/job\.log \(last 3 lines\) ---/);
    const job = await waitForJob(api, id);
    expect(job.settings.mini_batch_size).toBe(1);
    expect(job.inputs.input_data).toMatchObject({ type: 'uri_folder' });
    expect(job.inputs.input_data.path).toMatch(/LocalUpload\/[0-9a-f]{32}\/input\/$/);

    const files = await ok(['job', 'download', '-n', id, '--output-name', 'score', '--download-path', `${ep}/out`]);
    expect(files.map((f: Json) => f.file)).toEqual(expect.arrayContaining([join(`${ep}/out`, 'named-outputs', 'score', 'predictions.csv')]));
    const served = await fetch(`${host.url}/api/jobs/${id}/outputs/predictions.csv`, { headers: { 'x-functions-key': host.masterKey } });
    expect(served.status).toBe(200);
    const expected = await served.text();
    // One item per file; the files hold 1+2+3+4+1 rows.
    expect(expected.trim().split('\n')).toHaveLength(11);
    expect(readFileSync(join(work, ep, 'out', 'named-outputs', 'score', 'predictions.csv'), 'utf8')).toBe(expected);
    const report = await (await fetch(`${host.url}/api/jobs/${id}/outputs/processed_mini_batches.csv`, { headers: { 'x-functions-key': host.masterKey } })).text();
    expect(readFileSync(join(work, ep, 'out', 'named-outputs', 'score', 'processed_mini_batches.csv'), 'utf8')).toBe(report);

    const shown = await ok(['job', 'show', '-n', id]);
    expect(shown).toMatchObject({ id, status: 'Completed', counts: { items: { total: 5, succeeded: 5, failed: 0 } } });
    const listed = await ok(['job', 'list', '--endpoint', ep, '--status', 'Completed']);
    expect(listed.map((j: Json) => j.id)).toEqual([id]);
    expect(await ok(['job', 'list', '--endpoint', ep, '--status', 'Failed'])).toEqual([]);
    // Without --endpoint: every endpoint's jobs (GET /api/jobs), filtered by status.
    const all = await ok(['job', 'list', '--status', 'Completed', '--max-results', '100', '-o', 'json']);
    expect(all.map((j: Json) => j.id)).toContain(id);
    expect(all.every((j: Json) => j.status === 'Completed')).toBe(true);
  }, 240_000);

  it('exits 3 for a Failed job and 4 for a Canceled one, and 0 only for Completed', async () => {
    const ep = uniqueName('cliexit');
    write(`${ep}/fail/score.js`, "export function init() {}\nexport function run() { throw new Error('scoring exploded'); }\n");
    write(`${ep}/slow/score.js`, fixtureScript('slow.js'));
    write(`${ep}/m/model.txt`, 'a model file the scripts ignore');
    write(`${ep}/endpoint.yml`, `name: ${ep}\n`);
    const deployment = (name: string, code: string, extra: string): string =>
      `name: ${name}\nendpoint_name: ${ep}\nmodel:\n  name: ${ep}-m\n  version: 1\n  type: custom_model\n  path: ./m\ncode_configuration:\n  code: ./${code}\n  scoring_script: score.js\nsettings:\n  mini_batch_size: 1\n  error_threshold: 0\n  retry_settings:\n    max_retries: 0\n${extra}`;
    write(`${ep}/fail.yml`, deployment('fails', 'fail', ''));
    write(`${ep}/slow.yml`, deployment('slow', 'slow', '  environment_variables:\n    SLOW_MS: 1500\n'));
    await ok(['endpoint', 'create', '-f', `${ep}/endpoint.yml`]);
    await ok(['deployment', 'create', '-f', `${ep}/fail.yml`, '--set-default']);
    await ok(['deployment', 'create', '-f', `${ep}/slow.yml`]);
    for (let i = 0; i < 8; i++) write(`${ep}/in/f${i}.txt`, `line ${i}\n`);

    const failed = await cli(['endpoint', 'invoke', '-n', ep, '--input', `${ep}/in`, '--stream', '--interval', '0.5']);
    expect(failed.code, failed.stderr + failed.stdout).toBe(3);
    expect(failed.stdout).toMatch(/Job \S+ Failed/);
    expect(failed.stdout).toMatch(/scoring exploded|error_threshold|threshold/);

    const started = await ok(['endpoint', 'invoke', '-n', ep, '-d', 'slow', '--input', `${ep}/in`]);
    expect(started.deployment).toBe('slow');
    await waitFor(async () => ((await api.call('GET', `jobs/${started.id}`)).body.status === 'Running' ? true : undefined), { timeoutMs: 60_000, what: 'the slow job to run' });
    expect((await ok(['job', 'cancel', '-n', started.id])).status).toMatch(/Cancel/);
    const canceled = await cli(['job', 'stream', '-n', started.id, '--interval', '0.5']);
    expect(canceled.code, canceled.stderr + canceled.stdout).toBe(4);
    expect(canceled.stdout).toMatch(new RegExp(`Job ${started.id} Canceled`));
    expect((await api.call('GET', `jobs/${started.id}`)).body.status).toBe('Canceled');
  }, 240_000);

  it('names the file, line and field of bad YAML, of a schema problem, and of a problem the API finds', async () => {
    write('bad/syntax.yml', 'name: broken\nsettings:\n  mini_batch_size: 3\n   error_threshold: 2\n');
    const syntax = await cli(['deployment', 'create', '-f', 'bad/syntax.yml', '-e', 'anything']);
    expect(syntax.code).toBe(1);
    expect(syntax.stderr).toMatch(/^error: bad\/syntax\.yml:3:20: settings\.mini_batch_size: invalid YAML: /m);

    write('bad/duplicate.yml', 'name: twice\ntype: onnx\npath: azureml://datastores/workspaceblobstore/paths/x/\ntype: custom_model\n');
    const duplicate = await cli(['model', 'create', '-f', 'bad/duplicate.yml']);
    expect(duplicate.stderr).toMatch(/^error: bad\/duplicate\.yml:4:1: type: invalid YAML: Map keys must be unique/m);

    write('bad/schema.yml', 'name: wrong\nendpoint_name: nowhere\nmodel: azureml:m:1\nsettings:\n  mini_batch_size: ten\n  retry_settings:\n    max_retries: 3\n    timeoutt: 30\n');
    const schema = await cli(['deployment', 'create', '-f', 'bad/schema.yml']);
    expect(schema.code).toBe(1);
    expect(schema.stderr).toContain('bad/schema.yml:5:3: settings.mini_batch_size: ');
    expect(schema.stderr).toContain('bad/schema.yml:8:5: settings.retry_settings.timeoutt: unknown field');

    const set = await cli(['deployment', 'create', '-f', 'bad/schema.yml', '--set', 'settings.mini_batch_size=0', '--set', 'settings.retry_settings={max_retries: 1}']);
    expect(set.stderr).toContain('--set settings.mini_batch_size=0: settings.mini_batch_size: ');

    // The API's own check (the endpoint exists only there): its problem+json field, at the file's line.
    const ep = uniqueName('clibad');
    write('bad/endpoint.yml', `name: ${ep}\n`);
    await ok(['endpoint', 'create', '-f', 'bad/endpoint.yml']);
    write('bad/missing-model.yml', `name: dep\nendpoint_name: ${ep}\nmodel: azureml:no-such-model:7\n`);
    const missing = await cli(['deployment', 'create', '-f', 'bad/missing-model.yml']);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/PUT \/api\/endpoints\/\S+\/deployments\/dep: 404/);
    expect(missing.stderr).toMatch(/bad\/missing-model\.yml:3:1: model: /);

    write('bad/local.yml', 'name: lost\ntype: onnx\npath: ./not/here\n');
    const local = await cli(['model', 'create', '-f', 'bad/local.yml']);
    expect(local.stderr).toMatch(/bad\/local\.yml:3:1: path: \.\/not\/here \(.*\) does not exist/);
  }, 240_000);
});
