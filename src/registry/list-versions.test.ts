/**
 * listVersions (the dashboard's Models page, `models list --json`-style reads) asks the database a
 * fixed number of queries however many versions a model has, and gives what getVersion gives for each.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Queryable } from '../db/database.ts';
import { BACKENDS, postgresUnavailable, useDatabases } from '../db/postgres.testing.ts';
import { openRegistry } from './registry.ts';
import { testVersion } from './versions.testing.ts';

const VERSIONS = 25;

for (const backend of BACKENDS)
  describe(backend, { skip: backend === 'postgres' ? postgresUnavailable() : undefined }, () => {
    const db = useDatabases(backend);

    test(`listVersions of ${VERSIONS} versions: a bounded number of queries, each version as getVersion reads it`, async (t) => {
      const reg = await openRegistry(await db.fresh(t, 'registry.db'));
      try {
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

        let queries = 0;
        const snapshot = reg.db.snapshot.bind(reg.db);
        reg.db.snapshot = <T>(fn: (q: Queryable) => Promise<T>) =>
          snapshot((q) =>
            fn({
              dialect: q.dialect,
              all: (sql, params) => (queries++, q.all(sql, params)),
              get: (sql, params) => (queries++, q.get(sql, params)),
              run: (sql, params) => (queries++, q.run(sql, params)),
            } as Queryable),
          );
        const listed = await reg.listVersions('clf');
        assert.ok(queries <= 6, `${queries} queries for ${VERSIONS} versions`);
        reg.db.snapshot = snapshot;

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
  });
