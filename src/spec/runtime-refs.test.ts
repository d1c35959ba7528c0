import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { findRefs, isWholeRef, listStageRefs, parseRefExpression, resolveStageRefs, StageRefError } from './runtime-refs.ts';

const table = { uri: 'artifact://sha256/ab', sha256: 'ab', bytes: 10, mediaType: 'application/vnd.apache.arrow.file', rows: 3 };
const outputs = { split: { train: table, rows: 3, ok: true, note: 'fine' }, train: { loss: 0.25 } };

describe('resolveStageRefs', () => {
  test('a whole-string reference becomes the raw output value', () => {
    assert.deepEqual(
      resolveStageRefs(
        { data: '${{ stages.split.outputs.train }}', n: '${{stages.split.outputs.rows}}', ok: '${{ stages.split.outputs.ok }}' },
        outputs,
      ),
      { data: table, n: 3, ok: true },
    );
  });

  test('embedded references are stringified, objects as JSON', () => {
    const r = resolveStageRefs(
      { run: 'loss=${{ stages.train.outputs.loss }}, rows=${{ stages.split.outputs.rows }}', t: 'x ${{ stages.split.outputs.train }}' },
      outputs,
    ) as Record<string, string>;
    assert.equal(r.run, 'loss=0.25, rows=3');
    assert.equal(r.t, `x ${JSON.stringify(table)}`);
  });

  test('nested arrays and objects are walked; other values and params pass through', () => {
    const input = { a: [1, { b: ['${{ stages.split.outputs.note }}', null] }], p: '${{ params.lr }}', k: false };
    const before = structuredClone(input);
    assert.deepEqual(resolveStageRefs(input, outputs), { a: [1, { b: ['fine', null] }], p: '${{ params.lr }}', k: false });
    assert.deepEqual(input, before, 'the input is not modified');
  });

  test('a missing output or stage throws StageRefError naming the reference and field', () => {
    assert.throws(
      () => resolveStageRefs({ x: { y: '${{ stages.split.outputs.test }}' } }, outputs),
      (e: unknown) => {
        assert.ok(e instanceof StageRefError);
        assert.equal(
          e.message,
          "${{ stages.split.outputs.test }} (in with.x.y): stage 'split' has no output 'test'; it produced: train, rows, ok, note",
        );
        return true;
      },
    );
    assert.throws(() => resolveStageRefs('${{ stages.eval.outputs.x }}', outputs), /stage 'eval' has not produced outputs/);
    // Prototype keys are not outputs.
    assert.throws(() => resolveStageRefs('${{ stages.split.outputs.constructor }}', outputs), StageRefError);
  });
});

describe('finding references', () => {
  test('listStageRefs gives stage, output, path and whether the string is only the reference', () => {
    assert.deepEqual(
      listStageRefs({ data: '${{ stages.split.outputs.train }}', tags: ['a-${{ stages.train.outputs.loss }}', '${{ params.x }}'] }),
      [
        { stage: 'split', output: 'train', path: ['data'], whole: true },
        { stage: 'train', output: 'loss', path: ['tags', 0], whole: false },
      ],
    );
  });

  test('expressions parse into params and stage outputs; anything else is not a reference', () => {
    assert.deepEqual(parseRefExpression(' params.lr '), { kind: 'param', name: 'lr' });
    assert.deepEqual(parseRefExpression('stages.split-1.outputs.train_x'), { kind: 'stage', stage: 'split-1', output: 'train_x' });
    for (const bad of ['param.lr', 'stages.a.output.b', 'stages.a.outputs', 'params.', 'env.HOME', 'params.a.b'])
      assert.equal(parseRefExpression(bad), undefined, bad);
  });

  test('findRefs reports offsets and an unterminated opening', () => {
    assert.deepEqual(findRefs('a ${{ params.x }} b ${{ oops'), [
      { raw: '${{ params.x }}', index: 2, target: { kind: 'param', name: 'x' } },
      { raw: '${{ oops', index: 20 },
    ]);
    assert.equal(isWholeRef('${{ params.x }}'), true);
    assert.equal(isWholeRef(' ${{ params.x }}'), false);
    assert.equal(isWholeRef('${{ params.x }}${{ params.y }}'), false);
    assert.equal(isWholeRef('${{ nope }}'), false);
  });
});

test('runtime-refs.ts imports nothing, so it can run in the workflow sandbox', () => {
  const source = readFileSync(new URL('./runtime-refs.ts', import.meta.url), 'utf8');
  assert.doesNotMatch(source, /^\s*(import|export\s+[^;]*\bfrom\b)/m);
  assert.doesNotMatch(source, /\brequire\s*\(|\bimport\s*\(/);
});

test('resolveStageRefs keeps a key named __proto__ from the file as an own key', () => {
  const withConfig = JSON.parse('{"__proto__": {"polluted": true}, "a": 1}') as unknown;
  const out = resolveStageRefs(withConfig, {}) as Record<string, unknown>;
  assert.deepEqual(Object.keys(out), ['__proto__', 'a']);
  assert.equal(Object.getPrototypeOf(out), Object.prototype);
  assert.equal((out as { polluted?: unknown }).polluted, undefined);
});
