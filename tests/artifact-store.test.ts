import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  statSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { IntegrityError, InputError } from '../src/errors.ts';
import { ArtifactStore, parseUri, safeRelativeName, uriFor } from '../src/store/artifact-store.ts';
import { sha256Hex } from '../src/util/canonical-json.ts';
import { startTestS3, type TestS3 } from './helpers/seaweedfs.ts';

/**
 * Every behaviour of the store's API runs against both backends: the local folder alone (the
 * default) and a real SeaweedFS S3 server behind a local read-through cache. Tests about what the
 * local folder does when its own files are damaged or half-written run for the folder store only;
 * with S3 a damaged cached copy is fetched again (s3-store.test.ts).
 */
let s3: TestS3 | undefined;
const backends: { name: string; local: boolean; fresh: () => ArtifactStore }[] = [
  { name: 'local folder', local: true, fresh: () => new ArtifactStore(mkdtempSync(join(tmpdir(), 'store-'))) },
  { name: 'SeaweedFS S3', local: false, fresh: () => s3!.store() },
];

function objects(store: ArtifactStore): string[] {
  const root = join(store.root, 'sha256');
  return readdirSync(root).flatMap((d) => readdirSync(join(root, d)));
}

for (const { name: backendName, local, fresh } of backends)
  describe(`ArtifactStore (${backendName})`, () => {
    if (!local) {
      before(async () => {
        s3 = await startTestS3();
      });
      after(async () => {
        await s3?.stop();
      });
    }

    it('stores content under its sha256 and returns a full reference', async () => {
      const s = fresh();
      const ref = await s.putBytes('hello', { mediaType: 'text/plain', rows: 1 });
      assert.equal(ref.sha256, sha256Hex('hello'));
      assert.equal(ref.uri, `artifact://sha256/${ref.sha256}`);
      assert.equal(ref.bytes, 5);
      assert.equal(readFileSync(s.pathOf(ref), 'utf8'), 'hello');
      const again = await s.putBytes('hello', { mediaType: 'text/plain', rows: 1 });
      assert.deepEqual(again, ref, 'same content, same reference');
      assert.equal(objects(s).length, 1, 'stored once');
    });

    it('concurrent puts of the same bytes in one store keep the object in place: nothing intact is quarantined', async () => {
      // Stages of one worker storing the same output at once (50 pipelines ingesting one file): one put
      // moved another's freshly stored, intact object to quarantine/, and that one's upload then read
      // a path that was briefly gone (ENOENT, a failed stage attempt).
      const s = fresh();
      const data = Buffer.alloc(200_000, 3);
      for (let round = 0; round < 5; round++) {
        const refs = await Promise.all(
          Array.from({ length: 12 }, () => s.putBytes(Buffer.concat([data, Buffer.from([round])]), { mediaType: 'x' })),
        );
        assert.equal(new Set(refs.map((r) => r.sha256)).size, 1);
      }
      const aside = existsSync(join(s.root, 'quarantine')) ? readdirSync(join(s.root, 'quarantine')) : [];
      assert.deepEqual(aside, [], 'no intact object was moved aside');
    });

    it('copies or moves files in and verifies them on read', async () => {
      const s = fresh();
      const src = join(s.root, '..', `src-${Date.now()}.bin`);
      writeFileSync(src, Buffer.alloc(300_000, 7));
      const ref = await s.putFile(src, { mediaType: 'application/octet-stream' });
      assert.equal(ref.bytes, 300_000);
      assert.ok(existsSync(src), 'copy leaves the source');
      const tmp = s.tempPath();
      writeFileSync(tmp, 'moved');
      const moved = await s.putFile(tmp, { mediaType: 'text/plain', move: true });
      assert.ok(!existsSync(tmp), 'move consumes the temp file');
      assert.equal(await s.verify(moved), s.pathOf(moved));
    });

    if (local)
      it('detects a corrupted or truncated artifact', async () => {
        const s = fresh();
        const ref = await s.putBytes('precious data', { mediaType: 'text/plain' });
        const p = s.pathOf(ref);
        chmodSync(p, 0o644);
        writeFileSync(p, 'precious dat4');
        await assert.rejects(s.verify(ref), (e: Error) => e instanceof IntegrityError && /corrupt/.test(e.message));
        writeFileSync(p, 'precious');
        await assert.rejects(s.verify(ref), (e: Error) => e instanceof IntegrityError && /corrupt/.test(e.message));
        const good = await s.putBytes('precious data', { mediaType: 'text/plain' });
        await assert.rejects(
          s.verify({ ...good, bytes: 8 }),
          (e: Error) => e instanceof IntegrityError && /13 bytes on disk, the reference says 8/.test(e.message),
        );
      });

    if (local)
      it('a damaged object is quarantined on verify and replaced by the next put of its bytes', async () => {
        const s = fresh();
        const ref = await s.putBytes('the right bytes', { mediaType: 'text/plain' });
        chmodSync(s.pathOf(ref), 0o644);
        writeFileSync(s.pathOf(ref), 'the wrong bytes');
        // Putting the same content again must not trust the damaged object that has its name.
        const again = await s.putBytes('the right bytes', { mediaType: 'text/plain' });
        assert.deepEqual(again, ref);
        assert.equal(readFileSync(s.pathOf(ref), 'utf8'), 'the right bytes');
        await s.verify(ref);
        // A damaged object found by verify is moved aside (kept for inspection), so has() is false.
        chmodSync(s.pathOf(ref), 0o644);
        writeFileSync(s.pathOf(ref), 'rot');
        await assert.rejects(s.verify(ref), (e: unknown) => e instanceof IntegrityError && e.sha256 === ref.sha256);
        assert.equal(s.has(ref.sha256), false);
        assert.equal(readdirSync(join(s.root, 'quarantine')).length, 2);
        await s.putBytes('the right bytes', { mediaType: 'text/plain' });
        await s.verify(ref);
      });

    it('the sweeper removes what dead writers left and never what a live one is using, however old', async () => {
      const s = fresh();
      const dead = spawn(process.execPath, ['-e', '0']);
      await new Promise((r) => dead.on('exit', r));
      const old = new Date(Date.now() - 3 * 60 * 60 * 1000);
      const entries = {
        deadTemp: join(s.root, 'tmp', `${Date.now()}-${dead.pid}-abcdef`),
        deadStage: join(s.root, 'tmp', `stage-run_1-train-2-${dead.pid}`),
        liveStage: join(s.root, 'tmp', `stage-run_1-train-1-${process.pid}`),
        liveTemp: join(s.root, 'tmp', `${Date.now()}-${process.pid}-123456`),
        unknownOld: join(s.root, 'tmp', 'something-else'),
      };
      for (const [k, p] of Object.entries(entries)) {
        if (k.endsWith('Stage')) mkdirSync(p);
        else writeFileSync(p, 'x');
        utimesSync(p, old, old);
      }
      const fresher = join(s.root, 'tmp', `${Date.now()}-${dead.pid}-fedcba`);
      writeFileSync(fresher, 'just written');
      assert.equal(await s.sweepTemp(), 3);
      assert.deepEqual(
        readdirSync(join(s.root, 'tmp')).sort(),
        [fresher, entries.liveStage, entries.liveTemp].map((p) => p.split('/').pop()!).sort(),
      );
    });

    it('rejects URIs and tree names that could escape the store', async () => {
      const s = fresh();
      for (const bad of [
        'artifact://sha256/../../etc/passwd',
        'artifact://sha256/' + 'g'.repeat(64),
        '/etc/passwd',
        'file:///etc/passwd',
        'artifact://sha256/ABC',
      ]) {
        assert.throws(() => parseUri(bad), InputError, bad);
        assert.throws(() => s.pathOf(bad), InputError, bad);
      }
      for (const bad of ['../x', 'a/../../x', '/abs', 'a\\b', '', '.', 'a//b/..//..']) {
        assert.throws(() => safeRelativeName(bad), InputError, JSON.stringify(bad));
      }
      assert.equal(safeRelativeName('model/config.json'), 'model/config.json');
      // A manifest that names ../ is refused before anything is written outside dest.
      const evil = await s.putBytes(JSON.stringify({ files: [{ name: '../escaped.txt', sha256: sha256Hex('x'), bytes: 1 }] }), {
        mediaType: 'application/json',
      });
      await s.putBytes('x', { mediaType: 'text/plain' });
      const dest = mkdtempSync(join(tmpdir(), 'dest-'));
      await assert.rejects(s.materializeTree(evil, join(dest, 'inner')), InputError);
      assert.ok(!existsSync(join(dest, 'escaped.txt')));
    });

    it('rejects symlinks, both as stored objects and inside trees', async () => {
      const s = fresh();
      const ref = await s.putBytes('target', { mediaType: 'text/plain' });
      const fake = 'f'.repeat(64);
      mkdirSync(join(s.root, 'sha256', 'ff'), { recursive: true });
      symlinkSync(s.pathOf(ref), join(s.root, 'sha256', 'ff', fake));
      assert.throws(() => s.pathOf(uriFor(fake)), IntegrityError);
      const dir = mkdtempSync(join(tmpdir(), 'tree-'));
      writeFileSync(join(dir, 'a.txt'), 'a');
      symlinkSync('/etc/passwd', join(dir, 'link'));
      await assert.rejects(s.putTree(dir), /symlink/);
    });

    it('round-trips a folder as a tree', async () => {
      const s = fresh();
      const dir = mkdtempSync(join(tmpdir(), 'tree-'));
      mkdirSync(join(dir, 'sub'));
      writeFileSync(join(dir, 'a.txt'), 'A');
      writeFileSync(join(dir, 'sub', 'b.txt'), 'B');
      const tree = await s.putTree(dir);
      const out = await s.materializeTree(tree, mkdtempSync(join(tmpdir(), 'out-')));
      assert.equal(readFileSync(join(out, 'a.txt'), 'utf8'), 'A');
      assert.equal(readFileSync(join(out, 'sub', 'b.txt'), 'utf8'), 'B');
      assert.deepEqual(await s.putTree(dir), tree, 'trees are content-addressed too');
    });

    /** A stored one-file model tree (model.onnx = 'weights'), checked out once into a fresh serving folder. */
    async function checkOutModelTree() {
      const s = fresh();
      const dir = mkdtempSync(join(tmpdir(), 'tree-'));
      writeFileSync(join(dir, 'model.onnx'), 'weights');
      const tree = await s.putTree(dir);
      const parent = mkdtempSync(join(tmpdir(), 'serving-'));
      return { s, tree, parent, out: await s.checkoutTree(tree, parent) };
    }

    it('checks a tree out once under its hash and reuses the copy', async () => {
      const { s, tree, parent, out } = await checkOutModelTree();
      assert.equal(out, join(parent, tree.sha256));
      assert.equal(readFileSync(join(out, 'model.onnx'), 'utf8'), 'weights');
      const before = statSync(join(out, 'model.onnx')).mtimeMs;
      assert.equal(await s.checkoutTree(tree, parent), out);
      assert.equal(statSync(join(out, 'model.onnx')).mtimeMs, before, 'second checkout reuses the copy');
      assert.deepEqual(readdirSync(parent), [tree.sha256], 'no temp folder left behind');
    });

    it('a checked-out copy that was edited, or gained a file, is replaced rather than served', async () => {
      const { s, tree, parent, out } = await checkOutModelTree();
      writeFileSync(join(out, 'model.onnx'), 'backdoor');
      await s.checkoutTree(tree, parent);
      assert.equal(readFileSync(join(out, 'model.onnx'), 'utf8'), 'weights');
      writeFileSync(join(out, 'model.onnx_data'), 'planted external data');
      await s.checkoutTree(tree, parent);
      assert.deepEqual(readdirSync(out), ['model.onnx']);
      assert.deepEqual(readdirSync(parent), [tree.sha256]);
    });

    if (local)
      it('leaves no partial object when the writer is killed mid-write', async () => {
        const s = fresh();
        // A child process streams 200 MB into the store; we SIGKILL it while it writes.
        const script = `
      import { ArtifactStore } from ${JSON.stringify(new URL('../src/store/artifact-store.ts', import.meta.url).pathname)};
      import { writeFileSync } from 'node:fs';
      const s = new ArtifactStore(${JSON.stringify(s.root)});
      const src = ${JSON.stringify(join(s.root, '..', 'big-src.bin'))};
      writeFileSync(src, Buffer.alloc(200 * 1024 * 1024, 1));
      console.log('writing');
      await s.putFile(src, { mediaType: 'application/octet-stream' });
      console.log('done');
    `;
        const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
          stdio: ['ignore', 'pipe', 'inherit'],
        });
        await new Promise<void>((resolve) => child.stdout.on('data', (d: Buffer) => d.toString().includes('writing') && resolve()));
        // Wait until the temp file has begun to grow, then kill.
        const tmpDir = join(s.root, 'tmp');
        const size = () => readdirSync(tmpDir).reduce((n, f) => n + statSync(join(tmpDir, f)).size, 0);
        for (let i = 0; i < 1000 && size() === 0; i++) await new Promise((r) => setTimeout(r, 2));
        child.kill('SIGKILL');
        await new Promise((r) => child.on('exit', r));
        assert.deepEqual(objects(s), [], 'no object appears under sha256/');
        const partial = readdirSync(tmpDir);
        assert.equal(partial.length, 1, 'the killed write left one temp file');
        assert.ok(size() < 200 * 1024 * 1024, 'and it is partial');
        assert.equal(await s.sweepTemp(0, 0), 1, 'which the sweeper removes (its writer is dead)');
        // The same content can still be stored afterwards, completely.
        const ref = await s.putBytes(Buffer.alloc(1024, 1), { mediaType: 'application/octet-stream' });
        await s.verify(ref);
      });
  });

describe('an unprivileged user (root runs it as nobody)', () => {
  it("stores a read-only source file: the kernel copy keeps the source's 0444 mode, and the fsync must not need write access", () => {
    const dir = mkdtempSync(join(tmpdir(), 'store-ro-'));
    chmodSync(dir, 0o777);
    const src = join(dir, 'src.txt');
    writeFileSync(src, 'read-only data');
    chmodSync(src, 0o444);
    const script = `
      import { ArtifactStore } from ${JSON.stringify(new URL('../src/store/artifact-store.ts', import.meta.url).pathname)};
      const s = new ArtifactStore(${JSON.stringify(join(dir, 'store'))});
      const ref = await s.putFile(${JSON.stringify(src)}, { mediaType: 'text/plain' });
      await s.verify(ref);
      console.log(ref.sha256);
    `;
    const asUser = process.getuid?.() === 0 ? { uid: 65534, gid: 65534 } : {};
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { ...asUser, encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout.trim(), sha256Hex('read-only data'));
  });
});
