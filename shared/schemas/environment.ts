import { z } from 'zod';
import { appSetting } from '../config.js';
import { BatchError } from '../errors.js';
import { REDACTED, secretKind } from '../redact.js';

/**
 * `environment_variables` of deployments, components and jobs (Azure ML's field), and the rule
 * that keeps secrets out of them (issue 12: "credentials are references only").
 *
 * Values are configuration and are shown as given, in resource and job views and job.json, to
 * anyone who may read the resource, as Azure ML shows them (`az ml batch-deployment show`). So a
 * secret is never a value: it is a reference to an app setting, `${{app_settings.NAME}}` (in Azure
 * the setting may itself be a Key Vault reference, `@Microsoft.KeyVault(...)`), resolved only when
 * the scoring script or command step starts, inside its worker. A literal value that carries a
 * secret (a storage key or SAS, a connection string's key, a bearer token or JWT, a URL's `code=` or
 * `sig=`) is refused with a 400 naming the variable. References are for what `Workspace.Manage`
 * registers (deployments, components); a job's own overrides (invoke `settings`) are literals.
 */

const VARIABLE_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** `${{app_settings.NAME}}` anywhere in a value; NAME as app settings are named. */
const APP_SETTING_REF = /\$\{\{\s*app_settings\.([A-Za-z_][A-Za-z0-9_.-]*)\s*\}\}/g;

function checkValue(references: boolean) {
  return (value: string, ctx: z.RefinementCtx): void => {
    const kind = secretKind(value.replace(APP_SETTING_REF, ''));
    if (kind !== undefined) {
      ctx.addIssue({ code: 'custom', message: `looks like a secret (${kind}); a secret is never a value: put it in an app setting and give \${{app_settings.NAME}}` });
    }
    for (const [, name] of value.matchAll(APP_SETTING_REF)) {
      if (!references) ctx.addIssue({ code: 'custom', message: `\${{app_settings.${name ?? ''}}}: a job's own environment variables are literal values; references to app settings belong to the deployment or component` });
      else if (name !== undefined && appSetting(name) === undefined) ctx.addIssue({ code: 'custom', message: `app setting '${name}' is not set` });
    }
  };
}

/** A deployment's or component's variables: literals or `${{app_settings.NAME}}` references. */
export const environmentVariables = z.record(z.string().regex(VARIABLE_NAME, 'must be a variable name'), z.string().max(32_768).superRefine(checkValue(true)));

/** A job's overrides of them (invoke `settings.environment_variables`): literals only. */
export const environmentOverrides = z.record(z.string().regex(VARIABLE_NAME, 'must be a variable name'), z.string().max(32_768).superRefine(checkValue(false)));

/**
 * The variables a worker gets: each `${{app_settings.NAME}}` replaced, once, by the setting's value
 * (a value that itself reads like a reference is not expanded again). A setting unset since the
 * resource was registered fails the scorer's setup, naming the variable and the setting.
 */
export function resolveEnvironment(variables: Readonly<Record<string, string>>, read: (name: string) => string | undefined = appSetting): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(variables)) {
    out[name] = value.replace(APP_SETTING_REF, (_ref, setting: string) => {
      const resolved = read(setting);
      if (resolved === undefined) {
        throw new BatchError('scoring_setup_failed', `environment_variables.${name}: app setting '${setting}' is not set.`, { details: { field: `environment_variables.${name}` } });
      }
      return resolved;
    });
  }
  return out;
}

/**
 * The variables as views show them. Values are shown as given (references unresolved); a value
 * stored before secrets were refused, that carries one, shows as `<redacted>`.
 */
export function environmentView(variables: Readonly<Record<string, string>>): Record<string, string> {
  return Object.fromEntries(Object.entries(variables).map(([name, value]) => [name, secretKind(value.replace(APP_SETTING_REF, '')) === undefined ? value : REDACTED]));
}
