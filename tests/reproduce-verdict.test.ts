/**
 * What `tempered models reproduce` runs and how it judges the rerun (src/audit/reproduce.ts), without a server: the
 * plan less the stages that act on the registry and what needs them, and the verdict's words for the three ways a
 * rerun can end: same bytes, data that diverged at a stage, or training that diverged on the same data (with the
 * threads it was not pinned to as the likely cause).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compareReproduction, modelSource, reproductionPlan, upstreamOf, type RunFacts } from '../src/audit/reproduce.ts';
import { specBody } from '../src/spec/plan.ts';
import { canonicalJson, sha256Hex } from '../src/util/canonical-json.ts';
import { plannedPipeline } from './helpers/plans.ts';

const plan = plannedPipeline(
  'clf',
  [
    { id: 'ingest', uses: 'ingest', needs: [], with: { path: 'd.jsonl' } },
    { id: 'split', uses: 'split', needs: ['ingest'], with: { table: '${{ stages.ingest.outputs.table }}' } },
    { id: 'train', uses: 'train', needs: ['split'], with: { train: '${{ stages.split.outputs.train }}' } },
    { id: 'evaluate', uses: 'evaluate', needs: ['train', 'split'], with: {} },
    { id: 'register', uses: 'register', needs: ['train', 'evaluate'], with: { model: '${{ stages.train.outputs.model }}' } },
    { id: 'deploy', uses: 'deploy', needs: ['register'], with: {} },
    { id: 'notify', uses: 'notify', needs: ['deploy'], with: {} },
  ],
  { triggers: { skipIfUnchanged: true } },
);

test("the rerun plan: the model's stage and what it needs, no run gate, a name and spec hash of its own", () => {
  const { plan: p, dropped } = reproductionPlan(specBody(plan), 'train');
  assert.deepEqual(dropped, ['evaluate', 'register', 'deploy', 'notify']);
  assert.deepEqual(
    p.stages.map((s) => s.id),
    ['ingest', 'split', 'train'],
  );
  // No stage left points at one taken out.
  assert.deepEqual(p.stages.find((s) => s.id === 'train')!.dependents, []);
  assert.deepEqual(p.stages.find((s) => s.id === 'split')!.dependents, ['train']);
  assert.equal(p.triggers, undefined);
  assert.equal(p.name, 'clf-reproduce');
  assert.equal(p.specHash, sha256Hex(canonicalJson(specBody(p))));
  assert.deepEqual(modelSource(plan.stages.find((s) => s.id === 'register')), { stage: 'train', output: 'model' });
  assert.deepEqual(upstreamOf(plan.stages, 'train'), ['ingest', 'split', 'train']);
});

const facts = (runId: string, modelHash: string, split: string, runtime: Record<string, unknown>): RunFacts => ({
  runId,
  modelHash,
  data: { ingest: { dataHash: 'a'.repeat(64), table: 'b'.repeat(64) }, split: { train: split } },
  trainedWith: { device: 'cpu', runtime },
});
const stages = [
  { id: 'ingest', kind: 'ingest' },
  { id: 'split', kind: 'split' },
];
const rt = (threads: number | null, cpus: number) => ({ onnxruntime: '1.30.0', threads, cpus });
const judge = (threadsPinned: boolean, original: RunFacts, rerun: RunFacts) =>
  compareReproduction({ stages, train: { id: 'train', kind: 'train', threadsPinned }, original, rerun });

test('verdicts: same bytes; data diverged at the first stage whose data differs; training diverged, threads unpinned', () => {
  const same = judge(true, facts('r1', 'f'.repeat(64), 'c'.repeat(64), rt(1, 2)), facts('r2', 'f'.repeat(64), 'c'.repeat(64), rt(1, 2)));
  assert.equal(same.reproduced, true);
  assert.equal(same.verdict, `reproduced: same model bytes (sha256 ${'f'.repeat(64)})`);

  const data = judge(true, facts('r1', 'f'.repeat(64), 'c'.repeat(64), rt(1, 2)), facts('r2', 'e'.repeat(64), 'd'.repeat(64), rt(1, 2)));
  assert.equal(data.reproduced, false);
  assert.deepEqual(data.divergedAt, { stage: 'split', kind: 'split', what: 'data' });
  assert.match(
    data.verdict,
    /^NOT reproduced: the data diverged at stage split \(split\): its train hash was c{12}…, the rerun's is d{12}…/,
  );
  assert.deepEqual(
    data.stages.map((s) => s.same),
    [true, false],
  );

  // The same data, other bytes, on a machine with other CPUs and threads left to onnxruntime.
  const unpinned = judge(
    false,
    facts('r1', 'f'.repeat(64), 'c'.repeat(64), rt(null, 16)),
    facts('r2', 'e'.repeat(64), 'c'.repeat(64), rt(null, 2)),
  );
  assert.deepEqual(unpinned.divergedAt, { stage: 'train', kind: 'train', what: 'training' });
  assert.match(unpinned.verdict, /^NOT reproduced: the training diverged: stage train had the same data and made other model bytes/);
  assert.deepEqual(unpinned.trainedWithDiffers, [{ field: 'runtime.cpus', original: 16, rerun: 2 }]);
  assert.match(unpinned.threadsNote!, /does not pin `threads`.*16 cpus.*with 2.*set `threads: N` under stages\.train\.with/);
  // Pinned, the thread count is not the cause: no such note.
  const pinned = judge(true, facts('r1', 'f'.repeat(64), 'c'.repeat(64), rt(4, 16)), facts('r2', 'e'.repeat(64), 'c'.repeat(64), rt(4, 2)));
  assert.equal(pinned.threadsNote, undefined);
});
