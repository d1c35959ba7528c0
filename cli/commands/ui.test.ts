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

test('for a token that holds % or &, the printed line says how to type them, and the page reads the token typed so', async () => {
  // Typed as it is, the page decoded %41 as A and ended the token at &: the actions then failed 401 with no word why.
  const { tokenFromFragment } = (await import(new URL('../../ui/static/format.js', import.meta.url).href)) as {
    tokenFromFragment(hash: string): string | null;
  };
  const set = 'abc%41def&ghi0123456789';
  assert.equal(uiToken('0.0.0.0', set), set, 'the dashboard accepts it');
  const printed = printedLink('http://0.0.0.0:8270', set, set);
  assert.ok(!printed.includes(set), printed);
  assert.match(printed, /write % as %25 and & as %26/);
  assert.equal(tokenFromFragment(`#token=${set.replaceAll('%', '%25').replaceAll('&', '%26')}`), set);
  assert.doesNotMatch(printedLink('http://0.0.0.0:8270', 'plain+token/0123456789=', 'plain+token/0123456789='), /write/);
});
