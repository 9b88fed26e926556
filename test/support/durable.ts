import { waitFor } from './wait.js';

export interface CheckStatus {
  id: string;
  statusQueryGetUri: string;
  sendEventPostUri: string;
  terminatePostUri: string;
  purgeHistoryDeleteUri: string;
  suspendPostUri: string;
  resumePostUri: string;
}

export interface OrchestrationStatus {
  name: string;
  instanceId: string;
  runtimeStatus: string;
  input: unknown;
  output: unknown;
  customStatus: unknown;
  createdTime: string;
  lastUpdatedTime: string;
  historyEvents?: Record<string, unknown>[];
}

/** Starts an orchestration through the test app's HTTP starter. */
export async function startOrchestration(baseUrl: string, name: string, input?: unknown, instanceId?: string): Promise<CheckStatus> {
  const res = await fetch(`${baseUrl}/api/orchestrators/${name}${instanceId ? `/${instanceId}` : ''}`, {
    method: 'POST',
    body: input === undefined ? '' : JSON.stringify(input),
  });
  if (res.status !== 202) throw new Error(`start ${name}: HTTP ${res.status} ${await res.text()}`);
  return (await res.json()) as CheckStatus;
}

export async function getStatus(statusUri: string, query = ''): Promise<{ http: number; body: OrchestrationStatus }> {
  const res = await fetch(`${statusUri}${query}`);
  return { http: res.status, body: (await res.json()) as OrchestrationStatus };
}

const TERMINAL = ['Completed', 'Failed', 'Terminated', 'Canceled'];

/** Polls the status URI until the instance reaches a terminal status. */
export async function waitForCompletion(statusUri: string, timeoutMs = 60_000, query = '&showHistory=true&showHistoryOutput=true'): Promise<OrchestrationStatus> {
  return waitFor(
    async () => {
      const { body } = await getStatus(statusUri, query);
      return TERMINAL.includes(body.runtimeStatus) ? body : undefined;
    },
    { timeoutMs, intervalMs: 50, what: `orchestration ${statusUri}` },
  );
}

export async function waitForStatus(statusUri: string, status: string, timeoutMs = 30_000): Promise<OrchestrationStatus> {
  return waitFor(
    async () => {
      const { body } = await getStatus(statusUri);
      return body.runtimeStatus === status ? body : undefined;
    },
    { timeoutMs, what: `status ${status}` },
  );
}
