import type { BindingCall, InputBindingProvider } from '../worker/bindings.js';
import type { RpcTypedData } from '../worker/core-types.js';

export interface DurableClientBindingOptions {
  hubName: string;
  /** Public base of the durable API, without trailing slash. */
  publicBaseUrl: () => string;
  /** The keyless local endpoint DurableClient calls, with trailing slash. */
  rpcBaseUrl: () => string;
  systemKey: string;
  managementUrls: (instanceId: string) => Record<string, string>;
}

/**
 * The `durableClient` input binding: the JSON the Durable extension hands to out-of-process
 * workers, which `df.getClient(context)` turns into a DurableClient.
 */
export class DurableClientBinding implements InputBindingProvider {
  readonly type: string = 'durableClient';

  constructor(private readonly options: DurableClientBindingOptions) {}

  resolve(_call: BindingCall): Promise<RpcTypedData> {
    const o = this.options;
    const base = o.publicBaseUrl();
    const code = `code=${encodeURIComponent(o.systemKey)}`;
    const data = {
      taskHubName: o.hubName,
      creationUrls: {
        createNewInstancePostUri: `${base}/orchestrators/{functionName}[/{instanceId}]?${code}`,
        createAndWaitOnNewInstancePostUri: `${base}/orchestrators/{functionName}[/{instanceId}]?timeout={timeoutInSeconds}&pollingInterval={intervalInSeconds}&${code}`,
      },
      managementUrls: o.managementUrls('INSTANCEID'),
      baseUrl: base,
      requiredQueryStringParameters: code,
      rpcBaseUrl: o.rpcBaseUrl(),
      connectionName: null,
      httpBaseUrl: base,
      maxGrpcMessageSizeInBytes: 0,
      grpcHttpClientTimeout: '00:01:40',
    };
    return Promise.resolve({ string: JSON.stringify(data) });
  }
}

/** The same binding under its older name. */
export class OrchestrationClientBinding extends DurableClientBinding {
  override readonly type: string = 'orchestrationClient';
}
