/**
 * A spec with credentials in it (a presigned dataset URL, a password in a URL, a parameter named as a secret) is kept
 * in the append-only audit trail with them hidden, and `tempered models show NAME@V --spec` says the text is not the
 * file submitted, with the file's sha256, rather than reporting a plan that does not hash to the version's spec hash.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { auditRunSubmitted } from '../client/runs.ts';
import { auditScheduleChange } from '../client/schedules.ts';
import { openAudit } from '../src/audit/log.ts';
import { openRegistry } from '../src/registry/registry.ts';
import { testVersion } from '../src/registry/versions.testing.ts';
import { loadSpec } from '../src/spec/load.ts';
import { kindRegistry, loadStageKinds } from '../src/stages/stage-kinds.ts';
import { sha256Hex } from '../src/util/canonical-json.ts';
import { runCli, runCliInProcess } from './helpers/cli.ts';

const SECRETS = /SIGSECRET|AKIDSECRET|PWSECRET|TOKSECRET/;

test('run.submitted keeps the spec with its credentials hidden; models show --spec says so', async (t) => {
  const home = mkdtempSync(join(tmpdir(), 'tempered-spec-redaction-'));
  t.after(() => rmSync(home, { recursive: true, force: true }));
  const file = join(home, 'p.yaml');
  const text = `name: creds
params:
  hf_token:
    type: string
    default: none
  backup:
    type: string
    default: https://bob:PWSECRET@backup.example/d.jsonl
stages:
  ingest:
    uses: ingest
    with:
      path: https://bucket.s3.amazonaws.com/d/train.jsonl?X-Amz-Credential=AKIDSECRET%2F1&X-Amz-Signature=SIGSECRET
      sha256: ${'a'.repeat(64)}
      task: classification
`;
  writeFileSync(file, text);
  const loaded = await loadSpec(file, { ...kindRegistry(await loadStageKinds()), paramOverrides: { hf_token: 'hf_TOKSECRET' } });
  assert.ok(loaded.ok, JSON.stringify(!loaded.ok && loaded.errors));
  const auditDb = join(home, 'audit.db');
  await auditRunSubmitted(
    auditDb,
    'run-1',
    { plan: loaded.plan, options: { baseDir: home, actor: 'alice', specFile: file, specText: text } },
    'x1',
  );
  const audit = await openAudit(auditDb);
  const [rec] = await audit.query({ run: 'run-1', action: 'run.submitted' });
  await audit.close();
  // Nowhere in the record, nor anywhere in the database file.
  assert.doesNotMatch(JSON.stringify(rec), SECRETS);
  assert.doesNotMatch(readFileSync(auditDb).toString('latin1'), SECRETS);
  const spec = rec!.details.spec as { text: string; sha256: string; keptSha256: string };
  assert.equal(spec.sha256, sha256Hex(text), "the file's own hash is kept");
  assert.equal(spec.keptSha256, sha256Hex(spec.text));
  assert.match(
    spec.text,
    /path: https:\/\/bucket\.s3\.amazonaws\.com\/d\/train\.jsonl\?X-Amz-Credential=REDACTED&X-Amz-Signature=REDACTED\n/,
  );
  assert.match(spec.text, /default: https:\/\/REDACTED@backup\.example\/d\.jsonl\n/);
  assert.deepEqual(rec!.details.params, { hf_token: 'REDACTED', backup: 'https://REDACTED@backup.example/d.jsonl' });
  assert.deepEqual(rec!.details.redacted, [
    'params.hf_token: value',
    'params.backup: userinfo',
    'stages[0].with.path: query X-Amz-Credential',
    'stages[0].with.path: query X-Amz-Signature',
  ]);

  const reg = await openRegistry(join(home, 'registry.db'));
  await reg.registerVersion(testVersion('creds', 'a', { runId: 'run-1', specHash: loaded.plan.specHash }));
  await reg.close();
  const env = { TEMPERED_HOME: home };
  const shown = await runCli(['models', 'show', 'creds@1', '--spec'], env);
  assert.equal(shown.code, 0, shown.stderr);
  assert.equal(shown.stdout, spec.text);
  assert.match(shown.stderr, new RegExp(`credentials were hidden .*not the file submitted \\(sha256 ${sha256Hex(text)}\\).*REDACTED`));
  assert.doesNotMatch(shown.stderr, /warning/);
  const json = JSON.parse((await runCliInProcess(['models', 'show', 'creds@1', '--spec', '--json'], env)).stdout) as Record<
    string,
    unknown
  >;
  assert.equal(json.textMatches, true);
  assert.equal(json.textSha256, sha256Hex(text));
  assert.equal(json.planMatches, undefined);
  assert.deepEqual(json.problems, []);
  assert.equal((json.redacted as string[]).length, 4);
});

test("a schedule's record keeps its --param flags without credentials", async (t) => {
  const home = mkdtempSync(join(tmpdir(), 'tempered-spec-redaction-sched-'));
  t.after(() => rmSync(home, { recursive: true, force: true }));
  const auditDb = join(home, 'audit.db');
  await auditScheduleChange(auditDb, 'created', {
    name: 'nightly',
    actor: 'alice',
    details: { param: ['seed=3', 'hf_token=hf_TOKSECRET', 'src=https://h.example/d.jsonl?sig=SIGSECRET&v=2'], file: 'p.yaml' },
  });
  assert.doesNotMatch(readFileSync(auditDb).toString('latin1'), SECRETS);
  const audit = await openAudit(auditDb);
  const [rec] = await audit.query({ action: 'schedule.created' });
  await audit.close();
  assert.deepEqual(rec!.details.param, ['seed=3', 'hf_token=REDACTED', 'src=https://h.example/d.jsonl?sig=REDACTED&v=2']);
});
