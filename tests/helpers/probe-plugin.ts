/** TEMPERED_PLUGINS module exposing the probe stage kind to a worker process started by a test. */
import { probeKind } from './test-stages.ts';

export function stageKinds() {
  const log = process.env.TEMPERED_PROBE_LOG;
  if (!log) throw new Error('set TEMPERED_PROBE_LOG to the execution log file');
  return [probeKind(log)];
}
