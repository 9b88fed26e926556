import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../../shared/config.js';

const storage = { AzureWebJobsStorage: 'UseDevelopmentStorage=true' };

describe('app settings', () => {
  it('applies the defaults and reads the tuning settings', () => {
    const defaults = loadConfig({ ...storage });
    expect(defaults).toMatchObject({ maxChunkSize: 200, progressIntervalSeconds: 2, prefetchBytes: 4 * 1024 * 1024, workspaceContainer: 'azureml-blobstore' });
    expect(loadConfig({ ...storage, BATCH_PREFETCH_MB: '0', BATCH_CHUNK_SIZE: '50' })).toMatchObject({ prefetchBytes: 0, maxChunkSize: 50 });
    expect(loadConfig({ ...storage, BATCH_PREFETCH_MB: '0.5' }).prefetchBytes).toBe(512 * 1024);
    expect(defaults.scoringYoungGenerationMb).toBe(12);
    expect(loadConfig({ ...storage, BATCH_SCORING_YOUNG_GENERATION_MB: '48' }).scoringYoungGenerationMb).toBe(48);
    expect(() => loadConfig({ ...storage, BATCH_SCORING_YOUNG_GENERATION_MB: '2' })).toThrow(/^BATCH_SCORING_YOUNG_GENERATION_MB: /m);
  });

  it('names every bad setting at once', () => {
    let message = '';
    try {
      loadConfig({ ...storage, BATCH_PREFETCH_MB: '-1', BATCH_CHUNK_SIZE: 'many' });
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toMatch(/^BATCH_CHUNK_SIZE: /m);
    expect(message).toMatch(/^BATCH_PREFETCH_MB: /m);
    expect(() => loadConfig({})).toThrow(/AzureWebJobsStorage/);
  });

  it("derives the web page's sign-in from the Entra settings, and refuses a tenant the API does not accept", () => {
    const entra = { ...storage, BATCH_AUTH_MODE: 'entra', BATCH_AUTH_TENANTS: 'aaaa-1,bbbb-2', BATCH_AUTH_AUDIENCES: 'api://batch,1234' };
    expect(loadConfig(entra).webSignIn).toBeUndefined();
    expect(loadConfig({ ...storage, BATCH_WEB_CLIENT_ID: 'web-app' }).webSignIn).toBeUndefined();
    expect(loadConfig({ ...entra, BATCH_WEB_CLIENT_ID: 'web-app' }).webSignIn).toEqual({
      clientId: 'web-app',
      tenant: 'aaaa-1',
      authorizationEndpoint: 'https://login.microsoftonline.com/aaaa-1/oauth2/v2.0/authorize',
      tokenEndpoint: 'https://login.microsoftonline.com/aaaa-1/oauth2/v2.0/token',
      scopes: ['api://batch/.default'],
    });
    const local = loadConfig({ ...entra, BATCH_WEB_CLIENT_ID: 'web-app', BATCH_WEB_TENANT: 'BBBB-2', BATCH_WEB_SCOPES: 'api://batch/Jobs.Read api://batch/Jobs.Invoke', BATCH_AUTH_METADATA_URL: 'http://127.0.0.1:7990/{tenant}/v2.0/.well-known/openid-configuration' }).webSignIn;
    expect(local).toMatchObject({ tenant: 'bbbb-2', tokenEndpoint: 'http://127.0.0.1:7990/bbbb-2/oauth2/v2.0/token', scopes: ['api://batch/Jobs.Read', 'api://batch/Jobs.Invoke'] });
    expect(() => loadConfig({ ...entra, BATCH_WEB_CLIENT_ID: 'web-app', BATCH_WEB_TENANT: 'cccc-3' })).toThrow(/BATCH_WEB_TENANT: 'cccc-3' is not one of BATCH_AUTH_TENANTS/);
    expect(() => loadConfig({ ...entra, BATCH_WEB_CLIENT_ID: 'web-app', BATCH_WEB_AUTHORITY: 'http://login.example.com/x' })).toThrow(/BATCH_WEB_AUTHORITY: must be an https URL/);
    expect(() => loadConfig({ ...entra, BATCH_WEB_CLIENT_ID: 'web-app', BATCH_AUTH_METADATA_URL: 'https://idp.example.com/{tenant}/metadata' })).toThrow(/BATCH_WEB_AUTHORITY: required/);
    expect(loadConfig({ ...entra, BATCH_WEB_CLIENT_ID: 'web-app', BATCH_AUTH_METADATA_URL: 'https://idp.example.com/{tenant}/metadata', BATCH_WEB_AUTHORITY: 'https://idp.example.com/{tenant}/' }).webSignIn?.authorizationEndpoint).toBe(
      'https://idp.example.com/aaaa-1/oauth2/v2.0/authorize',
    );
  });
});
