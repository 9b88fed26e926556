/**
 * `npm run demo`: the main job, end to end on this machine. Starts fnhost (with Azurite), uploads
 * the penguin classifier and sample CSV files to the workspace datastore, registers the model,
 * creates an endpoint with a deployment, invokes it, shows progress, and prints where the outputs
 * are and their first rows.
 *
 * `npm run demo -- --pipeline`: a pipeline deployment instead. Penguin CSV files with missing
 * values are cleaned by a command step (prepare), scored by a parallel step (the same ONNX model)
 * and counted by another command step (summarize); the demo shows each step as the job view does,
 * summary.json, and a second invocation whose steps are all reused.
 *
 * `npm run demo -- --watch`: the event-driven path (scripts/lib/watch-demo.ts). fnhost runs with
 * local.settings.json.example's Event Grid settings; a trigger rule makes one job of the CSV files
 * dropped under incoming/ within a window, and a webhook sink here prints the job's events.
 *
 * `npm run demo -- --auth entra` (with the model or the pipeline demo): the app validates
 * Microsoft Entra ID bearer tokens (BATCH_AUTH_MODE=entra) against a local OpenID issuer started
 * here (scripts/lib/oidc-issuer.ts: discovery and JWKS, real RSA keys). An application token with
 * the app role Workspace.Manage registers everything; a user's token with the scope Jobs.Invoke
 * invokes the endpoint, follows the job and reads its outputs: the job records that user as its
 * invoker.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import cliProgress from 'cli-progress';
import { Command } from 'commander';
import { ApiError, BatchClient, type JobView, type PipelineJobView, type StepView } from './lib/batch-client.js';
import { ROOT, type LocalStack, startLocalStack } from './lib/local-stack.js';
import { penguinCsvsWithMissing, pipelineInvokeBody, secondsBetween, setUpPipelineDemo } from './lib/pipeline-demo.js';
import { penguinRows, toCsv, uploadFiles } from './lib/sample-data.js';
import { EventSink, TOPIC, watchDemo, watchSettings } from './lib/watch-demo.js';
import { ISSUER_FILE, LOCAL_AUDIENCE, LOCAL_TENANT, LocalIssuer } from './lib/oidc-issuer.js';

const program = new Command()
  .name('demo')
  .description('Run a batch scoring job on a local batch endpoint')
  .option('--files <n>', 'sample CSV files to score', (v) => Number(v), 8)
  .option('--rows <n>', 'rows per file', (v) => Number(v), 250)
  .option('--mini-batch-size <n>', 'files per mini-batch', (v) => Number(v), 2)
  .option('--pipeline', 'run a pipeline deployment (prepare → score → summarize) instead of a model deployment', false)
  .option('--watch', 'event-driven: CSV files dropped under incoming/ start a job through a trigger rule; job events to a local webhook', false)
  .option('--window <seconds>', 'with --watch: the trigger rule\'s batching window', (v) => Number(v), 3)
  .option('--auth <mode>', 'how the demo authenticates: function_key, or entra (bearer tokens from a local OpenID issuer)', 'function_key')
  .option('--keep', 'leave the host running afterwards', false)
  .parse();
const opts = program.opts<{ files: number; rows: number; miniBatchSize: number; pipeline: boolean; watch: boolean; window: number; auth: string; keep: boolean }>();
if (!['function_key', 'entra'].includes(opts.auth) || (opts.auth === 'entra' && opts.watch)) {
  console.error(`--auth must be function_key or entra${opts.watch ? ' (--watch runs with function keys)' : ''}`);
  process.exit(2);
}

/** Who the demo acts as: `admin` registers resources, `invoker` invokes and follows the job (one client with function keys). */
interface Clients {
  admin: BatchClient;
  invoker: BatchClient;
}

const step = (text: string): void => {
  process.stdout.write(`\n» ${text}\n`);
};

async function main(): Promise<void> {
  if (opts.watch) return watchMain();
  const issuer = opts.auth === 'entra' ? await LocalIssuer.create() : undefined;
  if (issuer) {
    step('Starting a local OpenID issuer (Microsoft Entra ID\'s discovery and JWKS, RSA keys generated now)');
    await issuer.start();
    console.log(`  ${issuer.metadataUrl.replace('{tenant}', LOCAL_TENANT)}`);
  }
  step(`Starting fnhost with Azurite (this app, in memory)${issuer ? ', BATCH_AUTH_MODE=entra' : ''}`);
  const stack = await startLocalStack(
    issuer ? { env: { BATCH_AUTH_MODE: 'entra', BATCH_AUTH_TENANTS: LOCAL_TENANT, BATCH_AUTH_AUDIENCES: LOCAL_AUDIENCE, BATCH_AUTH_METADATA_URL: issuer.metadataUrl } } : {},
  );
  console.log(`  host ${stack.url}`);
  console.log(`  web page ${stack.url}/api/app/ (sign in with the master key; with --keep it stays up)`);
  try {
    const clients = issuer ? await entraClients(stack, issuer) : { admin: new BatchClient(stack.url, stack.masterKey), invoker: new BatchClient(stack.url, stack.masterKey) };
    if (opts.pipeline) await pipelineDemo(stack, clients);
    else await modelDemo(stack, clients);
    if (opts.keep) {
      if (issuer) await issuer.save();
      console.log(`\nfnhost keeps running at ${stack.url} (${issuer ? `issuer ${issuer.url}, keys in ${ISSUER_FILE}: npm run token -- --scope Jobs.Read` : `master key ${stack.masterKey}`}). Ctrl+C to stop.`);
      await new Promise(() => undefined);
    }
  } finally {
    if (!opts.keep) {
      await stack.stop();
      await issuer?.stop();
    }
  }
}

/**
 * Tokens from the local issuer, as Entra ID would issue them for the app's API: an application
 * (client credentials) with the app role Workspace.Manage, and a user with the delegated scope
 * Jobs.Invoke. Shows what the API answers without a token and to the user asking to manage.
 */
async function entraClients(stack: LocalStack, issuer: LocalIssuer): Promise<Clients> {
  step('Minting tokens: an application with the role Workspace.Manage, user ada@contoso.test with the scope Jobs.Invoke');
  const admin = new BatchClient(stack.url, '', { authorization: `Bearer ${await issuer.token({ roles: ['Workspace.Manage'], appId: 'demo-admin-app' })}` });
  const invoker = new BatchClient(stack.url, '', { authorization: `Bearer ${await issuer.token({ scopes: ['Jobs.Invoke'], username: 'ada@contoso.test' })}` });
  const refused = async (client: BatchClient, method: string, path: string, body?: unknown): Promise<string> => {
    try {
      await client.request(method, path, body);
      return 'accepted (unexpected)';
    } catch (err) {
      const problem = (err instanceof ApiError ? err.body : {}) as { status?: number; detail?: string };
      return `${problem.status ?? '?'} ${problem.detail ?? String(err)}`;
    }
  };
  console.log(`  no token:              GET /api/endpoints → ${await refused(new BatchClient(stack.url, '', {}), 'GET', 'endpoints')}`);
  console.log(`  ada (Jobs.Invoke):     PUT /api/endpoints/x → ${await refused(invoker, 'PUT', 'endpoints/x', {})}`);
  return { admin, invoker };
}

const uploadModel = (stack: LocalStack): Promise<void> =>
  uploadFiles(stack.storageConnection, 'azureml-blobstore', 'models/penguins/1/', {
    'penguins.onnx': readFileSync(join(ROOT, 'scripts', 'demo', 'model', 'penguins.onnx')),
  });

/** Model penguins:1, endpoint "penguins" and its default deployment "classifier". */
async function registerPenguins(client: BatchClient): Promise<void> {
  await client.put('models/penguins/versions/1', { type: 'onnx', path: 'azureml://datastores/workspaceblobstore/paths/models/penguins/1/penguins.onnx', description: 'Penguin species from measurements' });
  await client.put('endpoints/penguins', { description: 'Penguin species, in batch' });
  await client.put('endpoints/penguins/deployments/classifier', {
    model: 'azureml:penguins:1',
    resources: { instance_count: 1 },
    settings: { max_concurrency_per_instance: 2, mini_batch_size: opts.miniBatchSize, output_action: 'append_row', output_file_name: 'predictions.csv' },
  });
  await client.put('endpoints/penguins', { description: 'Penguin species, in batch', defaults: { deployment_name: 'classifier' } });
}

async function watchMain(): Promise<void> {
  const sink = new EventSink(
    (e) => console.log(`  ${new Date().toISOString().slice(11, 23)}  event ${e.type.padEnd(31)} ${e.data.status.padEnd(10)} #${e.data.sequence}  ${e.subject}`),
    (origin) => console.log(`  ${new Date().toISOString().slice(11, 23)}  sink: validation handshake (OPTIONS, WebHook-Request-Origin: ${origin}) answered`),
  );
  await sink.listen();
  step('Starting fnhost with Azurite (this app, in memory) with local.settings.json.example\'s Event Grid settings');
  const stack = await startLocalStack({ localSettings: watchSettings(sink.url) });
  const client = new BatchClient(stack.url, stack.masterKey);
  console.log(`  host ${stack.url}`);
  console.log('  storage subscription blob-created-to-app: Microsoft.Storage.BlobCreated, data.api PutBlob/PutBlockList/CopyBlob/FlushWithClose → function blobCreated');
  console.log(`  topic ${TOPIC}: BATCH_EVENTS_TOPIC_ENDPOINT = %FNHOST_EVENTGRID_BATCH_JOBS_ENDPOINT% = ${stack.url}/runtime/eventgrid/topics/${TOPIC}/api/events`);
  console.log(`  webhook sink ${sink.url}/events subscribed to ${TOPIC} (CloudEvents 1.0), in this process`);
  try {
    step('Uploading the model; registering model penguins:1, endpoint "penguins" and deployment "classifier"');
    await uploadModel(stack);
    await registerPenguins(client);
    // One job holds them all: the rule's max_files is 50.
    await watchDemo(stack, client, sink, { files: Math.min(opts.files, 50), rows: opts.rows, miniBatchSize: opts.miniBatchSize, windowSeconds: opts.window, endpoint: 'penguins', step });
    if (opts.keep) {
      console.log(`\nfnhost keeps running at ${stack.url} (master key ${stack.masterKey}); drop more .csv files under incoming/ of container azureml-blobstore`);
      console.log(`(${stack.storageConnection}) and their jobs' events print here. Ctrl+C to stop.`);
      await new Promise(() => undefined);
    }
  } finally {
    if (!opts.keep) {
      await stack.stop();
      await sink.close();
    }
  }
}

async function modelDemo(stack: LocalStack, { admin, invoker: client }: Clients): Promise<void> {
  step('Uploading the model and sample data to the workspace datastore');
  const container = 'azureml-blobstore';
  await uploadModel(stack);
  const rows = penguinRows(opts.files * opts.rows, 7);
  const files: Record<string, string> = {};
  for (let f = 0; f < opts.files; f++) files[`penguins-${String(f).padStart(3, '0')}.csv`] = toCsv(rows.slice(f * opts.rows, (f + 1) * opts.rows));
  await uploadFiles(stack.storageConnection, container, 'data/penguins/', files);
  console.log(`  ${opts.files} CSV files, ${rows.length} rows: azureml://datastores/workspaceblobstore/paths/data/penguins/`);

  step('Registering model penguins:1, endpoint "penguins" and deployment "classifier"');
  await registerPenguins(admin);

  step('Invoking the endpoint');
  const started = await client.invoke(
    'penguins',
    { inputs: { penguins: { type: 'uri_folder', path: 'azureml://datastores/workspaceblobstore/paths/data/penguins/' } } },
    { 'idempotency-key': `demo-${Date.now()}` },
  );
  console.log(`  202 Accepted: job ${started.id} (${started.status}), invoked by ${invokerText(started.invoked_by)}`);
  const bar = new cliProgress.SingleBar(
    { format: '  {bar} {value}/{total} mini-batches | {status} | items ok {ok} failed {failed}', hideCursor: true },
    cliProgress.Presets.shades_classic,
  );
  bar.start(1, 0, { status: started.status, ok: 0, failed: 0 });
  const job: JobView = await client.waitForJob(started.id, (j) => {
    const done = j.counts.mini_batches.succeeded + j.counts.mini_batches.failed;
    bar.setTotal(Math.max(1, j.counts.mini_batches.total));
    bar.update(done, { status: j.status, ok: j.counts.items.succeeded, failed: j.counts.items.failed });
  });
  bar.stop();

  step(`Job ${job.id}: ${job.status}`);
  if (job.error) console.log(`  error: ${job.error.code}: ${job.error.message}`);
  console.log(`  items: ${job.counts.items.succeeded} succeeded, ${job.counts.items.failed} failed; mini-batches: ${job.counts.mini_batches.succeeded}/${job.counts.mini_batches.total}`);
  const output = Object.values(job.outputs)[0];
  console.log('  outputs:');
  for (const [kind, uri] of Object.entries(output?.files ?? {})) console.log(`    ${kind.padEnd(18)} ${uri}`);
  console.log(`  download: GET ${job.links.outputs['predictions'] ?? ''}`);
  const predictions = await client.output(job.id, 'predictions.csv');
  const predictedRows = predictions.split('\n').filter((l) => l !== '').length;
  console.log(`\n  predictions.csv: ${predictedRows.toLocaleString('en')} rows (columns ${(job.columns ?? []).join(', ')}), the first ones:`);
  for (const line of predictions.split('\n').slice(0, 8)) console.log(`    ${line}`);
  const report = await client.output(job.id, 'processed_mini_batches.csv');
  console.log('\n  processed_mini_batches.csv:');
  for (const line of report.trim().split('\n').slice(0, 6)) console.log(`    ${line}`);
}

/** Who a job says invoked it, e.g. `ada@contoso.test (user, entra)`. */
function invokerText(by: JobView['invoked_by']): string {
  return `${by.name} (${[by.kind, by.via].filter(Boolean).join(', ')})`;
}

/** `12:04:05.120` (UTC) of an ISO timestamp, or `-`. */
const clock = (iso: string | null): string => (iso ? iso.slice(11, 23) : '-');
const took = (from: string | null, to: string | null): string => {
  const s = secondsBetween(from, to);
  return s === undefined ? '-' : `${s.toFixed(2)} s`;
};

/** How a step input shows in the demo: a literal's value, a data URI, or the step output it takes. */
function inputText(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value);
  const v = value as { type?: string; value?: unknown; uri?: string; step?: string; output?: string };
  if (v.type === 'literal') return `literal ${JSON.stringify(v.value)}`;
  if (v.type === 'step_output') return `${v.step ?? ''}.outputs.${v.output ?? ''}`;
  return `${v.type ?? ''} ${v.uri ?? ''}`;
}

/** The steps running now, for the progress line: a parallel step with its mini-batches. */
function runningText(steps: StepView[]): string {
  const running = steps.filter((s) => s.status === 'Running' || s.status === 'Preparing' || s.status === 'Finalizing');
  if (running.length === 0) return '';
  return running
    .map((s) => {
      const mb = s.counts?.mini_batches;
      return mb && mb.total > 0 ? `${s.name} ${mb.succeeded + mb.failed}/${mb.total} mini-batches` : `${s.name} ${s.status.toLowerCase()}`;
    })
    .join(', ');
}

const ENDED = ['Completed', 'Failed', 'Canceled', 'Skipped'];

async function runPipelineJob(client: BatchClient, endpoint: string, body: unknown): Promise<PipelineJobView> {
  const started = await client.invoke<PipelineJobView>(endpoint, body, { 'idempotency-key': `demo-pipeline-${Date.now()}` });
  console.log(`  202 Accepted: job ${started.id} (${started.status}), invoked by ${invokerText(started.invoked_by)}, ${started.steps.length} steps: ${started.steps.map((s) => s.name).join(' → ')}`);
  const bar = new cliProgress.SingleBar({ format: '  {bar} {value}/{total} steps | {status} | {running}', hideCursor: true }, cliProgress.Presets.shades_classic);
  bar.start(started.steps.length, 0, { status: started.status, running: '' });
  const job = await client.waitForJob<PipelineJobView>(started.id, (j) => {
    bar.update(j.steps.filter((s) => ENDED.includes(s.status)).length, { status: j.status, running: runningText(j.steps) });
  });
  bar.stop();
  return job;
}

async function printStep(client: BatchClient, s: StepView, index: number): Promise<void> {
  const reused = s.reused_from ? `yes (job ${s.reused_from.job}, step ${s.reused_from.step})` : 'no';
  console.log(`\n  ${index + 1}. ${s.name}  ${s.type} step, component ${s.component}`);
  console.log(`     status    ${s.status}`);
  console.log(`     times     ${clock(s.started_at)} → ${clock(s.completed_at)} UTC (${took(s.started_at, s.completed_at)})`);
  console.log(`     reused    ${reused}`);
  for (const [i, [name, value]] of Object.entries(s.inputs).entries()) console.log(`     ${i === 0 ? 'inputs ' : '       '}   ${name.padEnd(13)} ${inputText(value)}`);
  for (const [i, [name, out]] of Object.entries(s.outputs).entries()) console.log(`     ${i === 0 ? 'outputs' : '       '}   ${name.padEnd(13)} ${out.uri}`);
  if (s.counts) {
    const { mini_batches: mb, items } = s.counts;
    console.log(`     counts    mini-batches ${mb.succeeded}/${mb.total} succeeded (${mb.failed} failed, ${mb.retried} retried); items (files) ${items.succeeded} succeeded, ${items.failed} failed`);
  }
  if (s.columns) console.log(`     columns   ${s.columns.join(', ')}`);
  if (s.error) console.log(`     error     ${s.error.code}: ${s.error.message}`);
  if (!s.log) return;
  console.log(`     log       ${s.log}`);
  // A command step's log is its script's own lines: show them, they say what the step did.
  if (s.type === 'command' && !s.reused) {
    const lines = (await client.text(s.log).catch(() => '')).split('\n').filter((l) => l.trim() !== '');
    for (const line of lines.slice(-3)) console.log(`               ${line}`);
  }
}

async function pipelineDemo(stack: LocalStack, { admin, invoker: client }: Clients): Promise<void> {
  const endpoint = 'penguin-pipeline';
  const dataPrefix = 'data/penguins-raw/';
  step('Uploading the model, the two scripts and sample data with missing values');
  const data = penguinCsvsWithMissing(opts.files, opts.rows);
  await setUpPipelineDemo(
    admin,
    stack.storageConnection,
    { dataPrefix, files: data.files, endpoint, deployment: 'steps', miniBatchSize: opts.miniBatchSize, maxConcurrency: 2 },
    (what) => {
      if (what === 'uploaded') {
        console.log(`  model   azureml://datastores/workspaceblobstore/paths/models/penguins/1/penguins.onnx`);
        console.log(`  code    …/paths/code/pipeline/prepare/prepare.js, …/paths/code/pipeline/summarize/summarize.js`);
        console.log(`  data    ${opts.files} CSV files, ${data.rows.toLocaleString('en')} rows, ${data.missing} of them with a missing value (NA or empty): …/paths/${dataPrefix}`);
        step('Registering model penguins:1 and the components');
      } else console.log(`  ${what}`);
    },
  );
  console.log(`  endpoint "${endpoint}", deployment "steps" (type pipeline, component azureml:penguin_pipeline:1) as its default`);

  step('Invoking the endpoint: raw_data (a folder) and drop_missing (a literal, true)');
  const body = pipelineInvokeBody(dataPrefix, true);
  console.log(`  POST /api/endpoints/${endpoint}/jobs ${JSON.stringify(body)}`);
  const job = await runPipelineJob(client, endpoint, body);

  step(`Job ${job.id}: ${job.status} in ${took(job.created_at, job.completed_at)}`);
  if (job.error) console.log(`  error: ${job.error.code}: ${job.error.message}`);
  for (const [name, input] of Object.entries(job.inputs)) console.log(`  input   ${name.padEnd(13)} ${inputText(input)}`);
  for (const [name, output] of Object.entries(job.outputs)) console.log(`  output  ${name.padEnd(13)} ${output.path}`);
  for (const [i, s] of job.steps.entries()) await printStep(client, s, i);

  const summarize = job.steps.find((s) => s.name === 'summarize');
  if (summarize?.status === 'Completed') {
    console.log(`\n  summary.json (GET /api/jobs/${job.id}/steps/summarize/outputs/summary.json):`);
    for (const line of (await client.stepOutput(job.id, 'summarize', 'summary.json')).trimEnd().split('\n')) console.log(`    ${line}`);
  }
  if (job.status !== 'Completed') return;

  step('Invoking again with the same inputs: nothing changed, so every step is reused (force_rerun is false)');
  const again = await runPipelineJob(client, endpoint, body);
  console.log(`  job ${again.id}: ${again.status} in ${took(again.created_at, again.completed_at)}`);
  for (const s of again.steps) console.log(`    ${s.name.padEnd(10)} ${s.status.padEnd(10)} reused ${s.reused_from ? `from job ${s.reused_from.job}, step ${s.reused_from.step}` : 'no'}`);
  // A reused step's outputs are copied into the new job's own output folders, so it reads like any job.
  const same = (await client.output(again.id, 'summary/summary.json')) === (await client.stepOutput(job.id, 'summarize', 'summary.json'));
  console.log(`  GET /api/jobs/${again.id}/outputs/summary/summary.json: ${same ? 'the same summary' : 'a different summary (unexpected)'}, in the new job's own output folder`);
  console.log('  (a deployment with settings.force_rerun true runs every step again; changed input content reruns the steps it reaches)');
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
