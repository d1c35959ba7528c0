/**
 * The dashboard's answers carry no credential inside a URL, whatever the state they are read from holds: here audit
 * records written before the trail hid them (a run.submitted with a presigned dataset URL in its text, plan and params,
 * an ingest record naming the URL, a run.failed whose error quotes it, a --param named as a secret). Real SQLite audit log and registry, the real
 * server; no Temporal (the same hook answers for the routes that read it).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { auditRunSubmitted } from '../client/runs.ts';
import { GENESIS_HASH, hashRecord, openAudit, type AuditEntry } from '../src/audit/log.ts';
import { loadSpec } from '../src/spec/load.ts';
import { kindRegistry, loadStageKinds } from '../src/stages/stage-kinds.ts';
import { useBrowser } from '../tests/helpers/browser.ts';
import { openRegistry } from '../src/registry/registry.ts';
import { testVersion } from '../src/registry/versions.testing.ts';
import { statePaths } from '../src/state-paths.ts';
import { ArtifactStore } from '../src/store/artifact-store.ts';
import { canonicalJson, sha256Hex } from '../src/util/canonical-json.ts';
import { openDashboard, testUiServer } from './dashboard.testing.ts';
import type { UiServer } from './server.ts';

const URL_ = 'https://bob:PWSECRET@bucket.s3.amazonaws.com/d/train.jsonl?X-Amz-Credential=AKIDSECRET&X-Amz-Signature=SIGSECRET';
const SHOWN = 'https://REDACTED@bucket.s3.amazonaws.com/d/train.jsonl?X-Amz-Credential=REDACTED&X-Amz-Signature=REDACTED';
const SECRETS = /PWSECRET|AKIDSECRET|SIGSECRET|TOKSECRET/;
const TOKEN = 'ui-redaction-token-0123456789';
let dir: string;
let ui: UiServer;
let url: string;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'ui-redaction-'));
  const paths = statePaths(dir);
  const text = `name: creds\nstages:\n  ingest:\n    uses: ingest\n    with:\n      path: ${URL_}\n`;
  // A --param named as a secret, substituted into a (plugin) stage's field.
  const plan = {
    name: 'creds',
    params: { src: URL_, hf_token: 'hf_TOKSECRET' },
    stages: [
      { id: 'ingest', uses: 'ingest', with: { path: URL_ } },
      { id: 'fetch', uses: 'fetch', with: { auth: 'Bearer hf_TOKSECRET' } },
    ],
  };
  const specHash = 'e'.repeat(64);
  // As auditRunSubmitted and the stage hooks wrote them before they hid credentials.
  const base = { runId: 'run-1', actor: 'alice', specHash };
  await appendAsBeforeRedaction(paths.auditDb, [
    {
      ...base,
      action: 'run.submitted',
      subject: 'run-1',
      details: { pipeline: 'creds', params: plan.params, spec: { text, sha256: sha256Hex(text) }, plan },
    },
    {
      ...base,
      action: 'stage.completed',
      subject: 'run-1/ingest',
      dataHashes: { [`source:${URL_}`]: 'a'.repeat(64) },
      details: { stage: 'ingest', kind: 'ingest', sources: [{ path: URL_, sha256: 'a'.repeat(64), bytes: 10 }] },
    },
    { ...base, action: 'run.failed', subject: 'run-1', details: { error: `GET ${URL_} answered 403 Forbidden` } },
  ]);
  // run-2, as a run is submitted now: the trail hides the credentials and says where.
  const specFile = join(dir, 'creds.yaml');
  const specText = `name: creds\nstages:\n  ingest:\n    uses: ingest\n    with:\n      path: ${URL_}\n      sha256: ${'a'.repeat(64)}\n      task: classification\n`;
  writeFileSync(specFile, specText);
  const loaded = await loadSpec(specFile, kindRegistry(await loadStageKinds()));
  assert.ok(loaded.ok);
  await auditRunSubmitted(
    paths.auditDb,
    'run-2',
    { plan: loaded.plan, options: { baseDir: dir, actor: 'alice', specFile, specText } },
    'x2',
  );
  // nightly-1: a schedule's run (no run.submitted), whose schedule keeps its file, URL and all, in the store.
  const { uri: specUri } = await new ArtifactStore(paths.store).putBytes(text, { mediaType: 'application/yaml' });
  const log = await openAudit(paths.auditDb);
  const nightly = { actor: 'alice', specHash: 'f'.repeat(64) };
  await log.append({ ...nightly, action: 'schedule.created', subject: 'nightly', details: { specUri, file: 'creds.yaml' } });
  await log.append({
    ...nightly,
    action: 'stage.completed',
    subject: 'nightly-1/ingest',
    runId: 'nightly-1',
    details: { stage: 'ingest' },
  });
  await log.close();
  const reg = await openRegistry(paths.registryDb);
  await reg.registerVersion(testVersion('creds', 'a', { runId: 'run-1', specHash }));
  await reg.registerVersion(testVersion('creds', 'b', { runId: 'run-2', specHash: loaded.plan.specHash }));
  await reg.close();
  ui = await testUiServer(paths, TOKEN);
  url = await ui.listen(0, '127.0.0.1');
});
/**
 * Appends records as releases before 7 Dec did, credentials and all, as a valid chain: AuditLog.append now hides URL
 * credentials itself, so records it writes could not show whether the dashboard hides them too.
 */
async function appendAsBeforeRedaction(auditDb: string, entries: AuditEntry[]): Promise<void> {
  const log = await openAudit(auditDb);
  try {
    await log.db.write('audit', async (q) => {
      let prevHash = GENESIS_HASH;
      for (const [i, e] of entries.entries()) {
        const record = {
          seq: i + 1,
          time: new Date().toISOString(),
          actor: e.actor!,
          action: e.action,
          subject: e.subject,
          details: e.details ?? {},
          runId: e.runId,
          specHash: e.specHash,
          ...(e.dataHashes ? { dataHashes: e.dataHashes } : {}),
          prevHash,
        };
        const hash = hashRecord(record);
        await q.run(
          'INSERT INTO audit_log (seq, time, actor, action, subject, details_json, run_id, spec_hash, data_hashes_json, prev_hash, hash) VALUES (?,?,?,?,?,?,?,?,?,?,?)',
          [
            record.seq,
            record.time,
            record.actor,
            record.action,
            record.subject,
            canonicalJson(record.details),
            e.runId,
            e.specHash,
            e.dataHashes ? canonicalJson(e.dataHashes) : null,
            prevHash,
            hash,
          ],
        );
        await q.run(
          'INSERT INTO audit_head (id, seq, hash) VALUES (1, ?, ?) ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash',
          [record.seq, hash],
        );
        prevHash = hash;
      }
    });
    // What the test would otherwise only assume: the rows hold the credentials, and the chain still verifies.
    assert.match(JSON.stringify(await log.query({})), SECRETS);
    assert.deepEqual(await log.verify(), { ok: true, checked: entries.length });
  } finally {
    await log.close();
  }
}

after(async () => {
  await ui?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test('no answer of the dashboard holds a credential from a URL; each still names its host and path', async () => {
  for (const path of [
    '/api/audit',
    '/api/audit?run=run-1',
    '/api/runs/run-1/spec',
    '/api/runs/run-1/spec?download=1',
    '/api/models/creds/versions/1/spec',
    '/api/models/creds/versions/1/lineage',
    '/api/models/creds/versions/1/card',
    '/api/runs/nightly-1/spec',
    '/api/runs/nightly-1/spec?download=1',
  ]) {
    const res = await fetch(`${url}${path}`);
    const body = await res.text();
    assert.equal(res.status, 200, `${path}: ${body}`);
    assert.doesNotMatch(body, SECRETS, path);
    if (!path.includes('card') && !path.includes('lineage')) assert.ok(body.includes(SHOWN.replace(/^https:\/\//, '')), `${path}: ${body}`);
  }
});

test("a spec the dashboard hides credentials in says where, also a schedule's file, which the store keeps whole", async () => {
  for (const run of ['run-2', 'nightly-1']) {
    const view = (await (await fetch(`${url}/api/runs/${run}/spec`)).json()) as { spec?: { text?: string; redacted?: string[] } };
    assert.ok(view.spec?.text?.includes(SHOWN), `${run}: ${JSON.stringify(view)}`);
    // Where the text shown is not the file whose sha256 is shown beside it, the page's note needs this list.
    assert.ok(
      (view.spec?.redacted ?? []).some((w) => /userinfo/.test(w)),
      `${run}: ${JSON.stringify(view.spec?.redacted)}`,
    );
  }
});

describe('the page', () => {
  const chrome = useBrowser();
  test("a version's card says where credentials were hidden, and that the text is not the file submitted", async (t) => {
    if (chrome.skip) return t.skip(chrome.skip);
    const errors: string[] = [];
    const page = await openDashboard(chrome.browser!, url, TOKEN, '#/models', errors);
    await page.locator('[data-model="creds"] tr[data-version="2"] button', { hasText: 'card' }).click();
    const note = page.locator('#version-card[data-version="2"] [data-spec-redacted]');
    await note.waitFor();
    assert.match(await note.innerText(), /credentials were hidden .*stages\[0\]\.with\.path: userinfo.*not the file\s+submitted/s);
    assert.doesNotMatch(await page.content(), SECRETS);
    assert.deepEqual(errors, []);
  });
});
