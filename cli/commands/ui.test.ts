import { test } from 'node:test';
import assert from 'node:assert/strict';
import { dashboardLink, printedLink, uiToken } from './ui.ts';

test("the printed link carries any token the dashboard accepts, as the page's URLSearchParams reads it back", () => {
  for (const token of ['abc+def/ghi=jkl0123456', 'abc%41def0123456789', 'abc&def=0123456789x', 'plain-token-0123456789']) {
    assert.equal(uiToken('127.0.0.1', token), token);
    const link = dashboardLink('http://127.0.0.1:8270', token);
    assert.equal(new URLSearchParams(new URL(link).hash.slice(1)).get('token'), token, link);
  }
});

test('a token is required exactly where the server would answer reads without one: off loopback', () => {
  for (const host of ['127.0.0.1', '127.0.0.2', 'localhost', '::1']) assert.match(uiToken(host, undefined), /^[\w-]{32}$/, host);
  for (const host of ['0.0.0.0', '10.0.0.5', '127.0.0.1.nip.io'])
    assert.throws(() => uiToken(host, undefined), /exposes the dashboard/, host);
});

test('the printed link carries a token made up here, never one the user set (it would sit in the log)', () => {
  const made = uiToken('127.0.0.1', undefined);
  assert.equal(printedLink('http://127.0.0.1:8270', made, undefined), dashboardLink('http://127.0.0.1:8270', made));
  const set = 'a-token-the-user-set-0123456789';
  const printed = printedLink('http://0.0.0.0:8270', set, set);
  assert.ok(!printed.includes(set), printed);
  assert.match(printed, /^http:\/\/0\.0\.0\.0:8270\/#token=<TEMPERED_UI_TOKEN>/);
});
