import { DefaultLogger, Runtime, type LogLevel, type LogMetadata } from '@temporalio/worker';

/**
 * The SDK's logger without its warning that a worker with no workflows polls no workflow tasks: an
 * `--activities-only` worker (a GPU host) is that on purpose, and an operator reading the warning,
 * once per queue, took it for a fault.
 */
export class WorkerLogger extends DefaultLogger {
  override log(level: LogLevel, message: string, meta?: LogMetadata): void {
    if (message.startsWith('No workflows registered, not polling for workflow tasks')) return;
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
      // The SDK's own Prometheus exporter: its worker, poller and task metrics, plus tempered's stage
      // metrics (activities/metrics.ts) recorded through the same meter.
      ...(metrics
        ? {
            telemetryOptions: {
              metrics: { prometheus: { bindAddress: metrics, countersTotalSuffix: true, useSecondsForDurations: true } },
            },
          }
        : {}),
    });
  } catch {
    /* the host process installed one already */
  }
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
