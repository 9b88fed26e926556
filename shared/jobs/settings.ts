import type { DeploymentSettings } from '../schemas/resources.js';
import type { SettingsOverride } from '../schemas/jobs.js';

/**
 * The settings a job runs with: the deployment's, with the invocation's overrides on top
 * (field by field; retry_settings and environment_variables merge key by key).
 */
export function mergeSettings(base: DeploymentSettings, override: SettingsOverride | undefined): DeploymentSettings {
  if (!override) return structuredClone(base);
  // Fields added later are left out when unset (see present).
  return {
    max_concurrency_per_instance: override.max_concurrency_per_instance ?? base.max_concurrency_per_instance,
    mini_batch_size: override.mini_batch_size ?? base.mini_batch_size,
    error_threshold: override.error_threshold ?? base.error_threshold,
    retry_settings: {
      max_retries: override.retry_settings?.max_retries ?? base.retry_settings.max_retries,
      timeout: override.retry_settings?.timeout ?? base.retry_settings.timeout,
    },
    output_action: override.output_action ?? base.output_action,
    output_file_name: override.output_file_name ?? base.output_file_name,
    logging_level: override.logging_level ?? base.logging_level,
    environment_variables: { ...base.environment_variables, ...override.environment_variables },
    ...present('join', override.join === null ? undefined : (override.join ?? base.join)),
    ...present('key_field', override.key_field === null ? undefined : (override.key_field ?? base.key_field)),
    ...present('csv_header', override.csv_header ?? base.csv_header),
  };
}

/** `{[key]: value}`, or nothing for an unset value: settings without them stay as they were stored before they existed. */
function present<K extends string, V>(key: K, value: V | undefined): { [P in K]?: V } {
  return (value === undefined ? {} : { [key]: structuredClone(value) }) as { [P in K]?: V };
}

/** Mini-batches in flight at once: instance_count × max_concurrency_per_instance. */
export function parallelismOf(settings: DeploymentSettings, instanceCount: number): number {
  return Math.max(1, instanceCount * settings.max_concurrency_per_instance);
}

/** Whether `failedItems` failures exceed the error threshold (-1 = unlimited). */
export function exceedsThreshold(failedItems: number, errorThreshold: number): boolean {
  return errorThreshold >= 0 && failedItems > errorThreshold;
}
