import { randomBytes, timingSafeEqual } from 'node:crypto';
import { closeSync, fsyncSync, mkdirSync, openSync, renameSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { z } from 'zod';
import type { KeySettings } from '../config/app-config.js';
import { FnHostError } from '../errors.js';
import { readStateFile } from '../state-file.js';

/** The access levels of the Functions host. */
export type AccessLevel = 'anonymous' | 'function' | 'system' | 'admin';

export interface KeySet {
  master: string;
  host: Record<string, string>;
  functions: Record<string, Record<string, string>>;
  system: Record<string, string>;
}

function newKey(): string {
  return randomBytes(30).toString('base64url');
}

function safeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

const keyMap = z.record(z.string(), z.string());
const keysFileSchema = z.object({
  master: z.string().min(1).optional(),
  host: keyMap.optional(),
  functions: z.record(z.string(), keyMap).optional(),
  system: keyMap.optional(),
});

/**
 * Reads the keys file of a data folder; undefined when there is none (the first start). One that
 * cannot be read is refused, naming it, rather than replaced by new keys: every client that saved
 * a key (a script, a webhook, a colleague) would then be answered 401 without a word as to why.
 * Regenerating is one `rm` away for a user who wants it; a lost key is not.
 */
export function readKeysFile(file: string): Partial<KeySet> | undefined {
  const read = readStateFile(file, keysFileSchema);
  if (!read.found) return undefined;
  if ('value' in read) return read.value;
  const problem = read.problem;
  throw new FnHostError(
    'ERR_CONFIG',
    `The keys file ${file} is not usable (${problem}). fnhost will not start on it: it would generate new keys over it, and ` +
      'every caller that saved a key would be refused. Restore it from a backup (the keys are printed at start: "Master key: ..."), ' +
      'or delete it to have new keys generated.',
    { details: { file } },
  );
}

/** Writes `text` to `file` whole or not at all: a new file, flushed, renamed over the old one. */
function replaceFile(file: string, text: string): void {
  const temp = `${file}.${process.pid}.tmp`;
  const fd = openSync(temp, 'w', 0o600);
  try {
    writeSync(fd, text);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(temp, file);
}

/**
 * Function, host, system and master keys. Keys come from local.settings.json `Keys` when given,
 * otherwise from a keys file under the data folder (generated once), or are generated for this
 * run only when nothing is persisted.
 */
export class KeyStore {
  readonly keys: KeySet;
  /**
   * Whether presented keys decide the access level. When not, every request has admin access, as
   * with `func start` without --enableAuth (Core Tools authenticates every request as Admin).
   */
  readonly enforced: boolean;

  private constructor(keys: KeySet, enforced: boolean) {
    this.keys = keys;
    this.enforced = enforced;
  }

  static load(options: {
    file: string | undefined;
    settings: KeySettings | undefined;
    functionNames: string[];
    /** Check keys (the default); false grants every request admin access. */
    enforced?: boolean;
  }): KeyStore {
    const stored: Partial<KeySet> = (options.file ? readKeysFile(options.file) : undefined) ?? {};
    const s = options.settings ?? {};
    const keys: KeySet = {
      master: s.master ?? stored.master ?? newKey(),
      host: { default: newKey(), ...stored.host, ...s.host },
      functions: { ...stored.functions },
      system: {
        durabletask_extension: newKey(),
        eventgrid_extension: newKey(),
        ...stored.system,
        ...s.system,
      },
    };
    for (const name of options.functionNames) {
      const key = name.toLowerCase();
      keys.functions[key] = { default: newKey(), ...keys.functions[key], ...s.functions?.[name] };
    }
    if (options.file) {
      const text = `${JSON.stringify(keys, null, 2)}\n`;
      if (text !== JSON.stringify(stored, null, 2) + '\n') {
        mkdirSync(dirname(options.file), { recursive: true });
        // A crash while writing must not leave a cut file: the next start would refuse it.
        replaceFile(options.file, text);
      }
    }
    return new KeyStore(keys, options.enforced ?? true);
  }

  /** The level a presented key grants for `functionName` (or for system extension `systemName`). */
  levelOf(presented: string | undefined, target: { functionName?: string; systemName?: string }): AccessLevel {
    if (!this.enforced) return 'admin';
    if (!presented) return 'anonymous';
    if (safeEqual(presented, this.keys.master)) return 'admin';
    if (target.systemName) {
      const key = this.keys.system[target.systemName];
      if (key !== undefined && safeEqual(presented, key)) return 'system';
    }
    if (target.functionName) {
      for (const key of Object.values(this.keys.host)) if (safeEqual(presented, key)) return 'function';
      const own = this.keys.functions[target.functionName.toLowerCase()] ?? {};
      for (const key of Object.values(own)) if (safeEqual(presented, key)) return 'function';
    }
    return 'anonymous';
  }

  functionKey(functionName: string): string | undefined {
    return this.keys.functions[functionName.toLowerCase()]?.['default'];
  }

  systemKey(name: string): string {
    const key = this.keys.system[name];
    if (key === undefined) throw new Error(`no system key named ${name}`);
    return key;
  }
}

/** The key a request presents: the `x-functions-key` header wins over the `code` query parameter. */
export function presentedKey(headers: Record<string, string | string[] | undefined>, query: URLSearchParams): string | undefined {
  const header = headers['x-functions-key'];
  const value = Array.isArray(header) ? header[0] : header;
  return value || query.get('code') || undefined;
}
