/**
 * Training checkpoints in the shared store (src/store/shared-checkpoints.ts), on a shared folder and
 * on a real SeaweedFS bucket: a stage keeps at most its newest checkpoint there, none in the worker's
 * artifact cache, and none once it finished; a pointer or file that is damaged or hostile is ignored
 * (logged), never trusted, and leaves nothing behind.
 */
import { createHash } from 'node:crypto';
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ArtifactStore } from '../src/store/artifact-store.ts';
import { FolderBackend } from '../src/store/folder-backend.ts';
import type { ObjectBackend } from '../src/store/object-backend.ts';
import { readText } from '../src/store/object-backend.ts';
import {
  claimSharedCheckpoint,
  finishSharedCheckpoint,
  pullCheckpoint,
  pushCheckpoint,
  readSharedFinished,
} from '../src/store/shared-checkpoints.ts';
import { useTestS3, type TestS3 } from './helpers/seaweedfs.ts';

type T = { after: (fn: () => void | Promise<void>) => void };

let s3: TestS3 | undefined;
const NAME = 'e'.repeat(64);

/** A checkpoint folder as the trainer leaves it: a manifest and tensor files, one in a subfolder. */
function checkpoint(parent: string, step: number): string {
  const dir = join(parent, `step-${String(step).padStart(8, '0')}`);
  mkdirSync(join(dir, 'state'), { recursive: true });
  writeFileSync(join(dir, 'manifest.json'), JSON.stringify({ step }));
  writeFileSync(join(dir, 'params.bin'), Buffer.alloc(4096 + step, step));
  writeFileSync(join(dir, 'state', 'moments.bin'), Buffer.alloc(1000, 100 + step));
  return dir;
}

async function keys(remote: ObjectBackend, prefix = ''): Promise<string[]> {
  const out: string[] = [];
  for await (const k of remote.list(prefix)) out.push(k);
  return out.sort();
}

/** Every file under `dir`, relative, with its content. */
function snapshot(dir: string, rel = ''): Record<string, string> {
  const out: Record<string, string> = {};
  for (const e of readdirSync(join(dir, rel), { withFileTypes: true })) {
    const name = rel ? `${rel}/${e.name}` : e.name;
    if (e.isDirectory()) Object.assign(out, snapshot(dir, name));
    else out[name] = readFileSync(join(dir, name)).toString('base64');
  }
  return out;
}

const backends: { name: string; make: (t: T, dir: string) => ObjectBackend }[] = [
  { name: 'shared folder', make: (_t, dir) => new FolderBackend(join(dir, 'shared')) },
  { name: 'S3 (SeaweedFS)', make: () => s3!.backend() },
];

useTestS3((h) => (s3 = h));

for (const b of backends) {
  describe(`shared checkpoints on a ${b.name}`, () => {
    function setup(t: T) {
      const dir = mkdtempSync(join(tmpdir(), 'tempered-sck-'));
      t.after(() => rmSync(dir, { recursive: true, force: true }));
      const remote = b.make(t, dir);
      const home = (n: string) => new ArtifactStore(join(dir, n, 'store'), { remote });
      return { dir, remote, home };
    }

    test('a newer checkpoint replaces the older one in the store; another home pulls it whole; a finished stage leaves only its record', async (t) => {
      const { dir, remote, home } = setup(t);
      const a = home('a');
      const local = join(dir, 'a', 'checkpoints', NAME);
      const logs: string[] = [];
      await pushCheckpoint(a, NAME, checkpoint(local, 1), (m) => logs.push(m));
      await pushCheckpoint(a, NAME, checkpoint(local, 2), (m) => logs.push(m));
      const pointer = JSON.parse((await readText(remote, `checkpoints/${NAME}.json`))!) as { step: number };
      assert.equal(pointer.step, 2);
      assert.deepEqual(
        (await keys(remote, 'checkpoint-files/')).map((k) => k.replace(/\/step-00000002\.[0-9a-f]{16}\//, '/step-00000002/')),
        ['manifest.json', 'params.bin', 'state/moments.bin'].map((f) => `checkpoint-files/${NAME}/step-00000002/${f}`),
        'the files of step 1 are gone once the pointer names step 2 (each push in a folder of its own, step-N.<write id>)',
      );
      assert.deepEqual(await keys(remote, 'sha256/'), [], 'checkpoints are not content-addressed artifacts');
      assert.deepEqual(readdirSync(join(a.root, 'sha256')), [], 'nor copied into the worker cache');
      assert.deepEqual(logs, []);

      const b2 = home('b');
      const there = join(dir, 'b', 'checkpoints', NAME);
      assert.equal(await pullCheckpoint(b2, NAME, there), 2);
      assert.deepEqual(readdirSync(there), ['step-00000002']);
      assert.deepEqual(snapshot(join(there, 'step-00000002')), snapshot(join(local, 'step-00000002')));
      assert.equal(await pullCheckpoint(b2, NAME, there), undefined, 'a checkpoint as new is there already');

      await finishSharedCheckpoint(b2, NAME, { steps: 2 });
      assert.deepEqual(await keys(remote), [`checkpoints/${NAME}.json`], 'no checkpoint files once the stage finished, only its pointer');
      assert.deepEqual(await readSharedFinished(home('c'), NAME), { steps: 2 }, 'which holds the finished record');
      const fresh = join(dir, 'c', 'checkpoints', NAME);
      assert.equal(await pullCheckpoint(home('c'), NAME, fresh), undefined, 'and names no checkpoint to resume from');
      assert.ok(!existsSync(fresh) || readdirSync(fresh).length === 0);
    });

    test('a writer that may no longer move the pointer (its lease lost while the files went up) leaves it where it was', async (t) => {
      const { dir, remote, home } = setup(t);
      const a = home('a');
      const local = join(dir, 'a', 'checkpoints', NAME);
      await pushCheckpoint(a, NAME, checkpoint(local, 1));
      await assert.rejects(
        pushCheckpoint(a, NAME, checkpoint(local, 2), undefined, () => {
          throw new Error('lease lost');
        }),
        /lease lost/,
      );
      const pointer = JSON.parse((await readText(remote, `checkpoints/${NAME}.json`))!) as { step: number };
      assert.equal(pointer.step, 1, 'the pointer still names the step before');
      assert.ok(
        (await keys(remote, 'checkpoint-files/')).some((k) => k.includes('step-00000001.')),
        'the files the pointer names are kept: nothing was cleaned up after the refusal',
      );
    });

    test('a file that is missing or does not match its pointer is logged and ignored: no folder, no temp files', async (t) => {
      const { dir, remote, home } = setup(t);
      const a = home('a');
      await pushCheckpoint(a, NAME, checkpoint(join(dir, 'a', 'ck'), 3));
      const params = (await keys(remote, `checkpoint-files/${NAME}/step-00000003.`)).find((k) => k.endsWith('/params.bin'))!;
      const good = (await readText(remote, params))!;

      await remote.putBytes(params, Buffer.from('bit rot'), { ifAbsent: false });
      const there = join(dir, 'b', 'ck');
      const logs: string[] = [];
      assert.equal(await pullCheckpoint(home('b'), NAME, there, (m) => logs.push(m)), undefined);
      assert.match(logs.join('\n'), /params\.bin has 7 bytes hashing to [0-9a-f]{64}, its pointer says 4099 bytes/);
      assert.deepEqual(readdirSync(there), [], 'neither the checkpoint nor its temp folder is left');

      await remote.delete(params);
      logs.length = 0;
      assert.equal(await pullCheckpoint(home('c'), NAME, join(dir, 'c', 'ck'), (m) => logs.push(m)), undefined);
      assert.match(logs.join('\n'), /params\.bin is missing/);

      await remote.putBytes(params, Buffer.from(good, 'utf8'), { ifAbsent: false });
      assert.equal(await pullCheckpoint(home('d'), NAME, join(dir, 'd', 'ck')), 3, 'whole again, it is used');
    });

    test('a hostile pointer is refused before anything is written', async (t) => {
      const { dir, remote, home } = setup(t);
      const entry = (name: string) => ({ name, sha256: 'a'.repeat(64), bytes: 1 });
      const manifest = entry('manifest.json');
      const pointers: [unknown, RegExp][] = [
        ['not json', /not JSON/],
        [{ step: 1, name: '../step-1', files: [manifest] }, /no step folder/],
        [{ step: 2, name: 'step-1', files: [manifest] }, /no step folder/],
        [{ step: 1, name: `step-${'0'.repeat(300)}1`, files: [manifest] }, /no step folder/],
        [{ step: 1, name: 'step-1' }, /lists no files/],
        [{ step: 1, name: 'step-1', files: [] }, /no manifest\.json/],
        [{ step: 1, name: 'step-1', files: [entry('weights.bin')] }, /no manifest\.json/],
        [{ step: 1, name: 'step-1', files: [manifest, null] }, /not an object/],
        [{ step: 1, name: 'step-1', files: [entry('../../outside')] }, /unsafe file name/],
        [{ step: 1, name: 'step-1', files: [entry('/etc/passwd')] }, /unsafe file name/],
        [{ step: 1, name: 'step-1', files: [entry('a/./b')] }, /unusual file name/],
        [{ step: 1, name: 'step-1', files: [entry('x'), entry('x')] }, /twice/],
        [{ step: 1, name: 'step-1', files: [entry('x'), entry('x/y')] }, /as a file and as a folder/],
        [{ step: 1, name: 'step-1', files: [{ name: 'x', sha256: 'nope', bytes: 1 }] }, /no valid sha256/],
        [{ step: 1, name: 'step-1', files: [{ name: 'x', sha256: 'a'.repeat(64), bytes: -1 }] }, /no valid sha256/],
        // The push's folder of files: inside the checkpoint's folder of files, of its own step.
        [{ step: 1, name: 'step-1', at: '../../sha256', files: [manifest] }, /no step folder/],
        [{ step: 1, name: 'step-1', at: 'step-2.0123456789abcdef', files: [manifest] }, /no step folder/],
        [{ step: 1, name: 'step-1', at: 'step-1./x', files: [manifest] }, /no step folder/],
      ];
      const there = join(dir, 'b', 'ck');
      for (const [p, why] of pointers) {
        const text = typeof p === 'string' ? p : JSON.stringify(p);
        await remote.putBytes(`checkpoints/${NAME}.json`, Buffer.from(text), { ifAbsent: false });
        const logs: string[] = [];
        assert.equal(await pullCheckpoint(home('b'), NAME, there, (m) => logs.push(m)), undefined, text);
        assert.match(logs.join('\n'), why, text);
      }
      assert.equal(existsSync(there), false, 'nothing was written');
      assert.equal(existsSync(join(dir, 'outside')), false);
    });

    test('a folder of the pointed-to name without a manifest (a pull cut short) is replaced, not an error', async (t) => {
      const { dir, home } = setup(t);
      await pushCheckpoint(home('a'), NAME, checkpoint(join(dir, 'a', 'ck'), 5));
      const there = join(dir, 'b', 'ck');
      mkdirSync(join(there, 'step-00000005'), { recursive: true });
      writeFileSync(join(there, 'step-00000005', 'params.bin'), 'half');
      assert.equal(await pullCheckpoint(home('b'), NAME, there), 5);
      assert.deepEqual(snapshot(join(there, 'step-00000005')), snapshot(join(dir, 'a', 'ck', 'step-00000005')));
    });

    test('a pointer from before checkpoints had files of their own (a tree artifact) still resumes', async (t) => {
      const { dir, remote, home } = setup(t);
      const a = home('a');
      const folder = checkpoint(join(dir, 'a', 'ck'), 4);
      const tree = await a.putTree(folder);
      await remote.putBytes(`checkpoints/${NAME}.json`, Buffer.from(JSON.stringify({ step: 4, name: 'step-00000004', tree })), {
        ifAbsent: false,
      });
      const there = join(dir, 'b', 'ck');
      assert.equal(await pullCheckpoint(home('b'), NAME, there), 4);
      assert.deepEqual(snapshot(join(there, 'step-00000004')), snapshot(folder));
      // One whose tree lost a file is ignored like a new one, not an error that fails every attempt.
      const files = (JSON.parse(readFileSync(await a.verify(tree), 'utf8')) as { files: { name: string; sha256: string }[] }).files;
      const lost = files.find((f) => f.name === 'manifest.json')!.sha256;
      await remote.delete(`sha256/${lost.slice(0, 2)}/${lost}`);
      const logs: string[] = [];
      assert.equal(await pullCheckpoint(home('c'), NAME, join(dir, 'c', 'ck'), (m) => logs.push(m)), undefined);
      assert.match(logs.join('\n'), /ignoring the shared checkpoint .* at step 4: artifact [0-9a-f]{64} is not in the store/);
    });

    test('a pointer from before each push had a folder of its own (files under step-N/) still resumes, and the next push deletes them', async (t) => {
      const { dir, remote, home } = setup(t);
      // What a worker before 7 Dec 2026 shared: its files under checkpoint-files/<name>/step-N/, the pointer without `at`.
      const folder = checkpoint(join(dir, 'old', 'ck'), 5);
      const files = [];
      for (const name of ['manifest.json', 'params.bin', 'state/moments.bin']) {
        const bytes = readFileSync(join(folder, name));
        await remote.putBytes(`checkpoint-files/${NAME}/step-00000005/${name}`, bytes, { ifAbsent: false });
        files.push({ name, sha256: createHash('sha256').update(bytes).digest('hex'), bytes: bytes.length });
      }
      await remote.putBytes(`checkpoints/${NAME}.json`, Buffer.from(JSON.stringify({ step: 5, name: 'step-00000005', files })), {
        ifAbsent: false,
      });
      const b = home('b');
      const hold = await claimSharedCheckpoint(b, NAME, 'a new worker');
      const there = join(dir, 'b', 'ck');
      assert.equal(await pullCheckpoint(b, NAME, there, undefined, hold), 5);
      assert.deepEqual(snapshot(join(there, 'step-00000005')), snapshot(folder));
      await pushCheckpoint(b, NAME, checkpoint(there, 6), undefined, undefined, hold);
      assert.deepEqual(
        (await keys(remote, `checkpoint-files/${NAME}/`)).map((k) => k.split('/')[2]!.replace(/\.[0-9a-f]{16}$/, '.<id>')),
        ['step-00000006.<id>', 'step-00000006.<id>', 'step-00000006.<id>'],
        "the old step-N/ folder went with the next push's clean-up",
      );
    });

    test('a clean-up that fails is logged, not thrown: the checkpoint is shared all the same', async (t) => {
      const { dir, remote, home } = setup(t);
      const failing = Object.create(remote) as ObjectBackend;
      failing.delete = async () => {
        throw new Error('store refused the delete');
      };
      const a = new ArtifactStore(join(dir, 'a', 'store'), { remote: failing });
      const local = join(dir, 'a', 'ck');
      await pushCheckpoint(a, NAME, checkpoint(local, 1));
      const logs: string[] = [];
      await pushCheckpoint(a, NAME, checkpoint(local, 2), (m) => logs.push(m));
      assert.match(logs.join('\n'), /could not delete older shared checkpoints.*store refused the delete/);
      assert.equal(await pullCheckpoint(home('b'), NAME, join(dir, 'b', 'ck')), 2);
      // The next push (here: of the same folder again) removes what the failed one left.
      await pushCheckpoint(home('c'), NAME, join(local, 'step-00000002'));
      assert.equal((await keys(remote, `checkpoint-files/${NAME}/step-00000001`)).length, 0);
    });
  });
}
