import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { AuditLog, openAudit, hashRecord, GENESIS_HASH, type AuditEntry, type AuditQuery } from './log.ts';
import type { Database, Queryable } from '../db/database.ts';
import { BACKENDS, postgresUnavailable, useDatabases } from '../db/postgres.testing.ts';
import { parseAnchorText, signAnchor, verifySignedAnchor } from './anchor.ts';
import { canonicalJson, sha256Hex } from '../util/canonical-json.ts';
import { InputError } from '../errors.ts';

const sha = (c: string) => c.repeat(64);

/** Six records of a typical run. */
async function fill(log: AuditLog): Promise<void> {
  await log.append({ action: 'run.submitted', subject: 'run-1', runId: 'run-1', specHash: sha('a'), details: { pipeline: 'spam.yaml' } });
  await log.append({
    action: 'stage.completed',
    subject: 'run-1/ingest',
    runId: 'run-1',
    dataHashes: { train: sha('b') },
    details: { rows: 5574 },
  });
  await log.append({ action: 'stage.completed', subject: 'run-1/train', runId: 'run-1', details: { loss: 0.12 } });
  await log.append({
    action: 'model.registered',
    subject: 'spam-clf@1',
    runId: 'run-1',
    model: 'spam-clf@1',
    modelHash: sha('c'),
    details: {},
  });
  await log.append({ action: 'model.promoted', subject: 'spam-clf@1', model: 'spam-clf@1', details: { alias: 'production', from: null } });
  await log.append({ action: 'model.registered', subject: 'spam-clf2@1', model: 'spam-clf2@1', details: {} });
}

/** A log at `path` holding fill()'s six records. */
async function filled(path: string): Promise<void> {
  const log = await openAudit(path);
  await fill(log);
  await log.close();
}

async function verifyAt(path: string, opts?: Parameters<AuditLog['verify']>[0]) {
  const log = await openAudit(path);
  try {
    return await log.verify(opts);
  } finally {
    await log.close();
  }
}

/**
 * How the database runs the query `log.query(q)` sends, one line a step: SQLite's EXPLAIN QUERY PLAN, or
 * PostgreSQL's plan, where an index scan that reads all of the index, or a range of the log's seqs rather than
 * single seqs, says `whole index`.
 */
async function queryPlan(log: AuditLog, q: AuditQuery): Promise<string[]> {
  const db = log.db;
  let sent: { sql: string; params: readonly unknown[] } | undefined;
  const all = db.all;
  db.all = <T>(sql: string, params: readonly unknown[] = []) => (
    (sent = { sql, params }),
    all.call<Database, [string, readonly unknown[]], Promise<T[]>>(db, sql, params)
  );
  try {
    await log.query(q);
  } finally {
    db.all = all;
  }
  const { sql, params } = sent!;
  if (db.dialect === 'sqlite') return (await db.all<{ detail: string }>(`EXPLAIN QUERY PLAN ${sql}`, params)).map((r) => r.detail);
  const [row] = await db.all<{ 'QUERY PLAN': [{ Plan: PgPlan }] }>(`EXPLAIN (FORMAT JSON) ${sql}`, params);
  const lines: string[] = [];
  const walk = (n: PgPlan): void => {
    const cond = n['Index Cond'] ?? '';
    const whole = /Index( Only)? Scan$/.test(n['Node Type']) && (!cond || (n['Index Name'] === 'audit_log_pkey' && !/\bseq = /.test(cond)));
    const scan = whole ? ' (whole index)' : '';
    lines.push(
      `${n['Node Type']}${n['Relation Name'] ? ` on ${n['Relation Name']}` : ''}${n['Index Name'] ? ` using ${n['Index Name']}` : ''}${n['Index Cond'] ? ` (${n['Index Cond']})` : ''}${scan}`,
    );
    for (const c of n.Plans ?? []) walk(c);
  };
  walk(row!['QUERY PLAN'][0].Plan);
  return lines;
}

interface PgPlan {
  'Node Type': string;
  'Relation Name'?: string;
  'Index Name'?: string;
  'Index Cond'?: string;
  Plans?: PgPlan[];
}

/** Tampers with the tables the way an attacker with database access would, bypassing the API. */
async function tamper(path: string, fn: (q: Queryable) => Promise<unknown>): Promise<void> {
  const log = await openAudit(path);
  try {
    await log.db.write('audit', async (q) => {
      await fn(q);
    });
  } finally {
    await log.close();
  }
}

for (const backend of BACKENDS)
  describe(backend, { skip: backend === 'postgres' ? postgresUnavailable() : undefined }, () => {
    const db = useDatabases(backend);
    const tmpPath = (t: { after: (fn: () => void) => void }) => db.fresh(t, 'audit.db');

    test('no URL credentials go into a record, whoever appends it; the record still verifies', async (t) => {
      const log = await openAudit(await tmpPath(t));
      const url = 'https://u:PWSECRET@h.example/d.jsonl?X-Amz-Signature=SIGSECRET&v=1';
      const { record } = await log.append({
        action: 'run.failed',
        subject: 'run-1',
        runId: 'run-1',
        dataHashes: { [`source:${url}`]: sha('a') },
        details: { error: `GET ${url} answered 403`, stages: [url] },
      });
      const shown = 'https://REDACTED@h.example/d.jsonl?X-Amz-Signature=REDACTED&v=1';
      for (const r of [record, ...(await log.query({ run: 'run-1' }))]) {
        assert.deepEqual(r.details, { error: `GET ${shown} answered 403`, stages: [shown] });
        assert.deepEqual(r.dataHashes, { [`source:${shown}`]: sha('a') });
      }
      assert.equal((await log.verify()).ok, true);
      await log.close();
    });

    test('appended records chain from the genesis hash and verify', async (t) => {
      let tick = Date.parse('2026-03-01T00:00:00Z');
      const log = await openAudit(await tmpPath(t), { now: () => new Date((tick += 1000)) });
      const { record: r1 } = await log.append({
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
      const { record: r2 } = await log.append({ action: 'stage.completed', subject: 'run-1/train', actor: 'alice' });
      assert.equal(r2.prevHash, r1.hash);
      assert.equal(hashRecord(r2), r2.hash);
      assert.deepEqual(await log.verify(), { ok: true, checked: 2 });
      await log.close();
    });

    test('actor defaults to TEMPERED_ACTOR', async (t) => {
      const log = await openAudit(await tmpPath(t));
      const old = process.env.TEMPERED_ACTOR;
      process.env.TEMPERED_ACTOR = 'ci-bot';
      try {
        assert.equal((await log.append({ action: 'serve.started', subject: 'spam-clf@1' })).record.actor, 'ci-bot');
      } finally {
        if (old === undefined) delete process.env.TEMPERED_ACTOR;
        else process.env.TEMPERED_ACTOR = old;
      }
      await log.close();
    });

    test('query filters by run, model (name or name@version) and action', async (t) => {
      const log = await openAudit(await tmpPath(t));
      await fill(log);
      assert.deepEqual(
        (await log.query({ run: 'run-1' })).map((r) => r.seq),
        [1, 2, 3, 4],
      );
      assert.deepEqual(
        (await log.query({ model: 'spam-clf' })).map((r) => r.seq),
        [4, 5],
      );
      assert.deepEqual(
        (await log.query({ model: 'spam-clf@1', action: 'model.promoted' })).map((r) => r.seq),
        [5],
      );
      assert.deepEqual(
        (await log.query({ action: 'stage.completed', afterSeq: 2 })).map((r) => r.seq),
        [3],
      );
      assert.deepEqual(
        (await log.query({ limit: 2 })).map((r) => r.seq),
        [1, 2],
      );
      const reg = (await log.query({ model: 'spam-clf@1', action: 'model.registered' }))[0]!;
      assert.equal(reg.modelHash, sha('c'));
      assert.deepEqual((await log.query({ run: 'run-1' }))[1]!.dataHashes, { train: sha('b') });
      await log.close();
    });

    test('a run filter finds the run through audit_by_run and audit_by_subject, never by reading the whole log', async (t) => {
      const log = await openAudit(await tmpPath(t));
      t.after(() => log.close());
      await fill(log);
      if (backend === 'postgres') {
        // PostgreSQL plans from statistics, and rightly reads a table this small whole: give it a log of 20,000
        // records of other runs (not a chain: nothing here verifies it) and its statistics. SQLite has none unless
        // ANALYZE runs, which tempered never does, so its plan does not depend on the rows.
        await log.db.run(
          `INSERT INTO audit_log (seq, time, actor, action, subject, details_json, run_id, prev_hash, hash)
           SELECT g, '2026-01-01T00:00:00.000Z', 'worker', 'stage.completed', 'run-' || (g / 40) || '/s' || (g % 40), '{}',
                  'run-' || (g / 40), 'p' || g, 'h' || g FROM generate_series(100, 20099) AS g`,
        );
        await log.db.run('ANALYZE audit_log');
      }
      // The Audit page (newest first, a page of 500), `tempered audit --run` (pages of 1000 after a seq),
      // and either with the page's other filters.
      for (const q of [
        { run: 'run-1' },
        { run: 'run-1', newestFirst: true, limit: 500 },
        { run: 'run-1', afterSeq: 2, limit: 1000 },
        { run: 'run-1', action: 'stage.completed', newestFirst: true, limit: 500 },
        { run: 'run-1', actor: 'alice', model: 'spam-clf', newestFirst: true, limit: 500 },
      ] satisfies AuditQuery[]) {
        const plan = await queryPlan(log, q);
        const what = `${JSON.stringify(q)}:\n${plan.join('\n')}`;
        // With a model too, a rare model's own index is as good a start (PostgreSQL may take it on its statistics).
        if (q.model === undefined)
          for (const index of ['audit_by_run', 'audit_by_subject'])
            assert.ok(
              plan.some((l) => l.includes(index)),
              `${index} unused for ${what}`,
            );
        assert.ok(!plan.some((l) => /^SCAN audit_log\b|Seq Scan on audit_log|whole index/.test(l)), `a full scan for ${what}`);
      }
    });

    test('a run filter returns the records whose run id or subject is the run, once each, in order, with the other filters and limits', async (t) => {
      const log = await openAudit(await tmpPath(t));
      t.after(() => log.close());
      const entries: AuditEntry[] = [
        { action: 'run.submitted', subject: 'run-a', runId: 'run-a', actor: 'alice' },
        { action: 'stage.completed', subject: 'run-a/train', runId: 'run-a', actor: 'worker' },
        { action: 'stage.completed', subject: 'run-b/train', runId: 'run-b', actor: 'worker' },
        { action: 'run.cancel_requested', subject: 'run-a', actor: 'bob' },
        { action: 'model.registered', subject: 'clf@1', runId: 'run-a', model: 'clf@1', actor: 'worker' },
        { action: 'run.note', subject: 'run-a', runId: 'run-c', actor: 'bob' },
        { action: 'stage.failed', subject: 'run-a/eval', actor: 'worker' },
        { action: 'run.completed', subject: 'run-a', runId: 'run-a', actor: 'worker' },
      ];
      for (const e of entries) await log.append(e);
      const all = await log.query({});
      // What a run filter has always meant, over the whole log in JavaScript.
      const expected = (q: AuditQuery) => {
        let rs = all.filter(
          (r) =>
            (r.runId === q.run || r.subject === q.run) &&
            (q.action === undefined || r.action === q.action) &&
            (q.actor === undefined || r.actor === q.actor) &&
            (q.afterSeq === undefined || r.seq > q.afterSeq),
        );
        if (q.newestFirst) rs = rs.reverse();
        return q.limit === undefined ? rs : rs.slice(0, q.limit);
      };
      assert.deepEqual(
        (await log.query({ run: 'run-a' })).map((r) => r.seq),
        [1, 2, 4, 5, 6, 8],
        'run id, subject, or both; a subject under the run (run-a/eval) is not the run',
      );
      assert.deepEqual(
        (await log.query({ run: 'run-c' })).map((r) => r.seq),
        [6],
      );
      for (const run of ['run-a', 'run-b', 'run-c', 'run-z'])
        for (const q of [
          { run },
          { run, newestFirst: true },
          { run, limit: 2 },
          { run, newestFirst: true, limit: 2 },
          { run, afterSeq: 2, limit: 3 },
          { run, afterSeq: 4, newestFirst: true },
          { run, action: 'stage.completed' },
          { run, actor: 'bob', newestFirst: true, limit: 1 },
          { run, limit: 0 },
        ] satisfies AuditQuery[])
          assert.deepEqual(await log.query(q), expected(q), JSON.stringify(q));
      assert.deepEqual(
        (await log.query({ run: 'run-a', model: 'clf' })).map((r) => r.seq),
        [5],
      );
    });

    test('detailsContain leaves out, in the database, the records whose stored details lack the text', async (t) => {
      const log = await openAudit(await tmpPath(t));
      // A run id with LIKE's wildcards and a quote: a plain substring, as the canonical JSON writes it.
      const run = `r_1%'"`;
      for (const [subject, details] of [
        ['a', { resumeOf: run, plan: { x: 1 } }],
        ['b', { resumeOf: 'rX1abc' }],
        ['c', { plan: { resumeOf: run } }],
        ['d', { resumeOf: run.toUpperCase() }],
      ] as const)
        await log.append({ action: 'run.submitted', subject, runId: subject, details });
      const found = await log.query({ action: 'run.submitted', detailsContain: `"resumeOf":${JSON.stringify(run)}` });
      assert.deepEqual(
        found.map((r) => r.subject),
        ['a', 'c'],
      );
      await log.close();
    });

    test('a dedupe key makes a retried append return the first record', async (t) => {
      const log = await openAudit(await tmpPath(t));
      const a = await log.append({
        action: 'stage.completed',
        subject: 'run-1/train',
        dedupeKey: 'run-1/train/completed',
        details: { attempt: 1 },
      });
      const b = await log.append({
        action: 'stage.completed',
        subject: 'run-1/train',
        dedupeKey: 'run-1/train/completed',
        details: { attempt: 2 },
      });
      assert.equal(a.appended, true);
      assert.equal(b.appended, false);
      assert.deepEqual(b.record, a.record);
      assert.equal((await log.query()).length, 1);
      await log.close();
    });

    test('bad entries are refused before anything is written', async (t) => {
      const log = await openAudit(await tmpPath(t));
      await assert.rejects(
        () => log.append({ action: 'Run Submitted', subject: 'x' }),
        (e: unknown) => e instanceof InputError && e.where === 'audit.action',
      );
      await assert.rejects(() => log.append({ action: 'run.submitted', subject: '' }), /audit\.subject/);
      await assert.rejects(() => log.append({ action: 'run.submitted', subject: 'x', details: { n: NaN } }), /audit\.details\.n/);
      await assert.rejects(
        () => log.append({ action: 'run.submitted', subject: 'x', details: { when: new Map() } }),
        /audit\.details\.when/,
      );
      assert.equal((await log.query()).length, 0);
      assert.deepEqual(await log.verify(), { ok: true, checked: 0 });
      await log.close();
    });

    test('a one-byte edit of a stored record is detected as edited', async (t) => {
      const path = await tmpPath(t);
      await filled(path);
      await tamper(path, async (q) => {
        const { details_json } = (await q.get<{ details_json: string }>('SELECT details_json FROM audit_log WHERE seq = 2'))!;
        assert.equal(details_json, '{"rows":5574}');
        await q.run('UPDATE audit_log SET details_json = ? WHERE seq = 2', [details_json.replace('5574', '5575')]);
      });
      const log = await openAudit(path);
      assert.deepEqual(await log.verify(), {
        ok: false,
        checked: 1,
        firstBadSeq: 2,
        problem: 'edited',
        message: 'record 2 does not match its hash: its content or hash was changed',
      });
      await log.close();
    });

    test('edits to other columns, whitespace in JSON and forged hashes are all caught', async (t) => {
      const cases: [string, string][] = [
        ['actor', "UPDATE audit_log SET actor = 'mallory' WHERE seq = 3"],
        ['time', "UPDATE audit_log SET time = '2020-01-01T00:00:00.000Z' WHERE seq = 3"],
        ['whitespace', 'UPDATE audit_log SET details_json = \'{"loss": 0.12}\' WHERE seq = 3'],
        ['model hash', 'UPDATE audit_log SET model_hash = NULL WHERE seq = 4'],
        ['own hash', "UPDATE audit_log SET hash = '" + sha('f') + "' WHERE seq = 3"],
        ['prev hash', "UPDATE audit_log SET prev_hash = '" + sha('f') + "' WHERE seq = 3"],
      ];
      for (const [name, sql] of cases) {
        const path = await tmpPath(t);
        await filled(path);
        await tamper(path, (q) => q.run(sql));
        const r = await verifyAt(path);
        assert.equal(r.ok, false, name);
        assert.equal(r.problem, 'edited', name);
        assert.equal(r.firstBadSeq, name === 'model hash' ? 4 : 3, name);
      }
    });

    test('a deleted record is detected as removed', async (t) => {
      const path = await tmpPath(t);
      await filled(path);
      await tamper(path, (q) => q.run('DELETE FROM audit_log WHERE seq = 3'));
      const r = await verifyAt(path);
      assert.deepEqual([r.ok, r.problem, r.firstBadSeq, r.checked], [false, 'removed', 3, 2]);
    });

    test('a deleted first record and deleted newest records are detected', async (t) => {
      const p1 = await tmpPath(t);
      await filled(p1);
      await tamper(p1, (q) => q.run('DELETE FROM audit_log WHERE seq = 1'));
      const r1 = await verifyAt(p1);
      assert.deepEqual([r1.problem, r1.firstBadSeq], ['removed', 1]);
      const p2 = await tmpPath(t);
      await filled(p2);
      await tamper(p2, (q) => q.run('DELETE FROM audit_log WHERE seq >= 5'));
      const r = await verifyAt(p2);
      assert.deepEqual([r.problem, r.firstBadSeq, r.checked], ['truncated', 5, 4]);
    });

    test('a swapped pair of records is detected as reordered', async (t) => {
      const path = await tmpPath(t);
      await filled(path);
      await tamper(path, async (q) => {
        await q.run('UPDATE audit_log SET seq = -1 WHERE seq = 3');
        await q.run('UPDATE audit_log SET seq = 3 WHERE seq = 4');
        await q.run('UPDATE audit_log SET seq = 4 WHERE seq = -1');
      });
      const r = await verifyAt(path);
      assert.deepEqual([r.ok, r.problem, r.firstBadSeq], [false, 'reordered', 3]);
      assert.match(r.message!, /record 3 follows the record now stored at 4/);
    });

    test('appends stay chained after reopening', async (t) => {
      const path = await tmpPath(t);
      const a = await openAudit(path);
      await fill(a);
      await a.close();
      const b = await openAudit(path);
      const { record } = await b.append({ action: 'model.rolled_back', subject: 'spam-clf@1', model: 'spam-clf@1' });
      assert.equal(record.seq, 7);
      assert.deepEqual(await b.verify(), { ok: true, checked: 7 });
      await b.close();
    });

    test('a warm append with a dedupe key is one statement on PostgreSQL; without one, a locked transaction', async (t) => {
      const log = await openAudit(await tmpPath(t));
      t.after(() => log.close());
      const calls: string[] = [];
      const counted: Database = {
        ...log.db,
        dialect: log.db.dialect,
        where: log.db.where,
        all: (sql, params) => (calls.push('all'), log.db.all(sql, params)),
        get: (sql, params) => (calls.push('get'), log.db.get(sql, params)),
        run: (sql, params) => (calls.push('run'), log.db.run(sql, params)),
        write: (lock, fn) => (calls.push(`write ${lock}`), log.db.write(lock, fn)),
        snapshot: (fn) => log.db.snapshot(fn),
        close: () => log.db.close(),
      };
      const counting = new AuditLog(counted);
      await counting.append({ action: 'a.first', subject: 's', actor: 't', dedupeKey: 'k0' });
      calls.length = 0;
      await counting.append({ action: 'a.next', subject: 's', actor: 't', dedupeKey: 'k1' });
      assert.deepEqual(calls, backend === 'postgres' ? ['all'] : ['write audit']);
      calls.length = 0;
      await counting.append({ action: 'a.plain', subject: 's', actor: 't' });
      assert.deepEqual(calls, ['write audit']);
      // Another writer appends meanwhile: this one's next append finds its seq taken and starts again from the new last record.
      await log.append({ action: 'a.other', subject: 's', actor: 't', dedupeKey: 'k2' });
      calls.length = 0;
      await counting.append({ action: 'a.after', subject: 's', actor: 't', dedupeKey: 'k3' });
      // PostgreSQL: the insert that finds its seq taken, one read of both the dedupe key and the new end, the insert again.
      assert.deepEqual(calls, backend === 'postgres' ? ['all', 'all', 'all'] : ['write audit']);
      assert.deepEqual(await log.verify(), { ok: true, checked: 5 });
    });

    test('after the newest records are lost behind its back (a restore), a log open all along appends after what is there', async (t) => {
      const log = await openAudit(await tmpPath(t));
      t.after(() => log.close());
      for (let i = 1; i <= 3; i++) await log.append({ action: 'a.step', subject: `s${i}`, actor: 't', dedupeKey: `k${i}` });
      // A restore from a backup taken after record 2: record 3 is gone and the head says 2.
      const second = (await log.query({})).find((r) => r.seq === 2)!;
      await log.db.run('DELETE FROM audit_log WHERE seq = 3');
      await log.db.run('UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1', [2, second.hash]);
      assert.deepEqual(await log.verify(), { ok: true, checked: 2 });
      const next = await log.append({ action: 'a.step', subject: 's4', actor: 't', dedupeKey: 'k4' });
      assert.equal(next.record.seq, 3);
      assert.equal(next.record.prevHash, second.hash);
      assert.deepEqual(await log.verify(), { ok: true, checked: 3 });
    });

    test(
      'concurrent writers in separate processes keep one unbroken chain, with and without dedupe keys',
      { timeout: 60_000 },
      async (t) => {
        const path = await tmpPath(t);
        (await openAudit(path)).close();
        const logTs = fileURLToPath(new URL('./log.ts', import.meta.url));
        const perWriter = 25;
        const writers = ['w1', 'w2', 'w3'];
        // Each writer reports ready, waits for "go" on stdin, then appends with short pauses, so the
        // three really contend for the write lock instead of running one after another.
        const code = `
    import { openAudit } from ${JSON.stringify(logTs)};
    const log = await openAudit(process.env.AUDIT_PATH);
    process.stdout.write('ready\\n');
    await new Promise((r) => process.stdin.once('data', r));
    for (let i = 0; i < ${perWriter}; i++) {
      // Every other entry has a dedupe key (on PostgreSQL those append without the lock), and each of
      // those is appended twice: the second must find the first.
      const entry = { action: 'stage.completed', subject: process.env.TEMPERED_ACTOR + '/' + i, details: { i } };
      if (i % 2) {
        const keyed = { ...entry, dedupeKey: process.env.TEMPERED_ACTOR + '/' + i };
        const first = await log.append(keyed);
        const again = await log.append(keyed);
        if (!first.appended || again.appended || again.record.seq !== first.record.seq) throw new Error('a dedupe key appended twice');
      } else await log.append(entry);
      await new Promise((r) => setTimeout(r, 3));
    }
    await log.close();
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

        const log = await openAudit(path);
        assert.deepEqual(await log.verify(), { ok: true, checked: perWriter * writers.length });
        const records = await log.query();
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
        await log.close();
      },
    );

    test('a consistently rewritten chain passes plain verify but fails against an anchor', async (t) => {
      const path = await tmpPath(t);
      const log = await openAudit(path);
      await fill(log);
      const anchor = (await log.head())!;
      assert.equal(anchor.seq, 6);
      await log.close();
      // Rewrite record 2 and re-hash everything after it, as someone with write access could.
      await tamper(path, async (q) => {
        const rows = await q.all<{ seq: number }>('SELECT seq FROM audit_log ORDER BY seq');
        let prev = GENESIS_HASH;
        for (const { seq } of rows) {
          const rec = await rawRecord(q, seq);
          if (seq === 2) rec.details = { rows: 1 };
          rec.prevHash = prev;
          const hash = hashRecord(rec);
          await q.run('UPDATE audit_log SET details_json = ?, prev_hash = ?, hash = ? WHERE seq = ?', [
            canonicalJson(rec.details),
            prev,
            hash,
            seq,
          ]);
          prev = hash;
        }
        await q.run('UPDATE audit_head SET hash = ? WHERE id = 1', [prev]);
      });
      const after = await openAudit(path);
      assert.deepEqual(await after.verify(), { ok: true, checked: 6 });
      const r = await after.verify({ anchor });
      assert.deepEqual([r.ok, r.problem, r.firstBadSeq], [false, 'rewritten', 6]);
      assert.equal((await after.verify({ anchor: { seq: 99, hash: anchor.hash } })).problem, 'truncated');
      await after.close();
    });

    /** Reads a record straight from the table, for the rewrite attack above. */
    async function rawRecord(q: Queryable, seq: number) {
      const row = (await q.get<Record<string, string | number | null>>('SELECT * FROM audit_log WHERE seq = ?', [seq]))!;
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

    test('lone UTF-16 surrogates in string fields (a label from the data) do not break verification', async (t) => {
      const path = await tmpPath(t);
      const log = await openAudit(path);
      const lone = 'label-\ud800-x';
      const { record } = await log.append({
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
      assert.deepEqual(await log.verify(), { ok: true, checked: 1 });
      // The same key finds the same record again.
      assert.equal((await log.append({ action: 'model.registered', subject: 'x', dedupeKey: `k/${lone}` })).appended, false);
      await log.close();
      const again = await openAudit(path);
      assert.deepEqual(await again.verify(), { ok: true, checked: 1 });
      await again.close();
    });

    test('a wiped log fails verification where records are expected; a cut tail with a rewritten head fails against an anchor', async (t) => {
      const path = await tmpPath(t);
      const log = await openAudit(path);
      await fill(log);
      const anchor = (await log.head())!;
      await log.close();
      // Cut the last two records and make the head row agree, as someone with write access could.
      await tamper(path, async (q) => {
        await q.run('DELETE FROM audit_log WHERE seq > 4');
        const last = (await q.get<{ seq: number; hash: string }>('SELECT seq, hash FROM audit_log WHERE seq = 4'))!;
        await q.run('UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1', [last.seq, last.hash]);
      });
      const cut = await openAudit(path);
      assert.deepEqual(await cut.verify(), { ok: true, checked: 4 }, 'the chain alone cannot see a consistent cut');
      const r = await cut.verify({ anchor });
      assert.deepEqual([r.ok, r.problem], [false, 'truncated']);
      await cut.close();
      await tamper(path, async (q) => {
        await q.run('DELETE FROM audit_log');
        await q.run('DELETE FROM audit_head');
      });
      const wiped = await openAudit(path);
      assert.equal((await wiped.verify()).ok, true, 'an empty log is fine where nothing is expected (a fresh install)');
      assert.equal((await wiped.verify({ expectRecords: true })).problem, 'empty');
      assert.equal((await wiped.verify({ anchor })).problem, 'empty');
      await wiped.close();
    });
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
