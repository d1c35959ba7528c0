/**
 * The audit schema's version 2 (an index on `subject`, for `query({ run })`) reaches the logs written by
 * releases before it the way every migration does: a SQLite file when this release opens it, a team's
 * PostgreSQL database only through `tempered db migrate` (refused until then). The records stay as they
 * were, `tempered audit --verify` passes, and a release before it refuses the migrated log.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AUDIT_SCHEMA, AuditLog, openAudit, type AuditRecord } from '../src/audit/log.ts';
import { openDatabase, type Schema } from '../src/db/database.ts';
import { BACKENDS, postgresUnavailable, useDatabases } from '../src/db/postgres.testing.ts';
import { runCliInProcess as runCli } from './helpers/cli.ts';

/** The audit schema as releases before version 2 had it. */
const V1: Schema = {
  ...AUDIT_SCHEMA,
  sqlite: AUDIT_SCHEMA.sqlite.filter((m) => m.version === 1),
  postgres: AUDIT_SCHEMA.postgres.filter((m) => m.version === 1),
};

/** A log at `location` as an earlier release leaves it: its schema at version 1, and a run's records in it. */
async function versionOneLog(location: string): Promise<AuditRecord[]> {
  const log = new AuditLog(await openDatabase(location, V1));
  try {
    await log.append({ action: 'run.submitted', subject: 'run-a', runId: 'run-a', actor: 'alice', specHash: 'a'.repeat(64) });
    await log.append({ action: 'stage.completed', subject: 'run-a/train', runId: 'run-a', actor: 'worker', dedupeKey: 'run-a/train' });
    await log.append({ action: 'stage.completed', subject: 'run-b/train', runId: 'run-b', actor: 'worker', dedupeKey: 'run-b/train' });
    await log.append({ action: 'run.cancel_requested', subject: 'run-a', actor: 'bob' });
    return await log.query({});
  } finally {
    await log.close();
  }
}

/** The audit scope's newest applied migration, and whether audit_log has its subject index. */
async function auditSchema(location: string, dialect: 'sqlite' | 'postgres'): Promise<{ version: number; subjectIndex: boolean }> {
  // A schema that asks for nothing, so that opening reads the tables without migrating them.
  const db = await openDatabase(location, { scope: 'probe_none', sqlite: [], postgres: [] });
  try {
    const v = await db.get<{ v: number }>(`SELECT max(version) AS v FROM schema_migrations WHERE scope = 'audit'`);
    const index =
      dialect === 'sqlite'
        ? await db.get(`SELECT name FROM sqlite_master WHERE type = 'index' AND name = 'audit_by_subject'`)
        : await db.get(`SELECT indexname FROM pg_indexes WHERE tablename = 'audit_log' AND indexname = 'audit_by_subject'`);
    return { version: v?.v ?? 0, subjectIndex: index !== undefined };
  } finally {
    await db.close();
  }
}

for (const backend of BACKENDS)
  describe(backend, { skip: backend === 'postgres' ? postgresUnavailable() : undefined }, () => {
    const dbs = useDatabases(backend);

    test('a version-1 audit log is brought to version 2 the way the project migrates, its records intact and verified', async (t) => {
      const home = mkdtempSync(join(tmpdir(), 'tempered-audit-upgrade-'));
      t.after(() => rmSync(home, { recursive: true, force: true }));
      const url = backend === 'postgres' ? await dbs.fresh(t) : '';
      const location = url || join(home, 'audit.db');
      const env = { TEMPERED_HOME: home, TEMPERED_DATABASE_URL: url, TEMPERED_ACTOR: 'dba-alice' };
      const before = await versionOneLog(location);
      assert.deepEqual(await auditSchema(location, backend), { version: 1, subjectIndex: false });

      if (backend === 'postgres') {
        // A team's database: this release refuses the tables until someone runs `tempered db migrate`.
        await assert.rejects(
          () => openAudit(location),
          /the audit tables in postgres:\/\/\S+ are at version 1 and this tempered needs version 2: .*run `tempered db migrate` once/,
        );
        assert.deepEqual(await auditSchema(location, backend), { version: 1, subjectIndex: false }, 'nothing migrated by an open');
        const migrate = await runCli(['db', 'migrate'], env);
        assert.equal(migrate.code, 0, migrate.stderr);
        assert.match(migrate.stdout, /audit: migrated from version 1 to 2/);
      }
      // SQLite: this command's open migrates the file.
      const verify = await runCli(['audit', '--verify'], env);
      assert.equal(verify.code, 0, verify.stdout + verify.stderr);
      assert.match(verify.stdout, /audit log intact: \d+ records/);
      assert.deepEqual(await auditSchema(location, backend), { version: 2, subjectIndex: true });

      const log = await openAudit(location);
      try {
        const after = await log.query({});
        // On PostgreSQL `db migrate` appended its own db.migrated record after them.
        assert.deepEqual(after.slice(0, before.length), before, 'the records are as the earlier release wrote them');
        assert.deepEqual(
          after.slice(before.length).map((r) => r.action),
          backend === 'postgres' ? ['db.migrated'] : [],
        );
        assert.deepEqual(
          (await log.query({ run: 'run-a' })).map((r) => r.seq),
          [1, 2, 4],
        );
      } finally {
        await log.close();
      }
      const run = await runCli(['audit', '--run', 'run-a', '--json'], env);
      assert.equal(run.code, 0, run.stderr);
      assert.deepEqual(
        (JSON.parse(run.stdout) as AuditRecord[]).map((r) => r.seq),
        [1, 2, 4],
      );

      // A release before version 2 refuses the migrated log instead of writing to a schema it does not know.
      await assert.rejects(
        () => openDatabase(location, V1),
        /audit schema is at version 2 but this tempered knows up to 1; upgrade tempered/,
      );
    });
  });
