import { AzuriteProcess } from '../../infra/local/src/storage/azurite.js';
import { Logger } from '../../infra/local/src/log.js';

/** An Azurite a test started (startAzurite). */
export interface TestAzurite {
  connectionString: string;
  stop: () => Promise<void>;
  setListing: (mode: 'off' | 'index' | 'on') => Promise<void>;
}

/**
 * Azurite started by a test itself (on free ports, in memory), for tests where storage must outlive
 * the host under test, as Azure Storage outlives a Functions host. `setListing` switches how it
 * answers List Blobs (AzuriteProcess.setListing), to list the same blobs both ways.
 */
export async function startAzurite(): Promise<TestAzurite> {
  const azurite = await AzuriteProcess.start({
    ports: { blob: 0, queue: 0, table: 0 },
    logger: new Logger({ minLevel: 'warning' }),
  });
  return { connectionString: azurite.connectionString, stop: () => azurite.stop(), setListing: (mode) => azurite.setListing(mode) };
}
