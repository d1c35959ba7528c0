/**
 * `tempered import-home DIR` (src/registry/import-home.ts), from a one-machine home built with the library into a real
 * PostgreSQL database and a real SeaweedFS bucket: the registry (versions, metrics, tags, aliases and their history,
 * the undelivered outbox), the audit chain with its head, the objects those name (a tree's files, what a report names)
 * and the stage-cache records arrive exactly; a second import is refused; a damaged object refuses the import and
 * leaves the database empty, and a rerun once it is restored completes; a dry run writes nothing.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { pathToFileURL } from 'node:url';
import BetterSqlite3 from 'better-sqlite3';
import { join } from 'node:path';
import { AUDIT_SCHEMA, openAudit, type AuditLog } from '../src/audit/log.ts';
import { openDatabase } from '../src/db/database.ts';
import { postgresUnavailable, useDatabases } from '../src/db/postgres.testing.ts';
import { schemaVersions } from '../src/db/postgres.ts';
import { REGISTRY_TABLES } from '../src/registry/import-home.ts';
import { openRegistry, type Registry } from '../src/registry/registry.ts';
import { REGISTRY_SCHEMA } from '../src/registry/schema.ts';
import { statePaths } from '../src/state-paths.ts';
import { ArtifactStore, objectKey } from '../src/store/artifact-store.ts';
import { DatabaseRecords, STAGE_CACHE_SCHEMA } from '../src/store/shared-records.ts';
import { StageCache } from '../src/store/stage-cache.ts';
import { KeptOpen } from '../src/db/kept-open.ts';
import type { ArtifactRef } from '../src/types.ts';
import { runCliInProcess as runCli } from './helpers/cli.ts';
import { useTestS3, type TestS3 } from './helpers/seaweedfs.ts';

type T = { after: (fn: () => void | Promise<void>) => void };
const octets = { mediaType: 'application/octet-stream' };

function tmp(t: T, name: string): string {
  const dir = mkdtempSync(join(tmpdir(), `tempered-import-${name}-`));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

interface Home {
  dir: string;
  /** Every object the home's registry and records name, trees' files included. */
  named: ArtifactRef[];
  /** An object of the home's store that nothing names. */
  stray: ArtifactRef;
  onnx2: ArtifactRef;
}

/** A home as one machine leaves it: two versions, the alias moved from v1 to v2, audit records, a stage-cache record. */
async function buildHome(t: T): Promise<Home> {
  const dir = tmp(t, 'home');
  const paths = statePaths(dir, {});
  const store = new ArtifactStore(paths.store);
  const onnx1 = await store.putBytes('weights of v1', octets);
  const onnx2 = await store.putBytes('weights of v2', octets);
  const data = await store.putBytes('text,label\nhi,ham\n', { mediaType: 'application/vnd.apache.arrow.file' });
  const folder = join(dir, 'model-folder');
  mkdirSync(join(folder, 'sub'), { recursive: true });
  writeFileSync(join(folder, 'config.json'), '{"layers": 2}');
  writeFileSync(join(folder, 'sub', 'adapter.bin'), 'adapter bytes');
  const tree = await store.putTree(folder);
  const treeFiles = [await store.putBytes('adapter bytes', octets), await store.putBytes('{"layers": 2}', octets)];
  // A report names an object only in its content: carried because the record names the report.
  const named = await store.putBytes('a table the report names', octets);
  const report = await store.putJson({ kind: 'split', tables: [named.sha256] });
  const stray = await store.putBytes('nothing names me', octets);

  const reg = await openRegistry(paths.registryDb);
  const log = await openAudit(paths.auditDb);
  try {
    const register = (version: number, onnx: ArtifactRef, extra: ArtifactRef[] = []) =>
      reg.registerVersion(
        {
          name: 'spam-clf',
          runId: `run-${version}`,
          stageId: 'register',
          specHash: String(version).repeat(64),
          data: [{ name: 'train', sha256: data.sha256, uri: data.uri, rows: 1 }],
          artifacts: [
            { role: 'onnx', uri: onnx.uri, sha256: onnx.sha256, bytes: onnx.bytes },
            ...extra.map((a) => ({ role: 'model', ...a })),
          ],
          metrics: { accuracy: 0.5 + version / 10, per_class: { spam: { f1: 0.25 * version } } },
          params: { lr: 0.001 * version },
          tags: { team: 'fraud' },
          description: `version ${version}`,
        },
        {
          audit: (v) => ({
            action: 'model.registered',
            subject: `${v.name}@${v.version}`,
            model: `${v.name}@${v.version}`,
            dedupeKey: `run-${version}/register`,
          }),
        },
      );
    await log.append({ action: 'run.submitted', subject: 'run-1', runId: 'run-1', details: { pipeline: 'spam.yaml' } });
    await register(1, onnx1);
    await reg.drainAuditOutbox(log);
    await reg.setAlias('spam-clf', 'production', 1, { actor: 'alice', reason: 'first' });
    await register(2, onnx2, [{ uri: tree.uri, sha256: tree.sha256, bytes: tree.bytes, mediaType: tree.mediaType }]);
    await reg.drainAuditOutbox(log);
    await reg.setAlias('spam-clf', 'production', 2, { actor: 'bob', reason: 'better' });
    await log.append({ action: 'model.promoted', subject: 'spam-clf@2', model: 'spam-clf@2', actor: 'bob' });
    // Left in the outbox, as a process that died before delivering it leaves it.
    await reg.registerVersion(
      {
        name: 'other',
        runId: 'run-3',
        stageId: 'register',
        specHash: 'c'.repeat(64),
        data: [],
        artifacts: [{ role: 'onnx', uri: onnx1.uri, sha256: onnx1.sha256, bytes: onnx1.bytes }],
      },
      { audit: (v) => ({ action: 'model.registered', subject: `${v.name}@${v.version}`, dedupeKey: 'run-3/register' }) },
    );
  } finally {
    await reg.close();
    await log.close();
  }
  const cache = new StageCache(paths.cache, store);
  const record = (key: string, outputs: Record<string, ArtifactRef>) =>
    cache.put({ key, kind: 'split', outputs, producedBy: { runId: 'run-1', stageId: 'split' }, createdAt: new Date().toISOString() });
  await record('d'.repeat(64), { report, model: tree });
  // Names an object the home no longer has: a miss on any worker, left out.
  await record('e'.repeat(64), { gone: { uri: `artifact://sha256/${'f'.repeat(64)}`, sha256: 'f'.repeat(64), bytes: 3, mediaType: 'x' } });
  // A file of its key that is no record (no kind, no producedBy): a miss for the stage cache, left out too.
  mkdirSync(join(paths.cache, 'aa'), { recursive: true });
  writeFileSync(join(paths.cache, 'aa', `${'a'.repeat(64)}.json`), JSON.stringify({ key: 'a'.repeat(64), outputs: {} }));
  return { dir, named: [onnx1, onnx2, data, tree, ...treeFiles, report, named], stray, onnx2 };
}

async function dump(reg: Registry) {
  const models = await reg.listModels();
  const versions = [];
  for (const m of models) versions.push(...(await reg.listVersions(m.name)));
  const history = [];
  for (const m of models) history.push(...(await reg.aliasHistory(m.name)));
  return { models, versions, history, pending: await reg.pendingAudit() };
}

test('import-home carries every table and column of the registry schema: a migration that adds one must add it to REGISTRY_TABLES', async (t) => {
  const file = join(tmp(t, 'schema'), 'registry.db');
  await (await openRegistry(file)).close();
  const db = new BetterSqlite3(file, { readonly: true });
  t.after(() => db.close());
  const names = (sql: string) => (db.prepare(sql).all() as { name: string }[]).map((r) => r.name).sort();
  const tables = names("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT IN ('schema_migrations', 'sqlite_sequence')");
  assert.deepEqual(tables, REGISTRY_TABLES.map((r) => r.table).sort());
  for (const r of REGISTRY_TABLES) assert.deepEqual(names(`PRAGMA table_info(${r.table})`), [...r.columns].sort(), r.table);
});

describe('import-home into PostgreSQL and SeaweedFS', { skip: postgresUnavailable() }, () => {
  let s3: TestS3;
  useTestS3((h) => (s3 = h));
  const dbs = useDatabases('postgres');
  const envOf = async (t: T, url = s3.freshUrl()) => ({
    ...s3.env,
    // The importing host's own home: not the one imported.
    TEMPERED_HOME: tmp(t, 'host'),
    TEMPERED_STORE: url,
    TEMPERED_DATABASE_URL: await dbs.fresh(t),
    TEMPERED_ACTOR: 'ops-carol',
  });
  const open = async <X extends { close(): Promise<void> }>(t: T, x: Promise<X>) => {
    const v = await x;
    t.after(() => v.close());
    return v;
  };

  test('carries the registry, the audit chain with its head, the objects and the stage-cache records; a second import is refused', async (t) => {
    const home = await buildHome(t);
    const env = await envOf(t);
    const r = await runCli(['import-home', home.dir, '--json'], env);
    assert.equal(r.code, 0, r.stderr);
    const report = JSON.parse(r.stdout);

    const paths = statePaths(home.dir, {});
    const localReg = await open(t, openRegistry(paths.registryDb));
    const sharedReg = await open(t, openRegistry(env.TEMPERED_DATABASE_URL));
    const local = await dump(localReg);
    assert.deepEqual(await dump(sharedReg), local, 'versions, metrics, tags, artifacts, aliases, alias history and outbox as they were');
    assert.equal(local.versions.length, 3);
    assert.deepEqual(
      local.history.map((h) => [h.alias, h.fromVersion, h.toVersion, h.actor]),
      [
        ['production', null, 1, 'alice'],
        ['production', 1, 2, 'bob'],
      ],
    );
    assert.equal(local.pending.length, 1);
    // Ids were copied, and the next registration gets a fresh one.
    const v = await sharedReg.registerVersion({
      name: 'spam-clf',
      runId: 'run-9',
      stageId: 'register',
      specHash: '9'.repeat(64),
      data: [],
      artifacts: [{ role: 'onnx', uri: home.onnx2.uri, sha256: home.onnx2.sha256, bytes: home.onnx2.bytes }],
    });
    assert.equal(v.version.version, 3);
    assert.equal((await sharedReg.rollback('spam-clf', 'production', { actor: 'x' })).toVersion, 1);

    const localLog: AuditLog = await open(t, openAudit(paths.auditDb));
    const sharedLog: AuditLog = await open(t, openAudit(env.TEMPERED_DATABASE_URL));
    const localHead = (await localLog.head())!;
    assert.deepEqual(report.audit.head, localHead);
    const sharedRecords = await sharedLog.query({});
    assert.deepEqual(sharedRecords.slice(0, localHead.seq), await localLog.query({}), 'every record byte for byte');
    const imported = sharedRecords[localHead.seq]!;
    assert.equal(imported.action, 'home.imported');
    assert.equal(imported.actor, 'ops-carol');
    assert.equal(imported.prevHash, localHead.hash);
    assert.equal(imported.details.head, `${localHead.seq}:${localHead.hash}`);
    assert.equal(imported.details.versions, 3);
    assert.equal(imported.details.home, home.dir);
    assert.deepEqual(await sharedLog.verify({ anchor: localHead, expectRecords: true }), { ok: true, checked: localHead.seq + 1 });
    const verified = await runCli(['audit', '--verify', '--anchor', `${localHead.seq}:${localHead.hash}`], env);
    assert.equal(verified.code, 0, verified.stderr);

    // Every object named is in the bucket, whole; what nothing names is not.
    const fresh = s3.store(env.TEMPERED_STORE);
    for (const ref of home.named) await fresh.verifyDeep(ref);
    assert.equal(await fresh.remote!.head(objectKey(home.stray.sha256)), undefined);
    assert.equal(report.objects.count, home.named.length);
    const recordsDb = new KeptOpen(() => openDatabase(env.TEMPERED_DATABASE_URL, STAGE_CACHE_SCHEMA));
    t.after(() => recordsDb.close());
    const records = new DatabaseRecords(recordsDb);
    assert.equal(await records.get('d'.repeat(64)), readFileSync(join(paths.cache, 'dd', `${'d'.repeat(64)}.json`), 'utf8'));
    assert.equal(await records.get('e'.repeat(64)), undefined);
    assert.equal(await records.get('a'.repeat(64)), undefined);
    assert.deepEqual(report.cacheRecords, { copied: 1, skipped: 2 });

    // The same home again (a rerun after a lost answer to the COMMIT): imported already, nothing left to do.
    const again = await runCli(['import-home', home.dir], env);
    assert.equal(again.code, 1);
    assert.ok(again.stderr.includes(`${home.dir} was imported into`), again.stderr);
    assert.match(again.stderr, new RegExp(`already: its home\\.imported record is seq ${imported.seq}, by ops-carol at `));
    assert.match(again.stderr, /nothing is left to do/);
    // Another home: refused, naming what the database holds.
    const stranger = await runCli(['import-home', (await buildHome(t)).dir], env);
    assert.equal(stranger.code, 1);
    assert.match(stranger.stderr, /is not empty: the registry holds 2 model\(s\) \(other, spam-clf\), 4 version\(s\)/);
    assert.match(stranger.stderr, /the audit log holds \d+ record\(s\), the first run\.submitted by /);
    assert.match(stranger.stderr, /an audit chain cannot be merged/);
  });

  test('a registered artifact whose sha256 is a path refuses the import, naming the version, into a shared folder store too', async (t) => {
    const home = await buildHome(t);
    const shared = tmp(t, 'shared');
    const env = await envOf(t, pathToFileURL(shared).href);
    const db = new BetterSqlite3(statePaths(home.dir, {}).registryDb);
    db.prepare(
      "UPDATE artifacts SET sha256 = '../../../../etc/passwd' WHERE role = 'onnx' AND version_id = (SELECT MIN(id) FROM versions)",
    ).run();
    db.close();
    const r = await runCli(['import-home', home.dir], env);
    assert.equal(r.code, 1, r.stderr);
    assert.ok(r.stderr.includes('spam-clf@1 onnx: "../../../../etc/passwd", which is no sha256'), r.stderr);
    const reg = await open(t, openRegistry(env.TEMPERED_DATABASE_URL));
    assert.deepEqual(await reg.listModels(), []);
  });

  test('a home whose audit chain does not verify is refused, naming the record, and nothing is written or stored', async (t) => {
    const home = await buildHome(t);
    const shared = tmp(t, 'shared');
    const env = await envOf(t, pathToFileURL(shared).href);
    const db = new BetterSqlite3(statePaths(home.dir, {}).auditDb);
    db.prepare("UPDATE audit_log SET actor = 'mallory' WHERE seq = 2").run();
    db.close();
    const r = await runCli(['import-home', home.dir], env);
    assert.equal(r.code, 1, r.stderr);
    assert.ok(r.stderr.includes('does not verify: record 2 does not match its hash'), r.stderr);
    assert.deepEqual(
      (await schemaVersions(env.TEMPERED_DATABASE_URL, [REGISTRY_SCHEMA, AUDIT_SCHEMA])).map((v) => v.at),
      [0, 0],
      'refused before the shared database is opened',
    );
    assert.deepEqual(readdirSync(shared), [], 'no object stored');
  });

  test('a damaged object refuses the import and leaves the database empty; a dry run writes nothing; a rerun completes', async (t) => {
    const home = await buildHome(t);
    const env = await envOf(t);
    const scopes = () => schemaVersions(env.TEMPERED_DATABASE_URL, [REGISTRY_SCHEMA, AUDIT_SCHEMA, STAGE_CACHE_SCHEMA]);
    const bucket = async () => {
      const keys: string[] = [];
      for await (const k of s3.backend(env.TEMPERED_STORE).list('')) keys.push(k);
      return keys;
    };

    const dry = await runCli(['import-home', home.dir, '--dry-run'], env);
    assert.equal(dry.code, 0, dry.stderr);
    assert.match(dry.stdout, /would copy 2 model\(s\), 3 version\(s\), 2 alias change\(s\)/);
    assert.match(dry.stdout, new RegExp(`objects: ${home.named.length} \\(.*\\): ${home.named.length} to store`));
    assert.deepEqual(
      (await scopes()).map((s) => s.at),
      [0, 0, 0],
      'no tables created',
    );
    assert.deepEqual(await bucket(), []);

    const victim = join(statePaths(home.dir, {}).store, objectKey(home.onnx2.sha256));
    chmodSync(victim, 0o644);
    writeFileSync(victim, 'weights of v3');
    const bad = await runCli(['import-home', home.dir], env);
    assert.equal(bad.code, 1);
    assert.ok(bad.stderr.includes(`${victim}: its content hashes to`), bad.stderr);
    assert.match(bad.stderr, /no record was written to the database/);
    const reg = await open(t, openRegistry(env.TEMPERED_DATABASE_URL));
    assert.deepEqual(await reg.listModels(), []);
    const log = await open(t, openAudit(env.TEMPERED_DATABASE_URL));
    assert.equal(await log.head(), null);
    assert.equal(await s3.backend(env.TEMPERED_STORE).head(objectKey(home.onnx2.sha256)), undefined, 'the damaged object is not stored');

    writeFileSync(victim, 'weights of v2');
    const rerun = await runCli(['import-home', home.dir, '--json'], env);
    assert.equal(rerun.code, 0, rerun.stderr);
    const report = JSON.parse(rerun.stdout);
    assert.equal(report.objects.uploaded, 1, 'only the object the first attempt could not store');
    assert.equal(report.objects.present, home.named.length - 1);
    assert.equal((await reg.listVersions('spam-clf')).length, 2);
    assert.equal((await log.verify({ expectRecords: true })).ok, true);
  });
});
