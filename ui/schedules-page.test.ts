/**
 * The dashboard's Schedules page (GET /api/schedules, polled every 3 s) asks Temporal a bounded amount per poll: one
 * describe per schedule, and each ended recent run read once, not on every poll. A real dev server and worker run the
 * schedules' runs; the client the dashboard gets is the real one, with its describes counted on the way through.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Client } from '@temporalio/client';
import { createSchedule, planScheduledRun, readSchedule, triggerSchedule } from '../client/schedules.ts';
import { statePaths } from '../src/state-paths.ts';
import { kindRegistry } from '../src/stages/stage-kinds.ts';
import { probeKind } from '../tests/helpers/test-stages.ts';
import { waitFor } from '../tests/helpers/schedule-fixtures.ts';
import { startTestEnv, TEST_QUEUE, type TestEnv } from '../tests/helpers/temporal-env.ts';
import { createUiServer, type UiServer } from './server.ts';

const TOKEN = 'ui-schedules-token-0123456789';
const SCHEDULES = 4;
const RUNS_EACH = 2;
const calls = { scheduleDescribes: 0, runDescribes: 0, results: 0 };

/** The real client, its schedule and run handles' describe and result counted. */
function counted(real: Client): Client {
  const schedule = new Proxy(real.schedule, {
    get(target, prop, receiver) {
      if (prop !== 'getHandle') return Reflect.get(target, prop, receiver);
      return (id: string) => {
        const h = target.getHandle(id);
        return new Proxy(h, {
          get: (t, p, r) => (p === 'describe' ? () => (calls.scheduleDescribes++, t.describe()) : Reflect.get(t, p, r)),
        });
      };
    },
  });
  const workflow = new Proxy(real.workflow, {
    get(target, prop, receiver) {
      if (prop !== 'getHandle') return Reflect.get(target, prop, receiver);
      return (...args: Parameters<typeof target.getHandle>) => {
        const h = target.getHandle(...args);
        return new Proxy(h, {
          get: (t, p, r) =>
            p === 'describe'
              ? () => (calls.runDescribes++, t.describe())
              : p === 'result'
                ? () => (calls.results++, t.result())
                : Reflect.get(t, p, r),
        });
      };
    },
  });
  return new Proxy(real, {
    get: (t, p, r) => (p === 'schedule' ? schedule : p === 'workflow' ? workflow : Reflect.get(t, p, r)),
  });
}

let env: TestEnv;
let ui: UiServer;
let url: string;

before(async () => {
  env = await startTestEnv(new Map());
  env.kinds.set('probe', probeKind(join(env.dir, 'executions.log')));
  await env.startWorker();
  const dir = mkdtempSync(join(tmpdir(), 'tempered-ui-schedules-'));
  const file = join(dir, 'tiny.yaml');
  writeFileSync(file, "name: tiny\nstages:\n  only:\n    uses: probe\n    with: { value: 'x' }\n");
  for (let i = 0; i < SCHEDULES; i++) {
    const name = `s${i}`;
    const { input, spec } = await planScheduledRun({
      file,
      params: [],
      registry: kindRegistry(env.kinds),
      store: env.store,
      actor: 'ann',
      name,
    });
    await createSchedule(env.client, { name, taskQueue: TEST_QUEUE, input, spec, timing: { cron: '0 3 1 1 *', overlap: 'allow-all' } });
  }
  // A second apart: two actions of one schedule in one second would share a workflow id.
  for (let k = 0; k < RUNS_EACH; k++) {
    if (k > 0) await sleep(1100);
    for (let i = 0; i < SCHEDULES; i++) await triggerSchedule(env.client, `s${i}`);
  }
  // Every run ended: each schedule's recent actions are closed runs.
  await waitFor(
    'every scheduled run to end',
    async () => {
      for (let i = 0; i < SCHEDULES; i++) {
        const { view } = await readSchedule(env.client, `s${i}`);
        if (view.recentActions.length < RUNS_EACH) return false;
        for (const a of view.recentActions)
          if ((await env.client.workflow.getHandle(a.runId, a.executionRunId).describe()).status.name === 'RUNNING') return false;
      }
      return true;
    },
    120_000,
  );
  const paths = statePaths(env.dir, {});
  ui = await createUiServer({
    paths,
    store: env.store,
    client: async () => counted(env.client),
    token: TOKEN,
    actor: 'tester',
    taskQueue: TEST_QUEUE,
  });
  url = await ui.listen(0, '127.0.0.1');
});
after(async () => {
  await ui?.close();
  await env?.close();
});

async function poll() {
  const res = await fetch(`${url}/api/schedules`, { headers: { authorization: `Bearer ${TOKEN}` } });
  assert.equal(res.status, 200);
  return (await res.json()) as { schedules: { name: string; recent: { runId: string; state: string }[] }[] };
}

describe('GET /api/schedules', () => {
  it('describes each schedule once per poll, and reads each ended run once across polls', async () => {
    const first = await poll();
    assert.deepEqual(
      first.schedules.map((s) => s.name),
      Array.from({ length: SCHEDULES }, (_, i) => `s${i}`),
    );
    for (const s of first.schedules)
      assert.deepEqual(
        s.recent.map((r) => r.state),
        Array(RUNS_EACH).fill('succeeded'),
        s.name,
      );
    assert.equal(calls.scheduleDescribes, SCHEDULES);
    assert.ok(calls.runDescribes <= SCHEDULES * RUNS_EACH, `${calls.runDescribes} run describes for ${SCHEDULES * RUNS_EACH} runs`);

    Object.assign(calls, { scheduleDescribes: 0, runDescribes: 0, results: 0 });
    const second = await poll();
    assert.deepEqual(second, first);
    assert.equal(calls.scheduleDescribes, SCHEDULES);
    // Ended runs are not asked about again.
    assert.deepEqual([calls.runDescribes, calls.results], [0, 0]);
  });
});
