// temporary probe (not committed): timeline of a 1,000-file trivial job's first mini-batch
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startLocalStack, ROOT } from '../dist/scripts/lib/local-stack.js';
import { uploadFiles } from '../dist/scripts/lib/sample-data.js';
import { BatchClient } from '../dist/scripts/lib/batch-client.js';
const stack = await startLocalStack({});
try {
  const files = {};
  for (let f = 0; f < 1000; f++) files[`bench/b1000/f-${String(f).padStart(6, '0')}.txt`] = `item ${f}\n`;
  await uploadFiles(stack.storageConnection, 'azureml-blobstore', '', { 'code/trivial/score.js': readFileSync(join(ROOT, 'scripts', 'bench', 'trivial-scorer.js'), 'utf8'), 'models/none/model.txt': 'unused' });
  await uploadFiles(stack.storageConnection, 'azureml-blobstore', '', files);
  const client = new BatchClient(stack.url, stack.masterKey);
  const name = 'probe';
  await client.put(`models/${name}/versions/1`, { type: 'custom_model', path: 'azureml://datastores/workspaceblobstore/paths/models/none/' });
  await client.put(`endpoints/${name}`, {});
  await client.put(`endpoints/${name}/deployments/main`, { model: `azureml:${name}:1`, code_configuration: { code: 'azureml://datastores/workspaceblobstore/paths/code/trivial/', scoring_script: 'score.js' }, settings: { max_concurrency_per_instance: 2, mini_batch_size: 10 } });
  await client.put(`endpoints/${name}`, { defaults: { deployment_name: 'main' } });
  for (let r = 0; r < Number(process.env.RUNS ?? 3); r++) {
    const job = await client.invoke(name, { inputs: { data: { type: 'uri_folder', path: 'azureml://datastores/workspaceblobstore/paths/bench/b1000/' } } });
    const accepted = Date.now(); (await import("node:fs")).appendFileSync("/tmp/probe-times.log", `${accepted} ACCEPTED\n`);
    const done = await client.waitForJob(job.id, () => undefined, 500);
    const log = await client.output(job.id, 'logs/job.log');
    const rec = await client.get ? null : null;
    console.log(`run ${r}: ${done.status} started_at +${Date.parse(done.started_at ?? '') - accepted} ms`);
    for (const line of log.split('\n').slice(0, 12)) {
      const t = Date.parse(line.split(' ')[0]);
      if (!Number.isNaN(t)) console.log(`  +${String(t - accepted).padStart(5)} ms ${line.slice(25, 200)}`);
    }
  }
} finally {
  await stack.stop();
}
