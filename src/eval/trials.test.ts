/** compareTrials: the rows `tempered runs --compare` shows, the best of each marked, the run to choose on validation. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compareTrials, type TrialArtifacts, type TrialRun } from './trials.ts';

const run = (runId: string, lr: number, f1: number, loss: number, promoted: boolean): TrialRun => ({
  runId,
  state: 'succeeded',
  params: { lr, seed: 1 },
  startedAt: '2026-01-01T00:00:00Z',
  endedAt: '2026-01-01T00:01:00Z',
  stages: [
    { id: 'ingest', uses: 'ingest', state: 'cached', outputs: { rows: 10 } },
    { id: 'train', uses: 'train', state: 'succeeded', startedAt: '2026-01-01T00:00:00Z', endedAt: '2026-01-01T00:00:30Z', outputs: {} },
    { id: 'evaluate', uses: 'evaluate', state: 'succeeded', outputs: { loss, f1_macro: f1 } },
    { id: 'deploy', uses: 'deploy', state: 'succeeded', outputs: { promoted } },
  ],
});
const artifacts = (val: number[], doc: Record<string, unknown>): TrialArtifacts => ({
  histories: { train: { val_f1_macro: Float64Array.from(val) } },
  metricsDocs: { evaluate: doc },
});

test('trials side by side: validation first, counts the same everywhere left out, ties unmarked, the best on validation named', () => {
  const cmp = compareTrials([
    {
      run: run('a', 0.1, 0.5, 0.9, false),
      artifacts: artifacts([0.2, NaN, 0.6, NaN], { f1_macro: 0.1, exact_match: 0.5, baseline: { f1_macro: 1 } }),
    },
    { run: run('b', 0.2, 0.7, 0.8, true), artifacts: artifacts([0.4, 0.7], { exact_match: 0.5 }) },
    // Its history could not be read here: its validation cell is empty.
    { run: run('c', 0.3, 0.6, 1.2, false), artifacts: { histories: {}, metricsDocs: {} } },
  ]);
  assert.deepEqual(cmp.params, [{ name: 'lr', values: [0.1, 0.2, 0.3] }]);
  const rows = Object.fromEntries(cmp.rows.map((r) => [r.name, r]));
  assert.deepEqual(
    cmp.rows.map((r) => r.name),
    ['train.val_f1_macro', 'evaluate.loss', 'evaluate.f1_macro', 'evaluate.exact_match', 'time.train', 'time.run'],
  );
  // The last validation, not NaN; the output wins over the metrics document's value of the same name.
  assert.deepEqual(rows['train.val_f1_macro'], { name: 'train.val_f1_macro', values: [0.6, 0.7, undefined], best: 1 });
  assert.deepEqual(rows['evaluate.f1_macro']!.values, [0.5, 0.7, 0.6]);
  assert.equal(rows['evaluate.loss']!.best, 1);
  assert.equal(rows['evaluate.exact_match']!.best, undefined);
  assert.deepEqual(rows['time.run']!.values, [60, 60, 60]);
  assert.deepEqual(cmp.flags, [{ name: 'deploy.promoted', values: [false, true, false] }]);
  assert.deepEqual(cmp.bestOnValidation, { metric: 'train.val_f1_macro', run: 1 });
});

test("a train stage's validation is its exported model's: the manifest's scores, else its best step's history row, else the last", () => {
  const history = { step: Int32Array.from([1, 2, 3, 4]), val_loss: Float64Array.from([0.9, 0.5, 0.7, 0.8]) };
  const trial = (exported?: TrialArtifacts['exported']) =>
    compareTrials([
      { run: run('a', 0.1, 0.5, 0.9, false), artifacts: { histories: { train: history }, metricsDocs: {}, exported } },
      { run: run('b', 0.2, 0.5, 0.9, false), artifacts: { histories: {}, metricsDocs: {} } },
    ]).rows.find((r) => r.name === 'train.val_loss')!.values[0];
  assert.equal(trial({ train: { bestStep: 2, validation: { step: 2, loss: 0.25 } } }), 0.25, 'as register records it');
  // A folder exported before manifests kept their scores: early stopping's best step, from the history.
  assert.equal(trial({ train: { bestStep: 2 } }), 0.5);
  assert.equal(trial({ train: {} }), 0.8);
  assert.equal(trial(), 0.8);
});

test('the test rows the scores are over are shown even when every run has the same: 8 rows read otherwise than 800', () => {
  const lm = (runId: string, lr: number): TrialRun => ({
    ...run(runId, lr, 0, 1.6, false),
    stages: [
      { id: 'ingest', uses: 'ingest', state: 'cached', outputs: { rows: 175 } },
      { id: 'evaluate', uses: 'evaluate', state: 'succeeded', outputs: { loss: 1.6 } },
    ],
  });
  const doc = (exact: number) => ({ loss: 1.6, tokens: 384, scored_rows: 8, exact_match: exact, generated: 8 });
  const cmp = compareTrials([
    { run: lm('a', 0.002), artifacts: { histories: {}, metricsDocs: { evaluate: doc(0.25) } } },
    { run: lm('b', 0.008), artifacts: { histories: {}, metricsDocs: { evaluate: doc(0.375) } } },
  ]);
  const rows = Object.fromEntries(cmp.rows.map((r) => [r.name, r]));
  assert.deepEqual(rows['evaluate.scored_rows'], { name: 'evaluate.scored_rows', values: [8, 8] });
  assert.deepEqual(rows['evaluate.generated'], { name: 'evaluate.generated', values: [8, 8] });
  // exact_match is over the rows answered (generated), not those the loss kept (scored_rows: a reply too long for
  // maxLength is left out of the loss only).
  assert.deepEqual(cmp.evaluatedOn, [{ metric: 'evaluate.generated', fewest: 8, most: 8 }]);
  const cut = compareTrials([
    { run: lm('a', 0.002), artifacts: { histories: {}, metricsDocs: { evaluate: { ...doc(0.25), scored_rows: 6 } } } },
    { run: lm('b', 0.008), artifacts: { histories: {}, metricsDocs: { evaluate: { ...doc(0.375), scored_rows: 7 } } } },
  ]);
  assert.deepEqual(cut.evaluatedOn, [{ metric: 'evaluate.generated', fewest: 8, most: 8 }]);
  // Without generation, the loss's rows are what there is.
  const { exact_match: _e, generated: _g, ...lossOnly } = doc(0);
  const loss = compareTrials([
    { run: lm('a', 0.002), artifacts: { histories: {}, metricsDocs: { evaluate: { ...lossOnly, scored_rows: 6 } } } },
    { run: lm('b', 0.008), artifacts: { histories: {}, metricsDocs: { evaluate: lossOnly } } },
  ]);
  assert.deepEqual(loss.evaluatedOn, [{ metric: 'evaluate.scored_rows', fewest: 6, most: 8 }]);
  // Other counts the same everywhere stay out.
  assert.equal(rows['ingest.rows'], undefined);
  assert.equal(rows['evaluate.tokens'], undefined);
});

test("the evaluate reports' sample rows side by side, matched by prompt: each run's answer, the baseline's once", () => {
  const sample = (prompt: string, output: string, exact: boolean) => ({
    prompt,
    reference: `ref ${prompt}`,
    baseline: `base ${prompt}`,
    output,
    exact,
  });
  const cmp = compareTrials([
    {
      run: run('a', 0.1, 0.5, 0.9, false),
      artifacts: { histories: {}, metricsDocs: {}, samples: { evaluate: [sample('q1', 'a1', true), sample('q2', 'a2', false)] } },
    },
    // Another order, and a row the first run's report does not have.
    {
      run: run('b', 0.2, 0.5, 0.9, false),
      artifacts: { histories: {}, metricsDocs: {}, samples: { evaluate: [sample('q3', 'b3', false), sample('q1', 'b1', false)] } },
    },
    { run: run('c', 0.3, 0.5, 0.9, false), artifacts: { histories: {}, metricsDocs: {} } },
  ]);
  assert.deepEqual(cmp.answers, [
    {
      stage: 'evaluate',
      prompt: 'q1',
      reference: 'ref q1',
      baseline: 'base q1',
      outputs: ['a1', 'b1', undefined],
      exact: [true, false, undefined],
    },
    {
      stage: 'evaluate',
      prompt: 'q2',
      reference: 'ref q2',
      baseline: 'base q2',
      outputs: ['a2', undefined, undefined],
      exact: [false, undefined, undefined],
    },
    {
      stage: 'evaluate',
      prompt: 'q3',
      reference: 'ref q3',
      baseline: 'base q3',
      outputs: [undefined, 'b3', undefined],
      exact: [undefined, false, undefined],
    },
  ]);
});

test('a prompt the test table holds twice is two rows side by side, each with its own reference and answers', () => {
  const sample = (reference: string, output: string) => ({ prompt: 'Write a poem.', reference, output, exact: false });
  const samples = (a: string, b: string) => ({
    evaluate: [sample('roses', a), sample('the sea', b), { prompt: 'q2', reference: 'r2', output: 'x' }],
  });
  const cmp = compareTrials([
    { run: run('a', 0.1, 0.5, 0.9, false), artifacts: { histories: {}, metricsDocs: {}, samples: samples('a1', 'a2') } },
    { run: run('b', 0.2, 0.5, 0.9, false), artifacts: { histories: {}, metricsDocs: {}, samples: samples('b1', 'b2') } },
  ]);
  assert.deepEqual(
    cmp.answers.map((a) => [a.prompt, a.reference, a.outputs]),
    [
      ['Write a poem.', 'roses', ['a1', 'b1']],
      ['Write a poem.', 'the sea', ['a2', 'b2']],
      ['q2', 'r2', ['x', 'x']],
    ],
  );
});
