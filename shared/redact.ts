/**
 * The one redaction function (issue 12, "No secrets anywhere visible"). Whatever text the app shows
 * (problem details, job errors, job.json, logs/job.log, errors.jsonl, the host's log) passes
 * through it where it may carry a URL or a connection string:
 * - a URL's query string (where a SAS lives: `sv=`, `sig=`, `se=`, ...) becomes `?<redacted>`,
 *   keeping the scheme, host and path;
 * - `AccountKey=`, `SharedAccessSignature=` and `SharedAccessKey=` values of connection strings,
 *   and a bare `sig=` anywhere, become `<redacted>`.
 */
export const REDACTED = '<redacted>';

const URL_QUERY = /\b([a-z][a-z0-9+.-]*:\/\/[^\s?#"'<>`]*)\?[^\s#"'<>`]*/gi;
const CONNECTION_SECRET = /\b(AccountKey|SharedAccessSignature|SharedAccessKey)=[^;\s"'`]*/gi;
const SAS_SIGNATURE = /([?&\s"'`]|^)sig=[^&\s"'`]*/gi;

export function redactSecrets(text: string): string {
  return text
    .replace(URL_QUERY, (_m, base: string) => `${base}?${REDACTED}`)
    .replace(CONNECTION_SECRET, (_m, name: string) => `${name}=${REDACTED}`)
    .replace(SAS_SIGNATURE, (_m, before: string) => `${before}sig=${REDACTED}`);
}
