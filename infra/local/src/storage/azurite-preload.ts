import { AZURITE_LISTING } from './azurite-listing.js';

/**
 * The module fnhost preloads into every Azurite process it starts (`--import` of a data: URL, so it
 * needs no file of its own and runs before Azurite's own code). It is JavaScript text, not
 * TypeScript, because it runs inside Azurite and reaches into its untyped dependencies.
 *
 * It also reports every finished blob write (Put Blob, Put Block List, Copy Blob) to the host, for
 * its Event Grid storage system topic (eventgrid/storage-topic.ts). The report has to come from
 * inside Azurite: only Azurite knows a write has been acknowledged, and the host may be down when
 * it happens (Azurite outlives it). In service mode each write appends one JSON line to the journal
 * named by `FNHOST_BLOB_EVENTS` before its response is sent, so an acknowledged write always has
 * its line, and a host that comes back later reads the lines it has not delivered yet. In child
 * mode (in memory) the line goes to the host over IPC instead: nothing outlives the host there.
 *
 * Two modes, chosen by the environment fnhost gives the process:
 *
 * - **service** (`FNHOST_AZURITE_STATE` and `FNHOST_AZURITE_TOKEN` set): Azurite for a data folder.
 *   It runs in a session of its own and outlives the host, as Azure Storage outlives a crash of
 *   a Functions host, so a write it acknowledged is never lost when the host dies. The state file
 *   is its lock and its address: created exclusively before Azurite reads its databases (so two
 *   Azurites never load one folder), rewritten with the ports once all three services listen,
 *   removed when it exits. A request to `/__fnhost__/identity` or `/__fnhost__/shutdown` carrying
 *   the token proves which instance answers a port, and stops it; without the token the identity
 *   request is answered 403 with the data folder it serves. It stops itself when the state
 *   file stops naming it (nobody could find it any more) and exits at once when its data folder
 *   is gone (there is nothing left to save into).
 * - **child** (in memory): a child of the host with an IPC channel; when the channel closes (the
 *   host died, even by SIGKILL) it shuts down, so it never outlives the host. Its identity request
 *   is answered 403 with the pid of the process it belongs to.
 *
 * It adds **Put Block From URL** (Azurite answers 501), so that the app composes blobs server-side
 * here as in Azure. As in Azure, the source (`x-ms-copy-source`) is read with its own authorization:
 * a SAS in its URL, none for a public container, or `x-ms-copy-source-authorization`; this request's
 * credentials do not reach it, even in the same account. The source must be a blob of this Azurite
 * (as Azurite's own Copy Blob: nothing is fetched from elsewhere). `x-ms-source-range`
 * (`bytes=start-end` or `bytes=start-`; a range past the source's end is a 416, not a shorter
 * block), the `x-ms-source-if-*` conditions (412 `SourceConditionNotMet`) and
 * `x-ms-source-content-md5` (400 `Md5Mismatch`) are honoured; `x-ms-source-content-crc64` is
 * refused (400), since it is not verified. A source that cannot be read is a
 * `CannotVerifyCopySource` with the source's status. The answer is Azure's: 201 with `Content-MD5`
 * of the block, `x-ms-request-server-encrypted`, `x-ms-request-id`, `x-ms-version`, `Date` and
 * `x-ms-client-request-id`.
 *
 * In both modes it reports readiness and its ports over IPC, exits as soon as all three services
 * report "successfully closed" (their databases are saved by then; Azurite itself would hang on
 * its timers), and carries speed fixes:
 * - Azurite looks blobs and blocks up in LokiJS with queries such as {accountName, containerName,
 *   name}. Loki uses an index only for the query's first key, and every blob shares the account,
 *   so each lookup scans every blob: at 10,000 blobs a download costs ~10 ms of Azurite's one
 *   thread. Moving the indexed `name`/`blobName` key first makes it a binary search. The AND of
 *   the same conditions is the same result, so behaviour does not change.
 * - Loki rebuilds every binary index of a collection (a sort of all its documents with Loki's
 *   comparators) after any batch removal, which is how Azurite deletes a blob, and drops the blocks
 *   a commit or a delete leaves behind, even when the batch is one document or none. With 100,000
 *   blobs a delete cost ~250 ms of Azurite's one thread, and clearing a job's working blobs took
 *   minutes. A batch of up to 32 documents is removed one by one instead, which updates each index
 *   in place (a binary search and a pass over its positions): the same documents go, and every
 *   index stays sorted by its key (equal keys keep the order inserts give them, as between any
 *   two batch removals); the removed documents keep their `$loki` and `meta`, as after a batch
 *   removal. 20 deletes in a collection of 100,000: 7.5 s → 70 ms (a loaded machine).
 * - Azurite routes every request by compiling each operation's URI template (a hundred or so)
 *   anew, about 0.2 ms of its one thread per request. Templates are immutable once compiled, so
 *   each is compiled once.
 * - List Blobs scanned and sorted every blob of the account and rendered its XML generically for
 *   each page; a page now costs the page (azurite-listing.ts, `FNHOST_AZURITE_FAST_LIST`).
 */
export const AZURITE_PRELOAD = String.raw`
import { createRequire } from 'node:module';
import fs from 'node:fs';
import http from 'node:http';

try {
  const { Resultset } = createRequire(process.argv[1])('lokijs');
  const selective = ['name', 'blobName'];
  const find = Resultset.prototype.find;
  Resultset.prototype.find = function (query, firstOnly) {
    if (!this.filterInitialized && query && typeof query === 'object' && !Array.isArray(query)) {
      const keys = Object.keys(query);
      const key = keys.length > 1 && selective.find((k) => k in query && (query[k] === null || typeof query[k] !== 'object') && this.collection.binaryIndices[k]);
      if (key && keys[0] !== key) query = { [key]: query[key], ...query };
    }
    return find.call(this, query, firstOnly);
  };
} catch (err) {
  console.error('fnhost: could not speed up Azurite lookups: ' + err);
}
try {
  const { Collection } = createRequire(process.argv[1])('lokijs');
  const removeBatch = Collection.prototype.removeBatchByPositions;
  Collection.prototype.removeBatchByPositions = function (positions) {
    if (!this.adaptiveBinaryIndices || positions.length > 32) return removeBatch.call(this, positions);
    const docs = positions.map((position) => this.data[position]);
    for (const doc of docs) {
      const { $loki, meta } = doc;
      this.remove(doc);
      if (!Object.isFrozen(doc)) Object.assign(doc, { $loki, meta });
    }
  };
} catch (err) {
  console.error('fnhost: could not speed up Azurite deletes: ' + err);
}
try {
  const require = createRequire(process.argv[1]);
  const id = require.resolve('uri-templates');
  const compile = require(id);
  const compiled = new Map();
  const cached = function (template) {
    let parsed = compiled.get(template);
    if (parsed === undefined) compiled.set(template, (parsed = compile(template)));
    return parsed;
  };
  cached.prototype = compile.prototype;
  require.cache[id].exports = cached;
} catch (err) {
  console.error('fnhost: could not speed up Azurite routing: ' + err);
}

// Dispatch: Azurite tries every operation's specification against each request (method, path
// template, required query and header values) to find its operation. For blobs and queues the
// answer depends only on the method, X-HTTP-Method, the dispatch pattern (a handful of fixed
// shapes: '/container/blob' and the like, never a name) and the values or presence of the
// parameters some specification requires, so it is remembered per combination of those.
function rememberDispatch(require, service) {
  const mod = require('azurite/dist/src/' + service + '/generated/middleware/dispatch.middleware');
  const specs = require('azurite/dist/src/' + service + '/generated/artifacts/specifications').default;
  // Each required name, and whether its value decides (an enum or a constant) or only its presence.
  const queries = new Map();
  const headers = new Map();
  for (const spec of Object.values(specs)) {
    for (const [list, names] of [[spec.queryParameters, queries], [spec.headerParameters, headers]]) {
      for (const p of list || []) {
        if (!p.mapper.required) continue;
        const name = p.mapper.serializedName || '';
        names.set(name, names.get(name) === true || p.mapper.type.name === 'Enum' || !!p.mapper.isConstant);
      }
    }
  }
  const dispatch = mod.default;
  const known = new Map();
  const part = (value, decides) => (value === undefined ? '-' : decides ? JSON.stringify(value) : '+');
  mod.default = function (context, req, next, logger) {
    if (typeof context.dispatchPattern !== 'string') return dispatch(context, req, next, logger);
    let key = req.getMethod() + ' ' + part(req.getHeader('X-HTTP-Method'), true) + ' ' + context.dispatchPattern;
    for (const [name, decides] of queries) key += '&' + part(req.getQuery(name), decides);
    for (const [name, decides] of headers) key += '&' + part(req.getHeader(name), decides);
    const operation = known.get(key);
    if (operation !== undefined) {
      context.operation = operation;
      return next();
    }
    return dispatch(context, req, (err) => {
      // Only a found operation is kept, and only so many shapes (a client can send any values).
      if (err === undefined && context.operation !== undefined && known.size < 2048) known.set(key, context.operation);
      next(err);
    }, logger);
  };
}
try {
  const require = createRequire(process.argv[1]);
  rememberDispatch(require, 'blob');
  rememberDispatch(require, 'queue');
} catch (err) {
  console.error('fnhost: could not speed up Azurite dispatch: ' + err);
}

// Request ids: Azurite's uuid 3 asks the kernel for 16 random bytes per id (a system call, twice
// per blob request); ids are drawn from a pool refilled 4 KiB at a time instead, as uuid 8+ does.
try {
  const require = createRequire(createRequire(process.argv[1]).resolve('uuid/v4'));
  const id = require.resolve('./lib/rng');
  const { randomFillSync } = require('node:crypto');
  const pool = new Uint8Array(4096);
  let next = pool.length;
  require(id);
  require.cache[id].exports = function pooledRng() {
    if (next > pool.length - 16) {
      randomFillSync(pool);
      next = 0;
    }
    // A copy: uuid sets the version bits in the array it gets.
    return pool.slice(next, (next += 16));
  };
} catch (err) {
  console.error('fnhost: could not speed up Azurite request ids: ' + err);
}

// Requests by kind, for the bench's census (FNHOST_AZURITE_CENSUS names the JSON file written at exit).
if (process.env.FNHOST_AZURITE_CENSUS) {
  const counts = {};
  const emit = http.Server.prototype.emit;
  http.Server.prototype.emit = function (event, req) {
    if (event === 'request') {
      const u = new URL(req.url, 'http://x');
      const parts = u.pathname.split('/');
      const what = (parts[2] || '').replace(/\(.*$/, '()');
      const key = req.method + ' ' + req.socket.localPort + ' ' + what + (parts.length > 3 ? '/…' : '') + ' ' + (u.searchParams.get('comp') || '') + ' ' + (u.searchParams.get('restype') || '') + ' ' + (req.headers['x-ms-blob-type'] || '') + (req.headers['x-ms-copy-source'] ? ' from-url' : '');
      counts[key] = (counts[key] || 0) + 1;
    }
    return emit.apply(this, arguments);
  };
  process.on('exit', () => fs.writeFileSync(process.env.FNHOST_AZURITE_CENSUS, JSON.stringify(counts, null, 1)));
}

// List Blobs at a cost per page, not per container (azurite-listing.ts).
let listing;
try {
  listing = (${AZURITE_LISTING})(createRequire(process.argv[1]), String(process.env.FNHOST_AZURITE_FAST_LIST || 'on').toLowerCase());
} catch (err) {
  console.error('fnhost: could not speed up Azurite listings: ' + err);
}

// Finished blob writes, for the host's Event Grid storage topic (see the comment at the top).
const blobEventsPath = process.env.FNHOST_BLOB_EVENTS;
try {
  const require = createRequire(process.argv[1]);
  const { randomUUID } = require('node:crypto');
  const path = require('node:path');
  let journalEndsMidLine = false;
  if (blobEventsPath) {
    fs.mkdirSync(path.dirname(blobEventsPath), { recursive: true });
    try {
      // A line cut by a kill in the middle of an append: the next one must start a line of its own.
      const size = fs.statSync(blobEventsPath).size;
      if (size > 0) {
        const fd = fs.openSync(blobEventsPath, 'r');
        const last = Buffer.alloc(1);
        fs.readSync(fd, last, 0, 1, size - 1);
        fs.closeSync(fd);
        journalEndsMidLine = last[0] !== 10;
      }
    } catch {
      // no journal yet
    }
  }
  const report = (record) => {
    if (blobEventsPath) {
      // Synchronous, so the line is in the file (the OS's cache: it survives a kill of any
      // process, like Azurite's own blob contents) before the response to the write goes out.
      fs.appendFileSync(blobEventsPath, (journalEndsMidLine ? '\n' : '') + JSON.stringify(record) + '\n');
      journalEndsMidLine = false;
    } else if (process.connected) {
      process.send({ fnhost: 'blob-write', record });
    }
  };
  const unquote = (etag) => (typeof etag === 'string' ? etag.replace(/^"|"$/g, '') : etag);
  const hook = (Handler, method, api) => {
    const original = Handler.prototype[method];
    if (typeof original !== 'function') throw new Error(method + ' not found');
    Handler.prototype[method] = async function (...args) {
      const response = await original.apply(this, args);
      const context = args[args.length - 1];
      try {
        const blobCtx = new BlobStorageContext(context);
        const account = blobCtx.account;
        const container = blobCtx.container;
        const blob = blobCtx.blob;
        // The blob as written (a block list's length, a copy's type and length come from the store).
        const found = await this.metadataStore.getBlobProperties(context, account, container, blob);
        const p = found.properties;
        report({
          id: randomUUID(),
          time: new Date().toISOString(),
          api,
          account,
          container,
          blob,
          eTag: unquote(response.eTag ?? p.etag),
          contentType: p.contentType ?? 'application/octet-stream',
          contentLength: p.contentLength ?? 0,
          blobType: p.blobType ?? 'BlockBlob',
          requestId: response.requestId ?? context.contextId,
          clientRequestId: response.clientRequestId ?? '',
        });
      } catch (err) {
        console.error('fnhost: could not report a blob write to the Event Grid journal: ' + (err && err.stack ? err.stack : err));
      }
      return response;
    };
  };
  const handler = (name) => require('./blob/handlers/' + name).default;
  const BlobStorageContext = require('./blob/context/BlobStorageContext').default;
  hook(handler('BlockBlobHandler'), 'upload', 'PutBlob');
  hook(handler('BlockBlobHandler'), 'commitBlockList', 'PutBlockList');
  hook(handler('PageBlobHandler'), 'create', 'PutBlob');
  hook(handler('AppendBlobHandler'), 'create', 'PutBlob');
  // Azurite finishes a copy within the request, so the event (sent when a copy completes) is due now.
  hook(handler('BlobHandler'), 'startCopyFromURL', 'CopyBlob');
  hook(handler('BlobHandler'), 'copyFromURL', 'CopyBlob');
} catch (err) {
  console.error('fnhost: could not hook blob writes for Event Grid: ' + err);
}

// Put Block From URL, which Azurite answers 501 (see the comment at the top).
try {
  const require = createRequire(process.argv[1]);
  const crypto = require('node:crypto');
  const { Readable, Transform } = require('node:stream');
  const BlockBlobHandler = require('./blob/handlers/BlockBlobHandler').default;
  const BlobStorageContext = require('./blob/context/BlobStorageContext').default;
  const StorageError = require('./blob/errors/StorageError').default;
  const StorageErrorFactory = require('./blob/errors/StorageErrorFactory').default;
  const { BLOB_API_VERSION } = require('./blob/utils/constants');
  // Azure's largest block (service version 2019-12-12 and later): 4000 MiB.
  const MAX_BLOCK_BYTES = 4000 * 1024 * 1024;
  const invalidHeader = (id, header, why) =>
    new StorageError(400, 'InvalidHeaderValue', 'The value for one of the HTTP headers is not in the correct format.', id, { HeaderName: header, HeaderValue: why });
  const errorMessage = (xml) => {
    const m = /<Message>([^<]*)<\/Message>/.exec(typeof xml === 'string' ? xml : '');
    return m ? m[1].split('\n')[0] : undefined;
  };
  BlockBlobHandler.prototype.stageBlockFromURL = async function (blockId, contentLength, sourceUrl, options, context) {
    const blobCtx = new BlobStorageContext(context);
    const id = context.contextId;
    if (contentLength !== 0) throw invalidHeader(id, 'Content-Length', 'must be 0 for Put Block From URL');
    // Not verified here, so refused rather than ignored: a checksum the caller relies on must be checked.
    if (options.sourceContentcrc64 !== undefined) throw invalidHeader(id, 'x-ms-source-content-crc64', "fnhost's Azurite verifies x-ms-source-content-md5 only");
    this.validateBlockId(blockId, blobCtx);
    await this.metadataStore.checkContainerExist(context, blobCtx.account, blobCtx.container);

    let url;
    try {
      url = new URL(sourceUrl);
    } catch {
      throw invalidHeader(id, 'x-ms-copy-source', 'not a URL');
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw invalidHeader(id, 'x-ms-copy-source', 'not an http(s) URL');
    // Only this Azurite's blobs, as Azurite's own Copy Blob: it fetches nothing from elsewhere.
    if (url.host !== (blobCtx.request.getHeader('host') || '')) {
      throw StorageErrorFactory.getCannotVerifyCopySource(id, 404, 'The specified resource does not exist');
    }
    let start = 0;
    let end;
    const headers = {};
    if (options.sourceRange !== undefined) {
      const m = /^bytes=(\d+)-(\d*)$/.exec(options.sourceRange);
      if (!m || (m[2] !== '' && Number(m[2]) < Number(m[1]))) throw invalidHeader(id, 'x-ms-source-range', 'not bytes=start-end');
      start = Number(m[1]);
      end = m[2] === '' ? undefined : Number(m[2]);
      headers.range = options.sourceRange;
    }
    const when = (d) => (d instanceof Date ? d.toUTCString() : String(d));
    const cond = options.sourceModifiedAccessConditions || {};
    if (cond.sourceIfMatch !== undefined) headers['if-match'] = cond.sourceIfMatch;
    if (cond.sourceIfNoneMatch !== undefined) headers['if-none-match'] = cond.sourceIfNoneMatch;
    if (cond.sourceIfModifiedSince !== undefined) headers['if-modified-since'] = when(cond.sourceIfModifiedSince);
    if (cond.sourceIfUnmodifiedSince !== undefined) headers['if-unmodified-since'] = when(cond.sourceIfUnmodifiedSince);
    if (options.copySourceAuthorization !== undefined) headers.authorization = options.copySourceAuthorization;

    // The source is read as Azure reads it: with the URL's own authorization (a SAS, or none for a
    // public container) or x-ms-copy-source-authorization, never with this request's credentials.
    let response;
    try {
      response = await fetch(url, { headers, redirect: 'manual' });
    } catch (err) {
      throw StorageErrorFactory.getCannotVerifyCopySource(id, 500, 'Could not read the copy source: ' + (err && err.message ? err.message : err));
    }
    if (response.status === 412 || response.status === 304) {
      await response.body?.cancel();
      throw new StorageError(412, 'SourceConditionNotMet', 'The source condition specified using HTTP conditional header(s) is not met.', id);
    }
    if (response.status === 416) {
      await response.body?.cancel();
      throw new StorageError(416, 'InvalidRange', 'The range specified is invalid for the current size of the resource.', id);
    }
    if (response.status !== (headers.range ? 206 : 200)) {
      const text = await response.text().catch(() => '');
      throw StorageErrorFactory.getCannotVerifyCopySource(id, response.status, errorMessage(text) || 'Could not verify the copy source within the specified time.');
    }
    const length = Number(response.headers.get('content-length'));
    if (headers.range) {
      // A range past the source's end is refused, not cut short: the block must be what was asked for.
      const m = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(response.headers.get('content-range') || '');
      // And one that starts at the end (Azurite answers it with an empty 206) names no byte.
      if (!m || Number(m[1]) !== start || Number(m[2]) < start || Number(m[2]) - start + 1 !== length || (end !== undefined && Number(m[2]) !== end)) {
        await response.body?.cancel();
        throw new StorageError(416, 'InvalidRange', 'The range specified is invalid for the current size of the resource.', id);
      }
    }
    if (!Number.isSafeInteger(length) || length > MAX_BLOCK_BYTES) {
      await response.body?.cancel();
      throw new StorageError(413, 'RequestBodyTooLarge', 'The request body is too large and exceeds the maximum permissible limit.', id, { MaxLimit: String(MAX_BLOCK_BYTES) });
    }
    const md5 = crypto.createHash('md5');
    const body = Readable.fromWeb(response.body).pipe(new Transform({
      transform(chunk, _encoding, done) {
        md5.update(chunk);
        done(null, chunk);
      },
    }));
    const persistency = await this.extentStore.appendExtent(body, id);
    const digest = md5.digest();
    if (persistency.count !== length) {
      throw StorageErrorFactory.getCannotVerifyCopySource(id, 500, 'The copy source ended after ' + persistency.count + ' of ' + length + ' bytes.');
    }
    if (options.sourceContentMD5 !== undefined && !Buffer.from(options.sourceContentMD5).equals(digest)) {
      throw StorageErrorFactory.getMd5Mismatch(id, Buffer.from(options.sourceContentMD5).toString('base64'), digest.toString('base64'));
    }
    await this.metadataStore.stageBlock(context, {
      accountName: blobCtx.account,
      containerName: blobCtx.container,
      blobName: blobCtx.blob,
      isCommitted: false,
      name: blockId,
      size: length,
      persistency,
    }, options.leaseAccessConditions);
    return {
      statusCode: 201,
      contentMD5: digest,
      requestId: id,
      version: BLOB_API_VERSION,
      date: blobCtx.startTime,
      isServerEncrypted: true,
      clientRequestId: options.requestId,
    };
  };
} catch (err) {
  console.error('fnhost: could not add Put Block From URL to Azurite: ' + err);
}

const statePath = process.env.FNHOST_AZURITE_STATE;
const token = process.env.FNHOST_AZURITE_TOKEN;
const service = Boolean(statePath && token);
const locationAt = process.argv.indexOf('--location');
const location = locationAt > 0 ? process.argv[locationAt + 1] : undefined;
const startedAt = new Date().toISOString();

let stopping = false;
const beginStop = () => {
  if (stopping) return;
  stopping = true;
  // A save that never finishes (a full disk) must not keep the process forever.
  setTimeout(() => {
    console.error('fnhost: Azurite did not close within 15 s; exiting');
    process.exit(1);
  }, 15000).unref();
};
process.on('SIGTERM', beginStop);
process.on('SIGINT', beginStop);
// Azurite's own handlers close its servers; they run after these.
const requestStop = () => {
  if (!stopping) process.emit('SIGTERM', 'SIGTERM');
};
// A second stop request (SIGINT after SIGTERM) makes Azurite close its servers twice; the second
// close rejects. That must not crash the process while the first close is saving its databases.
process.on('unhandledRejection', (err) => {
  console.error('fnhost: unhandled rejection in Azurite: ' + (err && err.stack ? err.stack : err));
});

const ours = () => {
  try {
    return JSON.parse(fs.readFileSync(statePath, 'utf8')).token === token;
  } catch {
    return false;
  }
};
const stateText = (fields) => JSON.stringify({ version: 1, pid: process.pid, token, location, startedAt, ...fields }, null, 2) + '\n';
const writeFully = (fd, text) => {
  fs.writeSync(fd, text);
  // Flushed before it counts: after a machine reset the file is whole or absent, never empty.
  fs.fsyncSync(fd);
  fs.closeSync(fd);
};

// fnhost's own requests, on each of the three ports. Without the token an Azurite says only whose
// it is (the data folder it serves, or the process it belongs to), so that a host looking for
// storage on these ports does not take another folder's or another process's for its own.
const emit = http.Server.prototype.emit;
http.Server.prototype.emit = function (event, req, res) {
  if (event === 'request' && typeof req.url === 'string' && req.url.startsWith('/__fnhost__/')) {
    answer(req, res);
    return true;
  }
  return emit.apply(this, arguments);
};
const answer = (req, res) => {
  req.resume();
  const send = (status, body) => {
    res.writeHead(status, { 'content-type': 'application/json', connection: 'close' });
    res.end(JSON.stringify(body));
  };
  if (!service) return send(403, { error: 'not this instance', fnhost: 'in-memory', pid: process.pid, hostPid: process.ppid });
  if (req.headers['x-fnhost-token'] !== token) return send(403, { error: 'not this instance', fnhost: 'folder', pid: process.pid, location });
  const me = { pid: process.pid, location, state: stopping ? 'stopping' : 'running' };
  if (req.url === '/__fnhost__/identity' && req.method === 'GET') return send(stopping ? 503 : 200, me);
  if (req.url === '/__fnhost__/shutdown' && req.method === 'POST') {
    send(202, me);
    return requestStop();
  }
  send(404, { error: 'unknown' });
};

if (service) {
  try {
    writeFully(fs.openSync(statePath, 'wx', 0o600), stateText({ status: 'starting' }));
  } catch (err) {
    if (err && err.code === 'EEXIST') {
      console.error('fnhost: ' + statePath + ' exists: another Azurite is using this data folder');
      process.exit(3);
    }
    throw err;
  }
  process.on('exit', () => {
    try {
      if (ours()) fs.unlinkSync(statePath);
    } catch {
      // the folder is gone
    }
  });
} else {
  process.on('disconnect', requestStop);
  process.on('message', (m) => {
    if (m === 'shutdown') beginStop();
    // AzuriteProcess.setListing: how List Blobs is answered from now on (azurite-listing.ts).
    if (m && typeof m === 'object' && m.fnhost === 'listing') {
      let error;
      try {
        if (!listing) throw new Error('the fast listing is not installed');
        listing.setMode(m.mode);
      } catch (err) {
        error = String(err && err.message ? err.message : err);
      }
      if (process.connected) process.send({ fnhost: 'listing', mode: m.mode, error });
    }
  });
}

const ready = (ports, host) => {
  if (service) {
    const tmp = statePath + '.' + process.pid + '.tmp';
    writeFully(fs.openSync(tmp, 'w', 0o600), stateText({ status: 'ready', host, ports }));
    fs.renameSync(tmp, statePath);
    setInterval(() => {
      if (stopping) return;
      if (location && !fs.existsSync(location)) process.exit(0);
      if (!ours()) requestStop();
    }, 2000).unref();
  }
  if (process.connected) process.send({ fnhost: 'ready', ports, host });
};

const found = {};
let host = '127.0.0.1';
let closed = 0;
const log = console.log.bind(console);
console.log = (...args) => {
  log(...args);
  const line = typeof args[0] === 'string' ? args[0] : '';
  const listening = /Azurite (Blob|Queue|Table) service is successfully listening at https?:\/\/(.+):(\d+)\s*$/.exec(line);
  if (listening) {
    host = listening[2];
    found[listening[1].toLowerCase()] = Number(listening[3]);
    if (found.blob && found.queue && found.table) ready({ blob: found.blob, queue: found.queue, table: found.table }, host);
  }
  if (line.includes('successfully closed') && ++closed === 3) setImmediate(() => process.exit(0));
};
`;
