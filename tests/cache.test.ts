/**
 * The stage cache through real runs: an identical resubmit runs no stage activity, and changing one
 * config value reruns exactly that stage and its dependents.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import type { ArtifactRef } from '../src/types.ts';
import type { StageKind } from '../src/stages/types.ts';
import { join } from 'node:path';
import { submitRun, waitForRun } from '../client/runs.ts';
import type { PlannedPipeline } from '../src/spec/types.ts';
import { plannedPipeline, type StageDraft } from './helpers/plans.ts';
import { probeKind, type ExecutionRecord } from './helpers/test-stages.ts';
import { startActivityWorker, startTestEnv, TEST_QUEUE, type TestEnv } from './helpers/temporal-env.ts';

let env: TestEnv;
let logFile: string;
let readerAttempts = 0;

const stage = (id: string, needs: string[], value: string, extra: Partial<StageDraft> = {}): StageDraft => ({
  id,
  uses: 'probe',
  needs,
  with: { value, inputs: needs.map((n) => `\${{ stages.${n}.outputs.out }}`) },
  ...extra,
});

function chain(values: Record<string, string>, extra: Record<string, Partial<StageDraft>> = {}): PlannedPipeline {
  const stages = [
    stage('a', [], values.a!, extra.a),
    stage('b', ['a'], values.b!, extra.b),
    stage('c', ['b'], values.c!, extra.c),
    stage('side', ['a'], values.side!, extra.side),
  ];
  return plannedPipeline('cached', stages, { specHash: JSON.stringify(values) });
}

async function run(p: PlannedPipeline, noCache = false) {
  const h = await submitRun(env.client, { plan: p, options: { baseDir: env.dir, actor: 'test', noCache } }, { taskQueue: TEST_QUEUE });
  const status = await waitForRun(env.client, h.workflowId);
  const ran = existsSync(logFile)
    ? readFileSync(logFile, 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as ExecutionRecord)
        .filter((r) => r.runId === h.workflowId)
        .map((r) => r.stageId)
        .sort()
    : [];
  return { status, ran, states: Object.fromEntries(status.stages.map((s) => [s.id, s.state])) };
}

before(async () => {
  env = await startTestEnv(new Map());
  logFile = join(env.dir, 'executions.log');
  env.kinds.set('probe', probeKind(logFile));
  env.kinds.set('reader', {
    kind: 'reader',
    description: 'reads its input artifact',
    codeVersion: '1',
    withSchema: { type: 'object' },
    outputs: {},
    async run(cfg: { input: ArtifactRef }, ctx) {
      readerAttempts++;
      await ctx.store.readJson(cfg.input);
      return {};
    },
  } satisfies StageKind<{ input: ArtifactRef }>);
  await env.startWorker();
});
after(async () => env?.close());

describe('stage cache', () => {
  const base = { a: 'A1', b: 'B1', c: 'C1', side: 'S1' };

  it('runs everything the first time and nothing on an identical resubmit', async () => {
    const first = await run(chain(base));
    assert.deepEqual(first.ran, ['a', 'b', 'c', 'side']);
    const second = await run(chain(base));
    assert.deepEqual(second.ran, [], 'no stage activity ran');
    assert.deepEqual(second.states, { a: 'cached', b: 'cached', c: 'cached', side: 'cached' });
    assert.deepEqual(second.status.stages.find((s) => s.id === 'c')!.outputs, first.status.stages.find((s) => s.id === 'c')!.outputs);
    assert.equal(second.status.stages[0]!.cachedFrom?.runId, first.status.runId);
  });

  it('reruns exactly the changed stage and its dependents', async () => {
    const changed = await run(chain({ ...base, b: 'B2' }));
    assert.deepEqual(changed.ran, ['b', 'c']);
    assert.deepEqual(changed.states, { a: 'cached', b: 'succeeded', c: 'succeeded', side: 'cached' });
  });

  it('--no-cache and per-stage cache: false turn reuse off', async () => {
    const all = await run(chain(base), true);
    assert.deepEqual(all.ran, ['a', 'b', 'c', 'side']);
    const one = await run(chain(base, { side: { cache: false } }));
    assert.deepEqual(one.ran, ['side']);
  });

  it('a cache hit whose output object was damaged is not served: the stage reruns and the object is repaired', async () => {
    const first = await run(chain({ ...base, side: 'S-damage' }));
    const out = first.status.stages.find((s) => s.id === 'side')!.outputs!.out as ArtifactRef;
    const path = env.store.pathOf(out);
    chmodSync(path, 0o644);
    writeFileSync(path, '{"value": "tampered"}');
    const again = await run(chain({ ...base, side: 'S-damage' }));
    assert.deepEqual(again.ran, ['side'], 'only the stage whose output was damaged ran again');
    assert.equal(JSON.parse(readFileSync(env.store.pathOf(out), 'utf8')).value, 'S-damage');
    await env.store.verify(out);
  });

  it('a stage that reads a damaged object fails at once, not retried, and the cache records naming it are evicted', async () => {
    const input = await env.store.putJson({ rows: [1, 2, 3] });
    await env.cache.put({
      key: 'e'.repeat(64),
      kind: 'probe',
      outputs: { out: input },
      producedBy: { runId: 'earlier', stageId: 'x' },
      createdAt: 'now',
    });
    chmodSync(env.store.pathOf(input), 0o644);
    writeFileSync(env.store.pathOf(input), '{"rows": []}');
    readerAttempts = 0;
    const p = plannedPipeline('damaged', [
      { id: 'read', uses: 'reader', needs: [], with: { input }, retry: { maximumAttempts: 3, initialInterval: 100 } },
    ]);
    const res = await run(p, true);
    assert.equal(res.status.state, 'failed');
    const st = res.status.stages.find((s) => s.id === 'read')!;
    assert.equal(st.error?.type, 'IntegrityError', JSON.stringify(st.error));
    assert.equal(readerAttempts, 1, 'retrying cannot fix bad bytes');
    assert.equal(await env.cache.get('e'.repeat(64)), undefined);
    assert.equal(existsSync(join(env.dir, 'cache', 'ee', `${'e'.repeat(64)}.json`)), false);
  });

  it('a --no-cache run reads no stage-cache record, on its own queue or through the lookup of a routed stage: a record it does not reuse is not kept alive by it', async () => {
    const routed = chain({ ...base, side: 'S-no-cache' }, { side: { queue: 'elsewhere' } });
    const elsewhere = await startActivityWorker(env, 'elsewhere');
    const get = env.cache.get;
    const read: string[] = [];
    try {
      assert.equal((await run(routed)).states.side, 'succeeded');
      // The records exist now; a run that reuses nothing must not look at them.
      env.cache.get = async function (this: typeof env.cache, key: string) {
        read.push(key);
        return get.call(this, key);
      } as typeof get;
      const again = await run(routed, true);
      assert.deepEqual(again.ran, ['a', 'b', 'c', 'side']);
      assert.deepEqual(read, [], 'no record was read');
      read.length = 0;
      const reused = await run(routed);
      assert.deepEqual(reused.ran, []);
      assert.equal(read.length, 4, 'a run that reuses reads each record');
    } finally {
      env.cache.get = get;
      await elsewhere.stop();
    }
  });

  it('a stage routed to another task queue is served from the cache with no worker on that queue, and the others look themselves up', async () => {
    const values = { ...base, side: 'S-elsewhere' };
    const routed = chain(values, { side: { queue: 'elsewhere' } });
    const elsewhere = await startActivityWorker(env, 'elsewhere');
    let first;
    try {
      first = await run(routed);
    } finally {
      await elsewhere.stop();
    }
    assert.equal(first.states.side, 'succeeded');
    // No worker polls 'elsewhere' now: a lookup that needed one would wait for ever.
    let timer: NodeJS.Timeout | undefined;
    const second = await Promise.race([
      run(routed),
      new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error('the hit waited for a worker on its queue')), 60_000))),
    ]).finally(() => clearTimeout(timer));
    assert.deepEqual(second.ran, []);
    assert.deepEqual(second.states, { a: 'cached', b: 'cached', c: 'cached', side: 'cached' });
    // The history shows which way each stage was looked up: a local-activity marker for the routed
    // one, a stage activity that returned the recorded outputs for the others.
    const events = (await env.client.workflow.getHandle(second.status.runId).fetchHistory()).events ?? [];
    const activities = events.flatMap((e) =>
      e.activityTaskScheduledEventAttributes ? [e.activityTaskScheduledEventAttributes.activityId] : [],
    );
    assert.deepEqual(activities.sort(), ['stage-a', 'stage-b', 'stage-c']);
    // Local activities: the routed stage's lookup, and the audit record of how the run ended.
    assert.equal(events.filter((e) => e.markerRecordedEventAttributes?.markerName === 'core_local_activity').length, 2);
  });
});
