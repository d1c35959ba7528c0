/**
 * The run's own checkpoint names as the workflow reads them from its input (workflows/run-checkpoints.ts): a name
 * derived from a schedule's run id fits a folder name and differs run to run, also for a schedule made before its input
 * said so; a malformed field is refused by name.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { OWN_CHECKPOINTS } from '../src/stages/own-checkpoints.ts';
import { checkpointNameFromRunId, runCheckpointName, runOptionsRefusal, uncachedCheckpointsOf } from './run-checkpoints.ts';
import type { RunInput, RunOptions } from './types.ts';

const base: RunOptions = { baseDir: '/p', actor: 'a' };

/** A run of a plan with a train stage, `cache: false` unless `cached`. */
const run = (options: RunOptions, cached = false): RunInput =>
  ({ plan: { name: 'p', specHash: 'h', stages: [{ id: 'train', uses: 'train', cache: cached }] }, options }) as unknown as RunInput;

test("a name derived from a run id is a valid own checkpoint name, the same for the same id, another for each schedule's run", () => {
  const ids = [
    'nightly-2026-12-08T03:00:00Z',
    'nightly-2026-12-09T03:00:00Z',
    `${'a-very-long-schedule-name-'.repeat(4)}-2026-12-08T03:00:00Z`,
    `${'a-very-long-schedule-name-'.repeat(4)}-2026-12-09T03:00:00Z`,
    'ünïcode/.. name',
    '',
  ];
  const names = ids.map(runCheckpointName);
  for (const n of names) assert.match(n, OWN_CHECKPOINTS);
  assert.equal(new Set(names).size, ids.length, names.join(' '));
  assert.equal(runCheckpointName(ids[0]!), names[0]);
  const of = (options: RunOptions) => uncachedCheckpointsOf(run(options), ids[0]!, () => assert.fail('asked the patch'));
  assert.equal(of({ ...base, uncachedCheckpointsFromRunId: true }), names[0]);
  // The input's own name wins; without the flag, none (a run submitted by an older client: the work's folder).
  assert.equal(of({ ...base, uncachedCheckpoints: 'x', uncachedCheckpointsFromRunId: true }), 'x');
  assert.equal(of(base), undefined);
});

test("a run of a schedule made before the flag names its folder from its run id, where the workflow's patch allows", () => {
  const old: RunOptions = { ...base, scheduleId: 'nightly' };
  const id = 'nightly-2026-12-08T03:00:00Z';
  const asked: string[] = [];
  const derive = (yes: boolean) => () => (asked.push(id), yes);
  // Started since the workers were upgraded: a folder of its own, as with the flag.
  assert.equal(uncachedCheckpointsOf(run(old), id, derive(true)), runCheckpointName(id));
  // In flight when they were (its history replays the patch as absent): the work's folder, where it began.
  assert.equal(uncachedCheckpointsOf(run(old), id, derive(false)), undefined);
  assert.equal(asked.length, 2);
  // Not asked (so no patch marker in their histories): a resume (its client names the folder), a run with a name of
  // its own, a plan whose trainings all use the cache, a run no schedule started.
  const never = () => assert.fail('asked the patch');
  assert.equal(uncachedCheckpointsOf(run({ ...old, resumeOf: 'nightly-2026-12-07T03:00:00Z' }), id, never), undefined);
  assert.equal(uncachedCheckpointsOf(run({ ...old, uncachedCheckpoints: 'u-1' }), id, never), 'u-1');
  assert.equal(uncachedCheckpointsOf(run({ ...old, ownCheckpoints: 'o-1' }), id, never), undefined);
  assert.equal(uncachedCheckpointsOf(run(old, true), id, never), undefined);
  assert.equal(uncachedCheckpointsOf(run(base), id, never), undefined);
  assert.equal(checkpointNameFromRunId(run(old)), 'schedule');
  assert.equal(checkpointNameFromRunId(run({ ...old, uncachedCheckpointsFromRunId: true })), 'flag');
});

test('a malformed uncachedCheckpoints or cachedStages is refused naming its own field, only for the stages that read it', () => {
  const bad = { ...base, uncachedCheckpoints: 'x/../../escape' };
  assert.match(runOptionsRefusal(bad, { cache: false })!.message, /^RunOptions\.uncachedCheckpoints: "x\/\.\.\/\.\.\/escape"/);
  assert.equal(runOptionsRefusal(bad, { cache: true }), undefined);
  assert.equal(runOptionsRefusal({ ...bad, ownCheckpoints: 'own' }, { cache: false }), undefined, 'ownCheckpoints is the one read');
  assert.ok(runOptionsRefusal({ ...base, uncachedCheckpoints: 7 as unknown as string }, { cache: false }));
  assert.ok(runOptionsRefusal({ ...base, uncachedCheckpoints: '' }, { cache: false }));
  assert.equal(runOptionsRefusal({ ...base, uncachedCheckpoints: 'run-1_ab' }, { cache: false }), undefined);

  const listed = (v: unknown) => ({ ...base, noCache: true, cachedStages: v as string[] });
  assert.match(
    runOptionsRefusal(listed('train'), { cache: true })!.message,
    /^RunOptions\.cachedStages: "train" is not a list of stage ids/,
  );
  assert.ok(runOptionsRefusal(listed(['ingest', 3]), { cache: true }));
  assert.ok(runOptionsRefusal(listed({ length: 1 }), { cache: true }));
  assert.equal(runOptionsRefusal(listed(['ingest']), { cache: true }), undefined);
  assert.equal(runOptionsRefusal({ ...listed('train'), noCache: false }, { cache: true }), undefined, 'read only with noCache');
});
