/**
 * `npm run bench:list`: List Blobs of one large folder, page by page, on fnhost's Azurite, with
 * its listing replacements (infra/local/src/storage/azurite-listing.ts) and without them, in the
 * same run on the same blobs.
 *
 * One in-memory Azurite gets `--files` tiny blobs in `bench/list/` (and 1,000 more in a folder
 * beside it). For each page size, the folder is listed as the app lists an input folder (prefix,
 * delimiter "/", maxresults, following NextMarker; shared/storage/fast-read.ts's fastList) in
 * each mode, switched over IPC (AzuriteProcess.setListing):
 *   off   = Azurite's own code (the bare baseline: what the product had),
 *   index = the name index for the page, Azurite's serializer for the XML,
 *   on    = both replacements (the default).
 * Modes alternate, `--repeat` times; the best of each counts. Besides wall time, the table shows
 * Azurite's own CPU time per page (from /proc), which a shared machine disturbs less.
 */
import { readFileSync } from 'node:fs';
import { BlobServiceClient, ContainerSASPermissions } from '@azure/storage-blob';
import { Command } from 'commander';
import { Logger } from '../infra/local/src/log.js';
import { AzuriteProcess } from '../infra/local/src/storage/azurite.js';

const program = new Command()
  .option('--files <n>', 'blobs in the listed folder', (v) => Number(v), 100_000)
  .option('--page-sizes <list>', 'maxresults of the pages', (v) => v.split(',').map(Number), [1000, 5000])
  .option('--modes <list>', 'listing modes to compare: off, index, on', (v) => v.split(','), ['off', 'index', 'on'])
  .option('--repeat <n>', 'listings of the folder per mode and page size, alternating modes; the best counts', (v) => Number(v), 3)
  .parse();
const opts = program.opts<{ files: number; pageSizes: number[]; modes: ('off' | 'index' | 'on')[]; repeat: number }>();

const PREFIX = 'bench/list/';
const name = (i: number): string => `${PREFIX}f-${String(i).padStart(7, '0')}.txt`;

/** CPU seconds (user + system) a process has used so far (Linux). */
function cpuSeconds(pid: number | undefined): number {
  const fields = readFileSync(`/proc/${String(pid)}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

interface Listing {
  seconds: number;
  cpu: number;
  pages: number;
  firstPageMs: number;
  slowestPageMs: number;
}

/** The folder, page by page, as fastList reads it; checks that every blob came, once, in order. */
async function listFolder(base: string, sas: string, pageSize: number, pid: number | undefined): Promise<Listing> {
  const cpu0 = cpuSeconds(pid);
  const t0 = performance.now();
  let marker = '';
  let pages = 0;
  let count = 0;
  let firstPageMs = 0;
  let slowestPageMs = 0;
  do {
    const p0 = performance.now();
    const query = new URLSearchParams({ restype: 'container', comp: 'list', prefix: PREFIX, delimiter: '/', maxresults: String(pageSize), ...(marker ? { marker } : {}) });
    const res = await fetch(`${base}?${query.toString()}&${sas}`);
    const body = await res.text();
    if (res.status !== 200) throw new Error(`listing answered ${res.status}: ${body.slice(0, 300)}`);
    const ms = performance.now() - p0;
    if (pages === 0) firstPageMs = ms;
    slowestPageMs = Math.max(slowestPageMs, ms);
    pages++;
    for (const m of body.matchAll(/<Blob><Name>([^<]*)<\/Name>/g)) {
      if (m[1] !== name(count)) throw new Error(`page ${pages} has ${String(m[1])} where ${name(count)} belongs`);
      count++;
    }
    marker = /<NextMarker>([^<]*)<\/NextMarker>/.exec(body)?.[1] ?? '';
  } while (marker !== '');
  if (count !== opts.files) throw new Error(`listed ${count} of ${opts.files} blobs`);
  return { seconds: (performance.now() - t0) / 1000, cpu: cpuSeconds(pid) - cpu0, pages, firstPageMs, slowestPageMs };
}

async function main(): Promise<void> {
  const azurite = await AzuriteProcess.start({ ports: { blob: 0, queue: 0, table: 0 }, logger: new Logger({ minLevel: 'warning' }) });
  try {
    const container = BlobServiceClient.fromConnectionString(azurite.connectionString).getContainerClient('bench-list');
    await container.create();
    const url = await container.generateSasUrl({ permissions: ContainerSASPermissions.parse('rwl'), expiresOn: new Date(Date.now() + 24 * 3_600_000) });
    const [base = '', sas = ''] = url.split('?');
    const names = [...Array.from({ length: opts.files }, (_, i) => name(i)), ...Array.from({ length: 1000 }, (_, i) => `bench/other/f-${String(i).padStart(7, '0')}.txt`)];
    const t0 = performance.now();
    let next = 0;
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        while (next < names.length) {
          const blob = names[next++] as string;
          const res = await fetch(`${base}/${blob}?${sas}`, { method: 'PUT', body: `${blob}\n`, headers: { 'x-ms-blob-type': 'BlockBlob' } });
          if (res.status !== 201) throw new Error(`upload of ${blob} answered ${res.status}: ${await res.text()}`);
          await res.arrayBuffer();
        }
      }),
    );
    console.log(`uploaded ${names.length} blobs in ${((performance.now() - t0) / 1000).toFixed(1)} s`);

    const rows: Record<string, string | number>[] = [];
    for (const pageSize of opts.pageSizes) {
      const best = new Map<string, Listing>();
      for (let r = 0; r < Math.max(1, opts.repeat); r++) {
        // Each round in another order, so no mode always follows the same one.
        const order = r % 2 === 0 ? opts.modes : [...opts.modes].reverse();
        for (const mode of order) {
          await azurite.setListing(mode);
          const run = await listFolder(base, sas, pageSize, azurite.pid);
          console.log(`pages of ${pageSize}, ${mode}: ${run.seconds.toFixed(2)} s, Azurite CPU ${run.cpu.toFixed(2)} s`);
          const before = best.get(mode);
          if (!before || run.seconds < before.seconds) best.set(mode, run);
        }
      }
      const baseline = best.get('off');
      for (const mode of opts.modes) {
        const run = best.get(mode) as Listing;
        rows.push({
          'page size': pageSize,
          mode,
          pages: run.pages,
          'total s': run.seconds.toFixed(2),
          'ms/page': ((run.seconds * 1000) / run.pages).toFixed(1),
          'Azurite CPU ms/page': ((run.cpu * 1000) / run.pages).toFixed(1),
          'first page ms': run.firstPageMs.toFixed(1),
          'slowest page ms': run.slowestPageMs.toFixed(1),
          'ratio vs off': baseline ? (run.seconds / baseline.seconds).toFixed(3) : '-',
        });
      }
    }
    console.log(`\nList Blobs of a folder of ${opts.files.toLocaleString('en')} blobs, page by page (one in-memory Azurite; best of ${opts.repeat} per mode; off = Azurite's own listing)\n`);
    console.table(rows);
  } finally {
    await azurite.stop();
  }
}

await main();
