/**
 * A real Temporal dev server on free ports with a temporary SQLite database, a real worker with
 * tempered's workflow and activities, and a client. No mocks: this is what production runs.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { NativeConnection, type Worker } from '@temporalio/worker';
import { startDevServer, stopProcess, type DevServerHandle } from '../../infra/dev-server.ts';
import { createWorker } from '../../infra/worker.ts';
import { installRuntime } from '../../infra/runtime.ts';
import { temporalDataConverter } from '../../infra/payload-codec.ts';
import { ArtifactStore } from '../../src/store/artifact-store.ts';
import { StageCache } from '../../src/store/stage-cache.ts';
import type { AnyStageKind } from '../../src/stages/types.ts';
import { stageCompletedHook } from '../../activities/audit.ts';
import { submitRun } from '../../client/runs.ts';
import { loadSpec } from '../../src/spec/index.ts';
import { kindRegistry } from '../../src/stages/stage-kinds.ts';

export const TEST_QUEUE = 'tempered-test';

export interface TestEnv {
  dir: string;
  server: DevServerHandle;
  client: Client;
  store: ArtifactStore;
  cache: StageCache;
  kinds: Map<string, AnyStageKind>;
  /** The worker startWorker made, while it runs. */
  readonly worker: Worker | undefined;
  startWorker(): Promise<void>;
  stopWorker(): Promise<void>;
  restartServer(): Promise<void>;
  close(): Promise<void>;
}

export async function startTestEnv(kinds: Map<string, AnyStageKind>, opts: { dir?: string } = {}): Promise<TestEnv> {
  const dir = opts.dir ?? mkdtempSync(join(tmpdir(), 'tempered-test-'));
  let server = await startDevServer({ dbFile: join(dir, 'temporal.db'), logFile: join(dir, 'server.log'), headless: true });
  const store = new ArtifactStore(join(dir, 'store'));
  const cache = new StageCache(join(dir, 'cache'), store);
  let clientConn = await Connection.connect({ address: server.address });
  // As every tempered process: TEMPERED_PAYLOAD_KEY, when set, encrypts what goes to the server.
  const client = new Client({ connection: clientConn, dataConverter: temporalDataConverter() });
  let worker: Worker | undefined;
  let workerRun: Promise<void> | undefined;
  let workerConn: NativeConnection | undefined;

  const env: TestEnv = {
    dir,
    get server() {
      return server;
    },
    client,
    store,
    cache,
    kinds,
    get worker() {
      return worker;
    },
    async startWorker() {
      installRuntime();
      workerConn = await NativeConnection.connect({ address: server.address });
      worker = await createWorker({
        connection: workerConn,
        namespace: 'default',
        taskQueue: TEST_QUEUE,
        kinds,
        deps: { store, cache, stateDir: dir, heartbeatEveryMs: 500, onStageCompleted: stageCompletedHook(dir) },
      });
      workerRun = worker.run();
    },
    async stopWorker() {
      if (!worker) return;
      worker.shutdown();
      await workerRun?.catch(() => undefined);
      await workerConn?.close();
      worker = undefined;
    },
    async restartServer() {
      await stopProcess(server.pid);
      server = await startDevServer({ port: server.port, dbFile: server.dbFile, logFile: server.logFile, headless: true });
    },
    async close() {
      await env.stopWorker();
      await clientConn.close().catch(() => undefined);
      await stopProcess(server.pid);
      if (!opts.dir) rmSync(dir, { recursive: true, force: true });
    },
  };
  return env;
}

/**
 * An activity-only worker on `taskQueue` (a `queue:` stage's, as on a GPU host), sharing the env's store, cache and
 * state folder; `audit`: it writes the stage records too, as a worker of another host does.
 */
export async function startActivityWorker(
  env: Pick<TestEnv, 'server' | 'kinds' | 'store' | 'cache' | 'dir'>,
  taskQueue: string,
  opts: { audit?: boolean } = {},
): Promise<{ stop(): Promise<void> }> {
  const conn = await NativeConnection.connect({ address: env.server.address });
  const worker = await createWorker({
    connection: conn,
    namespace: 'default',
    taskQueue,
    kinds: env.kinds,
    deps: {
      store: env.store,
      cache: env.cache,
      stateDir: env.dir,
      ...(opts.audit ? { onStageCompleted: stageCompletedHook(env.dir) } : {}),
    },
    workflows: false,
  });
  const running = worker.run();
  return {
    async stop() {
      worker.shutdown();
      await running;
      await conn.close();
    },
  };
}

/**
 * Validates the pipeline in `file` against the env's stage kinds, as `tempered submit` does, starts it
 * on `taskQueue` (default TEST_QUEUE) and returns its workflow id.
 */
export async function submitPipelineFile(
  env: Pick<TestEnv, 'client' | 'kinds'>,
  file: string,
  opts: { actor: string; noCache?: boolean; taskQueue?: string },
): Promise<string> {
  const reg = kindRegistry(env.kinds);
  const res = await loadSpec(file, { kinds: reg.kinds, knownButUnavailable: reg.knownButUnavailable });
  if (!res.ok) throw new Error(`${file} is invalid: ${JSON.stringify(res.errors)}`);
  const h = await submitRun(
    env.client,
    { plan: res.plan, options: { baseDir: dirname(file), actor: opts.actor, ...(opts.noCache ? { noCache: true } : {}) } },
    { taskQueue: opts.taskQueue ?? TEST_QUEUE },
  );
  return h.workflowId;
}
