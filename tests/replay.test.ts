/**
 * Versioning: histories recorded from earlier versions of `pipelineRun` must replay against the
 * current workflow code without non-determinism errors, so runs in flight survive an upgrade.
 * Behaviour changes go behind `patched()`. Record a new fixture after a deliberate change with
 * `TEMPERED_RECORD_HISTORY=1 node --import tsx --test tests/replay.test.ts`.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import proto from '@temporalio/proto';

const { temporal } = proto;
import { Worker } from '@temporalio/worker';
import { workflowBundle } from '../infra/worker.ts';
import { temporalDataConverter } from '../infra/payload-codec.ts';
import { submitRun, waitForRun } from '../client/runs.ts';
import { plannedPipeline } from './helpers/plans.ts';
import { probeKind } from './helpers/test-stages.ts';
import { startTestEnv, TEST_QUEUE, type TestEnv } from './helpers/temporal-env.ts';

const DIR = fileURLToPath(new URL('./fixtures/histories/', import.meta.url));
const record = process.env.TEMPERED_RECORD_HISTORY === '1';

/** The committed histories, by file name. */
function recordedHistories(): [string, ReturnType<typeof temporal.api.history.v1.History.fromObject>][] {
  const files = existsSync(DIR) ? readdirSync(DIR).filter((f) => f.endsWith('.json')) : [];
  assert.ok(files.length > 0, 'at least one recorded history is committed');
  return files.map((f) => [f, temporal.api.history.v1.History.fromObject(JSON.parse(readFileSync(join(DIR, f), 'utf8')))]);
}

describe('workflow versioning', () => {
  let env: TestEnv | undefined;
  before(async () => {
    if (!record) return;
    env = await startTestEnv(new Map());
    env.kinds.set('probe', probeKind(join(env.dir, 'exec.log')));
    await env.startWorker();
  });
  after(async () => env?.close());

  it('records a history of the current code (only with TEMPERED_RECORD_HISTORY=1)', { skip: !record }, async () => {
    const plan = plannedPipeline(
      'replay',
      [
        { id: 'a', uses: 'probe', needs: [], with: { value: 'a' } },
        { id: 'b', uses: 'probe', needs: ['a'], with: { value: 'b', inputs: ['${{ stages.a.outputs.out }}'] } },
        {
          id: 'c',
          uses: 'probe',
          needs: ['a'],
          with: { value: 'c', failUntilAttempt: 2 },
          retry: { maximumAttempts: 3, initialInterval: 100 },
        },
        { id: 'd', uses: 'probe', needs: ['b', 'c'], with: { value: 'd' } },
      ],
      { concurrency: 2 },
    );
    // A run that fails too: a stage retried to its limit and one that fails with an input error, beside one that
    // succeeds (the failure's retry state is read into the status: that path must replay as well).
    const failing = plannedPipeline(
      'replay-failed',
      [
        { id: 'ok', uses: 'probe', needs: [], with: { value: 'ok' } },
        {
          id: 'flaky',
          uses: 'probe',
          needs: [],
          with: { value: 'f', failUntilAttempt: 9 },
          retry: { maximumAttempts: 2, initialInterval: 100 },
        },
        { id: 'bad', uses: 'probe', needs: ['ok'], with: { value: 'b', inputError: true } },
      ],
      { onFailure: 'finish-independent' },
    );
    const day = new Date().toISOString().slice(0, 10);
    for (const [p, state, name] of [
      [plan, 'succeeded', `pipeline-run-${day}.json`],
      [failing, 'failed', `pipeline-run-failed-${day}.json`],
    ] as const) {
      const h = await submitRun(env!.client, { plan: p, options: { baseDir: env!.dir, actor: 'replay' } }, { taskQueue: TEST_QUEUE });
      assert.equal((await waitForRun(env!.client, h.workflowId)).state, state);
      const history = await env!.client.workflow.getHandle(h.workflowId).fetchHistory();
      // protobufjs's own object form (enums as names, bytes as base64) round-trips without the
      // proto3-JSON helper, which trips over two protobufjs copies in node_modules.
      const History = temporal.api.history.v1.History;
      const json = History.toObject(History.fromObject(history), { longs: String, enums: String, bytes: String });
      writeFileSync(join(DIR, name), JSON.stringify(json, null, 1) + '\n');
    }
  });

  it('replays every recorded history against the current workflow code', async () => {
    const bundle = await workflowBundle();
    for (const [f, history] of recordedHistories()) await Worker.runReplayHistory({ workflowBundle: bundle }, history, f);
  });

  // A worker with TEMPERED_PAYLOAD_KEY runs another bundle, its failure converter inside (infra/worker.ts): the runs in
  // flight when the key is rolled out, recorded in clear, replay on it too, the failed run's failures included.
  it('replays them as a worker with TEMPERED_PAYLOAD_KEY does, with its bundle and data converter', async () => {
    const dataConverter = temporalDataConverter({ TEMPERED_PAYLOAD_KEY: randomBytes(32).toString('base64') });
    assert.ok(dataConverter.failureConverterPath, 'a keyed data converter names no failure converter');
    const bundle = await workflowBundle(dataConverter.failureConverterPath);
    for (const [f, history] of recordedHistories()) await Worker.runReplayHistory({ workflowBundle: bundle, dataConverter }, history, f);
  });
});
