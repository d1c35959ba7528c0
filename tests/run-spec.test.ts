/**
 * A registered version's spec can be had back from the audit trail alone, after the run's history on the Temporal
 * server is gone: `run.submitted` keeps the file's text and the resolved plan (hashing to the spec hash), and
 * `tempered models show NAME@V --spec` prints the text exactly, with the params and source files a rerun needs.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { auditRunSubmitted } from '../client/runs.ts';
import { openAudit } from '../src/audit/log.ts';
import { openRegistry } from '../src/registry/registry.ts';
import { ArtifactStore } from '../src/store/artifact-store.ts';
import { testVersion } from '../src/registry/versions.testing.ts';
import { loadSpec } from '../src/spec/load.ts';
import { kindRegistry, loadStageKinds } from '../src/stages/stage-kinds.ts';
import { canonicalJson, sha256Hex } from '../src/util/canonical-json.ts';
import { terminalSafe } from '../cli/format.ts';
import { runCli, runCliInProcess, runCliOnTerminal } from './helpers/cli.ts';

const FIXTURE = fileURLToPath(new URL('./fixtures/tiny-pipeline.yaml', import.meta.url));

/** A state folder with the tiny pipeline as tiny.yaml (after `header`, a comment) beside its empty source file. */
function pipelineHome(t: { after: (fn: () => void) => void }, name: string, header = ''): { home: string; file: string } {
  const home = mkdtempSync(join(tmpdir(), `tempered-run-spec-${name}`));
  t.after(() => rmSync(home, { recursive: true, force: true }));
  const file = join(home, 'tiny.yaml');
  writeFileSync(file, `${header}${readFileSync(FIXTURE, 'utf8')}`);
  writeFileSync(join(home, 'tiny.jsonl'), '');
  return { home, file };
}

test('models show --spec: the spec text a version was trained from, from the audit trail, also through a resume', async (t) => {
  // A comment the plan drops: the text is kept as written, not rebuilt from the plan.
  const { home, file } = pipelineHome(t, '', '# kept as written\n');
  const loaded = await loadSpec(file, { ...kindRegistry(await loadStageKinds()), paramOverrides: { seed: '7' } });
  assert.ok(loaded.ok);
  const { plan, text } = loaded;
  const auditDb = join(home, 'audit.db');
  const options = { baseDir: home, actor: 'alice', specFile: file };
  await auditRunSubmitted(auditDb, 'run-1', { plan, options: { ...options, specText: text } }, 'exec-1');
  // A resume whose record has no text of its own (its run was resumed from a submission that kept it).
  await auditRunSubmitted(auditDb, 'run-2', { plan, options: { ...options, resumeOf: 'run-1' } }, 'exec-2');
  const audit = await openAudit(auditDb);
  const [first] = await audit.query({ run: 'run-1', action: 'run.submitted' });
  // The plan recorded is what the spec hash is the hash of.
  assert.equal(sha256Hex(canonicalJson(first!.details.plan)), plan.specHash);
  assert.deepEqual(first!.details.spec, { text, sha256: sha256Hex(text) });
  // A record from before specs were kept: the hash alone.
  await audit.append({ action: 'run.submitted', subject: 'run-0', runId: 'run-0', actor: 'bob', specHash: plan.specHash, details: {} });
  await audit.close();
  const reg = await openRegistry(join(home, 'registry.db'));
  await reg.registerVersion(testVersion('tiny', 'a', { runId: 'run-2', specHash: plan.specHash }));
  await reg.registerVersion(testVersion('tiny', 'b', { runId: 'run-0', specHash: plan.specHash }));
  await reg.close();

  const env = { TEMPERED_HOME: home };
  // In a process of its own: the text goes to stdout as it is, the notes to stderr.
  const shown = await runCli(['models', 'show', 'tiny@1', '--spec'], env);
  assert.equal(shown.code, 0, shown.stderr);
  assert.equal(shown.stdout, text);
  assert.match(shown.stderr, /the spec of run run-2, submitted by alice/);
  assert.match(shown.stderr, /the text is the one run run-1 was submitted with/);
  assert.match(shown.stderr, /rerun: tempered submit tiny\.yaml --param seed=7\n/);

  const json = JSON.parse((await runCliInProcess(['models', 'show', 'tiny@1', '--spec', '--json'], env)).stdout) as Record<string, unknown>;
  assert.equal(json.text, text);
  assert.equal(json.planMatches, true);
  assert.equal(json.textMatches, true);
  assert.deepEqual(json.problems, []);

  const old = await runCliInProcess(['models', 'show', 'tiny@2', '--spec'], env);
  assert.equal(old.code, 1);
  assert.match(old.stderr, /keeps only the hash of the spec of run run-0/);
});

test(
  "models show --spec to a terminal: a recorded spec's escape sequences are shown, not sent; a pipe gets the exact text",
  { skip: !existsSync('/usr/bin/script') && 'needs util-linux script for a terminal' },
  async (t) => {
    // YAML takes ESC and BEL in a comment, so such a file validates, runs and is recorded as written: a spec of someone
    // else's, shown to whoever reads the trail, would retitle their terminal and clear their screen.
    const { home, file } = pipelineHome(t, 'tty-', '# \x1b]0;pwned\x07\x1b[2J\x9b31m hostile\n');
    const loaded = await loadSpec(file, kindRegistry(await loadStageKinds()));
    assert.ok(loaded.ok);
    await auditRunSubmitted(join(home, 'audit.db'), 'run-1', {
      plan: loaded.plan,
      options: { baseDir: home, actor: 'mallory', specFile: file, specText: loaded.text },
    });
    const reg = await openRegistry(join(home, 'registry.db'));
    await reg.registerVersion(testVersion('tiny', 'a', { runId: 'run-1', specHash: loaded.plan.specHash }));
    await reg.close();
    const args = ['models', 'show', 'tiny@1', '--spec'];
    const env = { TEMPERED_HOME: home };
    const piped = await runCli(args, env);
    assert.equal(piped.code, 0, piped.stderr);
    assert.equal(piped.stdout, loaded.text, 'a pipe or a file gets the text as submitted');

    // A terminal of its own, as a person reading the spec has.
    const { code, out } = await runCliOnTerminal(args, env);
    assert.equal(code, 0, out);
    assert.ok(out.includes(terminalSafe(loaded.text).replace(/\n/g, '\r\n')), `escaped text in ${JSON.stringify(out)}`);
    assert.doesNotMatch(out, /[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]/, 'no raw control character');
  },
);

test('models diff: which spec fields differ and what the training ran with, from the trail; a difference the spec hash cannot show', async (t) => {
  const { home, file } = pipelineHome(t, 'diff-');
  const kinds = kindRegistry(await loadStageKinds());
  const planned = async (seed: string) => {
    const r = await loadSpec(file, { ...kinds, paramOverrides: { seed } });
    assert.ok(r.ok);
    return r;
  };
  const [seven, nine] = [await planned('7'), await planned('9')];
  const auditDb = join(home, 'audit.db');
  const runs = [
    { id: 'run-a', spec: seven, runtime: { onnxruntime: '1.30.0', threads: 1, cpus: 2 } },
    // The same spec and data on a worker of 16 CPUs with onnxruntime's default threads: only the trail tells them apart.
    { id: 'run-b', spec: seven, runtime: { onnxruntime: '1.30.0', threads: null, cpus: 16 } },
    { id: 'run-c', spec: nine, runtime: { onnxruntime: '1.30.0', threads: 1, cpus: 2 } },
  ];
  for (const r of runs)
    await auditRunSubmitted(
      auditDb,
      r.id,
      { plan: r.spec.plan, options: { baseDir: home, actor: 'alice', specText: r.spec.text } },
      `x-${r.id}`,
    );
  const audit = await openAudit(auditDb);
  for (const r of runs)
    await audit.append({
      action: 'stage.completed',
      subject: `${r.id}/train`,
      runId: r.id,
      actor: 'alice',
      details: { stage: 'train', kind: 'train', device: 'cpu', runtime: r.runtime },
    });
  await audit.close();
  const reg = await openRegistry(join(home, 'registry.db'));
  for (const [i, r] of runs.entries())
    await reg.registerVersion(testVersion('tiny', 'abc'[i]!, { runId: r.id, specHash: r.spec.plan.specHash }));
  await reg.close();

  const env = { TEMPERED_HOME: home };
  type Line = { path: string; values: unknown[] };
  const diff = async (a: string, b: string) =>
    JSON.parse((await runCliInProcess(['models', 'diff', 'tiny', a, b, '--json'], env)).stdout) as { spec?: Line[]; trainedWith: Line[] };
  const sameSpec = await diff('1', '2');
  assert.equal(sameSpec.spec, undefined);
  assert.deepEqual(sameSpec.trainedWith, [
    { path: 'train.runtime.cpus', values: [2, 16] },
    { path: 'train.runtime.threads', values: [1, null] },
  ]);
  const otherSpec = await diff('1', '3');
  assert.deepEqual(otherSpec.spec, [
    { path: 'params.seed', values: [7, 9] },
    { path: 'stages.split.with.seed', values: [7, 9] },
  ]);
  assert.deepEqual(otherSpec.trainedWith, []);
  // models show says how the version was trained, from its run's record.
  const shown = await runCliInProcess(['models', 'show', 'tiny@2'], env);
  assert.match(shown.stdout, /\n {2}train: trained on cpu \(onnxruntime's default threads, 16 cpus, onnxruntime 1\.30\.0\)\n/);
  assert.match(shown.stdout, /\n {2}spec: `tempered models show tiny@2 --spec` prints the file it was submitted with\n/);
  const human = await runCliInProcess(['models', 'diff', 'tiny', '1', '3'], env);
  assert.match(human.stdout, /\nspec:\n {2}params\.seed +7 → 9\n {2}stages\.split\.with\.seed +7 → 9\ntrained with:\n {2}\(same\)/);
});

/**
 * As a schedule leaves things: its spec file in the store (`tempered schedule create`), named by its schedule.created
 * record; tiny@1 registered by the schedule's run `nightly-1` (no client submitted it: no run.submitted) and tiny@2 by
 * a resume of it, whose run.submitted holds the plan and the schedule but no text (`tempered resume` submits the run's
 * input again). `gone`: the spec file then deleted from the store, as a `store gc` before it kept them did.
 */
async function scheduledVersions(t: { after: (fn: () => void) => void }, name: string, o: { params?: string[]; gone?: boolean }) {
  const { home, file } = pipelineHome(t, name, '# nightly\n');
  const overrides = Object.fromEntries((o.params ?? []).map((p) => p.split('=') as [string, string]));
  const loaded = await loadSpec(file, { ...kindRegistry(await loadStageKinds()), paramOverrides: overrides });
  assert.ok(loaded.ok);
  const stored = await new ArtifactStore(join(home, 'store')).putBytes(loaded.text, { mediaType: 'application/yaml' });
  if (o.gone) rmSync(join(home, 'store', 'sha256', stored.sha256.slice(0, 2), stored.sha256));
  const audit = await openAudit(join(home, 'audit.db'));
  await audit.append({
    action: 'schedule.created',
    subject: 'nightly',
    actor: 'carol',
    specHash: loaded.plan.specHash,
    details: { specUri: stored.uri, file, ...(o.params ? { param: o.params } : {}) },
  });
  await audit.close();
  const options = { baseDir: home, actor: 'dave', scheduleId: 'nightly', resumeOf: 'nightly-1' };
  await auditRunSubmitted(join(home, 'audit.db'), 'nightly-1-r', { plan: loaded.plan, options }, 'exec-r');
  const reg = await openRegistry(join(home, 'registry.db'));
  for (const [bytes, runId] of [
    ['a', 'nightly-1'],
    ['b', 'nightly-1-r'],
  ])
    await reg.registerVersion(testVersion('tiny', bytes!, { runId, specHash: loaded.plan.specHash }));
  await reg.close();
  return { home, text: loaded.text };
}

test("models show --spec of a schedule's run: the file the schedule keeps in the store, checked against the version's spec hash", async (t) => {
  const { home, text } = await scheduledVersions(t, 'sched-', { params: ['seed=7'] });
  const shown = await runCli(['models', 'show', 'tiny@1', '--spec'], { TEMPERED_HOME: home });
  assert.equal(shown.code, 0, shown.stderr);
  assert.equal(shown.stdout, text);
  assert.match(shown.stderr, /run nightly-1 was started by schedule nightly/);
  assert.match(shown.stderr, /rerun: tempered submit tiny\.yaml --param seed=7\n/);
  // The resume's record has the plan only: the file the schedule keeps, not the plan as JSON.
  const resumed = await runCli(['models', 'show', 'tiny@2', '--spec'], { TEMPERED_HOME: home });
  assert.equal(resumed.code, 0, resumed.stderr);
  assert.equal(resumed.stdout, text);
  assert.match(
    resumed.stderr,
    /run nightly-1-r was submitted without its file's text \(a resume of a schedule's run\); the spec file schedule nightly keeps/,
  );
});

test("models diff of a schedule's version and a submitted one: the spec fields that differ, from the file the schedule keeps", async (t) => {
  // tiny@1: the schedule's run (no run.submitted) with seed 7; tiny@3: a run submitted with seed 9.
  const { home } = await scheduledVersions(t, 'sched-diff-', { params: ['seed=7'] });
  const nine = await loadSpec(join(home, 'tiny.yaml'), { ...kindRegistry(await loadStageKinds()), paramOverrides: { seed: '9' } });
  assert.ok(nine.ok);
  await auditRunSubmitted(
    join(home, 'audit.db'),
    'run-9',
    { plan: nine.plan, options: { baseDir: home, actor: 'alice', specText: nine.text } },
    'x-9',
  );
  const reg = await openRegistry(join(home, 'registry.db'));
  await reg.registerVersion(testVersion('tiny', 'c', { runId: 'run-9', specHash: nine.plan.specHash }));
  await reg.close();
  const env = { TEMPERED_HOME: home };
  const json = await runCliInProcess(['models', 'diff', 'tiny', '1', '3', '--json'], env);
  assert.deepEqual((JSON.parse(json.stdout) as { spec?: unknown }).spec, [
    { path: 'params.seed', values: [7, 9] },
    { path: 'stages.split.with.seed', values: [7, 9] },
  ]);
  const human = await runCliInProcess(['models', 'diff', 'tiny', '1', '3'], env);
  assert.match(human.stdout, /\nspec:\n {2}params\.seed +7 → 9\n {2}stages\.split\.with\.seed +7 → 9\n/);
});

test('models diff and models show --spec make no audit database where there is none, and say the trail is missing', async (t) => {
  const home = mkdtempSync(join(tmpdir(), 'tempered-run-spec-noaudit-'));
  t.after(() => rmSync(home, { recursive: true, force: true }));
  const reg = await openRegistry(join(home, 'registry.db'));
  await reg.registerVersion(testVersion('tiny', 'a', { runId: 'run-a', specHash: 'a'.repeat(64) }));
  await reg.registerVersion(testVersion('tiny', 'b', { runId: 'run-b', specHash: 'b'.repeat(64) }));
  await reg.close();
  const env = { TEMPERED_HOME: home, TEMPERED_DATABASE_URL: '', TEMPERED_STORE: '' };
  const diff = await runCliInProcess(['models', 'diff', 'tiny', '1', '2', '--json'], env);
  assert.equal(diff.code, 0, diff.stderr);
  const d = JSON.parse(diff.stdout) as { spec?: unknown; trainedWith: unknown };
  assert.deepEqual([d.spec, d.trainedWith], [null, null]);
  const spec = await runCliInProcess(['models', 'show', 'tiny@1', '--spec'], env);
  assert.equal(spec.code, 1);
  assert.match(spec.stderr, /^tiny@1: no audit log at .*audit\.db, which keeps the spec a run was submitted with$/);
  assert.equal(existsSync(join(home, 'audit.db')), false);
});

test("models show --spec when the schedule's spec file is gone from the store: a resume's plan, or an error naming the file", async (t) => {
  const { home } = await scheduledVersions(t, 'gone-', { gone: true });
  const env = { TEMPERED_HOME: home, TEMPERED_STORE: '', TEMPERED_DATABASE_URL: '' };
  const own = await runCliInProcess(['models', 'show', 'tiny@1', '--spec'], env);
  assert.equal(own.code, 1);
  assert.match(
    own.stderr,
    /^tiny@1: run nightly-1 was started by schedule nightly, whose spec file .*tiny\.yaml \(artifact:[^)]*\) the store no longer has: artifact [0-9a-f]{64} is not in the store/,
  );
  const json = JSON.parse((await runCliInProcess(['models', 'show', 'tiny@2', '--spec', '--json'], env)).stdout) as Record<string, unknown>;
  assert.deepEqual([json.text, json.planMatches], [undefined, true]);
});
