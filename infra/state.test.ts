import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join, resolve } from 'node:path';
import { PROJECT_ROOT, stateDir } from './state.ts';

// `TEMPERED_HOME=$UNSET_VARIABLE` resolved to the working folder, which then got a store and a dev server database.
test('an empty or blank TEMPERED_HOME counts as unset: the state folder is the checkout default, not the working folder', () => {
  const fallback = join(PROJECT_ROOT, '.tempered');
  assert.equal(stateDir({}), fallback);
  assert.equal(stateDir({ TEMPERED_HOME: '' }), fallback);
  assert.equal(stateDir({ TEMPERED_HOME: '  ' }), fallback);
  assert.equal(stateDir({ TEMPERED_HOME: '/srv/tempered' }), '/srv/tempered');
  assert.equal(stateDir({ TEMPERED_HOME: 'rel/home' }), resolve('rel/home'));
});
