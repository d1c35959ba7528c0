/**
 * tempered's worker metrics, recorded through the Temporal SDK's meter so they are exported beside
 * the SDK's own (TEMPERED_METRICS_ADDRESS, infra/runtime.ts): how long stage attempts take and how
 * they end, cache hits and misses, training throughput, and how runs end. Labels are the stage kind and id, the
 * pipeline and the schedule (a team's own names, few), never run ids. Without an exporter the meter records nothing.
 */
import { Context } from '@temporalio/activity';
import type { RunEndRecord } from '../workflows/types.ts';

function meter() {
  return Context.current().metricMeter;
}

export function recordStageAttempt(kind: string, stage: string, outcome: 'succeeded' | 'failed' | 'cancelled', seconds: number): void {
  meter().createHistogram('tempered_stage_duration', 'float', 's', 'duration of a stage attempt').record(seconds, { kind, stage, outcome });
}

export function recordCacheLookup(kind: string, hit: boolean): void {
  meter()
    .createCounter('tempered_stage_cache_lookups', '', 'stage cache lookups by result')
    .add(1, { kind, result: hit ? 'hit' : 'miss' });
}

export function recordTrainingThroughput(kind: string, stage: string, samplesPerSec: number): void {
  meter()
    .createGauge('tempered_train_samples_per_second', 'float', '', 'training throughput of the latest step')
    .set(samplesPerSec, { kind, stage });
}

/**
 * How a run ended, by pipeline and schedule (empty for a run submitted by hand), on the worker that ran its workflow:
 * what an alert on failed runs reads, rather than stage attempts, which fail and are retried within a run that
 * succeeds. The time of the latest success is what "no good nightly run for a day" compares with `time()`; each
 * workflow worker knows the runs it closed, so take the `max` over workers.
 */
export function recordRunEnded(rec: Pick<RunEndRecord, 'pipeline' | 'scheduleId' | 'state'>): void {
  const labels = { pipeline: rec.pipeline, schedule: rec.scheduleId ?? '' };
  meter()
    .createCounter('tempered_runs', '', 'runs ended, by outcome')
    .add(1, { ...labels, outcome: rec.state });
  if (rec.state === 'succeeded')
    meter()
      .createGauge('tempered_run_last_success_timestamp_seconds', 'float', 's', 'Unix time the latest successful run ended')
      .set(Date.now() / 1000, labels);
}
