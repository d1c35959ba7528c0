/** Registry tables. Append new migrations; never edit one that has shipped. */
import type { Migration } from '../util/sqlite.ts';

export const REGISTRY_MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'initial registry',
    sql: `
      CREATE TABLE models (
        name TEXT PRIMARY KEY,
        created_at TEXT NOT NULL
      );
      CREATE TABLE versions (
        id INTEGER PRIMARY KEY,
        model TEXT NOT NULL REFERENCES models(name),
        version INTEGER NOT NULL,
        run_id TEXT NOT NULL,
        stage_id TEXT NOT NULL,
        created_at TEXT NOT NULL,
        created_by TEXT NOT NULL,
        description TEXT,
        intended_use TEXT,
        limitations TEXT,
        spec_hash TEXT NOT NULL,
        code_version TEXT,
        base_model_json TEXT,
        params_json TEXT NOT NULL,
        data_json TEXT NOT NULL,
        UNIQUE (model, version),
        -- A retried register activity must find the version its first attempt wrote.
        UNIQUE (run_id, stage_id)
      );
      CREATE TABLE artifacts (
        version_id INTEGER NOT NULL REFERENCES versions(id),
        role TEXT NOT NULL,
        uri TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        bytes INTEGER NOT NULL,
        media_type TEXT,
        PRIMARY KEY (version_id, role)
      );
      CREATE TABLE metrics (
        version_id INTEGER NOT NULL REFERENCES versions(id),
        name TEXT NOT NULL,
        value REAL NOT NULL,
        PRIMARY KEY (version_id, name)
      );
      CREATE TABLE tags (
        version_id INTEGER NOT NULL REFERENCES versions(id),
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (version_id, key)
      );
      CREATE TABLE aliases (
        model TEXT NOT NULL REFERENCES models(name),
        alias TEXT NOT NULL,
        version INTEGER NOT NULL,
        PRIMARY KEY (model, alias)
      );
      CREATE TABLE alias_history (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        model TEXT NOT NULL,
        alias TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('set', 'rollback')),
        from_version INTEGER,
        to_version INTEGER NOT NULL,
        actor TEXT NOT NULL,
        reason TEXT,
        at TEXT NOT NULL
      );
      CREATE INDEX alias_history_by_alias ON alias_history (model, alias, id);
    `,
  },
  {
    version: 2,
    name: 'idempotency key per workflow execution; audit outbox',
    rebuildsTables: true,
    // A workflow id can be reused (submit --run-id, schedules, backfills) once the earlier run has
    // closed, so (run_id, stage_id) no longer identifies one registration: the unique key becomes
    // the caller's idempotency key (run id, execution id and stage). Rows written before keep
    // their old key. The outbox holds audit records committed with the registry change they
    // describe, until they are appended to the audit log (a separate database).
    sql: `
      CREATE TABLE versions_v2 (
        id INTEGER PRIMARY KEY,
        model TEXT NOT NULL REFERENCES models(name),
        version INTEGER NOT NULL,
        run_id TEXT NOT NULL,
        stage_id TEXT NOT NULL,
        idempotency_key TEXT NOT NULL UNIQUE,
        created_at TEXT NOT NULL,
        created_by TEXT NOT NULL,
        description TEXT,
        intended_use TEXT,
        limitations TEXT,
        spec_hash TEXT NOT NULL,
        code_version TEXT,
        base_model_json TEXT,
        params_json TEXT NOT NULL,
        data_json TEXT NOT NULL,
        UNIQUE (model, version)
      );
      INSERT INTO versions_v2 (id, model, version, run_id, stage_id, idempotency_key, created_at, created_by, description, intended_use, limitations,
                               spec_hash, code_version, base_model_json, params_json, data_json)
        SELECT id, model, version, run_id, stage_id, run_id || '/' || stage_id, created_at, created_by, description, intended_use, limitations,
               spec_hash, code_version, base_model_json, params_json, data_json FROM versions;
      DROP TABLE versions;
      ALTER TABLE versions_v2 RENAME TO versions;
      CREATE INDEX versions_by_run ON versions (run_id, stage_id);
      CREATE TABLE audit_outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        dedupe_key TEXT NOT NULL UNIQUE,
        entry_json TEXT NOT NULL
      );
    `,
  },
];
