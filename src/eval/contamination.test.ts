import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LshIndex } from '../data/minhash.ts';
import { inputColumns, NEAR_COMPARISONS, SeenInputs } from './contamination.ts';

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

// A retrain on new data: a rephrased copy of a training row was scored as unseen, which flatters production.
test("a near duplicate of a training input (dedupe's defaults: word 3-shingles, Jaccard ≥ 0.8) is seen, as near", () => {
  const long = 'Congratulations you have won a free ticket to the Bahamas, call now to claim your prize before it expires tonight';
  const seen = new SeenInputs();
  seen.add([long]);
  seen.add(['Are we still meeting for lunch tomorrow at noon near the station']);
  assert.equal(seen.seenAs([long.toUpperCase()]), 'exact');
  const oneWordChanged = long.replace('tonight', 'tomorrow');
  assert.equal(seen.seenAs([oneWordChanged]), 'near');
  assert.equal(seen.has([oneWordChanged]), true);
  for (const other of [
    'Congratulations you have won a free ticket, call now',
    'Are we still meeting for dinner tonight at eight near the old station',
    'something else entirely',
    '',
  ])
    assert.equal(seen.seenAs([other]), undefined, other);
  assert.deepEqual(seen.nearSettings && [seen.nearSettings.shingle, seen.nearSettings.size, seen.nearSettings.threshold], ['word', 3, 0.8]);
  const exactOnly = new SeenInputs({}, null);
  exactOnly.add([long]);
  assert.equal(exactOnly.seenAs([oneWordChanged]), undefined, 'near duplicates off');
  assert.equal(exactOnly.nearSettings, null);
});

test('near duplicates are found among many training rows, and the same inputs give the same answers', () => {
  // Each row's words carry its number: a probe is near row i only when built from row i's words (one word added).
  const words = (i: number) => Array.from({ length: 14 }, (_, j) => `w${(i * 7 + j * j * 13) % 50}r${i}`).join(' ');
  const build = () => {
    const seen = new SeenInputs();
    for (let i = 0; i < 2000; i++) seen.add([words(i)]);
    return seen;
  };
  const a = build();
  const probes = Array.from({ length: 200 }, (_, i) => (i % 2 ? `${words(i * 9)} extra` : `${words(5000 + i)}`));
  const answers = probes.map((p) => a.seenAs([p]));
  for (let i = 0; i < probes.length; i++) assert.equal(answers[i], i % 2 ? 'near' : undefined, probes[i]);
  const b = build();
  assert.deepEqual(
    probes.map((p) => b.seenAs([p])),
    answers,
  );
});

// One 25-word template filled with one word each: training rows alike enough to share LSH buckets. Looked up in full,
// each test row cost a comparison with every training row (34 ms a row against 200,000 of them).
test('rows alike enough to share buckets do not make a check cost a comparison with each of them', () => {
  const template = Array.from({ length: 25 }, (_, j) => `word${j}`);
  const seen = new SeenInputs();
  const n = 3000;
  for (let i = 0; i < n; i++) seen.add([[...template, `extra${i}`].join(' ')]);
  const probes = 300;
  const answers = [];
  for (let i = 0; i < probes; i++) {
    const changed = [...template];
    changed[i % 25] = `other${i}`;
    answers.push(seen.seenAs([[...changed, `extra${i}`].join(' ')]));
  }
  assert.ok(seen.nearComparisons <= NEAR_COMPARISONS * (n + probes), `${seen.nearComparisons} comparisons`);
  // The training rows are near duplicates of one another: most stand for each other and are not indexed again.
  assert.ok(seen.nearComparisons < 20 * (n + probes), `${seen.nearComparisons} comparisons for ${n + probes} rows`);
  assert.ok(
    answers.every((a) => a === undefined || a === 'near'),
    'a changed template word leaves a row near or not, never exact',
  );
  assert.equal(seen.nearChecksCut, 0);
});

test('LSH find asks about each bucket-mate once, and says when its budget ran out before a match', () => {
  const numPerm = 8;
  const lsh = new LshIndex(4, 2, numPerm);
  // Ten identical signatures share every bucket; the eleventh slot is the one looked up.
  const sigs = new Uint16Array(numPerm * 11).fill(7);
  for (let id = 0; id < 10; id++) lsh.addUnlessRepresented(sigs, id, () => false, 100);
  const asked: number[] = [];
  assert.equal(
    lsh.find(sigs, 10, (o) => (asked.push(o), false), 100),
    'none',
  );
  assert.deepEqual(
    [...asked].sort((a, b) => a - b),
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    'each once, though it is in all 4 buckets',
  );
  assert.equal(
    lsh.find(sigs, 10, () => false, 3),
    'cut',
  );
  assert.equal(
    lsh.find(sigs, 10, (o) => o === 2, 100),
    'found',
  );
  // A row that one already indexed stands for in every bucket is not indexed again.
  assert.equal(
    lsh.addUnlessRepresented(sigs, 10, () => true, 100),
    false,
  );
});
