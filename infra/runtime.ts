import { DefaultLogger, Runtime } from '@temporalio/worker';

let installed = false;

/**
 * Installs the Temporal worker runtime with a quieter logger (worker state changes are logged at
 * INFO otherwise; tempered's terminal output is the run's progress). Must run before the first
 * NativeConnection or Worker is created. TEMPERED_LOG_LEVEL=INFO|DEBUG brings the detail back.
 * A worker inside a CLI command logs errors only: the command already shows each stage's failure.
 */
export function installRuntime(defaultLevel: 'ERROR' | 'WARN' = 'WARN'): void {
  if (installed) return;
  installed = true;
  const level = (process.env.TEMPERED_LOG_LEVEL ?? defaultLevel).toUpperCase() as 'WARN';
  try {
    Runtime.install({ logger: new DefaultLogger(level) });
  } catch {
    /* the host process installed one already */
  }
}
