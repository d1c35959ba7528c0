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
  };
  const text = comparisonLines(cmp).join('\n');
  assert.doesNotMatch(text, /[\x00-\x09\x0b-\x1f\x7f-\x9f]/, JSON.stringify(text));
  assert.match(text, /params\.note +\\u001b\]0;pwned\\u0007\\u009b2J\\rx +plain/);
  assert.match(text, /best on validation \(train\.val_f1_macro\): #1 run-\\u001b/);
  // Each table row as wide as the header row: measured on the escaped cells.
  const table = text.split('\n').slice(cmp.runs.length + 1, cmp.runs.length + 5);
  assert.equal(new Set(table.map((l) => l.length)).size, 1, table.join('\n'));
});
