/**
 * The SQLite side of `Database` (database.ts): a file opened the way the registry and audit log
 * need it: WAL (readers do not block the writer, so `tempered` CLI reads while a worker
 * registers), a busy timeout (several worker processes may write the same file) and numbered
 * migrations recorded in `schema_migrations`.
 *
 * better-sqlite3 is synchronous; the async interface is kept by running every statement and
 * transaction in turn, so an awaited transaction never interleaves with another caller's
 * statements. The turn is per file and per process, not per connection: activities open their own
 * connection (an audit append per stage), and a second connection's BEGIN IMMEDIATE blocks the one
 * JavaScript thread on the file lock while the first connection's transaction waits for that same
 * thread to reach its COMMIT, a deadlock that ends only in SQLITE_BUSY when the busy timeout runs out.
 * Other processes still wait on the file lock, which always moves because they have threads of their own.
 */
import BetterSqlite3 from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import type { Database, Migration, Params, Queryable, Schema, WriteLock } from './database.ts';

export type Db = BetterSqlite3.Database;

/** The queue of one file's statements in this process, shared by all its connections. */
class FileTurn {
  private tail: Promise<unknown> = Promise.resolve();
  users = 0;
  take<T>(fn: () => Promise<T> | T): Promise<T> {
    const result = this.tail.then(fn);
    this.tail = result.catch(() => undefined);
    return result;
  }
}
const turns = new Map<string, FileTurn>();

function turnFor(path: string): { turn: FileTurn; release: () => void } {
  // An in-memory database is private to its connection, so it gets a queue of its own.
  const key = path === ':memory:' ? undefined : resolve(path);
  const turn = (key && turns.get(key)) || new FileTurn();
  if (key) turns.set(key, turn);
  turn.users++;
  return {
    turn,
    release: () => {
      if (--turn.users === 0 && key && turns.get(key) === turn) turns.delete(key);
    },
  };
}

export async function openSqlite(path: string, schema: Schema): Promise<SqliteDatabase> {
  if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
  const { turn, release } = turnFor(path);
  try {
    // Migrations write, so they wait for this process's other connections to the file like any write.
    const db = await turn.take(() => {
      const db = new BetterSqlite3(path);
      try {
        db.pragma('busy_timeout = 10000');
        db.pragma('journal_mode = WAL');
        db.pragma('foreign_keys = ON');
        // FULL: a commit is on disk before it returns, across OS crashes and power cuts too. With
        // NORMAL the registry and the audit log, two files, could each lose their last commits on
        // their own: an audit record naming a version the registry then numbers anew, or an outbox
        // row deleted after a delivery the audit file lost. It costs one fsync of the WAL a commit,
        // and a stage commits one audit record (bench/orchestration.bench.ts times a stage).
        db.pragma('synchronous = FULL');
        migrate(db, schema.sqlite, schema.scope);
        return db;
      } catch (e) {
        db.close();
        throw e;
      }
    });
    return new SqliteDatabase(db, path, turn, release);
  } catch (e) {
    release();
    throw e;
  }
}

export class SqliteDatabase implements Database {
  readonly dialect = 'sqlite' as const;
  private readonly statements = new Map<string, BetterSqlite3.Statement>();
  private readonly direct: Queryable;

  constructor(
    /** The better-sqlite3 connection, for SQLite-only checks (pragmas) in tests. */
    readonly raw: Db,
    readonly where: string,
    private readonly turn: FileTurn,
    private readonly release: () => void,
  ) {
    const stmt = (sql: string) => {
      let st = this.statements.get(sql);
      if (!st) this.statements.set(sql, (st = raw.prepare(sql)));
      return st;
    };
    this.direct = {
      dialect: 'sqlite',
      all: async <T>(sql: string, params: Params = []) => stmt(sql).all(...params) as T[],
      get: async <T>(sql: string, params: Params = []) => stmt(sql).get(...params) as T | undefined,
      run: async (sql: string, params: Params = []) => {
        const st = stmt(sql);
        return st.reader ? st.all(...params).length : st.run(...params).changes;
      },
    };
  }

  /** One caller at a time on this file in this process: a transaction's awaits must not let others in. */
  private inTurn<T>(fn: () => Promise<T>): Promise<T> {
    return this.turn.take(fn);
  }

  all<T>(sql: string, params?: Params): Promise<T[]> {
    return this.inTurn(() => this.direct.all<T>(sql, params));
  }
  get<T>(sql: string, params?: Params): Promise<T | undefined> {
    return this.inTurn(() => this.direct.get<T>(sql, params));
  }
  run(sql: string, params?: Params): Promise<number> {
    return this.inTurn(() => this.direct.run(sql, params));
  }

  write<T>(_lock: WriteLock | readonly WriteLock[], fn: (q: Queryable) => Promise<T>): Promise<T> {
    // IMMEDIATE takes the file's write lock before the first read, so a read-then-write
    // transaction in another process waits (busy timeout) instead of forking what it read.
    return this.inTurn(() => this.transaction('BEGIN IMMEDIATE', fn));
  }

  snapshot<T>(fn: (q: Queryable) => Promise<T>): Promise<T> {
    return this.inTurn(() => this.transaction('BEGIN DEFERRED', fn));
  }

  private async transaction<T>(begin: string, fn: (q: Queryable) => Promise<T>): Promise<T> {
    this.raw.exec(begin);
    try {
      const r = await fn(this.direct);
      this.raw.exec('COMMIT');
      return r;
    } catch (e) {
      if (this.raw.inTransaction) this.raw.exec('ROLLBACK');
      throw e;
    }
  }

  private closed = false;
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      await this.inTurn(async () => this.raw.close());
    } finally {
      this.release();
    }
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
