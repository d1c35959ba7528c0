/**
 * `tempered audit` as an operator uses it to pin the chain outside the database: --head,
 * --export-head (HMAC with TEMPERED_AUDIT_KEY), --verify --anchor / --anchor-file, and an empty or
 * deleted log where records are expected.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { openAudit } from '../src/audit/log.ts';
import { openRegistry } from '../src/registry/registry.ts';
import { testVersion } from '../src/registry/versions.testing.ts';
import { runCliInProcess as runCli } from './helpers/cli.ts';
import { postgresUnavailable, useDatabases } from '../src/db/postgres.testing.ts';

test('audit anchors catch a cut tail and a wipe that plain verify cannot see', async (t) => {
  const home = mkdtempSync(join(tmpdir(), 'tempered-audit-cli-'));
  t.after(() => rmSync(home, { recursive: true, force: true }));
  const env = { TEMPERED_HOME: home, TEMPERED_AUDIT_KEY: 'a-secret-kept-elsewhere-0123456789' };
  const db = join(home, 'audit.db');
  const log = await openAudit(db);
  for (let i = 1; i <= 5; i++) await log.append({ action: 'run.submitted', subject: `run-${i}` });
  await log.close();

  const head = await runCli(['audit', '--head'], env);
  assert.equal(head.code, 0, head.stderr);
  assert.match(head.stdout.trim(), /^5:[0-9a-f]{64}$/);
  const exported = await runCli(['audit', '--export-head'], env);
  assert.equal(exported.code, 0, exported.stderr);
  const anchors = join(home, '..', `anchors-${Date.now()}.jsonl`);
  t.after(() => rmSync(anchors, { force: true }));
  writeFileSync(anchors, exported.stdout);
  const ok = await runCli(['audit', '--verify', '--anchor', head.stdout.trim(), '--anchor-file', anchors], env);
  assert.equal(ok.code, 0, ok.stdout + ok.stderr);
  assert.match(ok.stdout, /intact: 5 records.*2 anchor\(s\) match/);

  // Cut the last two records and fix the head row.
  const raw = new Database(db);
  raw.prepare('DELETE FROM audit_log WHERE seq > 3').run();
  const last = raw.prepare('SELECT seq, hash FROM audit_log WHERE seq = 3').get() as { seq: number; hash: string };
  raw.prepare('UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1').run(last.seq, last.hash);
  raw.close();
  assert.equal((await runCli(['audit', '--verify'], env)).code, 0, 'plain verify cannot see it');
  const cut = await runCli(['audit', '--verify', '--anchor-file', anchors], env);
  assert.equal(cut.code, 1);
  assert.match(cut.stdout, /TAMPERED: truncated/);
  const byHash = await runCli(['audit', '--verify', '--anchor', head.stdout.trim().split(':')[1]!], env);
  assert.equal(byHash.code, 1);
  assert.match(byHash.stdout, /TAMPERED: rewritten/);

  // A forged anchor file (edited without the key) is refused, not trusted.
  const forged = JSON.parse(exported.stdout) as { seq: number };
  appendFileSync(anchors, JSON.stringify({ ...forged, seq: 3 }) + '\n');
  const refused = await runCli(['audit', '--verify', '--anchor-file', anchors], env);
  assert.equal(refused.code, 2);
  assert.match(refused.stderr, /signature does not match/);

  // An unsigned line in the file (anyone could write one for a rewritten log), an empty file, a missing file: refused.
  const unsigned = join(home, '..', `anchors-unsigned-${Date.now()}.txt`);
  t.after(() => rmSync(unsigned, { force: true }));
  writeFileSync(unsigned, `${head.stdout.trim()}\n`);
  const noSig = await runCli(['audit', '--verify', '--anchor-file', unsigned], env);
  assert.deepEqual([noSig.code, /:1: not a signed anchor; with TEMPERED_AUDIT_KEY set/.test(noSig.stderr)], [2, true], noSig.stderr);
  writeFileSync(unsigned, '\n');
  const empty = await runCli(['audit', '--verify', '--anchor-file', unsigned], env);
  assert.deepEqual([empty.code, /holds no anchor/.test(empty.stderr)], [2, true], empty.stderr);
  const missing = await runCli(['audit', '--verify', '--anchor-file', join(home, 'nope.jsonl')], env);
  assert.deepEqual([missing.code, /nope\.jsonl: no such file/.test(missing.stderr)], [2, true], missing.stderr);

  // Wiped: every row and the head gone.
  const w = new Database(db);
  w.exec('DELETE FROM audit_log; DELETE FROM audit_head;');
  w.close();
  const wiped = await runCli(['audit', '--verify'], env);
  assert.equal(wiped.code, 1);
  assert.match(wiped.stdout, /TAMPERED: empty/);
  assert.equal((await runCli(['audit', '--verify', '--allow-empty'], env)).code, 0);
  // Deleted file: with an anchor that is tampering, not "nothing yet".
  rmSync(db);
  // With --allow-empty and no anchor it is a fresh install's log: empty, which the flag accepts.
  const fresh = await runCli(['audit', '--verify', '--allow-empty'], env);
  assert.deepEqual([fresh.code, fresh.stdout.trim()], [0, `audit log intact: 0 records (no audit log at ${db} yet)`], fresh.stderr);
  assert.equal((await runCli(['audit', '--verify'], env)).code, 1, 'without --allow-empty a missing log is no pass');
  const gone = await runCli(['audit', '--verify', '--anchor', head.stdout.trim()], env);
  assert.equal(gone.code, 1);
  assert.match(gone.stdout, /TAMPERED: no audit log/);
});

test('audit --model NAME@alias reads the version the alias points at now and says which; unknown aliases and models are errors', async (t) => {
  const home = mkdtempSync(join(tmpdir(), 'tempered-audit-alias-'));
  t.after(() => rmSync(home, { recursive: true, force: true }));
  const env = { TEMPERED_HOME: home };
  const reg = await openRegistry(join(home, 'registry.db'));
  for (const [run, bytes] of [
    ['r1', 'a'],
    ['r2', 'b'],
  ] as const)
    await reg.registerVersion(testVersion('spam-clf', bytes, { runId: run }));
  await reg.setAlias('spam-clf', 'production', 2);
  await reg.close();
  const log = await openAudit(join(home, 'audit.db'));
  for (const v of [1, 2]) await log.append({ action: 'model.registered', subject: `spam-clf@${v}`, model: `spam-clf@${v}` });
  await log.append({ action: 'serve.started', subject: 'spam-clf@2', model: 'spam-clf@2' });
  await log.close();

  const prod = await runCli(['audit', '--model', 'spam-clf@production'], env);
  assert.equal(prod.code, 0, prod.stderr);
  const lines = prod.stdout.trim().split('\n');
  assert.match(lines[0]!, /^spam-clf@production is spam-clf@2 \(the version it points at now/);
  assert.deepEqual(
    lines.slice(1).map((l) => /(model\.registered|serve\.started)\s+(\S+)/.exec(l)?.slice(1).join(' ')),
    ['model.registered spam-clf@2', 'serve.started spam-clf@2'],
  );
  // --json stays an array of records (the resolved version is told on stderr).
  const json = await runCli(['audit', '--model', 'spam-clf@production', '--json'], env);
  assert.deepEqual(
    (JSON.parse(json.stdout) as { subject: string }[]).map((r) => r.subject),
    ['spam-clf@2', 'spam-clf@2'],
  );
  // name@latest and name@v1 resolve too; NAME and NAME@1 read as before.
  assert.match((await runCli(['audit', '--model', 'spam-clf@latest'], env)).stdout, /^spam-clf@latest is spam-clf@2/);
  assert.match((await runCli(['audit', '--model', 'spam-clf@v1'], env)).stdout, /^spam-clf@v1 is spam-clf@1/);
  const one = await runCli(['audit', '--model', 'spam-clf@1'], env);
  assert.equal(one.stdout.trim().split('\n').length, 1);
  assert.match(one.stdout, /model\.registered\s+spam-clf@1/);
  assert.equal((await runCli(['audit', '--model', 'spam-clf'], env)).stdout.trim().split('\n').length, 3);

  const staging = await runCli(['audit', '--model', 'spam-clf@staging'], env);
  assert.equal(staging.code, 1);
  assert.match(
    staging.stderr,
    /cannot resolve 'spam-clf@staging': model 'spam-clf' has no version or alias 'staging'\n.*aliases production/,
  );
  const nosuch = await runCli(['audit', '--model', 'ham@production'], env);
  assert.equal(nosuch.code, 1);
  assert.match(nosuch.stderr, /cannot resolve 'ham@production': .*'ham'/);
  const typo = await runCli(['audit', '--model', 'spam-cfl'], env);
  assert.equal(typo.code, 1);
  assert.match(typo.stderr, /no model named 'spam-cfl'\n.*did you mean 'spam-clf'\?/);
  const bad = await runCli(['audit', '--model', 'spam-clf@'], env);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /bad model reference/);
  // Without a registry an alias cannot be resolved; the versions still read.
  rmSync(join(home, 'registry.db'));
  const noRegistry = await runCli(['audit', '--model', 'spam-clf@production'], env);
  assert.equal(noRegistry.code, 1);
  assert.match(noRegistry.stderr, /cannot resolve 'spam-clf@production': no model registry/);
  assert.equal((await runCli(['audit', '--model', 'spam-clf@2'], env)).code, 0);
});

/** A registry with spam-clf v1..v3 and the records a server leaves when production moves from v2 to v3. */
async function servedHome(t: { after: (fn: () => void) => void }): Promise<Record<string, string>> {
  const home = mkdtempSync(join(tmpdir(), 'tempered-audit-version-'));
  t.after(() => rmSync(home, { recursive: true, force: true }));
  const reg = await openRegistry(join(home, 'registry.db'));
  for (const bytes of ['a', 'b', 'c']) await reg.registerVersion(testVersion('spam-clf', bytes));
  await reg.close();
  const log = await openAudit(join(home, 'audit.db'));
  await log.append({ action: 'serve.started', subject: 'spam-clf@2', model: 'spam-clf@2', details: { alias: 'production' } });
  // What tempered serve writes when production moves from v2 to v3: a record about v3 that names v2.
  await log.append({
    action: 'serve.swapped',
    subject: 'spam-clf@3',
    model: 'spam-clf@3',
    modelHash: 'c'.repeat(64),
    details: { from: 'spam-clf@2', to: 'spam-clf@3', alias: 'production', fromModelHash: 'b'.repeat(64) },
  });
  await log.append({ action: 'serve.stopped', subject: 'spam-clf@3', model: 'spam-clf@3', details: { alias: 'production' } });
  await log.close();
  return { TEMPERED_HOME: home };
}

test('audit names a rollback by its alias and both versions: the version it went back to is not the one rolled back', async (t) => {
  const home = mkdtempSync(join(tmpdir(), 'tempered-audit-rollback-'));
  t.after(() => rmSync(home, { recursive: true, force: true }));
  const env = { TEMPERED_HOME: home };
  const reg = await openRegistry(join(home, 'registry.db'));
  for (const [run, bytes] of [
    ['r1', 'a'],
    ['r2', 'b'],
  ] as const)
    await reg.registerVersion(testVersion('clf', bytes, { runId: run }));
  await reg.close();
  for (const args of [
    ['models', 'promote', 'clf@2'],
    ['models', 'promote', 'clf@1'],
    ['models', 'rollback', 'clf'],
  ]) {
    const res = await runCli(args, env);
    assert.equal(res.code, 0, res.stderr);
  }
  const audit = await runCli(['audit'], env);
  assert.equal(audit.code, 0, audit.stderr);
  const lines = audit.stdout.trim().split('\n');
  // Production went v2 → v1 by hand, then back from v1 to v2: the line read `model.rolled_back clf@2`.
  assert.match(lines[1]!, /model\.promoted +clf@1 +\(production: v2 → v1; /);
  assert.match(lines[2]!, /model\.rolled_back +clf@production: v1 rolled back to v2 +\(reason "rollback from v1"\)$/);
  // The record itself is unchanged: its subject is the version production holds now, as --model finds it.
  assert.match((await runCli(['audit', '--model', 'clf@2'], env)).stdout, /model\.rolled_back/);
});

test("audit --model NAME@N: a version's trail ends where a server swapped it out (v2 → v3)", async (t) => {
  const env = await servedHome(t);
  const v2 = await runCli(['audit', '--model', 'spam-clf@2'], env);
  assert.equal(v2.code, 0, v2.stderr);
  assert.deepEqual(
    v2.stdout
      .trim()
      .split('\n')
      .map((l) => /(serve\.\w+)\s+(\S+)(?:\s+\((production: [^;)]*))?/.exec(l)?.slice(1).filter(Boolean).join(' ')),
    ['serve.started spam-clf@2', 'serve.swapped spam-clf@3 production: v2 → v3'],
  );
  const v3 = await runCli(['audit', '--model', 'spam-clf@3'], env);
  assert.match(v3.stdout, /serve\.swapped\s+spam-clf@3\s+\(production: v2 → v3;[\s\S]*serve\.stopped\s+spam-clf@3/);
});

test('audit --model NAME@N: a version the registry lacks is an error; NAME@vN reads as the fixed version it is', async (t) => {
  const env = await servedHome(t);
  const missing = await runCli(['audit', '--model', 'spam-clf@9'], env);
  assert.equal(missing.code, 1, missing.stdout);
  assert.match(missing.stderr, /^no such version 'spam-clf@9': model 'spam-clf' has no version or alias '9'\n\s+versions 1\.\.3/);
  assert.equal((await runCli(['audit', '--model', 'ham@1'], env)).code, 1);
  const fixed = await runCli(['audit', '--model', 'spam-clf@v2'], env);
  assert.equal(fixed.code, 0, fixed.stderr);
  assert.equal(fixed.stdout.split('\n')[0], 'spam-clf@v2 is spam-clf@2');
  assert.match(fixed.stdout, /serve\.started\s+spam-clf@2/);
});

describe('with TEMPERED_DATABASE_URL (PostgreSQL)', { skip: postgresUnavailable() }, () => {
  const dbs = useDatabases('postgres');

  test('audit --head and --verify read the log in PostgreSQL and catch an edit', async (t) => {
    const url = await dbs.fresh(t);
    const home = mkdtempSync(join(tmpdir(), 'tempered-audit-cli-pg-'));
    t.after(() => rmSync(home, { recursive: true, force: true }));
    const env = { TEMPERED_HOME: home, TEMPERED_DATABASE_URL: url };
    const log = await openAudit(url);
    for (let i = 1; i <= 3; i++) await log.append({ action: 'run.submitted', subject: `run-${i}` });
    const head = await runCli(['audit', '--head'], env);
    assert.equal(head.code, 0, head.stderr);
    assert.equal(head.stdout.trim(), `3:${(await log.head())!.hash}`);
    const ok = await runCli(['audit', '--verify', '--anchor', head.stdout.trim()], env);
    assert.equal(ok.code, 0, ok.stdout + ok.stderr);
    assert.match(ok.stdout, /intact: 3 records/);
    assert.equal(existsSync(join(home, 'audit.db')), false, 'no SQLite file was created beside it');
    await log.db.run("UPDATE audit_log SET subject = 'run-x' WHERE seq = 2");
    await log.close();
    const bad = await runCli(['audit', '--verify'], env);
    assert.equal(bad.code, 1);
    assert.match(bad.stdout, /TAMPERED: edited at record #2/);
    // Nor is a head given (to print or to sign) for a log that fails its own chain.
    for (const flag of ['--head', '--export-head']) {
      const r = await runCli(['audit', flag], { ...env, TEMPERED_AUDIT_KEY: 'a-secret-kept-elsewhere-0123456789' });
      assert.equal(r.code, 1, flag);
      assert.match(r.stdout, /TAMPERED: edited at record #2 .*no head given for a log that fails verification/, flag);
    }
  });
});

test('output larger than a pipe holds reaches a slow reader whole before the command exits (audit --json | jq)', async (t) => {
  const home = mkdtempSync(join(tmpdir(), 'audit-pipe-'));
  t.after(() => rmSync(home, { recursive: true, force: true }));
  const log = await openAudit(join(home, 'audit.db'));
  for (let i = 0; i < 3; i++)
    await log.append({ action: 'run.submitted', subject: `r${i}`, actor: 't', details: { note: 'x'.repeat(100_000) } });
  await log.close();
  const bin = join(dirname(fileURLToPath(import.meta.url)), '..', 'bin', 'tempered.js');
  // Through a shell pipe into a reader that takes its time, as `| jq` on a busy machine does: the command must
  // not exit with its output half written.
  const child = spawn('sh', ['-c', `"${process.execPath}" "${bin}" audit --json | (sleep 1; cat)`], {
    env: { ...process.env, TEMPERED_HOME: home },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  const code = await new Promise<number | null>((r) => child.on('close', r));
  assert.equal(code, 0);
  assert.ok(out.length > 300_000, `${out.length} bytes`);
  assert.equal((JSON.parse(out) as unknown[]).length, 3);
});

// A run whose gate refused its model showed `model.not_promoted clf@1  (spec …)`: why was in --json alone.
test("audit's line for model.not_promoted says why: the gate's failed clauses, or the whole verdict when none is marked", async (t) => {
  const home = mkdtempSync(join(tmpdir(), 'audit-not-promoted-'));
  t.after(() => rmSync(home, { recursive: true, force: true }));
  const log = await openAudit(join(home, 'audit.db'));
  const gate = 'exact_match > baseline.exact_match + 0.05 && balanced_exact_match >= 0.7';
  await log.append({
    action: 'model.not_promoted',
    subject: 'lm@1',
    model: 'lm@1',
    details: {
      alias: 'production',
      gate,
      explanation: 'exact_match 0.45 > baseline.exact_match + 0.05 = 0.3 ✓; balanced_exact_match 0.5 >= 0.7 ✗',
    },
  });
  const held = 'v2 was rolled back from production by oncall at 2026-12-07T10:00:00.000Z: a run does not promote it again';
  await log.append({
    action: 'model.not_promoted',
    subject: 'lm@2',
    model: 'lm@2',
    details: { alias: 'production', gate, explanation: held },
  });
  await log.close();
  const r = await runCli(['audit', '--action', 'model.not_promoted'], { TEMPERED_HOME: home });
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stdout.trim().split('\n');
  assert.match(lines[0]!, /model\.not_promoted +lm@1 +\(gate: balanced_exact_match 0\.5 >= 0\.7 ✗\)$/);
  assert.ok(lines[1]!.includes(`(gate: ${held})`), lines[1]);
});

// `run.failed e2e-…  (spec …)` said nothing of why; a resume read as any other submission; a trigger the overlap policy
// skipped read as one that started a run; a pause's note was in --json alone.
test("audit's lines say why a run failed, what a resume reruns, which run a trigger started or that it started none, and a pause's note", async (t) => {
  const home = mkdtempSync(join(tmpdir(), 'audit-said-'));
  t.after(() => rmSync(home, { recursive: true, force: true }));
  const log = await openAudit(join(home, 'audit.db'));
  const error = "stage 'ingest' failed: data/b.jsonl:2: 1 bad row(s):\n  data/b.jsonl:2: invalid-json: Unterminated string";
  await log.append({
    action: 'run.failed',
    subject: 'e2e-1',
    runId: 'e2e-1',
    details: { pipeline: 'e2e', stages: { ingest: 'failed' }, error },
  });
  await log.append({ action: 'run.submitted', subject: 'e2e-2', runId: 'e2e-2', details: { pipeline: 'e2e', resumeOf: 'e2e-1' } });
  await log.append({
    action: 'schedule.triggered',
    subject: 'nightly',
    details: { overlap: 'skip', runId: 'nightly-2026-12-07T03:00:00Z' },
  });
  await log.append({ action: 'schedule.triggered', subject: 'nightly', details: { overlap: 'skip', skipped: true } });
  await log.append({ action: 'schedule.paused', subject: 'nightly', details: { note: 'data migration until Friday' } });
  await log.close();
  const r = await runCli(['audit'], { TEMPERED_HOME: home });
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stdout.trim().split('\n');
  assert.match(
    lines[0]!,
    /run\.failed +e2e-1 +\(error "stage 'ingest' failed: data\/b\.jsonl:2: 1 bad row\(s\): data\/b\.jsonl:2: invalid-json: Unterminated string"\)$/,
  );
  assert.match(lines[1]!, /run\.submitted +e2e-2 +\(resumes e2e-1\)$/);
  assert.match(lines[2]!, /schedule\.triggered +nightly +\(run nightly-2026-12-07T03:00:00Z\)$/);
  assert.match(lines[3]!, /schedule\.triggered +nightly +\(skipped by the overlap policy \(skip\): no run started\)$/);
  assert.match(lines[4]!, /schedule\.paused +nightly +\(note "data migration until Friday"\)$/);
  // The failed run's own trail names the run that resumed it (its run.submitted is the resume's record), --json too.
  const failed = await runCli(['audit', '--run', 'e2e-1'], { TEMPERED_HOME: home });
  assert.equal(failed.code, 0, failed.stderr);
  assert.deepEqual(
    failed.stdout
      .trim()
      .split('\n')
      .map((l) => /(run\.\w+) +(\S+)(?: +\((resumes \S+)\))?/.exec(l)?.slice(1).filter(Boolean).join(' ')),
    ['run.failed e2e-1', 'run.submitted e2e-2 resumes e2e-1'],
  );
  const json = await runCli(['audit', '--run', 'e2e-1', '--json'], { TEMPERED_HOME: home });
  assert.deepEqual(
    (JSON.parse(json.stdout) as { action: string; subject: string }[]).map((x) => `${x.action} ${x.subject}`),
    ['run.failed e2e-1', 'run.submitted e2e-2'],
  );
  const onlyFailures = await runCli(['audit', '--run', 'e2e-1', '--action', 'run.failed', '--json'], { TEMPERED_HOME: home });
  assert.equal((JSON.parse(onlyFailures.stdout) as unknown[]).length, 1);
});

test('audit --model NAME@N names the source files its training data came from: the ingest records of the run that registered it', async (t) => {
  const home = mkdtempSync(join(tmpdir(), 'audit-sources-'));
  t.after(() => rmSync(home, { recursive: true, force: true }));
  const log = await openAudit(join(home, 'audit.db'));
  const ingest = (run: string, path: string, sha: string) =>
    log.append({
      action: 'stage.completed',
      subject: `${run}/ingest`,
      runId: run,
      dataHashes: { [`source:${path}`]: sha, 'out:table': 'f'.repeat(64) },
      details: { stage: 'ingest', kind: 'ingest', sources: [{ path, sha256: sha, bytes: 120 }] },
    });
  await ingest('r1', 'data/tickets.csv', 'a'.repeat(64));
  await log.append({ action: 'stage.completed', subject: 'r1/train', runId: 'r1', details: { stage: 'train', kind: 'train' } });
  await ingest('r2', 'data/other.csv', 'b'.repeat(64));
  await log.append({ action: 'model.registered', subject: 'spam@1', model: 'spam@1', runId: 'r1', details: { version: 1 } });
  await log.close();
  const r = await runCli(['audit', '--model', 'spam@1'], { TEMPERED_HOME: home });
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stdout.trim().split('\n');
  assert.equal(lines.length, 2, r.stdout);
  assert.match(lines[0]!, /stage\.completed +r1\/ingest +\(data .*source:data\/tickets\.csv=aaaaaaaaaaaa/);
  assert.match(lines[1]!, /model\.registered +spam@1/);
  const json = await runCli(['audit', '--model', 'spam@1', '--json'], { TEMPERED_HOME: home });
  assert.deepEqual(
    (JSON.parse(json.stdout) as { subject: string; details: { sources?: { path: string }[] } }[]).map((x) => [
      x.subject,
      x.details.sources?.map((s) => s.path),
    ]),
    [
      ['r1/ingest', ['data/tickets.csv']],
      ['spam@1', undefined],
    ],
  );
  // Every version of the name: its records only, as before.
  assert.equal((await runCli(['audit', '--model', 'spam'], { TEMPERED_HOME: home })).stdout.trim().split('\n').length, 1);
});
