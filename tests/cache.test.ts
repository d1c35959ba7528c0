/**
 * The stage cache through real runs: an identical resubmit runs no stage activity, and changing one
 * config value reruns exactly that stage and its dependents.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { submitRun, waitForRun } from '../client/runs.ts';
import type { PlannedPipeline } from '../src/spec/types.ts';
import { plannedPipeline, type StageDraft } from './helpers/plans.ts';
import { probeKind, type ExecutionRecord } from './helpers/test-stages.ts';
import { startTestEnv, TEST_QUEUE, type TestEnv } from './helpers/temporal-env.ts';

let env: TestEnv;
let logFile: string;

const stage = (id: string, needs: string[], value: string, extra: Partial<StageDraft> = {}): StageDraft => ({
  id,
  uses: 'probe',
  needs,
  with: { value, inputs: needs.map((n) => `\${{ stages.${n}.outputs.out }}`) },
  ...extra,
});

function chain(values: Record<string, string>, extra: Record<string, Partial<StageDraft>> = {}): PlannedPipeline {
  const stages = [
    stage('a', [], values.a!, extra.a),
    stage('b', ['a'], values.b!, extra.b),
    stage('c', ['b'], values.c!, extra.c),
    stage('side', ['a'], values.side!, extra.side),
  ];
  return plannedPipeline('cached', stages, { specHash: JSON.stringify(values) });
}

async function run(p: PlannedPipeline, noCache = false) {
  const h = await submitRun(env.client, { plan: p, options: { baseDir: env.dir, actor: 'test', noCache } }, { taskQueue: TEST_QUEUE });
  const status = await waitForRun(env.client, h.workflowId);
  const ran = existsSync(logFile)
    ? readFileSync(logFile, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as ExecutionRecord).filter((r) => r.runId === h.workflowId).map((r) => r.stageId).sort()
    : [];
  return { status, ran, states: Object.fromEntries(status.stages.map((s) => [s.id, s.state])) };
}

before(async () => {
  env = await startTestEnv(new Map());
  logFile = join(env.dir, 'executions.log');
  env.kinds.set('probe', probeKind(logFile));
  await env.startWorker();
});
after(async () => env?.close());

describe('stage cache', () => {
  const base = { a: 'A1', b: 'B1', c: 'C1', side: 'S1' };

  it('runs everything the first time and nothing on an identical resubmit', async () => {
    const first = await run(chain(base));
    assert.deepEqual(first.ran, ['a', 'b', 'c', 'side']);
    const second = await run(chain(base));
    assert.deepEqual(second.ran, [], 'no stage activity ran');
    assert.deepEqual(second.states, { a: 'cached', b: 'cached', c: 'cached', side: 'cached' });
    assert.deepEqual(second.status.stages.find((s) => s.id === 'c')!.outputs, first.status.stages.find((s) => s.id === 'c')!.outputs);
    assert.equal(second.status.stages[0]!.cachedFrom?.runId, first.status.runId);
  });

  it('reruns exactly the changed stage and its dependents', async () => {
    const changed = await run(chain({ ...base, b: 'B2' }));
    assert.deepEqual(changed.ran, ['b', 'c']);
    assert.deepEqual(changed.states, { a: 'cached', b: 'succeeded', c: 'succeeded', side: 'cached' });
  });

  it('--no-cache and per-stage cache: false turn reuse off', async () => {
    const all = await run(chain(base), true);
    assert.deepEqual(all.ran, ['a', 'b', 'c', 'side']);
    const one = await run(chain(base, { side: { cache: false } }));
    assert.deepEqual(one.ran, ['side']);
  });
});
