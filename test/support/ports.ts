export { freePort, freePorts } from '../../scripts/lib/ports.js';

let counter = 0;
/** Names unique within a test run, for containers, tables and instance ids. */
export function uniqueName(prefix: string): string {
  counter += 1;
  return `${prefix}${process.pid}x${counter}`.toLowerCase();
}
