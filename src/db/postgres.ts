/**
 * The PostgreSQL side of `Database` (database.ts), on the `pg` driver with a small pool.
 *
 * - Writers of one lock name serialise on a transaction-scoped advisory lock, taken before the
 *   transaction reads anything: READ COMMITTED then shows each writer everything committed before
 *   it got the lock, so "read the last record, write the next" cannot fork across hosts.
 * - A connection that fails for a transient reason (refused, reset, server restarting, too many
 *   clients, serialization failure) is retried with backoff, the whole transaction again; one lost
 *   while committing is not retried here, since it may have committed: that error goes up as
 *   transient, and callers' idempotency keys make the caller's retry safe.
 * - A refused login or a missing database is an InputError naming TEMPERED_DATABASE_URL.
 */
import pg from 'pg';
import { connect, isIP } from 'node:net';
import { connect as tlsConnect, type ConnectionOptions, type TLSSocket } from 'node:tls';
import { setTimeout as sleep } from 'node:timers/promises';
import { errorChain, InputError } from '../errors.ts';
import {
  DATABASE_URL_ENV,
  redactUrl,
  type Database,
  type OpenOptions,
  type Params,
  type Queryable,
  type Schema,
  type WriteLock,
} from './database.ts';

/** Advisory lock keys: (LOCK_CLASS, id). The class is "temp" in ASCII, to stay clear of other users of the database. */
const LOCK_CLASS = 0x74656d70;
const LOCK_ID: Record<WriteLock | 'migrate', number> = { migrate: 0, registry: 1, audit: 2 };

const TRANSIENT_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EAI_AGAIN',
  'ENOTFOUND',
  '57P01', // admin_shutdown (server stopping or restarting)
  '57P02', // crash_shutdown
  '57P03', // cannot_connect_now (starting up)
  '53300', // too_many_connections
  '40001', // serialization_failure
  '40P01', // deadlock_detected
  '55P03', // lock_not_available: a lock wait that ran past the server's lock_timeout
]);

function errorCode(e: unknown): string | undefined {
  const c = (e as { code?: unknown })?.code;
  return typeof c === 'string' ? c : undefined;
}

/**
 * An error from pg or the server: one with a SQLSTATE or system error code, or a plain Error (pg
 * reports a dropped connection as one). tempered's own errors are subclasses and never match.
 */
function isDriverError(e: unknown): boolean {
  return errorCode(e) !== undefined || (e instanceof Error && e.constructor === Error);
}

/**
 * The server ended a statement that ran past statement_timeout, which is set a little below the client's query
 * timeout (serverTimeoutMs): the same event as a read timeout, seen from the server, which rolled the statement back.
 * By its code alone: the words are in the server's lc_messages, not English everywhere. The code also covers a cancel
 * (pg_cancel_backend, say), which rolls the statement back too; tempered's own cancel ends a connection no one uses again.
 */
function isStatementTimeout(e: unknown): boolean {
  return errorCode(e) === '57014';
}

/** A transient error that is the connection's (class 08, the server going away, or pg's own words), not the transaction's. */
function isConnectionLoss(e: unknown): boolean {
  const code = errorCode(e);
  if (code === '40001' || code === '40P01' || code === '55P03' || isStatementTimeout(e)) return false;
  return isTransient(e);
}

/** pg's query_timeout ran out: the server did not answer a statement in time (OpenOptions.queryTimeoutMs). */
function isReadTimeout(e: unknown): boolean {
  // Through the causes too: a caller's fn may wrap the driver's error in its own.
  for (const c of errorChain(e)) if (c.message === 'Query read timeout') return true;
  return false;
}

export function isTransient(e: unknown): boolean {
  const code = errorCode(e);
  // Class 08: connection exceptions; 57P: the server is shutting down, crashed or starting.
  if (code && (TRANSIENT_CODES.has(code) || code.startsWith('08') || code.startsWith('57P'))) return true;
  if (isStatementTimeout(e)) return true;
  const msg = e instanceof Error ? e.message : '';
  // `Query read timeout`: pg's query_timeout, a server that did not answer (OpenOptions.queryTimeoutMs).
  return /Query read timeout|Connection terminated|terminating connection|postmaster exit|connection timeout|timeout exceeded when trying to connect|Client has encountered a connection error|the database system is (starting up|shutting down|in recovery)/i.test(
    msg,
  );
}

/** Login and catalog errors are the URL's fault: retrying cannot help. */
function asInputError(e: unknown, where: string): InputError | undefined {
  const code = errorCode(e);
  const msg = e instanceof Error ? e.message : String(e);
  if (code === '28P01' || code === '28000')
    return new InputError(`PostgreSQL at ${where} refused the login: ${msg}`, {
      where: DATABASE_URL_ENV,
      hint: 'check the user and password in the URL (or PGPASSWORD / ~/.pgpass) and pg_hba.conf',
      cause: e,
    });
  if (code === '3D000')
    return new InputError(`PostgreSQL at ${where}: ${msg}`, {
      where: DATABASE_URL_ENV,
      hint: 'create it first (CREATE DATABASE …, owned by the user in the URL), or name an existing one',
      cause: e,
    });
  if (code === '42501')
    return new InputError(`PostgreSQL at ${where}: ${msg}`, {
      where: DATABASE_URL_ENV,
      hint: "the user needs read/write on tempered's tables, and CREATE on the schema (public) when tables are created or changed: on the first start and after an upgrade that brings a migration",
      cause: e,
    });
  // Data exceptions (class 22): a value PostgreSQL cannot store, such as a NUL character in text.
  if (code?.startsWith('22')) return new InputError(`PostgreSQL cannot store this value: ${msg}`, { cause: e });
  return undefined;
}

/** `?` placeholders → `$1, $2, …` (outside quoted literals). */
const converted = new Map<string, string>();
export function toPostgresParams(sql: string): string {
  let out = converted.get(sql);
  if (out === undefined) {
    let n = 0;
    out = sql.replace(/'(?:[^']|'')*'|"(?:[^"]|"")*"|\?/g, (m) => (m === '?' ? `$${++n}` : m));
    converted.set(sql, out);
  }
  return out;
}

const INT8_OID = 20;
/** BIGINT columns (COUNT, ids, byte sizes) come back as numbers, as they do from SQLite. */
function parseInt8(v: string): number {
  const n = Number(v);
  if (!Number.isSafeInteger(n)) throw new Error(`a BIGINT value ${v} is beyond JavaScript's safe integers`);
  return n;
}
const types = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    oid === INT8_OID && format !== 'binary' ? parseInt8 : pg.types.getTypeParser(oid, format as 'text')) as typeof pg.types.getTypeParser,
};

/** The protocol's CancelRequest code (1234 5678) and SSLRequest code (1234 5679). */
const CANCEL_REQUEST_CODE = 80877102;
const SSL_REQUEST_CODE = 80877103;

/** What cancelBackend reads of a pg Client: the backend's key and how the client reached the server. */
interface CancelTarget {
  processID?: number | null;
  secretKey?: number | null;
  host?: string;
  port?: number;
  /** pg's TLS settings for the connection (from the URL's sslmode/sslrootcert/…, or the ssl option); false: none. */
  ssl?: boolean | ConnectionOptions;
  sslNegotiation?: string;
}

/**
 * The TLS options pg's Connection.upgradeToSSL gives tls.connect for the client's own connection, so that the cancel
 * checks the server as that connection did (ca, cert, key, rejectUnauthorized, checkServerIdentity, servername).
 */
function tlsOptionsOf(ssl: true | ConnectionOptions, host: string, direct: boolean): ConnectionOptions {
  const options: ConnectionOptions = { host };
  if (ssl !== true) {
    Object.assign(options, ssl);
    // pg makes the key non-enumerable (it keeps it out of logs), so Object.assign leaves it behind.
    if ('key' in ssl) options.key = ssl.key;
  }
  if (direct) options.ALPNProtocols = ['postgresql'];
  // SNI must not be an IP address (RFC 6066); tls.connect then checks the certificate against `host`.
  if (isIP(host) === 0) options.servername = host;
  return options;
}

/**
 * Asks the server to cancel the statement `client`'s backend is running, as libpq's PQcancel does: a CancelRequest on
 * a connection of its own (the client's is busy with the statement), which the server takes without a login. Sent
 * when the client gave up on a statement the server did not end itself (its answer was late, or the session has a
 * statement_timeout of its own beyond the query timeout), so that the statement does not run on, holding its locks,
 * and an INSERT outside a transaction does not commit after its caller was told it failed. Best effort, and not
 * waited for: a server that answers nothing would not answer this either, so the socket is given up after a while.
 *
 * The request carries the backend's secret key, which lets whoever reads it cancel that backend's statements. So when
 * the client's connection is TLS, the cancel is too, with the same settings, negotiated as libpq does: an SSLRequest
 * and the server's 'S', or a TLS handshake at once under sslnegotiation=direct. A server that answers anything else
 * ('N': no TLS) gets nothing more: the key is never sent in clear where TLS was asked for. A Unix socket is plain, as
 * the client's own connection there is (PostgreSQL does no TLS on one).
 */
function cancelBackend(client: pg.PoolClient): void {
  const c = client as unknown as CancelTarget;
  if (typeof c.processID !== 'number' || typeof c.secretKey !== 'number' || !c.host || !c.port) return;
  const request = Buffer.alloc(16);
  request.writeInt32BE(16, 0);
  request.writeInt32BE(CANCEL_REQUEST_CODE, 4);
  request.writeInt32BE(c.processID, 8);
  request.writeInt32BE(c.secretKey, 12);
  // A host that is a folder is a Unix socket's, named as libpq names it.
  const unix = c.host.startsWith('/');
  const direct = c.sslNegotiation === 'direct';
  const tls = !unix && c.ssl ? tlsOptionsOf(c.ssl, c.host, direct) : undefined;
  let secure: TLSSocket | undefined;
  try {
    const socket = unix ? connect(`${c.host}/.s.PGSQL.${c.port}`) : connect(c.port, c.host);
    const giveUp = setTimeout(() => {
      secure?.destroy();
      socket.destroy();
    }, 5_000);
    socket.on('error', () => {});
    socket.on('close', () => clearTimeout(giveUp));
    const overTls = () => {
      try {
        secure = tlsConnect({ ...tls, socket });
      } catch {
        // Settings tls.connect refuses outright (a malformed key, say) failed the client's own connection too.
        socket.destroy();
        return;
      }
      secure.on('error', () => socket.destroy());
      secure.on('secureConnect', () => secure!.end(request));
    };
    if (!tls) socket.on('connect', () => socket.end(request));
    else if (direct) socket.on('connect', overTls);
    else {
      socket.on('connect', () => {
        const sslRequest = Buffer.alloc(8);
        sslRequest.writeInt32BE(8, 0);
        sslRequest.writeInt32BE(SSL_REQUEST_CODE, 4);
        socket.write(sslRequest);
      });
      // Exactly the one byte 'S': bytes after it, before the handshake, would be taken unencrypted (CVE-2021-23222).
      socket.once('data', (answer: Buffer) => (answer.length === 1 && answer[0] === 0x53 ? overTls() : socket.destroy()));
    }
  } catch {
    // Best effort: a cancel that cannot even start leaves the statement to the server's own timeouts.
  }
}

async function send(c: pg.PoolClient, sql: string, params?: unknown[]): Promise<pg.QueryResult> {
  try {
    return await c.query(sql, params);
  } catch (e) {
    if (isReadTimeout(e)) cancelBackend(c);
    throw e;
  }
}

function queryable(c: pg.PoolClient): Queryable {
  return {
    dialect: 'postgres',
    all: async <T>(sql: string, params: Params = []) => (await send(c, toPostgresParams(sql), params as unknown[])).rows as T[],
    get: async <T>(sql: string, params: Params = []) =>
      (await send(c, toPostgresParams(sql), params as unknown[])).rows[0] as T | undefined,
    run: async (sql: string, params: Params = []) => (await send(c, toPostgresParams(sql), params as unknown[])).rowCount ?? 0,
  };
}

class CommitLost extends Error {
  override name = 'CommitLost';
}

/** A statement outside a transaction that the client gave up on: it may have committed before the cancel reached it. */
class OutcomeUnknown extends Error {
  override name = 'OutcomeUnknown';
}

export class PostgresDatabase implements Database {
  readonly dialect = 'postgres' as const;

  /**
   * Sent with every BEGIN: a write holds a lock that every writer on every host waits for, so a
   * writer that stalls inside its transaction (a frozen VM, a dead network path the server has not
   * noticed) must not hold it for ever: the server ends such a transaction after
   * idle_in_transaction_session_timeout, and a waiter gives up after lock_timeout and is retried.
   * Local to the transaction, and only where the session has no value of its own (0 is "none"),
   * so a URL's `options=-c lock_timeout=…` still rules, and a pooler's session is left as it was.
   */
  private readonly bounds: string;

  constructor(
    private readonly pool: pg.Pool,
    readonly where: string,
    private readonly retryForMs: number,
    limits: { lockTimeoutMs?: number; idleInTransactionMs?: number } = {},
  ) {
    const bound = (name: string, ms: number) =>
      `SELECT set_config('${name}', '${Math.max(1, Math.round(ms))}ms', true) WHERE current_setting('${name}') = '0'`;
    this.bounds = [
      bound('lock_timeout', limits.lockTimeoutMs ?? 10_000),
      bound('idle_in_transaction_session_timeout', limits.idleInTransactionMs ?? 60_000),
    ].join('; ');
  }

  /** Runs `fn`, again after a backoff while it fails for a transient reason and time is left. */
  private async retrying<T>(fn: () => Promise<T>): Promise<T> {
    const deadline = Date.now() + this.retryForMs;
    for (let attempt = 0; ; attempt++) {
      try {
        return await fn();
      } catch (e) {
        const input = asInputError(e, this.where);
        if (input) throw input;
        // Only the driver's and the server's errors can be transient: an error of tempered's own
        // (an InputError, say) is thrown as it is, whatever its message says.
        if (e instanceof CommitLost || e instanceof OutcomeUnknown || e instanceof InputError || !isDriverError(e) || !isTransient(e))
          throw e;
        const wait = Math.min(100 * 2 ** attempt, 2000) * (0.5 + Math.random() / 2);
        if (Date.now() + wait > deadline) {
          throw new Error(
            `PostgreSQL at ${this.where} is unavailable (${(e as Error).message}; tried ${attempt + 1} times over ${Math.round(this.retryForMs / 1000)} s); check that it is running and reachable, and ${DATABASE_URL_ENV}`,
            { cause: e },
          );
        }
        await sleep(wait);
      }
    }
  }

  all<T>(sql: string, params?: Params): Promise<T[]> {
    return this.retrying(() => this.direct((q) => q.all<T>(sql, params)));
  }
  get<T>(sql: string, params?: Params): Promise<T | undefined> {
    return this.retrying(() => this.direct((q) => q.get<T>(sql, params)));
  }
  run(sql: string, params?: Params): Promise<number> {
    return this.retrying(() =>
      this.direct(async (q) => {
        try {
          return await q.run(sql, params);
        } catch (e) {
          // A write of its own, committed by the server as it ends: one the client gave up on may have committed before
          // the cancel came (its answer lost or late), so trying it again could apply it twice. (A statement the
          // server ended at its statement_timeout did not commit, and is tried again like any transient failure.)
          if (!isReadTimeout(e)) throw e;
          throw new OutcomeUnknown(
            `PostgreSQL at ${this.where} did not answer a write in time, so it may or may not be saved: ${(e as Error).message}`,
            { cause: e },
          );
        }
      }),
    );
  }

  /** One statement outside a transaction, on a pooled connection that is dropped when the statement timed out or lost it. */
  private async direct<T>(fn: (q: Queryable) => Promise<T>): Promise<T> {
    const client = await this.pool.connect();
    let broken: Error | undefined;
    const onError = (e: Error) => (broken = e);
    client.on('error', onError);
    try {
      return await fn(queryable(client));
    } catch (e) {
      // A connection whose statement timed out still has it running, or just cancelled: not for the next caller.
      if (isReadTimeout(e) || isConnectionLoss(e)) broken = e as Error;
      throw e;
    } finally {
      client.off('error', onError);
      client.release(broken);
    }
  }

  write<T>(lock: WriteLock | readonly WriteLock[], fn: (q: Queryable) => Promise<T>): Promise<T> {
    // Several locks in one order everywhere (by id), so two writers that each take two cannot wait on each other.
    const ids = (typeof lock === 'string' ? [lock] : [...lock]).map((l) => LOCK_ID[l]).sort((a, b) => a - b);
    // READ COMMITTED named, not the server's default: under a database default of REPEATABLE READ or SERIALIZABLE the
    // snapshot would be fixed by the lock's statement, before its wait, and a writer would read what it waited behind.
    return this.transaction('BEGIN ISOLATION LEVEL READ COMMITTED', ids, fn);
  }

  snapshot<T>(fn: (q: Queryable) => Promise<T>): Promise<T> {
    return this.transaction('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY', [], fn);
  }

  /** One transaction on one pooled connection, retried whole while it fails before COMMIT. */
  transaction<T>(begin: string, lockIds: readonly number[], fn: (q: Queryable) => Promise<T>): Promise<T> {
    return this.retrying(async () => {
      const client = await this.pool.connect();
      let broken: Error | undefined;
      // A checked-out connection that the server drops between two queries reports it as an event;
      // unheard, it would crash the process. The next query on it then fails and is retried.
      const onError = (e: Error) => (broken = e);
      client.on('error', onError);
      try {
        let result: T;
        try {
          // BEGIN and the lock in one round trip: a query without parameters may hold several
          // statements. Inside the ROLLBACK's reach: a lock that times out (lock_timeout) leaves the
          // transaction open and aborted, and the connection must not go back to the pool so.
          await send(
            client,
            [`${begin}; ${this.bounds}`, ...lockIds.map((id) => `SELECT pg_advisory_xact_lock(${LOCK_CLASS}, ${id})`)].join('; '),
          );
          result = await fn(queryable(client));
        } catch (e) {
          // A server that did not answer the statement would not answer the ROLLBACK either (it would wait out a
          // second query_timeout); the connection is dropped instead (and the statement cancelled, by send), which ends
          // the transaction on the server without a COMMIT. A statement the server ended itself (statement_timeout)
          // left the transaction aborted, and the ROLLBACK makes the connection fit for the next caller.
          if (isReadTimeout(e)) broken = e as Error;
          else await client.query('ROLLBACK').catch((r: Error) => (broken = r));
          throw e;
        }
        try {
          await send(client, 'COMMIT');
        } catch (e) {
          if (!isTransient(e)) throw e;
          broken = e as Error;
          throw new CommitLost(
            `the connection to PostgreSQL at ${this.where} was lost while committing, so the change may or may not be saved: ${(e as Error).message}`,
            { cause: e },
          );
        }
        return result;
      } catch (e) {
        // A lost connection is not handed on; after a serialization failure, deadlock or lock
        // timeout the ROLLBACK above went through and the connection is as good as new.
        if (isConnectionLoss(e)) broken = e as Error;
        throw e;
      } finally {
        // A broken connection is dropped from the pool instead of being handed to the next caller.
        client.off('error', onError);
        client.release(broken);
      }
    });
  }

  async close(): Promise<void> {
    await this.pool.end();
  }
}

export async function openPostgres(url: string, schema: Schema, opts: OpenOptions = {}): Promise<PostgresDatabase> {
  const db = openPostgresPool(url, opts);
  try {
    await migrate(db, schema, false);
    return db;
  } catch (e) {
    await db.close().catch(() => {});
    throw e;
  }
}

/**
 * OpenOptions.queryTimeoutMs's default: far beyond a stage's statements, which are small; gc's sweep of the training
 * points and an unfiltered audit read of a large log are the longest (TEMPERED_DB_QUERY_TIMEOUT_S raises it; 0: none).
 */
const DEFAULT_QUERY_TIMEOUT_MS = 120_000;

function queryTimeoutMs(opts: OpenOptions): number {
  if (opts.queryTimeoutMs !== undefined) return opts.queryTimeoutMs;
  const raw = process.env.TEMPERED_DB_QUERY_TIMEOUT_S;
  if (raw === undefined || raw.trim() === '') return DEFAULT_QUERY_TIMEOUT_MS;
  const s = Number(raw);
  if (!Number.isFinite(s) || s < 0)
    throw new InputError(`TEMPERED_DB_QUERY_TIMEOUT_S=${raw} is not a number of seconds`, {
      where: 'TEMPERED_DB_QUERY_TIMEOUT_S',
      hint: 'give the most one statement may wait for the database, in seconds (default 120; 0 waits for ever)',
    });
  return s * 1000;
}

/**
 * The server's statement_timeout for a client query timeout: a little below it (a fifth, at most 5 s), so that the
 * server ends a slow statement itself, rolls it back and says so before the client gives up. Only a server whose answer
 * is late by more than that margin, or does not answer at all, leaves the client to give up and cancel (cancelBackend).
 */
function serverTimeoutMs(queryTimeoutMs: number): number {
  return Math.max(1, Math.round(queryTimeoutMs - Math.min(5_000, queryTimeoutMs / 5)));
}

function openPostgresPool(url: string, opts: OpenOptions): PostgresDatabase {
  const timeoutMs = queryTimeoutMs(opts);
  const pool = new pg.Pool({
    connectionString: url,
    // A peer that vanished without a word (power cut, dead route) is noticed by TCP keepalives
    // instead of after the system's two hours.
    keepAlive: true,
    keepAliveInitialDelayMillis: 10_000,
    max: 4,
    connectionTimeoutMillis: 10_000,
    idleTimeoutMillis: 10_000,
    ...(timeoutMs > 0 ? { query_timeout: timeoutMs } : {}),
    // An idle pool does not keep a CLI command's process alive.
    allowExitOnIdle: true,
    types,
    application_name: 'tempered',
  });
  // Idle connections that the server drops (restart, failover) emit here; without a listener the
  // process would crash. The next query opens a new connection.
  pool.on('error', () => {});
  if (timeoutMs > 0) {
    // For the session, since a statement outside a transaction needs it too; only where the session has no value of
    // its own (the URL's `options`, the role's or the database's settings), as with the transaction's bounds. Sent
    // before anything else on the connection (pg runs a client's queries in order, and the pool emits this before
    // handing the client out); one that fails has most likely lost its connection, and the caller's statement fails with it.
    const setting = `SELECT set_config('statement_timeout', '${serverTimeoutMs(timeoutMs)}ms', false) WHERE current_setting('statement_timeout') = '0'`;
    pool.on('connect', (client) => void client.query(setting).catch(() => {}));
  }
  return new PostgresDatabase(pool, redactUrl(url), opts.retryForMs ?? 15_000, opts);
}

/** What a migration of a scope did: its version before and after (equal when there was nothing to do). */
export interface Migrated {
  scope: string;
  from: number;
  to: number;
}

/**
 * Applies a scope's missing migrations, all in one transaction under an advisory lock, so hosts
 * starting together apply each once. A database already at this version is only read: no lock, and
 * no CREATE privilege, so a role that can only read and write tempered's tables opens it.
 *
 * A scope with no tables yet is created by whoever opens it first. One that has tables and is behind
 * is migrated only when asked (`tempered db migrate`, `apply`): the database is the whole team's, and
 * a migration locks out every older process, so it must not follow from one person running a newer
 * checkout's `tempered models list`. Until then this release refuses it (a plain error, so a stage
 * that meets it is retried; a new worker does not poll meanwhile: `tempered worker` waits for it).
 */
async function migrate(db: PostgresDatabase, schema: Schema, apply: boolean): Promise<Migrated> {
  const known = newestVersion(schema);
  const at = await schemaVersion(db, schema.scope);
  if (at === known) return { scope: schema.scope, from: at, to: at };
  if (at > known) throw newerSchema(schema.scope, at, known);
  if (at > 0 && !apply) throw behindSchema(schema.scope, db.where, at, known);
  let from = at;
  await db.transaction('BEGIN', [LOCK_ID.migrate], async (q) => {
    await q.run(`CREATE TABLE IF NOT EXISTS schema_migrations (
      scope TEXT NOT NULL, version INTEGER NOT NULL, name TEXT NOT NULL, applied_at TEXT NOT NULL,
      PRIMARY KEY (scope, version))`);
    const done = new Set(
      (await q.all<{ version: number }>('SELECT version FROM schema_migrations WHERE scope = ?', [schema.scope])).map((r) => r.version),
    );
    const newest = Math.max(0, ...done);
    if (newest > known) throw newerSchema(schema.scope, newest, known);
    // Read again under the lock: another host may have created or migrated it meanwhile.
    from = newest;
    if (newest > 0 && newest < known && !apply) throw behindSchema(schema.scope, db.where, newest, known);
    for (const m of [...schema.postgres].sort((a, b) => a.version - b.version)) {
      if (done.has(m.version)) continue;
      await q.run(m.sql);
      await q.run('INSERT INTO schema_migrations (scope, version, name, applied_at) VALUES (?, ?, ?, ?)', [
        schema.scope,
        m.version,
        m.name,
        new Date().toISOString(),
      ]);
    }
  });
  return { scope: schema.scope, from, to: known };
}

function behindSchema(scope: string, where: string, at: number, known: number): Error {
  return new Error(
    `the ${scope} tables in ${where} are at version ${at} and this tempered needs version ${known}: stop the workers and other processes of the older release, then run \`tempered db migrate\` once (README, Deployment: upgrading workers)`,
  );
}

function newerSchema(scope: string, at: number, known: number): Error {
  return new Error(
    `${scope} schema is at version ${at} but this tempered knows up to ${known}; upgrade tempered before opening this database`,
  );
}

/** The newest migration of `scope` applied to the database; 0 when it has none (or no table of migrations yet). */
async function schemaVersion(db: PostgresDatabase, scope: string): Promise<number> {
  // Two statements: a query naming a table that does not exist fails as a whole, whatever CASE says.
  const present = await db.get<{ present: boolean }>(`SELECT to_regclass('schema_migrations') IS NOT NULL AS present`);
  if (!present?.present) return 0;
  const current = await db.get<{ newest: number | null }>('SELECT max(version) AS newest FROM schema_migrations WHERE scope = ?', [scope]);
  return current?.newest ?? 0;
}

/** Each scope's version in the PostgreSQL database at `url` (0: no tables yet) and the one this release knows; reads only. */
export async function schemaVersions(
  url: string,
  schemas: readonly Schema[],
  opts: OpenOptions = {},
): Promise<{ scope: string; at: number; known: number }[]> {
  const db = openPostgresPool(url, opts);
  try {
    const out: { scope: string; at: number; known: number }[] = [];
    for (const s of schemas) out.push({ scope: s.scope, at: await schemaVersion(db, s.scope), known: newestVersion(s) });
    return out;
  } finally {
    await db.close();
  }
}

/**
 * Brings each scope of the PostgreSQL database at `url` up to this release (`tempered db migrate`),
 * in turn, each in its own transaction. `onMigrated` hears of each scope as it is done, so a caller
 * still knows what was applied when a later scope fails.
 */
export async function migratePostgres(
  url: string,
  schemas: readonly Schema[],
  opts: OpenOptions = {},
  onMigrated: (m: Migrated) => void = () => {},
): Promise<Migrated[]> {
  const db = openPostgresPool(url, { queryTimeoutMs: 0, ...opts });
  try {
    const out: Migrated[] = [];
    for (const schema of schemas) {
      out.push(await migrate(db, schema, true));
      onMigrated(out.at(-1)!);
    }
    return out;
  } finally {
    await db.close();
  }
}

/** The version a release brings a scope's PostgreSQL tables to. */
function newestVersion(schema: Schema): number {
  return Math.max(0, ...schema.postgres.map((m) => m.version));
}
