/**
 * The run's own checkpoint names as the workflow reads them from its input (workflows/run-checkpoints.ts): a name
 * derived from a schedule's run id fits a folder name and differs run to run; a malformed field is refused by name.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { OWN_CHECKPOINTS } from '../src/stages/own-checkpoints.ts';
import { runCheckpointName, runOptionsRefusal, uncachedCheckpointsOf } from './run-checkpoints.ts';
import type { RunOptions } from './types.ts';

const base: RunOptions = { baseDir: '/p', actor: 'a' };

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
  assert.equal(uncachedCheckpointsOf({ ...base, uncachedCheckpointsFromRunId: true }, ids[0]!), names[0]);
  // The input's own name wins; without the flag, none (runs and schedules made before: the work's folder).
  assert.equal(uncachedCheckpointsOf({ ...base, uncachedCheckpoints: 'x', uncachedCheckpointsFromRunId: true }, ids[0]!), 'x');
  assert.equal(uncachedCheckpointsOf(base, ids[0]!), undefined);
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
