import { createServer } from 'node:net';
import { DefaultLogger, Runtime, type LogLevel, type LogMetadata } from '@temporalio/worker';

/**
 * The SDK's logger without its warning that a worker with no workflows polls no workflow tasks: an
 * `--activities-only` worker (a GPU host) is that on purpose, and an operator reading the warning,
 * once per queue, took it for a fault.
 */
export class WorkerLogger extends DefaultLogger {
  /** Executions whose workflow task this worker could not decrypt, said once each. */
  private readonly keyless = new Set<string>();

  override log(level: LogLevel, message: string, meta?: LogMetadata): void {
    if (message.startsWith('No workflows registered, not polling for workflow tasks')) return;
    // Core's own account of the same task (at WARN, a standalone worker's level): the failure's Rust debug text, the
    // stack trace in it; the line below says it once per run.
    if (message === 'Failing workflow task' && String(meta?.failure).includes('PayloadKeyError')) return;
    const error = meta?.error as Error | undefined;
    if (message === 'Failed to process Workflow Activation' && error?.name === 'PayloadKeyError') {
      // A worker without the key (a `submit --wait` whose in-process worker shares a queue with encrypted runs) got the
      // SDK's error with the codec's stack trace, 15 lines, again on every retry of the task, for each such run.
      const execution = String(meta?.runId ?? '');
      if (this.keyless.has(execution)) return;
      if (this.keyless.size > 1000) this.keyless.clear();
      this.keyless.add(execution);
      super.log(
        level,
        `this worker cannot run a workflow task of run execution ${execution} (task queue '${String(meta?.taskQueue)}'): ${error.message}; Temporal retries it until a worker with the key takes it (said once per run)`,
      );
      return;
    }
    super.log(level, message, meta);
  }
}

let installed = false;

/**
 * Installs the Temporal worker runtime with a quieter logger (worker state changes are logged at
 * INFO otherwise; tempered's terminal output is the run's progress). Must run before the first
 * NativeConnection or Worker is created. TEMPERED_LOG_LEVEL=INFO|DEBUG brings the detail back.
 * A worker inside a CLI command logs errors only: the command already shows each stage's failure.
 * `ownSignals`: the process handles SIGINT/SIGTERM itself and stops its workers (a waiting CLI command).
 */
export function installRuntime(defaultLevel: 'ERROR' | 'WARN' = 'WARN', o: { ownSignals?: boolean } = {}): void {
  if (installed) return;
  installed = true;
  const level = (process.env.TEMPERED_LOG_LEVEL ?? defaultLevel).toUpperCase() as 'WARN';
  const metrics = metricsAddress();
  try {
    Runtime.install({
      logger: new WorkerLogger(level),
      // The SDK shuts every worker down on SIGINT/SIGTERM by default, and says nothing to the command
      // that waits on them: `submit --wait` then followed a run no worker served, and Ctrl-C did nothing.
      ...(o.ownSignals ? { shutdownSignals: [] } : {}),
      telemetryOptions: {
        // The SDK's core writes its own logs (a poll retried while the server is slow or gone) to stdout, coloured,
        // past the logger: `submit --wait --local-worker --json` printed one above its JSON. Forwarded, they go
        // through the logger (its level, stderr), at the levels core logged at before.
        logging: { filter: { core: 'WARN', other: 'ERROR' }, forward: {} },
        // The SDK's own Prometheus exporter: its worker, poller and task metrics, plus tempered's stage
        // metrics (activities/metrics.ts) recorded through the same meter.
        ...(metrics ? { metrics: { prometheus: { bindAddress: metrics, countersTotalSuffix: true, useSecondsForDurations: true } } } : {}),
      },
    });
  } catch {
    /* the host process installed one already */
    return;
  }
  // The forwarded logs wait in the SDK's collector for 100 ms (to put core's and the worker's lines in time order)
  // before they reach the logger: a command that exits (process.exit, after its output is written) dropped what core
  // said last, the retries that explain why it failed. flushLogs (the SDK's public flush) hands them to the logger at
  // once, which writes them to stderr there and then; on 'exit', so every way out (a failure, Ctrl-C twice, a worker's
  // own exit) flushes, and none waits. What core has not passed on yet (it batches every 10 ms) is not there to flush:
  // the SDK's Runtime shutdown aborts that batch too. The runtime there at the exit: once its last worker and connection
  // close the SDK shuts the installed one down (flushing it) and builds another, with the same logger, for the next
  // (a command that ran a local worker, then another); none there, nothing to flush.
  process.once('exit', () => Runtime._instance?.flushLogs());
}

/** TEMPERED_METRICS_ADDRESS (`host:port`): where a worker serves Prometheus metrics on /metrics. */
export function metricsAddress(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const a = env.TEMPERED_METRICS_ADDRESS;
  if (a === undefined || a === '') return undefined;
  const m = /^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(a);
  if (!m || Number(m[2]) > 65535)
    throw new Error(`TEMPERED_METRICS_ADDRESS=${a} is not host:port (e.g. 127.0.0.1:9464, or 0.0.0.0:9464 to be scraped from elsewhere)`);
  return a;
}

/**
 * Why this process could not serve its metrics at `address`, or undefined when it can. The SDK's exporter binds in
 * its core and says nothing when it cannot: a worker restarted while the old one still held the port (or a second
 * worker of the host given the same address) ran without metrics, and every scrape read the other process's.
 */
export async function metricsAddressRefusal(address: string): Promise<string | undefined> {
  const at = address.lastIndexOf(':');
  const host = address.slice(0, at).replace(/^\[(.*)\]$/, '$1');
  const port = Number(address.slice(at + 1));
  const code = await new Promise<string | undefined>((resolve) => {
    const probe = createServer();
    probe.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
    probe.listen({ host, port, exclusive: true }, () => probe.close(() => resolve(undefined)));
  });
  if (code === undefined) return undefined;
  const why =
    code === 'EADDRINUSE'
      ? 'is in use by another process (a worker still running, or another given the same address), so this worker would serve no metrics and a scrape would read that process'
      : code === 'EADDRNOTAVAIL' || code === 'ENOTFOUND'
        ? 'is not an address of this host'
        : code === 'EACCES'
          ? 'needs privileges to bind (a port below 1024)'
          : `cannot be bound (${code})`;
  return `TEMPERED_METRICS_ADDRESS=${address} ${why}: give each worker on a host a port of its own`;
}
