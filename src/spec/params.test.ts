import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseParamOverrides, parseParamText } from './params.ts';

test('parseParamOverrides splits at the first =', () => {
  assert.deepEqual(parseParamOverrides(['lr=0.1', 'filter=a=b', 'empty=']), {
    overrides: { lr: '0.1', filter: 'a=b', empty: '' },
    errors: [],
  });
});

test('parseParamOverrides rejects malformed and repeated arguments', () => {
  const { overrides, errors } = parseParamOverrides(['lr', '=3', 'bad name=1', 'x=1', 'x=2']);
  assert.deepEqual(overrides, { x: '1' });
  assert.deepEqual(
    errors.map((e) => [e.code, e.path, e.message]),
    [
      ['bad-param-override', '--param', "'lr' is not of the form name=value"],
      ['bad-param-override', '--param', "'=3' is not of the form name=value"],
      ['bad-param-override', '--param', "'bad name=1' is not of the form name=value"],
      ['bad-param-override', 'params.x', "parameter 'x' is given more than once"],
    ],
  );
  assert.equal(errors[0]!.file, '<command line>');
});

test('parseParamText reads decimal numbers only', () => {
  for (const [text, value] of [
    ['1', 1],
    ['-2.5', -2.5],
    ['1e-3', 0.001],
    ['.5', 0.5],
    ['+3', 3],
  ] as const)
    assert.deepEqual(parseParamText('number', text), { ok: true, value });
  for (const text of ['', ' ', 'abc', '0x10', 'Infinity', 'NaN', '1,5']) assert.equal(parseParamText('number', text).ok, false, text);
});

test('parseParamText reads integers, booleans and strings', () => {
  assert.deepEqual(parseParamText('integer', '-7'), { ok: true, value: -7 });
  for (const text of ['1.0', '1e3', '9007199254740993', '']) assert.equal(parseParamText('integer', text).ok, false, text);
  assert.deepEqual(parseParamText('boolean', 'false'), { ok: true, value: false });
  assert.deepEqual(parseParamText('boolean', 'True'), { ok: false, message: "must be true or false, got 'True'" });
  assert.deepEqual(parseParamText('string', ' spaced '), { ok: true, value: ' spaced ' });
});
