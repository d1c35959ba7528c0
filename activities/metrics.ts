/**
 * tempered's worker metrics, recorded through the Temporal SDK's meter so they are exported beside
 * the SDK's own (TEMPERED_METRICS_ADDRESS, infra/runtime.ts): how long stage attempts take and how
 * they end, cache hits and misses, and training throughput. Labels are the stage kind and id (a
 * pipeline's own names, few), never run ids. Without an exporter the meter records nothing.
 */
import { Context } from '@temporalio/activity';

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
