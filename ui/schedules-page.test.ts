/**
 * The dashboard's Schedules page (GET /api/schedules, polled every 3 s) asks Temporal a bounded amount
 * per poll: one describe per schedule, and each ended recent run read once, not on every poll. A stand-in
 * Temporal client counts the calls.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Client } from '@temporalio/client';
import { statePaths } from '../src/state-paths.ts';
import { ArtifactStore } from '../src/store/artifact-store.ts';
import { createUiServer, type UiServer } from './server.ts';

const TOKEN = 'ui-schedules-token-0123456789';
const SCHEDULES = 12;
const RECENT = 5;
const calls = { scheduleDescribes: 0, runDescribes: 0, results: 0 };
/** Runs still running: the last action of schedule s00. */
const running = new Set(['s00-run-4']);

const at = new Date('2026-12-01T03:00:00Z');
function description(name: string) {
  return {
    scheduleId: name,
    action: {
      type: 'startWorkflow',
      workflowType: 'pipelineRun',
      taskQueue: 'q',
      args: [{ plan: { name: `pipe-${name}`, specHash: 'ab'.repeat(32) }, options: { actor: 'ann' } }],
      memo: { timing: { cron: '0 3 * * *' } },
    },
    memo: { tempered: true },
    policies: { overlap: 'SKIP', catchupWindow: 60_000 },
    spec: { intervals: [] },
    state: { paused: false },
    info: {
      nextActionTimes: [new Date('2026-12-07T03:00:00Z')],
      recentActions: Array.from({ length: RECENT }, (_, i) => ({
        action: { workflow: { workflowId: `${name}-run-${i}`, firstExecutionRunId: `exec-${i}` } },
        scheduledAt: at,
        takenAt: at,
      })),
      runningActions: [],
      numActionsTaken: RECENT,
      numActionsSkippedOverlap: 0,
      numActionsMissedCatchupWindow: 0,
      createdAt: at,
      lastUpdatedAt: at,
    },
  };
}

const client = {
  schedule: {
    list: () =>
      (async function* () {
        for (let i = 0; i < SCHEDULES; i++) yield { scheduleId: `s${String(i).padStart(2, '0')}`, memo: { tempered: true } };
      })(),
    getHandle: (name: string) => ({
      describe: async () => {
        calls.scheduleDescribes++;
        return description(name);
      },
    }),
  },
  workflow: {
    getHandle: (id: string) => ({
      describe: async () => {
        calls.runDescribes++;
        return { status: { name: running.has(id) ? 'RUNNING' : 'COMPLETED' } };
      },
      result: async () => {
        calls.results++;
        return { state: 'succeeded' };
      },
    }),
  },
} as unknown as Client;

let dir: string;
let ui: UiServer;
let url: string;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tempered-ui-schedules-'));
  const paths = statePaths(dir, {});
  ui = await createUiServer({
    paths,
    store: new ArtifactStore(paths.store),
    client: async () => client,
    token: TOKEN,
    actor: 'tester',
    taskQueue: 'q',
  });
  url = await ui.listen(0, '127.0.0.1');
});
after(async () => {
  await ui?.close();
  rmSync(dir, { recursive: true, force: true });
});

async function poll() {
  const res = await fetch(`${url}/api/schedules`, { headers: { authorization: `Bearer ${TOKEN}` } });
  assert.equal(res.status, 200);
  return (await res.json()) as { schedules: { name: string; recent: { runId: string; state: string }[] }[] };
}

describe('GET /api/schedules', () => {
  it('describes each schedule once per poll, and reads each ended run once across polls', async () => {
    const first = await poll();
    assert.equal(first.schedules.length, SCHEDULES);
    assert.deepEqual(
      first.schedules.map((s) => s.name),
      [...first.schedules.map((s) => s.name)].sort(),
    );
    assert.equal(first.schedules[0]!.recent.find((r) => r.runId === 's00-run-4')?.state, 'running');
    assert.equal(first.schedules[1]!.recent.length, RECENT);
    assert.ok(first.schedules[1]!.recent.every((r) => r.state === 'succeeded'));
    assert.equal(calls.scheduleDescribes, SCHEDULES);
    assert.equal(calls.runDescribes, SCHEDULES * RECENT);

    Object.assign(calls, { scheduleDescribes: 0, runDescribes: 0, results: 0 });
    const second = await poll();
    assert.deepEqual(second, first);
    assert.equal(calls.scheduleDescribes, SCHEDULES);
    // Only the run still running is asked about again.
    assert.equal(calls.runDescribes, 1);
    assert.equal(calls.results, 0);

    // Once it has ended, it is read one last time, and its new state shown.
    running.clear();
    Object.assign(calls, { scheduleDescribes: 0, runDescribes: 0, results: 0 });
    const third = await poll();
    assert.equal(third.schedules[0]!.recent.find((r) => r.runId === 's00-run-4')?.state, 'succeeded');
    assert.equal(calls.runDescribes, 1);
  });
});
