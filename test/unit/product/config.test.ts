import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../../shared/config.js';

const storage = { AzureWebJobsStorage: 'UseDevelopmentStorage=true' };

describe('app settings', () => {
  it('applies the defaults and reads the tuning settings', () => {
    const defaults = loadConfig({ ...storage });
    expect(defaults).toMatchObject({ maxChunkSize: 200, progressIntervalSeconds: 2, prefetchBytes: 4 * 1024 * 1024, workspaceContainer: 'azureml-blobstore' });
    expect(loadConfig({ ...storage, BATCH_PREFETCH_MB: '0', BATCH_CHUNK_SIZE: '50' })).toMatchObject({ prefetchBytes: 0, maxChunkSize: 50 });
    expect(loadConfig({ ...storage, BATCH_PREFETCH_MB: '0.5' }).prefetchBytes).toBe(512 * 1024);
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
});
