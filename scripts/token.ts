/**
 * `npm run token -- --scope Jobs.Invoke [--scope ...] [--role Workspace.Manage] [--user ada@contoso.test]
 * [--oid <guid>] [--tenant <id>] [--audience <uri>] [--minutes 60]`: prints an access token signed
 * by the local issuer's key (start it first with `npm run issuer`). Scopes make a user's token
 * (`scp`), roles an application's (`roles`). Use it as `Authorization: Bearer <token>`.
 */
import { readFileSync } from 'node:fs';
import { Command } from 'commander';
import { ISSUER_FILE, LOCAL_AUDIENCE, LOCAL_TENANT, LocalIssuer, localUserOid, type PersistedIssuer } from './lib/oidc-issuer.js';
import { collect, parseScriptArgs, wholeNumber } from './lib/script-args.js';

const values = parseScriptArgs<{ scope?: string[]; role?: string[]; user: string; oid?: string; tenant: string; audience: string; minutes: number }>(
  new Command('npm run token --')
    .description("Prints an access token signed by the local issuer's key (start it first: npm run issuer). Use it as `Authorization: Bearer <token>`.")
    .option('--scope <scope>', "a delegated permission: the token is a user's (scp); repeatable: Jobs.Read, Jobs.Invoke, Workspace.Manage", collect)
    .option('--role <role>', "an application permission: the token is an application's (roles); repeatable", collect)
    .option('--user <name>', 'the user name (preferred_username); the object id is derived from it', 'dev@example.test')
    .option('--oid <guid>', 'the object id (default: derived from --user)')
    .option('--tenant <id>', 'the tenant id (tid)', LOCAL_TENANT)
    .option('--audience <uri>', 'the audience (aud)', LOCAL_AUDIENCE)
    .option('--minutes <n>', 'minutes until it expires', wholeNumber(1), 60),
);

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
const oid = values.oid ?? localUserOid(values.user);
const token = await issuer.token({
  tenant: values.tenant,
  audience: values.audience,
  oid,
  expiresIn: values.minutes * 60,
  ...(values.scope ? { scopes: values.scope, username: values.user } : {}),
  ...(values.role ? { roles: values.role } : {}),
});
console.log(token);
