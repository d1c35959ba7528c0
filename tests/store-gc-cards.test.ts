/**
 * `tempered store gc` keeps the model card a run's register stage stored (its `outputs.card`, which `status` of the run
 * lists): the registry renders cards again and records no card, so the card of a registered version went as an orphan.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, utimesSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { modelCard } from '../src/registry/card.ts';
import { openRegistry } from '../src/registry/registry.ts';
import { testVersion } from '../src/registry/versions.testing.ts';
import { statePaths } from '../src/state-paths.ts';
import { ArtifactStore } from '../src/store/artifact-store.ts';
import { MEDIA } from '../src/types.ts';
import type { ArtifactRef } from '../src/types.ts';
import { runCliInProcess } from './helpers/cli.ts';

test("store gc --collect keeps an old card a registered version's register stage stored, and deletes an old orphan", async (t) => {
  const home = mkdtempSync(join(tmpdir(), 'tempered-gc-card-'));
  t.after(() => rmSync(home, { recursive: true, force: true }));
  const store = new ArtifactStore(join(home, 'store'));
  const reg = await openRegistry(statePaths(home).registryDb);
  const { version } = await reg.registerVersion(
    testVersion('clf', 'a', { metrics: { f1_macro: 0.9 }, params: { lr: 0.01 }, description: 'a classifier' }),
  );
  await reg.close();
  // As the register stage stores it (src/stages/register.ts).
  const card = await store.putBytes(modelCard(version), { mediaType: MEDIA.markdown });
  const orphan = await store.putBytes('an orphan', { mediaType: 'application/octet-stream' });
  const path = (ref: ArtifactRef) => join(home, 'store', 'sha256', ref.sha256.slice(0, 2), ref.sha256);
  const old = new Date(Date.now() - 40 * 24 * 3600_000);
  for (const ref of [card, orphan]) utimesSync(path(ref), old, old);
  const done = await runCliInProcess(['store', 'gc', '--collect', '--json'], {
    TEMPERED_HOME: home,
    TEMPERED_STORE: '',
    TEMPERED_DATABASE_URL: '',
  });
  assert.equal(done.code, 0, done.stderr);
  assert.deepEqual([existsSync(path(card)), existsSync(path(orphan))], [true, false]);
});
