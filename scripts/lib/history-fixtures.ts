/**
 * Recorded orchestration histories (test/fixtures/histories/<scenario>/<role>.json): written by
 * `npm run record:histories`, replayed by test/unit/orchestrations/replay-histories.test.ts.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import type { HistoryEvent, RuntimeStatus } from '../../infra/local/src/durable/history.js';

export const HISTORY_FIXTURE_FORMAT = 1;

export interface RecordedInstance {
  format: number;
  scenario: string;
  /** The instance's place in its job, stable across recordings: job, lane-N or chunk-N. */
  role: string;
  instanceId: string;
  /** The orchestrator function. */
  name: string;
  /** The replay schema the host offered durable-functions (fnhost's --durable-schema). */
  schemaVersion: number;
  runtimeStatus: RuntimeStatus;
  /** The instance's input and output as values (the task hub keeps them as JSON text). */
  input: unknown;
  output: unknown;
  /** The task hub's history of the instance, event for event as the engine stored it. */
  history: HistoryEvent[];
}

/** The role of an instance in job `jobId`: the job itself, one of its lanes or one of its chunks. */
export function roleOf(jobId: string, instanceId: string): string | undefined {
  if (instanceId === jobId) return 'job';
  if (!instanceId.startsWith(jobId)) return undefined;
  const rest = instanceId.slice(jobId.length);
  // `:lane-0` (a job run before steps existed), `:step-score`, `:score:chunk-1`, `:score:planner` (a step's).
  const m = /^:(?:(lane-\d+|chunk-\d+|planner)|(step-[A-Za-z0-9_]+)|([A-Za-z0-9_]+):(lane-\d+|chunk-\d+|planner))$/.exec(rest);
  if (!m) return undefined;
  return m[1] ?? m[2] ?? `${m[3] ?? ''}.${m[4] ?? ''}`;
}

/** Pretty at the top, one history event per line: small diffs, still readable. */
export function formatRecording(recording: RecordedInstance): string {
  const { history, ...head } = recording;
  const top = JSON.stringify(head, null, 2);
  const events = history.map((e) => `    ${JSON.stringify(e)}`).join(',\n');
  return `${top.slice(0, top.lastIndexOf('\n}'))},\n  "history": [\n${events}\n  ]\n}\n`;
}

export function parseRecording(text: string, file: string): RecordedInstance {
  const value = JSON.parse(text) as Partial<RecordedInstance>;
  if (value.format !== HISTORY_FIXTURE_FORMAT) {
    throw new Error(`${file}: history fixture format ${String(value.format)}, expected ${HISTORY_FIXTURE_FORMAT}; re-record with npm run record:histories`);
  }
  for (const key of ['scenario', 'role', 'instanceId', 'name', 'runtimeStatus'] as const) {
    if (typeof value[key] !== 'string') throw new Error(`${file}: "${key}" is missing`);
  }
  if (typeof value.schemaVersion !== 'number' || !Array.isArray(value.history)) throw new Error(`${file}: "schemaVersion" or "history" is missing`);
  return value as RecordedInstance;
}

/** Every recording under `root`, as { file, recording }, sorted by path. */
export function loadRecordings(root: string): { file: string; recording: RecordedInstance }[] {
  const found: { file: string; recording: RecordedInstance }[] = [];
  for (const scenario of readdirSync(root, { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => d.name).sort()) {
    for (const name of readdirSync(join(root, scenario)).filter((n) => n.endsWith('.json')).sort()) {
      const file = join(root, scenario, name);
      found.push({ file, recording: parseRecording(readFileSync(file, 'utf8'), file) });
    }
  }
  return found;
}
