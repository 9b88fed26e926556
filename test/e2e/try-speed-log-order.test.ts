/**
 * Tester's probe of "fnhost writes its log lines once per event-loop turn, flushing them before any
 * HTTP response leaves" (commit 64b4eb8): a function that logs with context.log, then console.log,
 * then context.log again. Its three lines must come out in the order they were logged, and the
 * client must not see the response before them.
 */
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type FnHostProcess, startFnHost } from '../support/fnhost.js';

const APP = join(resolve(import.meta.dirname, '..'), 'fixtures', 'try-speed-log-app');
let host: FnHostProcess;

beforeAll(async () => {
  host = await startFnHost({ appDir: APP, args: ['--no-azurite'] });
}, 120_000);

afterAll(async () => {
  await host?.stop();
});

/** Waits (up to 5 s) until the host's output holds `line`. */
async function outputWith(line: string): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!host.output().includes(line) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
}

describe('fnhost log lines and HTTP responses', () => {
  it('context.log lines are written before the response is sent', async () => {
    for (let n = 0; n < 20; n++) {
      const res = await fetch(`${host.url}/api/order?n=r${n}`);
      expect(await res.text()).toBe(`done-r${n}`);
      // The lines are written to the host's stdout before the response to the socket, but this
      // process reads the two on different file descriptors, in whichever order they are reported.
      await outputWith(`third-r${n}`);
      const out = host.output();
      expect(out, `request ${n}`).toContain(`first-r${n}`);
      expect(out, `request ${n}`).toContain(`third-r${n}`);
    }
  });

  it("a handler's lines come out in the order it logged them (context.log, console.log, context.log)", async () => {
    for (let n = 0; n < 5; n++) {
      await (await fetch(`${host.url}/api/order?n=o${n}`)).text();
      await outputWith(`third-o${n}`);
      const out = host.output();
      const at = (line: string): number => out.indexOf(line);
      expect(at(`second-o${n}`), out.slice(-2000)).toBeGreaterThan(-1);
      expect(
        [at(`first-o${n}`) < at(`second-o${n}`), at(`second-o${n}`) < at(`third-o${n}`)],
        `expected first-o${n}, second-o${n}, third-o${n} in that order; the output ends:\n${out.slice(-1500)}`,
      ).toEqual([true, true]);
    }
  });
});
