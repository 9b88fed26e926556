import { BatchError } from '../errors.js';
import type { Stored } from '../storage/doc-table.js';

/**
 * The one rule for `latest` of every versioned asset (models, data assets, components).
 *
 * Azure ML (reference-yaml-core-syntax, "Referencing an Azure Machine Learning asset"): "The latest
 * version is defined as the latest (or most recently) created version of an asset under a given
 * name", referenced as `azureml:<asset_name>@latest`. Here `latest` is therefore a reserved word,
 * never a version: registering version `latest` is a 400 naming `version`, and `latest` wherever a
 * version is read (`GET .../versions/latest`, `azureml:{name}@latest`, `azureml:{name}:latest`,
 * the CLI's `--label latest`) means the newest version by {@link newestVersion}.
 */
export const LATEST = 'latest';

/** Throws a 400 naming `field` when `version` is the reserved word `latest`. */
export function checkVersionName(version: string, field = 'version'): void {
  if (version === LATEST) {
    throw new BatchError('validation_failed', `${field}: 'latest' is reserved (it names the newest version); choose another version.`, {
      issues: [{ field, message: "'latest' is reserved for the newest version" }],
    });
  }
}

/**
 * The newest of an asset's versions: the most recently created (registration time, ISO 8601), ties
 * broken by the version compared numerically-aware, so `10` is newer than `9`.
 */
export function newestVersion<T extends { version?: string | undefined }>(versions: readonly Stored<T>[]): Stored<T> | undefined {
  const byVersion = (a: Stored<T>, b: Stored<T>): number => (b.doc.version ?? '').localeCompare(a.doc.version ?? '', 'en', { numeric: true });
  return [...versions].sort((a, b) => b.createdAt.localeCompare(a.createdAt) || byVersion(a, b))[0];
}

/** A reference to a registered asset version; `version` may be {@link LATEST}. */
export interface AssetRef {
  name: string;
  version: string;
}

const NAME = '[A-Za-z0-9][A-Za-z0-9_.-]*';
const PINNED = new RegExp(`^(${NAME}):(${NAME})$`);
const AT_LATEST = new RegExp(`^(${NAME})@${LATEST}$`);

/**
 * Parses `{name}:{version}` or `{name}@latest` (the `azureml:` prefix already removed by the
 * caller, which decides whether it is required); `{name}:latest` means the same as `@latest`.
 * Undefined when the text is neither.
 */
export function parseAssetRef(text: string): AssetRef | undefined {
  const latest = AT_LATEST.exec(text);
  if (latest?.[1] !== undefined) return { name: latest[1], version: LATEST };
  const pinned = PINNED.exec(text);
  if (pinned?.[1] !== undefined && pinned[2] !== undefined) return { name: pinned[1], version: pinned[2] };
  return undefined;
}

/** How a reference is written in messages: `name@latest` or `name:version`. */
export function refText(ref: AssetRef): string {
  return ref.version === LATEST ? `${ref.name}@${LATEST}` : `${ref.name}:${ref.version}`;
}
