import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { type BrowserContext, chromium } from 'playwright-core';

/** Debian's chromium package (`.ci/run` installs it); no browser is ever downloaded. */
export const CHROMIUM = '/usr/bin/chromium';

/** Where browser tests keep their screenshots (ignored by git). */
export const ARTIFACTS = resolve(import.meta.dirname, '..', '..', 'test-artifacts');

/**
 * Launches headless chromium with a fresh profile and nothing that reaches the network on its
 * own (no sync, updates or background fetches); `close` also removes the profile.
 */
export async function launchChromium(options: { viewport?: { width: number; height: number } } = {}): Promise<{ context: BrowserContext; close: () => Promise<void> }> {
  const profile = mkdtempSync(join(tmpdir(), 'chromium-profile-'));
  // A fresh profile each time (playwright passes it as --user-data-dir).
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: options.viewport ?? { width: 1280, height: 900 },
  });
  return {
    context,
    close: async () => {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

/** A screenshot's path under test-artifacts/{folder}/ (created). */
export function artifact(folder: string, name: string): string {
  const dir = join(ARTIFACTS, folder);
  mkdirSync(dir, { recursive: true });
  return join(dir, name);
}
