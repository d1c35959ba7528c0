/**
 * What a resume submits (client/resume-input.ts), which `tempered resume` and the dashboard share: a --no-cache run's
 * resume keeps noCache and lists the stages it may take from the cache, also when the old run's status cannot be read;
 * a schedule's run's resume is given the checkpoint name its run derived from its own id.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { resumeInput } from './resume-input.ts';
import { runCheckpointName } from '../workflows/run-checkpoints.ts';
import type { RunInput, RunStatus, StageStatus } from '../workflows/types.ts';

const plan = { name: 'p', specHash: 'h', stages: [] } as unknown as RunInput['plan'];
const input = (options: Partial<RunInput['options']>): RunInput => ({ plan, options: { baseDir: '/p', actor: 'old', ...options } });
const status = (states: Record<string, StageStatus['state']>) =>
  ({ stages: Object.entries(states).map(([id, state]) => ({ id, state })) }) as unknown as RunStatus;

test('a resume of a --no-cache run whose status cannot be read keeps noCache and takes nothing from the cache but what its input lists', async () => {
  let asked = 0;
  const unreadable = async () => (asked++, undefined);
  const first = await resumeInput('r1', input({ noCache: true, ownCheckpoints: 'own-1' }), { actor: 'me' }, unreadable);
  assert.equal(first.options.noCache, true);
  assert.deepEqual(first.options.cachedStages, []);
  assert.equal(first.options.ownCheckpoints, 'own-1');
  assert.equal(first.options.resumeOf, 'r1');
  assert.equal(first.options.actor, 'me');
  // A resume of that resume keeps what the runs before it finished.
  const again = await resumeInput(
    'r2',
    input({ noCache: true, ownCheckpoints: 'own-1', cachedStages: ['ingest'] }),
    { actor: 'me' },
    unreadable,
  );
  assert.deepEqual(again.options.cachedStages, ['ingest']);
  assert.equal(asked, 2, 'the status is read once a resume');
});

test('a resume of a --no-cache run lists what it and the runs before it finished; one of a cached run asks no status', async () => {
  const read = async () => status({ ingest: 'cached', split: 'succeeded', train: 'failed', evaluate: 'cancelled' });
  const next = await resumeInput('r2', input({ noCache: true, ownCheckpoints: 'own-1', cachedStages: ['dedupe'] }), { actor: 'me' }, read);
  assert.deepEqual([...next.options.cachedStages!].sort(), ['dedupe', 'ingest', 'split']);
  const plain = await resumeInput('r3', input({ uncachedCheckpoints: 'u-1' }), { actor: 'me' }, () => assert.fail('read a status'));
  assert.equal(plain.options.noCache, false);
  assert.equal(plain.options.uncachedCheckpoints, 'u-1');
  assert.equal(plain.options.cachedStages, undefined);
});

test("a resume of a schedule's run is given the checkpoint name that run derived from its id, and derives none of its own", async () => {
  const old = 'nightly-2026-12-08T03:00:00Z';
  const next = await resumeInput(old, input({ scheduleId: 'nightly', uncachedCheckpointsFromRunId: true }), { actor: 'me' }, async () =>
    assert.fail('read a status'),
  );
  assert.equal(next.options.uncachedCheckpoints, runCheckpointName(old));
  assert.equal(next.options.uncachedCheckpointsFromRunId, undefined);
  // A resume of that resume keeps the name.
  const again = await resumeInput('nightly-r1', next, { actor: 'me' }, async () => assert.fail('read a status'));
  assert.equal(again.options.uncachedCheckpoints, runCheckpointName(old));
});

test('a resume of a run of a schedule made before the flag is given the name that run derived; none without a `cache: false` training', async () => {
  const old = 'nightly-2026-12-08T03:00:00Z';
  const never = async () => assert.fail('read a status');
  const uncached = { ...plan, stages: [{ id: 'train', uses: 'train', cache: false }] } as unknown as RunInput['plan'];
  const next = await resumeInput(old, { plan: uncached, options: input({ scheduleId: 'nightly' }).options }, { actor: 'me' }, never);
  assert.equal(next.options.uncachedCheckpoints, runCheckpointName(old));
  assert.equal(next.options.scheduleId, 'nightly', "the resume stays the schedule's");
  const cached = await resumeInput(old, input({ scheduleId: 'nightly' }), { actor: 'me' }, never);
  assert.equal(cached.options.uncachedCheckpoints, undefined);
});
