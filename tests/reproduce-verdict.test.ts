/**
 * What `tempered models reproduce` runs and how it judges the rerun (src/audit/reproduce.ts), without a server: the
 * plan less the stages that act on the registry and what needs them, and the verdict's words for the three ways a
 * rerun can end: same bytes, data that diverged at a stage, or training that diverged on the same data (with the
 * threads it was not pinned to as the likely cause).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openAudit } from '../src/audit/log.ts';
import { compareReproduction, modelSource, planProblem, reproductionPlan, upstreamOf, type RunFacts } from '../src/audit/reproduce.ts';
import { openRegistry } from '../src/registry/registry.ts';
import { testVersion } from '../src/registry/versions.testing.ts';
import { statePaths } from '../src/state-paths.ts';
import { runCliInProcess } from './helpers/cli.ts';
import { specBody } from '../src/spec/plan.ts';
import { canonicalJson, sha256Hex } from '../src/util/canonical-json.ts';
import { plannedPipeline } from './helpers/plans.ts';
import { writeTrainPipeline } from './helpers/train-fixture.ts';
import { auditScheduleChange } from '../client/schedules.ts';
import { loadSpec } from '../src/spec/load.ts';
import { plannedScheduleSpec } from '../src/audit/run-spec.ts';
import { kindRegistry, loadStageKinds } from '../src/stages/stage-kinds.ts';
import { ArtifactStore } from '../src/store/artifact-store.ts';

const plan = plannedPipeline(
  'clf',
  [
    { id: 'ingest', uses: 'ingest', needs: [], with: { path: 'd.jsonl' } },
    { id: 'split', uses: 'split', needs: ['ingest'], with: { table: '${{ stages.ingest.outputs.table }}' } },
    { id: 'train', uses: 'train', needs: ['split'], with: { train: '${{ stages.split.outputs.train }}' } },
    { id: 'evaluate', uses: 'evaluate', needs: ['train', 'split'], with: {} },
    { id: 'register', uses: 'register', needs: ['train', 'evaluate'], with: { model: '${{ stages.train.outputs.model }}' } },
    { id: 'deploy', uses: 'deploy', needs: ['register'], with: {} },
    { id: 'notify', uses: 'notify', needs: ['deploy'], with: {} },
  ],
  { triggers: { skipIfUnchanged: true } },
);

test("the rerun plan: the model's stage and what it needs, no run gate, no stage reading or writing the cache, a name and spec hash of its own", () => {
  const { plan: p, dropped } = reproductionPlan(specBody(plan), 'train');
  assert.deepEqual(dropped, ['evaluate', 'register', 'deploy', 'notify']);
  assert.deepEqual(
    p.stages.map((s) => s.id),
    ['ingest', 'split', 'train'],
  );
  // No stage left points at one taken out.
  assert.deepEqual(p.stages.find((s) => s.id === 'train')!.dependents, []);
  assert.deepEqual(p.stages.find((s) => s.id === 'split')!.dependents, ['train']);
  assert.deepEqual(
    p.stages.map((s) => s.cache),
    [false, false, false],
  );
  assert.equal(p.triggers, undefined);
  assert.equal(p.name, 'clf-reproduce');
  assert.equal(p.specHash, sha256Hex(canonicalJson(specBody(p))));
  assert.deepEqual(modelSource(plan.stages.find((s) => s.id === 'register')), { stage: 'train', output: 'model' });
  assert.deepEqual(upstreamOf(plan.stages, 'train'), ['ingest', 'split', 'train']);
});

const facts = (runId: string, modelHash: string, split: string, runtime: Record<string, unknown>): RunFacts => ({
  runId,
  modelHash,
  data: { ingest: { dataHash: 'a'.repeat(64), table: 'b'.repeat(64) }, split: { train: split } },
  trainedWith: { device: 'cpu', runtime },
});
const stages = [
  { id: 'ingest', kind: 'ingest' },
  { id: 'split', kind: 'split' },
];
const rt = (threads: number | null, cpus: number) => ({ onnxruntime: '1.30.0', threads, cpus });
const judge = (threadsPinned: boolean, original: RunFacts, rerun: RunFacts) =>
  compareReproduction({ stages, train: { id: 'train', kind: 'train', threadsPinned }, original, rerun });

test('verdicts: same bytes; data diverged at the first stage whose data differs; training diverged, threads unpinned', () => {
  const same = judge(true, facts('r1', 'f'.repeat(64), 'c'.repeat(64), rt(1, 2)), facts('r2', 'f'.repeat(64), 'c'.repeat(64), rt(1, 2)));
  assert.equal(same.reproduced, true);
  assert.equal(same.verdict, `reproduced: same model bytes (sha256 ${'f'.repeat(64)})`);

  const data = judge(true, facts('r1', 'f'.repeat(64), 'c'.repeat(64), rt(1, 2)), facts('r2', 'e'.repeat(64), 'd'.repeat(64), rt(1, 2)));
  assert.equal(data.reproduced, false);
  assert.deepEqual(data.divergedAt, { stage: 'split', kind: 'split', what: 'data' });
  assert.match(
    data.verdict,
    /^NOT reproduced: the data diverged at stage split \(split\): its train hash was c{12}…, the rerun's is d{12}…/,
  );
  assert.deepEqual(
    data.stages.map((s) => s.same),
    [true, false],
  );

  // The same data, other bytes, on a machine with other CPUs and threads left to onnxruntime.
  const unpinned = judge(
    false,
    facts('r1', 'f'.repeat(64), 'c'.repeat(64), rt(null, 16)),
    facts('r2', 'e'.repeat(64), 'c'.repeat(64), rt(null, 2)),
  );
  assert.deepEqual(unpinned.divergedAt, { stage: 'train', kind: 'train', what: 'training' });
  assert.match(unpinned.verdict, /^NOT reproduced: the training diverged: stage train had the same data and made other model bytes/);
  assert.deepEqual(unpinned.trainedWithDiffers, [{ field: 'runtime.cpus', original: 16, rerun: 2 }]);
  assert.match(unpinned.threadsNote!, /does not pin `threads`.*16 cpus.*with 2.*set `threads: N` under stages\.train\.with/);
  // Pinned, the thread count is not the cause: no such note.
  const pinned = judge(true, facts('r1', 'f'.repeat(64), 'c'.repeat(64), rt(4, 16)), facts('r2', 'e'.repeat(64), 'c'.repeat(64), rt(4, 2)));
  assert.equal(pinned.threadsNote, undefined);
});

test("a recorded plan that hashes to the version's spec hash but is no plan is refused before anything is submitted", async (t) => {
  const known = (k: string) => ['ingest', 'split', 'train', 'evaluate', 'register', 'deploy', 'notify'].includes(k);
  const body = specBody(plan) as unknown as Record<string, unknown>;
  const stages = body.stages as Record<string, unknown>[];
  const with_ = (i: number, over: Record<string, unknown>) => ({
    ...body,
    stages: stages.map((s, j) => (j === i ? { ...s, ...over } : s)),
  });
  assert.equal(planProblem(body, known), undefined);
  const tampered: [string, unknown, RegExp][] = [
    ['no stages', { ...body, stages: undefined }, /stages are not a list/],
    ['stages a string', { ...body, stages: 'x' }, /stages are not a list/],
    ['an id with an escape', with_(2, { id: 'train\x1b[2J' }), /stages\[2\]\.id is not a stage id: "train\\u001b\[2J"/],
    ['an id twice', with_(1, { id: 'ingest', needs: [] }), /stages\[1\]\.id ingest comes twice/],
    ['an unknown kind', with_(0, { uses: 'shell' }), /stages\[0\] \(ingest\) uses "shell", which is no stage kind here/],
    ['a stage that needs itself', with_(2, { needs: ['train'] }), /stages\[2\] \(train\)\.needs names a stage that is not an earlier one/],
    ['a later need', with_(0, { needs: ['split'] }), /stages\[0\] \(ingest\)\.needs/],
    ['no config', with_(1, { with: null }), /stages\[1\] \(split\) has no config object/],
  ];
  for (const [what, p, why] of tampered) assert.match(planProblem(p, known) ?? '', why, what);

  // Through the command: such a record and a version whose spec hash is the plan's (both databases written by hand).
  const home = mkdtempSync(join(tmpdir(), 'tempered-reproduce-plan-'));
  t.after(() => rmSync(home, { recursive: true, force: true }));
  const paths = statePaths(home);
  const audit = await openAudit(paths.auditDb);
  const reg = await openRegistry(paths.registryDb);
  for (const [i, [, p]] of tampered.entries()) {
    const hash = sha256Hex(canonicalJson(p));
    await audit.append({
      action: 'run.submitted',
      subject: `run-${i}`,
      runId: `run-${i}`,
      actor: 'm',
      specHash: hash,
      details: { plan: p },
    });
    await reg.registerVersion(testVersion(`m${i}`, 'a', { runId: `run-${i}`, specHash: hash }));
  }
  await audit.close();
  await reg.close();
  for (const [i, [what, , why]] of tampered.entries()) {
    // No Temporal to reach: a plan that went on would fail later, with another exit status.
    const res = await runCliInProcess(['models', 'reproduce', `m${i}@1`, '--no-local-worker'], {
      TEMPERED_HOME: home,
      TEMPORAL_ADDRESS: '127.0.0.1:1',
    }).catch((e: Error) => ({ code: -1, stderr: e.message }));
    assert.equal(res.code, 2, `${what}: ${res.stderr}`);
    assert.match(
      res.stderr,
      new RegExp(`^m${i}@1: the plan run run-${i}'s run\\.submitted record keeps is not one a run can follow`),
      what,
    );
    assert.match(res.stderr, why, what);
    assert.doesNotMatch(res.stderr, /[\x00-\x1f\x7f-\x9f]/, what);
  }
});

test("a schedule's run whose record hides a secret --param: exit 2 naming the schedule and the hidden param, nothing submitted", async (t) => {
  const home = mkdtempSync(join(tmpdir(), 'tempered-reproduce-sched-'));
  t.after(() => rmSync(home, { recursive: true, force: true }));
  const file = writeTrainPipeline(home, { maxSteps: 2 });
  const yaml = readFileSync(file, 'utf8').replace('stages:\n', 'params:\n  api_token:\n    type: string\n    default: none\nstages:\n');
  writeFileSync(
    file,
    `${yaml}  register:\n    uses: register\n    needs: train\n    with:\n      name: sched-clf\n      model: \${{ stages.train.outputs.model }}\n`,
  );
  const loaded = await loadSpec(file, { ...kindRegistry(await loadStageKinds()), paramOverrides: { api_token: 'tok-1234567' } });
  assert.ok(loaded.ok, JSON.stringify(!loaded.ok && loaded.errors));
  const paths = statePaths(home);
  const stored = await new ArtifactStore(paths.store).putBytes(loaded.text, { mediaType: 'application/yaml' });
  // As `schedule create --param api_token=…` records it: the trail keeps the param without its value.
  await auditScheduleChange(paths.auditDb, 'created', {
    name: 'nightly',
    actor: 'carol',
    specHash: loaded.plan.specHash,
    details: { specUri: stored.uri, file, param: ['api_token=tok-1234567'] },
  });
  const reg = await openRegistry(paths.registryDb);
  await reg.registerVersion(testVersion('sched-clf', 'a', { runId: 'nightly-1', specHash: loaded.plan.specHash }));
  await reg.close();
  const res = await runCliInProcess(['models', 'reproduce', 'sched-clf@1', '--no-local-worker'], {
    TEMPERED_HOME: home,
    TEMPORAL_ADDRESS: '127.0.0.1:1',
  }).catch((e: Error) => ({ code: -1, stderr: e.message }));
  assert.equal(res.code, 2, res.stderr);
  assert.match(res.stderr, /run nightly-1 was started by schedule nightly/);
  assert.match(res.stderr, /record hides credentials in --param api_token, so its file cannot be planned again/);
  assert.doesNotMatch(res.stderr, /not registered by a pipeline run/);
  assert.doesNotMatch(res.stderr, /tok-1234567/);
  // A URL's credentials hidden in a param's value (keptScheduleDetails hides those too) are said the same way.
  const sched = { schedule: 'nightly', specUri: stored.uri, file, params: ['api_token=https://REDACTED@example.com/t'] };
  assert.match(
    plannedScheduleSpec(loaded.text, sched, loaded.plan.specHash, kindRegistry(await loadStageKinds())).problem ?? '',
    /^schedule nightly's record hides credentials in --param api_token, so/,
  );
});
