import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatSpecErrors } from './format.ts';
import { errorsOf } from './spec-errors.testing.ts';

test('errors print as file:line:col: error: path: message with an indented hint', () => {
  const text =
    'name: p\nstages:\n  ingest:\n    uses: ingest\n    with: { source: a.csv }\n  split:\n    uses: split\n    needs: [splt]\n    with: { table: "${{ stages.ingest.outputs.table }}" }\n';
  const out = formatSpecErrors(errorsOf(text, 'pipelines/x.yaml').slice(0, 1));
  assert.equal(out, "pipelines/x.yaml:8:13: error: stages.split.needs[0]: unknown stage 'splt'\n  hint: stages are: ingest");
});

test('errors without a position or path leave them out', () => {
  const out = formatSpecErrors([
    {
      file: '<command line>',
      line: 0,
      column: 0,
      path: 'params.lr',
      code: 'bad-param-override',
      message: "--param lr must be a number, got 'x'",
    },
    { file: 'p.yaml', line: 1, column: 1, path: '', code: 'empty-file', message: 'the pipeline file is empty' },
  ]);
  assert.equal(
    out,
    "<command line>: error: params.lr: --param lr must be a number, got 'x'\np.yaml:1:1: error: the pipeline file is empty",
  );
  assert.equal(formatSpecErrors([]), '');
});
