// Loaded first in the CLI process scripts/tempered.mjs starts, which is connected to it by an IPC channel for this
// alone. A launcher killed with SIGKILL (`kill -9` of its pid) cannot pass a signal on: its worker went on, orphaned,
// polling and taking stages, while the person who killed it saw it gone. The channel closes when the launcher dies
// however it dies, and the CLI then stops as for a SIGTERM (a worker gracefully, as for `kill PID`).
if (process.channel) {
  // The channel must not keep a finished command alive.
  process.channel.unref();
  process.once('disconnect', () => process.kill(process.pid, 'SIGTERM'));
}
