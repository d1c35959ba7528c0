/** judgeRerun: what of each run's stages a rerun is compared on, before compareReproduction gives the verdict. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { PlannedStage, StageOutputInfo } from '../spec/types.ts';
import { judgeRerun } from './reproduce.ts';

const stage = (id: string, uses: string, needs: string[]) => ({ id, uses, needs, with: {}, dependents: [] }) as unknown as PlannedStage;
const plan = {
  stages: [
    stage('ingest', 'ingest', []),
    stage('split', 'split', ['ingest']),
    stage('train', 'train', ['split']),
    stage('evaluate', 'evaluate', ['train', 'split']),
  ],
};
const h = (c: string) => c.repeat(64);
const ref = (c: string) => ({ uri: `sha256:${h(c)}`, sha256: h(c) });
// ingest's kind is known here (its report is json, so not data); split's is not, so every output of it counts.
const declared: Record<string, Record<string, StageOutputInfo>> = {
  ingest: { table: { type: 'table' }, report: { type: 'json' }, dataHash: { type: 'string' } },
};
const judge = (rerunSplit: string, rerunModel: string) =>
  judgeRerun({
    plan,
    trainStage: 'train',
    threadsPinned: true,
    original: {
      runId: 'r1',
      modelHash: h('f'),
      stageHashes: {
        ingest: { table: h('a'), report: h('0'), dataHash: h('d') },
        split: { train: h('b') },
        evaluate: { metrics: h('9') },
      },
      trainedWith: { device: 'cpu', runtime: { threads: 2 } },
    },
    rerun: {
      runId: 'r2',
      modelHash: h(rerunModel),
      outputs: {
        ingest: { table: ref('a'), report: ref('1'), dataHash: h('d'), rows: 5 },
        split: { train: ref(rerunSplit) },
        train: { model: ref('7'), device: 'cpu', runtime: { threads: 2 } },
        evaluate: { metrics: ref('8') },
      },
    },
    declaredOutputs: (kind) => declared[kind],
  });

test("the rerun is compared on the data stages before training: their tables and ingest's dataHash, with what each training ran with", () => {
  const same = judge('b', 'f');
  assert.equal(same.reproduced, true);
  // Ingest's json report and the evaluate stage after training are not the data training read.
  assert.deepEqual(same.original.data, { ingest: { table: h('a'), dataHash: h('d') }, split: { train: h('b') } });
  assert.deepEqual(same.rerun.data, { ingest: { table: h('a'), dataHash: h('d') }, split: { train: h('b') } });
  assert.deepEqual(same.rerun.trainedWith, { device: 'cpu', runtime: { threads: 2 } });
  assert.deepEqual(
    same.stages.map((s) => [s.stage, s.kind, s.same]),
    [
      ['ingest', 'ingest', true],
      ['split', 'split', true],
    ],
  );

  const other = judge('c', 'e');
  assert.deepEqual(other.divergedAt, { stage: 'split', kind: 'split', what: 'data' });
  assert.deepEqual(other.stages[1]!.differs, [{ output: 'train', original: h('b'), rerun: h('c') }]);
});
