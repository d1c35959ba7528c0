/**
 * `tempered db migrate`, as an operator runs it once per upgrade against the team's PostgreSQL: it
 * creates or migrates every scope tempered keeps there, says what it did, and the audit trail says who.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { openAudit } from '../src/audit/log.ts';
import { openRegistry } from '../src/registry/registry.ts';
import { awaitUsableDatabase, SHARED_SCHEMAS } from '../cli/commands/db.ts';
import type { Schema } from '../src/db/database.ts';
import { migratePostgres } from '../src/db/postgres.ts';
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
  const json = await runCli(['db', 'migrate', '--json'], env);
  assert.deepEqual(JSON.parse(json.stdout), { database: null, scopes: [] });
  const bad = await runCli(['db'], env);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /usage: tempered db migrate/);
});

test('every scope kept in a shared database is one that db migrate knows', () => {
  // A scope left off SHARED_SCHEMAS would be refused once behind, naming a command that cannot help.
  const root = fileURLToPath(new URL('../src/', import.meta.url));
  const files = (dir: string): string[] =>
    readdirSync(dir).flatMap((n) =>
      statSync(join(dir, n)).isDirectory() ? files(join(dir, n)) : n.endsWith('.ts') && !n.endsWith('.test.ts') ? [join(dir, n)] : [],
    );
  const defined: string[] = [];
  for (const f of files(root))
    for (const m of readFileSync(f, 'utf8').matchAll(/export const (\w+)(?:: Schema)? = (?:\{\s*scope: '|keyedRecordsSchema\(')(\w+)'/g))
      defined.push(`${m[2]} (${relative(root, f)})`);
  assert.ok(defined.length >= 5, defined.join(', '));
  assert.deepEqual(
    defined.map((d) => d.split(' ')[0]).sort(),
    SHARED_SCHEMAS.map((s) => s.scope).sort(),
    `schemas defined: ${defined.join(', ')}`,
  );
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
    assert.ok(!first.stdout.includes(new URL(url).password), 'the password is not printed');
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

  test('a scope that fails part-way: what was applied before it is audited with the error, and the command fails', async (t) => {
    const url = await dbs.fresh(t);
    const env = { TEMPERED_HOME: home(t), TEMPERED_DATABASE_URL: url, TEMPERED_ACTOR: 'dba-bob' };
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    // A later scope that a newer release already migrated.
    await c.query(
      `CREATE TABLE schema_migrations (scope TEXT NOT NULL, version INTEGER NOT NULL, name TEXT NOT NULL, applied_at TEXT NOT NULL, PRIMARY KEY (scope, version))`,
    );
    await c.query(`INSERT INTO schema_migrations VALUES ('run_index', 99, 'from the future', '2030-01-01')`);
    await c.end();
    const r = await runCli(['db', 'migrate'], env);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(
      r.stderr,
      /the migration stopped at run_index \(the scopes above are done\): run_index schema is at version 99 but this tempered knows up to 1; upgrade tempered/,
    );
    assert.match(r.stdout, /registry: created/);
    const log = await openAudit(url);
    t.after(() => log.close());
    const [rec, ...more] = (await log.query({})).filter((x) => x.action === 'db.migrated');
    assert.equal(more.length, 0);
    assert.deepEqual(Object.keys(rec!.details ?? {}).sort(), ['audit', 'error', 'registry', 'stage_cache']);
    assert.match(String(rec!.details!.error), /run_index schema is at version 99/);
  });

  test('db status reads each scope against this release without changing anything', async (t) => {
    const url = await dbs.fresh(t);
    const env = { TEMPERED_HOME: home(t), TEMPERED_DATABASE_URL: url };
    const fresh = await runCli(['db', 'status'], env);
    assert.equal(fresh.code, 0, fresh.stderr);
    for (const s of SHARED_SCHEMAS) assert.match(fresh.stdout, new RegExp(`  ${s.scope}: no tables yet`));
    assert.match(fresh.stdout, /nothing to migrate for this release/);
    await (await openRegistry(url)).close();
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    t.after(() => c.end());
    await c.query(`INSERT INTO schema_migrations VALUES ('run_index', 99, 'from the future', '2030-01-01')`);
    const rows = async () => (await c.query('SELECT scope, version FROM schema_migrations ORDER BY scope, version')).rows;
    const before = await rows();
    const r = await runCli(['db', 'status'], env);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /  registry: at version 1, up to date/);
    assert.match(r.stdout, /  run_index: at version 99, newer than this release knows \(1\)/);
    assert.match(r.stdout, /a newer tempered migrated this database: this release cannot open it; upgrade/);
    const json = JSON.parse((await runCli(['db', 'status', '--json'], env)).stdout) as {
      migrate: boolean;
      newer: boolean;
      scopes: unknown[];
    };
    assert.deepEqual([json.migrate, json.newer, json.scopes.length], [false, true, SHARED_SCHEMAS.length]);
    assert.deepEqual(await rows(), before, 'nothing created or migrated');
  });

  test('a worker waits before it polls while the database does not answer, saying so once a minute', async () => {
    // Nothing listens on port 9: a worker that polled would take stages only to fail them after the database's retries.
    const said: string[] = [];
    const stop = new AbortController();
    let settled = false;
    const waiting = awaitUsableDatabase('postgres://tempered:secret@127.0.0.1:9/tempered', (m) => said.push(m), {
      pollMs: 50,
      sayEveryMs: 60_000,
      signal: stop.signal,
    }).finally(() => (settled = true));
    await new Promise((r) => setTimeout(r, 600));
    assert.equal(settled, false, 'still waiting');
    assert.equal(said.length, 1, said.join('\n'));
    assert.match(
      said[0]!,
      /the database postgres:\/\/tempered@127\.0\.0\.1:9\/tempered did not answer \(.*\); waiting for it before polling/,
    );
    stop.abort();
    await assert.rejects(waiting, { name: 'AbortError' });
  });

  test('a database that answers with an error of its settings is said at once, not waited for', async (t) => {
    // The test server speaks no TLS: sslmode=require is a setting to fix, not a server that is away.
    const url = await dbs.fresh(t);
    await assert.rejects(
      awaitUsableDatabase(`${url}${url.includes('?') ? '&' : '?'}sslmode=require`, () => assert.fail('waited'), { pollMs: 50 }),
      /does not support SSL/,
    );
  });

  test('a worker waits before it polls while the tables are behind, goes on once migrated, and stops on a newer release', async (t) => {
    const url = await dbs.fresh(t);
    const one = { version: 1, name: 'one', sql: 'CREATE TABLE waits (a INTEGER)' };
    const v1: Schema = { scope: 'waits', sqlite: [], postgres: [one] };
    const v2: Schema = { ...v1, postgres: [one, { version: 2, name: 'two', sql: 'ALTER TABLE waits ADD COLUMN b TEXT' }] };
    await migratePostgres(url, [v1]);
    const said: string[] = [];
    let ready = false;
    const waiting = awaitUsableDatabase(url, (m) => said.push(m), { schemas: [v2], pollMs: 50, sayEveryMs: 60_000 }).then(
      () => (ready = true),
    );
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(ready, false, 'still waiting while behind');
    assert.equal(said.length, 1, said.join('\n'));
    assert.match(
      said[0]!,
      /waiting for `tempered db migrate` before polling: in postgres:\/\/\S+ waits is at version 1, this release needs 2/,
    );
    await migratePostgres(url, [v2]);
    await waiting;
    await awaitUsableDatabase(url, () => assert.fail('nothing to say'), { schemas: [v2] });
    await assert.rejects(
      awaitUsableDatabase(url, () => {}, { schemas: [v1] }),
      /was migrated by a newer tempered \(waits at version 2, this release knows 1\): upgrade/,
    );
  });
});
