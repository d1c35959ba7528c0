import { test } from 'node:test';
import assert from 'node:assert/strict';
import { makeNormalizer } from './normalize.ts';

test('default normalization merges NFKC, case, whitespace and zero-width variants', () => {
  const n = makeNormalizer();
  const base = n('Find the file');
  for (const v of [
    'ﬁnd the ﬁle', // U+FB01 ligature → 'fi' under NFKC
    'Ｆｉｎｄ　ｔｈｅ　ｆｉｌｅ', // full-width letters and ideographic space
    'FIND THE FILE',
    '  find\tthe\n\nfile ',
    'fi\u200Bnd the\u200D fi\u2060le\uFEFF',
    'find\u00A0the file', // no-break space is whitespace
  ])
    assert.equal(n(v), base, JSON.stringify(v));
  assert.notEqual(n('find the files'), base);
});

test('case folding handles ß and final sigma', () => {
  const n = makeNormalizer();
  assert.equal(n('STRASSE'), n('straße'));
  assert.equal(n('ΟΔΟΣ'), n('οδος'));
});

test('each step can be switched off', () => {
  // Full case mapping also expands the ligature (ﬁ → FI), so both steps must be off to keep it.
  assert.notEqual(makeNormalizer({ nfkc: false, casefold: false })('ﬁ'), 'fi');
  assert.notEqual(makeNormalizer({ nfkc: false, casefold: false })('Ａ'), 'A');
  assert.notEqual(makeNormalizer({ casefold: false })('A'), 'a');
  assert.equal(makeNormalizer({ whitespace: false })(' a  b '), ' a  b ');
  assert.equal(makeNormalizer({ zeroWidth: false })('a\u200Bb'), 'a\u200Bb');
  const off = makeNormalizer({ nfkc: false, casefold: false, whitespace: false, zeroWidth: false });
  assert.equal(off(' ＡﬁB\u200B '), ' ＡﬁB\u200B ');
});
