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

/** Writes records as single lines to stdout/stderr. */
export function consoleSink(record: LogRecord): void {
  const prefix = `[${record.time.toISOString()}]`;
  const where = record.functionName ? ` ${record.functionName}:` : '';
  const line = `${prefix}${where} ${record.message}\n`;
  if (RANK[record.level] >= RANK.warning) process.stderr.write(line);
  else process.stdout.write(line);
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
