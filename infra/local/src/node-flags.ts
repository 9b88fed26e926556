/**
 * Node.js flags fnhost is started with (by its `#!` line, and by the scripts and tests that spawn
 * it). V8 lets the old generation grow by up to 4× between full collections when a process
 * allocates fast, so a long batch job carried ~100 MB of garbage; growing 20% at a time keeps the
 * peak near the live heap at no measurable cost (infra/local/README.md, "Memory"). It must be given
 * at start: set later with `v8.setFlagsFromString`, it made CPU-bound activities ~20% slower.
 */
export const FNHOST_NODE_FLAGS: readonly string[] = ['--heap-growing-percent=20'];
