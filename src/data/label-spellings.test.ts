import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parse } from 'yaml';
import { declaredSpelling, escapedLabel } from './label-spellings.ts';

// With labels that differ in case alone declared, the hint named the first that matched case-folded: "B " was told it
// is "b" written differently, and the labelMap suggested would have moved its rows to the other class.
test('a declared label equal to the row label trimmed is the one meant, before one equal case-folded', () => {
  assert.equal(declaredSpelling('B ', ['b', 'B']), 'B');
  assert.equal(declaredSpelling(' b', ['b', 'B']), 'b');
  assert.equal(declaredSpelling('BILLING', ['billing', 'tech']), 'billing');
  assert.equal(declaredSpelling('1.0', ['1', '2']), '1');
  assert.equal(declaredSpelling('other', ['b', 'B']), undefined);
});

// "café" with é as U+00E9 in one file and as e + U+0301 in another: two classes that print alike, and beside declared
// labels every row of the other form was quarantined with no hint.
test('a declared label that is the row label in another Unicode normal form is the one meant, before one equal case-folded', () => {
  const nfc = 'caf\u00e9';
  const nfd = 'cafe\u0301';
  assert.equal(declaredSpelling(nfd, [nfc, 'tea']), nfc);
  assert.equal(declaredSpelling(`${nfd} `, ['Caf\u00e9', nfc]), nfc);
  assert.equal(declaredSpelling('CAFE\u0301', [nfc, 'tea']), nfc);
  assert.equal(declaredSpelling(nfc, [nfd, 'tea']), nfd);
});

test('escapedLabel shows what normalisation changes, as a JSON and YAML string that reads back as the label', () => {
  assert.equal(escapedLabel('cafe\u0301'), '"cafe\\u0301"');
  assert.equal(escapedLabel('caf\u00e9 "x"'), '"caf\\u00e9 \\"x\\""');
  for (const l of [
    'cafe\u0301',
    'caf\u00e9',
    'tab\there',
    '\u{1f600} smile',
    'a\\b "q" \\u00e9',
    '\u0000\u007f\u0085\u2028\ufeff',
    '~',
    '- x: #',
  ]) {
    assert.equal(JSON.parse(escapedLabel(l)), l);
    assert.equal(parse(`k: ${escapedLabel(l)}`).k, l);
    // As the warnings write it: a labelMap key and value in a flow mapping.
    assert.deepEqual(parse(`labelMap: {${escapedLabel(l)}: ${escapedLabel(l)}}`).labelMap, { [l]: l });
  }
});
