/**
 * Scheduled retraining on a real Temporal dev server with the real stage kinds: interval firing,
 * the skip overlap policy, pause/unpause, trigger, backfill, run gates (unchanged data, label
 * drift), update semantics, and the `tempered schedule` command with its audit trail.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { InterceptingCall } from '@grpc/grpc-js';
import { Client, Connection } from '@temporalio/client';
import { temporalDataConverter } from '../infra/payload-codec.ts';
import { openAudit } from '../src/audit/log.ts';
import { openRegistry } from '../src/registry/registry.ts';
import { testVersion } from '../src/registry/versions.testing.ts';
import { RunIndex } from '../src/triggers/run-gate.ts';
import { InputError } from '../src/errors.ts';
import { listRuns, waitForRun } from '../client/runs.ts';
import {
  backfillSchedule,
  createSchedule,
  deleteSchedule,
  lastOutcome,
  pauseSchedule,
  planScheduledRun,
  scheduleOptions,
  SpecLoadError,
  readSchedule,
  recentRuns,
  replanStoredSpec,
  triggerSchedule,
  unpauseSchedule,
  updateSchedule,
  type ScheduleTiming,
} from '../client/schedules.ts';
import {
  checkCron,
  checkScheduleName,
  parseDriftTrigger,
  parseDurationOption,
  parseInstant,
  parseMetricTrigger,
  parseOverlap,
} from '../cli/schedule-flags.ts';
import type { KindRegistry } from '../src/spec/types.ts';
import { kindRegistry, loadStageKinds } from '../src/stages/stage-kinds.ts';
import type { RunGateSpec, RunStatus } from '../workflows/types.ts';
import { runScheduleCli, waitFor, writeData, writePipeline } from './helpers/schedule-fixtures.ts';
import { runCliInProcess } from './helpers/cli.ts';
import { probeKind, type ExecutionRecord } from './helpers/test-stages.ts';
import { startTestEnv, TEST_QUEUE, type TestEnv } from './helpers/temporal-env.ts';

let env: TestEnv;
let registry: KindRegistry;
let probeLog: string;
const created = new Set<string>();

before(async () => {
  env = await startTestEnv(await loadStageKinds());
  probeLog = join(env.dir, 'probe.log');
  env.kinds.set('probe', probeKind(probeLog));
  registry = kindRegistry(env.kinds);
  await env.startWorker();
});

after(async () => {
  for (const name of created) await deleteSchedule(env.client, name).catch(() => undefined);
  await env?.close();
});

async function schedule(
  name: string,
  file: string,
  timing: ScheduleTiming,
  o: { gate?: RunGateSpec; paused?: boolean; note?: string; params?: string[] } = {},
) {
  const { input, spec } = await planScheduledRun({
    file,
    params: o.params ?? [],
    registry,
    store: env.store,
    actor: 'tester',
    name,
    gate: o.gate,
  });
  await createSchedule(env.client, { name, taskQueue: TEST_QUEUE, input, spec, timing, paused: o.paused, note: o.note });
  created.add(name);
  return spec;
}

const view = async (name: string) => (await readSchedule(env.client, name)).view;

/** Triggers one run and waits for it to finish. */
async function triggerAndWait(name: string): Promise<RunStatus> {
  const v0 = await view(name);
  const before = v0.actionsTaken;
  // Temporal names a triggered run after the schedule and the second it was taken; a second
  // trigger within the same second would reuse the first run's workflow id.
  const last = v0.recentActions.at(-1);
  if (last && Math.floor(Date.now() / 1000) <= Math.floor(Date.parse(last.takenAt) / 1000)) await sleep(1000 - (Date.now() % 1000) + 20);
  await triggerSchedule(env.client, name);
  const runId = await waitFor(`a new run of ${name}`, async () => {
    const v = await view(name);
    return v.actionsTaken > before && v.recentActions.at(-1)?.runId;
  });
  return waitForRun(env.client, runId);
}

function executed(runId: string): string[] {
  if (!existsSync(probeLog)) return [];
  return readFileSync(probeLog, 'utf8')
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as ExecutionRecord)
    .filter((r) => r.runId === runId && r.outcome === 'ok')
    .map((r) => r.stageId);
}

const stateOf = (st: RunStatus, id: string) => st.stages.find((s) => s.id === id)?.state;
const YEARLY = '0 0 1 1 *';

describe('schedules on Temporal', () => {
  it('fires on an interval; each run executes the scheduled spec and completes', async () => {
    writeData(env.dir, 'tick.jsonl', 20, 0.3);
    const spec = await schedule('tick', writePipeline(env.dir, 'tick', 'tick.jsonl'), { everyMs: 2000, overlap: 'skip' });
    const actions = await waitFor(
      'two scheduled runs',
      async () => {
        const v = await view('tick');
        return v.recentActions.length >= 2 && v.recentActions.slice(0, 2);
      },
      30_000,
    );
    await pauseSchedule(env.client, 'tick');
    for (const a of actions) {
      assert.match(a.runId, /^tick-\d{4}-\d{2}-\d{2}T/);
      // Interval times sit on whole multiples of 2 s since the epoch.
      assert.equal(Date.parse(a.scheduledAt) % 2000, 0, a.scheduledAt);
      const st = await waitForRun(env.client, a.runId);
      assert.equal(st.state, 'succeeded');
      assert.equal(st.specHash, spec.specHash);
      assert.deepEqual(
        st.stages.map((s) => s.id),
        ['ingest', 'train'],
      );
      const memo = (await env.client.workflow.getHandle(a.runId).describe()).memo as Record<string, unknown>;
      assert.equal(memo.scheduleId, 'tick');
      assert.equal(memo.specUri, spec.specUri);
    }
    // The stored spec bytes are the file's bytes.
    assert.equal(readFileSync(env.store.pathOf(spec.specUri), 'utf8'), readFileSync(join(env.dir, 'tick.yaml'), 'utf8'));
  });

  it('overlap skip holds while a run is in progress, for ticks and manual triggers alike', async () => {
    writeData(env.dir, 'slow.jsonl', 10, 0.5);
    await schedule('slow', writePipeline(env.dir, 'slow', 'slow.jsonl', { sleepMs: 7000 }), { everyMs: 1000, overlap: 'skip' });
    const v = await waitFor(
      'a running run and skipped ticks',
      async () => {
        const x = await view('slow');
        return x.runningRuns.length === 1 && x.skippedOverlap >= 2 && x;
      },
      20_000,
    );
    assert.equal(v.actionsTaken, 1, 'only one run started');
    // Through the command: a script that triggers a run must learn that none started (it exited 0).
    const trig = await runCliInProcess(['schedule', 'trigger', 'slow', '--overlap', 'skip'], {
      TEMPORAL_ADDRESS: env.server.address,
      TEMPERED_HOME: env.dir,
      TEMPERED_TASK_QUEUE: TEST_QUEUE,
    });
    assert.equal(trig.code, 3, trig.stdout + trig.stderr);
    assert.match(trig.stdout, /the overlap policy \(skip\) skipped it: a run is still in progress, and nothing ran/);
    const after = await view('slow');
    assert.ok(after.skippedOverlap > v.skippedOverlap, 'the server counted the skip');
    assert.equal(after.actionsTaken, 1, 'the trigger did not start a second run');
    assert.deepEqual(after.runningRuns, v.runningRuns);
    await pauseSchedule(env.client, 'slow');
    const st = await waitForRun(env.client, v.runningRuns[0]!);
    assert.equal(st.state, 'succeeded');
  });

  it('pause stops the ticks and unpause resumes them', async () => {
    writeData(env.dir, 'pausing.jsonl', 10, 0.5);
    await schedule(
      'pausing',
      writePipeline(env.dir, 'pausing', 'pausing.jsonl'),
      { everyMs: 1000, overlap: 'allow-all' },
      { paused: true, note: 'not yet' },
    );
    const v0 = await view('pausing');
    assert.equal(v0.paused, true);
    assert.equal(v0.note, 'not yet');
    await sleep(2500);
    assert.equal((await view('pausing')).actionsTaken, 0, 'no run while paused');
    await unpauseSchedule(env.client, 'pausing', 'go');
    await waitFor('a run after unpausing', async () => (await view('pausing')).actionsTaken >= 1);
    await pauseSchedule(env.client, 'pausing', 'enough');
    await sleep(500); // an action already being taken when the pause landed may still count
    const n = (await view('pausing')).actionsTaken;
    await sleep(2500);
    const v = await view('pausing');
    assert.equal(v.actionsTaken, n, 'no new run after pausing again');
    assert.deepEqual([v.paused, v.note], [true, 'enough']);
    for (const a of v.recentActions) await waitForRun(env.client, a.runId);
  });

  it('trigger starts a run at once, outside the timetable', async () => {
    writeData(env.dir, 'manual.jsonl', 12, 0.25);
    await schedule('manual', writePipeline(env.dir, 'manual', 'manual.jsonl'), { cron: YEARLY, overlap: 'skip' });
    const v = await view('manual');
    assert.equal(v.timing.cron, YEARLY);
    assert.match(v.nextRuns[0]!, /-01-01T00:00:00\.000Z$/);
    const st = await triggerAndWait('manual');
    assert.equal(st.state, 'succeeded');
    assert.deepEqual(executed(st.runId), ['train']);
  });

  it('backfill takes every action of the range, each one running', async () => {
    writeData(env.dir, 'back.jsonl', 10, 0.4);
    await schedule('back', writePipeline(env.dir, 'back', 'back.jsonl'), { cron: '0 * * * *', overlap: 'skip' });
    const hour = 3_600_000;
    const base = Math.floor(Date.now() / hour) * hour;
    const from = new Date(base - 3 * hour - hour / 2);
    const to = new Date(base - hour / 2);
    const expected = [3, 2, 1].map((k) => new Date(base - k * hour).toISOString());
    await backfillSchedule(env.client, 'back', from, to, 'allow-all');
    const inRange = async () =>
      (await view('back')).recentActions.filter((a) => a.scheduledAt >= from.toISOString() && a.scheduledAt <= to.toISOString());
    const acts = await waitFor('three backfilled runs', async () => {
      const a = await inRange();
      return a.length >= 3 && a;
    });
    assert.deepEqual(acts.map((a) => a.scheduledAt).sort(), expected);
    const states = await Promise.all(acts.map(async (a) => (await waitForRun(env.client, a.runId)).state));
    assert.deepEqual(states, ['succeeded', 'succeeded', 'succeeded']);
    assert.equal((await inRange()).length, 3, 'nothing else in the range');
    // Both ends are inclusive: a range from one slot to the next takes both (as docs/schedules.md says).
    const [a, b] = [new Date(base - 6 * hour), new Date(base - 5 * hour)];
    await backfillSchedule(env.client, 'back', a, b, 'allow-all');
    const ends = await waitFor('two backfilled runs at the ends of the range', async () => {
      const got = (await view('back')).recentActions.filter((x) => x.scheduledAt >= a.toISOString() && x.scheduledAt <= b.toISOString());
      return got.length >= 2 && got;
    });
    assert.deepEqual(ends.map((x) => x.scheduledAt).sort(), [a.toISOString(), b.toISOString()]);
    await Promise.all(ends.map((x) => waitForRun(env.client, x.runId)));
    // A range reaching into the future is refused, not started at once.
    await assert.rejects(backfillSchedule(env.client, 'back', from, new Date(Date.now() + 2 * hour), 'allow-all'), /is in the future/);
  });

  it('skip-if-unchanged ends a run on unchanged data early and retrains on changed data', async () => {
    writeData(env.dir, 'gated.jsonl', 30, 0.3, 'a');
    await schedule(
      'gated',
      writePipeline(env.dir, 'gated', 'gated.jsonl'),
      { cron: YEARLY, overlap: 'skip' },
      { gate: { skipIfUnchanged: true } },
    );
    const first = await triggerAndWait('gated');
    assert.equal(first.gate?.outcome, 'first-run');
    assert.equal(stateOf(first, 'train'), 'succeeded');

    const same = await triggerAndWait('gated');
    assert.equal(same.state, 'succeeded');
    assert.equal(same.gate?.outcome, 'unchanged');
    assert.equal(same.gate?.proceed, false);
    assert.equal(stateOf(same, 'train'), 'skipped');
    assert.match(same.stages.find((s) => s.id === 'train')!.skippedBecause!, /run gate: spec and data match run gated-/);
    assert.deepEqual(executed(same.runId), [], 'no training ran');
    // Temporal says COMPLETED of it, as of a run that retrained: `tempered runs`, the Runs page's list (listRuns) and
    // `schedule list` read 'COMPLETED', 'succeeded' and 'last succeeded' of a night that trained nothing.
    const cliEnv = {
      TEMPORAL_ADDRESS: env.server.address,
      TEMPERED_HOME: env.dir,
      TEMPERED_TASK_QUEUE: TEST_QUEUE,
      TEMPERED_PLUGINS: fileURLToPath(new URL('./helpers/probe-plugin.ts', import.meta.url)),
      TEMPERED_PROBE_LOG: probeLog,
    };
    const ofGated = await waitFor('the skipped run listed as ended', async () => {
      const rs = await listRuns(env.client, 50, { schedule: 'gated' });
      return rs.find((r) => r.runId === same.runId)?.status === 'COMPLETED' && rs;
    });
    assert.equal(ofGated.find((r) => r.runId === same.runId)!.skipped?.outcome, 'unchanged');
    assert.equal(ofGated.find((r) => r.runId === first.runId)!.skipped, undefined, 'the first run trained');
    const runsOut = await runCliInProcess(['runs', '--limit', '50'], cliEnv);
    assert.equal(runsOut.code, 0, runsOut.stderr);
    assert.match(
      runsOut.stdout,
      new RegExp(`^${same.runId} +\\S+ +SKIPPED .*  skipped: unchanged \\(spec and data match run ${first.runId}`, 'm'),
    );
    assert.match(runsOut.stdout, new RegExp(`^${first.runId} +\\S+ +COMPLETED `, 'm'));
    const list = await runScheduleCli(['list'], cliEnv);
    assert.equal(list.code, 0, list.stderr);
    assert.match(list.stdout, /^gated\s.* {2}last skipped \(unchanged\) \S+$/m);

    writeData(env.dir, 'gated.jsonl', 30, 0.3, 'b');
    const changed = await triggerAndWait('gated');
    assert.equal(changed.gate?.outcome, 'changed');
    assert.match(changed.gate!.reason, /source data changed/);
    assert.equal(stateOf(changed, 'ingest'), 'succeeded');
    assert.equal(stateOf(changed, 'train'), 'succeeded');
    assert.deepEqual(executed(changed.runId), ['train']);

    // describe's recent runs show each outcome, newest first.
    const runs = await recentRuns(env.client, await view('gated'));
    assert.deepEqual(
      runs.map((r) => [r.runId, r.state, r.gate?.outcome]),
      [
        [changed.runId, 'succeeded', 'changed'],
        [same.runId, 'succeeded', 'unchanged'],
        [first.runId, 'succeeded', 'first-run'],
      ],
    );
    const audit = await openAudit(join(env.dir, 'audit.db'));
    try {
      const skipped = (await audit.query({ action: 'run.skipped_unchanged' })).filter((r) => r.subject === same.runId);
      assert.equal(skipped.length, 1);
      assert.equal(skipped[0]!.details.scheduleId, 'gated');
    } finally {
      await audit.close();
    }
  });

  it('a drift trigger retrains on a shifted label mix, not on new data from the same mix', async () => {
    writeData(env.dir, 'drift.jsonl', 100, 0.2, 'a');
    await schedule(
      'drift',
      writePipeline(env.dir, 'drift', 'drift.jsonl'),
      { cron: YEARLY, overlap: 'skip' },
      { gate: { labelDrift: { threshold: 0.1 } } },
    );
    const first = await triggerAndWait('drift');
    assert.equal(first.gate?.outcome, 'triggered', 'no earlier run to compare with');
    assert.equal(stateOf(first, 'train'), 'succeeded');

    writeData(env.dir, 'drift.jsonl', 200, 0.2, 'b');
    const stable = await triggerAndWait('drift');
    assert.equal(stable.gate?.outcome, 'not-triggered');
    assert.match(stable.gate!.reason, /distance 0\.0000/);
    assert.equal(stateOf(stable, 'train'), 'skipped');

    writeData(env.dir, 'drift.jsonl', 100, 0.6, 'c');
    const shifted = await triggerAndWait('drift');
    assert.equal(shifted.gate?.outcome, 'triggered');
    assert.match(shifted.gate!.reason, /Jensen-Shannon distance 0\.\d+ > 0\.1/);
    assert.equal(stateOf(shifted, 'train'), 'succeeded');
    assert.deepEqual(executed(shifted.runId), ['train']);
  });

  it('runs the stored spec until updated: new params replan the stored bytes, a new file replaces them', async () => {
    writeData(env.dir, 'upd.jsonl', 10, 0.5);
    const file = writePipeline(env.dir, 'upd', 'upd.jsonl');
    const spec1 = await schedule('upd', file, { cron: YEARLY, overlap: 'skip' });
    // Editing the file on disk does not change what the schedule runs.
    writeFileSync(file, readFileSync(file, 'utf8').replace('default: v1', 'default: edited'));
    const r1 = await triggerAndWait('upd');
    assert.equal(r1.specHash, spec1.specHash);
    assert.deepEqual(r1.params, { tag: 'v1' });

    const cur = (await readSchedule(env.client, 'upd')).config;
    const p2 = await replanStoredSpec({ spec: cur.spec, params: ['tag=v3'], registry, store: env.store, actor: 'tester', name: 'upd' });
    await updateSchedule(env.client, { ...cur, ...p2 });
    const v2 = await view('upd');
    assert.equal(v2.spec.specUri, spec1.specUri, 'same stored bytes');
    assert.notEqual(v2.spec.specHash, spec1.specHash);
    assert.deepEqual(v2.spec.params, ['tag=v3']);
    assert.deepEqual((await triggerAndWait('upd')).params, { tag: 'v3' });

    const p3 = await planScheduledRun({ file, params: [], registry, store: env.store, actor: 'tester', name: 'upd' });
    await updateSchedule(env.client, { ...cur, ...p3, timing: { everyMs: 3_600_000, overlap: 'buffer-one' } });
    const v3 = await view('upd');
    assert.notEqual(v3.spec.specUri, spec1.specUri);
    assert.deepEqual([v3.timing.every, v3.timing.cron, v3.timing.overlap], ['1h', undefined, 'buffer-one']);
    assert.deepEqual((await triggerAndWait('upd')).params, { tag: 'edited' });
  });
});

describe('tempered schedule (command line)', () => {
  let cli: Record<string, string>;
  before(() => {
    cli = {
      TEMPORAL_ADDRESS: env.server.address,
      // Same state folder as the worker, so the command's audit records share the worker's log.
      TEMPERED_HOME: env.dir,
      TEMPERED_TASK_QUEUE: TEST_QUEUE,
      TEMPERED_ACTOR: 'sched-tester',
      TEMPERED_PLUGINS: fileURLToPath(new URL('./helpers/probe-plugin.ts', import.meta.url)),
      TEMPERED_PROBE_LOG: probeLog,
    };
  });

  it('rejects bad usage with exit code 2 and says what to do', async () => {
    writeData(env.dir, 'cli.jsonl', 10, 0.3);
    const file = writePipeline(env.dir, 'cli-pipe', 'cli.jsonl');
    // Each child process costs seconds, so this covers one of each kind of failure; the option
    // parsers are tested one by one under 'schedule options'.
    const cases: [string[], RegExp][] = [
      [['create', 'x', '--pipeline', file], /--cron .* or --every/],
      [
        ['create', 'x', '--pipeline', file, '--every', '1h', '--overlap', 'sometimes'],
        /--overlap: unknown overlap policy 'sometimes'[\s\S]*hint: .*buffer-one/,
      ],
      [['create', 'x', '--pipeline', file, '--cron', '61 * * * *'], /Minute is not in range/],
      [['describe', 'nope'], /no schedule named 'nope'[\s\S]*tempered schedule list/],
    ];
    for (const [args, re] of cases) {
      const r = await runScheduleCli(args, cli);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stdout}${r.stderr}`);
      assert.match(r.stderr, re, args.join(' '));
      assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
    }
  });

  it("list says how each schedule's latest run ended, and how many in a row failed", async () => {
    // The on-call view: a schedule failing night after night must show in the list, not only in its own describe.
    writeFileSync(join(env.dir, 'broken.jsonl'), '{"text": "fine", "label": "ham"}\n{"text": "cut off by a failed copy\n');
    await schedule('broken', writePipeline(env.dir, 'broken', 'broken.jsonl'), { cron: YEARLY, overlap: 'skip' });
    for (let i = 0; i < 2; i++) assert.equal((await triggerAndWait('broken')).state, 'failed');
    const listed = async (want: RegExp) =>
      waitFor(`'broken' listed as ${want}`, async () => {
        const l = await runScheduleCli(['list'], cli);
        return l.code === 0 && want.test(l.stdout) && l.stdout;
      });
    const out = await listed(/^broken .*/m);
    assert.match(
      out,
      /^broken\s.*cron 0 0 1 1 \*\s+next \S+ {2}last failed \S+ \(2 in a row\): stage 'ingest' failed: broken\.jsonl:2: 1 bad row\(s\): broken\.jsonl:2: invalid-json/m,
    );
    const json = JSON.parse((await runScheduleCli(['list', '--json'], cli)).stdout) as {
      name: string;
      lastRun?: { state: string; error?: string };
      failedInARow: number;
    }[];
    const broken = json.find((x) => x.name === 'broken')!;
    assert.deepEqual([broken.lastRun?.state, broken.failedInARow], ['failed', 2]);
    assert.match(broken.lastRun?.error ?? '', /invalid-json/);
    // Each schedule's runs are read for the list: their states from a describe each, and one result, the newest
    // ended run's (its error); the others' results, gates and errors the list does not show, are not fetched.
    const calls: string[] = [];
    const counted = await Connection.connect({
      address: env.server.address,
      interceptors: [
        (options, next) => (calls.push(options.method_definition.path.split('/').pop()!), new InterceptingCall(next(options))),
      ],
    });
    try {
      const client = new Client({ connection: counted, dataConverter: temporalDataConverter() });
      const v = await view('broken');
      calls.length = 0;
      assert.equal((await lastOutcome(client, v)).failedInARow, 2);
      assert.deepEqual(calls.sort(), ['DescribeWorkflowExecution', 'DescribeWorkflowExecution', 'GetWorkflowExecutionHistory']);
    } finally {
      await counted.close();
    }

    writeData(env.dir, 'broken.jsonl', 10, 0.3);
    assert.equal((await triggerAndWait('broken')).state, 'succeeded');
    await listed(/^broken\s.* {2}last succeeded \S+$/m);
  });

  it('create, list, describe, trigger, pause, update and delete, each audited', async () => {
    writeData(env.dir, 'cli.jsonl', 10, 0.3);
    const file = writePipeline(env.dir, 'cli-pipe', 'cli.jsonl');
    const c = await runScheduleCli(
      [
        'create',
        'cli-nightly',
        '--pipeline',
        file,
        '--cron',
        '0 3 * * *',
        '--param',
        'tag=v7',
        '--skip-if-unchanged',
        '--note',
        'hello',
        '--json',
      ],
      cli,
    );
    assert.equal(c.code, 0, c.stderr);
    const made = JSON.parse(c.stdout) as {
      spec: { pipeline: string; specHash: string; params: string[] };
      timing: { cron: string };
      gate: RunGateSpec;
      nextRuns: string[];
      note: string;
    };
    created.add('cli-nightly');
    assert.deepEqual(
      [made.spec.pipeline, made.spec.params, made.timing.cron, made.gate, made.note],
      ['cli-pipe', ['tag=v7'], '0 3 * * *', { skipIfUnchanged: true }, 'hello'],
    );
    assert.match(made.nextRuns[0]!, /T03:00:00\.000Z$/);

    const dup = await runScheduleCli(['create', 'cli-nightly', '--pipeline', file, '--every', '1h'], cli);
    assert.equal(dup.code, 2);
    assert.match(dup.stderr, /already exists/);

    // Listing is eventually consistent in Temporal.
    await waitFor(
      'the schedule in the list',
      async () => {
        const l = await runScheduleCli(['list'], cli);
        return l.code === 0 && /cli-nightly\s+cli-pipe\s+[0-9a-f]{12}\s+cron 0 3 \* \* \*/.test(l.stdout);
      },
      30_000,
      500,
    );

    const t = await runScheduleCli(['trigger', 'cli-nightly'], cli);
    assert.equal(t.code, 0, t.stderr);
    const runId = /run (cli-nightly-\S+)/.exec(t.stdout)?.[1];
    assert.ok(runId, t.stdout);
    const st = await waitForRun(env.client, runId!);
    assert.equal(st.state, 'succeeded');
    assert.deepEqual(st.params, { tag: 'v7' });

    const d = await runScheduleCli(['describe', 'cli-nightly'], cli);
    assert.equal(d.code, 0, d.stderr);
    assert.match(d.stdout, new RegExp(`pipeline\\s+cli-pipe, spec ${made.spec.specHash}`));
    assert.match(d.stdout, /spec file\s+.*cli-pipe\.yaml \(stored as artifact:\/\/sha256\/[0-9a-f]{64}\)/);
    assert.match(d.stdout, /when\s+cron "0 3 \* \* \*" \(UTC\), overlap skip/);
    assert.match(d.stdout, /gate\s+skip when spec and data are unchanged/);
    assert.match(d.stdout, /note: hello/);
    assert.match(d.stdout, /next runs\s+\S+T03:00:00/);
    assert.match(d.stdout, new RegExp(`${runId}\\s+succeeded, first-run`));

    const p = await runScheduleCli(['pause', 'cli-nightly', '--note', 'maintenance'], cli);
    assert.equal(p.code, 0, p.stderr);
    const u = await runScheduleCli(['update', 'cli-nightly', '--every', '6h', '--trigger-drift', '0.2', '--json'], cli);
    assert.equal(u.code, 0, u.stderr);
    const upd = JSON.parse(u.stdout) as {
      paused: boolean;
      note: string;
      timing: { every?: string; cron?: string };
      gate: RunGateSpec;
      spec: { specHash: string };
    };
    assert.deepEqual(
      [upd.paused, upd.note, upd.timing.every, upd.timing.cron],
      [true, 'maintenance', '6h', undefined],
      'update keeps the paused state',
    );
    assert.deepEqual(upd.gate, { skipIfUnchanged: true, labelDrift: { distance: 'jensen-shannon', threshold: 0.2 } });
    assert.equal(upd.spec.specHash, made.spec.specHash, 'same spec');
    // A trigger runs a paused schedule once, and says that its timetable stays paused.
    const tp = await runScheduleCli(['trigger', 'cli-nightly'], cli);
    assert.equal(tp.code, 0, tp.stderr);
    assert.match(
      tp.stdout,
      /: run cli-nightly-\S+ \(the schedule stays paused: a trigger runs it once; `tempered schedule unpause cli-nightly` resumes its timetable\)/,
    );
    await waitForRun(env.client, /run (cli-nightly-\S+)/.exec(tp.stdout)![1]!);
    assert.doesNotMatch(t.stdout, /stays paused/, 'an unpaused schedule says nothing of it');

    const del = await runScheduleCli(['delete', 'cli-nightly'], cli);
    assert.equal(del.code, 0, del.stderr);
    created.delete('cli-nightly');
    const gone = await runScheduleCli(['describe', 'cli-nightly'], cli);
    assert.equal(gone.code, 2);

    const audit = await openAudit(join(env.dir, 'audit.db'));
    try {
      const recs = (await audit.query()).filter((r) => r.subject === 'cli-nightly');
      assert.deepEqual(
        recs.map((r) => r.action),
        ['schedule.created', 'schedule.triggered', 'schedule.paused', 'schedule.updated', 'schedule.triggered', 'schedule.deleted'],
      );
      for (const r of recs) {
        assert.equal(r.actor, 'sched-tester');
        assert.equal(r.specHash, made.spec.specHash);
      }
      assert.deepEqual(recs[0]!.details.param, ['tag=v7']);
      assert.equal(recs[0]!.details.cron, '0 3 * * *');
      assert.deepEqual(recs[1]!.details, { overlap: 'skip', runId });
      assert.equal(recs[2]!.details.note, 'maintenance');
      assert.equal(recs[3]!.details.every, '6h');
      assert.equal((await audit.verify()).ok, true);
    } finally {
      await audit.close();
    }
  });
  it('describe shows the file triggers, --no-gate turns them off, update --pipeline drops params it does not declare', async () => {
    writeData(env.dir, 'trig.jsonl', 10, 0.3);
    const plainFile = writePipeline(env.dir, 'trig-pipe', 'trig.jsonl');
    const file = join(env.dir, 'trig-gated.yaml');
    writeFileSync(
      file,
      readFileSync(plainFile, 'utf8').replace('name: trig-pipe\n', 'name: trig-pipe\ntriggers:\n  skipIfUnchanged: true\n'),
    );
    const noParams = join(env.dir, 'trig-noparams.yaml');
    writeFileSync(
      noParams,
      readFileSync(plainFile, 'utf8')
        .replace(/params:\n  tag:\n    type: string\n    default: v1\n/, '')
        .replace("'${{ params.tag }}'", 'fixed'),
    );
    const c = await runScheduleCli(['create', 'cli-trig', '--pipeline', file, '--cron', YEARLY, '--param', 'tag=v2'], cli);
    assert.equal(c.code, 0, c.stderr);
    created.add('cli-trig');
    const d1 = await runScheduleCli(['describe', 'cli-trig'], cli);
    assert.match(d1.stdout, /gate\s+skip when spec and data are unchanged \(from the pipeline file's triggers\)/);

    // Two runs on the same data: the file's trigger skips the second; the record is the schedule's own.
    assert.equal((await triggerAndWait('cli-trig')).gate?.outcome, 'first-run');
    assert.equal((await triggerAndWait('cli-trig')).gate?.outcome, 'unchanged');
    assert.ok(new RunIndex(join(env.dir, 'runs')).last({ schedule: 'cli-trig' }), 'recorded under the schedule');
    assert.equal(new RunIndex(join(env.dir, 'runs')).last({ pipeline: 'trig-pipe' }), undefined, 'not under the pipeline');

    const u = await runScheduleCli(['update', 'cli-trig', '--no-gate'], cli);
    assert.equal(u.code, 0, u.stderr);
    const d2 = await runScheduleCli(['describe', 'cli-trig'], cli);
    assert.match(d2.stdout, /gate\s+none \(--no-gate: every run retrains; the pipeline file's triggers are off\)/);
    const free = await triggerAndWait('cli-trig');
    assert.equal(free.gate?.proceed, true, 'no longer skipped on unchanged data');
    assert.notEqual(stateOf(free, 'train'), 'skipped', 'trained (or reused the cached training)');
    // An update of something else keeps the explicit "no gate".
    assert.equal((await runScheduleCli(['update', 'cli-trig', '--every', '1h'], cli)).code, 0);
    assert.deepEqual((await readSchedule(env.client, 'cli-trig')).config.input.options.gate, {});

    // The kept --param tag=v2 is dropped for a file that declares no parameters, and said so.
    const p = await runScheduleCli(['update', 'cli-trig', '--pipeline', noParams], cli);
    assert.equal(p.code, 0, p.stderr);
    assert.match(p.stderr, /dropped the schedule's --param tag=v2: pipeline trig-pipe declares no such parameter/);
    assert.deepEqual((await view('cli-trig')).spec.params, []);
    const back = await runScheduleCli(['update', 'cli-trig', '--pipeline', file, '--param', 'tag=v5'], cli);
    assert.equal(back.code, 0, back.stderr);
    const cl = await runScheduleCli(['update', 'cli-trig', '--clear-params'], cli);
    assert.equal(cl.code, 0, cl.stderr);
    assert.deepEqual((await view('cli-trig')).spec.params, []);

    // Pause and unpause without a note leave none to show.
    assert.equal((await runScheduleCli(['pause', 'cli-trig'], cli)).code, 0);
    assert.equal((await runScheduleCli(['unpause', 'cli-trig'], cli)).code, 0);
    const d3 = await runScheduleCli(['describe', 'cli-trig'], cli);
    assert.match(d3.stdout, /^schedule cli-trig: active\n/);

    // Deleting the schedule clears its record: one created again under the name starts afresh.
    const del = await runScheduleCli(['delete', 'cli-trig'], cli);
    assert.equal(del.code, 0, del.stderr);
    created.delete('cli-trig');
    assert.match(del.stdout, /last-successful-run record is cleared/);
    assert.equal(new RunIndex(join(env.dir, 'runs')).last({ schedule: 'cli-trig' }), undefined);
  });

  it("update records the updater's shared store and database in a schedule created before runs recorded them; a shell without them records nothing", async () => {
    // A schedule from before 6 Dec 2026 has no store and database, so its runs were never checked by workers, and
    // `update` kept that (it keeps what a schedule records): there was no way to add them but to delete it.
    writeData(env.dir, 'legacy.jsonl', 10, 0.3);
    await schedule(
      'legacy',
      writePipeline(env.dir, 'legacy-pipe', 'legacy.jsonl'),
      { everyMs: 3_600_000, overlap: 'skip' },
      { paused: true },
    );
    const backends = async () => (await readSchedule(env.client, 'legacy')).config.input.options.backends;
    assert.equal(await backends(), undefined);
    // From a laptop's shell: nothing to record.
    const plain = await runCliInProcess(['schedule', 'update', 'legacy', '--note', 'from a laptop'], cli);
    assert.equal(plain.code, 0, plain.stderr);
    assert.equal(await backends(), undefined);
    // From a shell with the team's shared store.
    const share = mkdtempSync(join(env.dir, 'share-'));
    const team = await runScheduleCli(['update', 'legacy', '--note', 'from the team'], { ...cli, TEMPERED_STORE: share });
    assert.equal(team.code, 0, team.stderr);
    const recorded = await backends();
    assert.deepEqual(recorded, {
      store: 'shared folder',
      database: 'local',
      storeId: JSON.parse(readFileSync(join(share, 'instance.json'), 'utf8')).instanceId,
    });
    assert.match(
      team.stderr,
      /note: schedule legacy recorded no store or database .*; its runs now record this shell's, shared folder and local/,
    );
    // Recorded once: a later update from elsewhere keeps it.
    assert.equal((await runCliInProcess(['schedule', 'update', 'legacy', '--note', 'again'], cli)).code, 0);
    assert.deepEqual(await backends(), recorded);
  });

  it('refuses a schedule that never fires and a metric trigger on a model without that metric', async () => {
    writeData(env.dir, 'never.jsonl', 10, 0.3);
    const file = writePipeline(env.dir, 'never-pipe', 'never.jsonl');
    const n = await runScheduleCli(['create', 'cli-never', '--pipeline', file, '--cron', '0 3 31 2 *'], cli);
    assert.equal(n.code, 2, n.stdout + n.stderr);
    assert.match(n.stderr, /cron "0 3 31 2 \*" has no next run: the schedule would never fire/);
    assert.equal((await runScheduleCli(['describe', 'cli-never'], cli)).code, 2, 'not left behind');
    const six = await runScheduleCli(['create', 'cli-never', '--pipeline', file, '--cron', '0 0 3 * * *'], cli);
    assert.equal(six.code, 2);
    assert.match(six.stderr, /has 6 fields/);
    // A paused schedule still has next runs; an update to a timetable without any is refused and undone.
    const p = await runScheduleCli(['create', 'cli-never', '--pipeline', file, '--every', '1h', '--paused'], cli);
    assert.equal(p.code, 0, p.stderr);
    created.add('cli-never');
    const u = await runScheduleCli(['update', 'cli-never', '--cron', '0 3 30 2 *'], cli);
    assert.equal(u.code, 2, u.stdout + u.stderr);
    assert.match(u.stderr, /would never fire/);
    const kept = await view('cli-never');
    assert.deepEqual([kept.timing.every, kept.timing.cron, kept.paused], ['1h', undefined, true]);
    assert.equal((await runScheduleCli(['delete', 'cli-never'], cli)).code, 0);
    created.delete('cli-never');

    const reg = await openRegistry(join(env.dir, 'registry.db'));
    await reg.registerVersion(testVersion('never-clf', 'c', { metrics: { f1_macro: 0.91 } }));
    await reg.close();
    const m = await runScheduleCli(
      ['create', 'cli-never', '--pipeline', file, '--every', '1h', '--trigger-metric', 'never-clf@latest:f1:0.9'],
      cli,
    );
    assert.equal(m.code, 2, m.stdout + m.stderr);
    assert.match(
      m.stderr,
      /--trigger-metric: never-clf@latest \(v1\) has no metric 'f1' \(it has f1_macro\)[\s\S]*hint: .*never-clf@latest:f1_macro:0\.9/,
    );
  });
});

describe('schedule options', () => {
  const rejects = (f: () => unknown, where: string, re: RegExp) =>
    assert.throws(f, (e: unknown) => e instanceof InputError && e.where === where && re.test(e.message) && !!e.hint);

  it('parses durations, insisting on whole seconds and a minimum where Temporal needs them', () => {
    assert.equal(parseDurationOption('1h30m', '--every', { minMs: 1000, wholeSeconds: true }), 5_400_000);
    assert.equal(parseDurationOption('250ms', '--jitter'), 250);
    rejects(() => parseDurationOption('1.5s', '--every'), '--every', /not a duration/);
    rejects(() => parseDurationOption('1500ms', '--every', { wholeSeconds: true }), '--every', /whole number of seconds/);
    rejects(() => parseDurationOption('5s', '--catchup-window', { minMs: 10_000 }), '--catchup-window', /too short/);
  });

  it('checks cron expressions before the server sees them', () => {
    for (const ok of ['0 3 * * *', '*/15 9-17 * * MON-FRI', '@daily', 'CRON_TZ=Europe/Paris 30 2 * * 1-5']) assert.equal(checkCron(ok), ok);
    rejects(() => checkCron('0 3 * *'), '--cron', /4 fields/);
    // Temporal would read a 6th field as seconds and a 7th as the year: "0 0 3 * * *" would run monthly.
    rejects(() => checkCron('0 0 3 * * *'), '--cron', /6 fields; a cron expression here has exactly 5 \(no seconds or year field\)/);
    rejects(() => checkCron('0 0 12 * * * 2030'), '--cron', /7 fields/);
    rejects(() => checkCron('@every 5m'), '--cron', /is an interval/);
    rejects(() => checkCron('@sometimes'), '--cron', /unknown cron shorthand/);
    rejects(() => checkCron('0 3 * * $'), '--cron', /not a cron field/);
    // Temporal reads '#' on as a comment even inside a field: the second Monday would fire every Monday.
    rejects(() => checkCron('0 3 * * 1#2'), '--cron', /'1#2' asks for an nth weekday of the month.*would read '1' alone/);
    assert.equal(checkCron('0 3 * * 1 # nightly'), '0 3 * * 1 # nightly');
    // Quartz's ?, L and W: the server's own refusal was "DayOfMonth is not in range [1-31]".
    for (const q of ['0 3 ? * *', '0 0 L * *', '0 3 15W * *', '0 0 * * 5L'])
      rejects(() => checkCron(q), '--cron', /is Quartz cron syntax \(\?, L, W\)/);
    // Names that hold the letters stay names.
    assert.equal(checkCron('0 3 * JUL SAT'), '0 3 * JUL SAT');
  });

  it('parses triggers and overlap policies', () => {
    assert.deepEqual(parseMetricTrigger('spam-clf:f1:0.9'), { model: 'spam-clf', metric: 'f1', threshold: 0.9 });
    assert.deepEqual(parseMetricTrigger('spam-clf@staging:accuracy:0.75'), {
      model: 'spam-clf',
      alias: 'staging',
      metric: 'accuracy',
      threshold: 0.75,
    });
    rejects(() => parseMetricTrigger('spam-clf:f1'), '--trigger-metric', /model:metric:threshold/);
    rejects(() => parseMetricTrigger('spam-clf:f1:high'), '--trigger-metric', /not a number/);
    rejects(() => parseMetricTrigger('a@b@c:f1:0.5'), '--trigger-metric', /model or model@alias/);
    assert.deepEqual(parseDriftTrigger('0.1'), { distance: 'jensen-shannon', threshold: 0.1 });
    for (const bad of ['', '1', '-0.1', 'x']) rejects(() => parseDriftTrigger(bad), '--trigger-drift', /not a distance threshold/);
    assert.equal(parseOverlap('buffer-all'), 'buffer-all');
    rejects(() => parseOverlap('BUFFER_ALL'), '--overlap', /unknown overlap policy/);
    assert.equal(parseInstant('2026-01-02T03:04:05Z', '--from').toISOString(), '2026-01-02T03:04:05.000Z');
    rejects(() => parseInstant('yesterday', '--from'), '--from', /not an ISO time/);
    assert.equal(checkScheduleName('nightly.spam-v2'), 'nightly.spam-v2');
    rejects(() => checkScheduleName('-x'), 'schedule name', /not a valid schedule name/);
    rejects(() => checkScheduleName('a b'), 'schedule name', /not a valid schedule name/);
  });

  it('plans from the stored bytes and builds the action Temporal receives', async () => {
    writeData(env.dir, 'opts.jsonl', 4, 0.5);
    const file = writePipeline(env.dir, 'opts', 'opts.jsonl');
    const { input, spec } = await planScheduledRun({
      file,
      params: ['tag=x'],
      registry,
      store: env.store,
      actor: 'ann',
      name: 'opts',
      gate: { skipIfUnchanged: true },
    });
    assert.deepEqual(input.options, {
      baseDir: env.dir,
      actor: 'ann',
      specFile: file,
      scheduleId: 'opts',
      gate: { skipIfUnchanged: true },
    });
    assert.deepEqual(input.plan.params, { tag: 'x' });
    const o = scheduleOptions({
      name: 'opts',
      taskQueue: 'q',
      input,
      spec,
      timing: { everyMs: 60_000, jitterMs: 5000, catchupWindowMs: 600_000, overlap: 'buffer-one' },
    });
    assert.deepEqual(o.spec, { intervals: [{ every: 60_000 }], jitter: 5000 });
    assert.deepEqual(o.policies, { overlap: 'BUFFER_ONE', catchupWindow: 600_000 });
    assert.equal(o.action.workflowType, 'pipelineRun');
    assert.equal(o.action.taskQueue, 'q');
    assert.deepEqual(o.action.args, [input]);
    assert.deepEqual(o.memo, { tempered: 1, pipeline: 'opts', specHash: spec.specHash, specUri: spec.specUri, file });
    assert.throws(() => scheduleOptions({ name: 'opts', taskQueue: 'q', input, spec, timing: { overlap: 'skip' } }), InputError);

    writeFileSync(join(env.dir, 'broken.yaml'), 'name: broken\nstages:\n  a:\n    uses: ingst\n');
    await assert.rejects(
      planScheduledRun({ file: join(env.dir, 'broken.yaml'), params: [], registry, store: env.store, actor: 'ann', name: 'b' }),
      (e: unknown) => {
        assert.ok(e instanceof SpecLoadError);
        assert.equal(e.errors[0]!.line, 4);
        return true;
      },
    );
    await assert.rejects(
      planScheduledRun({ file: join(env.dir, 'missing.yaml'), params: [], registry, store: env.store, actor: 'ann', name: 'b' }),
      (e: unknown) => {
        assert.ok(e instanceof InputError);
        assert.match(e.message, /missing\.yaml: no such file/);
        return true;
      },
    );
    await assert.rejects(
      planScheduledRun({ file, params: ['nope=1'], registry, store: env.store, actor: 'ann', name: 'b' }),
      SpecLoadError,
    );
  });
});
