// Preloaded into the Azurite child process. When fnhost dies (even by SIGKILL) the IPC channel
// closes; Azurite then shuts down the way it does on SIGTERM, so its database is written out.
process.on('disconnect', () => {
  process.emit('SIGTERM', 'SIGTERM');
  setTimeout(() => process.exit(0), 10_000).unref();
});
process.on('message', (message: unknown) => {
  // Azurite handles "shutdown" itself; exit once its servers have had time to close.
  if (message === 'shutdown') setTimeout(() => process.exit(0), 10_000).unref();
});
