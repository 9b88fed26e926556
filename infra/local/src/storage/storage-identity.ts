import { request } from 'node:http';
import { dirname } from 'node:path';
import { z } from 'zod';
import { FnHostError } from '../errors.js';
import { lockHolderAlive, readHostLock, hostLockPath } from '../host-lock.js';
import { azuritePaths, samePath } from './azurite-service.js';

/**
 * Who serves a storage port fnhost is about to use. Every Azurite fnhost starts answers
 * `GET /__fnhost__/identity` (azurite-preload.ts): without its token with 403 and who it is, the
 * Azurite of a data folder (`folder`, with the folder's `azurite/` location) or the in-memory one
 * of a process (`in-memory`). An Azurite started by an older fnhost says only "not this instance".
 * Anything else that answers is an emulator fnhost did not start.
 */
export type StorageIdentity =
  | { kind: 'none' }
  | { kind: 'folder'; pid: number | undefined; location: string | undefined }
  | { kind: 'in-memory'; pid: number | undefined; hostPid: number | undefined }
  | { kind: 'foreign' };

const answerSchema = z.object({
  error: z.literal('not this instance'),
  fnhost: z.enum(['folder', 'in-memory']).optional(),
  pid: z.number().int().optional(),
  hostPid: z.number().int().optional(),
  location: z.string().optional(),
});

export async function identifyStorage(options: { host: string; port: number; timeoutMs?: number }): Promise<StorageIdentity> {
  return new Promise<StorageIdentity>((done) => {
    const req = request(
      { host: options.host, port: options.port, path: '/__fnhost__/identity', method: 'GET', agent: false, timeout: options.timeoutMs ?? 3000 },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => {
          if (res.statusCode !== 403) return done({ kind: 'foreign' });
          let parsed: z.infer<typeof answerSchema>;
          try {
            parsed = answerSchema.parse(JSON.parse(body));
          } catch {
            return done({ kind: 'foreign' });
          }
          if (parsed.fnhost === 'in-memory') return done({ kind: 'in-memory', pid: parsed.pid, hostPid: parsed.hostPid });
          done({ kind: 'folder', pid: parsed.pid, location: parsed.location });
        });
        res.on('error', () => done({ kind: 'foreign' }));
      },
    );
    req.on('timeout', () => req.destroy(new Error('timeout')));
    // Refused: nothing listens. Anything else (a timeout, not HTTP) is something that is not fnhost's.
    req.on('error', (err: NodeJS.ErrnoException) => done(err.code === 'ECONNREFUSED' ? { kind: 'none' } : { kind: 'foreign' }));
    req.end();
  });
}

const OTHER_PORTS = 'start this host on other ports (--blob-port/--queue-port/--table-port)';

/**
 * What fnhost does with storage it finds on a port it wants: refuse (`refuse`), or use it after
 * logging `note`. `named` says the app's connection string names that port (`--no-azurite`)
 * rather than fnhost looking for a place to run its own Azurite. The storage of a data folder
 * belongs to that folder: its host reattaches to it after a crash, and stops it when it stops,
 * so a second host on it would share its queues and blobs and lose its storage with it.
 */
export function storageVerdict(options: { port: number; identity: StorageIdentity; dataDir: string | undefined; named: boolean }): { refuse: FnHostError } | { note: string | undefined } {
  const { port, identity, dataDir, named } = options;
  const taken = named ? `AzureWebJobsStorage names port ${port}, which is served by` : `Port ${port} is taken by`;
  const refuse = (message: string): { refuse: FnHostError } => ({ refuse: new FnHostError('ERR_CONFIG', message, { details: { port } }) });
  switch (identity.kind) {
    case 'none':
      return { note: undefined };
    case 'foreign':
      return { note: named ? undefined : `Storage at port ${port} is already running and is not an Azurite that fnhost started (an emulator of its own); fnhost will use it as it is, and will not stop it.` };
    case 'in-memory': {
      const owner = identity.hostPid === undefined ? 'another process' : `process ${identity.hostPid}`;
      if (named) return { note: `AzureWebJobsStorage names the in-memory Azurite of ${owner}; it ends when that process does.` };
      return refuse(
        `${taken} the in-memory Azurite of ${owner} (an fnhost started with --in-memory, or a test). That storage belongs to that process ` +
          `and ends with it, so fnhost will not use it: ${OTHER_PORTS}, or stop that process first.`,
      );
    }
    case 'folder': {
      const pid = identity.pid === undefined ? '' : ` (pid ${identity.pid})`;
      if (identity.location === undefined) {
        return refuse(
          `${taken} an Azurite that fnhost started for a data folder${pid}; it was started by an older fnhost, which does not say ` +
            `which folder. fnhost does not use another folder's storage: stop it with \`fnhost stop --data <its folder>\` (or kill it), or ${OTHER_PORTS}.`,
        );
      }
      const folder = dirname(identity.location);
      if (dataDir !== undefined && samePath(identity.location, azuritePaths(dataDir).location)) {
        if (named) return { note: `AzureWebJobsStorage names the Azurite of this data folder${pid}; fnhost uses it as named, and will not stop it.` };
        return refuse(
          `${taken} this data folder's own Azurite${pid}, but its state file ${azuritePaths(dataDir).state} is gone, so nothing can ` +
            'reattach to it and it stops itself (saving) within seconds. Start again once it has.',
        );
      }
      let holder;
      try {
        holder = readHostLock(hostLockPath(folder));
      } catch {
        holder = undefined;
      }
      if (holder !== undefined && lockHolderAlive(holder)) {
        return refuse(
          `${taken} the Azurite${pid} of fnhost ${holder.pid}, which runs on the data folder ${folder}. fnhost does not use another ` +
            `folder's storage: its blobs, queues and tables belong to that folder and its host. ${capital(OTHER_PORTS)}, or stop that host first (\`fnhost stop --data ${folder}\`).`,
        );
      }
      return refuse(
        `${taken} the Azurite${pid} of the data folder ${folder}, left running by a host of that folder that did not stop it (a crash or a kill: ` +
          `the next host started there takes it up again). fnhost does not use another folder's storage: its blobs, queues and tables ` +
          `belong to that folder. Stop it with \`fnhost stop --data ${folder}\` (it saves its data), or ${OTHER_PORTS}.`,
      );
    }
  }
}

function capital(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1);
}
