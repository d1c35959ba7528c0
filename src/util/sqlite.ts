/**
 * Opens a SQLite database the way the registry and audit log need it: WAL (readers do not block
 * the writer, so `tempered` CLI reads while a worker registers), a busy timeout (several worker
 * processes may write the same file) and numbered migrations recorded in `schema_migrations`.
 */
import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';

export type Db = Database.Database;

export interface Migration {
  version: number;
  name: string;
  sql: string;
  /**
   * Rebuilds a table that others reference (SQLite's 12-step ALTER): foreign keys are switched off
   * around the transaction, as SQLite requires, and checked before it commits.
   */
  rebuildsTables?: boolean;
}

export function openSqlite(path: string, migrations: readonly Migration[], scope: string): Db {
  if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
  const db = new Database(path);
  try {
    db.pragma('busy_timeout = 10000');
    db.pragma('journal_mode = WAL');
    db.pragma('foreign_keys = ON');
    // NORMAL is durable across application crashes in WAL mode; only an OS crash may lose the
    // last transactions, never corrupt the file.
    db.pragma('synchronous = NORMAL');
    migrate(db, migrations, scope);
    return db;
  } catch (e) {
    db.close();
    throw e;
  }
}

/** Applies missing migrations for one scope (registry and audit may share a file). */
export function migrate(db: Db, migrations: readonly Migration[], scope: string): void {
  db.exec(`CREATE TABLE IF NOT EXISTS schema_migrations (
    scope TEXT NOT NULL, version INTEGER NOT NULL, name TEXT NOT NULL, applied_at TEXT NOT NULL,
    PRIMARY KEY (scope, version))`);
  const pendingRebuild = () => {
    const done = new Set(
      (db.prepare('SELECT version FROM schema_migrations WHERE scope = ?').all(scope) as { version: number }[]).map((r) => r.version),
    );
    return migrations.some((m) => m.rebuildsTables && !done.has(m.version));
  };
  // PRAGMA foreign_keys is a no-op inside a transaction, so it is switched before one starts.
  const fkWasOn = db.pragma('foreign_keys', { simple: true }) === 1;
  const rebuild = pendingRebuild();
  if (rebuild) db.pragma('foreign_keys = OFF');
  const apply = db.transaction(() => {
    const rows = db.prepare('SELECT version FROM schema_migrations WHERE scope = ?').all(scope) as { version: number }[];
    const done = new Set(rows.map((r) => r.version));
    const known = Math.max(0, ...migrations.map((m) => m.version));
    const newest = Math.max(0, ...done);
    if (newest > known) {
      throw new Error(
        `${scope} schema is at version ${newest} but this tempered knows up to ${known}; upgrade tempered before opening this database`,
      );
    }
    for (const m of [...migrations].sort((a, b) => a.version - b.version)) {
      if (done.has(m.version)) continue;
      db.exec(m.sql);
      if (m.rebuildsTables) {
        const broken = db.pragma('foreign_key_check') as unknown[];
        if (broken.length)
          throw new Error(
            `${scope} migration ${m.version} (${m.name}) would leave ${broken.length} broken foreign key(s); nothing was changed`,
          );
      }
      db.prepare('INSERT INTO schema_migrations (scope, version, name, applied_at) VALUES (?, ?, ?, ?)').run(
        scope,
        m.version,
        m.name,
        new Date().toISOString(),
      );
    }
  });
  try {
    apply.immediate();
  } finally {
    if (rebuild && fkWasOn) db.pragma('foreign_keys = ON');
  }
}
