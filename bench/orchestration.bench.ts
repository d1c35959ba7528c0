/**
 * What tempered's orchestration costs on a real Temporal dev server:
 *
 *   nice node --import tsx bench/orchestration.bench.ts [--chain 20] [--rounds 3] [--pipelines 12] [--workers 1,3] [--shared [--delay-ms N]]
 *
 * 1. Per-stage overhead: a pipeline of `--chain` stages in a row whose work is nothing (a bench stage
 *    kind `noop`), through tempered's workflow, stage activity adapter (cache lookup: misses, each run
 *    has its own nonce; heartbeats, store, stage cache record, audit record),
 *    against a bare workflow running a trivial activity as many times in a row, on the same server,
 *    alternating. Per stage = run time / stages. Target: tempered ≤ 1.5× the bare round trip.
 *    From the last round's workflow histories it prints where a stage's time goes on each side, and
 *    it times a stage's cache lookup, cache record and audit record alone.
 *    `--shared`: tempered's worker keeps its artifacts in a SeaweedFS bucket, its stage-cache records
 *    and its audit log in PostgreSQL (both started here, the test suite's servers), as a team's workers
 *    do, instead of the local folder and SQLite. With it, a third side alternates with the two: tempered
 *    with every stage waiting for its cache record's upload (as stages longer than a second do), to
 *    show what leaving that upload in the background saves a short stage.
 *    `--delay-ms N` (with --shared): the worker reaches SeaweedFS and PostgreSQL through a relay that
 *    holds every chunk N ms each way (latency-proxy.ts), as if they ran on other hosts;
 *    `--store-delay-ms M` gives the store a delay of its own.
 *    With TEMPERED_PAYLOAD_KEY set, every side encrypts its payloads (README, Deployment: encrypting what Temporal keeps).
 * 2. Pipelines per minute: `--pipelines` tiny real pipelines (ingest 40 rows → split → dedupe) submitted
 *    at once to 1 and to 3 `tempered worker` processes. CPU seconds of the server and the workers over
 *    the run show where the time goes.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Client, Connection } from '@temporalio/client';
import { NativeConnection, Worker } from '@temporalio/worker';
import { startDevServer, stopProcess } from '../infra/dev-server.ts';
import { createWorker } from '../infra/worker.ts';
import { temporalDataConverter } from '../infra/payload-codec.ts';
import { installRuntime } from '../infra/runtime.ts';
import { stageCompletedHook } from '../activities/audit.ts';
import { submitRun, waitForRun } from '../client/runs.ts';
import { loadSpec } from '../src/spec/index.ts';
import { kindRegistry, loadStageKinds } from '../src/stages/stage-kinds.ts';
import type { AnyStageKind, StageKind } from '../src/stages/types.ts';
import { ArtifactStore } from '../src/store/artifact-store.ts';
import type { StageCache } from '../src/store/stage-cache.ts';
import { openStageCache } from '../src/store/open-stage-cache.ts';
import { openAudit } from '../src/audit/log.ts';
import { statePaths } from '../src/state-paths.ts';
import { startPostgres } from '../src/db/postgres.testing.ts';
import { startTestS3 } from '../tests/helpers/seaweedfs.ts';
import { S3Backend } from '../src/store/s3-backend.ts';
import { startLatencyProxy } from './latency-proxy.ts';
import { median, procCpuSec, procStatFields } from './common.ts';

const { values: a } = parseArgs({
  options: {
    chain: { type: 'string', default: '20' },
    rounds: { type: 'string', default: '3' },
    pipelines: { type: 'string', default: '12' },
    workers: { type: 'string', default: '1,3' },
    shared: { type: 'boolean', default: false },
    'delay-ms': { type: 'string', default: '0' },
    'store-delay-ms': { type: 'string' },
  },
});
const CHAIN = Number(a.chain);
const ROUNDS = Number(a.rounds);
const PIPELINES = Number(a.pipelines);
const WORKER_COUNTS = a.workers!.split(',').map(Number);
const DELAY_MS = Number(a['delay-ms']);
/** The object store's own delay, where it differs from the database's (an S3 service answers slower than a nearby database). */
const STORE_DELAY_MS = a['store-delay-ms'] === undefined ? DELAY_MS : Number(a['store-delay-ms']);

const noopStage: StageKind<{ i: number; nonce: string }> = {
  kind: 'noop',
  description: 'does nothing (orchestration bench)',
  codeVersion: 'noop-1',
  withSchema: {
    type: 'object',
    properties: { i: { type: 'number' }, nonce: { type: 'string' } },
    required: ['i', 'nonce'],
    additionalProperties: false,
  },
  outputs: { n: { type: 'number' } },
  async run(cfg) {
    return { n: cfg.i };
  },
};

/** CPU seconds (user + system) a process and its live descendants have used so far, from /proc. */
function cpuSec(pid: number): number {
  const parent = new Map<number, number>();
  for (const d of readdirSync('/proc')) if (/^\d+$/.test(d)) parent.set(Number(d), Number(procStatFields(`/proc/${d}/stat`)?.[1] ?? 0));
  const inTree = (p: number): boolean => p === pid || (p > 1 && parent.has(p) && inTree(parent.get(p)!));
  let sec = 0;
  for (const p of parent.keys())
    if (inTree(p)) {
      const cpu = procCpuSec(`/proc/${p}/stat`);
      if (!Number.isNaN(cpu)) sec += cpu;
    }
  return sec;
}

/** Microseconds so far in which some runnable task waited for a CPU (Linux PSI), or undefined. */
function cpuStallUs(): number | undefined {
  try {
    return Number(/^some .*total=(\d+)/m.exec(readFileSync('/proc/pressure/cpu', 'utf8'))?.[1]);
  } catch {
    return undefined;
  }
}

const PHASE_NAMES = {
  wftWait: 'workflow task waits for the worker',
  wft: 'workflow task runs',
  activityWait: 'activity waits for the worker (0: eager)',
  activity: 'activity runs (incl. cache lookup and records, audit)',
} as const;

/** Median durations of each kind of step in a workflow's history, from its events' timestamps. */
async function stagePhases(client: Client, workflowId: string): Promise<Record<keyof typeof PHASE_NAMES, number>> {
  const events = (await client.workflow.getHandle(workflowId).fetchHistory()).events ?? [];
  const at = new Map<number, number>();
  const spans: Record<keyof typeof PHASE_NAMES, number[]> = { wftWait: [], wft: [], activityWait: [], activity: [] };
  for (const e of events) {
    const t = Number(e.eventTime!.seconds) * 1000 + (e.eventTime!.nanos ?? 0) / 1e6;
    at.set(Number(e.eventId), t);
    const since = (id: unknown) => t - at.get(Number(id))!;
    if (e.workflowTaskStartedEventAttributes) spans.wftWait.push(since(e.workflowTaskStartedEventAttributes.scheduledEventId));
    if (e.workflowTaskCompletedEventAttributes) spans.wft.push(since(e.workflowTaskCompletedEventAttributes.startedEventId));
    if (e.activityTaskStartedEventAttributes) spans.activityWait.push(since(e.activityTaskStartedEventAttributes.scheduledEventId));
    if (e.activityTaskCompletedEventAttributes) spans.activity.push(since(e.activityTaskCompletedEventAttributes.startedEventId));
  }
  return {
    wftWait: median(spans.wftWait),
    wft: median(spans.wft),
    activityWait: median(spans.activityWait),
    activity: median(spans.activity),
  };
}

/**
 * What a stage's own records cost, each timed alone on the bench's backends: the cache lookup of a
 * stage seen for the first time (a miss: with a shared store and PostgreSQL, a SELECT that finds no
 * row; with a shared store alone, a GET the store answers 404), the cache
 * record of its outputs, and its audit record. Wall and this process's CPU (all threads) per call.
 */
/** A cache record under a key no stage has used. */
const freshRecord = () => ({
  key: randomBytes(32).toString('hex'),
  kind: 'noop',
  outputs: { n: 1 },
  producedBy: { runId: 'records-alone', stageId: 's' },
  createdAt: new Date().toISOString(),
});

async function timeRecordsAlone(cache: StageCache, home: string, shared: boolean, calls = 40): Promise<void> {
  const audit = await openAudit(statePaths(home).auditDb);
  const parts: [string, (i: number) => Promise<unknown>, (() => Promise<void>)?][] = [
    ['cache lookup, a miss', () => cache.get(randomBytes(32).toString('hex'))],
    [
      'cache record, what a stage waits for (local copy)',
      () => cache.put(freshRecord(), { upload: 'background' }),
      // Its upload runs after the stage: here, untimed, before the next call.
      () => cache.flush(),
    ],
    ...(shared
      ? ([['cache record and its upload, awaited', () => cache.put(freshRecord())]] as [string, (i: number) => Promise<unknown>][])
      : []),
    [
      'audit record',
      (i) =>
        audit.append({
          action: 'stage.completed',
          subject: `records-alone/s${i}`,
          actor: 'bench',
          dedupeKey: randomBytes(8).toString('hex'),
        }),
    ],
  ];
  console.log(`  a stage's records timed alone (${calls} calls each, after one warm-up): wall / this process's CPU per call`);
  try {
    for (const [name, call, settle] of parts) {
      await call(-1);
      await settle?.();
      let wall = 0;
      let cpu = 0;
      for (let i = 0; i < calls; i++) {
        const t0 = performance.now();
        const c0 = process.cpuUsage();
        await call(i);
        const c = process.cpuUsage(c0);
        wall += performance.now() - t0;
        cpu += (c.user + c.system) / 1000;
        await settle?.();
      }
      console.log(`    ${name.padEnd(56)}${(wall / calls).toFixed(1)} / ${(cpu / calls).toFixed(1)} ms`);
    }
  } finally {
    await audit.close();
  }
}

async function main() {
  const dir = mkdtempSync(join(tmpdir(), 'tempered-orch-bench-'));
  const server = await startDevServer({ dbFile: join(dir, 'temporal.db'), logFile: join(dir, 'server.log'), headless: true });
  const children: ChildProcess[] = [];
  const cleanups: (() => Promise<void>)[] = [];
  try {
    console.log(`orchestration bench: dev server ${server.address}; ${cpus().length} cores, load ${loadavg()[0]!.toFixed(1)}`);
    const conn = await Connection.connect({ address: server.address });
    // TEMPERED_PAYLOAD_KEY set: every side encrypts its payloads, as a cluster with the key does (README, Encrypting payloads).
    const client = new Client({ connection: conn, dataConverter: temporalDataConverter() });
    installRuntime('ERROR');

    // --- 1. per-stage overhead, in this process: one worker for tempered, one for the bare workflow.
    const kinds = new Map<string, AnyStageKind>([...(await loadStageKinds()), ['noop', noopStage]]);
    const home = join(dir, 'home');
    mkdirSync(home);
    let store = new ArtifactStore(join(home, 'store'));
    let backends = 'local folder store, SQLite audit log';
    if (a.shared) {
      const s3 = await startTestS3();
      const pg = await startPostgres();
      cleanups.push(
        () => s3.stop(),
        () => pg.stop(),
      );
      let s3Endpoint = s3.env.AWS_ENDPOINT_URL!;
      const dbUrl = new URL(await pg.createDatabase());
      if (DELAY_MS > 0 || STORE_DELAY_MS > 0) {
        const s3Url = new URL(s3Endpoint);
        const s3Relay = await startLatencyProxy({ host: s3Url.hostname, port: Number(s3Url.port) }, STORE_DELAY_MS);
        const dbRelay = await startLatencyProxy({ host: dbUrl.hostname, port: Number(dbUrl.port) }, DELAY_MS);
        cleanups.unshift(
          () => s3Relay.close(),
          () => dbRelay.close(),
        );
        s3Url.port = String(s3Relay.port);
        s3Endpoint = s3Url.toString().replace(/\/$/, '');
        dbUrl.port = String(dbRelay.port);
      }
      store = new ArtifactStore(join(home, 'store'), {
        remote: new S3Backend(s3.freshUrl(), { env: { ...s3.env, AWS_ENDPOINT_URL: s3Endpoint } }),
      });
      // The hook opens the audit log at statePaths(home).auditDb, which follows this variable.
      process.env.TEMPERED_DATABASE_URL = dbUrl.toString();
      backends = `SeaweedFS (S3) store, PostgreSQL stage-cache records and audit log (test server: fsync off), on this machine${DELAY_MS > 0 || STORE_DELAY_MS > 0 ? `, reached through relays that hold every chunk ${STORE_DELAY_MS} ms (store) and ${DELAY_MS} ms (database) each way` : ''}`;
    }
    // As a worker process opens it: records in PostgreSQL beside a shared store (--shared).
    const opened = openStageCache(join(home, 'cache'), store, statePaths(home).registryDb);
    const cache = opened.cache;
    const wconn = await NativeConnection.connect({ address: server.address });
    const tw = await createWorker({
      connection: wconn,
      namespace: 'default',
      taskQueue: 'tempered',
      kinds,
      deps: { store, cache, stateDir: home, onStageCompleted: stageCompletedHook(home) },
    });
    // The same worker, except that every stage waits for its cache record's upload (a third side, --shared only).
    const awaiting = store.remote
      ? await createWorker({
          connection: wconn,
          namespace: 'default',
          taskQueue: 'tempered-await',
          kinds,
          deps: { store, cache, stateDir: home, onStageCompleted: stageCompletedHook(home), awaitRecordUploadAfterMs: 0 },
        })
      : undefined;
    const bw = await Worker.create({
      connection: wconn,
      namespace: 'default',
      taskQueue: 'bare',
      workflowsPath: fileURLToPath(new URL('./orchestration-workflows.ts', import.meta.url)),
      activities: { echo: async (x: number) => x },
      dataConverter: temporalDataConverter(),
    });
    const running = [tw.run(), bw.run(), ...(awaiting ? [awaiting.run()] : [])];

    const specFile = join(dir, 'chain.yaml');
    const reg = kindRegistry(kinds);
    let lastTempered = '';
    const tempered = async (nonce: string, taskQueue = 'tempered') => {
      const stages = Array.from(
        { length: CHAIN },
        (_, i) => `  s${i}:\n    uses: noop\n${i ? `    needs: s${i - 1}\n` : ''}    with: { i: ${i}, nonce: "${nonce}" }\n`,
      ).join('');
      writeFileSync(specFile, `name: chain\nstages:\n${stages}`);
      const res = await loadSpec(specFile, { kinds: reg.kinds, knownButUnavailable: reg.knownButUnavailable });
      if (!res.ok) throw new Error(JSON.stringify(res.errors));
      const t0 = performance.now();
      const h = await submitRun(client, { plan: res.plan, options: { baseDir: dir, actor: 'bench' } }, { taskQueue });
      const st = await waitForRun(client, h.workflowId);
      if (taskQueue === 'tempered') lastTempered = h.workflowId;
      const ms = performance.now() - t0;
      if (st.state !== 'succeeded') throw new Error(`chain run ${st.state}`);
      return ms / CHAIN;
    };
    let seq = 0;
    const bare = async () => {
      const t0 = performance.now();
      await client.workflow.execute('bareChain', { taskQueue: 'bare', workflowId: `bare-${seq++}`, args: [CHAIN] });
      return (performance.now() - t0) / CHAIN;
    };
    // Warm up both (workflow bundles, connections, SQLite pages).
    await bare();
    await tempered('warm');
    if (awaiting) await tempered('warm-await', 'tempered-await');
    const bareMs: number[] = [];
    const tempMs: number[] = [];
    const awaitMs: number[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      bareMs.push(await bare());
      tempMs.push(await tempered(`r${r}`));
      if (awaiting) awaitMs.push(await tempered(`a${r}`, 'tempered-await'));
    }
    const b = median(bareMs),
      t = median(tempMs);
    console.log(`\nper-stage overhead (${CHAIN} stages in a row, median of ${ROUNDS} runs, alternating; ${backends})`);
    console.log(`  bare Temporal activity round trip   ${b.toFixed(1)} ms   (runs: ${bareMs.map((x) => x.toFixed(1)).join(', ')})`);
    console.log(`  tempered stage (noop kind)          ${t.toFixed(1)} ms   (runs: ${tempMs.map((x) => x.toFixed(1)).join(', ')})`);
    console.log(`  ratio tempered / bare               ${(t / b).toFixed(2)}×   (target ≤ 1.5×)`);
    if (awaiting) {
      const w = median(awaitMs);
      console.log(
        `  tempered, each stage awaiting its cache record's upload   ${w.toFixed(1)} ms, ${(w / b).toFixed(2)}× bare   (runs: ${awaitMs.map((x) => x.toFixed(1)).join(', ')})`,
      );
    }
    // Where a stage's time goes, from the last round's workflow histories (the server's timestamps).
    const tp = await stagePhases(client, lastTempered);
    const bp = await stagePhases(client, `bare-${seq - 1}`);
    console.log('  per stage, last round, medians (tempered / bare):');
    for (const k of Object.keys(tp) as (keyof typeof tp)[])
      console.log(`    ${PHASE_NAMES[k].padEnd(56)}${tp[k].toFixed(1)} / ${bp[k].toFixed(1)} ms`);
    await timeRecordsAlone(cache, home, !!store.remote);
    tw.shutdown();
    awaiting?.shutdown();
    bw.shutdown();
    await Promise.all(running);
    await opened.close();
    await wconn.close();
    // The worker processes below keep their state in their own homes, as before.
    delete process.env.TEMPERED_DATABASE_URL;

    // --- 2. pipelines per minute with N worker processes.
    const data = join(dir, 'data');
    mkdirSync(data);
    const rows = Array.from({ length: 40 }, (_, i) =>
      JSON.stringify({
        text: `message number ${i} ${i % 7 === 0 ? 'win a prize now' : 'see you at lunch'}`,
        label: i % 7 === 0 ? 'spam' : 'ham',
      }),
    );
    writeFileSync(join(data, 'data.jsonl'), rows.join('\n') + '\n');
    writeFileSync(
      join(data, 'tiny.yaml'),
      `name: tiny
stages:
  ingest:
    uses: ingest
    with: { path: data.jsonl, task: classification }
  split:
    uses: split
    needs: ingest
    with: { table: "\${{ stages.ingest.outputs.table }}", ratios: { train: 0.8, test: 0.2 }, seed: 1 }
  dedupe:
    uses: dedupe
    needs: split
    with: { table: "\${{ stages.split.outputs.train }}" }
`,
    );
    const realReg = kindRegistry(await loadStageKinds());
    const tiny = await loadSpec(join(data, 'tiny.yaml'), { kinds: realReg.kinds, knownButUnavailable: realReg.knownButUnavailable });
    if (!tiny.ok) throw new Error(JSON.stringify(tiny.errors));
    if (PIPELINES > 0)
      console.log(`\npipelines per minute (${PIPELINES} tiny pipelines ingest → split → dedupe submitted at once, no cache)`);
    const perWorkers: Record<number, number> = {};
    for (const n of PIPELINES > 0 ? WORKER_COUNTS : []) {
      const queue = `tiny-${n}`;
      const workers: ChildProcess[] = [];
      for (let i = 0; i < n; i++) {
        const wHome = join(dir, `wh-${n}`);
        const w = spawn(
          process.execPath,
          [fileURLToPath(new URL('../scripts/tempered.mjs', import.meta.url)), 'worker', '--queue', queue],
          {
            env: { ...process.env, TEMPORAL_ADDRESS: server.address, TEMPERED_HOME: wHome },
            stdio: ['ignore', 'pipe', 'pipe'],
          },
        );
        children.push(w);
        workers.push(w);
        await new Promise<void>((resolve, reject) => {
          let out = '';
          const on = (d: Buffer) => {
            out += d.toString();
            if (out.includes('worker polling')) resolve();
          };
          w.stdout!.on('data', on);
          w.stderr!.on('data', on);
          w.once('exit', (c) => reject(new Error(`worker exited ${c}: ${out}`)));
        });
      }
      // Warm-up run per worker count, then the measured batch.
      const one = await submitRun(
        client,
        { plan: tiny.plan, options: { baseDir: data, actor: 'bench', noCache: true } },
        { taskQueue: queue },
      );
      await waitForRun(client, one.workflowId);
      const pids = [server.pid, ...workers.map((w) => w.pid!)];
      const cpu0 = pids.map(cpuSec);
      const stall0 = cpuStallUs();
      const t0 = performance.now();
      const handles = await Promise.all(
        Array.from({ length: PIPELINES }, () =>
          submitRun(client, { plan: tiny.plan, options: { baseDir: data, actor: 'bench', noCache: true } }, { taskQueue: queue }),
        ),
      );
      const results = await Promise.all(handles.map((h) => waitForRun(client, h.workflowId)));
      const sec = (performance.now() - t0) / 1000;
      const failed = results.filter((r) => r.state !== 'succeeded').length;
      const cpu = pids.map((p, i) => cpuSec(p) - cpu0[i]!);
      const stall1 = cpuStallUs();
      const stalled = stall0 !== undefined && stall1 !== undefined ? ((stall1 - stall0) / 1e6 / sec) * 100 : undefined;
      perWorkers[n] = (PIPELINES / sec) * 60;
      console.log(
        `  ${n} worker(s): ${perWorkers[n]!.toFixed(1)} pipelines/min (${sec.toFixed(1)} s for ${PIPELINES}${failed ? `, ${failed} FAILED` : ''}); CPU s: server ${cpu[0]!.toFixed(1)}, workers ${cpu
          .slice(1)
          .map((c) => c.toFixed(1))
          .join(' + ')} over ${sec.toFixed(1)} s wall on ${cpus().length} cores${
          stalled !== undefined
            ? `; some task waited for a CPU ${stalled.toFixed(0)}% of the time (PSI), load ${loadavg()[0]!.toFixed(1)}`
            : ''
        }`,
      );
      // Where a run's time goes, as its workflow saw it: each stage from scheduled to completed.
      const byKind = new Map<string, number[]>();
      for (const r of results)
        for (const st of r.stages)
          if (st.startedAt && st.endedAt)
            byKind.set(st.uses, [...(byKind.get(st.uses) ?? []), Date.parse(st.endedAt) - Date.parse(st.startedAt)]);
      const runMs = results.map((r) => Date.parse(r.endedAt ?? r.startedAt) - Date.parse(r.startedAt));
      console.log(
        `    a run: median ${(median(runMs) / 1000).toFixed(1)} s from start to end; a stage, scheduled to completed (median): ${[...byKind]
          .map(([k, v]) => `${k} ${(median(v) / 1000).toFixed(2)} s`)
          .join(', ')}`,
      );
      for (const w of workers) w.kill('SIGTERM');
      await Promise.all(workers.map((w) => new Promise((r) => (w.exitCode !== null ? r(null) : w.once('exit', r)))));
    }
    if (perWorkers[1] && perWorkers[3])
      console.log(`  ratio 3 workers / 1 worker             ${(perWorkers[3] / perWorkers[1]).toFixed(2)}×`);
    await conn.close();
  } finally {
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
    for (const c of cleanups) await c().catch(() => undefined);
    await stopProcess(server.pid);
    rmSync(dir, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(e);
    process.exit(1);
  },
);
