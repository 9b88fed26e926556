import { BatchError } from '../errors.js';
import { parseAssetRef } from '../registry/versions.js';
import { blobUrlAccount } from '../storage/endpoints.js';

/**
 * The ways a job or asset points at data, as Azure ML accepts them:
 * - `azureml://datastores/{datastore}/paths/{path}`
 * - `https://{account}.blob.core.windows.net/{container}/{path}` (only for a registered account),
 *   or the emulator's path-style `http://127.0.0.1:10000/{account}/{container}/{path}`
 * - `azureml:{asset}:{version}` or `azureml:{asset}@latest` (a data asset; see registry/versions.ts)
 */
export type DataUri =
  | { kind: 'datastore'; datastore: string; path: string }
  | {
      kind: 'blob-url';
      account: string;
      container: string;
      /** Decoded. */
      path: string;
      url: string;
      /** The URL up to the container: origin, plus the account for path-style (emulator) URLs. */
      base: string;
    }
  | { kind: 'asset'; name: string; /** A version, or `latest` (registry/versions.ts). */ version: string };

const DATASTORE = /^azureml:\/\/datastores\/([^/]+)\/paths\/?(.*)$/i;

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
// eslint-disable-next-line no-control-regex -- these are exactly what is refused
const CONTROL = /[\u0000-\u001f\u007f]/;
const DATASTORE_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$/;

function cleanPath(path: string, field: string): string {
  let decoded: string;
  try {
    decoded = decodeURIComponent(path);
  } catch {
    throw new BatchError('validation_failed', `${field}: the path is not correctly URL-encoded.`, { issues: [{ field, message: 'invalid URL encoding' }] });
  }
  if (LONE_SURROGATE.test(decoded)) {
    throw new BatchError('validation_failed', `${field}: the path is not valid Unicode (it holds half of a surrogate pair).`, { issues: [{ field, message: 'not valid Unicode' }] });
  }
  if (CONTROL.test(decoded)) {
    throw new BatchError('validation_failed', `${field}: the path holds a control character, which a blob path cannot.`, { issues: [{ field, message: 'control characters are not allowed' }] });
  }
  const trimmed = decoded.replace(/^\/+/, '');
  if (trimmed.split('/').some((s) => s === '..' || s === '.')) {
    throw new BatchError('validation_failed', `${field}: "." and ".." segments are not allowed.`, { issues: [{ field, message: 'relative segments are not allowed' }] });
  }
  return trimmed;
}

/** Parses a data path; `field` names the request field in errors. */
export function parseDataUri(text: string, field: string): DataUri {
  const value = text.trim();
  const ds = DATASTORE.exec(value);
  if (ds) {
    const datastore = ds[1] ?? '';
    if (!DATASTORE_NAME.test(datastore)) {
      throw new BatchError('validation_failed', `${field}: "${datastore}" is not a datastore name.`, { issues: [{ field, message: 'not a datastore name' }] });
    }
    return { kind: 'datastore', datastore, path: cleanPath(ds[2] ?? '', field) };
  }
  const asset = value.startsWith('azureml:') ? parseAssetRef(value.slice('azureml:'.length)) : undefined;
  if (asset) return { kind: 'asset', ...asset };
  if (/^https?:\/\//i.test(value)) {
    // Which hosts a blob URL may name is decided in storage/endpoints.ts; it is then only matched
    // with a registered datastore's account (registry.resolveData), never fetched as given.
    const blob = blobUrlAccount(value, field);
    if (blob) {
      const url = blob.url;
      // '#' and '?' end a URL's path: left unencoded in a name, they would cut it short silently.
      // A SAS query is accepted (as Azure ML does) and dropped: the datastore's credentials are used.
      if (url.hash !== '' || (url.search !== '' && !url.searchParams.has('sig'))) {
        throw new BatchError('validation_failed', `${field}: "${value}" has a '${url.hash !== '' ? '#' : '?'}' that ends its path; encode a '#' in a name as %23 and a '?' as %3F.`, {
          issues: [{ field, message: "unencoded '#' or '?'" }],
        });
      }
      const segments = blob.path.split('/');
      const container = segments.shift();
      if (!container) {
        throw new BatchError('path_outside_datastores', `${field}: "${value}" is not a blob URL (https://{account}.blob.core.windows.net/{container}/{path}).`, {
          issues: [{ field, message: 'not a blob URL' }],
        });
      }
      return { kind: 'blob-url', account: blob.account, container, path: cleanPath(segments.join('/'), field), url: value, base: blob.base };
    }
  }
  throw new BatchError(
    'path_outside_datastores',
    `${field}: "${value}" is not a data path. Use azureml://datastores/{datastore}/paths/{path}, a blob URL of a registered account, or azureml:{data_asset}:{version}.`,
    { issues: [{ field, message: 'unsupported data path' }] },
  );
}

/**
 * Percent-encodes one decoded path segment for a URI: everything `encodeURIComponent` escapes but
 * the characters RFC 3986 allows in a path segment as they are (`:@!$&'()*+,;=`), so canonical URIs
 * stay readable. `%` is always escaped, which is what makes {@link parseDataUri} of the result give
 * back exactly the decoded path (a path is decoded once, at the edge, and never again).
 */
export function encodePathSegment(segment: string): string {
  return encodeURIComponent(segment).replace(/%(3A|40|21|24|26|27|28|29|2A|2B|2C|3B|3D)/gi, (escaped) => decodeURIComponent(escaped));
}

/** A decoded blob path as it appears in a URI: each segment encoded, the slashes kept. */
export function encodePath(path: string): string {
  return path.split('/').map(encodePathSegment).join('/');
}

/**
 * The canonical URI of a decoded `path` on a datastore. The path is encoded here, and only here:
 * `parseDataUri(datastoreUri(d, p))` gives back `p` for every path.
 */
export function datastoreUri(datastore: string, path: string): string {
  return `azureml://datastores/${datastore}/paths/${encodePath(path)}`;
}
