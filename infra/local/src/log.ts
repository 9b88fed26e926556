import { format } from 'node:util';

/** Log levels, named as the Functions worker protocol names them. */
export type LogLevel = 'trace' | 'debug' | 'information' | 'warning' | 'error' | 'critical' | 'none';

const RANK: Record<LogLevel, number> = {
  trace: 0,
  debug: 1,
  information: 2,
  warning: 3,
  error: 4,
  critical: 5,
  none: 6,
};

export interface LogRecord {
  time: Date;
  level: LogLevel;
  /** `host` for fnhost's own tracing, `user` for context.log, `system` for library logs. */
  category: 'host' | 'user' | 'system';
  /** The function that logged, when the record belongs to an invocation. */
  functionName?: string;
  invocationId?: string;
  message: string;
}

export type LogSink = (record: LogRecord) => void;

/**
 * Lines not written yet, in order, each run of lines for one stream joined. A write to a pipe is a
 * system call (~0.1 ms of the event loop), and a job logs a few lines per mini-batch, so lines go
 * out once per turn of the event loop ({@link flushLogLines}), and before anything the host sends
 * over HTTP, so a client never sees a response before the lines logged ahead of it.
 */
const pending: { stream: 'out' | 'err'; text: string }[] = [];
let flushScheduled = false;
/** The streams' own write methods, once anything else's writes are made to flush first (below). */
let raw: { out: NodeJS.WriteStream['write']; err: NodeJS.WriteStream['write'] } | undefined;

/** Writes the lines logged so far, in the order they were logged. */
export function flushLogLines(): void {
  flushScheduled = false;
  if (raw === undefined || pending.length === 0) return;
  for (const { stream, text } of pending.splice(0)) raw[stream](text);
}

/**
 * The app's own `console.log` (and any other direct write to stdout or stderr) writes the
 * pending lines first, so everything comes out in the order it was written, as before batching.
 */
function flushBeforeOtherWrites(): NonNullable<typeof raw> {
  const out = process.stdout.write.bind(process.stdout);
  const err = process.stderr.write.bind(process.stderr);
  process.stdout.write = ((...args: Parameters<typeof out>) => {
    flushLogLines();
    return out(...args);
  }) as typeof out;
  process.stderr.write = ((...args: Parameters<typeof err>) => {
    flushLogLines();
    return err(...args);
  }) as typeof err;
  process.once('exit', flushLogLines);
  return { out, err };
}

/** Writes records as single lines to stdout/stderr (see {@link flushLogLines}). */
export function consoleSink(record: LogRecord): void {
  const prefix = `[${record.time.toISOString()}]`;
  const where = record.functionName ? ` ${record.functionName}:` : '';
  const line = `${prefix}${where} ${record.message}\n`;
  raw ??= flushBeforeOtherWrites();
  const stream = RANK[record.level] >= RANK.warning ? 'err' : 'out';
  const last = pending.at(-1);
  if (last?.stream === stream) last.text += line;
  else pending.push({ stream, text: line });
  if (!flushScheduled) {
    flushScheduled = true;
    setImmediate(flushLogLines);
  }
}

/**
 * The host logger. `minLevel` filters what reaches the sink; user and system logs from
 * invocations use the same path so a test can record everything with one sink.
 */
export class Logger {
  readonly #sink: LogSink;
  readonly #minLevel: LogLevel;
  readonly #clock: () => Date;

  constructor(options: { sink?: LogSink; minLevel?: LogLevel; clock?: () => Date } = {}) {
    this.#sink = options.sink ?? consoleSink;
    this.#minLevel = options.minLevel ?? 'information';
    this.#clock = options.clock ?? (() => new Date());
  }

  enabled(level: LogLevel): boolean {
    return level !== 'none' && RANK[level] >= RANK[this.#minLevel];
  }

  write(record: Omit<LogRecord, 'time'>): void {
    if (!this.enabled(record.level)) return;
    this.#sink({ time: this.#clock(), ...record });
  }

  trace(...args: unknown[]): void {
    this.#host('trace', args);
  }
  debug(...args: unknown[]): void {
    this.#host('debug', args);
  }
  info(...args: unknown[]): void {
    this.#host('information', args);
  }
  warn(...args: unknown[]): void {
    this.#host('warning', args);
  }
  error(...args: unknown[]): void {
    this.#host('error', args);
  }

  #host(level: LogLevel, args: unknown[]): void {
    if (!this.enabled(level)) return;
    this.write({ level, category: 'host', message: format(...args) });
  }
}
