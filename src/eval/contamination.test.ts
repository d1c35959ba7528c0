import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { datasetsDir } from '../data/datasets-dir.ts';
import { LshIndex } from '../data/minhash.ts';
import { isTemplateError, parseTemplate } from '../data/prompt-template.ts';
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
  const seen = new SeenInputs();
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

test("under a prompt template, only the inputs are compared: SST-2's test reviews against its training reviews", () => {
  const template = 'Is the sentiment of this movie review positive or negative? Answer with one word.\n\n{text}';
  const parsed = parseTemplate(template);
  assert.ok(!isTemplateError(parsed));
  const read = (f: string) =>
    readFileSync(join(datasetsDir(), 'sst2', f), 'utf8')
      .split('\n')
      .filter((l) => l.trim())
      .map((l) => (JSON.parse(l) as { text: string }).text);
  const train = read('train.jsonl'),
    test = [...read('validation.jsonl'), ...read('test.jsonl')];
  const prompt = (s: string) => template.replace('{text}', s);
  /** The test rows seen as near duplicates: by the reviews alone, by the prompts, by the prompts without the template. */
  const near = (seen: SeenInputs, wrap: (s: string) => string) => {
    for (const s of train) seen.add([wrap(s)]);
    return test.filter((s) => seen.seenAs([wrap(s)]) === 'near').length;
  };
  const reviews = near(new SeenInputs(), (s) => s);
  const asStored = near(new SeenInputs(), prompt);
  // The training table's template and the test table's: the same template, read from both.
  const withTemplate = near(new SeenInputs(undefined, undefined, [[parsed], [parsed]]), prompt);
  assert.equal(withTemplate, reviews);
  assert.ok(asStored > reviews, `as stored ${asStored} near matches, the reviews alone ${reviews}`);
});
