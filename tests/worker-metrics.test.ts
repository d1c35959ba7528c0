/**
 * TEMPERED_METRICS_ADDRESS: a worker serves Prometheus metrics, the Temporal SDK's own beside
 * tempered's stage durations, cache lookups and training throughput, after a real run on a real
 * dev server. The runtime is process-wide, so this file sets the address before its worker starts.
 * Also how the worker polls for activities (createWorker), read from the SDK's compiled options.
 */
import { after, before, it } from 'node:test';
import assert from 'node:assert/strict';
import { freePort } from '../src/util/port-race.ts';
import { submitRun, waitForRun } from '../client/runs.ts';
import { metricsAddress } from '../infra/runtime.ts';
import { activityPollers, createWorker } from '../infra/worker.ts';
import { NativeConnection } from '@temporalio/worker';
import type { StageKind } from '../src/stages/types.ts';
import { InputError } from '../src/errors.ts';
import { plannedPipeline } from './helpers/plans.ts';
import { waitFor } from './helpers/schedule-fixtures.ts';
import { startTestEnv, TEST_QUEUE, type TestEnv } from './helpers/temporal-env.ts';

let env: TestEnv;
let address: string;

/** A stage that reports a few training steps, as the train stage does. */
const stepper: StageKind<{ steps: number; fail?: boolean }> = {
  kind: 'stepper',
  description: 'reports training steps',
  codeVersion: '1',
  withSchema: {
    type: 'object',
    properties: { steps: { type: 'integer' }, fail: { type: 'boolean' } },
    required: ['steps'],
    additionalProperties: false,
  },
  outputs: { done: { type: 'number', description: 'steps' } },
  async run(cfg, ctx) {
    if (cfg.fail) throw new InputError('data.jsonl:3: invalid-json');
    for (let step = 1; step <= cfg.steps; step++) ctx.progress({ metrics: { step, loss: 1 / step, samplesPerSec: 100 + step } });
    return { done: cfg.steps };
  },
};

before(async () => {
  address = `127.0.0.1:${await freePort()}`;
  process.env.TEMPERED_METRICS_ADDRESS = address;
  env = await startTestEnv(new Map([['stepper', stepper as StageKind<never>]]));
  await env.startWorker();
});
after(async () => env?.close());

it('checks the address', () => {
  assert.equal(metricsAddress({ TEMPERED_METRICS_ADDRESS: '0.0.0.0:9464' }), '0.0.0.0:9464');
  assert.equal(metricsAddress({}), undefined);
  assert.throws(() => metricsAddress({ TEMPERED_METRICS_ADDRESS: '9464' }), /not host:port/);
  assert.throws(() => metricsAddress({ TEMPERED_METRICS_ADDRESS: 'localhost:99999' }), /not host:port/);
});

it('serves the SDK metrics and stage durations, cache lookups and throughput after a run', async () => {
  const plan = plannedPipeline('metrics', [{ id: 'fit', uses: 'stepper', needs: [], with: { steps: 5 } }]);
  for (let i = 0; i < 2; i++) {
    // The second run finds the first one's outputs in the cache.
    const h = await submitRun(env.client, { plan, options: { baseDir: env.dir, actor: 'metrics-tester' } }, { taskQueue: TEST_QUEUE });
    assert.equal((await waitForRun(env.client, h.workflowId)).state, 'succeeded');
  }
  // The exporter publishes what was recorded on its next collection; give it a few tries.
  let text = '';
  for (let i = 0; i < 40; i++) {
    text = await (await fetch(`http://${address}/metrics`)).text();
    if (/tempered_stage_cache_lookups_total\{[^}]*result="hit"/.test(text)) break;
    await new Promise((r) => setTimeout(r, 250));
  }
  assert.match(text, /temporal_activity_execution_latency|temporal_workflow_completed/, 'the SDK exports its own metrics');
  assert.match(text, /tempered_stage_duration_(seconds_)?count\{[^}]*kind="stepper"[^}]*outcome="succeeded"[^}]*\} 1\b/);
  assert.match(text, /tempered_stage_cache_lookups_total\{[^}]*kind="stepper"[^}]*result="miss"[^}]*\} 1\b/);
  assert.match(text, /tempered_stage_cache_lookups_total\{[^}]*kind="stepper"[^}]*result="hit"[^}]*\} 1\b/);
  assert.match(text, /tempered_train_samples_per_second\{[^}]*stage="fit"[^}]*\} 105\b/);
});

/** The worker's /metrics once it shows `want` (the exporter publishes on its next collection). */
async function metricsShowing(want: RegExp): Promise<string> {
  let text = '';
  for (let i = 0; i < 40 && !want.test(text); i++) {
    if (i > 0) await new Promise((r) => setTimeout(r, 250));
    text = await (await fetch(`http://${address}/metrics`)).text();
  }
  return text;
}

it('counts runs by how they ended, per pipeline and schedule, and keeps the time of the latest success', async () => {
  // What an on-call alert reads: a run failed (not a stage attempt, which a retry may undo), and when a schedule's
  // runs last succeeded. A stage attempt's failure alone said neither.
  const failing = plannedPipeline('nightly-fail', [{ id: 'fit', uses: 'stepper', needs: [], with: { steps: 1, fail: true } }]);
  const h = await submitRun(
    env.client,
    { plan: failing, options: { baseDir: env.dir, actor: 'metrics-tester' } },
    { taskQueue: TEST_QUEUE },
  );
  assert.equal((await waitForRun(env.client, h.workflowId)).state, 'failed');
  const scheduled = plannedPipeline('nightly-ok', [{ id: 'fit', uses: 'stepper', needs: [], with: { steps: 2 } }]);
  const options = { baseDir: env.dir, actor: 'metrics-tester', scheduleId: 'nightly' };
  const s = await submitRun(env.client, { plan: scheduled, options }, { taskQueue: TEST_QUEUE });
  assert.equal((await waitForRun(env.client, s.workflowId)).state, 'succeeded');
  const text = await metricsShowing(/tempered_run_last_success_timestamp_seconds\{[^}]*pipeline="nightly-ok"/);
  assert.match(text, /tempered_runs_total\{[^}]*outcome="failed"[^}]*pipeline="nightly-fail"[^}]*\} 1\b/);
  assert.match(text, /tempered_runs_total\{[^}]*outcome="succeeded"[^}]*pipeline="nightly-ok"[^}]*schedule="nightly"[^}]*\} 1\b/);
  assert.match(text, /tempered_runs_total\{[^}]*outcome="succeeded"[^}]*pipeline="metrics"[^}]*\} 2\b/, "the first test's two runs");
  const at = /tempered_run_last_success_timestamp_seconds\{[^}]*pipeline="nightly-ok"[^}]*schedule="nightly"[^}]*\} (\S+)/.exec(text);
  assert.ok(at, text);
  assert.ok(Math.abs(Number(at[1]) - Date.now() / 1000) < 600, `a Unix time in seconds: ${at[1]}`);
  assert.doesNotMatch(text, /tempered_run_last_success_timestamp_seconds\{[^}]*pipeline="nightly-fail"/);
});

it('counts a run once, while its end record waits for an audit log that is away and after it is written', async () => {
  // The run's end record is retried for up to half an hour while the audit database is away: a run counted only once
  // its record was written went uncounted all that time (or for good), and one counted on every attempt, many times.
  const queue = 'metrics-audit-away';
  let attempts = 0;
  let away = true;
  const conn = await NativeConnection.connect({ address: env.server.address });
  const worker = await createWorker({
    connection: conn,
    namespace: 'default',
    taskQueue: queue,
    kinds: env.kinds,
    deps: {
      store: env.store,
      cache: env.cache,
      stateDir: env.dir,
      async onRunEnded() {
        attempts++;
        if (away) throw new Error('the audit database is away');
      },
    },
  });
  const running = worker.run();
  try {
    const plan = plannedPipeline('audit-away', [{ id: 'fit', uses: 'stepper', needs: [], with: { steps: 1 } }]);
    const h = await submitRun(env.client, { plan, options: { baseDir: env.dir, actor: 'metrics-tester' } }, { taskQueue: queue });
    const counted = /tempered_runs_total\{[^}]*outcome="succeeded"[^}]*pipeline="audit-away"[^}]*\} 1\b/;
    await waitFor('three attempts at the end record', async () => attempts >= 3);
    assert.match(await metricsShowing(counted), counted, 'counted while its end record is retried');
    away = false;
    assert.equal((await waitForRun(env.client, h.workflowId)).state, 'succeeded');
    assert.match(await metricsShowing(counted), counted, 'once, after the retries');
  } finally {
    // A worker stops once the run's end record is written: without that, it would wait out the half hour.
    away = false;
    worker.shutdown();
    await running;
    await conn.close();
  }
});

it('the worker polls with fewer activity pollers than slots, so a stage can be handed to it eagerly', () => {
  // Each outstanding poll holds a slot; with every slot polling, the server never dispatches a
  // stage eagerly to the worker that scheduled it, and each stage waits for a poll instead.
  const o = env.worker!.options;
  const slots = (o.tuner.activityTaskSlotSupplier as { numSlots: number }).numSlots;
  assert.equal(o.activityTaskPollerBehavior.type, 'simple-maximum');
  const pollers = (o.activityTaskPollerBehavior as { maximum: number }).maximum;
  assert.equal(slots, 8);
  assert.equal(pollers, activityPollers(slots));
  assert.ok(pollers < slots, `${pollers} pollers for ${slots} slots`);
  assert.deepEqual([1, 2, 3, 8].map(activityPollers), [1, 1, 1, 4]);
  // Of stages scheduled together, one may go to this worker at once; the rest are left to the queue.
  assert.equal(o.maxEagerActivityReservationsPerWorkflowTask, 1);
});
