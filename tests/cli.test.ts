/**
 * The `tempered` command through its real entry point (bin/tempered.js) against a real dev server:
 * validate, submit --wait, status, runs, logs, cancel, audit, server start/status/stop.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ChildProcess } from 'node:child_process';
import { createServer, type AddressInfo } from 'node:net';
import type { DevServerHandle } from '../infra/dev-server.ts';
import { Client, Connection } from '@temporalio/client';
import { freePort } from '../src/util/port-race.ts';
import { runCli, startCliServer, startCliWorker, stopCliWorker } from './helpers/cli.ts';

const FIX = fileURLToPath(new URL('./fixtures/', import.meta.url));
let cluster: Awaited<ReturnType<typeof startCliServer>>;
let server: DevServerHandle;
let home: string;
let env: Record<string, string>;

before(async () => {
  cluster = await startCliServer('tempered-cli-');
  ({ server, home } = cluster);
  env = {
    TEMPORAL_ADDRESS: server.address,
    TEMPERED_HOME: home,
    TEMPERED_TASK_QUEUE: 'cli-test',
    TEMPERED_ACTOR: 'cli-tester',
    TEMPERED_PLUGINS: fileURLToPath(new URL('./helpers/probe-plugin.ts', import.meta.url)),
    TEMPERED_PROBE_LOG: join(home, 'probe.log'),
  };
});
after(async () => cluster?.close());

describe('tempered CLI', () => {
  it('validate accepts a good spec and prints the plan', async () => {
    const r = await runCli(['validate', join(FIX, 'tiny-pipeline.yaml')], env);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /ok: pipeline 'tiny', 2 stages in order ingest → split/);
  });

  // The plan said `cache: true` for register and deploy, whose outputs are never reused.
  it('validate --json prints the plan as it runs: a stage of a kind that acts on every run is not cached', async () => {
    const r = await runCli(['validate', '--json', 'pipelines/sms-spam.yaml'], env);
    assert.equal(r.code, 0, r.stderr);
    const { plan } = JSON.parse(r.stdout) as { plan: { stages: { id: string; cache: boolean }[] } };
    const cache = Object.fromEntries(plan.stages.map((s) => [s.id, s.cache]));
    assert.deepEqual(cache, { ingest: true, dedupe: true, split: true, train: true, evaluate: true, register: false, deploy: false });
  });

  it('validate reports every error with file:line:column, a hint, exit code 2 and no stack trace', async () => {
    const r = await runCli(['validate', join(FIX, 'bad-pipeline.yaml')], env);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /bad-pipeline\.yaml:10:\d+: .*ingst/);
    assert.match(r.stderr, /bad-pipeline\.yaml:12:\d+: .*tabel/);
    assert.match(r.stderr, /hint: /);
    assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
  });

  it('rejects bad usage and a missing file clearly', async () => {
    const r1 = await runCli(['submit'], env);
    assert.equal(r1.code, 2);
    assert.match(r1.stderr, /usage: tempered submit .*--queue Q/);
    // --help on any command: its usage on stdout, success.
    for (const args of [
      ['submit', '--help'],
      ['models', 'promote', '-h'],
      ['models', '--help'],
      ['db', '--help'],
    ]) {
      const h = await runCli(args, env);
      assert.equal(h.code, 0, `${args.join(' ')}: ${h.stderr}`);
      assert.match(h.stdout, new RegExp(`^usage: tempered ${args[0]} `), args.join(' '));
    }
    // setup checks its flags before it installs anything.
    const w1 = await runCli(['setup', '--wheels', FIX], env);
    assert.equal(w1.code, 2);
    assert.match(w1.stderr, /--wheels is for the CUDA wheels of --gpu/);
    const w2 = await runCli(['setup', '--gpu', '--wheels', join(FIX, 'no-such-folder')], env);
    assert.equal(w2.code, 2);
    assert.match(w2.stderr, /--wheels .*no-such-folder: no such folder/);
    const w3 = await runCli(['worker', '--max-activities', 'lots'], env);
    assert.equal(w3.code, 2);
    assert.match(w3.stderr, /--max-activities takes a positive whole number of stages, not "lots"/);
    const w4 = await runCli(['worker', '--child-max-rss-mb', '0'], env);
    assert.equal(w4.code, 2);
    assert.match(w4.stderr, /--child-max-rss-mb takes a positive whole number of MiB, not "0"/);
    const r2 = await runCli(['validate', join(FIX, 'nope.yaml')], env);
    assert.equal(r2.code, 2);
    assert.match(r2.stderr, /nope\.yaml/);
    const r3 = await runCli(['frobnicate'], env);
    assert.equal(r3.code, 2);
  });

  it('submit --wait runs the pipeline with progress, then status, runs, logs and audit show it', async () => {
    const r = await runCli(['submit', join(FIX, 'tiny-pipeline.yaml'), '--param', 'seed=3', '--wait', '--local-worker'], env, {
      timeoutMs: 180_000,
    });
    assert.equal(r.code, 0, r.stdout + r.stderr);
    // Against a given TEMPORAL_ADDRESS the in-process worker is asked for, and announced.
    assert.match(r.stderr, /this process also runs a worker on queue 'cli-test' of \S+ while it waits/);
    const runId = /submitted run (\S+)/.exec(r.stdout)?.[1];
    assert.ok(runId, r.stdout);
    assert.match(r.stdout, /ingest\s+ingest\s+succeeded/);
    assert.match(r.stdout, /split\s+split\s+succeeded/);

    const st = await runCli(['status', runId!, '--json'], env);
    assert.equal(st.code, 0, st.stderr);
    const status = JSON.parse(st.stdout) as {
      state: string;
      params: { seed: number };
      stages: { id: string; state: string; outputs: Record<string, { rows?: number }> }[];
    };
    assert.equal(status.state, 'succeeded');
    assert.equal(status.params.seed, 3);
    const split = status.stages.find((s) => s.id === 'split')!;
    const rows = ['train', 'validation', 'test'].map((k) => split.outputs[k]?.rows ?? 0);
    assert.equal(
      rows.reduce((a, b) => a + b, 0),
      10,
      'every ingested row lands in a split',
    );

    const runs = await runCli(['runs'], env);
    assert.match(runs.stdout, new RegExp(runId!));
    const logs = await runCli(['logs', runId!], env);
    assert.match(logs.stdout, /stage-ingest.*\n.*started/);
    const audit = await runCli(['audit', '--run', runId!], env);
    assert.match(audit.stdout, /run\.submitted/);
    assert.match(audit.stdout, /cli-tester run\.completed\s+tiny-/, 'how the run ended is in the trail');
    assert.match(audit.stdout, /stage\.completed\s+.*\/ingest/);
    assert.match(audit.stdout, /cli-tester/);
    const verify = await runCli(['audit', '--verify'], env);
    assert.equal(verify.code, 0, verify.stdout);

    // The same pipeline again: every stage comes from the cache, and logs says from which run.
    const again = await runCli(['submit', join(FIX, 'tiny-pipeline.yaml'), '--param', 'seed=3', '--wait', '--local-worker'], env, {
      timeoutMs: 180_000,
    });
    assert.equal(again.code, 0, again.stdout + again.stderr);
    const againId = /submitted run (\S+)/.exec(again.stdout)?.[1];
    const againLogs = await runCli(['logs', againId!, '--json'], env);
    const events = (JSON.parse(againLogs.stdout) as { event: string; activity?: string; from?: string }[]).filter((l) => l.activity);
    assert.ok(
      events.some((l) => l.event === 'cached'),
      againLogs.stdout,
    );
    for (const l of events.filter((x) => x.event === 'cached' || x.event === 'completed'))
      assert.deepEqual([l.event, l.from?.split('/')[0]], ['cached', runId], `${l.activity} was reused from the first run`);
  });

  it('spec triggers: skipIfUnchanged ends a rerun on unchanged data early, as unchanged', async () => {
    const file = join(FIX, 'tiny-triggered.yaml');
    const first = await runCli(['submit', file, '--wait', '--local-worker', '--json'], env, { timeoutMs: 180_000 });
    assert.equal(first.code, 0, first.stderr);
    const a = JSON.parse(first.stdout.slice(first.stdout.indexOf('{'))) as { gate: { outcome: string }; stages: { state: string }[] };
    assert.equal(a.gate.outcome, 'first-run');
    const second = await runCli(['submit', file, '--wait', '--local-worker', '--json'], env, { timeoutMs: 180_000 });
    assert.equal(second.code, 0, second.stderr);
    const b = JSON.parse(second.stdout.slice(second.stdout.indexOf('{'))) as {
      state: string;
      gate: { outcome: string; reason: string };
      stages: { id: string; state: string }[];
    };
    assert.equal(b.state, 'succeeded');
    assert.equal(b.gate.outcome, 'unchanged');
    assert.deepEqual(
      b.stages.map((s) => s.state),
      ['cached', 'skipped'],
    );
    const audit = await runCli(['audit', '--action', 'run.skipped_unchanged'], env);
    assert.match(audit.stdout, /run\.skipped_unchanged/);
  });

  it('a run over a missing data file fails at once (no retries) with the path and a hint', async () => {
    const started = Date.now();
    const r = await runCli(['submit', join(FIX, 'missing-data.yaml'), '--wait', '--local-worker'], env, { timeoutMs: 120_000 });
    assert.equal(r.code, 1);
    assert.match(r.stdout, /ingest\s+ingest\s+failed .*"no-such-file\.jsonl" does not exist/);
    assert.match(r.stdout, /hint: fix the path/);
    assert.doesNotMatch(r.stdout + r.stderr, /\n\s+at /, 'no stack trace');
    assert.ok(Date.now() - started < 60_000);
    const failedAudit = await runCli(['audit', '--run', /submitted run (\S+)/.exec(r.stdout)![1]!, '--json'], env);
    const ended = (JSON.parse(failedAudit.stdout) as { action: string; details: { error?: string } }[]).filter(
      (x) => x.action === 'run.failed',
    );
    assert.equal(ended.length, 1, failedAudit.stdout);
    assert.match(ended[0]!.details.error ?? '', /stage 'ingest' failed: .*no-such-file\.jsonl/);
    // Following the ended run exits as `submit --wait` did, so `status --watch && promote` stops here; a look is 0.
    const runId = /submitted run (\S+)/.exec(r.stdout)![1]!;
    const watched = await runCli(['status', runId, '--watch'], env);
    assert.match(watched.stdout, /ingest\s+ingest\s+failed/);
    assert.equal(watched.code, 1, 'status --watch of a failed run exits 1');
    assert.equal((await runCli(['status', runId], env)).code, 0);
  });

  it("on a given TEMPORAL_ADDRESS, submit --wait leaves the stages to the queue's workers unless asked", async () => {
    const both = await runCli(['submit', join(FIX, 'tiny-pipeline.yaml'), '--wait', '--local-worker', '--no-local-worker'], env);
    assert.equal(both.code, 2);
    assert.match(both.stderr, /--local-worker and --no-local-worker contradict each other/);
    const noWait = await runCli(['submit', join(FIX, 'tiny-pipeline.yaml'), '--local-worker'], env);
    assert.equal(noWait.code, 2);
    assert.match(noWait.stderr, /--local-worker and --no-local-worker go with --wait/);
    // No worker serves this queue, and the waiting CLI does not become one: it says so and the run waits.
    const args = ['submit', join(FIX, 'tiny-pipeline.yaml'), '--wait', '--queue', 'nobody-q', '--run-id', 'left-to-workers'];
    await assert.rejects(
      runCli(args, env, { timeoutMs: 20_000 }),
      /no worker is polling task queue 'nobody-q' yet; the run starts when one does \(`tempered worker --queue nobody-q`, or pass --local-worker to run its stages in this process\)\. If your workers serve another queue, submit with --queue NAME/,
    );
    // Its history shows nothing ran.
    const none = await runCli(['logs', 'no-such-run'], env);
    assert.equal(none.code, 1);
    assert.match(none.stderr, /no run 'no-such-run'; list runs with `tempered runs`/);
    const logs = await runCli(['logs', 'left-to-workers', '--json'], env);
    assert.equal(logs.code, 0, logs.stderr);
    assert.deepEqual(
      (JSON.parse(logs.stdout) as { activity?: string }[]).filter((l) => l.activity),
      [],
    );
    // `status` answers at once from the run's input (a query would wait for a worker), saying where it waits.
    const st = JSON.parse((await runCli(['status', 'left-to-workers', '--json'], env)).stdout) as {
      state: string;
      waitingForWorker?: string;
      stages: { state: string }[];
    };
    assert.deepEqual([st.state, st.waitingForWorker, st.stages.map((s) => s.state)], ['running', 'nobody-q', ['pending', 'pending']]);
    const text = await runCli(['status', 'left-to-workers'], env);
    assert.match(text.stdout, /waiting: no worker has picked this run up yet; it starts when a worker serving task queue 'nobody-q' runs/);
    const cancel = await runCli(['cancel', 'left-to-workers'], env);
    assert.equal(cancel.code, 0, cancel.stderr);
    assert.match(
      cancel.stdout,
      /no worker has picked it up yet, so it ends \(cancelled, nothing run\) once a worker serving task queue 'nobody-q' does/,
    );
    const after = await runCli(['status', 'left-to-workers'], env);
    assert.match(
      after.stdout,
      /waiting: cancellation requested; no worker has picked this run up yet, and it ends \(cancelled, nothing run\) when a worker serving task queue 'nobody-q' takes it/,
    );
  });

  it('a worker whose metrics address another process holds refuses to start, instead of running without metrics', async () => {
    // As a worker restarted while the old one lingers: the SDK's exporter failed to bind in silence, and every scrape
    // of the address read the old process's numbers.
    const holder = createServer();
    await new Promise<void>((r) => holder.listen({ host: '127.0.0.1', port: 0 }, r));
    const address = `127.0.0.1:${(holder.address() as AddressInfo).port}`;
    try {
      // Before, the worker started and polled: the timeout ends it.
      const r = await runCli(['worker', '--queue', 'metrics-held'], { ...env, TEMPERED_METRICS_ADDRESS: address }, { timeoutMs: 30_000 });
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, new RegExp(`TEMPERED_METRICS_ADDRESS=${address} is in use by another process .*a port of its own`));
      assert.doesNotMatch(r.stderr, /worker polling/);
    } finally {
      holder.close();
    }
  });

  it('a worker whose store is shared but whose registry is its own file (or the reverse) refuses to start, naming what to set', async () => {
    const shared = mkdtempSync(join(tmpdir(), 'tempered-shared-store-'));
    try {
      // A shared folder that is not there (an unmounted share) is refused first.
      const unmounted = await runCli(['worker'], {
        ...env,
        TEMPERED_HOME: join(shared, 'h0'),
        TEMPERED_STORE: join(shared, 'not-mounted'),
      });
      assert.equal(unmounted.code, 1, unmounted.stderr);
      assert.match(
        unmounted.stderr,
        /TEMPERED_STORE: the shared store folder \S+not-mounted does not exist or is not a folder\n\s+mount the share, or create the folder on it; name a folder inside the share/,
      );
      mkdirSync(join(shared, 'store'));
      const storeOnly = { ...env, TEMPERED_HOME: join(shared, 'h1'), TEMPERED_STORE: join(shared, 'store'), TEMPERED_DATABASE_URL: '' };
      const noDb = await runCli(['worker'], storeOnly);
      assert.equal(noDb.code, 2, noDb.stderr);
      assert.match(
        noDb.stderr,
        /the store \S+ is shared, but this worker's registry and audit log would be files of this host .*Set TEMPERED_DATABASE_URL as on the other workers, or pass --single-host/,
      );
      // A CLI in the same state finds no registry, and is told the likely reason.
      const models = await runCli(['models', 'list'], storeOnly);
      assert.equal(models.code, 1, models.stderr);
      assert.match(
        models.stderr,
        /no model registry at .* yet; .*\(the store \S+ is shared: a team's registry and audit log are its database; set TEMPERED_DATABASE_URL as on the workers\)/,
      );
      const noStore = await runCli(['worker'], {
        ...env,
        TEMPERED_HOME: join(shared, 'h2'),
        TEMPERED_STORE: '',
        TEMPERED_DATABASE_URL: 'postgres://tempered:pw@127.0.0.1:9/tempered',
      });
      assert.equal(noStore.code, 2, noStore.stderr);
      assert.match(
        noStore.stderr,
        /the registry and audit log are the shared database postgres:\/\/tempered@127\.0\.0\.1:9\/tempered, but this worker's artifacts would stay in this host's folder/,
      );
      assert.doesNotMatch(noStore.stderr, /pw@/);
    } finally {
      rmSync(shared, { recursive: true, force: true });
    }
  });

  it('status of a run whose first workflow task a worker fails says so, not that it waits for a worker', async () => {
    const worker = await startCliWorker(['--queue', 'broken-q'], env);
    const connection = await Connection.connect({ address: server.address });
    try {
      // A workflow type no tempered worker has: the worker takes the task and fails it.
      const client = new Client({ connection });
      await client.workflow.start('noSuchWorkflow', { taskQueue: 'broken-q', workflowId: 'broken-first-task', args: [] });
      for (let i = 0; i < 100; i++) {
        const events = (await client.workflow.getHandle('broken-first-task').fetchHistory()).events ?? [];
        if (events.some((e) => e.workflowTaskFailedEventAttributes)) break;
        await sleep(200);
      }
      const st = await runCli(['status', 'broken-first-task'], env);
      assert.equal(st.code, 1);
      assert.match(
        st.stderr,
        /run broken-first-task: a worker of task queue 'broken-q' took it, but its first workflow task failed \(.*noSuchWorkflow.*\); see that worker's log/,
      );
      await client.workflow.getHandle('broken-first-task').terminate('test over');
    } finally {
      await connection.close();
      await stopCliWorker(worker);
    }
  });

  it('a run submitted before any worker keeps the start time it was shown while it waited', async () => {
    const r = await runCli(['submit', join(FIX, 'tiny-pipeline.yaml'), '--queue', 'late-q', '--run-id', 'late-start', '--json'], env);
    assert.equal(r.code, 0, r.stderr);
    type St = { state: string; startedAt: string; waitingForWorker?: string };
    const waiting = JSON.parse((await runCli(['status', 'late-start', '--json'], env)).stdout) as St;
    assert.equal(waiting.waitingForWorker, 'late-q');
    await sleep(1500); // the worker's first task comes measurably later than the submission
    // A baseline memo unused for 40 days: a worker collects its own at start (no `store gc` elsewhere sees them).
    const memo = join(env.TEMPERED_HOME!, 'baselines', `${'ab'.repeat(32)}.json`);
    mkdirSync(join(env.TEMPERED_HOME!, 'baselines'), { recursive: true });
    writeFileSync(memo, '{}\n');
    const old = new Date(Date.now() - 40 * 86_400_000);
    utimesSync(memo, old, old);
    const worker = await startCliWorker(['--queue', 'late-q'], env);
    const connection = await Connection.connect({ address: server.address });
    try {
      await new Client({ connection }).workflow.getHandle('late-start').result();
      const done = JSON.parse((await runCli(['status', 'late-start', '--json'], env)).stdout) as St;
      assert.deepEqual([done.state, done.startedAt], ['succeeded', waiting.startedAt]);
      assert.equal(existsSync(memo), false, 'the worker left a baseline memo unused for 40 days');
    } finally {
      await connection.close();
      await stopCliWorker(worker);
    }
  });

  it('submit without --wait returns at once; cancel stops the running stage', async () => {
    let worker: ChildProcess | undefined;
    try {
      worker = await startCliWorker([], env);
      const r = await runCli(['submit', join(FIX, 'probe-pipeline.yaml'), '--json'], env);
      assert.equal(r.code, 0, r.stderr);
      const { runId } = JSON.parse(r.stdout) as { runId: string };
      for (let i = 0; i < 100; i++) {
        const s = JSON.parse((await runCli(['status', runId, '--json'], env)).stdout) as { stages: { id: string; state: string }[] };
        if (s.stages.find((x) => x.id === 'block')?.state === 'running') break;
        await sleep(200);
      }
      // Temporal records an attempt's start only when it ends: logs shows the running one from the server.
      type Line = { time: string; event: string; activity?: string; state?: string };
      const logsOf = async () => JSON.parse((await runCli(['logs', runId, '--json'], env)).stdout) as Line[];
      assert.ok(
        (await logsOf()).some((l) => l.event === 'started' && l.activity?.startsWith('stage-block') && l.state === 'running'),
        'the running stage shows as started',
      );
      // A run started after the blocker ends before it: the list still goes by start, newest first.
      const later = await runCli(['submit', join(FIX, 'tiny-pipeline.yaml'), '--wait', '--run-id', 'after-the-blocker'], env);
      assert.equal(later.code, 0, later.stderr);
      const c = await runCli(['cancel', runId], env);
      assert.equal(c.code, 0, c.stderr);
      let final: { state: string; stages: { id: string; state: string }[] } | undefined;
      for (let i = 0; i < 100; i++) {
        final = JSON.parse((await runCli(['status', runId, '--json'], env)).stdout);
        if (final!.state !== 'running') break;
        await sleep(300);
      }
      assert.equal(final!.state, 'cancelled');
      assert.equal(final!.stages.find((x) => x.id === 'block')!.state, 'cancelled');
      const lines = await logsOf();
      assert.deepEqual(
        lines.map((l) => l.time),
        lines.map((l) => l.time).sort(),
        'in the order things happened',
      );
      const at = (event: string) =>
        lines.findIndex((l) => l.event === event && (event !== 'started' || l.activity?.startsWith('stage-block')));
      assert.ok(at('started') < at('cancel requested'), JSON.stringify(lines));
      const listed = (JSON.parse((await runCli(['runs', '--json'], env)).stdout) as { runId: string; startTime: string }[]).map(
        (r) => r.runId,
      );
      assert.ok(listed.indexOf('after-the-blocker') < listed.indexOf(runId), `newest start first: ${listed.join(', ')}`);
      const again = await runCli(['cancel', runId], env);
      assert.equal(again.code, 1);
      assert.match(again.stderr, /already cancel/);
      // Who asked, and how it ended, are both in the trail.
      const trail = await runCli(['audit', '--run', runId], env);
      assert.match(trail.stdout, /cli-tester run\.cancel_requested\s+blocker-/);
      assert.match(trail.stdout, /run\.cancelled/);
    } finally {
      if (worker) await stopCliWorker(worker);
    }
  });

  it('server start/status/stop manages an embedded dev server in the state folder', async () => {
    const port = await freePort();
    const local = { TEMPERED_HOME: mkdtempSync(join(tmpdir(), 'tempered-srv-')), TEMPERED_DEV_PORT: String(port), TEMPORAL_ADDRESS: '' };
    const envNoAddr = { ...local };
    const start = await runCli(['server', 'start', '--ui-port', String(await freePort())], envNoAddr, { timeoutMs: 90_000 });
    assert.equal(start.code, 0, start.stderr);
    assert.match(start.stdout, new RegExp(`started: Temporal dev server at 127.0.0.1:${port}`));
    const status = await runCli(['server', 'status'], envNoAddr);
    assert.equal(status.code, 0);
    assert.match(status.stdout, /running/);
    const stop = await runCli(['server', 'stop'], envNoAddr);
    assert.equal(stop.code, 0);
    const after = await runCli(['server', 'status'], envNoAddr);
    assert.equal(after.code, 1);
    assert.match(after.stdout, /not running/);
    rmSync(local.TEMPERED_HOME, { recursive: true, force: true });
  });
});
