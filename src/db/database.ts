/**
 * The one small interface the registry and the audit log speak to their database, whichever it is:
 * a SQLite file (the default, one machine) or PostgreSQL (`TEMPERED_DATABASE_URL=postgres://…`,
 * many hosts). Queries are written once with `?` placeholders in SQL both dialects accept; each
 * scope keeps its own migrations per dialect.
 */
import { existsSync } from 'node:fs';
import { InputError } from '../errors.ts';

export type Dialect = 'sqlite' | 'postgres';
export type Params = readonly unknown[];

/** What a transaction (or the database outside one) can run. */
export interface Queryable {
  readonly dialect: Dialect;
  all<T>(sql: string, params?: Params): Promise<T[]>;
  get<T>(sql: string, params?: Params): Promise<T | undefined>;
  /** Runs a statement; resolves to the number of rows it changed. */
  run(sql: string, params?: Params): Promise<number>;
}

/** Rows per INSERT of insertRows: at 16 columns, well under either dialect's limit on parameters (SQLite 32766). */
const INSERT_ROWS = 500;

/**
 * Inserts `rows` (each its values in `columns`' order) a few hundred to a statement, each statement one round trip to
 * a PostgreSQL server; `suffix` follows each VALUES list (`ON CONFLICT … DO NOTHING`).
 */
export async function insertRows(
  q: Queryable,
  table: string,
  columns: readonly string[],
  rows: readonly Params[],
  suffix = '',
): Promise<void> {
  const one = `(${columns.map(() => '?').join(', ')})`;
  for (let i = 0; i < rows.length; i += INSERT_ROWS) {
    const batch = rows.slice(i, i + INSERT_ROWS);
    await q.run(
      `INSERT INTO ${table} (${columns.join(', ')}) VALUES ${batch.map(() => one).join(', ')}${suffix && ` ${suffix}`}`,
      batch.flat(),
    );
  }
}

/**
 * Writers of one lock name are serialised across every process and host that share the database
 * (SQLite: BEGIN IMMEDIATE on the file; PostgreSQL: a transaction-scoped advisory lock).
 */
export type WriteLock = 'registry' | 'audit';

export interface Database extends Queryable {
  /** Where the data lives, for messages: a file path, or the URL without its password. */
  readonly where: string;
  /**
   * Runs `fn` in one write transaction that holds `lock` (or each of several, for a write that spans the registry and
   * the audit log); commits if it resolves, rolls back if it throws.
   */
  write<T>(lock: WriteLock | readonly WriteLock[], fn: (q: Queryable) => Promise<T>): Promise<T>;
  /** Runs `fn` in a read-only transaction that sees one consistent snapshot. */
  snapshot<T>(fn: (q: Queryable) => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

export interface Migration {
  version: number;
  name: string;
  sql: string;
  /**
   * SQLite only: rebuilds a table that others reference (SQLite's 12-step ALTER); foreign keys are
   * switched off around the transaction, as SQLite requires, and checked before it commits.
   */
  rebuildsTables?: boolean;
}

/** A scope's tables: its name in `schema_migrations` and its migrations for each dialect. */
export interface Schema {
  scope: string;
  sqlite: readonly Migration[];
  postgres: readonly Migration[];
}

/**
 * A scope of one table that maps a text key to a JSON record, in SQL both dialects accept: the shared
 * records of a worker fleet (stage cache, run index) that are read and replaced by key.
 */
export function keyedRecordsSchema(scope: string, table: string, keyColumn: string, name: string): Schema {
  const sql = `CREATE TABLE ${table} (${keyColumn} TEXT PRIMARY KEY, record_json TEXT NOT NULL, updated_at TEXT NOT NULL);`;
  const migrations = [{ version: 1, name, sql }];
  return { scope, sqlite: migrations, postgres: migrations };
}

export const DATABASE_URL_ENV = 'TEMPERED_DATABASE_URL';

export function isDatabaseUrl(location: string): boolean {
  return /^[a-z][a-z0-9+.-]*:\/\//i.test(location);
}

/** A URL without its password (and query, which may hold one), for messages and logs. */
export function redactUrl(location: string): string {
  if (!isDatabaseUrl(location)) return location;
  try {
    const u = new URL(location);
    return `${u.protocol}//${u.username ? `${decodeURIComponent(u.username)}@` : ''}${u.host}${u.pathname}`;
  } catch {
    return '(an unparseable URL)';
  }
}

/**
 * Checks a database URL and says what is wrong with it, naming TEMPERED_DATABASE_URL. Only
 * postgres:// and postgresql:// are served; the host and the database must be named (a socket
 * folder may stand for the host as `?host=/run/postgresql`).
 */
export function checkDatabaseUrl(location: string, where = DATABASE_URL_ENV): URL {
  const example = 'postgres://user:password@db.example:5432/tempered';
  // `p@ss#1` in a password ends the user part at the first `@` and the URL at `#`: what is left names another host.
  const encode = /[@#?/]/.test(
    location
      .slice(location.indexOf('//') + 2)
      .split('@')
      .slice(0, -1)
      .join('@'),
  )
    ? '; a password with @ # ? or / must be percent-encoded (%40 %23 %3F %2F)'
    : '';
  let u: URL;
  try {
    u = new URL(location);
  } catch {
    throw new InputError('is not a valid URL', {
      where,
      hint: `write it as ${example}${encode}, or unset it to keep the registry and audit log in SQLite files`,
    });
  }
  if (u.protocol !== 'postgres:' && u.protocol !== 'postgresql:') {
    throw new InputError(`scheme '${u.protocol.replace(/:$/, '')}' is not supported`, {
      where,
      hint: `only PostgreSQL is: ${example}; unset it to keep the registry and audit log in SQLite files under TEMPERED_HOME`,
    });
  }
  // Not shown then: what the URL parser took for the host is part of the password.
  const shown = encode ? 'the URL' : redactUrl(location);
  if (!u.hostname && !u.searchParams.get('host')) {
    throw new InputError(`${shown} names no host`, { where, hint: `write it as ${example}${encode}` });
  }
  const db = decodeURIComponent(u.pathname.replace(/^\//, ''));
  if (!db || db.includes('/')) {
    throw new InputError(`${shown} names no database`, { where, hint: `name one after the host: ${example}${encode}` });
  }
  return u;
}

/** True when there is something to open: always for a server, for a file when it exists. */
export function databaseExists(location: string): boolean {
  return isDatabaseUrl(location) || existsSync(location);
}

export interface OpenOptions {
  /** PostgreSQL: how long to keep retrying a connection that fails for a transient reason (ms). */
  retryForMs?: number;
  /**
   * PostgreSQL: the most a write waits for its lock (`lock_timeout`, then retried) and the most a
   * write's transaction may sit idle (`idle_in_transaction_session_timeout`), where the session does
   * not set them itself (the URL's `options`). Defaults 10 s and 60 s.
   */
  lockTimeoutMs?: number;
  idleInTransactionMs?: number;
  /**
   * PostgreSQL: the most one statement may take, answer included, before the connection is given up (pg's
   * `query_timeout`; a transient error, retried while the retry time lasts); 0 waits for ever. Default 120 s, or
   * TEMPERED_DB_QUERY_TIMEOUT_S. The server ends the statement itself a little before (the session's
   * `statement_timeout`, unless it has one of its own), rolling it back; a statement the client gives up on anyway is
   * cancelled on the server (a cancel request) and its connection dropped. A write outside a transaction that the
   * client gave up on may have committed before the cancel reached it: that error says so and is not retried. Neither TCP keepalives (a paused or
   * overloaded server's kernel still answers them, and a lost route takes the system's 11 minutes) nor the server's
   * own timeouts end a wait on a server that does not answer; without this, a stage, a run's records and a worker's
   * stop waited for ever. `tempered db migrate`, whose statements may rewrite large tables, waits for ever.
   */
  queryTimeoutMs?: number;
}

/**
 * Opens a SQLite file and brings `schema` up to date, or the PostgreSQL database a postgres:// URL
 * names, creating the scope's tables when it has none and refusing them when they are behind this
 * release (`tempered db migrate` brings them up: postgres.ts `migratePostgres`).
 */
export async function openDatabase(location: string, schema: Schema, opts: OpenOptions = {}): Promise<Database> {
  if (isDatabaseUrl(location)) {
    checkDatabaseUrl(location);
    const { openPostgres } = await import('./postgres.ts');
    return openPostgres(location, schema, opts);
  }
  const { openSqlite } = await import('./sqlite.ts');
  return openSqlite(location, schema);
}
