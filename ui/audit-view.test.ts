/**
 * The audit page's answer lists a `run.submitted` record without the copies of the spec it keeps (the file's text and
 * the resolved plan, several KB each): their hash and sizes instead. The page polls 500 records every 5 s and shows
 * details in a table cell. Real SQLite audit file, the record as `submit` writes it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { auditRunSubmitted } from '../client/runs.ts';
import { loadSpec } from '../src/spec/load.ts';
import { kindRegistry, loadStageKinds } from '../src/stages/stage-kinds.ts';
import { statePaths } from '../src/state-paths.ts';
import { sha256Hex } from '../src/util/canonical-json.ts';
import { auditView, UiDatabases } from './data.ts';

const FIXTURE = fileURLToPath(new URL('../tests/fixtures/tiny-pipeline.yaml', import.meta.url));

test("the audit page gets run.submitted's spec text and plan as their sizes, the rest of the record as it is", async (t) => {
  const home = mkdtempSync(join(tmpdir(), 'tempered-ui-audit-view-'));
  t.after(() => rmSync(home, { recursive: true, force: true }));
  const loaded = await loadSpec(FIXTURE, kindRegistry(await loadStageKinds()));
  assert.ok(loaded.ok);
  const { plan, text } = loaded;
  const paths = statePaths(home);
  const options = { baseDir: home, actor: 'alice', specFile: FIXTURE, specText: text };
  await auditRunSubmitted(paths.auditDb, 'run-1', { plan, options }, 'exec-1');
  const dbs = new UiDatabases(paths);
  t.after(() => dbs.close());
  const [r] = (await auditView(dbs, { run: 'run-1' }, 500)).records;
  assert.equal(r!.action, 'run.submitted');
  assert.equal(r!.specHash, plan.specHash);
  assert.deepEqual(r!.details.spec, {
    sha256: sha256Hex(text),
    bytes: Buffer.byteLength(text),
    shown: 'tempered models show NAME@V --spec',
  });
  assert.match(String(r!.details.plan), /^[\d,]+ bytes of JSON, not shown here$/);
  assert.equal(r!.details.specFile, FIXTURE);
  assert.equal(r!.details.pipeline, plan.name);
  // Nothing of the file's text reaches the page.
  assert.equal(JSON.stringify(r).includes(JSON.stringify(text).slice(1, 40)), false);
});
