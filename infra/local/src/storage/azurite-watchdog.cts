// Preloaded into the Azurite child process.
// - When fnhost dies (even by SIGKILL) the IPC channel closes; Azurite then shuts down the way it
//   does on SIGTERM, so its database is written out.
// - Azurite keeps timers alive after closing its servers; exit as soon as all three services
//   report "successfully closed" (their databases are saved by then) instead of hanging.
let closed = 0;
const log = console.log.bind(console);
console.log = (...args: unknown[]): void => {
  log(...args);
  if (typeof args[0] === 'string' && args[0].includes('successfully closed')) {
    closed += 1;
    if (closed === 3) setImmediate(() => process.exit(0));
  }
};
const fallbackExit = (): void => {
  setTimeout(() => process.exit(0), 15_000).unref();
};
process.on('disconnect', () => {
  process.emit('SIGTERM', 'SIGTERM');
  fallbackExit();
});
process.on('message', (message: unknown) => {
  if (message === 'shutdown') fallbackExit();
});
