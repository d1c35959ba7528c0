import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ArtifactStore, uriFor } from '../src/store/artifact-store.ts';
import { FolderBackend } from '../src/store/folder-backend.ts';
import { StageCache, type CacheRecord, type StageCacheOptions } from '../src/store/stage-cache.ts';
import { DatabaseRecords, STAGE_CACHE_SCHEMA } from '../src/store/shared-records.ts';
import { KeptOpen } from '../src/db/kept-open.ts';
import { openDatabase } from '../src/db/database.ts';
import { postgresUnavailable, useDatabases } from '../src/db/postgres.testing.ts';
import { startTestS3, type TestS3 } from './helpers/seaweedfs.ts';

let s3: TestS3 | undefined;

type T = { after: (fn: () => void | Promise<void>) => void };

function setup(t: T, remote = false) {
  const dir = mkdtempSync(join(tmpdir(), 'tempered-cache-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const store = new ArtifactStore(join(dir, 'store'), { remote: remote ? s3!.backend() : undefined });
  return { dir, store, cache: new StageCache(join(dir, 'cache'), store) };
}

/**
 * One worker's stage cache in `dir/<name>`: artifacts shared through the bucket prefix `url`, and the
 * records there too, or in the database `dbUrl` when given (as the CLI does with TEMPERED_DATABASE_URL).
 */
function worker(t: T, dir: string, name: string, url: string, dbUrl?: string, opts: StageCacheOptions = {}) {
  const store = new ArtifactStore(join(dir, `store-${name}`), { remote: s3!.backend(url) });
  let shared: DatabaseRecords | undefined;
  if (dbUrl) {
    const db = new KeptOpen(() => openDatabase(dbUrl, STAGE_CACHE_SCHEMA));
    t.after(() => db.close());
    shared = new DatabaseRecords(db);
  }
  return { store, cache: new StageCache(join(dir, `cache-${name}`), store, { ...opts, shared }) };
}

const record = (key: string, outputs: CacheRecord['outputs']): CacheRecord => ({
  key,
  kind: 'k',
  outputs,
  producedBy: { runId: 'r', stageId: 's' },
  createdAt: 'now',
});
const damage = (path: string) => {
  chmodSync(path, 0o644);
  writeFileSync(path, 'bit rot');
};

test('a hit whose artifact (or a file of its tree) no longer matches its hash is evicted, not served', async (t) => {
  const { dir, store, cache } = setup(t);
  const file = await store.putBytes('table bytes', { mediaType: 'application/octet-stream' });
  mkdirSync(join(dir, 'model'));
  writeFileSync(join(dir, 'model', 'model.onnx'), 'weights');
  const tree = await store.putTree(join(dir, 'model'));
  const k1 = 'a'.repeat(64);
  const k2 = 'b'.repeat(64);
  await cache.put(record(k1, { table: file, n: 3 }));
  await cache.put(record(k2, { model: tree }));
  assert.ok(await cache.get(k1));
  assert.ok(await cache.get(k2));

  damage(store.pathOf(file));
  assert.equal(await cache.get(k1), undefined);
  assert.equal(existsSync(join(dir, 'cache', 'aa', `${k1}.json`)), false, 'the record was evicted');

  const weights = (await store.readJson<{ files: { name: string; sha256: string }[] }>(tree)).files[0]!.sha256;
  damage(store.pathOf(uriFor(weights)));
  assert.equal(await cache.get(k2), undefined);
  assert.equal(store.has(weights), false, 'the damaged file was quarantined');
});

test('a record cut short or zeroed (a power cut before it reached the disk) is a miss, and the next put writes it afresh', async (t) => {
  const { dir, store, cache } = setup(t);
  const file = await store.putBytes('rows', { mediaType: 'application/octet-stream' });
  const key = 'f'.repeat(64);
  const path = join(dir, 'cache', 'ff', `${key}.json`);
  await cache.put(record(key, { table: file }));
  const whole = readFileSync(path);
  for (const damaged of [whole.subarray(0, 4096 > whole.length ? whole.length - 1 : 4096), Buffer.alloc(whole.length), Buffer.alloc(0)]) {
    writeFileSync(path, damaged);
    assert.equal(await cache.get(key), undefined, `a record of ${damaged.length} bytes, damaged`);
    await cache.put(record(key, { table: file }));
    assert.deepEqual((await cache.get(key))?.outputs, { table: file });
  }
});

const MODES = [
  ['local', 'stage cache in the local folder'],
  ['s3', 'stage cache on SeaweedFS S3'],
  ['database', 'stage cache records in PostgreSQL, artifacts on SeaweedFS S3'],
] as const;

for (const [mode, title] of MODES)
  describe(title, { skip: mode === 'database' ? postgresUnavailable() : undefined }, () => {
    if (mode !== 'local') {
      before(async () => {
        s3 = await startTestS3();
      });
      after(async () => {
        await s3?.stop();
      });
    }
    const pg = mode === 'database' ? useDatabases('postgres') : undefined;
    /** A fresh bucket prefix and, in database mode, a fresh database: what the workers of one test share. */
    const shared = async (t: T) => ({ url: s3!.freshUrl(), dbUrl: pg ? await pg.fresh(t) : undefined });
    const one = async (t: T) => {
      if (mode === 'local') return setup(t);
      const dir = mkdtempSync(join(tmpdir(), 'tempered-cache-'));
      t.after(() => rmSync(dir, { recursive: true, force: true }));
      const { url, dbUrl } = await shared(t);
      return { dir, ...worker(t, dir, 'a', url, dbUrl) };
    };

    test('concurrent puts of one key (same outputs, other runs) all succeed and leave one whole record', async (t) => {
      // Stages of one worker finishing the same work at once (50 pipelines ingesting one file): each put
      // hashed its own record but uploaded the shared local file, which another put had meanwhile
      // replaced with its record, so the store refused the bytes (BadDigest) and the stage failed.
      const { cache } = await one(t);
      const key = 'e'.repeat(64);
      const recs = Array.from({ length: 12 }, (_, i) => ({ ...record(key, { n: 1 }), producedBy: { runId: `run-${i}`, stageId: 's' } }));
      for (let round = 0; round < 3; round++) await Promise.all(recs.map((r) => cache.put(r)));
      const got = await cache.get(key);
      assert.ok(got && recs.some((r) => r.producedBy.runId === got.producedBy.runId));
    });

    test('evictReferencing finds records naming an object directly or inside a tree', async (t) => {
      const { dir, store, cache } = await one(t);
      mkdirSync(join(dir, 'm'));
      writeFileSync(join(dir, 'm', 'w.bin'), 'w');
      const tree = await store.putTree(join(dir, 'm'));
      const other = await store.putBytes('other', { mediaType: 'text/plain' });
      const inner = (await store.readJson<{ files: { sha256: string }[] }>(tree)).files[0]!.sha256;
      await cache.put(record('c'.repeat(64), { model: tree }));
      await cache.put(record('d'.repeat(64), { x: other }));
      assert.deepEqual(await cache.evictReferencing(inner), ['c'.repeat(64)]);
      assert.ok(await cache.get('d'.repeat(64)));
    });

    if (mode !== 'local')
      describe('a record whose shared copy uploads after the stage', () => {
        test('put returns once the local copy is written; another worker finds the record once flush() returns', async (t) => {
          const { dir } = setup(t);
          const { url, dbUrl } = await shared(t);
          const { store: storeA, cache: a } = worker(t, dir, 'a', url, dbUrl);
          const file = await storeA.putBytes('rows', { mediaType: 'application/octet-stream' });
          const key = '1'.repeat(64);
          await a.put(record(key, { table: file }), { upload: 'background' });
          assert.equal(a.pendingUploads, 1, 'the upload is still under way when put returns');
          assert.ok(await a.get(key), 'this worker finds its local copy at once');
          await a.flush();
          assert.equal(a.pendingUploads, 0);
          const { cache: b } = worker(t, dir, 'b', url, dbUrl);
          assert.equal((await b.get(key))?.producedBy.runId, 'r', 'another worker reads the shared copy');
          if (mode === 'database') {
            const { cache: objectsOnly } = worker(t, dir, 'c', url);
            assert.equal(await objectsOnly.get(key), undefined, 'the record is in the database, not in the bucket');
          }
        });

        test('an upload that fails is reported, not thrown, and leaves the local copy in use', async (t) => {
          const { dir } = setup(t);
          const errors: string[] = [];
          const onUploadError = (key: string, e: unknown) => errors.push(`${key}: ${(e as Error).message}`);
          // Refused every time: a bucket that does not exist, or a database login with the wrong password.
          const refused =
            mode === 'database'
              ? worker(t, dir, 'x', s3!.freshUrl(), Object.assign(new URL((await shared(t)).dbUrl!), { password: 'wrong' }).toString(), {
                  onUploadError,
                })
              : worker(t, dir, 'x', 's3://no-such-bucket-here/x', undefined, { onUploadError });
          const key = '2'.repeat(64);
          await refused.cache.put(record(key, { n: 1 }), { upload: 'background' });
          await refused.cache.flush();
          assert.equal(errors.length, 1);
          assert.match(
            errors[0]!,
            mode === 'database' ? /^2{64}: .*refused the login/ : /^2{64}: .*the bucket no-such-bucket-here does not exist/,
          );
          assert.ok(existsSync(join(dir, 'cache-x', '22', `${key}.json`)), 'the local copy stays');
        });

        test('background puts of one key go up in order: flush waits for all of them and the last one is stored', async (t) => {
          const { dir } = setup(t);
          const { url, dbUrl } = await shared(t);
          const { cache: a } = worker(t, dir, 'a', url, dbUrl);
          const key = '4'.repeat(64);
          for (let i = 0; i < 5; i++)
            await a.put({ ...record(key, { n: 1 }), producedBy: { runId: `run-${i}`, stageId: 's' } }, { upload: 'background' });
          await a.flush();
          assert.equal(a.pendingUploads, 0);
          const { cache: b } = worker(t, dir, 'b', url, dbUrl);
          assert.equal((await b.get(key))?.producedBy.runId, 'run-4');
        });

        test('evicting a record waits for its upload, so the record does not come back for other workers', async (t) => {
          const { dir } = setup(t);
          const { url, dbUrl } = await shared(t);
          const { cache: a } = worker(t, dir, 'a', url, dbUrl);
          const key = '3'.repeat(64);
          await a.put(record(key, { n: 1 }), { upload: 'background' });
          await a.evict(key);
          await a.flush();
          const { cache: b } = worker(t, dir, 'b', url, dbUrl);
          assert.equal(await b.get(key), undefined);
        });
      });
  });

test('a hostile or damaged shared record is a miss and is removed, never a hit, a crash, or a copy on this worker', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tempered-cache-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const shared = new FolderBackend(join(dir, 'shared'));
  const store = new ArtifactStore(join(dir, 'store'), { remote: shared });
  const cache = new StageCache(join(dir, 'cache'), store);
  const notATree = await store.putJson({ hello: 'world' });
  const by = { runId: 'r', stageId: 's' };
  const hostile: [string, unknown][] = [
    ['null', null],
    ['key only', {}],
    ['outputs missing', { kind: 'k', producedBy: by, createdAt: 'now' }],
    ['producedBy missing', { kind: 'k', outputs: {}, createdAt: 'now' }],
    ['a malformed reference', { kind: 'k', outputs: { t: { uri: 'artifact://sha256/../../x', sha256: 'x', bytes: 1 } }, producedBy: by }],
    [
      'a tree that is other JSON',
      { kind: 'k', outputs: { m: { ...notATree, mediaType: 'application/vnd.tempered.tree+json' } }, producedBy: by },
    ],
  ];
  for (const [i, [label, body]] of hostile.entries()) {
    const key = String(i).repeat(64);
    const rec = body && typeof body === 'object' ? { key, ...body } : body;
    await shared.putBytes(`cache/${key.slice(0, 2)}/${key}.json`, Buffer.from(JSON.stringify(rec)), { ifAbsent: false });
    assert.equal(await cache.get(key), undefined, label);
    assert.equal(existsSync(join(dir, 'cache', key.slice(0, 2), `${key}.json`)), false, `${label}: no local copy`);
    assert.equal(await shared.head(`cache/${key.slice(0, 2)}/${key}.json`), undefined, `${label}: removed from the store`);
  }
  // A record evicting by hash walks past a local record that is not an object.
  mkdirSync(join(dir, 'cache', 'ff'), { recursive: true });
  writeFileSync(join(dir, 'cache', 'ff', `${'f'.repeat(64)}.json`), 'null');
  assert.deepEqual(await cache.evictReferencing(notATree.sha256), []);
});
