/**
 * Jobs from the command line: invoking an endpoint (local inputs uploaded first), following a job
 * with a live progress bar until it ends, and downloading its outputs.
 */
import { createWriteStream } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import type { ReadableStream } from 'node:stream/web';
import { pipeline } from 'node:stream/promises';
import cliProgress from 'cli-progress';
import { DEFAULT_OUTPUT_NAME, TERMINAL_JOB_STATUSES, invokeBody } from '../../shared/schemas/jobs.js';
import type { ApiClient } from './client.js';
import { ApiProblem, CliError, EXIT } from './errors.js';
import { type Column, field } from './output.js';
import { Plan, isLocalPath, putWithin } from './resources.js';
import { type DatastoreAccess, ensureParent } from './storage.js';
import { type Assignment, YamlSource } from './yaml-source.js';

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

/** The name `--input` gives the job's data input (as Azure ML's invoke names its one input). */
export const INPUT_NAME = 'input_data';
/** A model deployment's output (Azure ML's name), which `--output-path` sets. */
export const OUTPUT_NAME = DEFAULT_OUTPUT_NAME;

const TERMINAL: readonly string[] = TERMINAL_JOB_STATUSES;

export interface Counts {
  mini_batches: { total: number; succeeded: number; failed: number; retried: number };
  items: { total: number; succeeded: number; failed: number };
}

export interface JobView {
  id: string;
  type: 'model' | 'pipeline';
  status: string;
  endpoint: string | null;
  deployment: string | null;
  counts: Counts | null;
  error: { code: string; message: string } | null;
  outputs: Record<string, { type?: string; path: string; files?: Record<string, string> }>;
  steps: { name: string; status: string; log: string | null }[];
  links: { self: string; outputs?: Record<string, string> };
  created_at: string;
  started_at: string | null;
  completed_at: string | null;
}

export const JOB_COLUMNS: Column[] = [
  ['id', field('id')],
  ['endpoint', field('endpoint')],
  ['deployment', field('deployment')],
  ['status', field('status')],
  ['items', (j) => { const c = (j as unknown as JobView).counts?.items; return c ? `${c.succeeded + c.failed}/${c.total}` : ''; }],
  ['failed', field('counts', 'items', 'failed')],
  ['created_at', field('created_at')],
];

export interface InvokeOptions {
  endpoint: string;
  deployment?: string;
  input?: string;
  inputType?: 'uri_folder' | 'uri_file';
  outputPath?: string;
  inputsFile?: string;
  set: Assignment[];
}

/**
 * An inputs file's input as the API takes it. Azure ML writes literal inputs of a pipeline as
 * `{type: string|integer|number|boolean, default: v}` (or `value: v`); the API's form is
 * `{type: literal, value: v}` (or the bare value). Data inputs are `{type, path}` as they are.
 */
function invokeInput(value: unknown): unknown {
  if (!isObj(value) || !['string', 'integer', 'number', 'boolean'].includes(String(value['type']))) return value;
  const { type: _type, default: fallback, value: given, ...rest } = value;
  return { type: 'literal', value: given ?? fallback, ...rest };
}

/** Builds the invoke body (inputs file, `--input`, `--output-path`, `--set`), uploads local inputs, and invokes. */
export async function invoke(api: ApiClient, access: DatastoreAccess, options: InvokeOptions): Promise<JobView> {
  const src = options.inputsFile ? YamlSource.load(options.inputsFile) : YamlSource.empty('(command line)');
  const cwd = YamlSource.empty('(command line)');
  if (options.input !== undefined) src.assign(['inputs', INPUT_NAME], { ...(options.inputType ? { type: options.inputType } : {}), path: options.input }, `--input ${options.input}`);
  if (options.outputPath !== undefined) src.assign(['outputs', OUTPUT_NAME], { path: options.outputPath }, `--output-path ${options.outputPath}`);
  for (const s of options.set) src.set(s);
  const body = src.value();
  delete body['$schema'];
  const plan = new Plan();
  if (isObj(body['inputs'])) {
    const inputs = body['inputs'];
    for (const [name, value] of Object.entries(inputs)) {
      inputs[name] = invokeInput(value);
      const input = inputs[name];
      if (!isObj(input)) continue;
      // --input paths are relative to the working folder; an inputs file's to the file.
      const from = name === INPUT_NAME && options.input !== undefined ? cwd : src;
      if (isLocalPath(input['path'])) {
        plan.localPath(from, input, 'path', `inputs.${name}.path`);
        // The uploaded type follows what is there (a folder or a file) unless stated.
        const upload = plan.uploads.at(-1);
        if (upload && input['type'] === undefined) {
          const assign = upload.assign;
          upload.assign = (uri) => {
            assign(uri);
            input['type'] = uri.endsWith('/') ? 'uri_folder' : 'uri_file';
          };
        }
      }
    }
  }
  src.parse(invokeBody, 'invoke request', body);
  await plan.run(access);
  return putWithin(src, '', () =>
    api.json<JobView>('POST', `endpoints/${encodeURIComponent(options.endpoint)}/jobs`, body, options.deployment ? { 'azureml-model-deployment': options.deployment } : undefined),
  );
}

/** The exit code for a job's final status: 0 only for Completed. */
export function exitCodeOf(status: string): number {
  if (status === 'Completed') return EXIT.ok;
  if (status === 'Canceled') return EXIT.jobCanceled;
  return EXIT.jobFailed;
}

function finishedItems(job: JobView): number {
  return job.counts ? job.counts.items.succeeded + job.counts.items.failed : 0;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** The last `lines` lines of a log the API serves (a missing log is said so, not an error). */
async function logTail(api: ApiClient, link: string, lines: number): Promise<string | undefined> {
  try {
    const text = await (await api.send('GET', link)).text();
    return text.split('\n').filter((l, i, all) => l !== '' || i < all.length - 1).slice(-lines).join('\n');
  } catch (err) {
    if (err instanceof ApiProblem && err.status === 404) return undefined;
    throw err;
  }
}

export interface StreamOptions {
  /** Seconds between polls. */
  interval: number;
  /** Log lines shown at the end. */
  tail: number;
  /** Draw the progress bar (on stderr). */
  progress: boolean;
}

/**
 * Follows a job until it ends: a progress bar of mini-batches (items, failures, rate, ETA) on
 * stderr, then the tail of the job's log and a summary on stdout. Answers the exit code.
 */
export async function stream(api: ApiClient, id: string, options: StreamOptions): Promise<number> {
  const path = `jobs/${encodeURIComponent(id)}`;
  const bar = options.progress
    ? new cliProgress.SingleBar(
        {
          format: '{status} {bar} {percentage}% | mini-batches {value}/{total} | items {items} | failed {failed} | {rate} items/s | ETA {eta_formatted}',
          stream: process.stderr,
          noTTYOutput: true,
          notTTYSchedule: 2000,
          hideCursor: true,
          etaBuffer: 20,
        },
        cliProgress.Presets.shades_classic,
      )
    : undefined;
  let job = await api.get<JobView>(path);
  // The rate is over what this stream saw: items finished since it started, per second.
  const first = { at: Date.now(), items: finishedItems(job) };
  let started = false;
  const show = (j: JobView): void => {
    const c = j.counts;
    const items = finishedItems(j);
    const seconds = (Date.now() - first.at) / 1000;
    const payload = {
      status: j.status.padEnd(10),
      items: c ? `${items}/${c.items.total}` : '-',
      failed: c ? c.items.failed : 0,
      rate: seconds > 0 ? ((items - first.items) / seconds).toFixed(1) : '0.0',
    };
    const done = c ? c.mini_batches.succeeded + c.mini_batches.failed : 0;
    // Until the job has planned its mini-batches there are none to count; the bar shows 0 of 1.
    const total = Math.max(c?.mini_batches.total ?? 0, 1);
    if (!started) {
      bar?.start(total, done, payload);
      started = true;
    } else {
      bar?.setTotal(total);
      bar?.update(done, payload);
    }
  };
  show(job);
  while (!TERMINAL.includes(job.status)) {
    await sleep(options.interval * 1000);
    job = await api.get<JobView>(path);
    show(job);
  }
  bar?.stop();
  const out: string[] = [];
  const logs = job.type === 'pipeline' ? job.steps.filter((s) => s.log).map((s) => ({ title: `step ${s.name}`, link: s.log as string })) : [{ title: 'logs/job.log', link: job.links.outputs?.['logs'] ?? `${path}/outputs/logs/job.log` }];
  for (const log of logs) {
    const tail = await logTail(api, log.link, options.tail);
    out.push(`--- ${log.title} (last ${options.tail} lines) ---`, tail === undefined ? '(no log)' : tail);
  }
  const c = job.counts;
  const counts = c ? `: ${c.items.total} items, ${c.items.succeeded} succeeded, ${c.items.failed} failed; mini-batches ${c.mini_batches.succeeded + c.mini_batches.failed}/${c.mini_batches.total}` : '';
  const took = job.started_at && job.completed_at ? ` in ${((Date.parse(job.completed_at) - Date.parse(job.started_at)) / 1000).toFixed(1)} s` : '';
  out.push(`Job ${job.id} ${job.status}${counts}${took}`);
  if (job.error) out.push(`Error (${job.error.code}): ${job.error.message}`);
  process.stdout.write(`${out.join('\n')}\n`);
  return exitCodeOf(job.status);
}

async function save(response: Response, file: string): Promise<void> {
  await ensureParent(file);
  if (!response.body) throw new CliError(`Empty answer for ${file}.`);
  await pipeline(Readable.fromWeb(response.body as ReadableStream<Uint8Array>), createWriteStream(file));
}

/**
 * Downloads a job's outputs into `{dir}/named-outputs/{output}/` (Azure ML's layout). A model
 * job's files are the ones the job names (predictions, report, errors, summary, log), read through
 * the API; a pipeline output's files are listed in its datastore (storage access needed, as for
 * uploads) and read through the API too.
 */
export async function download(api: ApiClient, access: DatastoreAccess, id: string, options: { outputName?: string; dir: string }): Promise<{ files: string[] }> {
  const job = await api.get<JobView>(`jobs/${encodeURIComponent(id)}`);
  const names = Object.keys(job.outputs);
  if (options.outputName !== undefined && !names.includes(options.outputName)) {
    throw new CliError(`Job ${id} has no output '${options.outputName}' (outputs: ${names.join(', ') || 'none'}).`);
  }
  const written: string[] = [];
  for (const name of options.outputName === undefined ? names : [options.outputName]) {
    const target = join(options.dir, 'named-outputs', name);
    let files: { rel: string; link: string }[];
    if (job.type !== 'pipeline') {
      files = Object.values(job.links.outputs ?? {}).map((link) => ({ rel: link.substring(link.indexOf('/outputs/') + '/outputs/'.length), link }));
    } else {
      const rels = await access.listFolder(job.outputs[name]?.path ?? '');
      files = rels.map((rel) => ({ rel, link: `jobs/${encodeURIComponent(id)}/outputs/${encodeURIComponent(name)}/${rel.split('/').map(encodeURIComponent).join('/')}` }));
    }
    for (const file of files) {
      let response: Response;
      try {
        response = await api.send('GET', file.link);
      } catch (err) {
        // A file the job did not write (no failures: no errors.jsonl) is not an error of the download.
        if (err instanceof ApiProblem && err.status === 404) continue;
        throw err;
      }
      const segments = file.rel.split('/');
      // Names come from the job and its storage: none may climb out of the download folder.
      if (segments.some((s) => s === '' || s === '.' || s === '..')) throw new CliError(`Job ${id}: output file '${file.rel}' is not a plain relative path; not downloaded.`);
      const local = join(target, ...segments);
      await save(response, local);
      written.push(local);
    }
  }
  return { files: written };
}
