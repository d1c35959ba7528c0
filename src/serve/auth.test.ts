import { test } from 'node:test';
import assert from 'node:assert/strict';
import { bearerMatches } from './auth.ts';

test('bearer tokens match only exactly', () => {
  const token = 's3cret-token';
  assert.equal(bearerMatches(`Bearer ${token}`, token), true);
  assert.equal(bearerMatches(`bearer ${token}`, token), true);
  for (const h of [
    undefined,
    '',
    token,
    `Bearer`,
    `Bearer ${token}x`,
    `Bearer ${token.slice(0, -1)}`,
    `Basic ${token}`,
    `Bearer  `,
    `Bearer ${token} extra`,
  ]) {
    assert.equal(bearerMatches(h, token), false, String(h));
  }
});
