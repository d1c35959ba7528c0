/**
 * Fine-tuning end to end on a real dev server with a tiny model: ingest → dedupe → split → train
 * (LoRA) → evaluate (with the frozen-feature baseline) → register → deploy, then a served
 * prediction; gates that pass and fail; lineage from model to run to data; the audit trail.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { submitRun, waitForRun } from '../client/runs.ts';
import { openAudit } from '../src/audit/log.ts';
import { openRegistry } from '../src/registry/registry.ts';
import { createModelServer } from '../src/serve/server.ts';
import { registryModelSource } from '../cli/commands/serve.ts';
import { loadSpec } from '../src/spec/index.ts';
import { kindRegistry, loadStageKinds } from '../src/stages/stage-kinds.ts';
import type { RunStatus } from '../workflows/types.ts';
import { assertPredictsSentiment, writeE2EPipeline } from './helpers/e2e-fixture.ts';
import { startTestEnv, TEST_QUEUE, type TestEnv } from './helpers/temporal-env.ts';

let env: TestEnv;

async function runPipeline(file: string, params: Record<string, string> = {}): Promise<RunStatus> {
  const reg = kindRegistry(env.kinds);
  const res = await loadSpec(file, { kinds: reg.kinds, knownButUnavailable: reg.knownButUnavailable, paramOverrides: params });
  if (!res.ok) throw new Error(JSON.stringify(res.errors));
  const h = await submitRun(
    env.client,
    { plan: res.plan, options: { baseDir: dirname(file), actor: 'e2e-tester' } },
    { taskQueue: TEST_QUEUE },
  );
  return waitForRun(env.client, h.workflowId);
}

/** The real server over the registry's production alias of e2e-clf. */
function serveProduction(pollMs?: number) {
  return createModelServer({
    resolveCurrent: registryModelSource({
      registryDb: join(env.dir, 'registry.db'),
      store: env.store,
      servingDir: join(env.dir, 'serving'),
      name: 'e2e-clf',
      alias: 'production',
    }),
    token: 'test-token-123456',
    pollMs,
  });
}

before(async () => {
  env = await startTestEnv(await loadStageKinds());
  await env.startWorker();
});
after(async () => env?.close());

describe('fine-tuning end to end', () => {
  let first: RunStatus;
  let firstFile: string;

  it('runs ingest to deploy on a tiny model and beats nothing-learned', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'e2e-'));
    firstFile = writeE2EPipeline(dir);
    first = await runPipeline(firstFile);
    const states = Object.fromEntries(first.stages.map((s) => [s.id, s.state]));
    assert.deepEqual(
      states,
      {
        ingest: 'succeeded',
        dedupe: 'succeeded',
        split: 'succeeded',
        train: 'succeeded',
        evaluate: 'succeeded',
        register: 'succeeded',
        deploy: 'succeeded',
      },
      JSON.stringify(first.stages.map((s) => [s.id, s.error])),
    );
    const evalOut = first.stages.find((s) => s.id === 'evaluate')!.outputs!;
    assert.ok((evalOut.f1_macro as number) >= 0.8, `fine-tuned f1_macro ${evalOut.f1_macro}`);
    const deploy = first.stages.find((s) => s.id === 'deploy')!.outputs!;
    assert.equal(deploy.promoted, true, String(deploy.explanation));
    assert.equal(deploy.ref, 'e2e-clf@1');
  });

  it('records lineage from model to run to data, and an intact audit trail', async () => {
    const reg = await openRegistry(join(env.dir, 'registry.db'));
    try {
      const v = await reg.getVersion('e2e-clf', 'production');
      assert.equal(v.version, 1);
      assert.equal(v.lineage.runId, first.runId);
      assert.equal(v.lineage.specHash, first.specHash);
      const split = first.stages.find((s) => s.id === 'split')!.outputs!;
      assert.equal(v.lineage.data.find((d) => d.name === 'train')!.sha256, (split.train as { sha256: string }).sha256);
      assert.ok(v.metrics.f1_macro! >= 0.8);
      assert.ok(v.metrics['baseline.f1_macro'] !== undefined, 'baseline metrics recorded');
      assert.ok(v.artifacts.some((a) => a.role === 'onnx'));
      assert.match(JSON.stringify(v.lineage.baseModel), /file:/);
    } finally {
      await reg.close();
    }
    const audit = await openAudit(join(env.dir, 'audit.db'));
    try {
      const actions = (await audit.query({ run: first.runId })).map((r) => r.action);
      for (const a of ['stage.completed', 'model.registered', 'model.promoted']) assert.ok(actions.includes(a), `${a} in ${actions}`);
      assert.equal((await audit.query({ model: 'e2e-clf@1', action: 'model.promoted' }))[0]!.actor, 'e2e-tester');
      assert.equal((await audit.verify()).ok, true);
    } finally {
      await audit.close();
    }
  });

  it('a rerun reuses training, evaluates against the new production, and registers no duplicate', async () => {
    const again = await runPipeline(firstFile);
    const states = Object.fromEntries(again.stages.map((s) => [s.id, s.state]));
    // evaluate reruns because production moved (none → v1); register and deploy always act on the registry as it is.
    assert.deepEqual(states, {
      ingest: 'cached',
      dedupe: 'cached',
      split: 'cached',
      train: 'cached',
      evaluate: 'succeeded',
      register: 'succeeded',
      deploy: 'succeeded',
    });
    assert.equal(again.stages.find((s) => s.id === 'register')!.outputs!.version, 1, 'same model bytes, same version');
    // Production is this very model: evaluate does not score it twice, and deploy judges no gate against it.
    assert.match(
      String(again.stages.find((s) => s.id === 'evaluate')!.outputs!.comparison),
      /^e2e-clf@1 \(current production\) is the fine-tuned model itself \(the same model bytes\), not scored again/,
    );
    assert.equal(
      again.stages.find((s) => s.id === 'deploy')!.outputs!.explanation,
      'v1 is already production: nothing to promote, and no gate judged it against itself',
    );
    const reg = await openRegistry(join(env.dir, 'registry.db'));
    try {
      assert.equal((await reg.listVersions('e2e-clf')).length, 1);
    } finally {
      await reg.close();
    }
  });

  it('serves the promoted model: a prediction for a text', async () => {
    const server = await serveProduction();
    try {
      await assertPredictsSentiment(await server.listen(0, '127.0.0.1'));
    } finally {
      await server.close();
    }
  });

  it('a failed gate ends the run as not promoted, not as an error', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'e2e-gate-'));
    const st = await runPipeline(writeE2EPipeline(dir, { gate: 'f1_macro >= 1.01', seed: 6 }));
    assert.equal(st.state, 'succeeded');
    const deploy = st.stages.find((s) => s.id === 'deploy')!.outputs!;
    assert.equal(deploy.promoted, false);
    assert.match(String(deploy.explanation), /f1_macro .* >= 1\.01 ✗/);
    const reg = await openRegistry(join(env.dir, 'registry.db'));
    try {
      assert.equal((await reg.getVersion('e2e-clf', 'production')).version, 1, 'production did not move');
    } finally {
      await reg.close();
    }
  });

  it('hot-swaps the served model when production moves, without a failed request', async () => {
    const server = await serveProduction(100);
    try {
      const url = await server.listen(0, '127.0.0.1');
      const seen = new Set<string>();
      let failures = 0;
      let stop = false;
      const client = async () => {
        for (let i = 0; i < 400 && !stop; i++) {
          const res = await fetch(`${url}/predict`, {
            method: 'POST',
            headers: { authorization: 'Bearer test-token-123456', 'content-type': 'application/json' },
            body: JSON.stringify({ inputs: ['a great and wonderful day'] }),
          }).catch(() => undefined);
          if (!res || res.status !== 200) failures++;
          else seen.add(((await res.json()) as { model: string }).model);
        }
      };
      const clients = Promise.all([client(), client(), client(), client()]);
      await new Promise((r) => setTimeout(r, 300));
      const reg = await openRegistry(join(env.dir, 'registry.db'));
      try {
        await reg.setAlias('e2e-clf', 'production', 2, { actor: 'e2e-tester', reason: 'swap test' });
      } finally {
        await reg.close();
      }
      for (let i = 0; i < 100 && !seen.has('e2e-clf@2'); i++) await new Promise((r) => setTimeout(r, 50));
      stop = true;
      await clients;
      assert.equal(failures, 0, 'no request failed during the swap');
      assert.deepEqual([...seen].sort(), ['e2e-clf@1', 'e2e-clf@2']);
    } finally {
      await server.close();
    }
  });
});
