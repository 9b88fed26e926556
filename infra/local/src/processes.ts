import { existsSync, readFileSync } from 'node:fs';

/**
 * What fnhost can learn about another process: whether it runs, and (on Linux, from /proc) which
 * process it is. A pid alone names a process only while it runs; once it has exited the number
 * is handed out again, so a pid recorded in a file is checked against the process's start time
 * before anything is concluded (or signalled) from it.
 */

/** Linux tells a process's state, start time and command line in /proc; elsewhere only signal 0 can be asked. */
export const HAS_PROC = existsSync('/proc/self/stat');

/** The fields of /proc/<pid>/stat after the command name (which may hold spaces and parentheses). */
function statFields(pid: number): string[] | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return text.slice(text.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

/** Whether `pid` runs. A zombie has exited: it only waits for its parent (or init) to reap it. */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    // EPERM: it exists but belongs to someone else.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  // A process whose parent died belongs to init once it exits, and stays a zombie (which signal 0
  // still reaches) until init reaps it, a second or more on some systems. It has exited all the same.
  if (!HAS_PROC) return true;
  const fields = statFields(pid);
  return fields !== undefined && fields[0] !== 'Z';
}

/**
 * When `pid` started, in clock ticks since boot (field 22 of /proc/<pid>/stat), with the boot's
 * id: together they name one process for good, where the pid alone is reused. Undefined without
 * /proc (or when the process is gone).
 */
export function processIdentity(pid: number): string | undefined {
  if (!HAS_PROC) return undefined;
  const ticks = statFields(pid)?.[19];
  if (ticks === undefined) return undefined;
  return `${bootId()}/${ticks}`;
}

function bootId(): string {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {
    return 'unknown-boot';
  }
}

/** The command line of `pid` (arguments joined by spaces), or undefined where it cannot be read. */
export function commandLine(pid: number): string | undefined {
  if (!HAS_PROC) return undefined;
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim();
  } catch {
    return undefined;
  }
}
