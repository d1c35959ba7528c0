import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatDuration, parseDuration } from './duration.ts';
import { pipelineSchema } from './schema.ts';

test('durations in every unit and in combination', () => {
  const cases: Array<[string, number]> = [
    ['500ms', 500],
    ['30s', 30_000],
    ['10m', 600_000],
    ['2h', 7_200_000],
    ['1h30m', 5_400_000],
    ['1d2h3m4s5ms', 93_784_005],
    ['0s', 0],
  ];
  for (const [text, ms] of cases) {
    assert.equal(parseDuration(text), ms, text);
    if (ms > 0) assert.equal(parseDuration(formatDuration(ms)), ms);
  }
  assert.equal(formatDuration(5_400_000), '1h30m');
});

test('not durations', () => {
  for (const text of ['', '10', '10 m', '1.5h', '30m1h', 'h', '1h1h', '-5s', '10min']) assert.equal(parseDuration(text), undefined, text);
});

test("the schema's duration pattern accepts exactly what parseDuration accepts", () => {
  const pattern = new RegExp((pipelineSchema.$defs as Record<string, { pattern: string }>).duration.pattern, 'u');
  for (const text of [
    '500ms',
    '30s',
    '10m',
    '1h30m',
    '1d2h3m4s5ms',
    '0s',
    '',
    '10',
    '10 m',
    '1.5h',
    '30m1h',
    '1h1h',
    '10min',
    '1m5ms',
    '5msx',
  ]) {
    assert.equal(pattern.test(text), parseDuration(text) !== undefined, text);
  }
});
