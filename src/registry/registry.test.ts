import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createHash } from 'node:crypto';
import Database from 'better-sqlite3';
import { openRegistry, flattenMetrics, unflattenMetrics, AliasMovedError } from './registry.ts';
import { REGISTRY_SCHEMA } from './schema.ts';
import { openAudit, type AuditEntry } from '../audit/log.ts';
import type { SqliteDatabase } from '../db/sqlite.ts';
import type { RegisterInput } from './types.ts';
import { InputError } from '../errors.ts';
import { BACKENDS, postgresUnavailable, useDatabases } from '../db/postgres.testing.ts';
import { rollbackHolding } from './held-model.ts';
import { countingQueries, setAliasAsBefore, testVersion } from './versions.testing.ts';

const sha = (c: string) => c.repeat(64);
let clock = Date.parse('2026-01-01T00:00:00Z');
const now = () => new Date((clock += 1000));

function tmpDb(t: { after: (fn: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'tempered-registry-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return join(dir, 'sub', 'registry.db');
}

function input(run: string, over: Partial<RegisterInput> = {}): RegisterInput {
  return {
    name: 'spam-clf',
    runId: run,
    stageId: 'register',
    specHash: sha('a'),
    data: [
      { name: 'train', sha256: sha('b'), rows: 800, uri: 'artifact://sha256/' + sha('b') },
      { name: 'eval', sha256: sha('c'), rows: 200 },
    ],
    artifacts: [
      { role: 'onnx', uri: 'artifact://sha256/' + sha('d'), sha256: sha('d'), bytes: 1_234_567, mediaType: 'application/onnx' },
      { role: 'tokenizer', uri: 'artifact://sha256/' + sha('e'), sha256: sha('e'), bytes: 4096 },
    ],
    metrics: { accuracy: 0.95, f1_macro: 0.94, per_class: { spam: { f1: 0.9 }, ham: { f1: 0.98 } } },
    params: { lr: 0.001, epochs: 3, lora: { r: 8, alpha: 16, targets: ['q', 'v'] } },
    baseModel: { source: 'hf', name: 'tiny-bert', revision: 'abc123' },
    codeVersion: 'git:1234abc',
    actor: 'alice',
    ...over,
  };
}

/** A version of its own model (its ONNX file's hash from the run id): an alias does not move between one model's versions. */
const ownModel = (run: string): RegisterInput => {
  const onnx = createHash('sha256').update(run).digest('hex');
  return input(run, { artifacts: [{ role: 'onnx', uri: `artifact://sha256/${onnx}`, sha256: onnx, bytes: 1 }] });
};

/** Runs a script in `count` child processes that wait for "go" on stdin, so they really contend. */
async function raceProcesses(code: string, count: number, env: Record<string, string>): Promise<string[]> {
  const { spawn } = await import('node:child_process');
  const kids = Array.from({ length: count }, (_, i) => {
    const w = String.fromCharCode(97 + i);
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], {
      env: { ...process.env, ...env, WRITER: w },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let err = '';
    child.stderr.on('data', (d) => (err += d));
    return {
      child,
      ready: new Promise<void>((r) => child.stdout.once('data', () => r())),
      done: new Promise<void>((res, rej) => child.on('exit', (c) => (c === 0 ? res() : rej(new Error(`writer ${w} exited ${c}: ${err}`))))),
      stderr: () => err,
    };
  });
  await Promise.all(kids.map((k) => k.ready));
  for (const k of kids) k.child.stdin.write('go\n');
  await Promise.all(kids.map((k) => k.done));
  return kids.map((k) => k.stderr());
}

const regTs = fileURLToPath(new URL('./registry.ts', import.meta.url));

for (const backend of BACKENDS) {
  describe(backend, { skip: backend === 'postgres' ? postgresUnavailable() : undefined }, () => {
    const db = useDatabases(backend);

    test('versions auto-increment per name and resolve by number, v-prefix, latest and alias', async (t) => {
      const reg = await openRegistry(await db.fresh(t), { now });
      const a = await reg.registerVersion(input('run-1'));
      const b = await reg.registerVersion(input('run-2', { metrics: { accuracy: 0.97 } }));
      const other = await reg.registerVersion(input('run-3', { name: 'other' }));
      assert.deepEqual([a.version.version, b.version.version, other.version.version], [1, 2, 1]);
      assert.equal(a.created, true);
      assert.equal((await reg.getVersion('spam-clf', 'v2')).metrics.accuracy, 0.97);
      assert.equal((await reg.getVersion('spam-clf', '1')).version, 1);
      assert.equal((await reg.getVersion('spam-clf', 'latest')).version, 2);
      await reg.setAlias('spam-clf', 'production', 1, { actor: 'bob', reason: 'first release' });
      assert.equal((await reg.getVersion('spam-clf', 'production')).version, 1);

      const v1 = await reg.getVersion('spam-clf', 1);
      assert.deepEqual(v1.metrics, { accuracy: 0.95, f1_macro: 0.94, 'per_class.ham.f1': 0.98, 'per_class.spam.f1': 0.9 });
      assert.deepEqual(v1.params, { lr: 0.001, epochs: 3, lora: { r: 8, alpha: 16, targets: ['q', 'v'] } });
      assert.deepEqual(v1.lineage, {
        specHash: sha('a'),
        runId: 'run-1',
        stageId: 'register',
        codeVersion: 'git:1234abc',
        baseModel: { source: 'hf', name: 'tiny-bert', revision: 'abc123' },
        data: [
          { name: 'train', sha256: sha('b'), rows: 800, uri: 'artifact://sha256/' + sha('b') },
          { name: 'eval', sha256: sha('c'), rows: 200 },
        ],
      });
      assert.deepEqual(
        v1.artifacts.map((x) => x.role),
        ['onnx', 'tokenizer'],
      );
      assert.equal(v1.artifacts[0]!.mediaType, 'application/onnx');
      assert.deepEqual(v1.aliases, ['production']);
      assert.equal(v1.createdBy, 'alice');

      assert.deepEqual(
        (await reg.listModels()).map((m) => [m.name, m.versions, m.latestVersion, m.aliases]),
        [
          ['other', 1, 1, {}],
          ['spam-clf', 2, 2, { production: 1 }],
        ],
      );
      assert.deepEqual(
        (await reg.listVersions('spam-clf')).map((v) => v.version),
        [1, 2],
      );
      await assert.rejects(
        () => reg.getVersion('spam-clf', 9),
        // Said once: the message names the model, so `where` (what callers tell a missing one by) does not prefix it.
        (e: unknown) =>
          e instanceof InputError &&
          e.message === "model 'spam-clf' has no version or alias '9'" &&
          e.where === 'model' &&
          /aliases production/.test(e.hint!),
      );
      await assert.rejects(
        () => reg.getVersion('nope', 1),
        (e: unknown) => e instanceof InputError && e.message === "no model named 'nope'" && e.where === 'model',
      );
      await assert.rejects(() => reg.getVersion('spam-clf', 'staging'), /no version or alias 'staging'/);
      await reg.close();
    });

    test('registering the same run+stage twice (a retried activity) returns the existing version', async (t) => {
      const path = await db.fresh(t);
      const reg = await openRegistry(path, { now });
      const first = await reg.registerVersion(input('run-1'));
      const again = await reg.registerVersion(input('run-1'));
      assert.equal(again.created, false);
      assert.deepEqual(again.version, first.version);
      // A second process (separate connection) retrying sees the same row too.
      const reg2 = await openRegistry(path, { now });
      assert.equal((await reg2.registerVersion(input('run-1'))).created, false);
      assert.equal((await reg2.listVersions('spam-clf')).length, 1);
      await assert.rejects(() => reg2.registerVersion(input('run-1', { name: 'other' })), /already registered model 'spam-clf' v1/);
      await reg2.close();
      await reg.close();
    });

    test('aliases move with history; setting the same version is a no-op; rollback walks back', async (t) => {
      const reg = await openRegistry(await db.fresh(t), { now });
      for (const r of ['r1', 'r2', 'r3']) await reg.registerVersion(ownModel(r));
      assert.equal((await reg.setAlias('spam-clf', 'production', 1, { actor: 'bob', reason: 'launch' })).changed, true);
      await reg.setAlias('spam-clf', 'production', 2, { actor: 'bob', reason: 'better f1' });
      await reg.setAlias('spam-clf', 'staging', 3, { actor: 'ci' });
      await reg.setAlias('spam-clf', 'production', 'staging', { actor: 'carol', reason: 'promote' });
      assert.equal((await reg.setAlias('spam-clf', 'production', 3, { actor: 'carol' })).changed, false);
      assert.equal((await reg.getVersion('spam-clf', 'production')).version, 3);
      const hist = await reg.aliasHistory('spam-clf', 'production');
      assert.deepEqual(
        hist.map((h) => [h.kind, h.fromVersion, h.toVersion, h.actor, h.reason]),
        [
          ['set', null, 1, 'bob', 'launch'],
          ['set', 1, 2, 'bob', 'better f1'],
          ['set', 2, 3, 'carol', 'promote'],
        ],
      );
      assert.ok(hist.every((h, i) => i === 0 || h.at > hist[i - 1]!.at));

      const rb = await reg.rollback('spam-clf', 'production', { actor: 'dave' });
      assert.deepEqual([rb.kind, rb.fromVersion, rb.toVersion, rb.actor, rb.reason], ['rollback', 3, 2, 'dave', 'rollback from v3']);
      assert.equal((await reg.getVersion('spam-clf', 'production')).version, 2);
      assert.equal((await reg.rollback('spam-clf', 'production', { actor: 'dave' })).toVersion, 1);
      await assert.rejects(
        () => reg.rollback('spam-clf', 'production'),
        (e: unknown) =>
          e instanceof InputError &&
          /no earlier version/.test(e.message) &&
          /it is back at v1, its first version: rollbacks have undone every later promotion/.test(e.hint!),
      );
      // Promoting again after rollbacks, then rolling back, returns to where the alias was before.
      await reg.setAlias('spam-clf', 'production', 3, { actor: 'erin' });
      assert.equal((await reg.rollback('spam-clf', 'production')).toVersion, 1);
      assert.equal((await reg.aliasHistory('spam-clf')).length, 8);
      await reg.setAlias('spam-clf', 'qa', 2);
      await assert.rejects(
        () => reg.rollback('spam-clf', 'qa'),
        (e: unknown) => e instanceof InputError && e.hint === 'it has only ever pointed at v2',
      );
      await assert.rejects(
        () => reg.rollback('spam-clf', 'canary'),
        (e: unknown) => e instanceof InputError && e.hint === 'it has never been set',
      );
      await assert.rejects(() => reg.setAlias('spam-clf', 'latest', 1), /reserved/);
      await assert.rejects(() => reg.setAlias('spam-clf', 'Prod!', 1), InputError);
      await assert.rejects(() => reg.setAlias('spam-clf', 'production', 42), /no version or alias '42'/);
      await reg.close();
    });

    test('a rollback that names the version it rolls back from happens once: a retry or a second operator gets the first one', async (t) => {
      const url = await db.fresh(t);
      const reg = await openRegistry(url, { now });
      for (const r of ['r1', 'r2', 'r3']) await reg.registerVersion(ownModel(r));
      for (const v of [1, 2, 3]) await reg.setAlias('spam-clf', 'production', v);
      const other = await openRegistry(url, { now });
      const [a, b] = await Promise.all([
        reg.rollback('spam-clf', 'production', { actor: 'alice', expect: 3 }),
        other.rollback('spam-clf', 'production', { actor: 'bob', expect: 3 }),
      ]);
      assert.deepEqual([a.id, a.fromVersion, a.toVersion], [b.id, 3, 2], 'both answers are the one change');
      // The same request again (its answer lost on the way back) changes nothing either.
      assert.equal((await reg.rollback('spam-clf', 'production', { actor: 'alice', expect: 3 })).id, a.id);
      assert.equal(await reg.aliasVersion('spam-clf', 'production'), 2);
      assert.equal((await reg.aliasHistory('spam-clf', 'production')).filter((h) => h.kind === 'rollback').length, 1);
      // From a version the alias no longer holds, and not just rolled back from: refused.
      await reg.setAlias('spam-clf', 'production', 3);
      await assert.rejects(
        () => reg.rollback('spam-clf', 'production', { expect: 2 }),
        (e: unknown) => e instanceof AliasMovedError && /moved to v3 since it was read \(expected v2\)/.test((e as Error).message),
      );
      assert.equal((await reg.rollback('spam-clf', 'production', { expect: 3 })).toVersion, 2, 'a new rollback from v3 is a new one');
      await other.close();
      await reg.close();
    });

    test('diffVersions reports params, metric deltas, data and artifact changes', async (t) => {
      const reg = await openRegistry(await db.fresh(t), { now });
      await reg.registerVersion(input('r1'));
      await reg.registerVersion(
        input('r2', {
          params: { lr: 0.0005, epochs: 3, lora: { r: 16, alpha: 16, targets: ['q', 'v'] }, warmup: 10 },
          metrics: { accuracy: 0.96, f1_macro: 0.95, loss: 0.2 },
          data: [
            { name: 'train', sha256: sha('f'), rows: 900 },
            { name: 'eval', sha256: sha('c'), rows: 200 },
          ],
          artifacts: [
            { role: 'onnx', uri: 'artifact://x', sha256: sha('9'), bytes: 10 },
            { role: 'tokenizer', uri: 'artifact://y', sha256: sha('e'), bytes: 4096 },
          ],
        }),
      );
      const d = await reg.diffVersions('spam-clf', 1, 2);
      assert.deepEqual(d.params, [
        { key: 'lora.r', a: 8, b: 16 },
        { key: 'lr', a: 0.001, b: 0.0005 },
        { key: 'warmup', b: 10 },
      ]);
      const acc = d.metrics.find((m) => m.name === 'accuracy')!;
      assert.ok(Math.abs(acc.delta! - 0.01) < 1e-12);
      assert.deepEqual(
        d.metrics.find((m) => m.name === 'loss'),
        { name: 'loss', b: 0.2 },
      );
      assert.deepEqual(
        d.metrics.find((m) => m.name === 'per_class.spam.f1'),
        { name: 'per_class.spam.f1', a: 0.9 },
      );
      assert.deepEqual(
        d.data.added.map((x) => x.sha256),
        [sha('f')],
      );
      assert.deepEqual(
        d.data.removed.map((x) => x.sha256),
        [sha('b')],
      );
      assert.deepEqual(
        d.data.unchanged.map((x) => x.name),
        ['eval'],
      );
      assert.deepEqual(d.artifacts, [
        { role: 'onnx', a: sha('d'), b: sha('9'), changed: true },
        { role: 'tokenizer', a: sha('e'), b: sha('e'), changed: false },
      ]);
      assert.equal(d.specHashChanged, false);
      assert.equal((await reg.diffVersions('spam-clf', 2, 2)).params.length, 0);
      await reg.close();
    });

    test('invalid registrations are refused with the field named and nothing written', async (t) => {
      const reg = await openRegistry(await db.fresh(t), { now });
      const bad: [Partial<RegisterInput>, RegExp][] = [
        [{ name: 'has space' }, /register\.name/],
        [{ artifacts: [] }, /register\.artifacts: a version needs at least one artifact/],
        [{ artifacts: [{ role: 'onnx', uri: 'u', sha256: 'XYZ', bytes: 1 }] }, /register\.artifacts\[0\]\.sha256/],
        [
          {
            artifacts: [
              { role: 'onnx', uri: 'u', sha256: sha('1'), bytes: 1 },
              { role: 'onnx', uri: 'v', sha256: sha('2'), bytes: 2 },
            ],
          },
          /artifacts\[1\]\.role: role 'onnx' appears twice/,
        ],
        [{ artifacts: [{ role: 'onnx', uri: 'u', sha256: sha('1'), bytes: -1 }] }, /bytes/],
        [{ metrics: { accuracy: NaN } }, /register\.metrics\.accuracy: metric is NaN/],
        [{ metrics: { accuracy: 'high' } }, /register\.metrics\.accuracy/],
        [{ params: { f: () => 1 } as never }, /register\.params\.f/],
        [{ data: [{ name: 'train', sha256: 'nope' }] }, /register\.data\[0\]\.sha256/],
        [{ runId: '' }, /register\.runId/],
      ];
      for (const [over, re] of bad)
        await assert.rejects(
          () => reg.registerVersion(input('r1', over)),
          (e: unknown) => e instanceof InputError && re.test(e.message),
          String(re),
        );
      assert.deepEqual(await reg.listModels(), []);
      await reg.close();
    });

    test('concurrent processes get contiguous versions and retries never duplicate', { timeout: 60_000 }, async (t) => {
      const path = await db.fresh(t);
      await (await openRegistry(path)).close();
      // Every writer registers its own runs and also "retries" the shared run-0, as two workers
      // picking up the same retried activity would.
      const code = `
      import { openRegistry } from ${JSON.stringify(regTs)};
      const reg = await openRegistry(process.env.REG_PATH);
      const sha = (c) => c.repeat(64);
      const base = { name: 'm', stageId: 'register', specHash: sha('a'), data: [], artifacts: [{ role: 'onnx', uri: 'u', sha256: sha('b'), bytes: 1 }] };
      process.stdout.write('ready\\n');
      await new Promise((r) => process.stdin.once('data', r));
      for (let i = 0; i < 10; i++) {
        // Different runs, same bytes: one version however the writers interleave.
        await reg.registerVersion({ ...base, name: 'dup', runId: process.env.WRITER + '-dup-' + i, artifacts: [{ role: 'onnx', uri: 'u', sha256: sha('f'), bytes: 1 }], reuseVersionWithSame: 'onnx' });
        await reg.registerVersion({ ...base, runId: 'run-0' });
        await reg.registerVersion({ ...base, runId: process.env.WRITER + '-' + i });
        await new Promise((r) => setTimeout(r, 1));
      }
      await reg.close();
      process.exit(0);`;
      await raceProcesses(code, 3, { REG_PATH: path });
      const reg = await openRegistry(path);
      const versions = await reg.listVersions('m');
      assert.deepEqual(
        versions.map((v) => v.version),
        Array.from({ length: 31 }, (_, i) => i + 1),
      );
      assert.equal(new Set(versions.map((v) => v.lineage.runId)).size, 31);
      assert.equal(versions.filter((v) => v.lineage.runId === 'run-0').length, 1);
      assert.equal((await reg.listVersions('dup')).length, 1);
      await reg.close();
    });

    test('metric names from data cannot reach Object.prototype: dots are escaped, unsafe segments dropped, objects have no prototype', async (t) => {
      const reg = await openRegistry(await db.fresh(t), { now });
      const perClass = JSON.parse(
        '{"__proto__.isAdmin": {"f1": 0.5}, "__proto__": {"f1": 0.1}, "constructor": {"f1": 0.2}, "a.b%c": {"f1": 0.3}, "ham": {"f1": 0.9}}',
      );
      await reg.registerVersion(input('run-1', { metrics: { f1_macro: 0.8, per_class: perClass } }));
      const flat = (await reg.getVersion('spam-clf', 1)).metrics;
      assert.equal(flat['per_class.__proto__%2EisAdmin.f1'], 0.5);
      assert.equal(flat['per_class.a%2Eb%25c.f1'], 0.3);
      const nested = unflattenMetrics(flat) as any;
      assert.equal(({} as any).isAdmin, undefined, 'Object.prototype untouched');
      assert.equal(Object.getPrototypeOf(nested), null);
      assert.equal(nested.per_class['__proto__.isAdmin'].f1, 0.5);
      assert.equal(nested.per_class['a.b%c'].f1, 0.3);
      assert.equal(nested.per_class.ham.f1, 0.9);
      assert.equal(Object.hasOwn(nested.per_class, '__proto__'), false);
      assert.equal(Object.hasOwn(nested.per_class, 'constructor'), false);
      // A number and a deeper name under it: no TypeError, the number stays.
      assert.deepEqual({ ...(unflattenMetrics({ a: 1, 'a.b': 2 }) as object) }, { a: 1 });
      await reg.close();
    });

    test('a reused run id with a new execution key gets a new version; the same key with other bytes fails loudly', async (t) => {
      const reg = await openRegistry(await db.fresh(t), { now });
      const a = await reg.registerVersion(input('nightly', { idempotencyKey: 'nightly/exec-1/register' }));
      const bytes2 = { artifacts: [{ role: 'onnx', uri: 'artifact://sha256/' + sha('9'), sha256: sha('9'), bytes: 10 }] };
      const b = await reg.registerVersion(input('nightly', { idempotencyKey: 'nightly/exec-2/register', ...bytes2 }));
      assert.deepEqual([a.version.version, b.version.version, b.created], [1, 2, true]);
      assert.equal((await reg.getVersion('spam-clf', 2)).artifacts[0]!.sha256, sha('9'));
      // The default key (run/stage) keeps its old meaning: the same run and stage is the same registration...
      assert.equal((await reg.registerVersion(input('r'))).created, true);
      // ...and other bytes under a key already used are refused, naming what differs.
      await assert.rejects(
        () => reg.registerVersion(input('nightly', { idempotencyKey: 'nightly/exec-1/register', ...bytes2 })),
        (e: unknown) => e instanceof InputError && /other artifacts \(onnx differ\)/.test(e.message),
      );
      assert.equal((await reg.listVersions('spam-clf')).length, 3);
      await reg.close();
    });

    test(
      'processes racing a compare-and-swap promotion: exactly one wins, the others see AliasMovedError',
      { timeout: 120_000 },
      async (t) => {
        const path = await db.fresh(t);
        const reg = await openRegistry(path, { now });
        for (const r of ['r1', 'r2', 'r3', 'r4', 'r5']) await reg.registerVersion(ownModel(r));
        await reg.setAlias('spam-clf', 'production', 1);
        // Each writer read production = v1 and tries to move it to its own version, as deploy stages do.
        const code = `
        import { openRegistry, AliasMovedError } from ${JSON.stringify(regTs)};
        const reg = await openRegistry(process.env.REG_PATH);
        const to = { a: 2, b: 3, c: 4, d: 5 }[process.env.WRITER];
        process.stdout.write('ready\\n');
        await new Promise((r) => process.stdin.once('data', r));
        try {
          await reg.setAlias('spam-clf', 'production', to, { expect: 1, actor: process.env.WRITER });
          console.error('WON');
        } catch (e) {
          if (!(e instanceof AliasMovedError)) throw e;
        }
        await reg.close();
        process.exit(0);`;
        const stderr = await raceProcesses(code, 4, { REG_PATH: path });
        assert.equal(stderr.filter((e) => e.includes('WON')).length, 1, 'one winner');
        const history = await reg.aliasHistory('spam-clf', 'production');
        assert.equal(history.length, 2, 'one move after the first set');
        assert.equal(history[1]!.fromVersion, 1);
        assert.equal(await reg.aliasVersion('spam-clf', 'production'), history[1]!.toVersion);
        await reg.close();
      },
    );

    test('processes racing the same registration (one idempotency key) get one version between them', { timeout: 120_000 }, async (t) => {
      const path = await db.fresh(t);
      await (await openRegistry(path)).close();
      const code = `
        import { openRegistry } from ${JSON.stringify(regTs)};
        const reg = await openRegistry(process.env.REG_PATH);
        const sha = (c) => c.repeat(64);
        process.stdout.write('ready\\n');
        await new Promise((r) => process.stdin.once('data', r));
        const { version } = await reg.registerVersion({ name: 'm', runId: 'run', stageId: 'register', idempotencyKey: 'run/exec/register', specHash: sha('a'), data: [], artifacts: [{ role: 'onnx', uri: 'u', sha256: sha('b'), bytes: 1 }] });
        console.error('VERSION ' + version.version);
        await reg.close();
        process.exit(0);`;
      const stderr = await raceProcesses(code, 4, { REG_PATH: path });
      assert.deepEqual(
        stderr.map((e) => /VERSION (\d+)/.exec(e)?.[1]),
        ['1', '1', '1', '1'],
      );
      const reg = await openRegistry(path);
      assert.equal((await reg.listVersions('m')).length, 1);
      await reg.close();
    });

    /**
     * A deploy asked sameModel once per version in the alias's history (a nightly alias: 365 queries a year, each a round
     * trip to PostgreSQL). One query now; its answers are those of the per-version reads, on a history with twins (one
     * model's bytes under two versions, with and without a `model` artifact) and rollbacks between and onto them.
     */
    test('rolledBackFrom reads the history and which of its versions are one model in one query, answering as per-version reads do', async (t) => {
      const reg = await openRegistry(await db.fresh(t), { now });
      t.after(() => reg.close());
      const onnxOnly = (run: string, mark: string, more: RegisterInput['artifacts'] = []) =>
        testVersion('m', mark, { runId: run, artifacts: [{ role: 'onnx', uri: 'u', sha256: sha('f'), bytes: 1 }, ...more] });
      // v1 a, v2 b, v3 b, v4 c, v5 a; v6 and v7 one onnx file and no model folder; v8 a model folder beside that
      // onnx file (another model: its artifacts differ); v9 c, never on the alias.
      for (const [run, mark] of [
        ['1', 'a'],
        ['2', 'b'],
        ['3', 'b'],
        ['4', 'c'],
        ['5', 'a'],
      ])
        await reg.registerVersion(testVersion('m', mark, { runId: run }));
      await reg.registerVersion(onnxOnly('6', 'f'));
      await reg.registerVersion(onnxOnly('7', 'f'));
      await reg.registerVersion(onnxOnly('8', 'f', [{ role: 'model', uri: 'u', sha256: sha('d'), bytes: 1 }]));
      await reg.registerVersion(testVersion('m', 'c', { runId: '9' }));
      const set = (v: number) => setAliasAsBefore(reg, 'm', 'production', v);
      const back = () => reg.rollback('m', 'production', { actor: 'oncall' });
      for (const step of [() => set(1), () => set(2), () => set(3), back, () => set(4), back, () => set(5), () => set(6), () => set(7)])
        await step();
      for (const step of [back, back, () => set(8), back]) await step();

      const perVersion = async (v: number) => {
        const history = await reg.aliasHistory('m', 'production');
        const same = new Map<number, boolean>([[v, true]]);
        for (const h of history)
          for (const x of [h.toVersion, h.fromVersion]) if (x !== null && !same.has(x)) same.set(x, await reg.sameModel('m', x, v));
        return rollbackHolding(history, (x) => same.get(x) === true);
      };
      const answers: Record<number, number | undefined> = {};
      for (let v = 1; v <= 10; v++) {
        const count = countingQueries(reg);
        const got = await reg.rolledBackFrom('m', 'production', v);
        count.stop();
        assert.equal(count.queries, 1, `v${v}: ${count.queries} queries`);
        assert.deepEqual(got, await perVersion(v), `v${v}`);
        answers[v] = got?.fromVersion ?? undefined;
      }
      // The rollback that took each off production (its from), none for what production serves now (v5, v1's bytes).
      assert.deepEqual(answers, { 1: undefined, 2: undefined, 3: undefined, 4: 4, 5: undefined, 6: 6, 7: 6, 8: 8, 9: 4, 10: undefined });
      assert.equal(await reg.rolledBackFrom('m', 'staging', 4), undefined);
      assert.equal(await reg.rolledBackFrom('m', 'production', 2 ** 31), undefined, 'past INTEGER: no such version');
      assert.equal(await reg.rolledBackFrom('m', 'production', -(2 ** 31) - 1), undefined, 'below INTEGER: no such version');
    });

    test('setAlias with expect is a compare-and-swap', async (t) => {
      const reg = await openRegistry(await db.fresh(t), { now });
      for (const r of ['r1', 'r2', 'r3']) await reg.registerVersion(ownModel(r));
      await reg.setAlias('spam-clf', 'production', 1, { expect: null });
      await reg.setAlias('spam-clf', 'production', 2); // someone else promotes v2 meanwhile
      await assert.rejects(() => reg.setAlias('spam-clf', 'production', 3, { expect: 1 }), AliasMovedError);
      assert.equal(await reg.aliasVersion('spam-clf', 'production'), 2);
      assert.equal((await reg.aliasHistory('spam-clf')).length, 2);
      assert.equal((await reg.setAlias('spam-clf', 'production', 3, { expect: 2 })).changed, true);
      await reg.close();
    });

    test('audit records commit with the registry change and are delivered exactly once, even after a crash between the two', async (t) => {
      const path = await db.fresh(t);
      // On PostgreSQL the audit log shares the registry's database, as with TEMPERED_DATABASE_URL.
      const auditPath = backend === 'postgres' ? path : join(path, '..', 'audit.db');
      const entry = (v: { name: string; version: number }): AuditEntry => ({
        action: 'model.registered',
        subject: `${v.name}@${v.version}`,
        dedupeKey: `run-1/exec/register/registered`,
      });
      const reg = await openRegistry(path, { now });
      await reg.registerVersion(input('run-1'), { audit: entry });
      // The attempt dies here, before the audit append: the record waits in the outbox.
      assert.equal((await reg.pendingAudit()).length, 1);
      await reg.close();
      const retry = await openRegistry(path, { now });
      assert.equal((await retry.registerVersion(input('run-1'), { audit: entry })).created, false);
      // A delivery that dies after the append but before the outbox row is removed...
      const log = await openAudit(auditPath);
      await assert.rejects(
        () =>
          retry.drainAuditOutbox({
            append: async (e) => {
              await log.append(e);
              throw new Error('killed');
            },
          }),
        /killed/,
      );
      // ...is redelivered, and the dedupe key keeps it to one record.
      assert.equal(await retry.drainAuditOutbox(log), 1);
      assert.equal(await retry.drainAuditOutbox(log), 0);
      assert.deepEqual(
        (await log.query({ action: 'model.registered' })).map((r) => r.subject),
        ['spam-clf@1'],
      );
      assert.equal((await log.verify()).ok, true);
      // An alias move with an audit record goes the same way; an invalid record refuses the move.
      await assert.rejects(
        () => retry.setAlias('spam-clf', 'production', 1, { audit: () => ({ action: 'BAD', subject: 'x', dedupeKey: 'k' }) }),
        InputError,
      );
      assert.equal(await retry.aliasVersion('spam-clf', 'production'), null);
      await retry.setAlias('spam-clf', 'production', 1, {
        audit: (c) => ({ action: 'model.promoted', subject: `spam-clf@${c.toVersion}`, dedupeKey: `promote/${c.id}` }),
      });
      await retry.drainAuditOutbox(log);
      assert.equal((await log.query({ action: 'model.promoted' })).length, 1);
      await log.close();
      await retry.close();
    });
  });
}

test('flattenMetrics sorts and dots nested names', () => {
  assert.deepEqual(Object.keys(flattenMetrics({ z: 1, a: { c: 2, b: 3 } })), ['a.b', 'a.c', 'z']);
});

test('reopening keeps data, applies migrations once and uses WAL', async (t) => {
  const path = tmpDb(t);
  const first = await openRegistry(path, { now });
  await first.registerVersion(input('run-1'));
  await first.close();
  const reg = await openRegistry(path, { now });
  assert.equal((await reg.listVersions('spam-clf')).length, 1);
  assert.equal((reg.db as SqliteDatabase).raw.pragma('journal_mode', { simple: true }), 'wal');
  await reg.close();
  const raw = new Database(path);
  assert.deepEqual(raw.prepare('SELECT scope, version FROM schema_migrations ORDER BY version').all(), [
    { scope: 'registry', version: 1 },
    { scope: 'registry', version: 2 },
  ]);
  raw.prepare("INSERT INTO schema_migrations VALUES ('registry', 99, 'future', 'x')").run();
  raw.close();
  await assert.rejects(() => openRegistry(path), /schema is at version 99 but this tempered knows up to 2/);
});

test('a version 1 registry migrates: rows, keys and foreign keys survive', async (t) => {
  const path = tmpDb(t);
  mkdirSync(join(path, '..'), { recursive: true });
  const raw = new Database(path);
  raw.exec(
    `CREATE TABLE schema_migrations (scope TEXT NOT NULL, version INTEGER NOT NULL, name TEXT NOT NULL, applied_at TEXT NOT NULL, PRIMARY KEY (scope, version))`,
  );
  raw.exec(REGISTRY_SCHEMA.sqlite[0]!.sql);
  raw.prepare("INSERT INTO schema_migrations VALUES ('registry', 1, 'initial registry', 'x')").run();
  raw.exec(`INSERT INTO models VALUES ('old', 't');
    INSERT INTO versions (id, model, version, run_id, stage_id, created_at, created_by, spec_hash, params_json, data_json) VALUES (7, 'old', 1, 'run-1', 'register', 't', 'a', 's', '{}', '[]');
    INSERT INTO artifacts VALUES (7, 'onnx', 'u', '${sha('d')}', 1, NULL);
    INSERT INTO metrics VALUES (7, 'f1', 0.5);`);
  raw.close();
  const reg = await openRegistry(path, { now });
  const file = (reg.db as SqliteDatabase).raw;
  assert.deepEqual((await reg.getVersion('old', 1)).metrics, { f1: 0.5 });
  assert.equal(
    (await reg.registerVersion(input('run-1', { name: 'old', artifacts: [{ role: 'onnx', uri: 'u', sha256: sha('d'), bytes: 1 }] })))
      .created,
    false,
    'the old (run, stage) key still dedupes',
  );
  assert.deepEqual(file.pragma('foreign_key_check'), []);
  assert.equal(file.pragma('foreign_keys', { simple: true }), 1);
  assert.throws(() => file.prepare("INSERT INTO artifacts VALUES (999, 'x', 'u', 's', 1, NULL)").run(), /FOREIGN KEY/);
  await reg.close();
});
