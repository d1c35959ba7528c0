/**
 * npm test's runner (scripts/run-tests.mjs) keeps a shell's team settings (TEMPORAL_ADDRESS, TEMPERED_STORE, …) out of
 * the tests, which start servers of their own: with them, tests that set no address submitted to the team's cluster.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

test("a shell set up for the team's cluster runs the tests against their own servers, and says what it left out", () => {
  const r = spawnSync(process.execPath, ['scripts/run-tests.mjs', join('tests', 'fixtures', 'team-settings-probe.ts')], {
    encoding: 'utf8',
    env: {
      // Without the test runner's marker, which would make the inner `node --test` report to this one.
      ...Object.fromEntries(Object.entries(process.env).filter(([k]) => k !== 'NODE_TEST_CONTEXT')),
      TEMPORAL_ADDRESS: 'temporal.team.example:7233',
      TEMPORAL_NAMESPACE: 'ml-team',
      TEMPORAL_API_KEY: 'team-key',
      TEMPERED_STORE: 's3://team-bucket/tempered',
      TEMPERED_DATABASE_URL: 'postgres://tempered@db.team.example/tempered',
      TEMPERED_HOME: '/srv/tempered',
      TEMPORAL_CLI_PATH: '/kept/temporal',
      TEMPERED_TEST_POSTGRES_URL: 'postgres://kept',
    },
  });
  assert.equal(r.status, 0, r.stdout + r.stderr);
  assert.match(
    r.stderr,
    /left out of the tests' environment, which start servers of their own: TEMPERED_DATABASE_URL, TEMPERED_HOME, TEMPERED_STORE, TEMPORAL_ADDRESS, TEMPORAL_API_KEY, TEMPORAL_NAMESPACE\n/,
  );
});
