/**
 * A failed stage says whether it was retried and how many attempts ran, from what Temporal records: the
 * workflow's own final status (the ActivityFailure's retry state) and the status rebuilt from the run's
 * history (the failed event's retry state, the last attempt's started event), on a real dev server and worker.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { statusFromHistory, submitRun, waitForRun } from '../client/runs.ts';
import { formatRunStatus } from '../cli/format.ts';
import type { RunStatus, StageStatus } from '../workflows/types.ts';
import { plannedPipeline, type StageDraft } from './helpers/plans.ts';
import { probeKind } from './helpers/test-stages.ts';
import { startTestEnv, TEST_QUEUE, type TestEnv } from './helpers/temporal-env.ts';
import { runCli } from './helpers/cli.ts';

let env: TestEnv;

before(async () => {
  env = await startTestEnv(new Map());
  env.kinds.set('probe', probeKind(join(env.dir, 'executions.log')));
  await env.startWorker();
});
after(async () => env?.close());

const retry = { maximumAttempts: 3, initialInterval: 50, backoffCoefficient: 1, maximumInterval: 50 };
const stages: StageDraft[] = [
  { id: 'bad', uses: 'probe', needs: [], with: { value: 'bad', inputError: true }, retry },
  { id: 'flaky', uses: 'probe', needs: [], with: { value: 'flaky', failUntilAttempt: 99 }, retry },
  // A kind no worker of the queue has loaded (a plugin missing from TEMPERED_PLUGINS).
  { id: 'filter', uses: 'filter', needs: [], with: { value: 'f' }, retry: { ...retry, maximumAttempts: 2 } },
  // Succeeds on its second attempt: its status read as a first-attempt success.
  { id: 'recovers', uses: 'probe', needs: [], with: { value: 'r', failUntilAttempt: 2 }, retry },
];

const byId = (st: RunStatus, id: string): StageStatus => st.stages.find((s) => s.id === id)!;

describe('a failed stage and its retries', () => {
  let runId: string;
  let final: RunStatus;

  before(async () => {
    const h = await submitRun(
      env.client,
      {
        plan: plannedPipeline('retries', stages, { onFailure: 'finish-independent' }),
        options: { baseDir: env.dir, actor: 'test', noCache: true },
      },
      { taskQueue: TEST_QUEUE },
    );
    runId = h.workflowId;
    final = await waitForRun(env.client, runId);
  });

  it("the workflow's final status keeps the retry state, and the attempts when the limit was reached", () => {
    assert.equal(final.state, 'failed');
    const bad = byId(final, 'bad');
    assert.equal(bad.error?.type, 'InputError');
    assert.equal(bad.error?.retryState, 'NON_RETRYABLE_FAILURE');
    const flaky = byId(final, 'flaky');
    assert.equal(flaky.error?.retryState, 'MAXIMUM_ATTEMPTS_REACHED');
    assert.equal(flaky.attempt, 3);
    const filter = byId(final, 'filter');
    assert.match(filter.error?.message ?? '', /^Activity function filter is not registered on this Worker/);
    assert.equal(filter.error?.retryState, 'MAXIMUM_ATTEMPTS_REACHED');
    assert.equal(filter.attempt, 2);

    assert.deepEqual([byId(final, 'recovers').state, byId(final, 'recovers').attempt], ['succeeded', 2]);
    const text = formatRunStatus(final);
    assert.match(text, /✓ recovers +probe +succeeded +\S+ \(attempt 2\)/);
    assert.match(text, /✗ bad +probe +failed +\S+ \(not retried: input error\) {2}stages\.bad\.with\.value: bad value "bad"/);
    assert.match(text, /✗ flaky +probe +failed +\S+ \(gave up after 3 attempts\) {2}transient failure on attempt 3/);
    assert.match(text, /✗ filter +filter +failed +\S+ \(gave up after 2 attempts\) {2}Activity function filter is not registered/);
    assert.match(text, /hint: the kind 'filter' is not loaded by the worker that took the stage: set TEMPERED_PLUGINS/);
  });

  it('the status rebuilt from the history says the same, with the last attempt from its started event', async () => {
    const events = (await env.client.workflow.getHandle(runId).fetchHistory()).events ?? [];
    const st = statusFromHistory(env.client, runId, final.startedAt, events);
    assert.deepEqual(
      st.stages.map((s) => [s.id, s.state, s.error?.retryState, s.attempt]),
      [
        ['bad', 'failed', 'NON_RETRYABLE_FAILURE', 1],
        ['flaky', 'failed', 'MAXIMUM_ATTEMPTS_REACHED', 3],
        ['filter', 'failed', 'MAXIMUM_ATTEMPTS_REACHED', 2],
        ['recovers', 'succeeded', undefined, 2],
      ],
    );
    const text = formatRunStatus({ ...st, state: 'failed' });
    assert.match(text, /✗ bad .*\(not retried: input error\)/);
    assert.match(text, /✗ flaky .*\(gave up after 3 attempts\)/);

    // What the history holds of earlier attempts (for `tempered logs`): the last attempt's started event,
    // written when it ended, with the one failure before it; no event for the attempts before that.
    const scheduled = events.find((e) => e.activityTaskScheduledEventAttributes?.activityId === 'stage-flaky')!;
    const started = events.filter((e) => String(e.activityTaskStartedEventAttributes?.scheduledEventId) === String(scheduled.eventId));
    assert.equal(started.length, 1);
    assert.equal(started[0]!.activityTaskStartedEventAttributes!.attempt, 3);
    assert.equal(started[0]!.activityTaskStartedEventAttributes!.lastFailure?.message, 'transient failure on attempt 2');
  });

  // `logs` showed only the last attempt's start and the final failure, not why the attempt before failed
  // nor why the retries stopped.
  it('logs says what failed the attempt before the last, and why the retries stopped', async () => {
    const r = await runCli(['logs', runId], { TEMPORAL_ADDRESS: env.server.address, TEMPERED_HOME: env.dir });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /started {2}stage-flaky \(probe on [^)]+\) {2}3 {2}\S+ {2}attempt 2 failed: transient failure on attempt 2\n/);
    assert.match(
      r.stdout,
      /failed {2}stage-flaky \(probe on [^)]+\) {2}transient failure on attempt 3 {2}gave up: maximumAttempts reached\n/,
    );
    assert.match(
      r.stdout,
      /failed {2}stage-bad \(probe on [^)]+\) {2}stages\.bad\.with\.value: bad value "bad" {2}not retried: non-retryable\n/,
    );
  });
});
