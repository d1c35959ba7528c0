/**
 * register and deploy against a real artifact store and real SQLite registry and audit files (and,
 * with TEMPERED_DATABASE_URL, a real PostgreSQL): what
 * a hostile label, a reused run id, a crash between the registry and the audit write, and a
 * promotion racing the gate do to them.
 */
import { describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openAudit } from '../audit/log.ts';
import { openRegistry } from '../registry/registry.ts';
import { postgresUnavailable, useDatabases } from '../db/postgres.testing.ts';
import { ArtifactStore } from '../store/artifact-store.ts';
import type { ArtifactRef } from '../types.ts';
import { deployStage } from './deploy.ts';
import { registerStage } from './register.ts';
import type { StageContext } from './types.ts';

function setup(t: { after: (fn: () => void) => void }) {
  const dir = mkdtempSync(join(tmpdir(), 'tempered-regstages-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const store = new ArtifactStore(join(dir, 'store'));
  const ctx = (over: Partial<StageContext> = {}): StageContext => ({
    runId: 'nightly',
    executionId: 'exec-1',
    stageId: 'register',
    attempt: 1,
    baseDir: dir,
    specHash: 'spec',
    actor: 'test',
    store,
    workDir: join(dir, 'work'),
    stateDir: dir,
    signal: new AbortController().signal,
    progress() {},
    log() {},
    ...over,
  });
  const model = (bytes: string) => store.putBytes(bytes, { mediaType: 'application/octet-stream' });
  return { dir, store, ctx, model };
}

const evaluation = (f1: number, extra: Record<string, unknown> = {}) => ({
  f1_macro: f1,
  // Class labels come from the data; this is what an attacker would put there.
  per_class: { '__proto__.isAdmin': { f1: 0.5 }, ham: { f1: 0.9 } },
  ...extra,
});

test('a class label such as __proto__.isAdmin travels evaluate → register → gated deploy without touching Object.prototype', async (t) => {
  const { ctx, model, store } = setup(t);
  const v1 = await registerStage.run({ name: 'spam', model: await model('m1'), metrics: await store.putJson(evaluation(0.8)) }, ctx());
  await deployStage.run({ name: 'spam', version: v1.version as number }, ctx({ stageId: 'deploy' }));
  const v2 = await registerStage.run(
    { name: 'spam', model: await model('m2'), metrics: await store.putJson(evaluation(0.9)) },
    ctx({ runId: 'run-2', executionId: 'exec-2' }),
  );
  // No production metrics in the candidate's: the gate reads the holder's registered metrics.
  const out = await deployStage.run(
    {
      name: 'spam',
      version: v2.version as number,
      gate: 'f1_macro >= production.f1_macro && per_class.ham.f1 >= production.per_class.ham.f1',
      metrics: await store.putJson(evaluation(0.9)),
    },
    ctx({ runId: 'run-2', stageId: 'deploy', executionId: 'exec-2' }),
  );
  assert.equal(out.promoted, true, String(out.explanation));
  assert.equal(({} as Record<string, unknown>).isAdmin, undefined, 'Object.prototype was polluted');
  assert.equal(Object.hasOwn(Object.prototype, 'isAdmin'), false);
  const reg = await openRegistry(join(ctx().stateDir, 'registry.db'));
  assert.equal((await reg.getVersion('spam', 2)).metrics['per_class.__proto__%2EisAdmin.f1'], 0.5);
  await reg.close();
});

test('labels named __proto__ and constructor register with their metrics instead of breaking the registration', async (t) => {
  const { ctx, model, store } = setup(t);
  const metrics = await store.putJson({ f1_macro: 0.7, per_class: JSON.parse('{"__proto__": {"f1": 0.4}, "constructor": {"f1": 0.3}}') });
  await registerStage.run({ name: 'spam', model: await model('m'), metrics }, ctx());
  const reg = await openRegistry(join(ctx().stateDir, 'registry.db'));
  assert.deepEqual((await reg.getVersion('spam', 1)).metrics, {
    f1_macro: 0.7,
    'per_class.__proto__.f1': 0.4,
    'per_class.constructor.f1': 0.3,
  });
  await reg.close();
});

test('a reused run id (submit --run-id, schedules) registers and promotes again; the audit log records both', async (t) => {
  const { ctx, model } = setup(t);
  const first = await registerStage.run({ name: 'spam', model: await model('monday') }, ctx());
  await deployStage.run({ name: 'spam', version: first.version as number }, ctx({ stageId: 'deploy' }));
  // The same workflow id, a new execution, new model bytes.
  const second = await registerStage.run({ name: 'spam', model: await model('tuesday') }, ctx({ executionId: 'exec-2' }));
  assert.equal(second.version, 2, "the second run got the first run's version back");
  await deployStage.run({ name: 'spam', version: second.version as number }, ctx({ stageId: 'deploy', executionId: 'exec-2' }));
  const reg = await openRegistry(join(ctx().stateDir, 'registry.db'));
  assert.equal(await reg.aliasVersion('spam', 'production'), 2);
  await reg.close();
  const audit = await openAudit(join(ctx().stateDir, 'audit.db'));
  assert.deepEqual(
    (await audit.query({ action: 'model.registered' })).map((r) => r.subject),
    ['spam@1', 'spam@2'],
  );
  assert.deepEqual(
    (await audit.query({ action: 'model.promoted' })).map((r) => r.subject),
    ['spam@1', 'spam@2'],
  );
  await audit.close();
});

test('a register attempt that dies between the registry and the audit write leaves the record for its retry', async (t) => {
  const { ctx, model, dir } = setup(t);
  const ref: ArtifactRef = await model('weights');
  // Fault: the audit database cannot be opened (a directory where the file should be).
  mkdirSync(join(dir, 'audit.db'));
  await assert.rejects(registerStage.run({ name: 'spam', model: ref }, ctx()));
  rmSync(join(dir, 'audit.db'), { recursive: true });
  const reg = await openRegistry(join(dir, 'registry.db'));
  assert.equal((await reg.listVersions('spam')).length, 1, 'the registry change committed');
  await reg.close();
  // The retry (same execution) finds the version already there and still writes the audit record, once.
  const retry = await registerStage.run({ name: 'spam', model: ref }, ctx({ attempt: 2 }));
  assert.equal(retry.version, 1);
  await registerStage.run({ name: 'spam', model: ref }, ctx({ attempt: 3 }));
  const audit = await openAudit(join(dir, 'audit.db'));
  assert.deepEqual(
    (await audit.query({ action: 'model.registered' })).map((r) => r.subject),
    ['spam@1'],
  );
  await audit.close();
});

test("register says whether this run registered its version or found its model's bytes already registered, and its audit record names that version", async (t) => {
  const { ctx, model, store } = setup(t);
  const weights = await model('weights');
  const first = await registerStage.run({ name: 'spam', model: weights }, ctx());
  assert.deepEqual([first.ref, first.registered], ['spam@1', 'new']);
  // A retry of the same attempt (its idempotency key) gets the version it registered: still this run's doing.
  const retried = await registerStage.run({ name: 'spam', model: weights }, ctx({ attempt: 2 }));
  assert.deepEqual([retried.ref, retried.registered], ['spam@1', 'new']);
  // Another run whose training came from the cache: the same bytes, the existing version.
  const rerun = await registerStage.run({ name: 'spam', model: weights }, ctx({ runId: 'rerun', executionId: 'exec-r' }));
  assert.deepEqual([rerun.ref, rerun.registered], ['spam@1', 'existing']);
  const other = await registerStage.run({ name: 'spam', model: await model('other') }, ctx({ runId: 'r3', executionId: 'exec-3' }));
  assert.deepEqual([other.ref, other.registered], ['spam@2', 'new']);

  // What the stage.completed record adds: the version, how it came, and the hash model.registered gives it.
  const audit = await registerStage.audit!({ name: 'spam', model: weights }, rerun, { store });
  assert.deepEqual(audit, {
    model: 'spam@1',
    modelHash: weights.sha256,
    details: { version: 1, registered: 'existing', tree: weights.sha256 },
  });
  const log = await openAudit(join(ctx().stateDir, 'audit.db'));
  try {
    assert.equal((await log.query({ action: 'model.registered', model: 'spam@1' }))[0]!.modelHash, audit.modelHash);
  } finally {
    await log.close();
  }
  // A model folder: its ONNX file's hash, as model.registered gives it, and the folder's as details.tree.
  const folder = join(ctx().stateDir, 'export');
  mkdirSync(folder);
  writeFileSync(join(folder, 'model.onnx'), 'onnx bytes');
  writeFileSync(join(folder, 'labels.json'), '["a","b"]');
  const tree = await store.putTree(folder);
  const v3 = await registerStage.run({ name: 'spam', model: tree }, ctx({ runId: 'r4', executionId: 'exec-4' }));
  const onnx = createHash('sha256').update('onnx bytes').digest('hex');
  const treeAudit = await registerStage.audit!({ name: 'spam', model: tree }, v3, { store });
  assert.deepEqual(treeAudit, { model: 'spam@3', modelHash: onnx, details: { version: 3, registered: 'new', tree: tree.sha256 } });
  // The hash is one of the stage's outputs: the audit does not read the model's manifest from the store again,
  // except for outputs cached before modelHash was one.
  assert.equal(v3.modelHash, onnx);
  const noStore = { readJson: () => Promise.reject(new Error('read from the store')) } as unknown as typeof store;
  assert.deepEqual(await registerStage.audit!({ name: 'spam', model: tree }, v3, { store: noStore }), treeAudit);
  const { modelHash: _hash, ...older } = v3;
  assert.deepEqual(await registerStage.audit!({ name: 'spam', model: tree }, older, { store }), treeAudit);
  const log2 = await openAudit(join(ctx().stateDir, 'audit.db'));
  try {
    assert.equal((await log2.query({ action: 'model.registered', model: 'spam@3' }))[0]!.modelHash, onnx);
  } finally {
    await log2.close();
  }
});

test('a deploy retried after another run moved the alias records its second move too: every alias move has its audit record', async (t) => {
  const { dir, ctx, model } = setup(t);
  const v1 = await registerStage.run({ name: 'spam', model: await model('m1') }, ctx({ runId: 'a', executionId: 'ea' }));
  const v2 = await registerStage.run({ name: 'spam', model: await model('m2') }, ctx({ runId: 'b', executionId: 'eb' }));
  const deployA = ctx({ runId: 'a', executionId: 'ea', stageId: 'deploy' });
  // Run a's deploy commits, then (say) its worker dies before reporting; run b promotes v2; Temporal
  // retries run a's deploy, which moves the alias back to v1.
  await deployStage.run({ name: 'spam', version: v1.version as number }, deployA);
  await deployStage.run({ name: 'spam', version: v2.version as number }, ctx({ runId: 'b', executionId: 'eb', stageId: 'deploy' }));
  await deployStage.run({ name: 'spam', version: v1.version as number }, { ...deployA, attempt: 2 });
  const reg = await openRegistry(join(dir, 'registry.db'));
  const moves = (await reg.aliasHistory('spam', 'production')).map((h) => `${h.fromVersion ?? '-'}>${h.toVersion}`);
  await reg.close();
  assert.deepEqual(moves, ['->1', '1>2', '2>1']);
  const audit = await openAudit(join(dir, 'audit.db'));
  const promoted = (await audit.query({ action: 'model.promoted' })).map((r) => {
    const d = r.details as { from: number | null; to: number };
    return `${d.from ?? '-'}>${d.to} ${r.subject}`;
  });
  await audit.close();
  // `to` as a person's promote records it, so the listing shows the move (production: v1 → v2).
  assert.deepEqual(promoted, ['->1 spam@1', '1>2 spam@2', '2>1 spam@1']);
});

/**
 * The on-call journey: v2 promoted, found bad, rolled back at 3 a.m.; the next scheduled run trained on the same data,
 * registered the same bytes (v2 again) and its gate, which passed v2 before, put it straight back. `url`: the registry
 * and audit log on that PostgreSQL database instead of the state folder's SQLite files.
 */
async function rolledBackStaysOff(t: { after: (fn: () => void) => void }, url?: string) {
  const { dir, ctx, model, store } = setup(t);
  const metrics = await store.putJson(evaluation(0.9));
  const runOf = async (i: number, bytes: string) => {
    const c = (stageId: string) => ctx({ runId: `nightly-${i}`, executionId: `e${i}`, stageId });
    const v = await registerStage.run({ name: 'spam', model: await model(bytes), metrics }, c('register'));
    return deployStage.run({ name: 'spam', version: v.version as number, gate: 'f1_macro >= 0.8', metrics }, c('deploy'));
  };
  assert.equal((await runOf(1, 'm1')).promoted, true);
  assert.equal((await runOf(2, 'm2')).promoted, true);
  const reg = await openRegistry(url ?? join(dir, 'registry.db'));
  t.after(() => reg.close());
  await reg.rollback('spam', 'production', { actor: 'oncall', reason: 'bad answers on short texts' });

  const again = await runOf(3, 'm2');
  assert.equal(again.ref, 'spam@2');
  assert.equal(again.promoted, false);
  assert.match(
    String(again.explanation),
    /^v2 was rolled back from production by oncall at \S+ \(bad answers on short texts\): a run does not promote it again; `tempered models promote spam@2` does, by hand$/,
  );
  assert.equal(await reg.aliasVersion('spam', 'production'), 1);
  const audit = await openAudit(url ?? join(dir, 'audit.db'));
  const refused = await audit.query({ action: 'model.not_promoted' });
  await audit.close();
  assert.deepEqual(
    refused.map((r) => [r.subject, r.runId]),
    [['spam@2', 'nightly-3']],
  );

  // A new model goes up as before; a person promoting another version keeps the hold, promoting v2 lifts it, so a
  // later run may move it back.
  assert.equal((await runOf(4, 'm3')).promoted, true);
  await reg.setAlias('spam', 'production', 1, { actor: 'oncall' });
  assert.equal((await runOf(5, 'm2')).promoted, false);
  await reg.setAlias('spam', 'production', 2, { actor: 'oncall' });
  await reg.setAlias('spam', 'production', 3, { actor: 'oncall' });
  assert.equal((await runOf(6, 'm2')).promoted, true);
  assert.equal(await reg.aliasVersion('spam', 'production'), 2);

  // Rolled back from again, then a person's second rollback lands on it (3 → 2): that puts it back as a promotion does.
  assert.deepEqual(
    [
      (await reg.rollback('spam', 'production', { actor: 'oncall' })).toVersion,
      (await reg.rollback('spam', 'production', { actor: 'oncall' })).toVersion,
    ],
    [3, 2],
  );
  assert.equal((await runOf(7, 'm4')).promoted, true);
  const back = await runOf(8, 'm2');
  assert.equal(back.promoted, true, String(back.explanation));
}

test('a version a person rolled back is not promoted again by a run that registers the same model, until a person promotes it', (t) =>
  rolledBackStaysOff(t));

/**
 * The hold a rollback puts on a model went by version number: a version with the rolled-back version's model bytes
 * (registered before register deduplicated, or through the library) was promoted straight back by the next run.
 */
async function rolledBackTwinStaysOff(t: { after: (fn: () => void) => void }, url?: string) {
  const { dir, ctx, model, store } = setup(t);
  const metrics = await store.putJson(evaluation(0.9));
  const deploy = (i: number, version: number) =>
    deployStage.run(
      { name: 'spam', version, gate: 'f1_macro >= 0.8', metrics },
      ctx({ runId: `nightly-${i}`, executionId: `e${i}`, stageId: 'deploy' }),
    );
  for (const [i, bytes] of [
    [1, 'm1'],
    [2, 'm2'],
  ] as const) {
    const c = ctx({ runId: `nightly-${i}`, executionId: `e${i}`, stageId: 'register' });
    const v = await registerStage.run({ name: 'spam', model: await model(bytes), metrics }, c);
    assert.equal((await deploy(i, v.version as number)).promoted, true);
  }
  const reg = await openRegistry(url ?? join(dir, 'registry.db'));
  t.after(() => reg.close());
  await reg.rollback('spam', 'production', { actor: 'oncall', reason: 'bad answers' });
  const m2 = await model('m2');
  const twin = await reg.registerVersion({
    name: 'spam',
    runId: 'by-hand',
    stageId: 'import',
    specHash: 'spec',
    data: [],
    artifacts: [{ role: 'model', uri: m2.uri, sha256: m2.sha256, bytes: m2.bytes }],
  });
  assert.equal(twin.version.version, 3);

  const again = await deploy(3, 3);
  assert.equal(again.promoted, false);
  assert.match(
    String(again.explanation),
    /^v3 has the model bytes of v2, which was rolled back from production by oncall at \S+ \(bad answers\): a run does not promote it again; `tempered models promote spam@3` does, by hand$/,
  );
  assert.equal(await reg.aliasVersion('spam', 'production'), 1);

  // A person promoting the twin puts the model back: a run that registered v2 finds production serving it.
  await reg.setAlias('spam', 'production', 3, { actor: 'oncall' });
  assert.deepEqual(await deploy(4, 2), {
    promoted: true,
    alias: 'production',
    ref: 'spam@2',
    explanation:
      'production is v3, which has the same model bytes as v2: nothing to promote, and no gate judged it against itself; production stays on v3',
  });
  const audit = await openAudit(url ?? join(dir, 'audit.db'));
  t.after(() => audit.close());
  assert.deepEqual(
    (await audit.query({ action: 'model.not_promoted' })).map((r) => [r.subject, r.runId]),
    [['spam@3', 'nightly-3']],
  );
}

test('a version with the model bytes of a version a person rolled back stays off the alias for runs', (t) => rolledBackTwinStaysOff(t));

/**
 * A rerun whose training came from the stage cache registers the version production already holds, and evaluate
 * compared it with itself on the rerun's rows: the gate must not judge it against itself (instruct.yaml's gate refused
 * it on production.rows 20 >= 100 and recorded model.not_promoted for the very version that stayed on the alias).
 */
test('a rerun whose model is the version the alias holds says so: no gate against itself, no not_promoted record', async (t) => {
  const { dir, ctx, model, store } = setup(t);
  const gate = 'f1_macro >= 0.8 && (!has(production) || (production.rows >= 100 && production.candidate.f1_macro >= production.f1_macro))';
  const runOf = async (i: number, bytes: string, production?: string) => {
    const c = (stageId: string) => ctx({ runId: `nightly-${i}`, executionId: `e${i}`, stageId });
    const metrics = await store.putJson(
      evaluation(0.9, production ? { production: { f1_macro: 0.9, version: production, rows: 20, candidate: { f1_macro: 0.9 } } } : {}),
    );
    const v = await registerStage.run({ name: 'spam', model: await model(bytes), metrics }, c('register'));
    return deployStage.run({ name: 'spam', version: v.version as number, gate, metrics }, c('deploy'));
  };
  assert.equal((await runOf(1, 'm1')).promoted, true);
  const again = await runOf(2, 'm1', 'spam@1');
  assert.deepEqual(again, {
    promoted: true,
    alias: 'production',
    ref: 'spam@1',
    explanation: 'v1 is already production: nothing to promote, and no gate judged it against itself',
  });
  // Held after a rollback that landed on it: the same.
  assert.equal((await runOf(3, 'm2', 'spam@1')).promoted, false, 'v2 on 20 rows is refused by the gate, as it should be');
  const reg = await openRegistry(join(dir, 'registry.db'));
  t.after(() => reg.close());
  await reg.setAlias('spam', 'production', 2, { actor: 'oncall' });
  await reg.rollback('spam', 'production', { actor: 'oncall', reason: 'v2 was bad' });
  assert.match(String((await runOf(4, 'm1', 'spam@1')).explanation), /^v1 is already production/);
  assert.equal(await reg.aliasVersion('spam', 'production'), 1);

  // Another version with the same model bytes (versions registered outside a run's register stage are not deduped).
  const same = await model('m1');
  const v3 = await reg.registerVersion({
    name: 'spam',
    runId: 'by-hand',
    stageId: 'import',
    specHash: 'spec',
    data: [],
    artifacts: [{ role: 'model', uri: same.uri, sha256: same.sha256, bytes: same.bytes }],
  });
  // By way of v2: the registry does not move an alias from a version to its twin (it serves that model already).
  await reg.setAlias('spam', 'production', 2, { actor: 'oncall' });
  await reg.setAlias('spam', 'production', v3.version.version, { actor: 'oncall' });
  const twin = await runOf(5, 'm1', `spam@${v3.version.version}`);
  assert.equal(twin.ref, 'spam@1');
  assert.equal(twin.promoted, true);
  assert.equal(
    twin.explanation,
    'production is v3, which has the same model bytes as v1: nothing to promote, and no gate judged it against itself; production stays on v3',
  );
  assert.equal(await reg.aliasVersion('spam', 'production'), 3);

  const audit = await openAudit(join(dir, 'audit.db'));
  t.after(() => audit.close());
  assert.deepEqual(
    (await audit.query({ action: 'model.not_promoted' })).map((r) => [r.subject, r.runId]),
    [['spam@2', 'nightly-3']],
    'the only refusal is of v2',
  );
  assert.deepEqual(
    (await audit.query({ action: 'model.promoted' })).map((r) => [r.subject, r.runId]),
    [['spam@1', 'nightly-1']],
    'the reruns moved nothing, so they record no promotion (the by-hand moves record theirs through the library caller)',
  );
});

test('deploy does not promote on production metrics that went stale after evaluate', async (t) => {
  const { ctx, model, store } = setup(t);
  for (const [i, bytes] of ['a', 'b', 'c'].entries())
    await registerStage.run({ name: 'spam', model: await model(bytes) }, ctx({ runId: `r${i}`, executionId: `e${i}` }));
  await deployStage.run({ name: 'spam', version: 1 }, ctx({ stageId: 'deploy', executionId: 'e0' }));
  // evaluate compared v3 against production v1 ...
  const metrics = await store.putJson(evaluation(0.9, { production: { f1_macro: 0.5, version: 'spam@1' } }));
  // ... then someone promoted v2 (better than v3) by hand.
  const reg = await openRegistry(join(ctx().stateDir, 'registry.db'));
  await reg.setAlias('spam', 'production', 2);
  await reg.close();
  const out = await deployStage.run(
    { name: 'spam', version: 3, gate: 'f1_macro > production.f1_macro', metrics },
    ctx({ stageId: 'deploy', executionId: 'e2' }),
  );
  assert.equal(out.promoted, false);
  assert.match(String(out.explanation), /production is v2 now, but evaluate compared against spam@1/);
  const after = await openRegistry(join(ctx().stateDir, 'registry.db'));
  assert.equal(await after.aliasVersion('spam', 'production'), 2);
  await after.close();
});

test("a version promoted after evaluate found none is not judged on registered metrics that lack the comparison's names", async (t) => {
  const { ctx, model, store } = setup(t);
  for (const [i, bytes] of ['a', 'b'].entries()) {
    const registered = await store.putJson(evaluation(0.5));
    await registerStage.run(
      { name: 'spam', model: await model(bytes), metrics: registered },
      ctx({ runId: `r${i}`, executionId: `e${i}` }),
    );
  }
  // evaluate found no production version, so its metrics have none ...
  const metrics = await store.putJson(evaluation(0.9));
  // ... then another run promoted v1.
  await deployStage.run({ name: 'spam', version: 1 }, ctx({ stageId: 'deploy', executionId: 'e0' }));
  const gate = '!has(production) || (production.rows >= 100 && production.candidate.f1_macro >= production.f1_macro)';
  const out = await deployStage.run({ name: 'spam', version: 2, gate, metrics }, ctx({ stageId: 'deploy', executionId: 'e2' }));
  assert.equal(out.promoted, false);
  assert.match(String(out.explanation), /production is v1 now, but evaluate found no production version .* reads production\.rows.*rerun/);
  const after = await openRegistry(join(ctx().stateDir, 'registry.db'));
  assert.equal(await after.aliasVersion('spam', 'production'), 1);
  await after.close();
  // A gate that registered metrics can answer still falls back to them.
  const plain = await deployStage.run(
    { name: 'spam', version: 2, gate: '!has(production) || f1_macro >= production.f1_macro', metrics },
    ctx({ stageId: 'deploy', executionId: 'e3' }),
  );
  assert.equal(plain.promoted, true);
});

describe('with TEMPERED_DATABASE_URL (PostgreSQL)', { skip: postgresUnavailable() }, () => {
  const dbs = useDatabases('postgres');

  /** A fresh database, as TEMPERED_DATABASE_URL for the test's stages. */
  const databaseUrl = async (t: TestContext) => {
    const url = await dbs.fresh(t);
    const saved = process.env.TEMPERED_DATABASE_URL;
    process.env.TEMPERED_DATABASE_URL = url;
    t.after(() => {
      if (saved === undefined) delete process.env.TEMPERED_DATABASE_URL;
      else process.env.TEMPERED_DATABASE_URL = saved;
    });
    return url;
  };

  test('register and gated deploy write the registry and the audit log to PostgreSQL, no SQLite files', async (t) => {
    const url = await databaseUrl(t);
    const { ctx, model, store, dir } = setup(t);
    const v1 = await registerStage.run({ name: 'spam', model: await model('m1'), metrics: await store.putJson(evaluation(0.8)) }, ctx());
    await deployStage.run({ name: 'spam', version: v1.version as number }, ctx({ stageId: 'deploy' }));
    const later = { runId: 'run-2', executionId: 'exec-2' };
    const v2 = await registerStage.run(
      { name: 'spam', model: await model('m2'), metrics: await store.putJson(evaluation(0.7)) },
      ctx(later),
    );
    const refused = await deployStage.run(
      {
        name: 'spam',
        version: v2.version as number,
        gate: 'f1_macro >= production.f1_macro',
        metrics: await store.putJson(evaluation(0.7)),
      },
      ctx({ ...later, stageId: 'deploy' }),
    );
    assert.equal(refused.promoted, false);
    // A retried register (same execution) gets its version back.
    assert.equal((await registerStage.run({ name: 'spam', model: await model('m2') }, ctx({ ...later, attempt: 2 }))).version, 2);

    const reg = await openRegistry(url);
    assert.deepEqual(
      (await reg.listVersions('spam')).map((v) => v.version),
      [1, 2],
    );
    assert.equal(await reg.aliasVersion('spam', 'production'), 1);
    assert.deepEqual(await reg.pendingAudit(), []);
    await reg.close();
    const audit = await openAudit(url);
    assert.deepEqual(
      (await audit.query()).map((r) => `${r.action} ${r.subject}`),
      ['model.registered spam@1', 'model.promoted spam@1', 'model.registered spam@2', 'model.not_promoted spam@2'],
    );
    assert.deepEqual(await audit.verify({ expectRecords: true }), { ok: true, checked: 4 });
    await audit.close();
    assert.equal(existsSync(join(dir, 'registry.db')) || existsSync(join(dir, 'audit.db')), false, 'no SQLite file in the state folder');
  });

  test('a version a person rolled back stays off the alias for runs on PostgreSQL too', async (t) =>
    rolledBackStaysOff(t, await databaseUrl(t)));

  test('a version with the model bytes of a version a person rolled back stays off the alias for runs on PostgreSQL too', async (t) =>
    rolledBackTwinStaysOff(t, await databaseUrl(t)));
});

test("register keeps which version evaluate compared with (production.version N, decontaminated 1/0), so a promote gate can read evaluate's like-for-like names", async (t) => {
  const { ctx, model, store, dir } = setup(t);
  await registerStage.run(
    { name: 'spam', model: await model('a'), metrics: await store.putJson(evaluation(0.9)) },
    ctx({ runId: 'r1', executionId: 'e1' }),
  );
  await deployStage.run({ name: 'spam', version: 1 }, ctx({ stageId: 'deploy', executionId: 'e1' }));
  // What evaluate writes when it compared the candidate with spam@1 on the rows v1 was not trained on.
  const production = (version: string, decontaminated: boolean) => ({
    f1_macro: 0.7,
    version,
    rows: 120,
    contaminated_rows: 30,
    decontaminated,
    candidate: { f1_macro: 0.8 },
  });
  const registered = async (run: string, bytes: string, p: Record<string, unknown>) => {
    const out = await registerStage.run(
      { name: 'spam', model: await model(bytes), metrics: await store.putJson(evaluation(0.85, { production: p })) },
      ctx({ runId: run, executionId: run }),
    );
    const reg = await openRegistry(join(dir, 'registry.db'));
    try {
      return Object.fromEntries(
        Object.entries((await reg.getVersion('spam', out.version as number)).metrics).filter(([k]) => k.startsWith('production.')),
      );
    } finally {
      await reg.close();
    }
  };
  assert.deepEqual(await registered('r2', 'b', production('spam@1', true)), {
    'production.candidate.f1_macro': 0.8,
    'production.contaminated_rows': 30,
    'production.decontaminated': 1,
    'production.f1_macro': 0.7,
    'production.rows': 120,
    'production.version': 1,
  });
  // Another model's version would read as one of this model's: left out. Not decontaminated: 0.
  const other = await registered('r3', 'c', production('ham@1', false));
  assert.deepEqual([other['production.version'], other['production.decontaminated']], [undefined, 0]);

  const { changeAlias } = await import('../registry/alias-change.ts');
  const promoted = await changeAlias(join(dir, 'registry.db'), join(dir, 'audit.db'), {
    op: 'promote',
    name: 'spam',
    at: 2,
    alias: 'production',
    actor: 'ops',
    gate: 'production.rows >= 100 && production.candidate.f1_macro >= production.f1_macro - 0.005',
  });
  assert.deepEqual([promoted.version, promoted.gate?.passed], [2, true]);
});
