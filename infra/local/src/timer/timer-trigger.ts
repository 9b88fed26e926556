import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Clock } from '../clock.js';
import { describeError } from '../errors.js';
import type { Logger } from '../log.js';
import { formatDateTime, resolveAppSettings } from '../worker/binding-expressions.js';
import { timerBindingData } from '../worker/trigger-binding-data.js';
import type { Invoker } from '../worker/invoker.js';
import type { RegisteredFunction, WorkerRuntime } from '../worker/worker-runtime.js';
import {
  type ScheduleStatus,
  type TimerSchedule,
  checkPastDue,
  formatScheduleDate,
  parseSchedule,
  parseScheduleDate,
  scheduleTimeZone,
  timerInfo,
  usesMonitor,
} from './schedule.js';

/** Where schedule status lives between runs; the host keeps it in storage, fnhost in files. */
export interface ScheduleStatusStore {
  read(timerName: string): Promise<ScheduleStatus | undefined>;
  write(timerName: string, status: ScheduleStatus): Promise<void>;
}

/** Keeps status in memory: without a data folder nothing survives a restart anyway. */
export class MemoryStatusStore implements ScheduleStatusStore {
  readonly #statuses = new Map<string, ScheduleStatus>();

  read(timerName: string): Promise<ScheduleStatus | undefined> {
    return Promise.resolve(this.#statuses.get(timerName.toLowerCase()));
  }

  write(timerName: string, status: ScheduleStatus): Promise<void> {
    this.#statuses.set(timerName.toLowerCase(), { ...status });
    return Promise.resolve();
  }
}

/**
 * Keeps status as `<folder>/<function>.json` with the host's field names
 * (`{"Last":…,"Next":…,"LastUpdated":…}`), written atomically.
 */
export class FileStatusStore implements ScheduleStatusStore {
  constructor(
    private readonly folder: string,
    /** Told of a status file that cannot be read. */
    private readonly logger?: Logger,
  ) {}

  /** The file that holds a timer's status. */
  fileFor(timerName: string): string {
    return join(this.folder, `${timerName.toLowerCase().replace(/[^a-z0-9_.-]/g, '_')}.json`);
  }

  async read(timerName: string): Promise<ScheduleStatus | undefined> {
    let text: string;
    try {
      text = await readFile(this.fileFor(timerName), 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
    let problem: string;
    try {
      const raw = JSON.parse(text) as Record<string, unknown> | null;
      const next = parseScheduleDate(raw?.['Next']);
      if (next !== undefined) return { last: parseScheduleDate(raw?.['Last']), next, lastUpdated: parseScheduleDate(raw?.['LastUpdated']) };
      problem = 'it has no "Next" time';
    } catch (err) {
      problem = `not valid JSON: ${describeError(err)}`;
    }
    // A damaged file reads as no status: the timer starts afresh rather than not at all (the file
    // is written again at its next occurrence), but what that costs is said.
    this.logger?.warn(
      `The timer status ${this.fileFor(timerName)} is not usable (${problem}); '${timerName}' starts without it, so an occurrence missed while fnhost was down does not run.`,
    );
    return undefined;
  }

  async write(timerName: string, status: ScheduleStatus): Promise<void> {
    const file = this.fileFor(timerName);
    await mkdir(this.folder, { recursive: true });
    const body = JSON.stringify({
      Last: formatScheduleDate(status.last),
      Next: formatScheduleDate(status.next),
      LastUpdated: formatScheduleDate(status.lastUpdated),
    });
    await writeFile(`${file}.tmp`, body, 'utf8');
    await rename(`${file}.tmp`, file);
  }
}

/** Timers longer than this are run in steps, as a host timer cannot wait longer (Node's limit is ~24.8 days). */
const MAX_TIMER_MS = 24 * 86_400_000;
/** A timer that wakes up this much before its time is a long wait in steps, not an occurrence. */
const EARLY_TOLERANCE_MS = 1000;

export interface TimerListenerOptions {
  name: string;
  schedule: TimerSchedule;
  runOnStartup: boolean;
  /** Whether schedule status is kept (and reported in the trigger value). */
  useMonitor: boolean;
  store: ScheduleStatusStore;
  clock: Clock;
  logger: Logger;
  /** Runs the function with the timer's value; failures are the function's, and are logged there. */
  invoke: (value: Record<string, unknown>) => Promise<void>;
}

/**
 * One timer-triggered function, scheduled the way the host's timer listener does: on start it
 * reads the stored status and, if an occurrence was missed while the host was down, invokes at
 * once with `IsPastDue: true`; `runOnStartup` invokes at once too; after every invocation the
 * status is recorded and the next timer set from the time it finished.
 */
export class TimerListener {
  readonly #o: TimerListenerOptions;
  #status: ScheduleStatus | undefined;
  #startup: 'pastDue' | 'runOnStartup' | undefined;
  #handle: unknown;
  #stopped = false;
  #running: Promise<void> | undefined;

  constructor(options: TimerListenerOptions) {
    this.#o = options;
  }

  /** The status the listener works from (for tests and logs). */
  get status(): ScheduleStatus | undefined {
    return this.#status ? { ...this.#status } : undefined;
  }

  async start(): Promise<void> {
    const { schedule, clock, store, name, logger } = this.#o;
    const now = clock.now();
    let isPastDue = false;
    if (this.#o.useMonitor) {
      const stored = await store.read(name);
      const checked = checkPastDue(schedule, now, stored);
      this.#status = checked.status;
      isPastDue = checked.pastDueMs > 0;
      if (checked.changed) await store.write(name, checked.status);
    }
    this.#status ??= { last: undefined, next: schedule.next(now), lastUpdated: undefined };

    const upcoming: string[] = [];
    for (let t = now, i = 0; i < 5; i++) {
      t = schedule.next(t);
      upcoming.push(new Date(t).toISOString());
    }
    logger.info(`The next 5 occurrences of the '${name}' schedule (${schedule.describe()}) will be: ${upcoming.join(', ')}`);

    if (isPastDue) {
      this.#startup = 'pastDue';
      this.#arm(0);
    } else if (this.#o.runOnStartup) {
      this.#startup = 'runOnStartup';
      this.#arm(0);
    } else {
      this.#armForNext();
    }
  }

  /** Cancels the timer and waits up to `graceMs` for an invocation in progress. */
  async stop(graceMs: number): Promise<void> {
    this.#stopped = true;
    this.#o.clock.clearTimeout(this.#handle);
    const running = this.#running;
    if (!running) return;
    let handle: unknown;
    const timedOut = await Promise.race([
      running.then(() => false),
      new Promise<boolean>((resolve) => {
        handle = this.#o.clock.setTimeout(() => resolve(true), graceMs);
      }),
    ]);
    this.#o.clock.clearTimeout(handle);
    if (timedOut) this.#o.logger.warn(`Timer '${this.#o.name}' was still running after ${graceMs}ms.`);
  }

  #armForNext(): void {
    const next = this.#status?.next ?? this.#o.schedule.next(this.#o.clock.now());
    // An occurrence in the past (a slow invocation, slow storage) runs at once, as in the host.
    this.#arm(Math.max(0, next - this.#o.clock.now()));
  }

  #arm(delayMs: number): void {
    if (this.#stopped) return;
    this.#handle = this.#o.clock.setTimeout(() => {
      this.#running = this.#fire().finally(() => {
        this.#running = undefined;
      });
    }, Math.min(delayMs, MAX_TIMER_MS));
  }

  async #fire(): Promise<void> {
    if (this.#stopped) return;
    const now = this.#o.clock.now();
    const startup = this.#startup;
    this.#startup = undefined;
    try {
      if (startup === 'pastDue') {
        this.#o.logger.info(`Timer '${this.#o.name}' is past due, running it now.`);
        await this.#invoke(now, true, false);
      } else if (startup === 'runOnStartup') {
        await this.#invoke(now, false, true);
      } else if ((this.#status?.next ?? now) - now > EARLY_TOLERANCE_MS) {
        // Still waiting out a schedule longer than one timer can wait.
      } else {
        await this.#invoke(now, false, false);
      }
    } catch (err) {
      // Nothing may stop the schedule: the next occurrence still gets its timer.
      this.#o.logger.error(`Error occurred during scheduled invocation for '${this.#o.name}': ${describeError(err)}`);
    } finally {
      this.#armForNext();
    }
  }

  async #invoke(invocationTime: number, isPastDue: boolean, runOnStartup: boolean): Promise<void> {
    const status = this.#status;
    try {
      await this.#o.invoke(timerInfo(this.#o.useMonitor && status ? status : null, isPastDue));
    } catch (err) {
      // A failed run is still a run: the schedule moves on, as in the host.
      this.#o.logger.error(`Timer '${this.#o.name}' invocation failed: ${describeError(err)}`);
    }
    // A timer that fired a little before its time counts as the scheduled occurrence, or the
    // same occurrence would be scheduled twice.
    const adjusted = !isPastDue && !runOnStartup && status && status.next > invocationTime ? status.next : invocationTime;
    this.#status = { last: adjusted, next: this.#o.schedule.next(adjusted), lastUpdated: adjusted };
    if (this.#o.useMonitor) await this.#o.store.write(this.#o.name, this.#status);
  }
}

/**
 * The timer trigger: one {@link TimerListener} per `timerTrigger` function. Schedules take
 * `%setting%`; status goes to `<data>/timers/` when there is a data folder, so a missed occurrence
 * is noticed (`IsPastDue`) after a restart.
 */
export class TimerSubsystem {
  readonly #o: { runtime: WorkerRuntime; invoker: Invoker; logger: Logger; clock: Clock; dataDir: string | undefined };
  #listeners: TimerListener[] = [];

  constructor(options: { runtime: WorkerRuntime; invoker: Invoker; logger: Logger; clock: Clock; dataDir: string | undefined }) {
    this.#o = options;
  }

  async start(): Promise<void> {
    const { runtime, logger, dataDir } = this.#o;
    const functions = runtime.functionsWithTrigger('timerTrigger');
    if (functions.length === 0) return;
    const store: ScheduleStatusStore = dataDir ? new FileStatusStore(join(dataDir, 'timers'), logger) : new MemoryStatusStore();
    const timezone = scheduleTimeZone(process.env, (m) => logger.warn(m));
    const listeners: TimerListener[] = [];
    for (const fn of functions) {
      try {
        listeners.push(this.#listenerFor(fn, store, timezone));
      } catch (err) {
        logger.error(`The '${fn.name}' function is in error: ${describeError(err)}`);
      }
    }
    for (const listener of listeners) {
      try {
        await listener.start();
        this.#listeners.push(listener);
      } catch (err) {
        logger.error(`A timer could not start: ${describeError(err)}`);
      }
    }
  }

  async stop(graceMs: number): Promise<void> {
    const listeners = this.#listeners;
    this.#listeners = [];
    await Promise.all(listeners.map((l) => l.stop(graceMs)));
  }

  #listenerFor(fn: RegisteredFunction, store: ScheduleStatusStore, timezone: string): TimerListener {
    const { invoker, logger, clock } = this.#o;
    const raw = fn.trigger['schedule'];
    const schedule = parseSchedule(resolveAppSettings(typeof raw === 'string' ? raw : ''), timezone);
    return new TimerListener({
      name: fn.name,
      schedule,
      runOnStartup: fn.trigger['runOnStartup'] === true || fn.trigger['runOnStartup'] === 'true',
      useMonitor: usesMonitor(schedule, fn.trigger['useMonitor'], clock.now()),
      store,
      clock,
      logger,
      invoke: async (value) => {
        await invoker.invoke(fn, {
          triggerData: { json: JSON.stringify(value) },
          // DateTime.Now.ToString() in the en-US culture of the host's machines.
          bindingData: timerBindingData(formatDateTime(clock.now(), 'M/d/yyyy h:mm:ss tt')),
        });
      },
    });
  }
}
