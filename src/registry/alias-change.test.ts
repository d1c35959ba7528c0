import { describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import pg from 'pg';
import { fileURLToPath } from 'node:url';
import { openAudit } from '../audit/log.ts';
import { changeAlias, GateRefused, type AliasChangeResult } from './alias-change.ts';
import { AliasMovedError, openRegistry } from './registry.ts';
import { KeptOpen } from '../db/kept-open.ts';
import { BACKENDS, postgresUnavailable, useDatabases } from '../db/postgres.testing.ts';
import type { RegisterInput } from './types.ts';
import { countingQueries, setAliasAsBefore, testVersion } from './versions.testing.ts';

const sha = (c: string) => c.repeat(64);
const aliasChangeTs = fileURLToPath(new URL('./alias-change.ts', import.meta.url));

/**
 * `models promote NAME@at` (or `models rollback NAME`) in a process of its own (another operator's terminal), to its
 * end; `expect`, the version its caller read on the alias. Resolves to its answer, or rejects with its error's message.
 */
function changeInAnotherProcess(
  registryDb: string,
  auditDb: string,
  actor: string,
  at?: number,
  expect?: number,
): Promise<AliasChangeResult> {
  const code = `
    import { changeAlias } from ${JSON.stringify(aliasChangeTs)};
    const at = process.env.AT ? Number(process.env.AT) : undefined;
    const expect = process.env.EXPECT ? { expect: Number(process.env.EXPECT) } : {};
    try {
      const r = await changeAlias(process.env.REG, process.env.AUDIT, { op: at === undefined ? 'rollback' : 'promote', name: 'clf', at, alias: 'production', actor: process.env.ACTOR, ...expect });
      process.stdout.write(JSON.stringify(r));
      process.exit(0);
    } catch (e) {
      process.stderr.write(e.name + ': ' + e.message);
      process.exit(1);
    }`;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], {
      env: {
        ...process.env,
        REG: registryDb,
        AUDIT: auditDb,
        AT: at === undefined ? '' : String(at),
        EXPECT: expect === undefined ? '' : String(expect),
        ACTOR: actor,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    child.on('exit', (c) => (c === 0 ? resolve(JSON.parse(out) as AliasChangeResult) : reject(new Error(err))));
  });
}

/** A registry and an audit database file in a folder of their own, removed after the test. */
function databaseFiles(t: TestContext): { registryDb: string; auditDb: string } {
  const dir = mkdtempSync(join(tmpdir(), 'alias-change-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return { registryDb: join(dir, 'registry.db'), auditDb: join(dir, 'audit.db') };
}

function version(run: string, f1: number, onnx: string): RegisterInput {
  return {
    name: 'clf',
    runId: run,
    stageId: 'register',
    specHash: sha('a'),
    data: [{ name: 'train', sha256: sha('b'), rows: 10 }],
    artifacts: [{ role: 'onnx', uri: `artifact://sha256/${sha(onnx)}`, sha256: sha(onnx), bytes: 10 }],
    metrics: { f1_macro: f1 },
    params: {},
    actor: 'alice',
  };
}

test('a gated promotion judges against the holder, moves nothing when refused, and audits what it did', async (t) => {
  const { registryDb, auditDb } = databaseFiles(t);
  const reg = await openRegistry(registryDb);
  await reg.registerVersion(version('r1', 0.9, 'c'));
  await reg.registerVersion(version('r2', 0.8, 'd'));
  await reg.close();
  const gate = '!has(production) || f1_macro >= production.f1_macro';

  const first = await changeAlias(registryDb, auditDb, { op: 'promote', name: 'clf', at: 1, alias: 'production', actor: 'bob', gate });
  assert.equal(first.version, 1);
  assert.equal(first.gate?.passed, true);
  await assert.rejects(
    () => changeAlias(registryDb, auditDb, { op: 'promote', name: 'clf', at: 2, alias: 'production', actor: 'bob', gate }),
    (e: unknown) => e instanceof GateRefused && /0\.8/.test(e.explanation),
  );
  const forced = await changeAlias(registryDb, auditDb, {
    op: 'promote',
    name: 'clf',
    at: 2,
    alias: 'production',
    actor: 'carol',
    details: { via: 'ui' },
  });
  assert.equal(forced.version, 2);
  const back = await changeAlias(registryDb, auditDb, { op: 'rollback', name: 'clf', alias: 'production', actor: 'dave' });
  assert.equal(back.version, 1);

  const log = await openAudit(auditDb);
  try {
    const recs = await log.query();
    assert.deepEqual(
      recs.map((r) => [r.action, r.model, r.actor]),
      [
        ['model.promoted', 'clf@1', 'bob'],
        ['model.promoted', 'clf@2', 'carol'],
        ['model.rolled_back', 'clf@1', 'dave'],
      ],
    );
    assert.equal(recs[0]!.details.gate, gate);
    assert.equal(recs[1]!.details.via, 'ui');
    assert.equal(recs[0]!.modelHash, sha('c'));
  } finally {
    await log.close();
  }
});

test('a gated promotion that another promotion overtakes after the gate was judged moves nothing', async (t) => {
  const { registryDb, auditDb } = databaseFiles(t);
  const reg = await openRegistry(registryDb);
  await reg.registerVersion(version('r1', 0.5, 'c'));
  await reg.registerVersion(version('r2', 0.7, 'd'));
  await reg.registerVersion(version('r3', 0.9, 'e'));
  await reg.setAlias('clf', 'production', 1);
  // Right after the gate's holder (v1) is read, bob promotes v3 through another connection.
  const other = await openRegistry(registryDb);
  const read = reg.heldModel.bind(reg);
  reg.heldModel = async (name: string, alias: string, version: number) => {
    const v = await read(name, alias, version);
    await other.setAlias('clf', 'production', 3, { actor: 'bob' });
    return v;
  };
  await assert.rejects(
    changeAlias(new KeptOpen(async () => reg), auditDb, {
      op: 'promote',
      name: 'clf',
      at: 2,
      alias: 'production',
      actor: 'alice',
      gate: 'f1_macro > production.f1_macro',
    }),
    (e: unknown) => e instanceof AliasMovedError,
  );
  assert.equal(await other.aliasVersion('clf', 'production'), 3, 'v2 (0.7) did not replace v3 (0.9) on a verdict against v1');
  await other.close();
  await reg.close();
});

/**
 * `models promote clf@1 --gate …` while v1 holds the alias judged v1 against itself (its own production.*, or its own
 * registered metrics): a gate such as `f1_macro > production.f1_macro` refused the version the alias keeps serving.
 */
test('a gated promotion of the version the alias already holds moves nothing and judges no gate against itself', async (t) => {
  const { registryDb, auditDb } = databaseFiles(t);
  const reg = await openRegistry(registryDb);
  await reg.registerVersion(version('r1', 0.9, 'c'));
  await reg.setAlias('clf', 'production', 1, { actor: 'bob' });
  await reg.close();
  const again = await changeAlias(registryDb, auditDb, {
    op: 'promote',
    name: 'clf',
    at: 1,
    alias: 'production',
    actor: 'alice',
    gate: 'f1_macro > production.f1_macro',
    expect: 1,
  });
  assert.deepEqual(
    [again.change, again.version, again.gate, again.already],
    [undefined, 1, undefined, 'v1 is already production: nothing to promote, and no gate judged it against itself'],
  );
  const log = await openAudit(auditDb);
  t.after(() => log.close());
  assert.deepEqual(await log.query({ action: 'model.promoted' }), [], 'nothing moved, so nothing is recorded');
});

test("a gated promotion reads the candidate's own production.* when they were measured against the holder, and refuses evaluate's names otherwise, naming both versions", async (t) => {
  const { registryDb, auditDb } = databaseFiles(t);
  // As the register stage stores evaluate's production.* (production.version = N, decontaminated 1/0).
  const evaluated = (run: string, f1: number, onnx: string, production: Record<string, unknown>): RegisterInput => ({
    ...version(run, f1, onnx),
    metrics: { f1_macro: f1, production },
  });
  const reg = await openRegistry(registryDb);
  await reg.registerVersion(version('r1', 0.9, 'c'));
  await reg.setAlias('clf', 'production', 1);
  const againstV1 = (candidate: number) => ({
    f1_macro: 0.7,
    version: 1,
    rows: 120,
    contaminated_rows: 30,
    decontaminated: 1,
    candidate: { f1_macro: candidate },
  });
  // v2's all-row f1 (0.85) is below v1's registered 0.9; on the rows v1 was not trained on it beats v1 (0.8 vs 0.7).
  await reg.registerVersion(evaluated('r2', 0.85, 'd', againstV1(0.8)));
  await reg.registerVersion(evaluated('r3', 0.95, 'e', againstV1(0.9)));
  // Registered before production.version was recorded: which version its production.* are is unknown.
  await reg.registerVersion(evaluated('r4', 0.97, 'f', { f1_macro: 0.7, rows: 120, candidate: { f1_macro: 0.9 } }));
  await reg.close();
  const gate = 'production.rows >= 100 && production.decontaminated && production.candidate.f1_macro >= production.f1_macro - 0.005';
  const promote = (at: number, g = gate) =>
    changeAlias(registryDb, auditDb, { op: 'promote', name: 'clf', at, alias: 'production', actor: 'bob', gate: g });

  const v2 = await promote(2);
  assert.deepEqual([v2.version, v2.gate?.passed, v2.gate?.compared], [2, true, 'production.* as evaluated against v1']);
  assert.match(v2.gate!.explanation, /production\.rows 120 >= 100 ✓.*production\.candidate\.f1_macro 0\.8 >= /);

  // v3 was compared with v1 too, but v2 holds the alias now: its production.* would judge it against v1.
  const refused = (at: number, message: RegExp) =>
    assert.rejects(promote(at), (e: unknown) => {
      assert.ok(e instanceof GateRefused, String(e));
      assert.match(e.message, message);
      assert.match(e.hint!, /rerun the pipeline so evaluate compares with v2, or use a gate on registered metrics/);
      return true;
    });
  await refused(
    3,
    /the gate reads production\.rows, which only evaluate measures, but production was v1 when v3 was evaluated and production is v2 now/,
  );
  await refused(
    4,
    /production\.rows, which only evaluate measures, but the registry does not say which version v4's production\.\* were measured against .* and production is v2 now/,
  );
  const check = await openRegistry(registryDb);
  assert.equal(await check.aliasVersion('clf', 'production'), 2, 'no refused promotion moved the alias');
  await check.close();

  // A gate on registered metrics still reads the holder's: v3's 0.95 against v2's registered 0.85.
  const v3 = await promote(3, 'f1_macro >= production.f1_macro');
  assert.deepEqual([v3.version, v3.gate?.compared], [3, "production.* = v2's registered metrics"]);
  const log = await openAudit(auditDb);
  try {
    const recs = await log.query({ action: 'model.promoted' });
    assert.deepEqual(
      recs.map((r) => [r.model, r.details.compared]),
      [
        ['clf@2', 'production.* as evaluated against v1'],
        ['clf@3', "production.* = v2's registered metrics"],
      ],
    );
  } finally {
    await log.close();
  }
});

for (const backend of BACKENDS)
  describe(backend, { skip: backend === 'postgres' ? postgresUnavailable() : undefined }, () => {
    const db = useDatabases(backend);

    /**
     * The deploy stage took a version with the holder's model bytes as already production, `models promote` compared
     * version numbers only: promoting the twin moved the alias (and recorded a promotion) to the model it served.
     */
    test("a promotion of a version with the holder's model bytes moves nothing, with or without a gate, and records nothing", async (t) => {
      const registryDb = await db.fresh(t, 'registry.db');
      const auditDb = await db.fresh(t, 'audit.db');
      const reg = await openRegistry(registryDb);
      await reg.registerVersion(testVersion('clf', 'c', { metrics: { f1_macro: 0.9 } }));
      // The same model registered again through the library (no reuseVersionWithSame): v2, v1's bytes.
      await reg.registerVersion(testVersion('clf', 'c', { runId: 'again', metrics: { f1_macro: 0.9 } }));
      await reg.close();
      const by = { op: 'promote', name: 'clf', alias: 'production', actor: 'alice' } as const;
      assert.equal((await changeAlias(registryDb, auditDb, { ...by, at: 1 })).change?.toVersion, 1);

      const plain = await changeAlias(registryDb, auditDb, { ...by, at: 2, expect: 1 });
      assert.deepEqual(
        [plain.change, plain.version, plain.already],
        [undefined, 1, 'production is v1, which has the same model bytes as v2: nothing to promote; production stays on v1'],
      );
      const gated = await changeAlias(registryDb, auditDb, { ...by, at: 2, expect: 1, gate: 'f1_macro > production.f1_macro' });
      assert.deepEqual(
        [gated.change, gated.version, gated.gate, gated.already],
        [
          undefined,
          1,
          undefined,
          'production is v1, which has the same model bytes as v2: nothing to promote, and no gate judged it against itself; production stays on v1',
        ],
      );
      const check = await openRegistry(registryDb);
      t.after(() => check.close());
      assert.deepEqual(
        (await check.aliasHistory('clf', 'production')).map((h) => h.toVersion),
        [1],
      );
      const log = await openAudit(auditDb);
      t.after(() => log.close());
      assert.deepEqual(
        (await log.query()).map((r) => [r.action, r.model]),
        [['model.promoted', 'clf@1']],
        'nothing moved, so nothing is recorded',
      );
    });

    /**
     * A history written before a twin of the holder was refused holds v2 (v1's bytes) after v1: rolling back from v2
     * went to v1 and said "rolled back", and that no run would promote v2 again, while production served v2's model
     * all along (and a run's deploy of v2 then said "already production").
     */
    test('a rollback to a version with the model bytes of the one it leaves moves the alias and says what it serves did not change', async (t) => {
      const registryDb = await db.fresh(t, 'registry.db');
      const auditDb = await db.fresh(t, 'audit.db');
      const reg = await openRegistry(registryDb);
      await reg.registerVersion(testVersion('clf', 'a'));
      await reg.registerVersion(testVersion('clf', 'b'));
      await reg.registerVersion(testVersion('clf', 'b', { runId: 'again' }));
      await setAliasAsBefore(reg, 'clf', 'production', 1);
      await setAliasAsBefore(reg, 'clf', 'production', 2);
      await setAliasAsBefore(reg, 'clf', 'production', 3);
      await reg.close();
      const back = { op: 'rollback', name: 'clf', alias: 'production', actor: 'oncall' } as const;

      const twin = await changeAlias(registryDb, auditDb, { ...back, expect: 3 });
      assert.deepEqual(
        [twin.change?.fromVersion, twin.change?.toVersion, twin.version, twin.sameModel],
        [
          3,
          2,
          2,
          'v2 has the same model bytes as v3: what production serves has not changed; `tempered models rollback clf` again goes back to v1',
        ],
      );
      const next = await changeAlias(registryDb, auditDb, { ...back, expect: 2 });
      assert.deepEqual([next.change?.toVersion, next.sameModel], [1, undefined], 'v1 is another model');

      // Twins at the bottom of the stack: nothing earlier to go to.
      const other = await openRegistry(registryDb);
      t.after(() => other.close());
      await other.registerVersion(testVersion('clf', 'a', { runId: 'a-again' }));
      await setAliasAsBefore(other, 'clf', 'alt', 1);
      await setAliasAsBefore(other, 'clf', 'alt', 4);
      const bottom = await changeAlias(registryDb, auditDb, { ...back, alias: 'alt', expect: 4 });
      assert.deepEqual(
        [bottom.change?.toVersion, bottom.sameModel],
        [
          1,
          'v1 has the same model bytes as v4: what alt serves has not changed; alt has no earlier version to roll back to: promote another version to change it',
        ],
      );
      // The records say it too: `model.rolled_back` read alike for a twin and another model.
      const log = await openAudit(auditDb);
      t.after(() => log.close());
      assert.deepEqual(
        (await log.query({ action: 'model.rolled_back' })).map((r) => [r.details.alias, r.details.from, r.details.to, r.details.sameModel]),
        [
          ['production', 3, 2, true],
          ['production', 2, 1, undefined],
          ['alt', 4, 1, true],
        ],
      );
    });

    /**
     * A write transaction began with the server's default isolation and took the write lock in its first statement,
     * which under a default of REPEATABLE READ or SERIALIZABLE (a database an administrator set so) fixes the snapshot
     * before the lock wait: the promotion of v3 read the v1 it was waiting behind, took production as serving v3's
     * model already and answered "nothing to promote" while production served v2, another model.
     */
    test(
      'a promotion decides what the alias serves on what was committed before it got the write lock, whatever the default isolation',
      { skip: backend === 'sqlite' ? 'PostgreSQL isolation levels' : undefined },
      async (t) => {
        const url = new URL(await db.fresh(t, 'registry.db'));
        url.searchParams.set('options', '-c default_transaction_isolation=serializable');
        const reg = await openRegistry(url.toString());
        t.after(() => reg.close());
        for (const m of ['a', 'b']) await reg.registerVersion(testVersion('clf', m));
        await reg.registerVersion(testVersion('clf', 'a', { runId: 'again' }));
        await reg.setAlias('clf', 'production', 1, { actor: 'setup' });
        const admin = new pg.Client({ connectionString: url.toString() });
        await admin.connect();
        t.after(() => admin.end());
        // The registry's write lock (postgres.ts's LOCK_CLASS and registry id), held while production moves to v2.
        await admin.query('SELECT pg_advisory_lock(1952804208, 1)');
        const promoting = reg.setAlias('clf', 'production', 3, { actor: 'alice' });
        for (;;) {
          const waiting = await admin.query("SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted");
          if (waiting.rowCount) break;
          await new Promise((r) => setTimeout(r, 20));
        }
        await admin.query("UPDATE aliases SET version = 2 WHERE model = 'clf' AND alias = 'production'");
        await admin.query('SELECT pg_advisory_unlock(1952804208, 1)');
        const moved = await promoting;
        assert.deepEqual([moved.changed, moved.change?.fromVersion, moved.held], [true, 2, undefined]);
        assert.equal(await reg.aliasVersion('clf', 'production'), 3);
      },
    );

    /**
     * Two operators promoting at once, from two processes: the answer named the version read after the move and the
     * audit delivery, so one that another promotion overtook in between said "already points at v3" for a promotion
     * of v2 (and a move to v3 for its own move to v2).
     */
    test('of two promotions racing from two processes, each answers with what its own transaction left on the alias', async (t) => {
      const registryDb = await db.fresh(t, 'registry.db');
      const auditDb = await db.fresh(t, 'audit.db');
      const reg = await openRegistry(registryDb);
      t.after(() => reg.close());
      for (const m of ['a', 'b', 'c']) await reg.registerVersion(testVersion('clf', m));
      await reg.setAlias('clf', 'production', 2, { actor: 'setup' });
      // Right after this promotion's transaction, before it delivers its audit record, bob promotes in his own process.
      let next = [3, 1];
      const drain = reg.drainAuditOutbox.bind(reg);
      reg.drainAuditOutbox = async (log) => {
        const at = next.shift();
        if (at !== undefined) await changeInAnotherProcess(registryDb, auditDb, 'bob', at);
        return drain(log);
      };
      const kept = new KeptOpen(async () => reg);
      const held = await changeAlias(kept, auditDb, { op: 'promote', name: 'clf', at: 2, alias: 'production', actor: 'alice', expect: 2 });
      assert.deepEqual([held.change, held.version, held.already], [undefined, 2, 'v2 is already production: nothing to promote']);
      const moved = await changeAlias(kept, auditDb, { op: 'promote', name: 'clf', at: 2, alias: 'production', actor: 'alice', expect: 3 });
      assert.deepEqual([moved.change?.fromVersion, moved.change?.toVersion, moved.version], [3, 2, 2]);

      const history = await reg.aliasHistory('clf', 'production');
      assert.deepEqual(
        history.map((h) => [h.fromVersion, h.toVersion, h.actor]),
        [
          [null, 2, 'setup'],
          [2, 3, 'bob'],
          [3, 2, 'alice'],
          [2, 1, 'bob'],
        ],
      );
      const log = await openAudit(auditDb);
      t.after(() => log.close());
      assert.deepEqual(
        (await log.query()).map((r) => [r.model, r.actor, r.details.from, r.details.to]),
        [
          ['clf@3', 'bob', 2, 3],
          ['clf@2', 'alice', 3, 2],
          ['clf@1', 'bob', 2, 1],
        ],
        'one record per move, in the order they were made',
      );
    });

    /**
     * `models promote` read production as v1; bob promoted v2 before its gate read the holder, and carol rolled back
     * to v1 while the gate judged: the gate passed against v2's metrics, and the swap, expecting the v1 the caller had
     * read, moved v1 → v3 with an audit record saying it was compared with v2 (v3 would fail against v1).
     */
    test('a gated promotion whose caller read another holder than the gate judges against moves nothing', async (t) => {
      const registryDb = await db.fresh(t, 'registry.db');
      const auditDb = await db.fresh(t, 'audit.db');
      const reg = await openRegistry(registryDb);
      t.after(() => reg.close());
      for (const [m, f1] of [
        ['a', 0.95],
        ['b', 0.8],
        ['c', 0.9],
      ] as const)
        await reg.registerVersion(testVersion('clf', m, { metrics: { f1_macro: f1 } }));
      await reg.setAlias('clf', 'production', 1, { actor: 'setup' });
      const read = await reg.aliasVersion('clf', 'production');
      await changeInAnotherProcess(registryDb, auditDb, 'bob', 2);
      // While the gate reads v2's metrics, carol rolls production back to v1 from her own process.
      const getVersion = reg.getVersion.bind(reg);
      reg.getVersion = async (name: string, ref: number | string) => {
        if (ref === 2) await changeInAnotherProcess(registryDb, auditDb, 'carol');
        return getVersion(name, ref);
      };
      await assert.rejects(
        changeAlias(new KeptOpen(async () => reg), auditDb, {
          op: 'promote',
          name: 'clf',
          at: 3,
          alias: 'production',
          actor: 'alice',
          gate: 'f1_macro >= production.f1_macro',
          expect: read,
        }),
        (e: unknown) => e instanceof AliasMovedError && /moved to v2 since it was read \(expected v1\); not moved to v3/.test(e.message),
      );
      reg.getVersion = getVersion;
      // Refused before its gate judged, carol's rollback never came: production is where bob left it.
      assert.equal(await reg.aliasVersion('clf', 'production'), 2);
      const log = await openAudit(auditDb);
      t.after(() => log.close());
      assert.deepEqual(
        (await log.query()).map((r) => [r.action, r.model, r.actor]),
        [['model.promoted', 'clf@2', 'bob']],
        'no promotion of v3 on a verdict against v2',
      );
    });

    test('two processes promoting different versions over the one they both read: one moves it, the other moves nothing, one record', async (t) => {
      const registryDb = await db.fresh(t, 'registry.db');
      const auditDb = await db.fresh(t, 'audit.db');
      const reg = await openRegistry(registryDb);
      t.after(() => reg.close());
      for (const m of ['a', 'b', 'c']) await reg.registerVersion(testVersion('clf', m));
      await reg.setAlias('clf', 'production', 1, { actor: 'setup' });
      // Both read production = v1, as `models promote` does before it promotes.
      const [bob, carol] = await Promise.allSettled([
        changeInAnotherProcess(registryDb, auditDb, 'bob', 2, 1),
        changeInAnotherProcess(registryDb, auditDb, 'carol', 3, 1),
      ]);
      const won = [bob, carol].filter((r) => r.status === 'fulfilled');
      const lost = [bob, carol].filter((r) => r.status === 'rejected');
      assert.equal(won.length, 1, JSON.stringify([bob, carol]));
      const winner = won[0]!.value;
      assert.match(String(lost[0]!.reason), /AliasMovedError: clf@production moved to v\d since it was read \(expected v1\)/);
      assert.equal(winner.version, winner.change!.toVersion);
      assert.equal(await reg.aliasVersion('clf', 'production'), winner.version);
      assert.deepEqual(
        (await reg.aliasHistory('clf', 'production')).map((h) => [h.fromVersion, h.toVersion]),
        [
          [null, 1],
          [1, winner.version],
        ],
      );
      const log = await openAudit(auditDb);
      t.after(() => log.close());
      assert.deepEqual(
        (await log.query()).map((r) => [r.model, r.details.from, r.details.to]),
        [[`clf@${winner.version}`, 1, winner.version]],
      );
    });

    test('promote and rollback read the versions they move the alias between, not every version of the model', async (t) => {
      const VERSIONS = 40;
      const registryDb = await db.fresh(t, 'registry.db');
      const auditDb = await db.fresh(t, 'audit.db');
      const reg = await openRegistry(registryDb);
      const onnx = (v: number) => `${v}`.padEnd(64, 'a');
      for (let v = 1; v <= VERSIONS; v++)
        await reg.registerVersion(
          testVersion('clf', `m${v}`, {
            metrics: { f1_macro: v / 100, accuracy: v / 100 },
            artifacts: [
              { role: 'onnx', uri: `u${v}`, sha256: onnx(v), bytes: v },
              { role: 'tokenizer', uri: 't', sha256: 'e'.repeat(64), bytes: 1 },
            ],
          }),
        );
      const kept = new KeptOpen(async () => reg);
      const rowsRead: Record<string, number> = {};
      const change = async (label: string, req: Parameters<typeof changeAlias>[2]) => {
        const read = countingQueries(reg);
        try {
          return await changeAlias(kept, auditDb, req);
        } finally {
          read.stop();
          rowsRead[label] = read.rows;
        }
      };
      try {
        const by = { name: 'clf', alias: 'production', actor: 'alice' };
        await change('gated promote v3', { ...by, op: 'promote', at: 3, gate: '!has(production) || f1_macro >= production.f1_macro' });
        await change('gated promote v7 over v3', { ...by, op: 'promote', at: 7, gate: 'f1_macro >= production.f1_macro' });
        await change('promote latest', { ...by, op: 'promote' });
        const back = await change('rollback', { ...by, op: 'rollback', expect: VERSIONS });
        assert.equal(back.version, 7);

        // The whole model is 40 versions, 80 artifacts and 80 metrics; one version hydrated is a handful of
        // rows, and the alias's history a few more.
        for (const [label, rows] of Object.entries(rowsRead))
          assert.ok(rows < 25, `${label}: ${rows} rows read (${JSON.stringify(rowsRead)})`);
        const log = await openAudit(auditDb);
        try {
          assert.deepEqual(
            (await log.query()).map((r) => [r.action, r.model, r.modelHash]),
            [
              ['model.promoted', 'clf@3', onnx(3)],
              ['model.promoted', 'clf@7', onnx(7)],
              ['model.promoted', `clf@${VERSIONS}`, onnx(VERSIONS)],
              ['model.rolled_back', 'clf@7', onnx(7)],
            ],
          );
        } finally {
          await log.close();
        }
      } finally {
        await reg.close();
      }
    });
  });

/**
 * The registry keeps evaluate's production.same_model as 1 (metrics are numbers); a promote gate reading the candidate's
 * own production.* must see it as deploy's gate does, a boolean, or `!production.same_model` is a type error there.
 */
test("a gated promotion reads the candidate's own production.same_model as the boolean evaluate gave", async (t) => {
  const { registryDb, auditDb } = databaseFiles(t);
  const reg = await openRegistry(registryDb);
  await reg.registerVersion(version('r1', 0.9, 'c'));
  await reg.setAlias('clf', 'production', 1);
  const production = {
    f1_macro: 0.9,
    version: 1,
    rows: 120,
    contaminated_rows: 0,
    decontaminated: 1,
    same_model: 1,
    candidate: { f1_macro: 0.9 },
  };
  await reg.registerVersion({ ...version('r2', 0.9, 'd'), metrics: { f1_macro: 0.9, production } });
  await reg.close();
  const promoted = await changeAlias(registryDb, auditDb, {
    op: 'promote',
    name: 'clf',
    at: 2,
    alias: 'production',
    actor: 'bob',
    gate: 'production.decontaminated && production.same_model',
  });
  assert.deepEqual([promoted.version, promoted.gate?.passed, promoted.gate?.compared], [2, true, 'production.* as evaluated against v1']);
});
