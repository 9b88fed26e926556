/** A small client for the batch-endpoints HTTP API, for scripts (demo, benchmarks). */

/** Who invoked a job (`invoked_by`). */
export interface InvokerView {
  name: string;
  id?: string;
  tenant?: string;
  kind?: 'user' | 'app';
  via: string;
}

export interface JobView {
  id: string;
  status: string;
  invoked_by: InvokerView;
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

/** One step of a job as `GET /api/jobs/{id}` shows it (a model deployment's job has one, `batchscoring`). */
export interface StepView {
  name: string;
  type: 'command' | 'parallel';
  component: string;
  status: string;
  started_at: string | null;
  completed_at: string | null;
  reused: boolean;
  reused_from: { job: string; step: string } | null;
  inputs: Record<string, unknown>;
  outputs: Record<string, { uri: string; files?: Record<string, string> }>;
  /** Parallel steps only. */
  counts?: JobView['counts'] | null;
  columns?: string[] | null;
  /** Command steps only. */
  attempts?: number | null;
  /** A link to the step's log (a command step's only once it has one). */
  log: string | null;
  error: { code: string; message: string } | null;
  links: { outputs: string };
}

/** A pipeline deployment's job: named inputs (data or literals) and outputs, and its steps. */
export interface PipelineJobView {
  id: string;
  type: 'pipeline';
  status: string;
  invoked_by: InvokerView;
  endpoint: string;
  deployment: string;
  component: string | null;
  inputs: Record<string, { type: 'literal'; value: unknown } | { type: string; path: string; uri: string }>;
  outputs: Record<string, { type: string; path: string }>;
  settings: { continue_on_step_failure: boolean; default_datastore: string; force_rerun: boolean };
  counts: JobView['counts'];
  error: { code: string; message: string } | null;
  steps: StepView[];
  links: { self: string; cancel: string };
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
  /**
   * `key`: the host's function key, sent as `x-functions-key`; `auth`: other headers to send
   * instead (`{authorization: 'Bearer …'}` for BATCH_AUTH_MODE=entra).
   */
  constructor(
    readonly baseUrl: string,
    readonly key: string,
    readonly auth: Record<string, string> = { 'x-functions-key': key },
  ) {}

  async request<T>(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<{ status: number; body: T; headers: Headers }> {
    const res = await fetch(`${this.baseUrl}/api/${path}`, {
      method,
      headers: { ...this.auth, ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...headers },
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

  /** `T` is `PipelineJobView` when the deployment invoked is a pipeline deployment. */
  async invoke<T = JobView>(endpoint: string, body: unknown, headers: Record<string, string> = {}): Promise<T> {
    return (await this.request<T>('POST', `endpoints/${endpoint}/jobs`, body, headers)).body;
  }

  job<T = JobView>(id: string): Promise<T> {
    return this.get<T>(`jobs/${id}`);
  }

  /** A file of the job's output; for a pipeline job, `{output name}/{file}`. */
  output(id: string, file: string): Promise<string> {
    return this.text(`${this.baseUrl}/api/jobs/${id}/outputs/${file}`);
  }

  /** A file under a step's output (`{file}`, or `{output name}/{file}` when the step has several). */
  stepOutput(id: string, step: string, file: string): Promise<string> {
    return this.text(`${this.baseUrl}/api/jobs/${id}/steps/${step}/outputs/${file}`);
  }

  /** The body of a link the API handed out (a step's `log`, `links.outputs`), sent with the key (or token). */
  async text(url: string): Promise<string> {
    const res = await fetch(url, { headers: this.auth });
    if (res.status !== 200) throw new ApiError(res.status, await res.text());
    return res.text();
  }

  /** Polls until the job ends; `onUpdate` sees every state. `T` as for `invoke`. */
  async waitForJob<T extends { status: string } = JobView>(id: string, onUpdate: (job: T) => void = () => undefined, intervalMs = 200, timeoutMs = 30 * 60_000): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const job = await this.job<T>(id);
      onUpdate(job);
      if (['Completed', 'Failed', 'Canceled'].includes(job.status)) return job;
      if (Date.now() > deadline) throw new Error(`job ${id} did not finish in time`);
      await new Promise((r) => setTimeout(r, intervalMs));
    }
  }
}
