/**
 * listVersions (the dashboard's Models page, `models list --json`-style reads) asks the database a
 * fixed number of queries however many versions a model has, and gives what getVersion gives for each;
 * listVersionPage (the Models page since it shows the newest versions and older ones on request) reads
 * the rows of its page's versions and no others, and aliasHistory's `newest` the newest changes alone.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { BACKENDS, postgresUnavailable, useDatabases } from '../db/postgres.testing.ts';
import { openRegistry, type Registry } from './registry.ts';
import { countingQueries as counting, testVersion } from './versions.testing.ts';

const VERSIONS = 25;

async function register(reg: Registry): Promise<void> {
  for (let v = 1; v <= VERSIONS; v++)
    await reg.registerVersion(
      testVersion('clf', String.fromCharCode(97 + (v % 26)) + v, {
        runId: `r${v}`,
        metrics: { accuracy: v / 100, per_class: { spam: { f1: v / 200 } } },
        tags: v % 2 ? { team: 'a', odd: 'yes' } : {},
        artifacts: [
          { role: 'tokenizer', uri: 'u2', sha256: 'e'.repeat(64), bytes: 2 },
          { role: 'model', uri: 'u', sha256: `${v}`.padEnd(64, 'f'), bytes: v, mediaType: 'application/onnx' },
        ],
      }),
    );
  await reg.registerVersion(testVersion('other', 'a'));
  await reg.setAlias('clf', 'production', 3);
  await reg.setAlias('clf', 'staging', 3);
  await reg.setAlias('clf', 'canary', 7);
}

for (const backend of BACKENDS)
  describe(backend, { skip: backend === 'postgres' ? postgresUnavailable() : undefined }, () => {
    const db = useDatabases(backend);

    test(`listVersions of ${VERSIONS} versions: a bounded number of queries, each version as getVersion reads it`, async (t) => {
      const reg = await openRegistry(await db.fresh(t, 'registry.db'));
      try {
        await register(reg);
        const read = counting(reg);
        const listed = await reg.listVersions('clf');
        assert.ok(read.queries <= 6, `${read.queries} queries for ${VERSIONS} versions`);
        read.stop();

        assert.equal(listed.length, VERSIONS);
        for (const v of listed) assert.deepEqual(v, await reg.getVersion('clf', v.version));
        assert.deepEqual(listed[2]!.aliases, ['production', 'staging']);
        assert.deepEqual(
          listed[0]!.artifacts.map((a) => a.role),
          ['model', 'tokenizer'],
        );
        assert.deepEqual(listed[0]!.tags, { odd: 'yes', team: 'a' });
        assert.equal(listed[1]!.metrics['per_class.spam.f1'], 0.01);
      } finally {
        await reg.close();
      }
    });

    test(`listVersionPage: pages of ${VERSIONS} versions newest first, each read alone; aliasHistory's newest`, async (t) => {
      const reg = await openRegistry(await db.fresh(t, 'registry.db'));
      try {
        await register(reg);
        const every = (await reg.listVersions('clf')).reverse();
        const read = counting(reg);
        const first = await reg.listVersionPage('clf', { limit: 10 });
        // A page's rows: the model's check, 11 versions (one says more remain), and the 10's artifacts
        // (2 each), metrics (2 each), tags (2 on odd versions) and the model's 3 aliases; the whole model is 150 more.
        const tagRows = every.slice(0, 10).reduce((n, v) => n + Object.keys(v.tags).length, 0);
        assert.equal(read.rows, 1 + 11 + 20 + 20 + tagRows + 3);
        assert.ok(read.queries <= 6, `${read.queries} queries`);
        read.stop();
        assert.deepEqual(first, { versions: every.slice(0, 10), more: true });
        // And what SQLite reads to answer them: the page's versions through the (model, version) index.
        if (backend === 'sqlite')
          for (const [sql, params] of read.sql) {
            const plan = (await reg.db.all<{ detail: string }>(`EXPLAIN QUERY PLAN ${sql}`, params as never)).map((p) => p.detail);
            assert.ok(!plan.some((d) => /^SCAN (versions|metrics|artifacts|tags|v|m|a|t)\b/.test(d)), `${sql}\n${plan.join('\n')}`);
          }

        const second = await reg.listVersionPage('clf', { before: 16, limit: 10 });
        assert.deepEqual(second, { versions: every.slice(10, 20), more: true });
        assert.deepEqual(await reg.listVersionPage('clf', { before: 6, limit: 10 }), { versions: every.slice(20), more: false });
        assert.deepEqual(await reg.listVersionPage('clf', { before: 6, limit: 5 }), { versions: every.slice(20), more: false });
        assert.deepEqual(await reg.listVersionPage('clf', { before: 1, limit: 10 }), { versions: [], more: false });
        // Past INTEGER (PostgreSQL would refuse the comparison): every version is below it.
        assert.deepEqual(await reg.listVersionPage('clf', { before: 2 ** 40, limit: 3 }), { versions: every.slice(0, 3), more: true });
        await assert.rejects(reg.listVersionPage('nope', { limit: 10 }), /no model named 'nope'/);
        await assert.rejects(reg.listVersionPage('clf', { limit: 0 }), /limit must be a whole number/);

        for (let i = 0; i < 4; i++) await reg.setAlias('clf', 'production', 10 + i);
        const history = await reg.aliasHistory('clf');
        assert.equal(history.length, 7);
        assert.deepEqual(await reg.aliasHistory('clf', undefined, { newest: 3 }), history.slice(-3));
        assert.deepEqual(
          await reg.aliasHistory('clf', 'production', { newest: 2 }),
          history.filter((h) => h.alias === 'production').slice(-2),
        );
      } finally {
        await reg.close();
      }
    });
  });
