/**
 * `tempered store gc` and the training checkpoints of its TEMPERED_HOME (src/store/local-checkpoints.ts):
 * the report's lines per folder, the dry run, --collect and its audit record. The rules themselves are
 * tested in src/store/local-checkpoints.test.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openAudit } from '../src/audit/log.ts';
import type { GarbageReport } from '../src/store/garbage.ts';
import { runCliInProcess } from './helpers/cli.ts';

const DAY = 24 * 3600_000;

test('tempered store gc reports the checkpoint folders it would reclaim, by key, and --collect deletes them and records it', async (t) => {
  const home = mkdtempSync(join(tmpdir(), 'tempered-gc-ck-'));
  t.after(() => rmSync(home, { recursive: true, force: true }));
  const env = { TEMPERED_HOME: home, TEMPERED_STORE: '', TEMPERED_DATABASE_URL: '', TEMPERED_ACTOR: 'ops' };
  const abandoned = join(home, 'checkpoints', 'a'.repeat(64));
  const recent = join(home, 'checkpoints', 'b'.repeat(64));
  for (const dir of [abandoned, recent]) {
    mkdirSync(join(dir, 'step-5'), { recursive: true });
    writeFileSync(join(dir, 'step-5', 'weights.safetensors'), Buffer.alloc(3 * 1024 * 1024));
    writeFileSync(join(dir, 'step-5', 'manifest.json'), '{}');
  }
  const old = new Date(Date.now() - 40 * DAY);
  for (const p of [
    join(abandoned, 'step-5', 'weights.safetensors'),
    join(abandoned, 'step-5', 'manifest.json'),
    join(abandoned, 'step-5'),
    abandoned,
  ])
    utimesSync(p, old, old);

  const dry = await runCliInProcess(['store', 'gc'], env);
  assert.equal(dry.code, 0, dry.stderr);
  assert.match(dry.stdout, /local checkpoints \(.*checkpoints\): 1 folders kept \(3\.0 MiB\), garbage 1 \(3\.0 MiB\); would delete them/);
  assert.match(
    dry.stdout,
    new RegExp(`\\n    ${'a'.repeat(64)}: 3\\.0 MiB, nothing written since the horizon \\(last written ${old.toISOString().slice(0, 10)}`),
  );
  assert.match(dry.stdout, /dry run: nothing was deleted/);
  assert.ok(existsSync(abandoned));

  const done = await runCliInProcess(['store', 'gc', '--collect', '--json'], env);
  assert.equal(done.code, 0, done.stderr);
  const report = (JSON.parse(done.stdout) as GarbageReport).localCheckpoints!;
  assert.deepEqual([report.deleted, report.deletedBytes], [1, 3 * 1024 * 1024 + 2]);
  assert.deepEqual(readdirSync(join(home, 'checkpoints')), ['b'.repeat(64)]);
  const audit = await openAudit(join(home, 'audit.db'));
  const entry = (await audit.query({})).find((e) => e.action === 'store.collected');
  await audit.close();
  assert.deepEqual(
    [
      (entry?.details as { localCheckpoints?: number }).localCheckpoints,
      (entry?.details as { localCheckpointBytes?: number }).localCheckpointBytes,
    ],
    [1, 3 * 1024 * 1024 + 2],
  );
});
