/**
 * `batch-endpoints`: a command line in the shape of `az ml` (batch-endpoint, batch-deployment,
 * model, component, data, datastore, job) for this app's HTTP API. It is only a client: everything
 * goes through the API (and, for local files, the workspace datastore's storage, as `az ml` does).
 * See cli/README.md.
 */
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline/promises';
import { join } from 'node:path';
import { Command, CommanderError, Option } from 'commander';
import { LATEST } from '../../shared/registry/versions.js';
import { JOB_STATUSES } from '../../shared/schemas/jobs.js';
import { ApiClient } from './client.js';
import { type ConnectionOptions, describeProfiles, resolveConnection, writeProfile } from './connection.js';
import { ApiProblem, CliError, EXIT } from './errors.js';
import { INPUT_NAME, type InvokeOptions, JOB_COLUMNS, type JobView, download, invoke, stream } from './jobs.js';
import { type Column, OUTPUT_FORMATS, type OutputFormat, render } from './output.js';
import { KINDS, type Kind, itemPath, prepareBody, putWithin, versionFor } from './resources.js';
import { DatastoreAccess } from './storage.js';
import { type Assignment, YamlSource } from './yaml-source.js';
import { assignments, seconds, wholeNumber } from './arguments.js';

interface Globals extends ConnectionOptions {
  output: OutputFormat;
  progress: boolean;
}

function globalsOf(command: Command): Globals {
  return command.optsWithGlobals<Globals>();
}

function clientOf(command: Command): ApiClient {
  return new ApiClient(resolveConnection(globalsOf(command)));
}

function print(command: Command, value: unknown, columns: Column[]): void {
  process.stdout.write(`${render(value, globalsOf(command).output, columns)}\n`);
}

async function confirm(question: string): Promise<boolean> {
  if (!process.stdin.isTTY) return true;
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    return /^y(es)?$/i.test((await rl.question(`${question} (y/n) `)).trim());
  } finally {
    rl.close();
  }
}

// ------------------------------------------------------------------ resources

interface FileOptions {
  file: string;
  set: Assignment[];
  name?: string;
  version?: string;
  endpointName?: string;
  setDefault?: boolean;
}

/** `create -f` / `update -f`: the file (with --set), checked, local paths uploaded, then PUT. */
async function fromFile(kind: Kind, mode: 'create' | 'update', options: FileOptions, command: Command): Promise<void> {
  const api = clientOf(command);
  const src = YamlSource.load(options.file);
  if (options.name !== undefined) src.assign(['name'], options.name, `--name ${options.name}`);
  if (options.version !== undefined) src.assign(['version'], options.version, `--version ${options.version}`);
  if (options.endpointName !== undefined) src.assign(['endpoint_name'], options.endpointName, `--endpoint-name ${options.endpointName}`);
  for (const s of options.set) src.set(s);
  const { body, plan } = prepareBody(kind, src, api);
  const name = body['name'];
  if (typeof name !== 'string') throw src.problem(`${src.path}: the ${kind.what} has no name:`, [{ field: 'name', message: 'required (in the file, or --name)' }]);
  const ids = { name, endpoint: typeof body['endpoint_name'] === 'string' ? body['endpoint_name'] : undefined, version: typeof body['version'] === 'string' ? body['version'] : undefined };
  if (kind.name === 'deployment' && ids.endpoint === undefined) {
    throw src.problem(`${src.path}: the deployment names no endpoint:`, [{ field: 'endpoint_name', message: 'required (in the file, or --endpoint-name)' }]);
  }
  // Immutable versions: create is idempotent for the same body (the API answers 200) and a 409 for another.
  if (!kind.versioned || mode === 'update') {
    if (kind.versioned && ids.version === undefined) throw src.problem(`${src.path}: update needs the version to update:`, [{ field: 'version', message: 'required (in the file, or --version)' }]);
    const exists = (await api.find(itemPath(kind, ids))) !== undefined;
    if (mode === 'create' && exists) throw new CliError(`The ${kind.what} '${name}' already exists; use \`${kind.name} update -f ${options.file}\` to change it.`);
    if (mode === 'update' && !exists) throw new CliError(`The ${kind.what} '${name}' does not exist; use \`${kind.name} create -f ${options.file}\`.`);
  }
  await plan.run(new DatastoreAccess(api, { progress: globalsOf(command).progress }));
  if (kind.versioned && ids.version === undefined) {
    ids.version = await versionFor(api, kind, name, body);
    body['version'] = ids.version;
  }
  let result = await putWithin(src, '', () => api.json('PUT', itemPath(kind, ids), body));
  if (options.setDefault) {
    const endpoint = await api.get(`endpoints/${encodeURIComponent(ids.endpoint ?? '')}`);
    await api.json('PUT', `endpoints/${encodeURIComponent(ids.endpoint ?? '')}`, {
      ...(typeof endpoint['description'] === 'string' ? { description: endpoint['description'] } : {}),
      tags: endpoint['tags'],
      defaults: { deployment_name: name },
    });
    result = await api.get(itemPath(kind, ids));
  }
  print(command, result, kind.columns);
}

interface IdOptions {
  name: string;
  version?: string;
  label?: string;
  endpointName?: string;
  yes?: boolean;
}

function idsOf(kind: Kind, options: IdOptions): { name: string; version?: string; endpoint?: string } {
  // The API reads version `latest` as the newest (shared/registry/versions.ts), for every versioned asset.
  const version = options.version ?? (options.label === LATEST ? LATEST : undefined);
  if (options.label !== undefined && options.label !== LATEST) throw new CliError(`--label: only '${LATEST}' is known.`, EXIT.usage);
  if (kind.versioned && version === undefined) throw new CliError(`Give the ${kind.what}'s --version (or --label latest).`);
  return { name: options.name, ...(version ? { version } : {}), ...(options.endpointName ? { endpoint: options.endpointName } : {}) };
}

function resourceCommand(kind: Kind, aliases: string[], description: string): Command {
  const cmd = new Command(kind.name).description(description);
  for (const a of aliases) cmd.alias(a);
  const withIds = (c: Command, versionRequired: boolean): Command => {
    c.requiredOption('-n, --name <name>', `the ${kind.what}'s name`);
    if (kind.versioned) {
      c.option('-v, --version <version>', `the ${kind.what}'s version`);
      if (!versionRequired) c.option('-l, --label <label>', "'latest': the newest version");
    }
    if (kind.name === 'deployment') c.requiredOption('-e, --endpoint-name <endpoint>', 'the endpoint');
    return c;
  };
  for (const mode of ['create', 'update'] as const) {
    const sub = cmd
      .command(mode)
      .description(`${mode === 'create' ? 'Create' : 'Update'} a ${kind.what} from a YAML file in Azure ML's shape`)
      .requiredOption('-f, --file <file>', 'the YAML file')
      .option('--set <field=value>', 'override a field of the file (repeatable), e.g. settings.mini_batch_size=20', assignments, [])
      .option('-n, --name <name>', 'override the name in the file');
    if (kind.versioned) sub.option('-v, --version <version>', 'override the version in the file');
    if (kind.name === 'deployment') {
      sub.option('-e, --endpoint-name <endpoint>', 'override endpoint_name in the file');
      if (mode === 'create') sub.option('--set-default', "also make it the endpoint's default deployment");
    }
    sub.action((options: FileOptions, command: Command) => fromFile(kind, mode, options, command));
  }
  withIds(cmd.command('show').description(`Show a ${kind.what}`), false).action(async (options: IdOptions, command: Command) => {
    const path = itemPath(kind, idsOf(kind, options));
    print(command, await clientOf(command).get(path), kind.columns);
  });
  const list = cmd.command('list').description(`List ${kind.what}s`);
  if (kind.versioned) list.option('-n, --name <name>', 'list the versions of this name');
  if (kind.name === 'deployment') list.requiredOption('-e, --endpoint-name <endpoint>', 'the endpoint');
  list.action(async (options: { name?: string; endpointName?: string }, command: Command) => {
    const ids = { name: options.name ?? '', ...(options.endpointName ? { endpoint: options.endpointName } : {}) };
    const path = options.name ? `${kind.collection(ids)}/${encodeURIComponent(options.name)}/versions` : kind.collection(ids);
    print(command, await clientOf(command).list(path), kind.columns);
  });
  withIds(cmd.command('delete').description(`Delete a ${kind.what}`), true)
    .option('-y, --yes', 'do not ask for confirmation')
    .action(async (options: IdOptions, command: Command) => {
      const ids = idsOf(kind, options);
      const what = `${kind.what} '${ids.name}'${ids.version ? ` version ${ids.version}` : ''}`;
      if (!options.yes && !(await confirm(`Delete ${what}${kind.name === 'endpoint' ? ' and all its deployments' : ''}?`))) throw new CliError('Not deleted.');
      await clientOf(command).json('DELETE', itemPath(kind, ids));
      process.stderr.write(`Deleted ${what}.\n`);
    });
  return cmd;
}

// ------------------------------------------------------------------ endpoint invoke

/** What commander parses for `endpoint invoke`: the invoke's own options (with `--name` for the endpoint) and streaming. */
type InvokeCommandOptions = Omit<InvokeOptions, 'endpoint'> & { name: string; stream?: boolean; interval: number; tail: number };

function streamOptions(command: Command, options: { interval: number; tail: number }): { interval: number; tail: number; progress: boolean } {
  return { interval: options.interval, tail: options.tail, progress: globalsOf(command).progress };
}

/** `--interval` and `--tail` of `job stream` and `invoke --stream` (`prefix`: "with --stream: " or none). */
function addStreamOptions(command: Command, prefix: string): Command {
  return command
    .option('--interval <seconds>', `${prefix}seconds between polls (at least 0.1)`, seconds(0.1), 2)
    .option('--tail <lines>', `${prefix}log lines shown at the end`, wholeNumber(0), 20);
}

function addInvoke(endpoint: Command): void {
  const command = endpoint
    .command('invoke')
    .description('Invoke the endpoint: start a batch job (local inputs are uploaded to the workspace datastore first)')
    .requiredOption('-n, --name <endpoint>', 'the endpoint')
    .option('-d, --deployment <deployment>', "the deployment (default: the endpoint's default)")
    .option('-i, --input <path-or-uri>', `the job's data input (${INPUT_NAME}): a local file or folder, azureml://…, a blob URL or azureml:{data}:{version}`)
    .addOption(new Option('-t, --input-type <type>', 'the input type (default: what the path names)').choices(['uri_folder', 'uri_file']))
    .option('--output-path <uri>', "the output folder (azureml://datastores/…/paths/…/); default: azureml/{job id}/score/")
    .option('--inputs-file <file>', 'a YAML file with named inputs (data or literals) and outputs, for pipeline deployments')
    .option('--set <field=value>', 'set a field of the invoke body (repeatable), e.g. settings.mini_batch_size=20', assignments, [])
    .option('-s, --stream', 'follow the job until it ends (exit code as for job stream)');
  addStreamOptions(command, 'with --stream: ').action(async (options: InvokeCommandOptions, command: Command) => {
    if (options.input === undefined && options.inputsFile === undefined) throw new CliError('Give --input (or --inputs-file).');
    const follow = options.stream ? streamOptions(command, options) : undefined;
    const api = clientOf(command);
    const job = await invoke(api, new DatastoreAccess(api, { progress: globalsOf(command).progress }), {
      endpoint: options.name,
      set: options.set,
      ...(options.deployment !== undefined ? { deployment: options.deployment } : {}),
      ...(options.input !== undefined ? { input: options.input } : {}),
      ...(options.inputType !== undefined ? { inputType: options.inputType } : {}),
      ...(options.outputPath !== undefined ? { outputPath: options.outputPath } : {}),
      ...(options.inputsFile !== undefined ? { inputsFile: options.inputsFile } : {}),
    });
    if (!follow) {
      print(command, job, JOB_COLUMNS);
      return;
    }
    process.stderr.write(`Job ${job.id} started (deployment ${job.deployment ?? '?'}).\n`);
    process.exitCode = await stream(api, job.id, follow);
  });
}

// ------------------------------------------------------------------ jobs

function jobCommand(): Command {
  const job = new Command('job').description('Batch jobs: show, list, cancel, stream, download');
  job
    .command('show')
    .description('Show a job')
    .requiredOption('-n, --name <job>', 'the job id')
    .action(async (options: { name: string }, command: Command) => {
      print(command, await clientOf(command).get(`jobs/${encodeURIComponent(options.name)}`), JOB_COLUMNS);
    });
  job
    .command('list')
    .description('List jobs, newest first')
    .option('-e, --endpoint <endpoint>', "only this endpoint's jobs")
    .addOption(new Option('--status <status>', 'only jobs in this status').choices(JOB_STATUSES))
    .option('--max-results <n>', 'at most this many jobs', wholeNumber(1), 50)
    .action(async (options: { endpoint?: string; status?: string; maxResults: number }, command: Command) => {
      print(command, await listJobs(clientOf(command), options.endpoint, options.status, options.maxResults), JOB_COLUMNS);
    });
  job
    .command('cancel')
    .description('Cancel a job: running mini-batches finish, nothing new starts, outputs so far are kept')
    .requiredOption('-n, --name <job>', 'the job id')
    .action(async (options: { name: string }, command: Command) => {
      print(command, await clientOf(command).json('POST', `jobs/${encodeURIComponent(options.name)}/cancel`), JOB_COLUMNS);
    });
  addStreamOptions(
    job
      .command('stream')
      .description('Follow a job until it ends (progress bar, then the tail of its log); exit 0 only when it Completed')
      .requiredOption('-n, --name <job>', 'the job id'),
    '',
  ).action(async (options: { name: string; interval: number; tail: number }, command: Command) => {
    process.exitCode = await stream(clientOf(command), options.name, streamOptions(command, options));
  });
  job
    .command('download')
    .description("Download a job's outputs into {download-path}/named-outputs/{output}/")
    .requiredOption('-n, --name <job>', 'the job id')
    .option('--output-name <name>', 'only this output (default: all)')
    .option('-p, --download-path <dir>', 'where to put them', '.')
    .action(async (options: { name: string; outputName?: string; downloadPath: string }, command: Command) => {
      const api = clientOf(command);
      const { files } = await download(api, new DatastoreAccess(api, { progress: false }), options.name, {
        dir: options.downloadPath,
        ...(options.outputName !== undefined ? { outputName: options.outputName } : {}),
      });
      process.stderr.write(`Downloaded ${files.length} file${files.length === 1 ? '' : 's'} to ${join(options.downloadPath, 'named-outputs')}\n`);
      print(command, files.map((f) => ({ file: f })), [['file', (f) => f['file']]]);
    });
  return job;
}

/** Jobs newest first, filtered by the API (`GET /api/jobs?endpoint=&status=`), following next_link up to `max`. */
async function listJobs(api: ApiClient, endpoint: string | undefined, status: string | undefined, max: number): Promise<JobView[]> {
  const query = new URLSearchParams({ top: String(Math.min(max, 100)) });
  if (endpoint !== undefined) query.set('endpoint', endpoint);
  if (status !== undefined) query.set('status', status);
  let next: string | null | undefined = `jobs?${query.toString()}`;
  const found: JobView[] = [];
  while (next && found.length < max) {
    const page: { value: JobView[]; next_link?: string | null } = await api.get(next);
    found.push(...page.value);
    next = page.next_link;
  }
  return found.slice(0, max);
}

// ------------------------------------------------------------------ program

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

export function program(): Command {
  const root = new Command('batch-endpoints')
    .description("Batch endpoints from the command line, in the shape of `az ml` (YAML files in Azure ML's shapes)")
    .version(version(), '-V, --cli-version', 'print the CLI version')
    .option('--url <url>', 'the app, e.g. http://127.0.0.1:7071 (env BATCH_ENDPOINTS_URL)')
    .option('--key <key>', 'a function key (env BATCH_ENDPOINTS_KEY)')
    .option('--token <token>', 'a Microsoft Entra access token for the app (env BATCH_ENDPOINTS_TOKEN)')
    .option('--resource <uri>', "the app's application ID URI: a token from `az account get-access-token --resource` (env BATCH_ENDPOINTS_RESOURCE)")
    .option('--profile <name>', 'a profile of the config file (env BATCH_ENDPOINTS_PROFILE)')
    .option('--storage-connection-string <cs>', "the workspace datastore's storage, for uploads and downloads (env AZURE_STORAGE_CONNECTION_STRING; else your Entra identity)")
    .addOption(new Option('-o, --output <format>', 'how results are printed').choices(OUTPUT_FORMATS).default('json'))
    .option('--no-progress', 'no progress bars')
    .showHelpAfterError()
    .exitOverride();
  const endpoint = resourceCommand(KINDS.endpoint, ['batch-endpoint'], 'Batch endpoints (endpoint.yml); invoke');
  addInvoke(endpoint);
  root.addCommand(endpoint);
  root.addCommand(resourceCommand(KINDS.deployment, ['batch-deployment'], 'Deployments of an endpoint (deployment.yml: type model or pipeline)'));
  root.addCommand(resourceCommand(KINDS.model, [], 'Models (model.yml)'));
  root.addCommand(resourceCommand(KINDS.component, [], 'Components (component.yml: command, parallel, pipeline)'));
  root.addCommand(resourceCommand(KINDS.data, [], 'Data assets (data.yml)'));
  root.addCommand(resourceCommand(KINDS.datastore, [], 'Datastores (datastore.yml)'));
  root.addCommand(jobCommand());
  root
    .command('configure')
    .description('Write the connection options given (--url, --key, --token, --resource, --storage-connection-string) to a profile, or --show the profiles')
    .option('--show', 'print the config file (secrets hidden)')
    .option('--default', 'make this profile the default')
    .action((options: { show?: boolean; default?: boolean }, command: Command) => {
      const g = globalsOf(command);
      if (options.show) {
        print(command, describeProfiles(), [['path', (v) => v['path']]]);
        return;
      }
      const name = g.profile ?? 'default';
      const path = writeProfile(name, { url: g.url, key: g.key, token: g.token, resource: g.resource, storage_connection_string: g.storageConnectionString }, options.default === true);
      process.stderr.write(`Profile '${name}' written to ${path}\n`);
    });
  // Every subcommand's options are commander's: make them all exit through the same handler.
  const override = (c: Command): void => {
    c.exitOverride().showHelpAfterError();
    c.commands.forEach(override);
  };
  root.commands.forEach(override);
  return root;
}

export async function main(argv: string[]): Promise<number> {
  try {
    await program().parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : EXIT.ok;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode === 0 ? EXIT.ok : EXIT.usage;
    if (err instanceof ApiProblem) process.stderr.write(`error: ${err.describe()}\n`);
    else if (err instanceof CliError) process.stderr.write(`error: ${err.message}\n`);
    else process.stderr.write(`error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    return err instanceof CliError ? err.exitCode : EXIT.error;
  }
}

process.exitCode = await main(process.argv);
