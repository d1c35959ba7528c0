/**
 * `tempered db migrate`, as an operator runs it once per upgrade against the team's PostgreSQL: it
 * creates or migrates every scope tempered keeps there, says what it did, and the audit trail says who.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openAudit } from '../src/audit/log.ts';
import { openRegistry } from '../src/registry/registry.ts';
import { SHARED_SCHEMAS } from '../cli/commands/db.ts';
import { runCliInProcess as runCli } from './helpers/cli.ts';
import { postgresUnavailable, useDatabases } from '../src/db/postgres.testing.ts';

function home(t: { after: (fn: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'tempered-db-cli-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

test('db migrate without TEMPERED_DATABASE_URL: SQLite files need no step; bad usage is exit 2', async (t) => {
  const env = { TEMPERED_HOME: home(t), TEMPERED_DATABASE_URL: '' };
  const r = await runCli(['db', 'migrate'], env);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /TEMPERED_DATABASE_URL is not set: .*nothing to migrate/);
  const bad = await runCli(['db'], env);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /usage: tempered db migrate/);
});

describe('db migrate with TEMPERED_DATABASE_URL (PostgreSQL)', { skip: postgresUnavailable() }, () => {
  const dbs = useDatabases('postgres');

  test('creates what is missing, reports every scope, audits who migrated, and a second run changes nothing', async (t) => {
    const url = await dbs.fresh(t);
    const env = { TEMPERED_HOME: home(t), TEMPERED_DATABASE_URL: url, TEMPERED_ACTOR: 'dba-alice' };
    // The registry exists already (a worker opened it); the rest does not.
    await (await openRegistry(url)).close();
    const first = await runCli(['db', 'migrate'], env);
    assert.equal(first.code, 0, first.stderr);
    assert.doesNotMatch(first.stdout, /password|secret/);
    assert.match(first.stdout, /registry: at version 1, up to date/);
    for (const s of SHARED_SCHEMAS.filter((x) => x.scope !== 'registry'))
      assert.match(first.stdout, new RegExp(`${s.scope}: created \\(version \\d+\\)`));

    const log = await openAudit(url);
    t.after(() => log.close());
    const migrated = (await log.query({})).filter((r) => r.action === 'db.migrated');
    assert.equal(migrated.length, 1);
    assert.equal(migrated[0]!.actor, 'dba-alice');
    assert.deepEqual(
      Object.keys(migrated[0]!.details ?? {}).sort(),
      SHARED_SCHEMAS.map((s) => s.scope)
        .filter((s) => s !== 'registry')
        .sort(),
    );

    const again = await runCli(['db', 'migrate', '--json'], env);
    assert.equal(again.code, 0, again.stderr);
    const report = JSON.parse(again.stdout) as { scopes: { scope: string; from: number; to: number }[] };
    assert.equal(report.scopes.length, SHARED_SCHEMAS.length);
    assert.ok(
      report.scopes.every((s) => s.from === s.to && s.to > 0),
      again.stdout,
    );
    assert.equal((await log.query({})).filter((r) => r.action === 'db.migrated').length, 1, 'nothing to do is not audited');
  });
});
