/**
 * The audit trail answers "on which data, producing which model, served where" on a real dev server
 * and a real `tempered serve` process: ingest's record names each source file with its sha256 and
 * size; a rerun whose register stage gets the existing identical version back says which version
 * its model is; `serve.started` and `serve.swapped` carry the served model's hash and a graceful
 * stop leaves `serve.stopped`; `tempered audit --model NAME@alias` reads the version the alias
 * points at now.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { waitForRun } from '../client/runs.ts';
import { openAudit, type AuditRecord } from '../src/audit/log.ts';
import { openRegistry } from '../src/registry/registry.ts';
import { syntheticRows } from '../src/finetune/synthetic-text.testing.ts';
import { TINY_MINILM, tinyBertDir } from '../src/models/tiny.testing.ts';
import { loadStageKinds } from '../src/stages/stage-kinds.ts';
import type { RunStatus } from '../workflows/types.ts';
import { BIN, runCliInProcess } from './helpers/cli.ts';
import { startTestEnv, submitPipelineFile, type TestEnv } from './helpers/temporal-env.ts';

let env: TestEnv;
let dir: string;
let file: string;
const sources: { path: string; sha256: string; bytes: number }[] = [];

before(async () => {
  env = await startTestEnv(await loadStageKinds());
  await env.startWorker();
  dir = mkdtempSync(join(tmpdir(), 'audit-trail-'));
  tinyBertDir(join(dir, 'tiny-bert'), 11, TINY_MINILM);
  mkdirSync(join(dir, 'data'));
  // Two source files, so the record has to name each one.
  const rows = syntheticRows(120, 5).map((r) => JSON.stringify(r));
  for (const [name, part] of [
    ['a.jsonl', rows.slice(0, 70)],
    ['b.jsonl', rows.slice(70)],
  ] as const) {
    const bytes = Buffer.from(part.join('\n') + '\n');
    writeFileSync(join(dir, 'data', name), bytes);
    sources.push({ path: `data/${name}`, sha256: createHash('sha256').update(bytes).digest('hex'), bytes: bytes.length });
  }
  file = join(dir, 'pipeline.yaml');
  const pipeline = (seed: number) =>
    `name: audit-trail
stages:
  ingest:
    uses: ingest
    with:
      path: data
      format: jsonl
      task: classification
  split:
    uses: split
    needs: ingest
    with:
      table: \${{ stages.ingest.outputs.table }}
      ratios: { train: 0.8, test: 0.2 }
      seed: 3
  train:
    uses: train
    needs: split
    with:
      model: tiny-bert
      train: \${{ stages.split.outputs.train }}
      method: lora
      lora: { r: 4, alpha: 8 }
      lr: 0.02
      maxSteps: 2
      batchSize: 16
      maxLength: 32
      seed: ${seed}
  register:
    uses: register
    needs: [train, split]
    with:
      name: trail-clf
      model: \${{ stages.train.outputs.model }}
      data:
        train: \${{ stages.split.outputs.train }}
  deploy:
    uses: deploy
    needs: register
    with:
      name: trail-clf
      version: \${{ stages.register.outputs.version }}
      alias: production
`;
  writeFileSync(file, pipeline(1));
  writeFileSync(join(dir, 'pipeline-seed2.yaml'), pipeline(2));
});
after(async () => {
  await env?.close();
  rmSync(dir, { recursive: true, force: true });
});

async function run(pipeline = file): Promise<RunStatus> {
  const st = await waitForRun(env.client, await submitPipelineFile(env, pipeline, { actor: 'trail-tester' }));
  assert.equal(st.state, 'succeeded', JSON.stringify(st.stages.map((s) => [s.id, s.state, s.error])));
  return st;
}

async function records(q: Parameters<Awaited<ReturnType<typeof openAudit>>['query']>[0]): Promise<AuditRecord[]> {
  const audit = await openAudit(join(env.dir, 'audit.db'));
  try {
    return await audit.query(q);
  } finally {
    await audit.close();
  }
}

const stageRecord = async (runId: string, stage: string) =>
  (await records({ run: runId, action: 'stage.completed' })).find((r) => r.details.stage === stage);

describe('audit trail: data, model, serving', () => {
  let first: RunStatus;
  let second: RunStatus;
  let onnxHash: string;

  it("ingest's record names every source file it read, with its sha256 and size", async () => {
    first = await run();
    const rec = await stageRecord(first.runId, 'ingest');
    assert.ok(rec, 'ingest has a stage.completed record');
    for (const s of sources) assert.equal(rec.dataHashes?.[`source:${s.path}`], s.sha256, `${s.path} in ${JSON.stringify(rec.dataHashes)}`);
    assert.deepEqual(rec.details.sources, sources);
    assert.equal(rec.details.dataHash, first.stages.find((s) => s.id === 'ingest')!.outputs!.dataHash);
  });

  it("a rerun's register record says its model is the existing identical version", async () => {
    second = await run();
    assert.equal(second.stages.find((s) => s.id === 'train')!.state, 'cached');
    const reg = await openRegistry(join(env.dir, 'registry.db'));
    try {
      const v = await reg.getVersion('trail-clf', 1);
      onnxHash = v.artifacts.find((a) => a.role === 'onnx')!.sha256;
    } finally {
      await reg.close();
    }
    const firstRec = await stageRecord(first.runId, 'register');
    assert.equal(firstRec?.model, 'trail-clf@1');
    assert.equal(firstRec?.modelHash, onnxHash);
    assert.equal(firstRec?.details.registered, 'new');
    const rec = await stageRecord(second.runId, 'register');
    assert.ok(rec, "the rerun's register stage has a record");
    assert.equal(rec.model, 'trail-clf@1', 'the rerun is tied to the version its model already is');
    assert.equal(rec.modelHash, onnxHash);
    assert.equal(rec.details.registered, 'existing');
    // Found by the model too: every run whose model is v1.
    const byModel = (await records({ model: 'trail-clf@1', action: 'stage.completed' })).map((r) => r.runId);
    assert.deepEqual(byModel, [first.runId, second.runId]);
    // No second model.registered: nothing new was registered.
    assert.equal((await records({ action: 'model.registered' })).length, 1);

    // From the rerun's record back to the input files, by following hashes: each `in:` hash to the
    // stage.completed whose `out:` holds it (the rerun's train and data stages came from the cache, so
    // those records are the first run's).
    const all = await records({ action: 'stage.completed' });
    const producer = (hash: string) =>
      all.find((r) => Object.entries(r.dataHashes ?? {}).some(([k, v]) => k.startsWith('out:') && v === hash));
    const path: string[] = [];
    let at: AuditRecord | undefined = rec;
    while (at && at.details.kind !== 'ingest') {
      path.push(`${at.runId === second.runId ? 'rerun' : 'first'}:${at.details.stage}`);
      const next: AuditRecord[] = Object.entries(at.dataHashes ?? {})
        .filter(([k]) => k.startsWith('in:'))
        .flatMap(([, h]) => producer(h) ?? []);
      at = next.find((r) => r.details.kind === 'ingest') ?? next[0];
    }
    assert.ok(at, `the walk reached an ingest record: ${path.join(' → ')}`);
    assert.deepEqual(path, ['rerun:register', 'first:train', 'first:split']);
    assert.deepEqual(at.details.sources, sources);
  });

  it('serve.started and serve.swapped carry the served model hash; a graceful stop writes serve.stopped', async () => {
    const child = spawn(process.execPath, [BIN, 'serve', 'trail-clf@production', '--port', '0', '--poll-ms', '100', '--threads', '1'], {
      env: { ...process.env, TEMPERED_HOME: env.dir, TEMPERED_SERVE_TOKEN: 'trail-token-123456', TEMPERED_ACTOR: 'ops' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    const served: Record<number, { onnx: string; tree: string }> = {};
    let seen: { started?: AuditRecord; swapped?: AuditRecord; url?: string } = {};
    let out = '';
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    try {
      const url = await new Promise<string>((resolve, reject) => {
        child.stdout.on('data', (d: Buffer) => {
          out += d.toString();
          const m = /serving .* at (http:\/\/\S+)/.exec(out);
          if (m) resolve(m[1]!);
        });
        child.once('exit', () => reject(new Error(`serve exited: ${out}`)));
      });
      const [started] = await records({ action: 'serve.started' });

      // A run that trains other bytes (another seed) and deploys them as v2 while the server runs.
      const third = await run(file.replace(/pipeline\.yaml$/, 'pipeline-seed2.yaml'));
      assert.equal(third.stages.find((s) => s.id === 'register')!.outputs!.version, 2);
      const reg = await openRegistry(join(env.dir, 'registry.db'));
      try {
        for (const v of [1, 2]) {
          const { artifacts } = await reg.getVersion('trail-clf', v);
          served[v] = { onnx: artifacts.find((a) => a.role === 'onnx')!.sha256, tree: artifacts.find((a) => a.role === 'model')!.sha256 };
        }
      } finally {
        await reg.close();
      }
      assert.notEqual(served[2]!.onnx, served[1]!.onnx);
      let swapped: AuditRecord | undefined;
      for (let i = 0; i < 200 && !swapped; i++) {
        [swapped] = await records({ action: 'serve.swapped' });
        if (!swapped) await new Promise((r) => setTimeout(r, 50));
      }
      assert.ok(swapped, `a serve.swapped record: ${out}`);
      // And a line on stderr, where the server's operator looks (swaps were in the audit log only).
      for (let i = 0; i < 100 && !/serve: production moved: now serving trail-clf@2 \(was trail-clf@1\), \d{4}-/.test(out); i++)
        await new Promise((r) => setTimeout(r, 50));
      assert.match(out, /serve: production moved: now serving trail-clf@2 \(was trail-clf@1\), \d{4}-\d\d-\d\dT/);
      seen = { started, swapped, url };
    } finally {
      child.kill('SIGTERM');
    }
    assert.equal(await exited, 0, out);
    const [stopped] = await records({ action: 'serve.stopped' });
    const view = (r: AuditRecord | undefined) => r && [r.model, r.modelHash, r.details.tree, r.actor];
    // All three at once, so a failure shows every gap.
    assert.deepEqual(
      { started: view(seen.started), swapped: view(seen.swapped), stopped: view(stopped) },
      {
        started: ['trail-clf@1', served[1]!.onnx, served[1]!.tree, 'ops'],
        swapped: ['trail-clf@2', served[2]!.onnx, served[2]!.tree, 'ops'],
        stopped: ['trail-clf@2', served[2]!.onnx, served[2]!.tree, 'ops'],
      },
    );
    // The swap names the version it swapped out and that version's hash, so v1's trail has its end.
    assert.deepEqual(
      [
        seen.started?.details.url,
        seen.swapped?.details.from,
        seen.swapped?.details.fromModelHash,
        stopped?.details.url,
        stopped?.details.swaps,
      ],
      [seen.url, 'trail-clf@1', served[1]!.onnx, seen.url, 1],
    );
    const audit = await openAudit(join(env.dir, 'audit.db'));
    try {
      assert.equal((await audit.verify({ expectRecords: true })).ok, true);
    } finally {
      await audit.close();
    }
  });

  it('tempered audit --model NAME@alias reads the version the alias points at now', async () => {
    const cli = (args: string[]) => runCliInProcess(['audit', ...args], { TEMPERED_HOME: env.dir });
    const r = await cli(['--model', 'trail-clf@production']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout.split('\n')[0]!, /trail-clf@production is trail-clf@2/);
    assert.match(r.stdout, /serve\.swapped\s+trail-clf@2/);
    assert.doesNotMatch(r.stdout, /model\.registered\s+trail-clf@1/);
    // The version and the name alone still work as before; v1's trail ends with the swap away from it.
    assert.match(
      (await cli(['--model', 'trail-clf@1'])).stdout,
      /model\.registered\s+trail-clf@1[\s\S]*serve\.started\s+trail-clf@1[\s\S]*serve\.swapped\s+trail-clf@2\s+\(production: v1 → v2;/,
    );
    assert.match((await cli(['--model', 'trail-clf'])).stdout, /model\.registered\s+trail-clf@1[\s\S]*serve\.swapped\s+trail-clf@2/);
    const unknownAlias = await cli(['--model', 'trail-clf@staging']);
    assert.equal(unknownAlias.code, 1);
    assert.match(unknownAlias.stderr, /no version or alias 'staging'[\s\S]*aliases production/);
    const unknownModel = await cli(['--model', 'nosuch@production']);
    assert.equal(unknownModel.code, 1);
    assert.match(unknownModel.stderr, /nosuch/);
  });
});
