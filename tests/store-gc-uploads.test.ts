/**
 * A worker SIGKILLed while it uploads a large checkpoint file (multipart, as every file over TEMPERED_S3_PART_MB is)
 * leaves an unfinished upload: S3 keeps its parts, listed by no object listing and billed, until the upload is aborted.
 * `store gc` aborts those begun before its horizon. Real SeaweedFS, a real child process pushing a real checkpoint; on a
 * shared folder, the temp file such a writer leaves goes the same way.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describeGarbage } from '../cli/commands/store.ts';
import { ArtifactStore } from '../src/store/artifact-store.ts';
import { FolderBackend } from '../src/store/folder-backend.ts';
import { collectGarbage } from '../src/store/garbage.ts';
import type { ObjectBackend } from '../src/store/object-backend.ts';
import { pushCheckpoint } from '../src/store/shared-checkpoints.ts';
import { StageCache } from '../src/store/stage-cache.ts';
import { openAudit } from '../src/audit/log.ts';
import { openRegistry } from '../src/registry/registry.ts';
import { runCliInProcess } from './helpers/cli.ts';
import { rawClient, useTestS3, type TestS3 } from './helpers/seaweedfs.ts';

let s3!: TestS3;
useTestS3((h) => (s3 = h));

const DAY = 86_400_000;
const HORIZON = 30 * DAY;
const ROOT = resolve(import.meta.dirname, '..');

/** A checkpoint folder of `step` under `parent`. */
function checkpoint(parent: string, step: number): string {
  const ck = join(parent, `step-${String(step).padStart(8, '0')}`);
  mkdirSync(ck, { recursive: true });
  writeFileSync(join(ck, 'manifest.json'), JSON.stringify({ step }));
  writeFileSync(join(ck, 'params.bin'), Buffer.alloc(4096, step));
  return ck;
}

async function keysOf(backend: ObjectBackend): Promise<string[]> {
  const out: string[] = [];
  for await (const k of backend.list('')) out.push(k);
  return out;
}

/** The unfinished uploads under `prefix` (the store's key prefix), as S3 lists them. */
async function unfinished(prefix: string): Promise<string[]> {
  const { client, sdk } = await rawClient(s3.env);
  const r = await client.send(new sdk.ListMultipartUploadsCommand({ Bucket: s3.bucket, Prefix: `${prefix}/` }));
  return (r.Uploads ?? []).map((u) => u.Key!.slice(prefix.length + 1)).sort();
}

test('store gc aborts the unfinished upload a worker killed mid-checkpoint left, once begun before the horizon', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tempered-gc-uploads-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const url = s3.freshUrl();
  const prefix = url.slice(`s3://${s3.bucket}/`.length);
  // A checkpoint whose tensor file takes several 5 MiB parts.
  const ck = join(dir, 'ck', 'step-00000004');
  mkdirSync(ck, { recursive: true });
  writeFileSync(join(ck, 'manifest.json'), JSON.stringify({ step: 4 }));
  writeFileSync(join(ck, 'params.bin'), Buffer.alloc(60 << 20, 7));
  const script = `
    import { ArtifactStore } from ${JSON.stringify(join(ROOT, 'src/store/artifact-store.ts'))};
    import { S3Backend } from ${JSON.stringify(join(ROOT, 'src/store/s3-backend.ts'))};
    import { pushCheckpoint } from ${JSON.stringify(join(ROOT, 'src/store/shared-checkpoints.ts'))};
    const store = new ArtifactStore(${JSON.stringify(join(dir, 'worker'))}, { remote: new S3Backend(${JSON.stringify(url)}, { queueSize: 1 }) });
    await pushCheckpoint(store, 'work', ${JSON.stringify(ck)});
    console.log('pushed');
  `;
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
    cwd: ROOT,
    env: { ...process.env, ...s3.env, TEMPERED_S3_PART_MB: '5' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d));
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  t.after(() => void child.kill('SIGKILL'));
  // Killed once its upload of params.bin has begun, long before its 12 parts are up.
  for (let i = 0; i < 600 && (await unfinished(prefix)).length === 0; i++) await sleep(50);
  child.kill('SIGKILL');
  await exited;
  assert.doesNotMatch(out, /pushed/, 'the push was cut short');
  assert.match(
    (await unfinished(prefix)).join(),
    /^checkpoint-files\/work\/step-00000004\.[0-9a-f]{16}\/params\.bin$/,
    'the kill left the upload unfinished',
  );
  // Another program's upload in the bucket, outside the keys tempered writes: not gc's to abort.
  const { client, sdk } = await rawClient(s3.env);
  await client.send(new sdk.CreateMultipartUploadCommand({ Bucket: s3.bucket, Key: `${prefix}/exports/report.parquet` }));

  const store = new ArtifactStore(join(dir, 'gc'), { remote: s3.backend(url) });
  const cache = new StageCache(join(dir, 'cache'), store);
  const gc = (collect: boolean, now: number) => collectGarbage({ store, cache, roots: [], olderThanMs: HORIZON, collect, now });
  // Begun after the horizon: an upload that may still be going on.
  const recent = await gc(true, Date.now());
  assert.deepEqual(recent.uploads, { abandoned: 0, aborted: 0 });
  assert.equal((await unfinished(prefix)).length, 2);
  const later = Date.now() + HORIZON + DAY;
  const dry = await gc(false, later);
  assert.deepEqual(dry.uploads, { abandoned: 1, aborted: 0 });
  assert.match(describeGarbage(dry), /unfinished uploads begun before the horizon .*: 1 to abort/);
  assert.equal((await unfinished(prefix)).length, 2, 'a dry run aborts nothing');
  const collected = await gc(true, later);
  assert.deepEqual(collected.uploads, { abandoned: 1, aborted: 1 });
  assert.deepEqual(await unfinished(prefix), ['exports/report.parquet'], "its parts are gone; the other program's upload stays");
});

test('on a shared folder, store gc deletes the temp file a writer killed mid-put left, once unwritten since the horizon', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tempered-gc-uploads-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const bucket = new FolderBackend(join(dir, 'shared'));
  const store = new ArtifactStore(join(dir, 'gc'), { remote: bucket });
  await pushCheckpoint(store, 'work', checkpoint(join(dir, 'ck'), 4));
  // What FolderBackend.place leaves when its process is killed between its write and its rename: the next push's file,
  // under its temp name beside the object. Nothing lists it, and no put of another process removes it.
  const key = 'checkpoint-files/work/step-00000008/params.bin';
  const temp = join(bucket.root, ...`${key}.4242.0a1b2c3d.tmp`.split('/'));
  mkdirSync(dirname(temp), { recursive: true });
  writeFileSync(temp, Buffer.alloc(1 << 20, 8));
  assert.ok(!(await keysOf(bucket)).some((k) => k.endsWith('.tmp')), 'no listing shows it');
  // A file of that shape outside the keys tempered writes is not gc's.
  const foreign = join(bucket.root, 'exports', 'report.bin.4242.0a1b2c3d.tmp');
  mkdirSync(dirname(foreign), { recursive: true });
  writeFileSync(foreign, 'x');
  const cache = new StageCache(join(dir, 'cache'), store);
  const gc = (collect: boolean, now: number) => collectGarbage({ store, cache, roots: [], olderThanMs: HORIZON, collect, now });
  assert.deepEqual((await gc(true, Date.now())).uploads, { abandoned: 0, aborted: 0 }, 'a put that may still be writing it');
  assert.ok(existsSync(temp));
  // Aged past the horizon (as is what the push stored: the gc judges that by its own rules).
  const later = Date.now() + HORIZON + DAY;
  assert.deepEqual((await gc(true, later)).uploads, { abandoned: 1, aborted: 1 });
  assert.ok(!existsSync(temp), 'the temp file is gone');
  assert.ok(existsSync(foreign), 'the file outside the keys tempered writes stays');
});

test('on a shared folder, store gc deletes what swappers killed mid-swap left beside a pointer’s lock, once unwritten since the horizon', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tempered-gc-uploads-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const bucket = new FolderBackend(join(dir, 'shared'));
  const store = new ArtifactStore(join(dir, 'gc'), { remote: bucket });
  await pushCheckpoint(store, 'work', checkpoint(join(dir, 'ck'), 4));
  // A swapper killed while it waited for the pointer's lock (its folder, with its owner and its new bytes), and one
  // killed between its rename of a lock aside and its delete of it (folder-swap.ts): no swap but a takeover sweeps them.
  const pointer = join(bucket.root, 'checkpoints', 'work.json');
  const built = `${pointer}.tempered-swap.0123456789abcdef.new`;
  const aside = `${pointer}.tempered-swap.0a1b2c3d4e5f.stale`;
  for (const f of [built, aside]) {
    mkdirSync(f);
    writeFileSync(join(f, 'owner'), '{}');
  }
  writeFileSync(join(built, '0123456789abcdef.new'), '{"step":5}');
  // Folders of that shape outside the keys tempered writes are not gc's.
  const foreign = join(bucket.root, 'exports', 'x.tempered-swap.0123456789abcdef.new');
  mkdirSync(foreign, { recursive: true });
  const cache = new StageCache(join(dir, 'cache'), store);
  const gc = (collect: boolean, now: number) => collectGarbage({ store, cache, roots: [], olderThanMs: HORIZON, collect, now });
  assert.deepEqual((await gc(true, Date.now())).uploads, { abandoned: 0, aborted: 0 }, 'swaps that may still be going on');
  assert.ok(existsSync(built) && existsSync(aside));
  const later = Date.now() + HORIZON + DAY;
  assert.deepEqual((await gc(false, later)).uploads, { abandoned: 2, aborted: 0 });
  assert.ok(existsSync(built) && existsSync(aside), 'a dry run deletes nothing');
  assert.deepEqual((await gc(true, later)).uploads, { abandoned: 2, aborted: 2 });
  assert.ok(!existsSync(built) && !existsSync(aside), 'both gone');
  assert.ok(existsSync(foreign), 'the folder outside the keys tempered writes stays');
});

test('`store gc --collect` puts what it aborted in its store.collected audit record, as everything else it deletes', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tempered-gc-uploads-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const shared = join(dir, 'shared');
  // A killed writer's temp file on a shared folder store, unwritten for 40 days.
  const temp = join(shared, 'checkpoint-files', 'work', 'step-00000008', 'params.bin.4242.0a1b2c3d.tmp');
  mkdirSync(dirname(temp), { recursive: true });
  writeFileSync(temp, Buffer.alloc(1024, 8));
  const old = new Date(Date.now() - 40 * DAY);
  utimesSync(temp, old, old);
  const home = join(dir, 'home');
  const env = { TEMPERED_HOME: home, TEMPERED_STORE: shared, TEMPERED_DATABASE_URL: '', TEMPERED_ACTOR: 'ops' };
  // This host's registry, the only one (--sole-registry): empty.
  mkdirSync(home, { recursive: true });
  await (await openRegistry(join(home, 'registry.db'))).close();
  const done = await runCliInProcess(['store', 'gc', '--collect', '--sole-registry'], env);
  assert.equal(done.code, 0, done.stderr);
  assert.match(done.stdout, /unfinished uploads begun before the horizon .*: 1 aborted 1/);
  assert.ok(!existsSync(temp));
  const audit = await openAudit(join(home, 'audit.db'));
  const gc = (await audit.query({ action: 'store.collected' }))[0];
  await audit.close();
  assert.equal((gc?.details as { uploads?: number } | undefined)?.uploads, 1, JSON.stringify(gc?.details));
});
