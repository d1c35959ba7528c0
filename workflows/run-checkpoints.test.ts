/**
 * workflows/run-checkpoints.ts: a malformed run option is refused by its own name, by the stages that read it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runOptionsRefusal } from './run-checkpoints.ts';
import type { RunOptions } from './types.ts';

const base: RunOptions = { baseDir: '/p', actor: 'a' };

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
