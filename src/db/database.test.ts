import { describe, test } from 'node:test';
import pg from 'pg';
import assert from 'node:assert/strict';
import { InputError } from '../errors.ts';
import { statePaths } from '../state-paths.ts';
import { openAudit } from '../audit/log.ts';
import { openRegistry } from '../registry/registry.ts';
import { checkDatabaseUrl, openDatabase, redactUrl, type Schema } from './database.ts';
import { isTransient, migratePostgres, toPostgresParams } from './postgres.ts';
import { postgresUnavailable, useDatabases } from './postgres.testing.ts';

test('TEMPERED_DATABASE_URL: a malformed or foreign URL is an input error naming the variable, never a file name', () => {
  const bad: [string, RegExp][] = [
    ['localhost:5432/tempered', /scheme 'localhost' is not supported/],
    ['mysql://u:p@db/tempered', /scheme 'mysql' is not supported/],
    ['postgres://u:secret@db.example:5432', /names no database/],
    ['postgres:///tempered', /names no host/],
    ['postgres://u:secret@db.example:99999/tempered', /not a valid URL/],
  ];
  for (const [url, re] of bad) {
    assert.throws(
      () => statePaths('/state', { TEMPERED_DATABASE_URL: url }),
      (e: unknown) => e instanceof InputError && e.where === 'TEMPERED_DATABASE_URL' && re.test(e.message) && !e.message.includes('secret'),
      url,
    );
  }
  // The common forms (a # or / in the password) fail to parse at all: the hint says to percent-encode too.
  for (const url of ['postgres://u:p#1@127.0.0.1:5432/tempered', 'postgres://u:pa/ss@127.0.0.1:5432/tempered'])
    assert.throws(
      () => statePaths('/state', { TEMPERED_DATABASE_URL: url }),
      (e: unknown) => e instanceof InputError && /must be percent-encoded/.test(e.hint ?? ''),
      url,
    );
  // A password with # and @ unencoded: the parser takes part of it for the host; neither is shown, and the hint says why.
  assert.throws(
    () => statePaths('/state', { TEMPERED_DATABASE_URL: 'postgres://tempered:p@ss#1@127.0.0.1:15432/tempered' }),
    (e: unknown) =>
      e instanceof InputError &&
      /: the URL names no database$/.test(e.message) &&
      /must be percent-encoded \(%40 %23 %3F %2F\)/.test(e.hint ?? ''),
  );
  const p = statePaths('/state', { TEMPERED_DATABASE_URL: 'postgresql://tempered:pw@db.example/reg?sslmode=require' });
  assert.equal(p.registryDb, 'postgresql://tempered:pw@db.example/reg?sslmode=require');
  assert.equal(p.auditDb, p.registryDb);
  assert.equal(statePaths('/state', { TEMPERED_DATABASE_URL: ' ' }).registryDb, '/state/registry.db', 'blank means unset');
  assert.equal(checkDatabaseUrl('postgres:///tempered?host=/run/postgresql').pathname, '/tempered');
  assert.equal(redactUrl('postgres://alice:s3cret@db:5432/reg?password=x'), 'postgres://alice@db:5432/reg');
});

test('TEMPERED_DB_QUERY_TIMEOUT_S that is not a number of seconds is an input error naming it', async () => {
  const saved = process.env.TEMPERED_DB_QUERY_TIMEOUT_S;
  try {
    for (const bad of ['soon', '-1']) {
      process.env.TEMPERED_DB_QUERY_TIMEOUT_S = bad;
      await assert.rejects(
        openDatabase('postgres://u:p@127.0.0.1:9/tempered', { scope: 'x', sqlite: [], postgres: [] }),
        (e: unknown) =>
          e instanceof InputError && e.where === 'TEMPERED_DB_QUERY_TIMEOUT_S' && /default 120; 0 waits for ever/.test(e.hint ?? ''),
        bad,
      );
    }
  } finally {
    if (saved === undefined) delete process.env.TEMPERED_DB_QUERY_TIMEOUT_S;
    else process.env.TEMPERED_DB_QUERY_TIMEOUT_S = saved;
  }
});

test('? placeholders become $n outside quoted text', () => {
  assert.equal(
    toPostgresParams("SELECT ? , '?', \"a?\" FROM t WHERE a = ? AND b = 'it''s ?'"),
    "SELECT $1 , '?', \"a?\" FROM t WHERE a = $2 AND b = 'it''s ?'",
  );
});

test("a statement the server ended at tempered's statement_timeout is transient, in the server's language too", () => {
  // lc_messages is the server's (or the role's or the database's): the words are not English on every server, and the
  // code alone says it. A German server's, which was thrown at once as a hard error instead of being retried.
  for (const message of ['canceling statement due to statement timeout', 'storniere Anfrage wegen Zeitüberschreitung der Anweisung']) {
    const e = Object.assign(new pg.DatabaseError(message, 0, 'error'), { code: '57014' });
    assert.equal(isTransient(e), true, message);
  }
});

describe('postgres connections', { skip: postgresUnavailable() }, () => {
  const db = useDatabases('postgres');

  test('a wrong password or a missing database is an input error naming TEMPERED_DATABASE_URL, without the password', async (t) => {
    const url = new URL(await db.fresh(t));
    const wrong = Object.assign(new URL(url), { password: 'not-the-password' }).toString();
    await assert.rejects(
      () => openRegistry(wrong),
      (e: unknown) =>
        e instanceof InputError &&
        e.where === 'TEMPERED_DATABASE_URL' &&
        /refused the login/.test(e.message) &&
        !e.message.includes('not-the-password'),
    );
    const missing = Object.assign(new URL(url), { pathname: '/no_such_db' }).toString();
    await assert.rejects(
      () => openAudit(missing),
      (e: unknown) => e instanceof InputError && /no_such_db/.test(e.message) && /CREATE DATABASE/.test(e.hint ?? ''),
    );
  });

  test(
    'a server that restarts between two writes: the next write waits for it and the chain stays whole',
    { timeout: 120_000 },
    async (t) => {
      const url = await db.fresh(t);
      const log = await openAudit(url, { retryForMs: 60_000 });
      await log.append({ action: 'run.submitted', subject: 'before' });
      // The restart (fast shutdown) drops the pooled connection; the append after it retries through
      // "connection refused" and "the database system is starting up" until the server is back.
      const restarted = db.server().restart();
      const appended = log.append({ action: 'run.submitted', subject: 'after', dedupeKey: 'after' });
      await restarted;
      await appended;
      assert.deepEqual(
        (await log.query()).map((r) => r.subject),
        ['before', 'after'],
      );
      assert.deepEqual(await log.verify(), { ok: true, checked: 2 });
      await log.close();
    },
  );

  test('a write whose lock wait times out (lock_timeout) is tried again, and its connection stays usable', async (t) => {
    const url = new URL(await db.fresh(t));
    url.searchParams.set('options', '-c lock_timeout=200');
    const log = await openAudit(url.toString());
    t.after(() => log.close());
    await log.append({ action: 'test.first', subject: 's', actor: 'test' });
    const holder = new pg.Client({ connectionString: url.toString() });
    await holder.connect();
    t.after(() => holder.end());
    // The audit log's write lock, held by another session (the key is postgres.ts's LOCK_CLASS and audit id).
    await holder.query('SELECT pg_advisory_lock(1952804208, 2)');
    let settled = false;
    const blocked = log.append({ action: 'test.blocked', subject: 's', actor: 'test' }).finally(() => (settled = true));
    // Long enough for several lock waits to time out, each on the connection the next try reuses.
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal(settled, false, 'still trying while the lock is held');
    await holder.query('SELECT pg_advisory_unlock(1952804208, 2)');
    await blocked;
    for (let i = 0; i < 3; i++) await log.append({ action: 'test.after', subject: `s${i}`, actor: 'test' });
    assert.equal((await log.query({})).length, 5);
    assert.equal((await log.verify()).ok, true);
  });

  test('a writer that stalls inside its transaction holds the write lock only until the server ends it; the writers waiting go on', async (t) => {
    const url = await db.fresh(t);
    const schema = {
      scope: 'stall-test',
      sqlite: [],
      postgres: [{ version: 1, name: 'notes', sql: 'CREATE TABLE notes (who TEXT NOT NULL)' }],
    };
    const limits = { lockTimeoutMs: 100, idleInTransactionMs: 700, retryForMs: 20_000 };
    const stalled = await openDatabase(url, schema, limits);
    const waiter = await openDatabase(url, schema, limits);
    t.after(async () => {
      await stalled.close();
      await waiter.close();
    });
    // The first writer takes the registry lock and then hangs (a frozen VM, say) until released.
    let release!: () => void;
    let locked!: () => void;
    const holding = new Promise<void>((r) => (locked = r));
    const released = new Promise<void>((r) => (release = r));
    let attempts = 0;
    const first = stalled
      .write('registry', async (q) => {
        attempts++;
        await q.run('INSERT INTO notes (who) VALUES (?)', ['stalled']);
        locked();
        await released;
        await q.run('INSERT INTO notes (who) VALUES (?)', ['stalled, later']);
      })
      .then(
        () => 'committed',
        (e: Error) => e.message,
      );
    await holding;
    // Another writer waits for the lock (each wait ends after lock_timeout and is tried again) and
    // gets it once the server has ended the stalled transaction.
    await waiter.write('registry', (q) => q.run('INSERT INTO notes (who) VALUES (?)', ['waiter']));
    release();
    // The stalled writer's transaction was rolled back; its retry (the whole function) then commits.
    // (At least one retry: on a loaded machine the retry too may sit idle past idleInTransactionMs and
    // be ended. Each attempt inserts 'stalled', so the rows below show all but one rolled back.)
    assert.equal(await first, 'committed');
    assert.ok(attempts >= 2, `the stalled writer was retried (${attempts} attempts)`);
    const rows = (await waiter.all<{ who: string }>('SELECT who FROM notes')).map((r) => r.who).sort();
    assert.deepEqual(rows, ['stalled', 'stalled, later', 'waiter']);
  });

  test('a role that can only read and write the tables opens an up-to-date registry and audit log; a fresh database tells it what it lacks', async (t) => {
    const url = await db.fresh(t);
    await (await openRegistry(url)).close();
    await (await openAudit(url)).close();
    const role = `app_${process.pid}_${Date.now().toString(36)}`;
    const admin = new pg.Client({ connectionString: url });
    await admin.connect();
    t.after(() => admin.end());
    const dbName = new URL(url).pathname.slice(1);
    await admin.query(`CREATE ROLE ${role} LOGIN PASSWORD 'app-pw'`);
    await admin.query(`GRANT CONNECT ON DATABASE ${dbName} TO ${role}`);
    await admin.query(`REVOKE CREATE ON SCHEMA public FROM PUBLIC`);
    await admin.query(`GRANT USAGE ON SCHEMA public TO ${role}`);
    await admin.query(`GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO ${role}`);
    await admin.query(`GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO ${role}`);
    const appUrl = Object.assign(new URL(url), { username: role, password: 'app-pw' }).toString();
    const reg = await openRegistry(appUrl);
    const sha = (c: string) => c.repeat(64);
    await reg.registerVersion({
      name: 'm',
      runId: 'r',
      stageId: 's',
      specHash: sha('a'),
      data: [],
      artifacts: [{ role: 'onnx', uri: 'u', sha256: sha('b'), bytes: 1 }],
    });
    await reg.close();
    const log = await openAudit(appUrl);
    await log.append({ action: 'test.least_privilege', subject: 'm' });
    await log.close();
    // A database whose tables are not there yet needs CREATE: the error says so, naming the setting.
    const fresh = new URL(await db.fresh(t));
    await admin.query(`GRANT CONNECT ON DATABASE ${fresh.pathname.slice(1)} TO ${role}`);
    const freshAdmin = new pg.Client({ connectionString: fresh.toString() });
    await freshAdmin.connect();
    await freshAdmin.query(`REVOKE CREATE ON SCHEMA public FROM PUBLIC`);
    await freshAdmin.end();
    await assert.rejects(
      () => openRegistry(Object.assign(fresh, { username: role, password: 'app-pw' }).toString()),
      (e: unknown) => e instanceof InputError && e.where === 'TEMPERED_DATABASE_URL' && /CREATE on the schema/.test(e.hint ?? ''),
    );
  });

  test('a scope with tables that are behind is migrated only when asked (`tempered db migrate`); one with none is created by whoever opens it', async (t) => {
    const url = await db.fresh(t);
    const one = { version: 1, name: 'one', sql: 'CREATE TABLE probe (a INTEGER)' };
    const v1: Schema = { scope: 'probe', sqlite: [], postgres: [one] };
    const v2: Schema = { ...v1, postgres: [one, { version: 2, name: 'two', sql: 'ALTER TABLE probe ADD COLUMN b TEXT' }] };
    const columns = async () => {
      const c = new pg.Client({ connectionString: url });
      await c.connect();
      try {
        const r = await c.query<{ c: string }>(
          `SELECT column_name AS c FROM information_schema.columns WHERE table_name = 'probe' ORDER BY c`,
        );
        return r.rows.map((x) => x.c);
      } finally {
        await c.end();
      }
    };
    await (await openDatabase(url, v1)).close();
    // A newer release opening it: refused, naming the step, and retryable (a stage waits for the migration).
    await assert.rejects(
      () => openDatabase(url, v2),
      (e: unknown) =>
        !(e instanceof InputError) &&
        /the probe tables in postgres:\/\/\S+ are at version 1 and this tempered needs version 2: .*run `tempered db migrate` once/.test(
          (e as Error).message,
        ),
    );
    assert.deepEqual(await columns(), ['a'], 'nothing was migrated');
    assert.deepEqual(await migratePostgres(url, [v2]), [{ scope: 'probe', from: 1, to: 2 }]);
    assert.deepEqual(await columns(), ['a', 'b']);
    await (await openDatabase(url, v2)).close();
    assert.deepEqual(await migratePostgres(url, [v2]), [{ scope: 'probe', from: 2, to: 2 }], 'a second migration finds nothing to do');
    // The older release is refused by the migrated database, as before.
    await assert.rejects(() => openDatabase(url, v1), /probe schema is at version 2 but this tempered knows up to 1; upgrade tempered/);
    // A scope with no tables yet is created at the release's version by a plain open.
    const fresh: Schema = {
      scope: 'probe_fresh',
      sqlite: [],
      postgres: v2.postgres.map((m) => ({ ...m, sql: m.sql.replaceAll('probe', 'probe_fresh') })),
    };
    await (await openDatabase(url, fresh)).close();
    assert.deepEqual(await migratePostgres(url, [fresh]), [{ scope: 'probe_fresh', from: 2, to: 2 }]);
  });

  test("an error of tempered's own inside a write is thrown as it is, at once, whatever its words (never retried as a lost connection)", async (t) => {
    const reg = await openRegistry(await db.fresh(t), { retryForMs: 3000 });
    t.after(() => reg.close());
    const sha = (c: string) => c.repeat(64);
    // A run id that reads like pg's own connection errors, in the InputError a second name gets.
    const base = {
      runId: 'connection timeout',
      stageId: 's',
      specHash: sha('a'),
      data: [],
      artifacts: [{ role: 'onnx', uri: 'u', sha256: sha('b'), bytes: 1 }],
    };
    await reg.registerVersion({ ...base, name: 'a' });
    // Retried, it would come out after the retry time as a plain "PostgreSQL … is unavailable".
    await assert.rejects(
      () => reg.registerVersion({ ...base, name: 'b' }),
      (e: unknown) => e instanceof InputError && /connection timeout/.test((e as Error).message),
    );
  });

  test('a server that does not answer (frozen): a statement gives up after the query timeout, as unavailable, in a transaction too; answered again once back', async (t) => {
    // Before, nothing ended the wait: TCP keepalives are answered by a frozen server's kernel, and a stage, a run's
    // records and a stopping worker waited for ever.
    const url = await db.fresh(t);
    const sql = 'CREATE TABLE frozen (a TEXT)';
    const schema: Schema = { scope: 'frozen', sqlite: [], postgres: [{ version: 1, name: 'frozen', sql }] };
    const d = await openDatabase(url, schema, { queryTimeoutMs: 500, retryForMs: 0 });
    t.after(() => d.close());
    // Two connections in the pool, so that the transaction below begins on one that is open (not a new one, whose
    // connect would time out first).
    await Promise.all([d.get('SELECT pg_sleep(0.2)'), d.get('SELECT pg_sleep(0.2)')]);
    const server = db.server();
    server.pause();
    try {
      const unanswered = (e: unknown) => !(e instanceof InputError) && /is unavailable \(Query read timeout;/.test((e as Error).message);
      await assert.rejects(d.get('SELECT 2 AS two'), unanswered);
      await assert.rejects(
        d.write('registry', (q) => q.run('INSERT INTO frozen (a) VALUES (?)', ['x'])),
        unanswered,
      );
    } finally {
      server.resume();
    }
    // The connections that were given up are dropped, not handed out again: the next statements are answered.
    assert.deepEqual(await d.get('SELECT 3 AS three'), { three: 3 });
    await d.write('registry', (q) => q.run('INSERT INTO frozen (a) VALUES (?)', ['y']));
    assert.deepEqual(await d.all('SELECT a FROM frozen'), [{ a: 'y' }]);
  });

  for (const ender of ['the server (our statement_timeout)', 'a cancel request (the session has a longer statement_timeout of its own)'])
    test(`a statement that runs past the query timeout is ended on the server by ${ender}: a write the caller was told failed never commits later`, async (t) => {
      // Before, only the client gave up: the server ran the statement on, so an INSERT outside a transaction committed
      // after its caller was told it had failed, and a write transaction's statement held the write lock every host
      // waits for until whatever it waited on was over.
      const url = new URL(await db.fresh(t));
      if (ender.startsWith('a cancel')) url.searchParams.set('options', '-c statement_timeout=600000');
      const schema: Schema = { scope: 'late', sqlite: [], postgres: [{ version: 1, name: 'late', sql: 'CREATE TABLE late (a TEXT)' }] };
      // lock_timeout far beyond the query timeout, so that only the query timeout can end the lock wait below. The
      // server's timeout is then 4 s: a second before the client's, so that a loaded machine still hears it first.
      const d = await openDatabase(url.toString(), schema, { queryTimeoutMs: 5000, retryForMs: 0, lockTimeoutMs: 600_000 });
      // The cancel request is not waited for: the next writer's lock waits are tried again while it lands.
      const next = await openDatabase(url.toString(), schema, { lockTimeoutMs: 100, retryForMs: 10_000 });
      const admin = new pg.Client({ connectionString: url.toString() });
      await admin.connect();
      t.after(async () => {
        await d.close();
        await next.close();
        await admin.end();
      });
      // Waits until no statement of tempered's runs in this database: the server has ended them, or they ran out.
      const settled = async () => {
        for (;;) {
          const busy = await admin.query<{ n: number }>(
            `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'tempered' AND state <> 'idle'`,
          );
          if (busy.rows[0]!.n === 0) return;
          await new Promise((r) => setTimeout(r, 100));
        }
      };
      // Ended by the server, the statement did not commit and the caller is told so; given up by the client, it may
      // have committed just before the cancel came, and the caller is told that instead (and it is not tried again).
      const told = ender.startsWith('a cancel') ? /did not answer a write in time, so it may or may not be saved/ : /statement timeout/;
      await assert.rejects(d.run("INSERT INTO late (a) SELECT 'outside a transaction' FROM pg_sleep(20)"), told);
      // A write transaction whose statement waits for a lock another session holds.
      await admin.query('SELECT pg_advisory_lock(42)');
      await assert.rejects(
        d.write('registry', async (q) => {
          await q.run("INSERT INTO late (a) VALUES ('in a transaction')");
          await q.run('SELECT pg_advisory_xact_lock(42)');
        }),
        /is unavailable \((Query read timeout|canceling statement due to statement timeout);/,
      );
      // The write lock is free again while that other lock is still held: the next writer does not wait for it.
      await next.write('registry', (q) => q.run("INSERT INTO late (a) VALUES ('the next writer')"));
      await admin.query('SELECT pg_advisory_unlock(42)');
      await settled();
      assert.deepEqual(await next.all('SELECT a FROM late'), [{ a: 'the next writer' }]);
      // The pool's connections are fit for use after it.
      await d.write('registry', (q) => q.run("INSERT INTO late (a) VALUES ('after')"));
      assert.equal((await d.all('SELECT a FROM late')).length, 2);
    });

  test('a server that stays away: a transient error naming the server (not an input error) once the retry time is spent', async (t) => {
    const url = new URL(await db.fresh(t));
    url.port = String(Number(url.port) === 65535 ? 65534 : Number(url.port) + 1);
    await assert.rejects(
      () => openRegistry(url.toString(), { retryForMs: 300 }),
      (e: unknown) =>
        !(e instanceof InputError) && /PostgreSQL at postgres:\/\/postgres@127\.0\.0\.1:\d+\/\w+ is unavailable/.test((e as Error).message),
    );
  });
});
