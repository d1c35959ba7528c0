/**
 * `tempered store gc` keeps the spec files schedules keep in the store (named by their schedule.created/updated
 * records): `schedule update` replans them and `models show --spec` prints them for a schedule's versions, however old.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, utimesSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openAudit } from '../src/audit/log.ts';
import { ArtifactStore } from '../src/store/artifact-store.ts';
import type { ArtifactRef } from '../src/types.ts';
import { runCliInProcess } from './helpers/cli.ts';

test("store gc --collect keeps an old spec file a schedule's record names, and deletes an old orphan", async (t) => {
  const home = mkdtempSync(join(tmpdir(), 'tempered-gc-sched-'));
  t.after(() => rmSync(home, { recursive: true, force: true }));
  const store = new ArtifactStore(join(home, 'store'));
  const spec = await store.putBytes('name: nightly\nstages: {}\n', { mediaType: 'application/yaml' });
  const orphan = await store.putBytes('an orphan', { mediaType: 'application/octet-stream' });
  const path = (ref: ArtifactRef) => join(home, 'store', 'sha256', ref.sha256.slice(0, 2), ref.sha256);
  const old = new Date(Date.now() - 40 * 24 * 3600_000);
  for (const ref of [spec, orphan]) utimesSync(path(ref), old, old);
  const audit = await openAudit(join(home, 'audit.db'));
  await audit.append({
    action: 'schedule.created',
    subject: 'nightly',
    actor: 'ops',
    specHash: 'f'.repeat(64),
    details: { specUri: spec.uri },
  });
  await audit.close();
  const done = await runCliInProcess(['store', 'gc', '--collect', '--json'], {
    TEMPERED_HOME: home,
    TEMPERED_STORE: '',
    TEMPERED_DATABASE_URL: '',
  });
  assert.equal(done.code, 0, done.stderr);
  assert.deepEqual([existsSync(path(spec)), existsSync(path(orphan))], [true, false]);
});
