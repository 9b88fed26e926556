/** A small client for the batch-endpoints HTTP API, for scripts (demo, benchmarks). */

export interface JobView {
  id: string;
  status: string;
  endpoint: string;
  deployment: string;
  counts: { mini_batches: { total: number; succeeded: number; failed: number; retried: number }; items: { total: number; succeeded: number; failed: number } };
  outputs: Record<string, { path: string; files: Record<string, string> }>;
  error: { code: string; message: string } | null;
  columns: string[] | null;
  links: { self: string; outputs: Record<string, string> };
  created_at: string;
  started_at: string | null;
  completed_at: string | null;
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly body: unknown,
  ) {
    super(`HTTP ${status}: ${JSON.stringify(body)}`);
  }
}

export class BatchClient {
  constructor(
    readonly baseUrl: string,
    readonly key: string,
  ) {}

  async request<T>(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<{ status: number; body: T; headers: Headers }> {
    const res = await fetch(`${this.baseUrl}/api/${path}`, {
      method,
      headers: { 'x-functions-key': this.key, ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...headers },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await res.text();
    let parsed: unknown = text;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      // not JSON: keep the text
    }
    if (res.status >= 400) throw new ApiError(res.status, parsed);
    return { status: res.status, body: parsed as T, headers: res.headers };
  }

  put<T = unknown>(path: string, body: unknown): Promise<T> {
    return this.request<T>('PUT', path, body).then((r) => r.body);
  }

  get<T = unknown>(path: string): Promise<T> {
    return this.request<T>('GET', path).then((r) => r.body);
  }

  async invoke(endpoint: string, body: unknown, headers: Record<string, string> = {}): Promise<JobView> {
    return (await this.request<JobView>('POST', `endpoints/${endpoint}/jobs`, body, headers)).body;
  }

  job(id: string): Promise<JobView> {
    return this.get<JobView>(`jobs/${id}`);
  }

  async output(id: string, file: string): Promise<string> {
    const res = await fetch(`${this.baseUrl}/api/jobs/${id}/outputs/${file}`, { headers: { 'x-functions-key': this.key } });
    if (res.status !== 200) throw new ApiError(res.status, await res.text());
    return res.text();
  }

  /** Polls until the job ends; `onUpdate` sees every state. */
  async waitForJob(id: string, onUpdate: (job: JobView) => void = () => undefined, intervalMs = 200, timeoutMs = 30 * 60_000): Promise<JobView> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const job = await this.job(id);
      onUpdate(job);
      if (['Completed', 'Failed', 'Canceled'].includes(job.status)) return job;
      if (Date.now() > deadline) throw new Error(`job ${id} did not finish in time`);
      await new Promise((r) => setTimeout(r, intervalMs));
    }
  }
}
