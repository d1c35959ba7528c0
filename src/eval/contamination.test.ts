import { test } from 'node:test';
import assert from 'node:assert/strict';
import { resolveNear } from '../data/dedupe-config.ts';
import { LshIndex, shingleHashes } from '../data/minhash.ts';
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
  assert.equal(seen.lastNearRow, undefined);
  const oneWordChanged = long.replace('tonight', 'tomorrow');
  assert.equal(seen.seenAs([oneWordChanged]), 'near');
  assert.equal(seen.lastNearRow, 0, 'the training row it was found near');
  const third =
    'The quarterly report shows revenue grew in every region while costs stayed flat, and the board expects the same trend to continue through the next two quarters of the year';
  seen.add([third]);
  assert.equal(seen.seenAs([`${third} indeed`]), 'near');
  assert.equal(seen.lastNearRow, 2);
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

// Rows alike enough to share LSH buckets but not to match (30 words in common, 10 of their own): a lookup asked every
// row of its buckets (34 ms a test row against 200,000 such rows). The budget bounds it; the buckets are walked in turn,
// so a long bucket of rows that do not match does not use it up before the short one holding the real match.
test('near duplicates among rows that share buckets without matching: found within the comparison budget', () => {
  let x = 12345;
  const next = () => (x = (Math.imul(x, 1103515245) + 12345) >>> 0);
  const common = Array.from({ length: 30 }, (_, j) => `common${j}`).join(' ');
  const rows: string[][] = [];
  // The 30 common words are in every row: a template, which the check leaves out by default, and then no two of these
  // rows share a bucket. What is tested here is the budget of a check that compares whole rows (template off, or rows
  // alike without a template, such as two templates of half the rows each).
  const seen = new SeenInputs({}, resolveNear({ template: false }));
  const n = 20_000;
  for (let i = 0; i < n; i++) {
    rows.push(Array.from({ length: 10 }, () => `w${next() % 50_000}`));
    seen.add([`${common} ${rows[i]!.join(' ')}`]);
  }
  const indexing = seen.nearComparisons;
  assert.equal(indexing, 0, 'indexing asks nothing of the rows already indexed');
  // Each probe is a training row with one of its own words changed: Jaccard 35/41 ≈ 0.85, a near duplicate.
  const probes = 500;
  let near = 0;
  for (let p = 0; p < probes; p++) {
    const words = [...rows[(p * 7919) % n]!];
    words[p % 10] = `changed${p}`;
    if (seen.seenAs([`${common} ${words.join(' ')}`]) === 'near') near++;
  }
  assert.ok(seen.nearComparisons <= NEAR_COMPARISONS * probes, `${seen.nearComparisons} comparisons`);
  // MinHash's estimate of 0.85 falls under 0.8 for about 4 % of pairs (128 permutations): that many are missed with or
  // without a budget. Walking one bucket to its end first found 1,816 of 2,000 on such data (a reviewer's count).
  assert.ok(near >= 0.94 * probes, `${near} of ${probes} near duplicates found, ${seen.nearChecksCut} checks cut`);
  // Rows that share the 30 words only are not near: none is reported.
  let strangers = 0;
  for (let p = 0; p < 200; p++) {
    if (seen.seenAs([`${common} ${Array.from({ length: 10 }, () => `v${next() % 50_000}`).join(' ')}`]) !== undefined) strangers++;
  }
  assert.equal(strangers, 0);
});

test('LSH find asks about each bucket-mate once, walks the buckets in turn, and says when its budget ran out', () => {
  const numPerm = 8;
  const lsh = new LshIndex(4, 2, numPerm);
  // Ten identical signatures share every bucket; the last slot is the one looked up.
  const sigs = new Uint16Array(numPerm * 12).fill(7);
  for (let id = 0; id < 10; id++) lsh.add(sigs, id);
  const asked: number[] = [];
  assert.equal(
    lsh.find(sigs, 11, (o) => (asked.push(o), false), 100),
    'none',
  );
  assert.deepEqual(
    [...asked].sort((a, b) => a - b),
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    'each once, though it is in all 4 buckets',
  );
  assert.equal(
    lsh.find(sigs, 11, () => false, 3),
    'cut',
  );
  assert.equal(
    lsh.find(sigs, 11, (o) => o === 2, 100),
    'found',
  );
  // Row 10 shares only band 3 with the lookup (its other bands differ): asked second, after one id of band 0, not
  // after all ten of bands 0, 1 and 2.
  sigs.fill(9, 10 * numPerm, 10 * numPerm + 6);
  lsh.add(sigs, 10);
  const order: number[] = [];
  assert.equal(
    lsh.find(sigs, 11, (o) => (order.push(o), o === 10), 100),
    'found',
  );
  assert.ok(order.length <= 4, `asked ${order.join(', ')} before row 10`);
});

// ---- a prompt template around the inputs: the training table's template shingles are left out on both sides ----

const PREFIX =
  'Is the sentiment of this movie review positive or negative? Read the review below and weigh what its writer thinks of the film as a whole. Review:';
const render = (input: string) => `${PREFIX}\n\n${input}`;
/** PREFIX's own word 3-shingles (25): the template, with any shingle the inputs add to it in every row. */
const PREFIX_SHINGLES = new Set(shingleHashes(PREFIX.toLowerCase(), 'word', 3)).size;
const longInput = (i: number) => Array.from({ length: 40 }, (_, j) => `r${i}w${(j * 31 + i) % 97}`).join(' ') + ' .';

/** Training prompts: one template around short, different inputs; long inputs at rows 7, 1500 and 2200. */
function training(rows: number): string[] {
  return Array.from({ length: rows }, (_, i) =>
    render(i === 7 || i === 1500 || i === 2200 ? longInput(i) : `review ${i} was cool ${['.', '!', '?'][i % 3]}`),
  );
}

test('a template around the inputs: a different short input is not seen, a near duplicate of an input is', () => {
  // 2,500 training rows learn the template while they are added (its sample is 2,000 rows); 300 learn it at the first
  // look-up. Either way the rows sampled are indexed afterwards under their own row numbers.
  for (const n of [2500, 300]) {
    const build = (near = resolveNear(undefined)) => {
      const seen = new SeenInputs({}, near);
      for (const p of training(n)) seen.add([p]);
      return seen;
    };
    const seen = build();
    // Every input begins with `review`: `whole. review: review` is in every row, and is the template's too.
    const template = PREFIX_SHINGLES + 1;
    assert.equal(seen.templateShingles, n >= 2000 ? template : null, 'known once the sample is full');
    const probes = [
      render('review 99999 was horrible .'), // a new short input: not seen
      render('horrible'),
      render(''),
      render(`review ${n - 1} was cool ${['.', '!', '?'][(n - 1) % 3]}`), // a training input: exact
      render(longInput(7).replace(`r7w${(5 * 31 + 7) % 97} `, 'changed ')), // one word of 41 changed: near row 7
      render(longInput(1500).replace(/ \.$/, ' !')), // re-punctuated: near row 1500 (when there is one)
      render(longInput(2200).replace(`r2200w${(5 * 31 + 2200) % 97} `, 'changed ')),
    ];
    const answers = probes.map((p) => [seen.seenAs([p]), seen.lastNearRow]);
    assert.equal(seen.templateShingles, template);
    assert.deepEqual(answers, [
      [undefined, undefined],
      [undefined, undefined],
      [undefined, undefined],
      ['exact', undefined],
      ['near', 7],
      n > 1500 ? ['near', 1500] : [undefined, undefined],
      n > 2200 ? ['near', 2200] : [undefined, undefined],
    ]);
    // The same rows give the same answers.
    const again = build();
    assert.deepEqual(
      probes.map((p) => [again.seenAs([p]), again.lastNearRow]),
      answers,
    );
    // Whole rows compared (template off, as the check was before): every short input in the template passed for seen.
    const whole = build(resolveNear({ template: false }));
    assert.equal(whole.templateShingles, 0);
    assert.equal(whole.seenAs([probes[0]!]), 'near');
    assert.equal(whole.seenAs([probes[1]!]), 'near');
  }
});

test('template learning: a row that is all template is seen only as itself; a small training table has no template', () => {
  const seen = new SeenInputs();
  for (let i = 0; i < 100; i++) seen.add([render(`input number ${i}`)]);
  seen.add([render('')]); // the template alone: nothing of its own to compare
  assert.equal(seen.seenAs([render('')]), 'exact');
  assert.equal(seen.seenAs([render('input number 100')]), undefined);
  assert.equal(seen.templateShingles, PREFIX_SHINGLES + 2); // and `whole. review: input`, `review: input number`
  const few = new SeenInputs();
  for (let i = 0; i < 40; i++) few.add([render(`input number ${i}`)]);
  assert.equal(few.seenAs([render('input number 100')]), 'near', 'under 50 rows, whole rows are compared, as before');
  assert.equal(few.templateShingles, 0);
  assert.equal(new SeenInputs({}, null).templateShingles, null);
});
