import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { openAudit, hashRecord, GENESIS_HASH, type AuditLog } from './log.ts';
import { parseAnchorText, signAnchor, verifySignedAnchor } from './anchor.ts';
import { canonicalJson, sha256Hex } from '../util/canonical-json.ts';
import { InputError } from '../errors.ts';

const sha = (c: string) => c.repeat(64);

function tmpPath(t: { after: (fn: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'tempered-audit-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return join(dir, 'audit.db');
}

/** Six records of a typical run. */
function fill(log: AuditLog): void {
  log.append({ action: 'run.submitted', subject: 'run-1', runId: 'run-1', specHash: sha('a'), details: { pipeline: 'spam.yaml' } });
  log.append({
    action: 'stage.completed',
    subject: 'run-1/ingest',
    runId: 'run-1',
    dataHashes: { train: sha('b') },
    details: { rows: 5574 },
  });
  log.append({ action: 'stage.completed', subject: 'run-1/train', runId: 'run-1', details: { loss: 0.12 } });
  log.append({ action: 'model.registered', subject: 'spam-clf@1', runId: 'run-1', model: 'spam-clf@1', modelHash: sha('c'), details: {} });
  log.append({ action: 'model.promoted', subject: 'spam-clf@1', model: 'spam-clf@1', details: { alias: 'production', from: null } });
  log.append({ action: 'model.registered', subject: 'spam-clf2@1', model: 'spam-clf2@1', details: {} });
}

test('appended records chain from the genesis hash and verify', (t) => {
  let tick = Date.parse('2026-03-01T00:00:00Z');
  const log = openAudit(tmpPath(t), { now: () => new Date((tick += 1000)) });
  const { record: r1 } = log.append({
    action: 'run.submitted',
    subject: 'run-1',
    actor: 'alice',
    specHash: sha('a'),
    details: { b: 2, a: 1 },
  });
  assert.equal(r1.seq, 1);
  assert.equal(r1.prevHash, GENESIS_HASH);
  assert.equal(r1.time, '2026-03-01T00:00:01.000Z');
  // The hash is over the canonical JSON of the record without `hash`, recomputed independently here.
  const expected = sha256Hex(
    canonicalJson({
      seq: 1,
      time: r1.time,
      actor: 'alice',
      action: 'run.submitted',
      subject: 'run-1',
      details: { a: 1, b: 2 },
      specHash: sha('a'),
      prevHash: GENESIS_HASH,
    }),
  );
  assert.equal(r1.hash, expected);
  const { record: r2 } = log.append({ action: 'stage.completed', subject: 'run-1/train', actor: 'alice' });
  assert.equal(r2.prevHash, r1.hash);
  assert.equal(hashRecord(r2), r2.hash);
  assert.deepEqual(log.verify(), { ok: true, checked: 2 });
  log.close();
});

test('actor defaults to TEMPERED_ACTOR', (t) => {
  const log = openAudit(tmpPath(t));
  const old = process.env.TEMPERED_ACTOR;
  process.env.TEMPERED_ACTOR = 'ci-bot';
  try {
    assert.equal(log.append({ action: 'serve.started', subject: 'spam-clf@1' }).record.actor, 'ci-bot');
  } finally {
    if (old === undefined) delete process.env.TEMPERED_ACTOR;
    else process.env.TEMPERED_ACTOR = old;
  }
  log.close();
});

test('query filters by run, model (name or name@version) and action', (t) => {
  const log = openAudit(tmpPath(t));
  fill(log);
  assert.deepEqual(
    log.query({ run: 'run-1' }).map((r) => r.seq),
    [1, 2, 3, 4],
  );
  assert.deepEqual(
    log.query({ model: 'spam-clf' }).map((r) => r.seq),
    [4, 5],
  );
  assert.deepEqual(
    log.query({ model: 'spam-clf@1', action: 'model.promoted' }).map((r) => r.seq),
    [5],
  );
  assert.deepEqual(
    log.query({ action: 'stage.completed', afterSeq: 2 }).map((r) => r.seq),
    [3],
  );
  assert.deepEqual(
    log.query({ limit: 2 }).map((r) => r.seq),
    [1, 2],
  );
  const reg = log.query({ model: 'spam-clf@1', action: 'model.registered' })[0]!;
  assert.equal(reg.modelHash, sha('c'));
  assert.deepEqual(log.query({ run: 'run-1' })[1]!.dataHashes, { train: sha('b') });
  log.close();
});

test('a dedupe key makes a retried append return the first record', (t) => {
  const log = openAudit(tmpPath(t));
  const a = log.append({ action: 'stage.completed', subject: 'run-1/train', dedupeKey: 'run-1/train/completed', details: { attempt: 1 } });
  const b = log.append({ action: 'stage.completed', subject: 'run-1/train', dedupeKey: 'run-1/train/completed', details: { attempt: 2 } });
  assert.equal(a.appended, true);
  assert.equal(b.appended, false);
  assert.deepEqual(b.record, a.record);
  assert.equal(log.query().length, 1);
  log.close();
});

test('bad entries are refused before anything is written', (t) => {
  const log = openAudit(tmpPath(t));
  assert.throws(
    () => log.append({ action: 'Run Submitted', subject: 'x' }),
    (e: unknown) => e instanceof InputError && e.where === 'audit.action',
  );
  assert.throws(() => log.append({ action: 'run.submitted', subject: '' }), /audit\.subject/);
  assert.throws(() => log.append({ action: 'run.submitted', subject: 'x', details: { n: NaN } }), /audit\.details\.n/);
  assert.throws(() => log.append({ action: 'run.submitted', subject: 'x', details: { when: new Map() } }), /audit\.details\.when/);
  assert.equal(log.query().length, 0);
  assert.deepEqual(log.verify(), { ok: true, checked: 0 });
  log.close();
});

/** Tampers with the file the way an attacker with SQLite access would, bypassing the API. */
function tamper(path: string, fn: (db: Database.Database) => void): void {
  const db = new Database(path);
  fn(db);
  db.close();
}

test('a one-byte edit of a stored record is detected as edited', (t) => {
  const path = tmpPath(t);
  fill(openAudit(path));
  tamper(path, (db) => {
    const { details_json } = db.prepare('SELECT details_json FROM audit_log WHERE seq = 2').get() as { details_json: string };
    assert.equal(details_json, '{"rows":5574}');
    db.prepare('UPDATE audit_log SET details_json = ? WHERE seq = 2').run(details_json.replace('5574', '5575'));
  });
  const log = openAudit(path);
  assert.deepEqual(log.verify(), {
    ok: false,
    checked: 1,
    firstBadSeq: 2,
    problem: 'edited',
    message: 'record 2 does not match its hash: its content or hash was changed',
  });
  log.close();
});

test('edits to other columns, whitespace in JSON and forged hashes are all caught', (t) => {
  const cases: [string, string][] = [
    ['actor', "UPDATE audit_log SET actor = 'mallory' WHERE seq = 3"],
    ['time', "UPDATE audit_log SET time = '2020-01-01T00:00:00.000Z' WHERE seq = 3"],
    ['whitespace', 'UPDATE audit_log SET details_json = \'{"loss": 0.12}\' WHERE seq = 3'],
    ['model hash', 'UPDATE audit_log SET model_hash = NULL WHERE seq = 4'],
    ['own hash', "UPDATE audit_log SET hash = '" + sha('f') + "' WHERE seq = 3"],
    ['prev hash', "UPDATE audit_log SET prev_hash = '" + sha('f') + "' WHERE seq = 3"],
  ];
  for (const [name, sql] of cases) {
    const path = tmpPath(t);
    fill(openAudit(path));
    tamper(path, (db) => db.prepare(sql).run());
    const r = openAudit(path).verify();
    assert.equal(r.ok, false, name);
    assert.equal(r.problem, 'edited', name);
    assert.equal(r.firstBadSeq, name === 'model hash' ? 4 : 3, name);
  }
});

test('a deleted record is detected as removed', (t) => {
  const path = tmpPath(t);
  fill(openAudit(path));
  tamper(path, (db) => db.prepare('DELETE FROM audit_log WHERE seq = 3').run());
  const r = openAudit(path).verify();
  assert.deepEqual([r.ok, r.problem, r.firstBadSeq, r.checked], [false, 'removed', 3, 2]);
});

test('a deleted first record and deleted newest records are detected', (t) => {
  const p1 = tmpPath(t);
  fill(openAudit(p1));
  tamper(p1, (db) => db.prepare('DELETE FROM audit_log WHERE seq = 1').run());
  assert.deepEqual([openAudit(p1).verify().problem, openAudit(p1).verify().firstBadSeq], ['removed', 1]);
  const p2 = tmpPath(t);
  fill(openAudit(p2));
  tamper(p2, (db) => db.prepare('DELETE FROM audit_log WHERE seq >= 5').run());
  const r = openAudit(p2).verify();
  assert.deepEqual([r.problem, r.firstBadSeq, r.checked], ['truncated', 5, 4]);
});

test('a swapped pair of records is detected as reordered', (t) => {
  const path = tmpPath(t);
  fill(openAudit(path));
  tamper(path, (db) => {
    db.transaction(() => {
      db.prepare('UPDATE audit_log SET seq = -1 WHERE seq = 3').run();
      db.prepare('UPDATE audit_log SET seq = 3 WHERE seq = 4').run();
      db.prepare('UPDATE audit_log SET seq = 4 WHERE seq = -1').run();
    })();
  });
  const r = openAudit(path).verify();
  assert.deepEqual([r.ok, r.problem, r.firstBadSeq], [false, 'reordered', 3]);
  assert.match(r.message!, /record 3 follows the record now stored at 4/);
});

test('appends stay chained after reopening', (t) => {
  const path = tmpPath(t);
  const a = openAudit(path);
  fill(a);
  a.close();
  const b = openAudit(path);
  const { record } = b.append({ action: 'model.rolled_back', subject: 'spam-clf@1', model: 'spam-clf@1' });
  assert.equal(record.seq, 7);
  assert.deepEqual(b.verify(), { ok: true, checked: 7 });
  b.close();
});

test('concurrent writers in separate processes keep one unbroken chain', { timeout: 60_000 }, async (t) => {
  const path = tmpPath(t);
  openAudit(path).close();
  const logTs = fileURLToPath(new URL('./log.ts', import.meta.url));
  const perWriter = 25;
  const writers = ['w1', 'w2', 'w3'];
  // Each writer reports ready, waits for "go" on stdin, then appends with short pauses, so the
  // three really contend for the write lock instead of running one after another.
  const code = `
    import { openAudit } from ${JSON.stringify(logTs)};
    const log = openAudit(process.env.AUDIT_PATH);
    process.stdout.write('ready\\n');
    await new Promise((r) => process.stdin.once('data', r));
    for (let i = 0; i < ${perWriter}; i++) {
      log.append({ action: 'stage.completed', subject: process.env.TEMPERED_ACTOR + '/' + i, details: { i } });
      await new Promise((r) => setTimeout(r, 3));
    }
    log.close();
    process.exit(0);`;
  const children = writers.map((actor) => {
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], {
      env: { ...process.env, AUDIT_PATH: path, TEMPERED_ACTOR: actor },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let err = '';
    child.stderr.on('data', (d) => (err += d));
    const ready = new Promise<void>((resolve) => child.stdout.once('data', () => resolve()));
    const done = new Promise<void>((resolve, reject) =>
      child.on('exit', (c) => (c === 0 ? resolve() : reject(new Error(`writer ${actor} exited ${c}: ${err}`)))),
    );
    return { child, ready, done };
  });
  await Promise.all(children.map((c) => c.ready));
  for (const c of children) c.child.stdin.write('go\n');
  await Promise.all(children.map((c) => c.done));

  const log = openAudit(path);
  assert.deepEqual(log.verify(), { ok: true, checked: perWriter * writers.length });
  const records = log.query();
  for (const w of writers) assert.equal(records.filter((r) => r.actor === w).length, perWriter);
  // Each writer's own records stay in the order it wrote them.
  for (const w of writers)
    assert.deepEqual(
      records.filter((r) => r.actor === w).map((r) => r.details.i),
      [...Array(perWriter).keys()],
    );
  const switches = records.filter((r, i) => i > 0 && r.actor !== records[i - 1]!.actor).length;
  // Without any interleaving there would be writers.length − 1 switches.
  assert.ok(switches >= writers.length, `writers did not interleave (${switches} switches)`);
  log.close();
});

test('a consistently rewritten chain passes plain verify but fails against an anchor', (t) => {
  const path = tmpPath(t);
  const log = openAudit(path);
  fill(log);
  const anchor = log.head()!;
  assert.equal(anchor.seq, 6);
  log.close();
  // Rewrite record 2 and re-hash everything after it, as someone with write access could.
  tamper(path, (db) => {
    const rows = db.prepare('SELECT seq FROM audit_log ORDER BY seq').all() as { seq: number }[];
    const reopened = new AuditLogReader(db);
    let prev = GENESIS_HASH;
    for (const { seq } of rows) {
      const rec = reopened.record(seq);
      if (seq === 2) rec.details = { rows: 1 };
      rec.prevHash = prev;
      const hash = hashRecord(rec);
      db.prepare('UPDATE audit_log SET details_json = ?, prev_hash = ?, hash = ? WHERE seq = ?').run(
        canonicalJson(rec.details),
        prev,
        hash,
        seq,
      );
      prev = hash;
    }
    db.prepare('UPDATE audit_head SET hash = ? WHERE id = 1').run(prev);
  });
  const after = openAudit(path);
  assert.deepEqual(after.verify(), { ok: true, checked: 6 });
  const r = after.verify({ anchor });
  assert.deepEqual([r.ok, r.problem, r.firstBadSeq], [false, 'rewritten', 6]);
  assert.equal(after.verify({ anchor: { seq: 99, hash: anchor.hash } }).problem, 'truncated');
  after.close();
});

/** Reads records straight from a raw connection, for the rewrite attack above. */
class AuditLogReader {
  constructor(private readonly db: Database.Database) {}
  record(seq: number) {
    const row = this.db.prepare('SELECT * FROM audit_log WHERE seq = ?').get(seq) as Record<string, string | number | null>;
    const rec: Record<string, unknown> = {
      seq: row.seq,
      time: row.time,
      actor: row.actor,
      action: row.action,
      subject: row.subject,
      details: JSON.parse(row.details_json as string),
      prevHash: row.prev_hash,
    };
    if (row.run_id !== null) rec.runId = row.run_id;
    if (row.model !== null) rec.model = row.model;
    if (row.spec_hash !== null) rec.specHash = row.spec_hash;
    if (row.data_hashes_json !== null) rec.dataHashes = JSON.parse(row.data_hashes_json as string);
    if (row.model_hash !== null) rec.modelHash = row.model_hash;
    return rec as Parameters<typeof hashRecord>[0] & { details: Record<string, unknown> };
  }
}

test('lone UTF-16 surrogates in string fields (a label from the data) do not break verification', (t) => {
  const path = tmpPath(t);
  const log = openAudit(path);
  const lone = 'label-\ud800-x';
  const { record } = log.append({
    action: 'model.registered',
    subject: `m@1 ${lone}`,
    model: lone,
    runId: lone,
    actor: `\udc00${lone}`,
    details: { label: lone },
    dataHashes: { [lone]: sha('a') },
    dedupeKey: `k/${lone}`,
  });
  assert.equal(record.subject, 'm@1 label-\ufffd-x');
  assert.deepEqual(log.verify(), { ok: true, checked: 1 });
  // The same key finds the same record again.
  assert.equal(log.append({ action: 'model.registered', subject: 'x', dedupeKey: `k/${lone}` }).appended, false);
  log.close();
  const again = openAudit(path);
  assert.deepEqual(again.verify(), { ok: true, checked: 1 });
  again.close();
});

test('a wiped log fails verification where records are expected; a cut tail with a rewritten head fails against an anchor', (t) => {
  const path = tmpPath(t);
  const log = openAudit(path);
  fill(log);
  const anchor = log.head()!;
  log.close();
  // Cut the last two records and make the head row agree, as someone with write access could.
  tamper(path, (db) => {
    db.prepare('DELETE FROM audit_log WHERE seq > 4').run();
    const last = db.prepare('SELECT seq, hash FROM audit_log WHERE seq = 4').get() as { seq: number; hash: string };
    db.prepare('UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1').run(last.seq, last.hash);
  });
  const cut = openAudit(path);
  assert.deepEqual(cut.verify(), { ok: true, checked: 4 }, 'the chain alone cannot see a consistent cut');
  const r = cut.verify({ anchor });
  assert.deepEqual([r.ok, r.problem], [false, 'truncated']);
  cut.close();
  tamper(path, (db) => {
    db.prepare('DELETE FROM audit_log').run();
    db.prepare('DELETE FROM audit_head').run();
  });
  const wiped = openAudit(path);
  assert.equal(wiped.verify().ok, true, 'an empty log is fine where nothing is expected (a fresh install)');
  assert.equal(wiped.verify({ expectRecords: true }).problem, 'empty');
  assert.equal(wiped.verify({ anchor }).problem, 'empty');
  wiped.close();
});

test('signed anchors verify with the key and refuse an altered anchor or another key', () => {
  const key = 'k'.repeat(32);
  const signed = signAnchor({ seq: 6, hash: sha('a') }, key, new Date('2026-01-01T00:00:00Z'));
  assert.deepEqual(verifySignedAnchor(JSON.stringify(signed), key, 'f'), { seq: 6, hash: sha('a') });
  assert.throws(() => verifySignedAnchor(JSON.stringify({ ...signed, seq: 5 }), key, 'f'), /signature does not match/);
  assert.throws(() => verifySignedAnchor(JSON.stringify(signed), 'x'.repeat(32), 'f'), /signature does not match/);
  assert.throws(() => verifySignedAnchor(JSON.stringify({ ...signed, mac: 'zz' }), key, 'f'), InputError);
  assert.throws(() => verifySignedAnchor(JSON.stringify(signed), undefined, 'f'), /TEMPERED_AUDIT_KEY/);
  assert.deepEqual(parseAnchorText(`6:${sha('b')}`, undefined, 'a'), { seq: 6, hash: sha('b') });
  assert.deepEqual(parseAnchorText(sha('b'), undefined, 'a'), { hash: sha('b') });
  assert.throws(() => parseAnchorText('nope', undefined, 'a'), InputError);
});
