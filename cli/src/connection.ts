/**
 * Where the API is and how to authenticate, from (first that says) the command's options, the
 * environment, or a profile in the user's config folder
 * (`$XDG_CONFIG_HOME/batch-endpoints/config.yaml`, else `~/.config/batch-endpoints/config.yaml`).
 *
 * Authentication: a function key (`x-functions-key`), or a Microsoft Entra access token
 * (`Authorization: Bearer`) given as such or fetched with `az account get-access-token --resource R`
 * for the app's application ID URI `R` (BATCH_AUTH_MODE=entra; see the README's "Authentication").
 * The first source that names any credential decides which one is used, so a token given on the
 * command line wins over a key in the profile.
 */
import { execFile } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { z } from 'zod';
import { stringify } from 'yaml';
import { CliError } from './errors.js';
import { YamlSource } from './yaml-source.js';

/** The settings a profile holds (and the options and environment variables that give the same). */
const profileSchema = z.strictObject({
  url: z.url().optional(),
  key: z.string().min(1).optional(),
  token: z.string().min(1).optional(),
  /** The app's application ID URI (or client id): `az account get-access-token --resource` gets a token for it. */
  resource: z.string().min(1).optional(),
  /** A connection string of the workspace datastore's storage account, for uploads (else Entra via @azure/identity). */
  storage_connection_string: z.string().min(1).optional(),
});
export type Profile = z.infer<typeof profileSchema>;

const configSchema = z.strictObject({
  default_profile: z.string().min(1).optional(),
  profiles: z.record(z.string(), profileSchema).default({}),
});
type ConfigFile = z.infer<typeof configSchema>;

export const ENV = {
  url: 'BATCH_ENDPOINTS_URL',
  key: 'BATCH_ENDPOINTS_KEY',
  token: 'BATCH_ENDPOINTS_TOKEN',
  resource: 'BATCH_ENDPOINTS_RESOURCE',
  profile: 'BATCH_ENDPOINTS_PROFILE',
  storage: 'AZURE_STORAGE_CONNECTION_STRING',
} as const;

export interface ConnectionOptions {
  url?: string;
  key?: string;
  token?: string;
  resource?: string;
  profile?: string;
  storageConnectionString?: string;
}

export type Auth = { kind: 'key'; key: string } | { kind: 'token'; token: () => Promise<string> } | { kind: 'none' };

export interface Connection {
  /** The app's origin, without a trailing slash (the API is under `/api`). */
  url: string;
  auth: Auth;
  storageConnectionString: string | undefined;
}

/** The config file's path: XDG's config folder, as most command-line tools on Linux use it. */
export function configPath(env: NodeJS.ProcessEnv = process.env): string {
  const base = env['XDG_CONFIG_HOME'] && env['XDG_CONFIG_HOME'] !== '' ? env['XDG_CONFIG_HOME'] : join(homedir(), '.config');
  return join(base, 'batch-endpoints', 'config.yaml');
}

function readConfig(path: string): ConfigFile {
  if (!existsSync(path)) return { profiles: {} };
  return YamlSource.load(path).parse(configSchema, 'config');
}

function profileOf(config: ConfigFile, name: string | undefined, path: string): Profile {
  const chosen = name ?? config.default_profile;
  if (chosen === undefined) return config.profiles['default'] ?? {};
  const found = Object.hasOwn(config.profiles, chosen) ? config.profiles[chosen] : undefined;
  if (!found) throw new CliError(`There is no profile '${chosen}' in ${path} (profiles: ${Object.keys(config.profiles).join(', ') || 'none'}).`);
  return found;
}

function fromEnv(env: NodeJS.ProcessEnv, name: string): string | undefined {
  const value = env[name];
  return value === undefined || value === '' ? undefined : value;
}

/** Resolves the connection: options, then the environment, then the profile. */
export function resolveConnection(options: ConnectionOptions, env: NodeJS.ProcessEnv = process.env): Connection {
  const path = configPath(env);
  const profile = profileOf(readConfig(path), options.profile ?? fromEnv(env, ENV.profile), path);
  const sources: Profile[] = [
    { url: options.url, key: options.key, token: options.token, resource: options.resource, storage_connection_string: options.storageConnectionString },
    { url: fromEnv(env, ENV.url), key: fromEnv(env, ENV.key), token: fromEnv(env, ENV.token), resource: fromEnv(env, ENV.resource), storage_connection_string: fromEnv(env, ENV.storage) },
    profile,
  ];
  const url = sources.map((s) => s.url).find((u) => u !== undefined);
  if (url === undefined) {
    throw new CliError(`No API URL: pass --url, set ${ENV.url}, or write a profile with \`batch-endpoints configure --url URL\` (${path}).`);
  }
  const withCredential = sources.find((s) => s.key !== undefined || s.token !== undefined || s.resource !== undefined);
  let auth: Auth = { kind: 'none' };
  if (withCredential?.key !== undefined) auth = { kind: 'key', key: withCredential.key };
  else if (withCredential?.token !== undefined) {
    const token = withCredential.token;
    auth = { kind: 'token', token: () => Promise.resolve(token) };
  } else if (withCredential?.resource !== undefined) auth = { kind: 'token', token: azToken(withCredential.resource) };
  return { url: url.replace(/\/+$/, ''), auth, storageConnectionString: sources.map((s) => s.storage_connection_string).find((c) => c !== undefined) };
}

/** A token from the Azure CLI's signed-in account for `resource`, fetched once and reused. */
function azToken(resource: string): () => Promise<string> {
  let pending: Promise<string> | undefined;
  return () =>
    (pending ??= promisify(execFile)('az', ['account', 'get-access-token', '--resource', resource, '--query', 'accessToken', '--output', 'tsv'], { timeout: 60_000 }).then(
      ({ stdout }) => {
        const token = stdout.trim();
        if (token === '') throw new CliError('az account get-access-token printed no token.');
        return token;
      },
      (err: unknown) => {
        const detail = err instanceof Error ? ((err as { stderr?: string }).stderr?.trim() || err.message) : String(err);
        throw new CliError(`Could not get a token with \`az account get-access-token --resource ${resource}\` (sign in with \`az login\`, or pass --key or --token): ${detail}`);
      },
    ));
}

/** Writes (or updates) a profile; the file holds secrets, so only its owner may read it. */
export function writeProfile(name: string, settings: Profile, makeDefault: boolean, env: NodeJS.ProcessEnv = process.env): string {
  const path = configPath(env);
  const config = readConfig(path);
  const merged = { ...(Object.hasOwn(config.profiles, name) ? config.profiles[name] : {}), ...Object.fromEntries(Object.entries(settings).filter(([, v]) => v !== undefined)) };
  const next: ConfigFile = { ...config, profiles: { ...config.profiles, [name]: profileSchema.parse(merged) } };
  if (makeDefault || next.default_profile === undefined) next.default_profile = name;
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  writeFileSync(path, stringify(next), { mode: 0o600 });
  chmodSync(path, 0o600);
  return path;
}

/** The profile file's text, for `configure --show` (secrets shown as set or not). */
export function describeProfiles(env: NodeJS.ProcessEnv = process.env): { path: string; config: unknown } {
  const path = configPath(env);
  const config = readConfig(path);
  const hide = (p: Profile): Record<string, unknown> => ({
    ...p,
    ...(p.key ? { key: '<set>' } : {}),
    ...(p.token ? { token: '<set>' } : {}),
    ...(p.storage_connection_string ? { storage_connection_string: '<set>' } : {}),
  });
  return { path, config: { ...config, profiles: Object.fromEntries(Object.entries(config.profiles).map(([k, p]) => [k, hide(p)])) } };
}

export function readTextFile(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw new CliError(`Cannot read ${path}: ${(err as Error).message}`);
  }
}
