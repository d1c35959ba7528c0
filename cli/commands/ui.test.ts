import { test } from 'node:test';
import assert from 'node:assert/strict';
import { dashboardLink, uiToken } from './ui.ts';

test("the printed link carries any token the dashboard accepts, as the page's URLSearchParams reads it back", () => {
  for (const token of ['abc+def/ghi=jkl0123456', 'abc%41def0123456789', 'abc&def=0123456789x', 'plain-token-0123456789']) {
    assert.equal(uiToken('127.0.0.1', token), token);
    const link = dashboardLink('http://127.0.0.1:8270', token);
    assert.equal(new URLSearchParams(new URL(link).hash.slice(1)).get('token'), token, link);
  }
});
