import { describe, expect, it } from 'vitest';
import { BatchError } from '../../../shared/errors.js';
import { redactSecrets, secretKind } from '../../../shared/redact.js';
import { environmentOverrides, environmentVariables, environmentView, resolveEnvironment } from '../../../shared/schemas/environment.js';
import { deploymentSettings } from '../../../shared/schemas/resources.js';
import { settingsOverride } from '../../../shared/schemas/jobs.js';

const KEY = `${'a1B2'.repeat(21)}xy==`;
const JWT = 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4eXoifQ.c2lnbmF0dXJl';
const UNSIGNED = 'eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4eXoifQ.';

const secrets = [
  KEY,
  `DefaultEndpointsProtocol=https;AccountName=a;AccountKey=${KEY}`,
  'Endpoint=sb://x.servicebus.windows.net/;SharedAccessKeyName=r;SharedAccessKey=abc',
  'https://a.blob.core.windows.net/c/b?sv=2024-05-04&sr=b&sig=abcdef',
  'https://app.azurewebsites.net/api/f?code=abcdef',
  `Bearer ${'x'.repeat(20)}`,
  JWT,
  UNSIGNED,
];

describe('environment variables: secrets are references only', () => {
  it('refuses a literal that carries a secret, naming the variable', () => {
    for (const value of secrets) {
      expect(secretKind(value), value).toBeDefined();
      const parsed = deploymentSettings.safeParse({ environment_variables: { API_KEY: value } });
      expect(parsed.success, value).toBe(false);
      expect(parsed.error?.issues[0]?.path).toEqual(['environment_variables', 'API_KEY']);
      expect(settingsOverride.safeParse({ environment_variables: { API_KEY: value } }).success).toBe(false);
    }
  });

  it('keeps ordinary values: numbers, names, URLs with harmless queries, short words after Bearer', () => {
    for (const value of ['500', 'info', 'https://example.com/api?version=2&format=csv', 'Bearer token', 'eyJ', 'a=b;c=d', '']) {
      expect(secretKind(value), value).toBeUndefined();
      expect(environmentVariables.safeParse({ X: value }).success, value).toBe(true);
    }
  });

  it('accepts a reference to an app setting that is set, refuses one that is not, and refuses references in a job’s overrides', () => {
    process.env['ENV_TEST_SECRET'] = 'the-value';
    try {
      expect(environmentVariables.safeParse({ X: '${{app_settings.ENV_TEST_SECRET}}' }).success).toBe(true);
      expect(environmentVariables.safeParse({ X: 'prefix-${{ app_settings.ENV_TEST_SECRET }}' }).success).toBe(true);
      const unset = environmentVariables.safeParse({ X: '${{app_settings.ENV_TEST_UNSET}}' });
      expect(unset.error?.issues[0]?.message).toMatch(/app setting 'ENV_TEST_UNSET' is not set/);
      const override = environmentOverrides.safeParse({ X: '${{app_settings.ENV_TEST_SECRET}}' });
      expect(override.error?.issues[0]?.message).toMatch(/literal values/);
    } finally {
      delete process.env['ENV_TEST_SECRET'];
    }
  });

  it('resolves each reference once: a setting whose value reads like a reference is not expanded again', () => {
    const settings: Record<string, string> = { A: 'value-of-a', B: '${{app_settings.A}}' };
    const read = (name: string): string | undefined => settings[name];
    expect(resolveEnvironment({ X: '${{app_settings.A}}', Y: 'x-${{app_settings.B}}-y', Z: 'plain' }, read)).toEqual({ X: 'value-of-a', Y: 'x-${{app_settings.A}}-y', Z: 'plain' });
    const err = (() => {
      try {
        resolveEnvironment({ X: '${{app_settings.GONE}}' }, read);
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    expect(err).toBeInstanceOf(BatchError);
    expect((err as BatchError).code).toBe('scoring_setup_failed');
    expect((err as BatchError).message).toMatch(/environment_variables\.X: app setting 'GONE' is not set/);
  });

  it('views show values as given and references unresolved; a secret stored before the rule shows as <redacted>', () => {
    expect(environmentView({ A: '${{app_settings.S}}', B: '10', C: JWT })).toEqual({ A: '${{app_settings.S}}', B: '10', C: '<redacted>' });
  });
});

describe('redaction of tokens and keys in text', () => {
  it('redacts bearer tokens, JWTs (signed or not) and account keys, and leaves the words around them', () => {
    expect(redactSecrets(`GET with Authorization: Bearer ${JWT} failed`)).toBe('GET with Authorization: Bearer <redacted> failed');
    expect(redactSecrets(`token=${UNSIGNED} end`)).toBe('token=<redacted> end');
    expect(redactSecrets(`key ${KEY}.`)).toBe('key <redacted>.');
    expect(redactSecrets('Bearer realm="batch", error="invalid_token"')).toBe('Bearer realm="batch", error="invalid_token"');
  });
});
