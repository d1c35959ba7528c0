/**
 * Garbage collection of the artifact store (src/store/garbage.ts, `tempered store gc`), on the local
 * folder and on a real SeaweedFS bucket: what the registry, a recent stage-cache record or a kept
 * tree names stays; unreferenced objects go only once older than the horizon, counting a later put
 * of the same bytes as a new write; a dry run deletes nothing.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { Readable } from 'node:stream';
import { join } from 'node:path';
import { ArtifactStore, objectKey } from '../src/store/artifact-store.ts';
import { StageCache, type CacheRecord } from '../src/store/stage-cache.ts';
import { collectGarbage, GarbageIncomplete, MIN_HORIZON_MS, scanNames, type GarbageReport } from '../src/store/garbage.ts';
import { openRegistry } from '../src/registry/registry.ts';
import { openAudit } from '../src/audit/log.ts';
import type { ArtifactRef } from '../src/types.ts';
import { appendProgressPoint, progressLogPath } from '../src/store/progress-log.ts';
import { runCliInProcess } from './helpers/cli.ts';
import { checkpointLeaseName, pullCheckpoint, pushCheckpoint } from '../src/store/shared-checkpoints.ts';
import { acquireSharedLease } from '../src/store/shared-lease.ts';
import { useTestS3, type TestS3 } from './helpers/seaweedfs.ts';

let s3: TestS3;
useTestS3((h) => (s3 = h));

type T = { after: (fn: () => void) => void };
const DAY = 24 * 3600_000;
const HORIZON = 30 * DAY;
const bytes = (s: string) => Buffer.from(s);
const octets = { mediaType: 'application/octet-stream' };

function tmp(t: T, name: string): string {
  const dir = mkdtempSync(join(tmpdir(), `tempered-gc-${name}-`));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** The next whole second, a little after it: S3 keeps write times to the second. */
async function nextSecond(): Promise<number> {
  const cut = Math.ceil((Date.now() + 50) / 1000) * 1000;
  await new Promise((r) => setTimeout(r, cut - Date.now() + 50));
  return cut;
}

/** A stage cache whose eviction of an expired record first runs `onEvict`: what happens meanwhile in other processes. */
class HookedCache extends StageCache {
  onEvict: ((key: string) => Promise<void>) | undefined;
  override async evictIfUnchanged(key: string, text: string): Promise<boolean> {
    const hook = this.onEvict;
    this.onEvict = undefined;
    await hook?.(key);
    return super.evictIfUnchanged(key, text);
  }
}

async function recordKeys(cache: StageCache): Promise<string[]> {
  const keys: string[] = [];
  for await (const r of cache.records()) keys.push(r.key);
  return keys;
}

function record(key: string, outputs: Record<string, ArtifactRef>, createdAt: number): CacheRecord {
  return { key, kind: 'test', outputs, producedBy: { runId: 'r', stageId: 's' }, createdAt: new Date(createdAt).toISOString() };
}

for (const backend of ['folder', 's3'] as const) {
  describe(`store garbage collection (${backend})`, () => {
    async function setup(t: T) {
      const dir = tmp(t, backend);
      // freshenAfterMs 0: a put of stored bytes, and a hit on a record, mark them used at once
      // (a day later in use), so the test needs no clock of its own.
      const store =
        backend === 's3'
          ? new ArtifactStore(join(dir, 'store'), { remote: s3.backend(s3.freshUrl()), freshenAfterMs: 0 })
          : new ArtifactStore(join(dir, 'store'), { freshenAfterMs: 0 });
      const cache = new HookedCache(join(dir, 'cache'), store);
      const present = async (ref: ArtifactRef) =>
        store.remote
          ? (await store.remote.head(objectKey(ref.sha256))) !== undefined
          : existsSync(join(store.root, 'sha256', ref.sha256.slice(0, 2), ref.sha256));

      // Written before the horizon: a registered model (a tree of two files), an output of a recent
      // record, an output of an expired record, an orphan, and an object stored again later.
      const model = join(dir, 'model');
      mkdirSync(join(model, 'sub'), { recursive: true });
      writeFileSync(join(model, 'config.json'), '{"hidden": 8}');
      writeFileSync(join(model, 'sub', 'weights.bin'), bytes('weights of the registered model'));
      const tree = await store.putTree(model);
      const members = ['{"hidden": 8}', 'weights of the registered model'].map((c) => ({
        uri: '',
        sha256: createHash('sha256').update(c).digest('hex'),
        bytes: c.length,
        mediaType: 'x',
      }));
      const keptByRecord = await store.putBytes('output of a recent record', octets);
      const expiredOutput = await store.putBytes('output of an old record', octets);
      const orphan = await store.putBytes('nothing names me', octets);
      const reused = await store.putBytes('stored again after the horizon', octets);
      const cut = await nextSecond();
      // Written after it.
      const young = await store.putBytes('new and not yet named', octets);
      await store.putBytes('stored again after the horizon', octets);
      const recentKey = 'a'.repeat(64);
      const oldKey = 'b'.repeat(64);
      await cache.put(record(recentKey, { out: keptByRecord }, cut + 1000));
      await cache.put(record(oldKey, { out: expiredOutput }, cut - 1000));
      // The registry names the tree without saying it is one: its files are found by reading it.
      const registryVersion = JSON.stringify({ name: 'clf', version: 1, artifacts: [{ role: 'model', sha256: tree.sha256 }] });
      const gc = (collect: boolean) =>
        collectGarbage({ store, cache, roots: [registryVersion], olderThanMs: HORIZON, collect, now: cut + HORIZON });
      return { store, cache, present, tree, members, keptByRecord, expiredOutput, orphan, reused, young, recentKey, oldKey, gc, cut };
    }

    test('a dry run reports and deletes nothing; collecting deletes the unreferenced old objects and the expired records only', async (t) => {
      const s = await setup(t);
      const dry = await s.gc(false);
      const expected: GarbageReport['objects'] = {
        kept: 4, // the tree, its two files, the recent record's output
        keptBytes: s.tree.bytes + s.members.reduce((n, m) => n + m.bytes, 0) + s.keptByRecord.bytes,
        recent: 2, // the young object and the one stored again
        recentBytes: bytes('new and not yet named').length + bytes('stored again after the horizon').length,
        garbage: 2,
        garbageBytes: bytes('output of an old record').length + bytes('nothing names me').length,
        deleted: 0,
        deletedBytes: 0,
      };
      assert.deepEqual(dry.objects, expected);
      assert.deepEqual(dry.records, { kept: 1, expired: 1, dropped: 0 });
      assert.equal(dry.collected, false);
      for (const ref of [s.tree, s.keptByRecord, s.expiredOutput, s.orphan, s.reused, s.young])
        assert.ok(await s.present(ref), 'a dry run deletes nothing');
      // (Looked at without a lookup: a hit marks a record used.)
      assert.ok(await recordKeys(s.cache).then((keys) => keys.includes(s.oldKey)), 'a dry run keeps the old record');

      const done = await s.gc(true);
      assert.deepEqual(done.objects, { ...expected, deleted: 2, deletedBytes: expected.garbageBytes });
      assert.deepEqual(done.records, { kept: 1, expired: 1, dropped: 1 });
      assert.equal(await s.present(s.orphan), false);
      assert.equal(await s.present(s.expiredOutput), false);
      for (const ref of [s.tree, ...s.members, s.keptByRecord, s.reused, s.young])
        assert.ok(await s.present(ref), `${ref.sha256.slice(0, 8)} kept`);
      assert.equal(
        existsSync(join(s.store.root, 'sha256', s.orphan.sha256.slice(0, 2), s.orphan.sha256)),
        false,
        "this host's copy goes too",
      );
      assert.equal(await s.cache.get(s.oldKey), undefined, 'the expired record is dropped');
      assert.ok(await s.cache.get(s.recentKey), 'the recent record still hits');
      // The registered model still checks out whole.
      await s.store.verifyDeep(s.tree);

      const again = await s.gc(true);
      assert.equal(again.objects.garbage, 0);
      assert.equal(again.objects.deleted, 0);
      assert.deepEqual(again.records, { kept: 1, expired: 0, dropped: 0 });
    });

    test('a quarantined object is kept for the horizon from its quarantine, not from its write, then goes', async (t) => {
      const s = await setup(t);
      // Written before the cut, found damaged and moved aside after it.
      if (s.store.remote) await s.store.remote.quarantine(objectKey(s.orphan.sha256));
      else await s.store.quarantine(s.orphan.sha256);
      const kept = await s.gc(true);
      assert.deepEqual(kept.quarantine, { garbage: 0, garbageBytes: 0, deleted: 0 });
      const later = await collectGarbage({
        store: s.store,
        cache: s.cache,
        roots: [],
        olderThanMs: HORIZON,
        collect: true,
        now: Date.now() + HORIZON + 5000,
      });
      assert.deepEqual(later.quarantine, { garbage: 1, garbageBytes: bytes('nothing names me').length, deleted: 1 });
    });

    test('an object stored again after the listing, just before the delete, stays: each object is looked at again', async (t) => {
      const s = await setup(t);
      // The collection drops the expired records right before it deletes objects: the orphan is
      // stored again then, after it was listed and judged garbage.
      s.cache.onEvict = async () => {
        await s.store.putBytes('nothing names me', octets);
      };
      const r = await s.gc(true);
      assert.equal(r.objects.garbage, 2, 'judged garbage from the listing');
      assert.ok(await s.present(s.orphan), 'stored again before its delete: kept');
      assert.equal(await s.present(s.expiredOutput), false);
      assert.equal(r.objects.deleted, 1);
    });

    test('a cache hit on an old record marks its outputs and the record used: before the collection, or during it', async (t) => {
      for (const when of ['before', 'during'] as const) {
        const s = await setup(t);
        if (when === 'before') assert.ok(await s.cache.get(s.oldKey), 'a hit');
        // A lookup between the collection's look at the records and its eviction of the expired ones.
        else s.cache.onEvict = async (key) => void assert.ok(key === s.oldKey && (await s.cache.get(key)), 'a hit');
        const r = await s.gc(true);
        assert.ok(await s.present(s.expiredOutput), `${when}: the hit's output stays`);
        assert.ok(await s.cache.get(s.oldKey), `${when}: the used record stays`);
        assert.equal(r.objects.deleted, 1, `${when}: only the orphan goes`);
      }
    });

    test('a record written again under an expired key while the collection runs is not dropped', async (t) => {
      const s = await setup(t);
      s.cache.onEvict = async (key) => {
        // e.g. a --no-cache rerun of that stage finishing now, with new outputs
        const fresh = await s.store.putBytes('the rerun output', octets);
        await StageCache.prototype.put.call(s.cache, record(key, { out: fresh }, Date.now()));
      };
      const r = await s.gc(true);
      assert.deepEqual(r.records, { kept: 1, expired: 1, dropped: 0 }, 'judged expired, not dropped');
      const hit = await s.cache.get(s.oldKey);
      assert.ok(hit, 'the new record survives');
      assert.equal((hit.outputs.out as ArtifactRef).sha256, createHash('sha256').update('the rerun output').digest('hex'));
    });

    if (backend === 's3')
      test("a hit on a worker's old local copy takes the record another worker wrote since, and does not write the old one back", async (t) => {
        const s = await setup(t);
        // Worker B replaces the record of oldKey (say, a --no-cache rerun with new outputs).
        const other = new ArtifactStore(tmp(t, 'worker-b'), { remote: s.store.remote!, freshenAfterMs: 0 });
        const b = new StageCache(tmp(t, 'cache-b'), other);
        const rerun = await other.putBytes('output of the rerun', octets);
        await b.put(record(s.oldKey, { out: rerun }, Date.now()));
        // Worker A still has its old copy, over the refresh age: its hit must not bring the old record back.
        const hit = await s.cache.get(s.oldKey);
        assert.equal((hit?.outputs.out as ArtifactRef).sha256, rerun.sha256, "A answers with B's record");
        const fresh = new StageCache(tmp(t, 'cache-c'), new ArtifactStore(tmp(t, 'worker-c'), { remote: s.store.remote! }));
        assert.equal(((await fresh.get(s.oldKey))?.outputs.out as ArtifactRef).sha256, rerun.sha256, "the shared record is still B's");
      });

    if (backend === 's3')
      test("a training's working state abandoned before the horizon goes (pointer, files, lease); a training that runs, or resumes meanwhile, keeps its own", async (t) => {
        const dir = tmp(t, 'abandoned');
        const store = new ArtifactStore(join(dir, 'store'), { remote: s3.backend(s3.freshUrl()) });
        const remote = store.remote!;
        const cache = new HookedCache(join(dir, 'cache'), store);
        const step = (name: string) => {
          const ck = join(dir, name, 'step-00000004');
          mkdirSync(ck, { recursive: true });
          writeFileSync(join(ck, 'manifest.json'), '{"step":4}');
          writeFileSync(join(ck, 'params.bin'), Buffer.alloc(2048, 7));
          return ck;
        };
        // Three trainings wrote a checkpoint before the horizon. `crashed` died (its lease stopped
        // being refreshed); `running` still runs; `resumed` is taken up again during the collection.
        const names = { crashed: 'c'.repeat(64), running: 'd'.repeat(64), resumed: 'e'.repeat(64) };
        for (const n of Object.values(names)) await pushCheckpoint(store, n, step(n));
        const dead = await acquireSharedLease(remote, checkpointLeaseName(names.crashed), { what: 'crashed', refreshMs: 3_600_000 });
        const live = await acquireSharedLease(remote, checkpointLeaseName(names.running), { what: 'running', refreshMs: 200 });
        t.after(() => live.release());
        // A lease of some other name, left by a crash: it goes on its own.
        await acquireSharedLease(remote, 'other-work', { what: 'gone', refreshMs: 3_600_000 });
        const cut = await nextSecond();
        // The live holder refreshes after the cut (its keeper thread may take a while to start).
        for (let fresh = false, deadline = Date.now() + 30_000; !fresh; await new Promise((r) => setTimeout(r, 50))) {
          assert.ok(Date.now() < deadline, 'the live lease was refreshed after the cut within 30 s');
          for await (const o of remote.listObjects(`leases/checkpoint-${names.running}/`)) fresh ||= (o.modified?.getTime() ?? 0) >= cut;
        }
        // An expired record, so that the collection's hook runs between judging and deleting.
        await cache.put(record('f'.repeat(64), { out: await store.putBytes('old output', octets) }, cut - 1000));
        let resumedLease: Awaited<ReturnType<typeof acquireSharedLease>> | undefined;
        cache.onEvict = async () => {
          resumedLease = await acquireSharedLease(remote, checkpointLeaseName(names.resumed), { what: 'resumed', refreshMs: 3_600_000 });
        };
        const gc = (collect: boolean) => collectGarbage({ store, cache, roots: [], olderThanMs: HORIZON, collect, now: cut + HORIZON });
        const ckBytes = '{"step":4}'.length + 2048;

        const dry = await gc(false);
        assert.equal(dry.checkpoints.abandoned, 2, 'crashed and resumed (judged before it resumed)');
        assert.deepEqual(dry.leases, { old: 1, deleted: 0 }, 'the lease of other work, alone');
        assert.ok(dry.checkpoints.abandonedBytes > 2 * ckBytes, String(dry.checkpoints.abandonedBytes));
        assert.equal(dry.checkpoints.deleted, 0);
        const left = async (prefix: string) => {
          const out: string[] = [];
          for await (const k of remote.list(prefix)) out.push(k);
          return out.sort();
        };
        const before = await left('');
        assert.equal(before.filter((k) => k.startsWith('checkpoint')).length, 9, 'a dry run deletes nothing');

        const done = await gc(true);
        assert.equal(done.checkpoints.deleted, 1, 'the resumed one was taken up after it was judged: kept');
        assert.deepEqual(done.leases, { old: 1, deleted: 1 });
        for (const gone of [names.crashed]) {
          assert.deepEqual(await left(`checkpoints/${gone}`), []);
          assert.deepEqual(await left(`checkpoint-files/${gone}/`), []);
          assert.deepEqual(await left(`leases/checkpoint-${gone}/`), []);
        }
        assert.deepEqual(await left('leases/other-work/'), []);
        for (const kept of [names.running, names.resumed]) {
          assert.deepEqual(await left(`checkpoints/${kept}`), [`checkpoints/${kept}.json`]);
          assert.equal((await left(`checkpoint-files/${kept}/`)).length, 2);
          // (A lease being refreshed may show its next generation beside the one it replaces.)
          assert.ok((await left(`leases/checkpoint-${kept}/`)).length >= 1);
        }
        // What was kept still resumes.
        const home = join(dir, 'resume');
        assert.equal(await pullCheckpoint(store, names.resumed, home), 4);
        await resumedLease?.release();
        await dead.release();
      });

    if (backend === 's3')
      test('a kept object that cannot be read stops the collection before it deletes anything', async (t) => {
        const s = await setup(t);
        const remote = s.store.remote!;
        const failing = Object.create(remote) as typeof remote;
        failing.read = async (key: string) => {
          if (key === objectKey(s.tree.sha256)) throw Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' });
          return remote.read(key);
        };
        const flaky = new ArtifactStore(s.store.root, { remote: failing, freshenAfterMs: 0 });
        await assert.rejects(
          collectGarbage({
            store: flaky,
            cache: s.cache,
            roots: [JSON.stringify({ sha256: s.tree.sha256 })],
            olderThanMs: HORIZON,
            collect: true,
            now: Date.now() + HORIZON,
          }),
          /ECONNRESET/,
        );
        for (const ref of [s.tree, ...s.members, s.orphan, s.expiredOutput]) assert.ok(await s.present(ref), 'nothing deleted');
      });

    if (backend === 's3')
      test('a collection that fails part-way says what it had deleted', async (t) => {
        const s = await setup(t);
        const remote = s.store.remote!;
        const failing = Object.create(remote) as typeof remote;
        let deletes = 0;
        failing.delete = async (key: string) => {
          if (key.startsWith('sha256/') && ++deletes === 2) throw new Error('503 SlowDown');
          return remote.delete(key);
        };
        const flaky = new ArtifactStore(s.store.root, { remote: failing, freshenAfterMs: 0 });
        const cut = Date.now() + HORIZON;
        const all = [s.tree, ...s.members, s.keptByRecord, s.expiredOutput, s.orphan, s.reused, s.young];
        let report: GarbageReport | undefined;
        await assert.rejects(
          collectGarbage({ store: flaky, cache: s.cache, roots: [], olderThanMs: HORIZON, collect: true, now: cut }),
          (e: unknown) => {
            if (!(e instanceof GarbageIncomplete)) return false;
            report = e.report;
            return new RegExp(`stopped part-way \\(${e.report.objects.deleted} objects deleted\\): 503 SlowDown`).test(e.message);
          },
        );
        // Nearly everything is old and unnamed here (the recent record may still keep its output):
        // one delete failed, the rest of the garbage went.
        assert.ok(report!.objects.garbage >= all.length - 1, `${report!.objects.garbage} garbage`);
        assert.equal(report!.objects.deleted, report!.objects.garbage - 1);
        let gone = 0;
        for (const ref of all) if (!(await s.present(ref))) gone++;
        assert.equal(gone, report!.objects.deleted, 'the report counts what was deleted');
      });
  });
}

describe('scanning kept objects for the names they hold', () => {
  const names = async (chunks: string[]) => {
    const found: string[] = [];
    await scanNames(Readable.from(chunks.map((c) => Buffer.from(c))), (text) => {
      for (const [hex] of text.matchAll(/[0-9a-f]{64}/g)) found.push(hex);
    });
    return [...new Set(found)].sort();
  };
  const a = 'a'.repeat(64);
  const b = 'b'.repeat(64);
  test('a name split between two chunks is found; JSON after leading white space is read; any size', async () => {
    assert.deepEqual(await names(['{"files": [{"sha256": "' + a.slice(0, 30), a.slice(30) + '"}, {"sha256": "' + b + '"}]}']), [a, b]);
    assert.deepEqual(await names(['  \n', '\t[ "' + a + '" ]']), [a]);
    const big =
      '{"files": [' + Array.from({ length: 60_000 }, (_, i) => `{"name": "f${i}", "sha256": "${i === 59_999 ? b : a}"}`).join(', ') + ']}';
    const chunks: string[] = [];
    for (let i = 0; i < big.length; i += 65_536) chunks.push(big.slice(i, i + 65_536));
    assert.ok(big.length > 4 * 1024 * 1024, 'over the old 4 MiB limit');
    assert.deepEqual(await names(chunks), [a, b], 'the last file of a large manifest is found');
  });
  test('an object that does not start like JSON (a table, weights) is not read past its first kilobyte', async () => {
    assert.deepEqual(await names(['ARROW1\0\0' + a, b]), []);
    // A safetensors file whose header length's low byte is '{' (123): NUL bytes follow, so not JSON.
    const header = Buffer.alloc(8);
    header.writeBigUInt64LE(123n);
    const weights = Buffer.concat([header, Buffer.from(`{"w": {"dtype": "F32"}} ${a}`), Buffer.alloc(2048, 7)]);
    const found: string[] = [];
    await scanNames(Readable.from([weights, Buffer.from(b)]), (text) => found.push(text));
    assert.deepEqual(found, []);
  });
});

describe('tempered store gc', () => {
  test('the registry keeps what it names; --collect deletes the rest of what is old and records it in the audit log; bad horizons are refused', async (t) => {
    const home = tmp(t, 'cli');
    const env = { TEMPERED_HOME: home, TEMPERED_STORE: '', TEMPERED_DATABASE_URL: '', TEMPERED_ACTOR: 'ops' };
    const store = new ArtifactStore(join(home, 'store'));
    const model = await store.putBytes('registered onnx', { mediaType: 'application/onnx' });
    const data = await store.putBytes('training table', octets);
    const orphan = await store.putBytes('an orphan', octets);
    const old = new Date(Date.now() - 40 * DAY);
    for (const ref of [model, data, orphan]) utimesSync(join(home, 'store', 'sha256', ref.sha256.slice(0, 2), ref.sha256), old, old);
    const reg = await openRegistry(join(home, 'registry.db'));
    await reg.registerVersion({
      name: 'clf',
      runId: 'run-1',
      stageId: 'register',
      specHash: 'f'.repeat(64),
      data: [{ name: 'train', sha256: data.sha256, rows: 3, uri: data.uri }],
      artifacts: [{ role: 'onnx', uri: model.uri, sha256: model.sha256, bytes: model.bytes }],
    });
    await reg.close();
    const at = (ref: ArtifactRef) => existsSync(join(home, 'store', 'sha256', ref.sha256.slice(0, 2), ref.sha256));
    // An old run's live training points go with the horizon; a recent run's stay.
    const oldPoints = progressLogPath(join(home, 'progress'), 'old-run', 'exec', 'train');
    const newPoints = progressLogPath(join(home, 'progress'), 'new-run', 'exec', 'train');
    for (const p of [oldPoints, newPoints]) appendProgressPoint(p, { attempt: 1, t: Date.now(), metrics: { step: 1 } });
    utimesSync(oldPoints, old, old);

    const dry = await runCliInProcess(['store', 'gc'], env);
    assert.equal(dry.code, 0, dry.stderr);
    assert.match(dry.stdout, /garbage: 1 objects \(9 B\); would delete them/);
    assert.match(dry.stdout, /dry run: nothing was deleted/);
    assert.match(dry.stdout, /training points \(live curves\) of 1 stages that wrote none since the horizon: to delete/);
    assert.ok(at(orphan));

    const done = await runCliInProcess(['store', 'gc', '--collect', '--json'], env);
    assert.equal(done.code, 0, done.stderr);
    assert.equal((JSON.parse(done.stdout) as GarbageReport).objects.deleted, 1);
    assert.deepEqual([at(model), at(data), at(orphan)], [true, true, false]);
    assert.deepEqual([existsSync(oldPoints), existsSync(newPoints)], [false, true]);
    const audit = await openAudit(join(home, 'audit.db'));
    const entries = await audit.query({});
    await audit.close();
    const gc = entries.find((e) => e.action === 'store.collected');
    assert.ok(gc, 'the collection is in the audit log');
    assert.equal(gc.actor, 'ops');
    assert.equal((gc.details as { objects: number }).objects, 1);

    for (const bad of ['1', 'soon', '-5']) {
      const r = await runCliInProcess(['store', 'gc', `--older-than=${bad}`], env);
      assert.equal(r.code, 2, bad);
      assert.match(r.stderr, /--older-than takes a number of days of at least 2/);
    }
    assert.equal(MIN_HORIZON_MS, 2 * DAY);
  });

  test("a shared bucket with this host's own registry file is not collected unless this registry is the only one", async (t) => {
    const home = tmp(t, 'cli-shared');
    const env = { ...s3.env, TEMPERED_HOME: home, TEMPERED_STORE: s3.freshUrl(), TEMPERED_DATABASE_URL: '' };
    const dry = await runCliInProcess(['store', 'gc'], env);
    assert.equal(dry.code, 0, dry.stderr);
    const refused = await runCliInProcess(['store', 'gc', '--collect'], env);
    assert.equal(refused.code, 2);
    assert.match(refused.stderr, /is shared, but the registry is this host's file .*Set TEMPERED_DATABASE_URL .*or pass --sole-registry/);
    const none = await runCliInProcess(['store', 'gc', '--collect', '--sole-registry'], env);
    assert.equal(none.code, 2);
    assert.match(none.stderr, /--sole-registry says this host's registry is the only one, but there is none at /);
    await (await openRegistry(join(home, 'registry.db'))).close();
    const sole = await runCliInProcess(['store', 'gc', '--collect', '--sole-registry', '--json'], env);
    assert.equal(sole.code, 0, sole.stderr);
    assert.equal((JSON.parse(sole.stdout) as GarbageReport).collected, true);
  });
});
