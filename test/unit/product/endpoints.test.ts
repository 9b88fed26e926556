import { describe, expect, it } from 'vitest';
import { parseDataUri } from '../../../shared/data/data-uri.js';
import { BatchError, errorMessage, toProblem } from '../../../shared/errors.js';
import { redactSecrets } from '../../../shared/redact.js';
import { blobUrlAccount, checkAccountUrl, connectionAccountUrl, endpointPolicy } from '../../../shared/storage/endpoints.js';

const AZURITE = 'DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;BlobEndpoint=http://127.0.0.1:41234/devstoreaccount1;TableEndpoint=http://127.0.0.1:41236/devstoreaccount1;';
const CLOUD = 'DefaultEndpointsProtocol=https;AccountName=appstore;AccountKey=a2V5;EndpointSuffix=core.windows.net';
const emulator = endpointPolicy(AZURITE);
const cloud = endpointPolicy(CLOUD);

function refusal(fn: () => unknown): BatchError {
  try {
    fn();
  } catch (err) {
    if (err instanceof BatchError) return err;
    throw err;
  }
  throw new Error('expected a refusal');
}

/** Every way of writing an address the app must never contact, as an account URL. */
export const HOSTILE_ACCOUNT_URLS = [
  'http://169.254.169.254/metadata',
  'http://169.254.169.254',
  'http://2852039166/',
  'http://0xA9FEA9FE/',
  'http://0251.0376.0251.0376/',
  'http://[::ffff:169.254.169.254]/',
  'http://[::ffff:a9fe:a9fe]/',
  'http://localhost/',
  'http://127.0.0.1/',
  'http://127.0.0.1:10000/devstoreaccount1',
  'http://[::1]:41234/devstoreaccount1',
  'http://10.0.0.5/',
  'http://172.16.3.4/',
  'http://192.168.1.1/',
  'http://[fd00::1]/',
  'file:///etc/passwd',
  'ftp://acct.blob.core.windows.net/',
  'javascript:alert(1)',
  'gopher://acct.blob.core.windows.net/',
  'https://acct.blob.core.windows.net.evil.com',
  'https://acct-blob.core.windows.net',
  'https://evilcore.windows.net',
  'https://acct.blob.evilcore.windows.net',
  'https://acct.blob.core.windows.net%2eevil.com',
  'https://acct%2eblob.core.windows.net',
  'https://acct.blob.core.windows.net.',
  'https://ACCT.blob.core.windows.net',
  'https://acct.BLOB.core.windows.net',
  'https://аcct.blob.core.windows.net', // Cyrillic а
  'https://xn--cct-8cd.blob.core.windows.net',
  'https://acct.blob.core.windows.net:8443',
  'https://user:pass@acct.blob.core.windows.net',
  'https://acct.blob.core.windows.net@evil.com',
  'https://evil.com#@acct.blob.core.windows.net',
  'https://acct.blob.core.windows.net/?sv=1',
  'https://acct.blob.core.windows.net/other',
  'http://acct.blob.core.windows.net',
  '//acct.blob.core.windows.net',
  'acct.blob.core.windows.net',
  '',
];

describe('which storage URLs may be contacted (storage/endpoints.ts)', () => {
  it('allows emulator origins only when the app storage is the emulator', () => {
    expect(emulator.emulator).toEqual({ origin: 'http://127.0.0.1:41234', accounts: ['devstoreaccount1'] });
    expect(endpointPolicy('UseDevelopmentStorage=true').emulator).toEqual({ origin: 'http://127.0.0.1:10000', accounts: ['devstoreaccount1'] });
    expect(cloud.emulator).toBeUndefined();
  });

  it("accepts an account's own blob endpoint in every allow-listed cloud, and the configured emulator", () => {
    expect(checkAccountUrl('https://acct.blob.core.windows.net', 'f', cloud, { account: 'acct', suffix: 'core.windows.net' })).toEqual({ url: 'https://acct.blob.core.windows.net', account: 'acct', emulator: false });
    expect(checkAccountUrl('https://acct.blob.core.windows.net/', 'f', cloud).url).toBe('https://acct.blob.core.windows.net');
    expect(checkAccountUrl('https://acct.blob.core.chinacloudapi.cn', 'f', cloud).account).toBe('acct');
    expect(checkAccountUrl('https://acct.blob.core.usgovcloudapi.net', 'f', cloud).account).toBe('acct');
    expect(checkAccountUrl('http://127.0.0.1:41234/devstoreaccount1', 'f', emulator)).toEqual({ url: 'http://127.0.0.1:41234/devstoreaccount1', account: 'devstoreaccount1', emulator: true });
  });

  it.each(HOSTILE_ACCOUNT_URLS)('refuses %s as an account URL, naming the field', (url) => {
    for (const policy of [cloud, emulator]) {
      const err = refusal(() => checkAccountUrl(url, 'credentials.account_url', policy, { account: 'acct', suffix: 'core.windows.net' }));
      expect(err.code).toBe('validation_failed');
      expect(toProblem(err).status).toBe(400);
      expect(err.issues[0]?.field).toBe('credentials.account_url');
    }
  });

  it('refuses the emulator where the app storage is in Azure, and another account or cloud than the datastore names', () => {
    expect(refusal(() => checkAccountUrl('http://127.0.0.1:41234/devstoreaccount1', 'f', cloud)).issues[0]?.field).toBe('f');
    expect(refusal(() => checkAccountUrl('http://127.0.0.1:41234/otheracct', 'f', emulator)).issues[0]?.field).toBe('f');
    expect(refusal(() => checkAccountUrl('https://other.blob.core.windows.net', 'f', cloud, { account: 'acct' })).issues[0]?.message).toMatch(/account 'acct'/);
    expect(refusal(() => checkAccountUrl('https://acct.blob.core.chinacloudapi.cn', 'f', cloud, { account: 'acct', suffix: 'core.windows.net' })).issues[0]?.message).toMatch(/core\.windows\.net/);
  });

  it("checks where a connection string reaches, and never shows the connection string", () => {
    expect(connectionAccountUrl(CLOUD, 'credentials.setting', cloud, 'appstore').url).toBe('https://appstore.blob.core.windows.net');
    expect(connectionAccountUrl(AZURITE, 'credentials.setting', emulator, 'devstoreaccount1')).toMatchObject({ emulator: true });
    for (const bad of [
      'DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=c2VjcmV0;BlobEndpoint=http://169.254.169.254/',
      'DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=c2VjcmV0;EndpointSuffix=evil.com',
      'BlobEndpoint=https://acct.blob.core.windows.net.evil.com;SharedAccessSignature=sv=2024&sig=c2VjcmV0',
      CLOUD,
    ]) {
      const err = refusal(() => connectionAccountUrl(bad, 'credentials.setting', cloud, 'acct'));
      expect(err.issues[0]?.field).toBe('credentials.setting');
      expect(JSON.stringify(toProblem(err))).not.toMatch(/c2VjcmV0|a2V5|evil/);
    }
  });

  it.each([
    'http://169.254.169.254/acct/c/x.csv',
    'http://0xA9FEA9FE/acct/c/x.csv',
    'http://2852039166/acct/c/x.csv',
    'http://[::ffff:169.254.169.254]/acct/c/x.csv',
    'http://10.1.2.3/acct/c/x.csv',
    'http://172.20.0.1/acct/c/x.csv',
    'http://192.168.0.1/acct/c/x.csv',
    'http://[fd00::1]/acct/c/x.csv',
    'https://acct.blob.core.windows.net.evil.com/c/x.csv',
    'https://acct-blob.core.windows.net/c/x.csv',
    'https://evilcore.windows.net/c/x.csv',
    'https://acct%2eblob.core.windows.net/c/x.csv',
    'https://acct.blob.core.windows.net./c/x.csv',
    'https://ACCT.blob.core.windows.net/c/x.csv',
    'https://аcct.blob.core.windows.net/c/x.csv',
    'https://user:pass@acct.blob.core.windows.net/c/x.csv',
    'https://acct.blob.core.windows.net@evil.com/c/x.csv',
    'https://acct.blob.core.windows.net:444/c/x.csv',
    'http://acct.blob.core.windows.net/c/x.csv',
    'http://127.0.0.1/devstoreaccount1/c/x.csv',
    'http://user@127.0.0.1:10000/devstoreaccount1/c/x.csv',
  ])('refuses the blob URL %s, naming the field', (url) => {
    const err = refusal(() => parseDataUri(url, 'inputs.x.path'));
    expect(toProblem(err).status).toBe(400);
    expect(err.issues[0]?.field).toBe('inputs.x.path');
  });

  it.each(['file:///etc/passwd', 'ftp://acct.blob.core.windows.net/c/x', 'javascript:alert(1)', 'data:text/plain,x', 'gopher://127.0.0.1:70/_x', 'HTTPS://acct.blob.core.windows.net/c/x'])('refuses the scheme of %s', (url) => {
    const err = refusal(() => parseDataUri(url, 'path'));
    expect(toProblem(err).status).toBe(400);
    expect(err.issues[0]?.field).toBe('path');
  });

  it('takes blob URLs written as the app writes them: cloud hosts, and path-style loopback (matched, never contacted, unless registered)', () => {
    expect(blobUrlAccount('https://acct.blob.core.windows.net/c/a.csv', 'f')).toMatchObject({ account: 'acct', base: 'https://acct.blob.core.windows.net', path: 'c/a.csv' });
    expect(blobUrlAccount('https://acct.blob.core.usgovcloudapi.net/c/a.csv', 'f')).toMatchObject({ base: 'https://acct.blob.core.usgovcloudapi.net' });
    expect(blobUrlAccount('http://127.0.0.1:10000/devstoreaccount1/c/a.csv', 'f')).toMatchObject({ account: 'devstoreaccount1', base: 'http://127.0.0.1:10000/devstoreaccount1', path: 'c/a.csv' });
    expect(parseDataUri('https://acct.blob.core.windows.net/c/a.csv?sv=2024-05-04&se=2030-01-01&sr=c&sp=r&sig=abc%2Bdef', 'f')).toMatchObject({ kind: 'blob-url', account: 'acct', container: 'c', path: 'a.csv' });
  });
});

describe('redaction (redact.ts)', () => {
  const sas = 'https://acct.blob.core.windows.net/c/a.csv?sv=2024-05-04&se=2030-01-01T00%3A00%3A00Z&sr=b&sp=r&sig=c2VjcmV0c2lnbmF0dXJl';

  it("keeps a URL's path and replaces its query", () => {
    expect(redactSecrets(`reading "${sas}" failed`)).toBe('reading "https://acct.blob.core.windows.net/c/a.csv?<redacted>" failed');
    expect(redactSecrets('see https://host/x?code=functionkey and http://h/y')).toBe('see https://host/x?<redacted> and http://h/y');
  });

  it('redacts keys and SAS tokens of connection strings, and a bare signature', () => {
    expect(redactSecrets('AccountName=a;AccountKey=c2VjcmV0==;BlobEndpoint=https://a.blob.core.windows.net/')).toBe('AccountName=a;AccountKey=<redacted>;BlobEndpoint=https://a.blob.core.windows.net/');
    expect(redactSecrets('SharedAccessSignature=sv=1&sig=c2VjcmV0;x')).toBe('SharedAccessSignature=<redacted>;x');
    expect(redactSecrets('token sv=1&sig=c2VjcmV0 here')).toBe('token sv=1&sig=<redacted> here');
  });

  it('applies to every error the app shows: problem details, field messages and job error messages', () => {
    const err = refusal(() => parseDataUri(`${sas}#frag`, 'inputs.x.path'));
    const shown = JSON.stringify(toProblem(err));
    expect(shown).toContain('inputs.x.path');
    expect(shown).not.toContain('c2VjcmV0c2lnbmF0dXJl');
    expect(errorMessage(new Error(`GET ${sas} failed`))).not.toContain('sig=');
    expect(new BatchError('internal', sas, { issues: [{ field: 'f', message: sas }] }).issues[0]?.message).toBe('https://acct.blob.core.windows.net/c/a.csv?<redacted>');
  });
});
