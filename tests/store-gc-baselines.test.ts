/**
 * `tempered store gc` and the evaluate stage's baseline memos in its TEMPERED_HOME (src/store/baseline-memos.ts):
 * nothing deleted them, so a year of sweeps kept every one. The dry run counts the memos unused since the horizon,
 * --collect deletes them (and a killed writer's temp file) and records it; a memo used since stays, and so does a file
 * that is no memo; a worker collects its own. Real files, the real command.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openAudit } from '../src/audit/log.ts';
import { startBaselineMemoPruner } from '../src/store/baseline-memos.ts';
import { DEFAULT_HORIZON_DAYS, type GarbageReport } from '../src/store/garbage.ts';
import { runCliInProcess } from './helpers/cli.ts';

const DAY = 24 * 3600_000;

test('tempered store gc counts the baseline memos unused since the horizon, and --collect deletes them and records it', async (t) => {
  const home = mkdtempSync(join(tmpdir(), 'tempered-gc-memos-'));
  t.after(() => rmSync(home, { recursive: true, force: true }));
  const env = { TEMPERED_HOME: home, TEMPERED_STORE: '', TEMPERED_DATABASE_URL: '', TEMPERED_ACTOR: 'ops' };
  const dir = join(home, 'baselines');
  mkdirSync(dir);
  const [unused, used, tmp, other] = [
    `${'a'.repeat(64)}.json`,
    `${'b'.repeat(64)}.json`,
    `.${'c'.repeat(64)}.json.4242.0badf00d.tmp`,
    'notes.txt',
  ];
  for (const name of [unused, used, tmp, other]) writeFileSync(join(dir, name), '{"accuracy":0.5}');
  const old = new Date(Date.now() - 40 * DAY);
  for (const name of [unused, tmp, other]) utimesSync(join(dir, name), old, old);
  // Written long ago, read by an evaluation 10 days ago (evaluate touches a memo on a hit).
  utimesSync(join(dir, used), new Date(Date.now() - 10 * DAY), new Date(Date.now() - 10 * DAY));

  const dry = await runCliInProcess(['store', 'gc'], env);
  assert.equal(dry.code, 0, dry.stderr);
  assert.match(dry.stdout, /baseline memos \(.*baselines\) unused since the horizon: 2 \(32 B\); would delete them/);
  assert.match(dry.stdout, /dry run: nothing was deleted/);
  assert.equal(readdirSync(dir).length, 4);

  const done = await runCliInProcess(['store', 'gc', '--collect', '--json'], env);
  assert.equal(done.code, 0, done.stderr);
  const report = (JSON.parse(done.stdout) as GarbageReport).baselines!;
  assert.deepEqual([report.old, report.deleted, report.deletedBytes], [2, 2, 32]);
  assert.deepEqual(readdirSync(dir).sort(), [used, other].sort());
  const audit = await openAudit(join(home, 'audit.db'));
  const entry = (await audit.query({})).find((e) => e.action === 'store.collected');
  await audit.close();
  assert.equal((entry?.details as { baselineMemos?: number }).baselineMemos, 2);

  // A shorter horizon reaches the memo used 10 days ago.
  const later = await runCliInProcess(['store', 'gc', '--collect', '--older-than', '7', '--json'], env);
  assert.equal(later.code, 0, later.stderr);
  assert.deepEqual(readdirSync(dir), [other]);
});

test('a worker collects its own baseline memos at start (a store gc on another host never sees them)', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tempered-worker-memos-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const [unused, used] = [`${'a'.repeat(64)}.json`, `${'b'.repeat(64)}.json`];
  for (const name of [unused, used]) writeFileSync(join(dir, name), '{}');
  const old = new Date(Date.now() - 40 * DAY);
  utimesSync(join(dir, unused), old, old);
  const lines: string[] = [];
  const pruner = startBaselineMemoPruner(dir, DEFAULT_HORIZON_DAYS * DAY, (m) => lines.push(m));
  pruner.stop();
  assert.deepEqual(readdirSync(dir), [used]);
  assert.match(lines.join('\n'), /^deleted 1 baseline memos \(2 bytes\) unused for 30 days from /);
});
