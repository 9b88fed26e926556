// The CLI's connection: options, environment and profile in that order; tokens from `az`.
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { resolveConnection, writeProfile } from '../../cli/src/connection.js';
import { fieldPath } from '../../cli/src/yaml-source.js';

const dir = mkdtempSync(join(tmpdir(), 'cli-conn-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('CLI connection', () => {
  it('takes each setting from options, then the environment, then the profile; the first source naming a credential decides', () => {
    const env = { XDG_CONFIG_HOME: join(dir, 'a') };
    writeProfile('local', { url: 'http://profile:1', key: 'profile-key', storage_connection_string: 'UseDevelopmentStorage=true' }, true, env);
    const fromProfile = resolveConnection({}, env);
    expect(fromProfile).toMatchObject({ url: 'http://profile:1', auth: { kind: 'key', key: 'profile-key' }, storageConnectionString: 'UseDevelopmentStorage=true' });
    const fromEnv = resolveConnection({}, { ...env, BATCH_ENDPOINTS_URL: 'http://env:2/', BATCH_ENDPOINTS_KEY: 'env-key' });
    expect(fromEnv).toMatchObject({ url: 'http://env:2', auth: { kind: 'key', key: 'env-key' } });
    const token = resolveConnection({ token: 'option-token' }, { ...env, BATCH_ENDPOINTS_KEY: 'env-key' });
    expect(token.url).toBe('http://profile:1');
    expect(token.auth.kind).toBe('token');
    expect(() => resolveConnection({ profile: 'nope' }, env)).toThrow(/no profile 'nope'.*profiles: local/);
    expect(() => resolveConnection({}, { XDG_CONFIG_HOME: join(dir, 'empty') })).toThrow(/No API URL/);
  });

  it('names the field and line of a bad profile file', () => {
    const home = join(dir, 'bad');
    mkdirSync(join(home, 'batch-endpoints'), { recursive: true });
    writeFileSync(join(home, 'batch-endpoints', 'config.yaml'), 'profiles:\n  x:\n    url: not a url\n    keyy: k\n');
    expect(() => resolveConnection({}, { XDG_CONFIG_HOME: home })).toThrow(/config\.yaml:3:5: profiles\.x\.url: [^\n]*\n[^\n]*config\.yaml:4:5: profiles\.x\.keyy: unknown field/);
  });

  it('gets an Entra token from `az account get-access-token --resource`', async () => {
    const bin = join(dir, 'bin');
    mkdirSync(bin);
    writeFileSync(join(bin, 'az'), `#!/bin/sh\necho "$@" > "${join(dir, 'az-args')}"\necho token-from-az\n`);
    chmodSync(join(bin, 'az'), 0o755);
    const saved = process.env['PATH'];
    process.env['PATH'] = `${bin}${delimiter}${saved ?? ''}`;
    try {
      const connection = resolveConnection({ url: 'https://app.example', resource: 'api://batch-endpoints' }, { XDG_CONFIG_HOME: join(dir, 'none') });
      expect(connection.auth.kind).toBe('token');
      if (connection.auth.kind !== 'token') return;
      expect(await connection.auth.token()).toBe('token-from-az');
      expect(readFileSync(join(dir, 'az-args'), 'utf8').trim()).toBe('account get-access-token --resource api://batch-endpoints --query accessToken --output tsv');
    } finally {
      process.env['PATH'] = saved;
    }
  });

  it('reads field names as the API writes them', () => {
    expect(fieldPath('settings.retry_settings.max_retries')).toEqual(['settings', 'retry_settings', 'max_retries']);
    expect(fieldPath('inputs.data.files[2].name')).toEqual(['inputs', 'data', 'files', 2, 'name']);
    expect(fieldPath('(body)')).toEqual([]);
  });
});
