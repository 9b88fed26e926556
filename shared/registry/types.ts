import type { DeploymentSettings, SplitSettings } from '../schemas/resources.js';

/** How the app reaches a datastore's container. Secrets are never stored, only setting names. */
export type DatastoreCredentials =
  | { type: 'connection_string'; setting: string }
  | { type: 'managed_identity'; account_url?: string | undefined; client_id?: string | undefined }
  | { type: 'app_storage' };

export interface DatastoreDoc {
  name: string;
  type: 'azure_blob';
  description?: string | undefined;
  tags: Record<string, string>;
  account_name: string;
  container_name: string;
  endpoint: string;
  protocol: 'https' | 'http';
  credentials: DatastoreCredentials;
}

export interface DataAssetDoc {
  name: string;
  version: string;
  type: 'uri_folder' | 'uri_file';
  path: string;
  description?: string | undefined;
  tags: Record<string, string>;
}

export interface ModelDoc {
  name: string;
  version: string;
  type: 'onnx' | 'custom_model';
  /** Canonical datastore URI of the model file or folder. */
  path: string;
  description?: string | undefined;
  tags: Record<string, string>;
  properties: Record<string, string>;
}

export interface EndpointDoc {
  name: string;
  /**
   * Made when the endpoint is created and kept by updates. An endpoint deleted and created again
   * under its name gets a new one, so what is keyed by the endpoint (its job list, idempotency keys)
   * never carries over from the deleted one.
   */
  uid?: string | undefined;
  description?: string | undefined;
  tags: Record<string, string>;
  defaults: { deployment_name: string | null };
}

export interface ModelRef {
  name: string;
  version: string;
}

export interface DeploymentDoc {
  name: string;
  endpoint_name: string;
  type: 'model';
  description?: string | undefined;
  tags: Record<string, string>;
  model: ModelRef;
  code_configuration?: { code: string; scoring_script: string } | undefined;
  resources: { instance_count: number };
  settings: DeploymentSettings;
  split?: SplitSettings | undefined;
}
