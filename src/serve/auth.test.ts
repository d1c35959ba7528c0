import { test } from 'node:test';
import assert from 'node:assert/strict';
import { bearerMatches, tokenProblem } from './auth.ts';

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

test('a token a client could not send as it is is named as such', () => {
  assert.equal(tokenProblem('Ab0-._~+/=!xyz'), undefined);
  assert.match(tokenProblem('two words')!, /whitespace/);
  assert.match(tokenProblem('line\nbreak')!, /whitespace/);
  assert.match(tokenProblem('café-token')!, /visible ASCII/);
  assert.match(tokenProblem('nul\u0000byte')!, /visible ASCII/);
});
