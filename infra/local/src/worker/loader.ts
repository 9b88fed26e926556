import { createRequire } from 'node:module';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { glob } from 'tinyglobby';
import { FnHostError, describeError } from '../errors.js';
import type { Logger } from '../log.js';
import type { WorkerRuntime } from './worker-runtime.js';

export interface LoadOptions {
  scriptRoot: string;
  entryPattern: string;
  isEsm: boolean;
  runtime: WorkerRuntime;
  logger: Logger;
}

function isEsModule(file: string, packageIsEsm: boolean): boolean {
  if (file.endsWith('.mjs')) return true;
  if (file.endsWith('.cjs')) return false;
  return packageIsEsm;
}

/**
 * Loads every file matching package.json `main`, in sorted order, the way the Node.js worker
 * does. A file that throws while loading stops start-up with an error naming the file.
 */
export async function loadEntryPoints(options: LoadOptions): Promise<string[]> {
  const files = (await glob(options.entryPattern, { cwd: options.scriptRoot, onlyFiles: true })).sort();
  if (files.length === 0) {
    throw new FnHostError(
      'ERR_APP_LOAD',
      `Found zero files matching "${options.entryPattern}" under ${options.scriptRoot}. Did you build the app (npm run build)?`,
    );
  }
  const requireFromRoot = createRequire(join(options.scriptRoot, 'package.json'));
  for (const file of files) {
    const fullPath = join(options.scriptRoot, file);
    options.runtime.currentEntryPoint = fullPath;
    const started = Date.now();
    try {
      if (isEsModule(file, options.isEsm)) {
        await import(pathToFileURL(fullPath).href);
      } else {
        requireFromRoot(fullPath);
      }
    } catch (err) {
      throw new FnHostError('ERR_APP_LOAD', `Failed to load "${file}": ${describeError(err)}`, {
        cause: err,
        details: { file: fullPath },
      });
    } finally {
      options.runtime.currentEntryPoint = undefined;
    }
    options.logger.debug(`Loaded entry point "${file}" in ${Date.now() - started}ms`);
  }
  return files;
}
