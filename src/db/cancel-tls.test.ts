/**
 * The cancel request for a statement the client gave up on (postgres.ts, cancelBackend) on a server reached over TLS:
 * the request carries the backend's secret key, so it must go inside TLS too, as libpq's does. The server here takes
 * TCP connections as `hostssl` only, and the client reaches it through a proxy that records what each connection
 * opens with; the URL says sslmode=verify-full with the test certificate as sslrootcert, so a cancel that did not use
 * the client's TLS settings (its CA) would fail the handshake and cancel nothing.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import pg from 'pg';
import { openDatabase, type Schema } from './database.ts';
import { startPostgres, tlsPostgresUnavailable, type TestPostgres } from './postgres.testing.ts';

/** What a client sends first when it asks for TLS: length 8, code 1234 5679. */
const SSL_REQUEST = Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]);
/** A TLS record of type handshake (a ClientHello): how a connection under sslnegotiation=direct opens. */
const TLS_HANDSHAKE = 0x16;

interface Opened {
  /** Every byte the client sent on this connection, up to 64 (the opening is what matters). */
  first: Buffer;
  closed: boolean;
}

/**
 * A TCP proxy to the server that records each connection's opening bytes. With `refuseTls` set, it answers a new
 * connection's SSLRequest itself with 'N' (the server does not do TLS) and passes nothing on.
 */
async function recordingProxy(port: number): Promise<{ port: number; opened: Opened[]; refuseTls: boolean; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const state = { port: 0, opened: [] as Opened[], refuseTls: false, close: () => Promise.resolve() };
  const server: Server = createServer((client) => {
    sockets.add(client);
    const seen: Opened = { first: Buffer.alloc(0), closed: false };
    state.opened.push(seen);
    client.on('data', (d: Buffer) => {
      if (seen.first.length < 64) seen.first = Buffer.concat([seen.first, d]).subarray(0, 64);
    });
    client.on('close', () => (seen.closed = true));
    client.on('error', () => {});
    if (state.refuseTls) {
      // After the recording listener above, so `first` holds this data already.
      client.on('data', () => seen.first.equals(SSL_REQUEST) && client.write('N'));
      return;
    }
    const upstream = connect(port, '127.0.0.1');
    sockets.add(upstream);
    upstream.on('error', () => client.destroy());
    client.on('error', () => upstream.destroy());
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  state.port = (server.address() as AddressInfo).port;
  state.close = () => {
    for (const s of sockets) s.destroy();
    return new Promise((resolve) => server.close(() => resolve()));
  };
  return state;
}

async function until(what: () => Promise<boolean> | boolean): Promise<void> {
  while (!(await what())) await new Promise((r) => setTimeout(r, 100));
}

const schema: Schema = { scope: 'late', sqlite: [], postgres: [{ version: 1, name: 'late', sql: 'CREATE TABLE late (a TEXT)' }] };

describe('the cancel request on a TLS connection', { skip: tlsPostgresUnavailable() }, () => {
  let server: TestPostgres;
  before(async () => {
    server = await startPostgres({ tls: true });
  });
  after(async () => {
    await server?.stop();
  });

  /**
   * A database reached through a proxy, with a session statement_timeout far beyond the client's query timeout, so
   * that only the client's cancel can end a statement it gave up on; and a superuser session of its own, directly.
   */
  async function setUp(t: { after: (fn: () => Promise<void>) => void }, negotiation: 'postgres' | 'direct') {
    const direct = new URL(await server.createDatabase());
    const proxy = await recordingProxy(Number(direct.port));
    const url = new URL(direct);
    url.port = String(proxy.port);
    url.searchParams.set('options', '-c statement_timeout=600000');
    if (negotiation === 'direct') url.searchParams.set('sslnegotiation', 'direct');
    const d = await openDatabase(url.toString(), schema, { queryTimeoutMs: 1000, retryForMs: 0 });
    const admin = new pg.Client({ connectionString: direct.toString() });
    await admin.connect();
    t.after(async () => {
      // A statement left running (the test failed) is ended here, not left for 10 minutes.
      await admin.query(`SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = 'tempered'`).catch(() => {});
      await d.close();
      await admin.end();
      await proxy.close();
    });
    // Whether a statement of tempered's still runs in this database (the one given up on, until the cancel ends it).
    const running = async () =>
      (
        await admin.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'tempered' AND state = 'active'`,
        )
      ).rows[0]!.n > 0;
    return { d, admin, proxy, running };
  }

  for (const negotiation of ['postgres', 'direct'] as const)
    test(
      `sslnegotiation=${negotiation}: a statement the client gave up on is cancelled over TLS, and does not commit`,
      { timeout: 60_000 },
      async (t) => {
        // Before, the cancel went on a plain socket: its first bytes were the CancelRequest with the secret key in clear.
        const { d, admin, proxy, running } = await setUp(t, negotiation);
        await assert.rejects(d.run("INSERT INTO late (a) SELECT 'given up on' FROM pg_sleep(600)"), /may or may not be saved/);
        // The statement would sleep 10 minutes: only the cancel request ends it (the test's timeout fails it otherwise).
        await until(async () => !(await running()));
        assert.deepEqual((await admin.query('SELECT a FROM late')).rows, []);
        // The client's own connection and the cancel's, at least; each opened asking for TLS, none with anything in clear.
        assert.ok(proxy.opened.length >= 2, `${proxy.opened.length} connections through the proxy`);
        for (const o of proxy.opened)
          if (negotiation === 'postgres') assert.deepEqual(o.first.subarray(0, 8), SSL_REQUEST, o.first.toString('hex'));
          else assert.equal(o.first[0], TLS_HANDSHAKE, o.first.toString('hex'));
      },
    );

  test(
    'a server that refuses TLS for the cancel: the secret key is not sent in clear, and nothing throws',
    { timeout: 60_000 },
    async (t) => {
      const { d, proxy } = await setUp(t, 'postgres');
      const before = proxy.opened.length;
      proxy.refuseTls = true;
      await assert.rejects(d.run("INSERT INTO late (a) SELECT 'given up on' FROM pg_sleep(600)"), /may or may not be saved/);
      // The cancel's connection, answered 'N': the client sent its SSLRequest, nothing after it, and closed it.
      await until(() => proxy.opened.length > before && proxy.opened.slice(before).every((o) => o.closed));
      for (const o of proxy.opened.slice(before)) assert.deepEqual(o.first, SSL_REQUEST, o.first.toString('hex'));
    },
  );
});
