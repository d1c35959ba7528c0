/** `tempered runs --compare`'s table as the terminal shows it (comparisonLines): what others wrote is escaped, the columns still line up. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { comparisonLines, type TrialComparison } from './runs-compare.ts';

test('runs --compare escapes control characters in params, metric names and run ids, and keeps the columns aligned', () => {
  // A --param value is whoever submitted it's; a per-class metric name holds a class label from the data.
  const evil = '\x1b]0;pwned\x07\x9b2J\rx';
  const cmp: TrialComparison = {
    runs: [
      { runId: `run-${evil}`, state: 'succeeded', params: { note: evil } },
      { runId: 'run-b', state: 'succeeded', params: { note: 'plain' } },
    ],
    params: [{ name: 'note', values: [evil, 'plain'] }],
    rows: [
      { name: 'train.val_f1_macro', values: [0.5, 0.75], best: 1 },
      { name: `evaluate.per_class.${evil}.f1`, values: [0.25, undefined] },
    ],
    flags: [],
    bestOnValidation: { metric: 'train.val_f1_macro', run: 0 },
    evaluatedOn: [],
    answers: [{ stage: 'evaluate', prompt: `q ${evil}`, reference: evil, outputs: [evil, undefined], exact: [true, undefined] }],
  };
  const text = comparisonLines(cmp).join('\n');
  assert.doesNotMatch(text, /[\x00-\x09\x0b-\x1f\x7f-\x9f]/, JSON.stringify(text));
  assert.match(text, /params\.note +\\u001b\]0;pwned\\u0007\\u009b2J\\rx +plain/);
  assert.match(text, /best on validation \(train\.val_f1_macro\): #1 run-\\u001b/);
  // Each table row as wide as the header row: measured on the escaped cells.
  const table = text.split('\n').slice(cmp.runs.length + 1, cmp.runs.length + 5);
  assert.equal(new Set(table.map((l) => l.length)).size, 1, table.join('\n'));
});

test('runs --compare says how many test rows the scores are over, and what one row is worth when they are few', () => {
  const cmp = (rows: number[]): TrialComparison => ({
    runs: [
      { runId: 'a', state: 'succeeded', params: { lr: 0.002 } },
      { runId: 'b', state: 'succeeded', params: { lr: 0.008 } },
    ],
    params: [{ name: 'lr', values: [0.002, 0.008] }],
    rows: [
      { name: 'evaluate.exact_match', values: [0.25, 0.375], best: 1 },
      { name: 'evaluate.scored_rows', values: rows },
      { name: 'evaluate.generated', values: rows },
    ],
    flags: [],
    evaluatedOn: [{ metric: 'evaluate.scored_rows', fewest: Math.min(...rows), most: Math.max(...rows) }],
    answers: [],
  });
  const few = comparisonLines(cmp([8, 8])).join('\n');
  assert.match(few, /evaluate\.scored_rows +8 +8/);
  assert.match(few, /note: evaluate's scores are over 8 test rows \(evaluate\.scored_rows\): one row is 0\.1250 of a per-row score/);
  assert.match(comparisonLines(cmp([8, 16])).join('\n'), /over 8–16 test rows/);
  const many = comparisonLines(cmp([400, 400])).join('\n');
  assert.match(many, /^evaluate's scores are over 400 test rows \(evaluate\.scored_rows\)$/m);
  assert.doesNotMatch(many, /one row is/);
});

test("runs --compare shows the evaluate report's sample rows with each run's answer: what the scores' differences are made of", () => {
  const cmp: TrialComparison = {
    runs: [
      { runId: 'a', state: 'succeeded', params: { lr: 0.002 } },
      { runId: 'b', state: 'succeeded', params: { lr: 0.008 } },
    ],
    params: [{ name: 'lr', values: [0.002, 0.008] }],
    rows: [],
    flags: [],
    evaluatedOn: [],
    answers: [
      {
        stage: 'evaluate',
        prompt: 'Find the four smallest perfect numbers.',
        reference: '6, 28, 496, and 8128',
        baseline: 'The smallest perfect numbers are\nindeed',
        outputs: ['6, 28, 496, and 8128', 'x'.repeat(300)],
        exact: [true, false],
      },
    ],
  };
  const text = comparisonLines(cmp).join('\n');
  assert.match(
    text,
    /answers side by side \(the evaluate report's 1 sample rows; = exact match\):\n\[1\] Find the four smallest perfect numbers\.\n/,
  );
  assert.match(
    text,
    /\n {4}reference {2}6, 28, 496, and 8128\n {4}baseline {3}The smallest perfect numbers are ⏎ indeed\n {4}#1 = {7}6, 28, 496, and 8128\n {4}#2 {9}x{159}…$/,
  );
  // Two evaluate stages (in-domain, out-of-domain): each row names its stage, the same prompt in both included.
  const two = comparisonLines({
    ...cmp,
    answers: [cmp.answers[0]!, { ...cmp.answers[0]!, stage: 'evaluate_ood', reference: 'six', outputs: ['six', 'seven'] }],
  }).join('\n');
  assert.match(two, /\n\[1\] \(evaluate\) Find the four smallest perfect numbers\.\n {4}reference {2}6, 28, 496, and 8128\n/);
  assert.match(two, /\n\[2\] \(evaluate_ood\) Find the four smallest perfect numbers\.\n {4}reference {2}six\n/);
});
