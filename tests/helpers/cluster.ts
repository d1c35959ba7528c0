/**
 * Several "hosts" on one machine: a real Temporal dev server (SQLite file, so a restart keeps its
 * state), a real SeaweedFS (S3) and a real PostgreSQL, and `tempered worker` processes that each have
 * their own TEMPERED_HOME and share nothing but those three servers. Each process can be SIGKILLed and
 * restarted; each server restarted on the same ports and data.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { startDevServer, stopProcess, type DevServerHandle } from '../../infra/dev-server.ts';
import { temporalDataConverter } from '../../infra/payload-codec.ts';
import { startPostgres, type TestPostgres } from '../../src/db/postgres.testing.ts';
import { startCliWorker, stopCliWorker } from './cli.ts';
import { startTestS3, type TestS3 } from './seaweedfs.ts';

export interface HostWorker {
  name: string;
  home: string;
  args: string[];
  proc: ChildProcess;
  /** The worker's identity in Temporal's history (`pid@hostname`, the SDK's default). */
  pidPrefix(): string;
}

export interface Cluster {
  dir: string;
  server: DevServerHandle;
  s3: TestS3;
  pg: TestPostgres;
  storeUrl: string;
  databaseUrl: string;
  client: Client;
  workers: Map<string, HostWorker>;
  /** The environment of a process on a host of its own: only the three servers in common. */
  hostEnv(home: string, extra?: Record<string, string>): Record<string, string>;
  /** A fresh, empty state folder (another host). */
  newHome(name: string): string;
  startWorker(name: string, args: string[], opts?: { home?: string; env?: Record<string, string> }): Promise<HostWorker>;
  /** SIGKILL, no goodbye: the worker's activities are retried elsewhere after their heartbeat timeout. */
  killWorker(name: string): Promise<void>;
  restartTemporal(): Promise<void>;
  close(): Promise<void>;
}

export interface ClusterOptions {
  /** Environment of every worker process (before `startWorker`'s own): e.g. TEMPERED_PLUGINS for a test stage kind. */
  workerEnv?: Record<string, string>;
}

export async function startCluster(opts: ClusterOptions = {}): Promise<Cluster> {
  const dir = mkdtempSync(join(tmpdir(), 'tempered-cluster-'));
  const started = await Promise.allSettled([
    startTestS3(),
    startPostgres(),
    startDevServer({ dbFile: join(dir, 'temporal.db'), logFile: join(dir, 'temporal.log'), headless: true }),
  ] as const);
  const failed = started.find((r) => r.status === 'rejected');
  if (failed) {
    // Stop what did start, or its processes would outlive the test.
    const [a, b, c] = started;
    if (a.status === 'fulfilled') await a.value.stop();
    if (b.status === 'fulfilled') await b.value.stop();
    if (c.status === 'fulfilled') await stopProcess(c.value.pid);
    rmSync(dir, { recursive: true, force: true });
    throw (failed as PromiseRejectedResult).reason;
  }
  const [s3, pg, initialServer] = started.map((r) => (r as PromiseFulfilledResult<unknown>).value) as [
    TestS3,
    TestPostgres,
    DevServerHandle,
  ];
  let server = initialServer;
  const databaseUrl = await pg.createDatabase();
  const storeUrl = s3.freshUrl();
  const connection = await Connection.connect({ address: server.address });
  const client = new Client({ connection, dataConverter: temporalDataConverter() });
  const workers = new Map<string, HostWorker>();
  const hostEnv = (home: string, extra: Record<string, string> = {}) => ({
    ...s3.env,
    TEMPORAL_ADDRESS: server.address,
    TEMPERED_HOME: home,
    TEMPERED_STORE: storeUrl,
    TEMPERED_DATABASE_URL: databaseUrl,
    TEMPERED_ACTOR: 'multi-host',
    ...extra,
  });
  const newHome = (name: string) => {
    const home = join(dir, `${name}-${Math.random().toString(36).slice(2, 8)}`);
    mkdirSync(home, { recursive: true });
    return home;
  };
  const cluster: Cluster = {
    dir,
    get server() {
      return server;
    },
    s3,
    pg,
    storeUrl,
    databaseUrl,
    client,
    workers,
    hostEnv,
    newHome,
    async startWorker(name, args, o = {}) {
      const home = o.home ?? newHome(name);
      const proc = await startCliWorker(args, hostEnv(home, { ...opts.workerEnv, ...o.env }), { logFile: join(dir, `${name}.log`) });
      const w: HostWorker = { name, home, args, proc, pidPrefix: () => `${proc.pid}@` };
      workers.set(name, w);
      return w;
    },
    async killWorker(name) {
      const w = workers.get(name);
      if (!w || w.proc.exitCode !== null || w.proc.signalCode !== null) return;
      const exited = new Promise((r) => w.proc.once('exit', r));
      w.proc.kill('SIGKILL');
      await exited;
    },
    async restartTemporal() {
      await stopProcess(server.pid);
      server = await startDevServer({ port: server.port, dbFile: server.dbFile, logFile: server.logFile, headless: true });
    },
    async close() {
      await Promise.all([...workers.values()].map((w) => stopCliWorker(w.proc).catch(() => undefined)));
      await connection.close().catch(() => undefined);
      await stopProcess(server.pid);
      await Promise.all([s3.stop(), pg.stop()]);
      // TEMPERED_KEEP_CLUSTER=1 keeps the servers' and workers' logs for a look after a failure.
      if (process.env.TEMPERED_KEEP_CLUSTER !== '1') rmSync(dir, { recursive: true, force: true });
    },
  };
  return cluster;
}
