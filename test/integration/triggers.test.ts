import { BlobServiceClient, type ContainerClient } from '@azure/storage-blob';
import { TableClient } from '@azure/data-tables';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AppConfig, loadConfig } from '../../shared/config.js';
import { BatchError } from '../../shared/errors.js';
import { JobStore } from '../../shared/jobs/job-store.js';
import { JobsService } from '../../shared/jobs/jobs-service.js';
import { MODEL_STEP, type ModelJobSpec } from '../../shared/jobs/types.js';
import { listInput } from '../../shared/planning/list-input.js';
import { Registry } from '../../shared/registry/registry.js';
import { TriggerRules } from '../../shared/registry/triggers.js';
import { datastoreBody, deploymentBody, endpointBody, modelBody } from '../../shared/schemas/resources.js';
import { triggerBody } from '../../shared/schemas/triggers.js';
import type { BatchFile } from '../../shared/triggers/batcher.js';
import { writeKey } from '../../shared/triggers/events.js';
import { type FileTask, type ReceiveHooks, TriggerService, fileInstanceId } from '../../shared/triggers/trigger-service.js';
import { startAzurite } from '../support/azurite.js';
import { uniqueName } from '../support/ports.js';

let storage: { connectionString: string; stop: () => Promise<void> };
let config: AppConfig;
let registry: Registry;
let rules: TriggerRules;
let jobs: JobsService;
let store: JobStore;
let triggers: TriggerService;
let ws: ContainerClient;
let clock = new Date('2026-05-01T10:00:00Z');
const now = (): Date => clock;

const ds = (path: string): string => `azureml://datastores/workspaceblobstore/paths/${path}`;

beforeAll(async () => {
  storage = await startAzurite();
  config = loadConfig({ AzureWebJobsStorage: storage.connectionString, BATCH_TABLE_PREFIX: uniqueName('t').replace(/[^a-z0-9]/g, '') });
  registry = new Registry({ config });
  store = new JobStore({ config });
  jobs = new JobsService({ config, registry, store, now });
  rules = new TriggerRules({ config, registry, now });
  triggers = new TriggerService({ config, registry, rules, jobs, now });
  ws = BlobServiceClient.fromConnectionString(storage.connectionString).getContainerClient(config.workspaceContainer);
  await ws.createIfNotExists();
  await ws.getBlockBlobClient('code/score.js').upload('export function run() { return []; }', 10);
  await ws.getBlockBlobClient('models/m/model.txt').upload('m', 1);
  await registry.putEndpoint('ep', endpointBody.parse({}));
  await registry.createModel('m', '1', modelBody.parse({ type: 'custom_model', path: ds('models/m/') }));
  await registry.putDeployment('ep', 'dep', deploymentBody.parse({ model: 'azureml:m:1', code_configuration: { code: ds('code/'), scoring_script: 'score.js' } }));
  await registry.putEndpoint('ep', endpointBody.parse({ defaults: { deployment_name: 'dep' } }));
});

afterAll(async () => {
  await storage?.stop();
});

/** Records what the function layer would start. */
function recorder(existing: Set<string> = new Set()): ReceiveHooks & { started: { id: string; task: FileTask }[] } {
  const started: { id: string; task: FileTask }[] = [];
  return {
    started,
    start: (id, task) => {
      started.push({ id, task });
      existing.add(id);
      return Promise.resolve();
    },
    exists: (id) => Promise.resolve(existing.has(id)),
  };
}

async function upload(name: string, content = 'x\n'): Promise<string> {
  const res = await ws.getBlockBlobClient(name).upload(content, content.length);
  return (res.etag ?? '').replace(/"/g, '');
}

function event(name: string, etag: string, extra: { id?: string; api?: string; url?: string; sequencer?: string } = {}): Record<string, unknown> {
  return {
    id: extra.id ?? uniqueName('ev'),
    subject: `/blobServices/default/containers/${config.workspaceContainer}/blobs/${name}`,
    eventType: 'Microsoft.Storage.BlobCreated',
    eventTime: clock.toISOString(),
    data: { api: extra.api ?? 'PutBlob', url: extra.url ?? ws.getBlobClient(name).url, eTag: etag, contentLength: 2, ...(extra.sequencer ? { sequencer: extra.sequencer } : {}) },
  };
}

async function rejects(p: Promise<unknown>): Promise<BatchError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof BatchError) return err;
    throw err;
  }
  throw new Error('expected a BatchError');
}

/** An endpoint with a deployment `dep` as its default. */
async function endpointWithDefault(name: string): Promise<void> {
  await registry.putEndpoint(name, endpointBody.parse({}));
  await registry.putDeployment(name, 'dep', deploymentBody.parse({ model: 'azureml:m:1', code_configuration: { code: ds('code/'), scoring_script: 'score.js' } }));
  await registry.putEndpoint(name, endpointBody.parse({ defaults: { deployment_name: 'dep' } }));
}

describe('trigger rules (Azurite)', () => {
  it('are refused on an endpoint with no default deployment unless they name one (400 naming deployment)', async () => {
    await registry.putEndpoint('bare', endpointBody.parse({}));
    await registry.putDeployment('bare', 'baredep', deploymentBody.parse({ model: 'azureml:m:1', code_configuration: { code: ds('code/'), scoring_script: 'score.js' } }));
    const refused = await rejects(rules.put('bare', 'r', triggerBody.parse({ source: { datastore: 'workspaceblobstore', path_prefix: 'bare/' } })));
    expect(refused.code).toBe('validation_failed');
    expect(refused.issues).toEqual([{ field: 'deployment', message: "the endpoint 'bare' has no default deployment; name one" }]);
    expect(await rules.list('bare')).toEqual([]);
    expect((await rules.put('bare', 'r', triggerBody.parse({ source: { datastore: 'workspaceblobstore', path_prefix: 'bare/' }, deployment: 'baredep' }))).created).toBe(true);
  });

  it('belong to the endpoint as created: a re-created endpoint has none, and a re-created rule is another rule', async () => {
    await endpointWithDefault('gone');
    const { stored } = await rules.put('gone', 'r', triggerBody.parse({ source: { datastore: 'workspaceblobstore', path_prefix: 'g/' } }));
    expect((await rules.active()).map((r) => r.uid)).toContain(stored.doc.uid);
    await registry.deleteEndpoint('gone');
    await endpointWithDefault('gone');
    expect(await rules.list('gone')).toEqual([]);
    expect((await rejects(rules.require('gone', 'r'))).code).toBe('not_found');
    expect((await rules.active()).map((r) => r.uid)).not.toContain(stored.doc.uid);
    const again = await rules.put('gone', 'r', triggerBody.parse({ source: { datastore: 'workspaceblobstore', path_prefix: 'g/' } }));
    expect(again.created).toBe(true);
    expect(again.stored.doc.uid).not.toBe(stored.doc.uid);
    // An update keeps the rule (and its batches) as it is.
    const updated = await rules.put('gone', 'r', triggerBody.parse({ source: { datastore: 'workspaceblobstore', path_prefix: 'g2/' } }));
    expect(updated).toMatchObject({ created: false, stored: { doc: { uid: again.stored.doc.uid } } });
  });

  it('cannot feed each other: an output under another enabled rule\'s source, or a source over another\'s output, is refused', async () => {
    await rules.put('ep', 'feed-a', triggerBody.parse({ source: { datastore: 'workspaceblobstore', path_prefix: 'feed/a/in/' }, output_path: ds('feed/b/in/{job_id}/') }));
    // B's output under A's source.
    const out = await rejects(rules.put('ep', 'feed-b', triggerBody.parse({ source: { datastore: 'workspaceblobstore', path_prefix: 'feed/x/' }, output_path: ds('feed/a/in/{job_id}/') })));
    expect(out.issues.map((i) => i.field)).toEqual(['output_path']);
    expect(out.message).toContain('trigger ep/feed-a');
    // B's source over A's output.
    const src = await rejects(rules.put('ep', 'feed-b', triggerBody.parse({ source: { datastore: 'workspaceblobstore', path_prefix: 'feed/b/' }, output_path: ds('feed/y/{job_id}/') })));
    expect(src.issues.map((i) => i.field)).toEqual(['source.path_prefix']);
    // Both at once: the loop A -> B -> A.
    expect((await rejects(rules.put('ep', 'feed-b', triggerBody.parse({ source: { datastore: 'workspaceblobstore', path_prefix: 'feed/b/in/' }, output_path: ds('feed/a/in/{job_id}/') })))).code).toBe('validation_failed');
    expect((await rules.list('ep')).map((r) => r.doc.name)).not.toContain('feed-b');
    // Apart, or with A disabled, it is taken; A's own update is not held against itself.
    expect((await rules.put('ep', 'feed-b', triggerBody.parse({ source: { datastore: 'workspaceblobstore', path_prefix: 'feed/x/' }, output_path: ds('feed/y/{job_id}/') }))).created).toBe(true);
    await rules.put('ep', 'feed-a', triggerBody.parse({ source: { datastore: 'workspaceblobstore', path_prefix: 'feed/a/in/' }, output_path: ds('feed/b/in/{job_id}/'), enabled: false }));
    await rules.put('ep', 'feed-b', triggerBody.parse({ source: { datastore: 'workspaceblobstore', path_prefix: 'feed/b/in/' }, output_path: ds('feed/a/in/{job_id}/') }));
    for (const r of ['feed-a', 'feed-b']) await rules.delete('ep', r);
  });

  it('keep what they use: the datastore and the deployment they name cannot be deleted under them', async () => {
    await registry.putDeployment('ep', 'dep2', deploymentBody.parse({ model: 'azureml:m:1', code_configuration: { code: ds('code/'), scoring_script: 'score.js' } }));
    await rules.put('ep', 'uses', triggerBody.parse({ source: { datastore: 'workspaceblobstore', path_prefix: 'uses/' }, deployment: 'dep2' }));
    const refused = await rejects(registry.deleteDeployment('ep', 'dep2'));
    expect(refused.code).toBe('conflict');
    expect(refused.message).toContain('trigger ep/uses');
    await rules.delete('ep', 'uses');
    await registry.deleteDeployment('ep', 'dep2');
  });
});

describe('receiving BlobCreated events (Azurite)', () => {
  it('records each blob version once, whatever events report it, and ignores what no rule or datastore takes', async () => {
    const { stored } = await rules.put('ep', 'recv', triggerBody.parse({ source: { datastore: 'workspaceblobstore', path_prefix: 'recv/', suffixes: ['.csv'] }, batching: { window_seconds: 5, max_files: 7 } }));
    const uid = stored.doc.uid;
    const etag = await upload('recv/a.csv');
    const hooks = recorder();
    const first = event('recv/a.csv', etag);
    expect(await triggers.receive(first, hooks)).toEqual({ status: 'accepted', blob: 'recv/a.csv', rules: [{ rule: 'recv', endpoint: 'ep', outcome: 'batched' }] });
    const key = writeKey({ account: 'devstoreaccount1', container: config.workspaceContainer, blob: 'recv/a.csv', etag });
    expect(hooks.started).toEqual([{ id: fileInstanceId(uid, key), task: { rule: { endpoint: 'ep', name: 'recv', uid }, file: { key, blob: 'recv/a.csv', etag, container: ws.url }, windowSeconds: 5, maxFiles: 7 } }]);

    // The same event again, another event of the same write, and the same version copied: duplicates.
    for (const again of [first, event('recv/a.csv', etag), event('recv/a.csv', `"${etag}"`, { api: 'FlushWithClose' })]) {
      expect(await triggers.receive(again, hooks)).toMatchObject({ status: 'accepted', rules: [{ outcome: 'duplicate' }] });
    }
    expect(hooks.started).toHaveLength(1);
    // A new version of the file is a new file.
    const rewritten = await upload('recv/a.csv', 'y\n');
    expect(await triggers.receive(event('recv/a.csv', rewritten), hooks)).toMatchObject({ rules: [{ outcome: 'batched' }] });
    expect(hooks.started).toHaveLength(2);

    const ignored = async (e: unknown): Promise<string> => {
      const outcome = await triggers.receive(e, hooks);
      expect(outcome.status).not.toBe('accepted');
      return outcome.status;
    };
    expect(await ignored(event('recv/b.txt', etag))).toBe('ignored');
    expect(await ignored(event('other/b.csv', etag))).toBe('ignored');
    expect(await ignored(event('recv/', etag))).toBe('ignored');
    expect(await ignored(event('recv/c.csv', etag, { api: 'CreateFile' }))).toBe('ignored');
    expect(await ignored(event('recv/c.csv', etag, { url: `https://stranger.blob.core.windows.net/${config.workspaceContainer}/recv/c.csv` }))).toBe('ignored');
    expect(await ignored(event('recv/c.csv', etag, { url: ws.getBlobClient('recv/c.csv').url.replace(`/${config.workspaceContainer}/`, '/elsewhere/') }))).toBe('ignored');
    expect(await ignored({ id: 'x', eventType: 'Microsoft.Storage.BlobCreated', data: { api: 'PutBlob' } })).toBe('malformed');
    expect(hooks.started).toHaveLength(2);

    // A disabled rule takes nothing.
    await rules.put('ep', 'recv', triggerBody.parse({ source: { datastore: 'workspaceblobstore', path_prefix: 'recv/' }, enabled: false }));
    expect(await ignored(event('recv/d.csv', await upload('recv/d.csv')))).toBe('ignored');
  });

  it('refuses (and does not batch) a file whose name no file list can hold; the others are batched', async () => {
    await rules.put('ep', 'names', triggerBody.parse({ source: { datastore: 'workspaceblobstore', path_prefix: 'names/' } }));
    const hooks = recorder();
    for (const bad of ['names//dbl.csv', 'names/./dot.csv']) {
      const outcome = await triggers.receive(event(bad, await upload(bad)), hooks);
      expect({ bad, outcome }).toMatchObject({ bad, outcome: { status: 'refused' } });
      expect(outcome.status === 'refused' ? outcome.reason : '').toContain(bad);
    }
    expect((await triggers.receive(event('names/./dot.csv', 'x'), hooks)) as unknown).toMatchObject({ reason: expect.stringContaining('relative to the folder') as unknown });
    expect(await triggers.receive(event('names/ok.csv', await upload('names/ok.csv'), { sequencer: '0000000000000000000000000000A1F3' }), hooks)).toMatchObject({ status: 'accepted', rules: [{ outcome: 'batched' }] });
    // A control character is a blob name's like any other: a folder listing scores such a file, so a trigger batches it.
    // The event's sequencer goes with the file to the batcher (which orders versions by it).
    expect(hooks.started[0]?.task.file.sequencer).toBe('0000000000000000000000000000A1F3');
    expect(await triggers.receive(event('names/tab\there.csv', await upload('names/tab\there.csv')), hooks)).toMatchObject({ status: 'accepted', rules: [{ outcome: 'batched' }] });
    expect(hooks.started.map((s) => s.task.file.blob)).toEqual(['names/ok.csv', 'names/tab\there.csv']);
  });

  it('takes the blob name from the subject, so a raw "#" or "?" in data.url (as Azure sends it) keeps its whole name', async () => {
    await rules.put('ep', 'raw', triggerBody.parse({ source: { datastore: 'workspaceblobstore', path_prefix: 'raw/', suffixes: ['.csv'] } }));
    const hooks = recorder();
    const base = ws.url;
    for (const name of ['raw/a#1.csv', 'raw/why?.csv']) {
      const etag = await upload(name);
      expect(await triggers.receive(event(name, etag, { url: `${base}/${name}` }), hooks)).toEqual({ status: 'accepted', blob: name, rules: [{ rule: 'raw', endpoint: 'ep', outcome: 'batched' }] });
    }
    expect(hooks.started.map((s) => s.task.file.blob)).toEqual(['raw/a#1.csv', 'raw/why?.csv']);
    // A URL whose container is not the subject's: ignored.
    const mismatch = await triggers.receive(event('raw/b.csv', await upload('raw/b.csv'), { url: `${base.replace(/\/[^/]+$/, '/another')}/raw/b.csv` }), hooks);
    expect(mismatch).toMatchObject({ status: 'ignored', reason: expect.stringContaining('is not the subject') as unknown });
    expect(hooks.started).toHaveLength(2);
  });

  it('gives the record back when batching cannot start, so the redelivery does it', async () => {
    await rules.put('ep', 'fails', triggerBody.parse({ source: { datastore: 'workspaceblobstore', path_prefix: 'fails/' } }));
    const etag = await upload('fails/a.csv');
    const e = event('fails/a.csv', etag);
    const broken: ReceiveHooks = { start: () => Promise.reject(new Error('durable store down')), exists: () => Promise.resolve(false) };
    const err = await rejects(triggers.receive(e, broken));
    expect(err).toMatchObject({ code: 'storage_failed', retryable: true });
    const hooks = recorder();
    expect(await triggers.receive(e, hooks)).toMatchObject({ rules: [{ outcome: 'batched' }] });
    expect(hooks.started).toHaveLength(1);
  });

  it('starts the batching of a write whose delivery died after recording it, once a minute has passed', async () => {
    const { stored } = await rules.put('ep', 'died', triggerBody.parse({ source: { datastore: 'workspaceblobstore', path_prefix: 'died/' } }));
    const etag = await upload('died/a.csv');
    const key = writeKey({ account: 'devstoreaccount1', container: config.workspaceContainer, blob: 'died/a.csv', etag });
    // What a delivery killed between its record and its start leaves behind.
    const table = TableClient.fromConnectionString(storage.connectionString, `${config.tablePrefix}triggerfiles`, { allowInsecureConnection: true });
    await table.createEntity({ partitionKey: stored.doc.uid, rowKey: key, blob: 'died/a.csv', blobEtag: etag, eventId: 'e', api: 'PutBlob', endpoint: 'ep', rule: 'died', acceptedAt: clock.toISOString(), started: false });
    const hooks = recorder();
    expect(await triggers.receive(event('died/a.csv', etag), hooks)).toMatchObject({ rules: [{ outcome: 'duplicate' }] });
    clock = new Date(clock.getTime() + 61_000);
    expect(await triggers.receive(event('died/a.csv', etag), hooks)).toMatchObject({ rules: [{ outcome: 'recovered' }] });
    expect(hooks.started.map((s) => s.id)).toEqual([fileInstanceId(stored.doc.uid, key)]);
    expect(await triggers.receive(event('died/a.csv', etag), hooks)).toMatchObject({ rules: [{ outcome: 'duplicate' }] });
    expect(hooks.started).toHaveLength(1);
  });
});

describe('jobs of closed batches (Azurite)', () => {
  it('makes one job per batch, idempotently, whose input lists exactly its files at their eTags', async () => {
    const { stored } = await rules.put(
      'ep',
      'jobs',
      triggerBody.parse({ source: { datastore: 'workspaceblobstore', path_prefix: 'batch/in/' }, output_path: ds('batch/out/{rule}/{date}/{job_id}/'), settings: { mini_batch_size: 1 } }),
    );
    const a = await upload('batch/in/a.csv');
    const b = await upload('batch/in/sub/b.csv');
    await upload('batch/in/unlisted.csv');
    const rule = { endpoint: 'ep', name: 'jobs', uid: stored.doc.uid };
    const batch = { id: `tb-${stored.doc.uid}-0`, files: [{ key: 'k2', blob: 'batch/in/sub/b.csv', etag: b }, { key: 'k1', blob: 'batch/in/a.csv', etag: a }] };
    const started: string[] = [];
    const start = (id: string): Promise<void> => {
      started.push(id);
      return Promise.resolve();
    };
    const made = await triggers.startJob({ rule, batch }, start);
    expect(made.status).toBe('created');
    const jobId = made.status === 'created' ? made.jobId : '';
    expect(await triggers.startJob({ rule, batch }, start)).toEqual({ status: 'replayed', jobId });
    expect(started).toEqual([jobId]);

    const job = await jobs.get(jobId);
    const spec = job.spec as ModelJobSpec;
    expect(spec.invoked_by).toEqual({ name: 'trigger jobs', via: 'event_grid', trigger: { rule: 'jobs', batch: batch.id } });
    expect(spec.input).toMatchObject({ name: 'input_data', type: 'uri_folder', uri: ds('batch/in/'), files: [{ name: 'a.csv', etag: a }, { name: 'sub/b.csv', etag: b }] });
    expect(spec.output.uri).toBe(ds(`batch/out/jobs/2026-05-01/${jobId}/`));
    expect(spec.settings.mini_batch_size).toBe(1);
    expect(job.steps?.[MODEL_STEP]?.input?.files).toHaveLength(2);

    // The planner lists exactly those files, each at the version its event named.
    const input = registry.reopen(spec.input.location, 'uri_folder', spec.input.uri);
    expect(await listInput(input, undefined, spec.input.files)).toEqual([
      { name: 'a.csv', blob: 'batch/in/a.csv', size: 2, etag: a },
      { name: 'sub/b.csv', blob: 'batch/in/sub/b.csv', size: 2, etag: b },
    ]);
    // Rewritten or deleted since: still an item, pinned to the version the event named, so reading it fails that item.
    await upload('batch/in/a.csv', 'changed\n');
    await ws.getBlobClient('batch/in/sub/b.csv').delete();
    expect(await listInput(input, undefined, spec.input.files)).toEqual([
      { name: 'a.csv', blob: 'batch/in/a.csv', size: 0, etag: a },
      { name: 'sub/b.csv', blob: 'batch/in/sub/b.csv', size: 0, etag: b },
    ]);

    // A rule deleted (and created again) since its batch opened makes no job.
    await rules.delete('ep', 'jobs');
    await rules.put('ep', 'jobs', triggerBody.parse({ source: { datastore: 'workspaceblobstore', path_prefix: 'batch/in/' } }));
    expect(await triggers.startJob({ rule, batch: { ...batch, id: `tb-${stored.doc.uid}-1` } }, start)).toMatchObject({ status: 'dropped' });
  });

  it('scores only the files still in the datastore\'s container: a datastore re-pointed while a batch is open', async () => {
    const service = BlobServiceClient.fromConnectionString(storage.connectionString);
    const [a, b] = [uniqueName('mova').replace(/[^a-z0-9]/g, ''), uniqueName('movb').replace(/[^a-z0-9]/g, '')];
    for (const c of [a, b]) await service.getContainerClient(c).createIfNotExists();
    const point = (container: string): Promise<unknown> =>
      registry.putDatastore('movable', datastoreBody.parse({ account_name: 'devstoreaccount1', container_name: container, endpoint: 'core.windows.net', protocol: 'http', credentials: { type: 'connection_string', setting: 'TRIGGER_TEST_MOVABLE' } }));
    process.env['TRIGGER_TEST_MOVABLE'] = storage.connectionString;
    await point(a);
    const { stored } = await rules.put('ep', 'moves', triggerBody.parse({ source: { datastore: 'movable', path_prefix: 'in/' } }));
    const hooks = recorder();
    const send = async (container: string, name: string): Promise<void> => {
      const blob = service.getContainerClient(container).getBlockBlobClient(name);
      const etag = ((await blob.upload('x\n', 2)).etag ?? '').replace(/"/g, '');
      const e = { ...event(name, etag, { url: blob.url }), subject: `/blobServices/default/containers/${container}/blobs/${name}` };
      expect(await triggers.receive(e, hooks)).toMatchObject({ status: 'accepted' });
    };
    await send(a, 'in/old.csv');
    // Re-pointed while the batch is open; a file of the new container joins the same batch.
    await point(b);
    await send(b, 'in/new.csv');
    const rule = { endpoint: 'ep', name: 'moves', uid: stored.doc.uid };
    const batch = { id: `tb-${stored.doc.uid}-0`, files: hooks.started.map((s) => s.task.file) };
    const made = await triggers.startJob({ rule, batch }, () => Promise.resolve());
    expect(made).toMatchObject({ status: 'created', skipped: [{ blob: 'in/old.csv', reason: expect.stringContaining(a) as unknown }] });
    const spec = (await jobs.get(made.status === 'created' ? made.jobId : '')).spec as ModelJobSpec;
    expect(spec.input.files).toEqual([{ name: 'new.csv', etag: batch.files[1]?.etag }]);
    // A batch only of files from the old container makes no job.
    expect(await triggers.startJob({ rule, batch: { id: `tb-${stored.doc.uid}-1`, files: [batch.files[0] as BatchFile] } }, () => Promise.resolve())).toMatchObject({
      status: 'dropped',
      skipped: [{ blob: 'in/old.csv' }],
    });
    await rules.delete('ep', 'moves');
  });

  it('returns what a retry cannot mend instead of throwing', async () => {
    await endpointWithDefault('nodefault');
    const { stored } = await rules.put('nodefault', 'r', triggerBody.parse({ source: { datastore: 'workspaceblobstore', path_prefix: 'nd/' } }));
    // The default taken away after the rule was made: its batches can make no job.
    await registry.putEndpoint('nodefault', endpointBody.parse({ defaults: { deployment_name: null } }));
    const etag = await upload('nd/a.csv');
    const result = await triggers.startJob({ rule: { endpoint: 'nodefault', name: 'r', uid: stored.doc.uid }, batch: { id: 'tb-x-0', files: [{ key: 'k', blob: 'nd/a.csv', etag }] } }, () => Promise.resolve());
    expect(result).toMatchObject({ status: 'failed', error: { code: 'no_default_deployment' } });
    // Recorded on the rule, so GET of the rule shows it.
    expect((await rules.require('nodefault', 'r')).doc.last_error).toMatchObject({ batch: 'tb-x-0', code: 'no_default_deployment', at: clock.toISOString() });
  });
});
