// Generative scores: ROUGE-L and chrF against the values rouge-score 0.1.2 and sacrebleu 2.6.0 computed for the same
// texts (bench/fixtures/make_generative_metrics_fixture.py), and the exact-match normalisation and extractors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import {
  answerNormalizer,
  checkAnswerNormalization,
  corpusChrf,
  exactMatch,
  generativeScores,
  lcsLength,
  repeatFinder,
  rougeL,
  sentenceChrf,
  type AnswerNormalization,
} from './generative.ts';
import { evaluateGate, GateError } from './gates.ts';
import { flattenMetrics, unflattenMetrics } from '../registry/registry.ts';

interface Fixture {
  pairs: { prediction: string; reference: string; rougeL: { precision: number; recall: number; fmeasure: number }; chrf: number }[];
  corpora: { indices: number[]; chrf: number; rougeL_mean_f: number }[];
}
const fx = JSON.parse(readFileSync(new URL('./fixtures/generative-metrics.json', import.meta.url), 'utf8')) as Fixture;

const close = (a: number, b: number, what: string) =>
  assert.ok(Math.abs(a - b) <= 1e-9 * Math.max(1, Math.abs(b)), `${what}: ${a} vs ${b}`);

test('ROUGE-L precision, recall and F-measure equal rouge-score on every fixture pair', () => {
  assert.ok(fx.pairs.length >= 50);
  for (const p of fx.pairs) {
    const s = rougeL(p.prediction, p.reference);
    const what = JSON.stringify([p.prediction.slice(0, 40), p.reference.slice(0, 40)]);
    close(s.precision, p.rougeL.precision, `precision ${what}`);
    close(s.recall, p.rougeL.recall, `recall ${what}`);
    close(s.fmeasure, p.rougeL.fmeasure, `fmeasure ${what}`);
  }
});

test('sentence chrF equals sacrebleu on every fixture pair (Unicode, Python whitespace, empty texts)', () => {
  for (const p of fx.pairs) close(sentenceChrf(p.prediction, p.reference), p.chrf, JSON.stringify([p.prediction, p.reference]));
});

test('corpus chrF sums statistics over segments as sacrebleu does, and rouge_l is the mean F-measure', () => {
  for (const c of fx.corpora) {
    const hyps = c.indices.map((i) => fx.pairs[i]!.prediction);
    const refs = c.indices.map((i) => fx.pairs[i]!.reference);
    close(corpusChrf(hyps, refs), c.chrf, `corpus ${c.indices.join(',')}`);
    const g = generativeScores(hyps, refs);
    close(g.scores.chrf, c.chrf / 100, 'chrf fraction');
    close(g.scores.rouge_l, c.rougeL_mean_f, 'rouge_l');
    assert.equal(g.scores.generated, hyps.length);
  }
  // Not the mean of sentence scores: a corpus-level statistic.
  const [a, b] = [fx.pairs[1]!, fx.pairs[7]!];
  const mean = (sentenceChrf(a.prediction, a.reference) + sentenceChrf(b.prediction, b.reference)) / 2;
  assert.notEqual(corpusChrf([a.prediction, b.prediction], [a.reference, b.reference]).toFixed(6), mean.toFixed(6));
});

test('LCS length on small cases', () => {
  assert.equal(lcsLength([], ['a']), 0);
  assert.equal(lcsLength(['a', 'b', 'c', 'd'], ['b', 'd']), 2);
  assert.equal(lcsLength('ABCBDAB'.split(''), 'BDCABA'.split('')), 4);
});

const em = (p: string, r: string, n: AnswerNormalization = {}) => exactMatch(p, r, answerNormalizer(n));

test('exact match: whitespace collapses by default; case and punctuation count unless folded or stripped', () => {
  assert.equal(em('  positive \n', 'positive'), true);
  assert.equal(em('very  \t positive', 'very positive'), true);
  assert.equal(em('very  positive', 'very positive', { whitespace: 'strip' }), false);
  assert.equal(em(' positive', 'positive', { whitespace: 'keep' }), false);
  assert.equal(em('Positive', 'positive'), false);
  assert.equal(em('Positive', 'positive', { caseFold: true }), true);
  assert.equal(em('STRASSE', 'straße', { caseFold: true }), true);
  assert.equal(em('positive.', 'positive'), false);
  assert.equal(em('«positive»!', 'positive', { stripPunctuation: true }), true);
  assert.equal(em('x + y = 3', 'x y 3', { stripPunctuation: true }), true);
  assert.equal(em('Spam!!', ' spam', { stripPunctuation: true, caseFold: true }), true);
  assert.equal(em('', ''), true);
  assert.equal(em('ham', 'spam', { caseFold: true, stripPunctuation: true }), false);
});

test("exact match: GSM8K's final answer after the last ####, commas, $ and a final period dropped", () => {
  const ref = 'Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs a day.\nShe makes 9 * 2 = $<<9*2=18>>18 every day.\n#### 18';
  const g = { extract: 'gsm8k' as const };
  assert.equal(em('She makes $18.\n#### 18', ref, g), true);
  assert.equal(em('#### 17\nwait, no\n#### $18.', ref, g), true, 'the last #### counts');
  assert.equal(em('The answer is 18.', ref, g), false, 'no #### in the prediction: no answer');
  assert.equal(em('#### 1,234', '#### 1234', g), true);
  assert.equal(em('#### -5', '#### 5', g), false);
  assert.equal(em('####', '#### 5', g), false);
  // A reference without the marker is compared whole.
  assert.equal(em('#### 42', '42', g), true);
  const norm = answerNormalizer(g);
  assert.equal(norm('nothing here', 'prediction'), null);
  assert.equal(norm('nothing here', 'reference'), 'nothing here');
});

test('exact match: a configurable regex with group and first/last selection', () => {
  const x = { extract: { regex: 'answer:\\s*(\\w+)', flags: 'i' } };
  assert.equal(em('Answer: positive. Answer: negative', 'positive', x), true, 'first match by default');
  assert.equal(em('Answer: positive. Answer: negative', 'negative', { extract: { ...x.extract, select: 'last' } }), true);
  assert.equal(em('label=SPAM', 'spam', { extract: { regex: '[A-Z]+' }, caseFold: true }), true, 'no group: the whole match');
  assert.equal(em('a=1 b=2', '2', { extract: { regex: '(\\w)=(\\d)', group: 2, select: 'last' } }), true);
  assert.equal(em('no label', 'spam', { extract: { regex: 'label=(\\w+)' } }), false);
  // Empty matches advance: the last of them is the empty string after the text.
  assert.equal(em('abc', '', { extract: { regex: 'x*', select: 'last' } }), true);
  // RE2 matching is linear: a pattern that backtracks exponentially in JavaScript's RegExp finishes at once.
  assert.equal(em('a'.repeat(5000) + '!', 'x', { extract: { regex: '(a+)+b' } }), false);
});

test('normalisation config errors name the field', () => {
  const where = (n: unknown) => checkAnswerNormalization(n, 'generation.exactMatch').map((e) => e.message);
  assert.deepEqual(where(undefined), []);
  assert.deepEqual(where({ caseFold: true, whitespace: 'collapse', stripPunctuation: false, extract: 'gsm8k' }), []);
  assert.deepEqual(where({ extract: { regex: 'a(b)', group: 1, select: 'last', flags: 'is' } }), []);
  assert.match(where({ caseFold: 'yes' })[0]!, /^generation\.exactMatch\.caseFold: must be true or false/);
  assert.match(where({ whitespace: 'trim' })[0]!, /^generation\.exactMatch\.whitespace: must be one of keep, strip, collapse/);
  assert.match(where({ extract: 'math' })[0]!, /^generation\.exactMatch\.extract: must be "gsm8k" or/);
  assert.match(where({ extract: { regex: '(' } })[0]!, /^generation\.exactMatch\.extract\.regex: is not a valid regular expression/);
  assert.match(where({ extract: {} })[0]!, /^generation\.exactMatch\.extract\.regex: a regular expression is required/);
  assert.match(
    where({ extract: { regex: 'a(b)', group: 2 } })[0]!,
    /^generation\.exactMatch\.extract\.group: must be an integer from 0 to 1/,
  );
  assert.match(where({ extract: { regex: 'a', flags: 'g' } })[0]!, /^generation\.exactMatch\.extract\.flags/);
  assert.match(where({ extract: { regex: 'a', select: 'middle' } })[0]!, /^generation\.exactMatch\.extract\.select/);
  assert.match(where({ lower: true })[0]!, /^generation\.exactMatch\.lower: unknown field/);
});

test('generativeScores: per-row scores and their corpus figures', () => {
  const g = generativeScores(['positive', 'Negative', ''], ['positive', 'negative', 'negative'], { caseFold: true });
  assert.deepEqual(
    g.rows.map((r) => r.exact),
    [true, true, false],
  );
  assert.equal(g.scores.exact_match, 2 / 3);
  close(g.scores.rouge_l, 2 / 3, 'rouge_l');
  assert.equal(g.rows[2]!.chrf, 0);
  assert.equal(generativeScores([], []).scores.exact_match, 0);
});

test('per-answer scores: balanced exact match and macro F1 over the reference answers equal scikit-learn', () => {
  // 6 ham, 3 spam, 1 other; the model mostly says ham. scikit-learn 1.x on the same normalised labels:
  // balanced_accuracy_score = 0.3888…, f1_score(average='macro', labels=['ham', 'spam', 'other']) = 0.3897435897…
  const refs = ['ham', 'ham', 'ham', 'ham', 'ham', 'ham', 'spam', 'spam', 'spam', 'other'];
  const preds = ['Ham', 'ham.', 'ham', 'ham', 'ham', 'spam', 'Spam!', 'ham', 'I cannot tell', 'ham'];
  const g = generativeScores(preds, refs, { caseFold: true, stripPunctuation: true });
  assert.equal(g.scores.exact_match, 0.6);
  close(g.scores.balanced_exact_match!, (5 / 6 + 1 / 3 + 0) / 3, 'balanced_exact_match');
  close(g.scores.answer_f1_macro!, 0.38974358974358975, 'answer_f1_macro');
  assert.equal(g.scores.reference_answers, 3);
  assert.deepEqual(
    g.answers.map((a) => [a.answer, a.rows, a.predicted]),
    [
      ['ham', 6, 7],
      ['spam', 3, 2],
      ['other', 1, 0],
    ],
  );
  close(g.answers[1]!.precision, 0.5, 'spam precision');
  close(g.answers[1]!.exact_match, 1 / 3, 'spam recall');
  // Always the majority answer: exact match is its share, balanced exact match 1/answers.
  const majority = generativeScores(
    refs.map(() => 'ham'),
    refs,
  );
  assert.equal(majority.scores.exact_match, 0.6);
  close(majority.scores.balanced_exact_match!, 1 / 3, 'majority balanced');
});

test('free-form answers (no reference repeats) have no class scores, and a gate that names one says why', () => {
  // Every reference its own class: balanced exact match would be exact match again, and macro F1 nearly so.
  const free = generativeScores(['a b', 'c', 'x'], ['a b', 'c', 'd']);
  assert.deepEqual(Object.keys(free.scores).sort(), ['chrf', 'exact_match', 'generated', 'reference_answers', 'rouge_l']);
  assert.equal(free.scores.reference_answers, 3);
  assert.equal(free.answers.length, 3, 'the per-answer breakdown stays');
  // As a gate reads an evaluation's metrics (a baseline nested), and a registered version's (flattened and back).
  const metrics = { ...free.scores, baseline: { ...free.scores } };
  for (const [context, gate] of [
    [metrics, 'exact_match >= 0.5 && balanced_exact_match >= 0.7'],
    [metrics, 'exact_match > baseline.answer_f1_macro'],
    [unflattenMetrics(flattenMetrics(metrics)), 'answer_f1_macro >= 0.5'],
  ] as const) {
    assert.throws(
      () => evaluateGate(gate, context as Record<string, unknown>, 'stages.deploy.with.gate'),
      (e: unknown) =>
        e instanceof GateError &&
        /is not measured on free-form answers: the 3 reference answers are all different .*gate on exact_match, rouge_l or chrf/.test(
          e.message,
        ),
      gate,
    );
  }
  assert.equal(evaluateGate('exact_match >= 0.5', metrics).passed, true, 'the other scores are gated on as before');
  // Labels that repeat keep them, and a missing name elsewhere is still the usual unknown name.
  const labels = generativeScores(['yes', 'no', 'no', 'yes'], ['yes', 'no', 'yes', 'yes']);
  assert.equal(labels.scores.reference_answers, 2);
  assert.equal(evaluateGate('balanced_exact_match >= 0.8', labels.scores as unknown as Record<string, unknown>).passed, true);
  assert.throws(() => evaluateGate('balanced_exact_match >= 0.5', { exact_match: 1 }), /unknown name 'balanced_exact_match'/);
  // Rows that do not repeat but come from a test split whose answers do (the first 2 rows of a yes/no set) are labels.
  const head = generativeScores(['yes', 'yes'], ['yes', 'no'], {}, { answersRepeat: true });
  assert.deepEqual([head.scores.balanced_exact_match, head.scores.reference_answers], [0.5, 2]);
});

test('repeatFinder: whether a (normalised) reference answer came before', () => {
  const referencesRepeat = (refs: string[], n?: AnswerNormalization) => refs.some(repeatFinder(n));
  assert.equal(referencesRepeat(['yes', 'no']), false);
  assert.equal(referencesRepeat(['yes', 'no', 'yes']), true);
  assert.equal(referencesRepeat(['Yes', 'yes']), false);
  assert.equal(referencesRepeat(['Yes', 'yes'], { caseFold: true }), true);
  assert.equal(referencesRepeat(['2 + 2 #### 4', 'so, 3 + 1 #### 4'], { extract: 'gsm8k' }), true);
  assert.equal(referencesRepeat([]), false);
});
