/**
 * The CLI's errors and exit codes. Every failure reaches the user as one readable message on
 * stderr and a documented exit code (cli/README.md): a job that ended Failed or Canceled is told
 * apart from an error of the CLI or the API.
 */

export const EXIT = {
  ok: 0,
  /** The CLI or the API refused or failed (bad YAML, a problem+json answer, no connection). */
  error: 1,
  /** The command line itself is wrong (commander's usage errors). */
  usage: 2,
  /** `job stream` (or `invoke --stream`): the job ended Failed. */
  jobFailed: 3,
  /** `job stream` (or `invoke --stream`): the job ended Canceled. */
  jobCanceled: 4,
} as const;

/** A field the API or a schema named, with what is wrong with it. */
export interface FieldIssue {
  field: string;
  message: string;
}

export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: number = EXIT.error,
  ) {
    super(message);
  }
}

/**
 * An RFC 9457 problem the API answered (`application/problem+json`): its `errors` name the fields
 * (shared/errors.ts, toProblem).
 */
export class ApiProblem extends Error {
  constructor(
    readonly status: number,
    readonly problem: { title?: string; detail?: string; code?: string; errors?: FieldIssue[]; [k: string]: unknown },
    readonly request: string,
  ) {
    super(problem.detail ?? problem.title ?? `HTTP ${status}`);
  }

  /** The fields named: `errors` (validation), or the one `field` other problems carry (not found, conflict). */
  get issues(): FieldIssue[] {
    if (Array.isArray(this.problem.errors)) return this.problem.errors;
    const field = this.problem['field'];
    return typeof field === 'string' && field !== '' ? [{ field, message: this.problem.title ?? this.problem.code ?? 'refused' }] : [];
  }

  /**
   * The problem as lines a person reads: status and title, the detail, then one line per field
   * (`where` places a field, e.g. at its line in a YAML file).
   */
  describe(where: (field: string) => string | undefined = () => undefined): string {
    const head = `${this.request}: ${this.status} ${this.problem.title ?? ''}${this.problem.code ? ` (${this.problem.code})` : ''}`.trimEnd();
    const lines = [head];
    if (this.problem.detail) lines.push(`  ${this.problem.detail}`);
    for (const issue of this.issues) {
      const at = where(issue.field);
      lines.push(`  ${at ? `${at}: ` : ''}${issue.field}: ${issue.message}`);
    }
    return lines.join('\n');
  }
}
