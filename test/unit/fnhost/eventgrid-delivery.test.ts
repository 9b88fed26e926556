import { afterEach, describe, expect, it } from 'vitest';
import { type AttemptResult, SubscriptionDelivery } from '../../../infra/local/src/eventgrid/delivery.js';
import { CursorStore, FileEventLog, MemoryEventLog, type EventLog } from '../../../infra/local/src/eventgrid/event-log.js';
import type { EventRecord } from '../../../infra/local/src/eventgrid/filters.js';
import { EVENT_GRID_SCHEDULE_MS, NOT_RETRIED_WEBHOOK, afterFailure, retryDelayMs } from '../../../infra/local/src/eventgrid/retry-schedule.js';
import { Logger, type LogRecord } from '../../../infra/local/src/log.js';
import { tempDir } from '../../support/fnhost.js';
import { ManualClock, settle } from './manual-clock.js';

const exact = (): number => 0.5;

describe('Event Grid retry schedule', () => {
  it("waits Event Grid's steps, scaled, then every 12 hours", () => {
    expect(EVENT_GRID_SCHEDULE_MS.map((ms) => ms / 1000)).toEqual([10, 30, 60, 300, 600, 1800, 3600, 10800, 21600]);
    const scaled = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11].map((n) => retryDelayMs(n, { scale: 0.01, random: exact }));
    expect(scaled).toEqual([100, 300, 600, 3000, 6000, 18000, 36000, 108000, 216000, 432000, 432000]);
    expect(retryDelayMs(1, { scale: 1, random: exact })).toBe(10_000);
  });

  it('randomizes each step by at most 10% either way', () => {
    expect(retryDelayMs(2, { scale: 1, random: () => 0 })).toBe(27_000);
    expect(retryDelayMs(2, { scale: 1, random: () => 0.999999 })).toBe(33_000);
  });

  it('gives up on answers Event Grid does not retry, used-up attempts and expired events', () => {
    const base = { notRetried: NOT_RETRIED_WEBHOOK, maxDeliveryAttempts: 30, publishedAt: 0, timeToLiveMs: 1440 * 60_000, now: 0, scale: 1, random: exact };
    expect(afterFailure({ ...base, failedAttempts: 1, status: 500 })).toEqual({ retry: true, delayMs: 10_000 });
    expect(afterFailure({ ...base, failedAttempts: 1, status: undefined })).toEqual({ retry: true, delayMs: 10_000 });
    for (const status of [400, 401, 403, 413]) expect(afterFailure({ ...base, failedAttempts: 1, status })).toMatchObject({ retry: false });
    expect(afterFailure({ ...base, failedAttempts: 30, status: 500 })).toMatchObject({ retry: false, why: expect.stringMatching(/MaxDeliveryAttemptsExceeded/) as unknown });
    expect(afterFailure({ ...base, failedAttempts: 4, status: 500, timeToLiveMs: 60_000 })).toMatchObject({ retry: false, why: expect.stringMatching(/TimeToLiveExceeded/) as unknown });
  });
});

interface Harness {
  clock: ManualClock;
  log: EventLog;
  attempts: { id: string; at: number; count: number }[];
  deadLetters: { id: string; why: string }[];
  delivery: SubscriptionDelivery;
  cursors: CursorStore;
}

const logs: LogRecord[] = [];
const logger = new Logger({ minLevel: 'debug', sink: (r) => logs.push(r) });
const cleanups: (() => void | Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
  logs.length = 0;
});

function harness(options: {
  answer: (event: EventRecord, count: number) => AttemptResult;
  log?: EventLog;
  cursors?: CursorStore;
  clock?: ManualClock;
  maxDeliveryAttempts?: number;
}): Harness {
  const clock = options.clock ?? new ManualClock('2026-05-01T10:00:00Z');
  const log = options.log ?? new MemoryEventLog();
  const cursors = options.cursors ?? new CursorStore({ path: undefined, clock, logger });
  const attempts: Harness['attempts'] = [];
  const deadLetters: Harness['deadLetters'] = [];
  const delivery = new SubscriptionDelivery({
    name: 'topics/t/sink',
    log,
    cursors,
    select: (entry) => {
      const event = entry.value as EventRecord;
      if (event['skip']) return undefined;
      return { event, subject: String(event['subject']), publishedAt: clock.now() };
    },
    deliver: (event, count) => {
      attempts.push({ id: String(event['id']), at: clock.now(), count });
      return Promise.resolve(options.answer(event, count));
    },
    notRetried: NOT_RETRIED_WEBHOOK,
    retryPolicy: { maxDeliveryAttempts: options.maxDeliveryAttempts ?? 30, eventTimeToLiveInMinutes: 1440 },
    scale: 0.01,
    deadLetter: (event, why) => {
      deadLetters.push({ id: String(event['id']), why });
      return Promise.resolve();
    },
    clock,
    logger,
    random: exact,
  });
  cleanups.push(() => delivery.stop(0));
  return { clock, log, attempts, deadLetters, delivery, cursors };
}

const ev = (id: string, subject = 's'): EventRecord => ({ id, subject });

describe('Event Grid subscription delivery', () => {
  it('retries a failed event after 0.1 s, 0.3 s, … until it is accepted', async () => {
    const h = harness({ answer: (_e, count) => (count < 2 ? { ok: false, status: 500, reason: '500' } : { ok: true }) });
    await h.delivery.start();
    await h.log.append([ev('a')]);
    await h.clock.advance(0);
    expect(h.attempts.map((a) => a.count)).toEqual([0]);
    await h.clock.advance(99);
    expect(h.attempts).toHaveLength(1);
    await h.clock.advance(1);
    expect(h.attempts).toHaveLength(2);
    await h.clock.advance(300);
    expect(h.attempts.map((a) => [a.at - h.attempts[0]!.at, a.count])).toEqual([
      [0, 0],
      [100, 1],
      [400, 2],
    ]);
    await h.clock.advance(60_000);
    expect(h.attempts).toHaveLength(3);
    expect(h.deadLetters).toEqual([]);
    expect(h.cursors.get('topics/t/sink')).toBe(1);
  });

  it('holds back later events of a subject while one is retried, not other subjects', async () => {
    const h = harness({ answer: (e, count) => (e['id'] === 'a1' && count === 0 ? { ok: false, reason: 'connection refused' } : { ok: true }) });
    await h.delivery.start();
    await h.log.append([ev('a1', 'a'), ev('a2', 'a'), ev('b1', 'b')]);
    await h.clock.advance(0);
    expect(h.attempts.map((a) => a.id)).toEqual(['a1', 'b1']);
    // b1 is done, but the cursor stays before a1 until a1 is.
    expect(h.cursors.get('topics/t/sink')).toBe(0);
    await h.clock.advance(100);
    expect(h.attempts.map((a) => a.id)).toEqual(['a1', 'b1', 'a1', 'a2']);
    expect(h.cursors.get('topics/t/sink')).toBe(3);
  });

  it('dead-letters at once on 400, and after maxDeliveryAttempts otherwise', async () => {
    const h = harness({ answer: (e) => ({ ok: false, status: e['id'] === 'bad' ? 400 : 503, reason: 'no' }), maxDeliveryAttempts: 3 });
    await h.delivery.start();
    await h.log.append([ev('bad', 'x'), ev('down', 'y')]);
    await h.clock.advance(10_000);
    expect(h.attempts.filter((a) => a.id === 'bad')).toHaveLength(1);
    expect(h.attempts.filter((a) => a.id === 'down')).toHaveLength(3);
    expect(h.deadLetters.map((d) => d.id)).toEqual(['bad', 'down']);
    expect(h.deadLetters[1]?.why).toMatch(/MaxDeliveryAttemptsExceeded \(3 attempts\)/);
    expect(h.cursors.get('topics/t/sink')).toBe(2);
    expect(logs.some((l) => l.level === 'error' && l.message.includes('event bad dead-lettered'))).toBe(true);
  });

  it('keeps in a memory log only what its readers may still read, and everything a stopped reader has not delivered', async () => {
    const log = new MemoryEventLog();
    // No reader at all: nothing is kept, and positions still count every entry.
    log.retainFrom = () => Infinity;
    for (let i = 0; i < 300; i++) await log.append([ev(`unread-${i}`)]);
    expect(await log.end()).toBe(300);
    // (Dropped in steps of at least 64, so fewer than that may wait for the next step.)
    expect((await log.read(0, Infinity)).length).toBeLessThan(64);

    const h = harness({ answer: (e) => (String(e['id']).startsWith('stuck') ? { ok: false, status: 500, reason: '500' } : { ok: true }), log });
    log.retainFrom = () => h.delivery.neededFrom();
    await h.delivery.start();
    for (let i = 0; i < 300; i++) await log.append([ev(`a-${i}`, `s${i}`)]);
    await h.clock.advance(0);
    expect(h.attempts).toHaveLength(300);
    // Delivered and read: dropped; what is left starts no earlier than 300 entries back.
    const kept = await log.read(0, Infinity);
    expect(kept.length).toBeLessThan(300);
    expect(kept.every((e) => e.position >= 300)).toBe(true);

    // A stuck event holds everything after it, across a stop and a start, until it is delivered.
    await log.append([ev('stuck-1', 'x')]);
    await h.clock.advance(0);
    for (let i = 0; i < 200; i++) await log.append([ev(`b-${i}`, `t${i}`)]);
    await h.clock.advance(0);
    await h.delivery.stop(0);
    const stuckAt = h.cursors.get('topics/t/sink') ?? -1;
    expect((await log.read(stuckAt))[0]?.value).toEqual(ev('stuck-1', 'x'));
    for (let i = 0; i < 200; i++) await log.append([ev(`c-${i}`, `u${i}`)]);
    expect((await log.read(stuckAt, Infinity)).map((e) => e.position)).toEqual(Array.from({ length: 401 }, (_, i) => stuckAt + i));
  });

  it('starts a new subscription at the end of its log, and skips what it filters out', async () => {
    const log = new MemoryEventLog();
    await log.append([ev('old')]);
    const h = harness({ answer: () => ({ ok: true }), log });
    await h.delivery.start();
    await log.append([{ id: 'skipped', subject: 's', skip: true }, ev('new')]);
    await h.clock.advance(0);
    expect(h.attempts.map((a) => a.id)).toEqual(['new']);
    expect(h.cursors.get('topics/t/sink')).toBe(3);
  });

  it('delivers again after a restart what was not done, from a file log and saved cursors', async () => {
    const dir = tempDir('fnhost-eg-unit-');
    cleanups.push(() => dir.remove());
    const clock = new ManualClock('2026-05-01T10:00:00Z');
    const path = `${dir.path}/topic.jsonl`;
    const cursorsPath = `${dir.path}/cursors.json`;
    const log = new FileEventLog({ path, clock, logger });
    const first = harness({ answer: (e) => (e['id'] === 'stuck' ? { ok: false, status: 500, reason: '500' } : { ok: true }), log, clock, cursors: new CursorStore({ path: cursorsPath, clock, logger }) });
    await first.delivery.start();
    await log.append([ev('done-1', 'a'), ev('stuck', 'b'), ev('done-2', 'c')]);
    // The file log is looked at every 200 ms, and its reads are real I/O.
    for (let i = 0; i < 20 && first.attempts.length < 3; i++) {
      await first.clock.advance(50);
      await new Promise((r) => setTimeout(r, 5));
    }
    expect(new Set(first.attempts.map((a) => a.id))).toEqual(new Set(['done-1', 'stuck', 'done-2']));
    await first.delivery.stop(0);

    // A host starting on the same folder: everything from the first event not done on is read again.
    const again = harness({ answer: () => ({ ok: true }), log: new FileEventLog({ path, clock, logger }), clock, cursors: new CursorStore({ path: cursorsPath, clock, logger }) });
    await again.delivery.start();
    for (let i = 0; i < 20 && again.attempts.length < 2; i++) {
      await again.clock.advance(50);
      await new Promise((r) => setTimeout(r, 5));
    }
    await settle();
    expect(again.attempts.map((a) => a.id)).toEqual(['stuck', 'done-2']);
  });
});
