import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openDatabase, type Schema } from './database.ts';

const schema: Schema = {
  scope: 'probe',
  sqlite: [{ version: 1, name: 'events', sql: 'CREATE TABLE events (n INTEGER NOT NULL, by TEXT NOT NULL)' }],
  postgres: [],
};

const tick = (ms: number) => new Promise((r) => setTimeout(r, ms));

// Activities in one worker open their own connection to the same file (an audit append per
// stage). A transaction that awaits real I/O must not leave the thread to a second connection
// whose BEGIN IMMEDIATE would then block that thread on the file lock until SQLITE_BUSY.
test('two connections to one file in one process write in turn, never into the busy timeout', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tempered-sqlite-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'probe.db');
  const first = await openDatabase(file, schema);
  const slow = first.write('audit', async (q) => {
    await q.run('INSERT INTO events VALUES (?, ?)', [1, 'first']);
    await tick(200);
    await q.run('INSERT INTO events VALUES (?, ?)', [2, 'first']);
  });
  await tick(20); // the first transaction now holds the write lock across a timer
  const opened = openDatabase(file, schema); // its migration check writes, so it too must wait
  const second = await opened;
  const quick = second.write('audit', async (q) => q.run('INSERT INTO events VALUES (?, ?)', [3, 'second']));
  const autocommit = second.run('INSERT INTO events VALUES (?, ?)', [4, 'second']);
  await Promise.all([slow, quick, autocommit]);
  const rows = await first.all<{ n: number; by: string }>('SELECT n, by FROM events ORDER BY rowid');
  assert.deepEqual(
    rows.map((r) => r.n),
    [1, 2, 3, 4],
    'the second connection wrote after the first committed',
  );
  await first.close();
  await first.close(); // closing twice is harmless
  await second.close();
  // With every connection closed, the file reopens and keeps its rows.
  const again = await openDatabase(file, schema);
  assert.equal((await again.get<{ c: number }>('SELECT count(*) AS c FROM events'))?.c, 4);
  await again.close();
});

test('a commit is on disk before it returns (synchronous FULL in WAL mode): an OS crash cannot take it back', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tempered-sqlite-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const db = await openDatabase(join(dir, 'probe.db'), schema);
  const raw = (db as unknown as { raw: { pragma(s: string, o: { simple: true }): unknown } }).raw;
  assert.equal(raw.pragma('journal_mode', { simple: true }), 'wal');
  assert.equal(raw.pragma('synchronous', { simple: true }), 2, 'FULL');
  await db.close();
});
