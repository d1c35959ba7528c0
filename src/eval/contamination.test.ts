import { test } from 'node:test';
import assert from 'node:assert/strict';
import { inputColumns, SeenInputs } from './contamination.ts';

test("a task's input columns: what the model is asked, not its answer", () => {
  assert.deepEqual(inputColumns('classification'), ['text']);
  assert.deepEqual(inputColumns('pairs'), ['text_a', 'text_b']);
  assert.deepEqual(inputColumns('instruction'), ['prompt']);
});

test("a test row is seen when its input, normalised as dedupe's defaults do, is a training row's", () => {
  const seen = new SeenInputs();
  seen.add(['Free entry in a weekly competition']);
  seen.add(['Straße café']);
  for (const same of [
    'free entry in a weekly competition',
    '  FREE   entry in a\tweekly competition\n',
    'Free entry\u200B in a weekly competition',
    'Ｆｒｅｅ entry in a weekly competition',
    'STRASSE CAFÉ',
  ])
    assert.equal(seen.has([same]), true, JSON.stringify(same));
  for (const other of ['Free entry in a weekly competition!', 'Free entry', 'Strasse cafe']) assert.equal(seen.has([other]), false, other);
  assert.equal(seen.size, 2);
});

test('several input columns are one key, kept apart; a missing value is never seen', () => {
  const seen = new SeenInputs();
  seen.add(['a b', 'c']);
  seen.add([null, 'x']);
  assert.equal(seen.has(['A  b', 'C']), true);
  assert.equal(seen.has(['a', 'b c']), false, 'the column boundary is part of the key');
  assert.equal(seen.has(['c', 'a b']), false);
  assert.equal(seen.has([null, 'x']), false);
  assert.equal(seen.has([undefined, 'x']), false);
  assert.equal(seen.size, 1);
});

test("dedupe's normalisation steps can be switched off", () => {
  const seen = new SeenInputs({ casefold: false });
  seen.add(['Hello world']);
  assert.equal(seen.has(['hello world']), false);
  assert.equal(seen.has(['Hello   world']), true);
});
