/**
 * Audit records of the operator's registry commands and of run submissions, through the real
 * commands in this process: a promote whose audit write fails is still recorded by the next
 * command, and a run id used twice is recorded twice.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCliInProcess } from './helpers/cli.ts';
import { auditRunSubmitted } from '../client/runs.ts';
import { openAudit } from '../src/audit/log.ts';
import { openRegistry } from '../src/registry/registry.ts';
import { plannedPipeline } from './helpers/plans.ts';

const cli = async (args: string[], home: string): Promise<number> => (await runCliInProcess(args, { TEMPERED_HOME: home })).code;

/** Versions 1, 2, … of model 'spam' in the home's registry, each with its f1_macro when given. */
async function registerSpam(home: string, f1: (number | undefined)[]): Promise<void> {
  const reg = await openRegistry(join(home, 'registry.db'));
  for (const [i, f] of f1.entries()) {
    const sha = 'abcdef'[i]!.repeat(64);
    await reg.registerVersion({
      name: 'spam',
      runId: `r${i + 1}`,
      stageId: 'register',
      specHash: 's',
      data: [],
      ...(f === undefined ? {} : { metrics: { f1_macro: f } }),
      artifacts: [{ role: 'model', uri: `artifact://sha256/${sha}`, sha256: sha, bytes: 1 }],
    });
  }
  await reg.close();
}

test('models promote: an audit write that fails after the alias moved is delivered by the next command, once', async (t) => {
  const home = mkdtempSync(join(tmpdir(), 'tempered-outbox-'));
  t.after(() => rmSync(home, { recursive: true, force: true }));
  await registerSpam(home, [undefined, undefined]);
  // Fault between the two writes: the audit database cannot be opened.
  mkdirSync(join(home, 'audit.db'));
  // The move is done and reported as done (a failure would invite a retry that moves the alias again).
  assert.equal(await cli(['models', 'promote', 'spam@2'], home), 0);
  rmSync(join(home, 'audit.db'), { recursive: true });
  const check = await openRegistry(join(home, 'registry.db'));
  assert.equal(await check.aliasVersion('spam', 'production'), 2, 'the alias moved');
  await check.close();
  // Retrying the command finds the alias already there, and still records the promotion.
  assert.equal(await cli(['models', 'promote', 'spam@2'], home), 0);
  const audit = await openAudit(join(home, 'audit.db'));
  assert.deepEqual(
    (await audit.query({ action: 'model.promoted' })).map((r) => r.subject),
    ['spam@2'],
  );
  assert.equal((await audit.verify()).ok, true);
  await audit.close();
});

test('run.submitted is recorded for each execution of a reused run id', async (t) => {
  const home = mkdtempSync(join(tmpdir(), 'tempered-submitted-'));
  t.after(() => rmSync(home, { recursive: true, force: true }));
  const input = { plan: plannedPipeline('p', []), options: { baseDir: home, actor: 'test' } };
  await auditRunSubmitted(join(home, 'audit.db'), 'nightly', input, 'exec-1');
  await auditRunSubmitted(join(home, 'audit.db'), 'nightly', input, 'exec-2');
  await auditRunSubmitted(join(home, 'audit.db'), 'nightly', input, 'exec-2');
  const audit = await openAudit(join(home, 'audit.db'));
  assert.equal((await audit.query({ action: 'run.submitted' })).length, 2);
  await audit.close();
});

test('models promote --gate: judged against the version the alias holds, refused with the explanation, and said when it passes', async (t) => {
  const home = mkdtempSync(join(tmpdir(), 'tempered-gate-cli-'));
  t.after(() => rmSync(home, { recursive: true, force: true }));
  await registerSpam(home, [0.95, 0.9]);
  assert.equal(await cli(['models', 'promote', 'spam@1'], home), 0);
  const refused = await runCliInProcess(['models', 'promote', 'spam@2', '--gate', 'f1_macro >= production.f1_macro'], {
    TEMPERED_HOME: home,
  });
  // The gate's verdict, said as one (it read "gate: gate refused the promotion: …" and offered a stack trace).
  assert.equal(refused.code, 1);
  assert.equal(
    refused.stderr,
    'spam@2 was not promoted to production: the gate refused it: f1_macro 0.9 >= production.f1_macro 0.95 ✗\n  promote another version, or change the gate',
  );
  const check = await openRegistry(join(home, 'registry.db'));
  assert.equal(await check.aliasVersion('spam', 'production'), 1, 'a refused gate moves nothing');
  await check.close();
  const passed = await runCliInProcess(['models', 'promote', 'spam@2', '--gate', 'f1_macro > 0.5', '--alias', 'staging'], {
    TEMPERED_HOME: home,
  });
  assert.equal(passed.code, 0);
  assert.match(passed.stdout, /gate passed: f1_macro 0\.9 > 0\.5 ✓/);
  assert.match(passed.stdout, /spam@staging: v- → v2/);
  assert.equal((await runCliInProcess(['models', 'rollback', 'spam', '--gate', 'x > 1'], { TEMPERED_HOME: home })).code, 2);
  // The listing says which alias moved where, and a reason or an actor with a newline or an escape stays on its line.
  const faked = '\n#  99 2026-12-05T00:00:00.000Z admin model.promoted spam@9 \u001b[31mRED';
  await runCliInProcess(['models', 'promote', 'spam@1', '--alias', 'staging', '--reason', `back${faked}`], { TEMPERED_HOME: home });
  await runCliInProcess(['models', 'promote', 'spam@2', '--alias', 'qa'], { TEMPERED_HOME: home, TEMPERED_ACTOR: `mallory${faked}` });
  const listing = (await runCliInProcess(['audit'], { TEMPERED_HOME: home })).stdout.trimEnd().split('\n');
  assert.equal(listing.length, 4, listing.join('\n'));
  assert.match(listing[3]!, /mallory\\n#  99 .*\\u001b\[31mRED model\.promoted\s+spam@2\s+\(qa: v- → v2/);
  assert.match(listing[1]!, /model\.promoted\s+spam@2 .*\(staging: v- → v2; reason "promoted by hand"/);
  assert.match(listing[2]!, /\(staging: v2 → v1; reason "back\\n#  99 .*\\u001b\[31mRED"/);
  const history = (await runCliInProcess(['models', 'history', 'spam'], { TEMPERED_HOME: home })).stdout.trimEnd().split('\n');
  assert.ok(history.every((l) => !l.includes('\u001b')) && history.length === 4, history.join('\n'));
  // References and flags that would be ignored or mean nothing are refused.
  const env = { TEMPERED_HOME: home };
  assert.equal((await runCliInProcess(['models', 'rollback', 'spam@2'], env)).code, 2, 'rollback ignores a version');
  assert.equal((await runCliInProcess(['models', 'show', 'spam@1@2'], env)).code, 2);
  assert.equal((await runCliInProcess(['audit', '--run', 'r1', '--model', 'spam'], env)).code, 2);
  const unknown = await runCliInProcess(['models', 'history', 'nosuch'], env);
  assert.deepEqual([unknown.code, /no registered model 'nosuch'/.test(unknown.stderr)], [1, true], unknown.stderr);
  // A rollback says that runs leave the version it took off the alias, and how to put it back.
  const back = await runCliInProcess(['models', 'rollback', 'spam', '--alias', 'staging', '--reason', 'v1 mislabels spam'], env);
  assert.equal(back.code, 0, back.stderr);
  // The why an on-call gives is kept, and the usage says it may be given (it listed --reason for promote only).
  assert.match((await runCliInProcess(['models', 'history', 'spam'], env)).stdout, /rollback v1 → v2 {2}by .* \(v1 mislabels spam\)/);
  assert.match((await runCliInProcess(['models', '--help'], env)).stdout, /rollback <name> \[--alias production\] \[--reason R\]/);
  assert.match(
    back.stdout,
    /spam@staging: v1 → v2 \(rolled back by .*\)\nno run's deploy promotes v1 to staging again .*`tempered models promote spam@1 --alias staging` does, by hand/,
  );
});
