/**
 * `npm run demo`: the main job, end to end on this machine. Starts fnhost (with Azurite), uploads
 * the penguin classifier and sample CSV files to the workspace datastore, registers the model,
 * creates an endpoint with a deployment, invokes it, shows progress, and prints where the outputs
 * are and their first rows.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import cliProgress from 'cli-progress';
import { Command } from 'commander';
import { BatchClient, type JobView } from './lib/batch-client.js';
import { ROOT, startLocalStack } from './lib/local-stack.js';
import { penguinRows, toCsv, uploadFiles } from './lib/sample-data.js';

const program = new Command()
  .name('demo')
  .description('Run a batch scoring job on a local batch endpoint')
  .option('--files <n>', 'sample CSV files to score', (v) => Number(v), 8)
  .option('--rows <n>', 'rows per file', (v) => Number(v), 250)
  .option('--mini-batch-size <n>', 'files per mini-batch', (v) => Number(v), 2)
  .option('--keep', 'leave the host running afterwards', false)
  .parse();
const opts = program.opts<{ files: number; rows: number; miniBatchSize: number; keep: boolean }>();

const step = (text: string): void => {
  process.stdout.write(`\n» ${text}\n`);
};

async function main(): Promise<void> {
  step('Starting fnhost with Azurite (this app, in memory)');
  const stack = await startLocalStack();
  const client = new BatchClient(stack.url, stack.masterKey);
  console.log(`  host ${stack.url}`);
  try {
    step('Uploading the model and sample data to the workspace datastore');
    const container = 'azureml-blobstore';
    await uploadFiles(stack.storageConnection, container, 'models/penguins/1/', {
      'penguins.onnx': readFileSync(join(ROOT, 'scripts', 'demo', 'model', 'penguins.onnx')),
    });
    const rows = penguinRows(opts.files * opts.rows, 7);
    const files: Record<string, string> = {};
    for (let f = 0; f < opts.files; f++) files[`penguins-${String(f).padStart(3, '0')}.csv`] = toCsv(rows.slice(f * opts.rows, (f + 1) * opts.rows));
    await uploadFiles(stack.storageConnection, container, 'data/penguins/', files);
    console.log(`  ${opts.files} CSV files, ${rows.length} rows: azureml://datastores/workspaceblobstore/paths/data/penguins/`);

    step('Registering model penguins:1, endpoint "penguins" and deployment "classifier"');
    await client.put('models/penguins/versions/1', { type: 'onnx', path: 'azureml://datastores/workspaceblobstore/paths/models/penguins/1/penguins.onnx', description: 'Penguin species from measurements' });
    await client.put('endpoints/penguins', { description: 'Penguin species, in batch' });
    await client.put('endpoints/penguins/deployments/classifier', {
      model: 'azureml:penguins:1',
      resources: { instance_count: 1 },
      settings: { max_concurrency_per_instance: 2, mini_batch_size: opts.miniBatchSize, output_action: 'append_row', output_file_name: 'predictions.csv' },
    });
    await client.put('endpoints/penguins', { description: 'Penguin species, in batch', defaults: { deployment_name: 'classifier' } });

    step('Invoking the endpoint');
    const started = await client.invoke(
      'penguins',
      { inputs: { penguins: { type: 'uri_folder', path: 'azureml://datastores/workspaceblobstore/paths/data/penguins/' } } },
      { 'idempotency-key': `demo-${Date.now()}` },
    );
    console.log(`  202 Accepted: job ${started.id} (${started.status})`);
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
    if (opts.keep) {
      console.log(`\nfnhost keeps running at ${stack.url} (master key ${stack.masterKey}). Ctrl+C to stop.`);
      await new Promise(() => undefined);
    }
  } finally {
    if (!opts.keep) await stack.stop();
  }
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
