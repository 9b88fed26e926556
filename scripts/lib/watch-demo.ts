/**
 * `npm run demo -- --watch`: the event-driven path, end to end on this machine. fnhost runs the
 * app with local.settings.json.example's Event Grid settings (blob writes to its Azurite go to the
 * `blobCreated` function; job events go to the local topic `batch-jobs`), and a webhook sink in
 * this process subscribes to that topic. A trigger rule turns CSV files dropped under `incoming/`
 * into one job per window; the demo follows it and prints the job events as they arrive.
 */
import { type Server, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { BatchClient, JobView } from './batch-client.js';
import { type LocalSettings, type LocalStack, readLocalSettings, withTopicSubscription } from './local-stack.js';
import { penguinRows, toCsv, uploadFiles } from './sample-data.js';

const CONTAINER = 'azureml-blobstore';
const ds = (path: string): string => `azureml://datastores/workspaceblobstore/paths/${path}`;
const clock = (at = new Date()): string => at.toISOString().slice(11, 23);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A job event as the sink receives it (CloudEvents 1.0, structured mode). */
export interface ReceivedEvent {
  id: string;
  type: string;
  subject: string;
  data: { job_id: string; status: string; previous_status: string | null; sequence: number; counts?: JobView['counts']; error: { code: string; message: string } | null };
}

/**
 * A webhook subscriber of an Event Grid topic, as a real HTTP server: it answers the CloudEvents
 * validation handshake (OPTIONS with WebHook-Request-Origin) and takes one event per POST.
 */
export class EventSink {
  readonly events: ReceivedEvent[] = [];
  handshakes = 0;
  url = '';
  readonly #server: Server;

  constructor(onEvent: (event: ReceivedEvent) => void, onHandshake: (origin: string) => void = () => undefined) {
    this.#server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        if (req.method === 'OPTIONS') {
          const origin = String(req.headers['webhook-request-origin'] ?? '');
          this.handshakes++;
          onHandshake(origin);
          res.writeHead(200, { 'webhook-allowed-origin': origin || '*' }).end();
          return;
        }
        let body: unknown;
        try {
          body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
        } catch {
          res.writeHead(400).end();
          return;
        }
        for (const event of (Array.isArray(body) ? body : [body]) as ReceivedEvent[]) {
          // At least once: a redelivery repeats an id.
          if (this.events.some((e) => e.id === event.id)) continue;
          this.events.push(event);
          onEvent(event);
        }
        res.writeHead(200).end();
      });
    });
  }

  async listen(): Promise<void> {
    await new Promise<void>((done) => this.#server.listen(0, '127.0.0.1', done));
    this.url = `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
  }

  close(): Promise<void> {
    this.#server.closeAllConnections();
    return new Promise((done) => this.#server.close(() => done()));
  }

  of(jobId: string): ReceivedEvent[] {
    return this.events.filter((e) => e.data.job_id === jobId);
  }
}

export const TOPIC = 'batch-jobs';

/** The example settings, with the sink subscribed to the job events topic. */
export function watchSettings(sinkUrl: string): LocalSettings {
  return withTopicSubscription(readLocalSettings(), TOPIC, { name: 'demo-sink', endpoint: `${sinkUrl}/events`, eventDeliverySchema: 'CloudEventSchemaV1_0' });
}

export interface WatchOptions {
  files: number;
  rows: number;
  miniBatchSize: number;
  windowSeconds: number;
  endpoint: string;
  step: (text: string) => void;
}

/** The model, endpoint and deployment are registered already; this adds the rule, drops files and watches. */
export async function watchDemo(stack: LocalStack, client: BatchClient, sink: EventSink, o: WatchOptions): Promise<void> {
  const rule = 'incoming-csv';
  const prefix = 'incoming/';
  o.step(`Trigger rule "${rule}": .csv files written under ${prefix} start jobs, ${o.windowSeconds} s window, at most 50 files a job`);
  const ruleBody = {
    source: { datastore: 'workspaceblobstore', path_prefix: prefix, suffixes: ['.csv'] },
    settings: { mini_batch_size: o.miniBatchSize },
    output_path: ds('scored/{rule}/{date}/{job_id}/'),
    batching: { window_seconds: o.windowSeconds, max_files: 50 },
  };
  const put = await client.request<{ uid: string }>('PUT', `endpoints/${o.endpoint}/triggers/${rule}`, ruleBody);
  console.log(`  PUT /api/endpoints/${o.endpoint}/triggers/${rule} → ${put.status}`);
  console.log(`  ${JSON.stringify(ruleBody)}`);

  const day = new Date().toISOString().slice(0, 10);
  const rows = penguinRows(o.files * o.rows, 11);
  const files: Record<string, string> = {};
  for (let f = 0; f < o.files; f++) files[`${day}/penguins-${String(f + 1).padStart(2, '0')}.csv`] = toCsv(rows.slice(f * o.rows, (f + 1) * o.rows));
  o.step(`Dropping ${o.files} CSV files into ${ds(prefix)} (as a user or an upstream system would), and a .txt the rule does not take`);
  const firstAt = new Date();
  for (const [name, content] of Object.entries(files)) {
    await uploadFiles(stack.storageConnection, CONTAINER, prefix, { [name]: content });
    console.log(`  ${clock()}  PUT ${prefix}${name}  (${content.length.toLocaleString('en')} bytes, ${o.rows} rows)`);
    await sleep(150);
  }
  await uploadFiles(stack.storageConnection, CONTAINER, prefix, { [`${day}/README.txt`]: 'notes, not data\n' });
  console.log(`  ${clock()}  PUT ${prefix}${day}/README.txt  (not .csv: ignored)`);
  console.log('  each write is a Microsoft.Storage.BlobCreated event from fnhost\'s Azurite to the blobCreated function');

  o.step(`Waiting for the window to close (${o.windowSeconds} s after the first file)`);
  const triggered = async (): Promise<JobView[]> => {
    const list = await client.get<{ value: (JobView & { tags?: Record<string, string> })[] }>(`endpoints/${o.endpoint}/jobs?top=100`);
    return list.value.filter((j) => j.tags?.['trigger'] === rule).reverse();
  };
  let jobs: JobView[] = [];
  for (const deadline = Date.now() + 60_000; jobs.length === 0; ) {
    if (Date.now() > deadline) throw new Error('no job was started by the trigger within a minute');
    await sleep(200);
    jobs = await triggered();
  }
  const started = jobs[0] as JobView;
  const view = await client.job<JobView & { display_name: string; invoked_by: unknown; inputs: Record<string, { uri: string; file_count: number; files: { name: string; etag: string }[] }> }>(started.id);
  const input = view.inputs['input_data'];
  console.log(`  ${clock()}  job ${view.id} started, ${((Date.parse(view.created_at) - firstAt.getTime()) / 1000).toFixed(1)} s after the first file: "${view.display_name}"`);
  console.log(`  invoked_by ${JSON.stringify(view.invoked_by)}`);
  console.log(`  input_data ${input?.uri ?? ''} — a file list of ${input?.file_count ?? 0} files:`);
  for (const f of input?.files ?? []) console.log(`    ${f.name.padEnd(28)} eTag ${f.etag}`);
  // The list names files in its folder (the files' common folder).
  const folder = (input?.uri ?? '').slice(ds('').length);
  const expected = Object.keys(files).map((n) => `${prefix}${n}`).sort();
  const listed = (input?.files ?? []).map((f) => `${folder}${f.name}`).sort();
  console.log(`  exactly the files dropped: ${JSON.stringify(listed) === JSON.stringify(expected) ? 'yes' : `NO (expected ${expected.join(', ')})`}`);

  o.step(`Following job ${view.id} (job events from the sink as they arrive)`);
  let last = '';
  const job = await client.waitForJob(view.id, (j) => {
    const line = `${j.status} | mini-batches ${j.counts.mini_batches.succeeded + j.counts.mini_batches.failed}/${j.counts.mini_batches.total} | items ok ${j.counts.items.succeeded} failed ${j.counts.items.failed}`;
    if (line !== last) console.log(`  ${clock()}  job  ${line}`);
    last = line;
  });
  // The terminal event is published once the job record has ended: it may trail the status by a moment.
  for (const deadline = Date.now() + 15_000; !sink.of(job.id).some((e) => e.data.status === job.status) && Date.now() < deadline; ) await sleep(100);

  o.step(`Job ${job.id}: ${job.status}`);
  if (job.error) console.log(`  error: ${job.error.code}: ${job.error.message}`);
  console.log(`  items: ${job.counts.items.succeeded} succeeded, ${job.counts.items.failed} failed; mini-batches: ${job.counts.mini_batches.succeeded}/${job.counts.mini_batches.total}`);
  const output = Object.values(job.outputs)[0];
  console.log(`  outputs: ${output?.path ?? ''}`);
  for (const [kind, uri] of Object.entries(output?.files ?? {})) console.log(`    ${kind.padEnd(18)} ${uri}`);
  if (job.status === 'Completed') {
    const predictions = await client.output(job.id, 'predictions.csv');
    const lines = predictions.split('\n').filter((l) => l !== '');
    console.log(`  predictions.csv: ${lines.length.toLocaleString('en')} rows for ${(o.files * o.rows).toLocaleString('en')} rows dropped (columns ${(job.columns ?? []).join(', ')}), the first ones:`);
    for (const line of lines.slice(0, 4)) console.log(`    ${line}`);
  }

  const events = sink.of(job.id);
  o.step(`Job events the sink received for ${job.id}: ${events.length}, after ${sink.handshakes} validation handshake(s)`);
  for (const e of events) console.log(`  #${e.data.sequence} ${e.type.padEnd(31)} ${(e.data.previous_status ?? '-').padEnd(10)} → ${e.data.status.padEnd(10)} id ${e.id}`);

  await sleep(o.windowSeconds * 1000 + 1000);
  const after = await triggered();
  console.log(`\n  ${after.length === 1 ? 'Still one job' : `${after.length} jobs (expected one)`} for rule "${rule}" a window later.`);
}
