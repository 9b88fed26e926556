/**
 * `npm run token -- --scope Jobs.Invoke [--scope ...] [--role Workspace.Manage] [--user ada@contoso.test]
 * [--oid <guid>] [--tenant <id>] [--audience <uri>] [--minutes 60]`: prints an access token signed
 * by the local issuer's key (start it first with `npm run issuer`). Scopes make a user's token
 * (`scp`), roles an application's (`roles`). Use it as `Authorization: Bearer <token>`.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { ISSUER_FILE, LOCAL_AUDIENCE, LOCAL_TENANT, LocalIssuer, type PersistedIssuer } from './lib/oidc-issuer.js';

const { values } = parseArgs({
  options: {
    scope: { type: 'string', multiple: true },
    role: { type: 'string', multiple: true },
    user: { type: 'string', default: 'dev@example.test' },
    oid: { type: 'string' },
    tenant: { type: 'string', default: LOCAL_TENANT },
    audience: { type: 'string', default: LOCAL_AUDIENCE },
    minutes: { type: 'string', default: '60' },
  },
});

const file = ISSUER_FILE;
let saved: PersistedIssuer;
try {
  saved = JSON.parse(readFileSync(file, 'utf8')) as PersistedIssuer;
} catch {
  console.error(`No local issuer keys at ${file}: start the issuer first (npm run issuer).`);
  process.exit(1);
}
if (!values.scope && !values.role) {
  console.error('Name a permission: --scope Jobs.Read|Jobs.Invoke|Workspace.Manage (a user), or --role ... (an application).');
  process.exit(2);
}
const issuer = await LocalIssuer.fromJSON(saved);
// The same user name gives the same object id, so a developer's jobs stay theirs across tokens.
const hex = createHash('sha256').update(values.user).digest('hex');
const oid = values.oid ?? `${hex.slice(0, 8)}-${hex.slice(8, 12)}-4${hex.slice(13, 16)}-8${hex.slice(17, 20)}-${hex.slice(20, 32)}`;
const token = await issuer.token({
  tenant: values.tenant,
  audience: values.audience,
  oid,
  expiresIn: Number(values.minutes) * 60,
  ...(values.scope ? { scopes: values.scope, username: values.user } : {}),
  ...(values.role ? { roles: values.role } : {}),
});
console.log(token);
