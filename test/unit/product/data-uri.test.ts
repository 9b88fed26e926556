import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { datastoreUri, encodePath, parseDataUri } from '../../../shared/data/data-uri.js';

/** Blob path segments with the characters that break paths decoded twice or not at all. */
const segment = fc
  .array(fc.oneof(fc.constantFrom('%', '%25', '%2F', ' ', '#', '?', '+', '&', '=', ':', '@', 'ü', 'ファイル', '😀', "'", '(', ')', '~'), fc.stringMatching(/^[A-Za-z0-9._-]{1,6}$/)), { minLength: 1, maxLength: 6 })
  .map((parts) => parts.join(''))
  .filter((s) => s !== '.' && s !== '..');
const path = fc.array(segment, { minLength: 1, maxLength: 4 }).chain((segments) => fc.boolean().map((folder) => `${segments.join('/')}${folder ? '/' : ''}`));

describe('data URIs are decoded once', () => {
  it('gives back exactly the decoded path from the canonical URI it makes, for any path', () => {
    fc.assert(
      fc.property(path, (p) => {
        const parsed = parseDataUri(datastoreUri('ds', p), 'f');
        expect(parsed).toEqual({ kind: 'datastore', datastore: 'ds', path: p });
      }),
      { numRuns: 500 },
    );
  });

  it('decodes a blob URL once, for any path', () => {
    fc.assert(
      fc.property(path, (p) => {
        const parsed = parseDataUri(`https://acct.blob.core.windows.net/c/${encodePath(p)}`, 'f');
        expect(parsed).toMatchObject({ kind: 'blob-url', account: 'acct', container: 'c', path: p, base: 'https://acct.blob.core.windows.net' });
        const emulator = parseDataUri(`http://127.0.0.1:10000/devstoreaccount1/c/${encodePath(p)}`, 'f');
        expect(emulator).toMatchObject({ account: 'devstoreaccount1', path: p, base: 'http://127.0.0.1:10000/devstoreaccount1' });
      }),
      { numRuns: 300 },
    );
  });

  it('takes the cases of issue 8 as the folders they name', () => {
    expect(parseDataUri('azureml://datastores/ws/paths/data/100%25%20sample/', 'f')).toMatchObject({ path: 'data/100% sample/' });
    expect(parseDataUri('azureml://datastores/ws/paths/data/50%2525/', 'f')).toMatchObject({ path: 'data/50%25/' });
    expect(datastoreUri('ws', 'data/100% sample/')).toBe('azureml://datastores/ws/paths/data/100%25%20sample/');
    // Readable where a URI allows it; unencoded spaces are accepted as they are.
    expect(datastoreUri('ws', "a:b@c+d/(x)'y")).toBe("azureml://datastores/ws/paths/a:b@c+d/(x)'y");
    expect(parseDataUri('azureml://datastores/ws/paths/my folder/', 'f')).toMatchObject({ path: 'my folder/' });
    expect(() => parseDataUri('azureml://datastores/ws/paths/100% sample/', 'inputs.x.path')).toThrow(/not correctly URL-encoded/);
  });

  it('refuses at the edge what no blob path can hold, naming the field', () => {
    const refused = (text: string, message: RegExp): void => {
      let error: unknown;
      try {
        parseDataUri(text, 'inputs.x.path');
      } catch (err) {
        error = err;
      }
      expect(error).toMatchObject({ code: 'validation_failed', issues: [{ field: 'inputs.x.path' }] });
      expect((error as Error).message).toMatch(message);
    };
    refused('azureml://datastores/ws/paths/a/\ud800/', /not valid Unicode/);
    refused('azureml://datastores/ws/paths/a/%ED%A0%80/', /not correctly URL-encoded/);
    refused('azureml://datastores/ws/paths/a/%00/', /control character/);
    refused('azureml://datastores/ws/paths/a/b\u0001c', /control character/);
    refused('azureml://datastores/a#b/paths/x/', /not a datastore name/);
    refused('http://127.0.0.1:10000/devstoreaccount1/c/ha#sh/', /'#' that ends its path/);
    refused('https://acct.blob.core.windows.net/c/what?.csv', /'\?' that ends its path/);
    // A SAS query is a query, not part of the name.
    expect(parseDataUri('https://acct.blob.core.windows.net/c/x.csv?sv=2024&sig=abc', 'f')).toMatchObject({ path: 'x.csv' });
  });
});
