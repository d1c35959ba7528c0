/**
 * `store gc` and this host's training checkpoints (local-checkpoints.ts through collectGarbage): real
 * checkpoint folders (saveCheckpoint), a real folder store and stage cache, real processes holding
 * locks, and a real (tiny) train stage resuming, or starting afresh, after a collection.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs, {
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
  type RmOptions,
} from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { latestCheckpoint, saveCheckpoint } from '../engine/checkpoint.ts';
import { tinyGpt2Dir } from '../models/tiny.testing.ts';
import { trainStage } from '../stages/train.ts';
import { tinyLoraTrainConfig, writeRepeatTable } from '../stages/train-config.testing.ts';
import type { StageContext } from '../stages/types.ts';
import { acquireDirLock, LockBusyError } from '../util/dir-lock.ts';
import { machineId, processStart } from '../util/process-alive.ts';
import { ArtifactStore } from './artifact-store.ts';
import { collectGarbage, GarbageIncomplete, type GarbageReport } from './garbage.ts';
import { acquireCheckpointLock, GC_HOLDER } from './local-checkpoints.ts';
import { StageCache } from './stage-cache.ts';

type T = { after: (fn: () => void) => void };
const DAY = 24 * 3600_000;
const HORIZON = 30 * DAY;

function home(t: T, name: string) {
  const dir = mkdtempSync(join(tmpdir(), `tempered-ckgc-${name}-`));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const store = new ArtifactStore(join(dir, 'store'));
  const cache = new StageCache(join(dir, 'cache'), store);
  const checkpoints = join(dir, 'checkpoints');
  mkdirSync(checkpoints, { recursive: true });
  const gc = (collect: boolean) => collectGarbage({ store, cache, roots: [], olderThanMs: HORIZON, collect, checkpointsDir: checkpoints });
  return { dir, store, cache, checkpoints, gc };
}

/** Everything under `dir`, with sizes and times: what a dry run must leave as it was. */
function snapshot(dir: string): string[] {
  const out: string[] = [];
  const walk = (p: string) => {
    const st = lstatSync(p);
    out.push(`${p} ${st.size} ${st.mtimeMs}`);
    if (st.isDirectory()) for (const n of readdirSync(p).sort()) walk(join(p, n));
  };
  walk(dir);
  return out;
}

/** Sets the times of a tree, deepest first, `days` back. */
function age(path: string, days: number): void {
  const when = new Date(Date.now() - days * DAY);
  const walk = (p: string) => {
    if (lstatSync(p).isDirectory()) for (const n of readdirSync(p)) walk(join(p, n));
    utimesSync(p, when, when);
  };
  walk(path);
}

/** A real checkpoint of `step` in `<checkpoints>/<name>/step-N`, `floats` float32 weights. */
function checkpoint(checkpoints: string, name: string, step: number, floats = 1000): string {
  const dir = join(checkpoints, name, `step-${step}`);
  mkdirSync(join(checkpoints, name), { recursive: true });
  saveCheckpoint(dir, {
    manifest: {
      format: 'tempered-checkpoint/1',
      step,
      epoch: 0,
      position: step,
      rng: { s: [1, 2, 3, 4] } as never,
      configHash: 'c',
      evalsWithoutImprovement: 0,
      shapes: { w: [floats] },
    },
    params: new Map([['w', new Float32Array(floats).fill(step)]]),
    state: new Map([['m', new Float32Array(floats)]]),
  });
  return dir;
}

/** A pid no process has: one that ran and exited. */
function deadPid(): number {
  const r = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']);
  return Number(r.stdout.toString());
}

/** A live process other than this one, stopped when the test ends. */
function liveProcess(t: T): number {
  const child = spawn('sleep', ['600'], { stdio: 'ignore' });
  t.after(() => child.kill('SIGKILL'));
  return child.pid!;
}

/** The lock a train stage of process `pid` holds on a folder, last refreshed an hour ago. */
function lockOf(folder: string, pid: number): string {
  const path = `${folder}.lock`;
  writeFileSync(
    path,
    JSON.stringify({
      token: 'held',
      pid,
      host: hostname(),
      machine: machineId(),
      pidStart: processStart(pid),
      what: 'run r stage train attempt 1',
      since: new Date().toISOString(),
    }),
  );
  const anHourAgo = new Date(Date.now() - 3600_000);
  utimesSync(path, anHourAgo, anHourAgo);
  return path;
}

const key = (c: string) => c.repeat(64);

test('store gc keeps the checkpoints a resume or a running training needs and collects the rest; a dry run deletes nothing', async (t) => {
  const { checkpoints, cache, gc } = home(t, 'judge');
  const dead = deadPid();
  const live = liveProcess(t);
  const at = (name: string) => join(checkpoints, name);

  // Abandoned: a failed training nobody resumed for 40 days.
  checkpoint(checkpoints, key('a'), 2);
  age(at(key('a')), 40);
  // Recent: a failed training from yesterday, with a half-written checkpoint of its dead writer
  // (and one of a live writer, which stays).
  checkpoint(checkpoints, key('b'), 2);
  mkdirSync(join(at(key('b')), `.step-3.tmp-${dead}`));
  writeFileSync(join(at(key('b')), `.step-3.tmp-${dead}`, 'weights.safetensors'), Buffer.alloc(5000));
  mkdirSync(join(at(key('b')), `.step-3.tmp-${live}`));
  age(at(key('b')), 1);
  // Completed elsewhere: written an hour ago, but the stage has a record (another worker finished it). Aged, as said:
  // written just now, its last write and the record could fall in one millisecond, and the record would not be newer.
  checkpoint(checkpoints, key('c'), 2);
  age(at(key('c')), 1 / 24);
  await cache.put({
    key: key('c'),
    kind: 'train',
    outputs: {},
    producedBy: { runId: 'r2', stageId: 'train' },
    createdAt: new Date().toISOString(),
  });
  // A record the collection drops (older than the horizon): the next run trains again, so the
  // recent folder is what it resumes from.
  checkpoint(checkpoints, key('d'), 2);
  await cache.put({
    key: key('d'),
    kind: 'train',
    outputs: {},
    producedBy: { runId: 'r0', stageId: 'train' },
    createdAt: new Date(Date.now() - 40 * DAY).toISOString(),
  });
  // Finished: its stage wrote COMPLETE and was killed before it cleared the rest.
  checkpoint(checkpoints, key('e'), 4);
  writeFileSync(join(at(key('e')), 'COMPLETE'), 'now');
  // Old, but a live training holds its lock (blocked in a long native run, it refreshed nothing for an hour).
  checkpoint(checkpoints, key('f'), 2);
  age(at(key('f')), 40);
  const heldLock = lockOf(at(key('f')), live);
  // Old, its lock left by a process that is gone.
  checkpoint(checkpoints, key('g'), 2);
  age(at(key('g')), 40);
  const deadLock = lockOf(at(key('g')), dead);
  // Left aside by a collection that was killed mid-delete: no resume reads it.
  mkdirSync(join(checkpoints, `.${key('h')}.gc-${dead}-0123abcd`));
  checkpoint(join(checkpoints, `.${key('h')}.gc-${dead}-0123abcd`), 'x', 3);
  assert.equal(latestCheckpoint(at(key('h'))), undefined);

  const before = snapshot(checkpoints);
  const dry = (await gc(false)).localCheckpoints!;
  assert.deepEqual(snapshot(checkpoints), before, 'a dry run changes nothing');
  const whys = Object.fromEntries(dry.items.map((i) => [i.name, i.why]));
  assert.deepEqual(whys, {
    [key('a')]: 'abandoned',
    [key('b')]: 'stray temps',
    [key('c')]: 'completed elsewhere',
    [key('e')]: 'finished',
    [key('g')]: 'abandoned',
    [`.${key('h')}.gc-${dead}-0123abcd`]: 'interrupted gc',
  });
  assert.equal(dry.kept, 3, 'b, d and f stay');
  assert.equal(dry.held, 1);
  assert.equal(dry.deleted, 0);
  assert.equal(dry.items.find((i) => i.why === 'stray temps')!.bytes, 5000);
  assert.ok(dry.garbageBytes > 5 * 8000, `${dry.garbageBytes}`);

  const done = await gc(true);
  const c = done.localCheckpoints!;
  assert.equal(c.deleted, dry.garbage);
  assert.equal(c.deletedBytes, dry.garbageBytes, 'what the dry run announced is what went');
  assert.deepEqual(
    readdirSync(checkpoints).sort(),
    [key('b'), key('d'), key('e'), key('f'), `${key('f')}.lock`].sort(),
    'the others are gone, with the lock of the dead holder; nothing is left aside',
  );
  assert.deepEqual(readdirSync(at(key('e'))), ['COMPLETE'], "the finished folder's checkpoints went, its mark stays");
  assert.ok(existsSync(heldLock), 'the live holder keeps its lock');
  assert.equal(existsSync(deadLock), false);
  assert.equal(latestCheckpoint(at(key('b'))), join(at(key('b')), 'step-2'), 'the recent folder keeps its checkpoint');
  assert.deepEqual(
    readdirSync(at(key('b'))).sort(),
    [`.step-3.tmp-${live}`, 'step-2'].sort(),
    "the dead writer's temp went, the live one's stayed",
  );
  assert.ok(latestCheckpoint(at(key('d'))) && latestCheckpoint(at(key('f'))));
  t.diagnostic(`reclaimed ${c.deletedBytes} bytes in ${c.deleted} folders; kept ${c.keptBytes} bytes in ${c.kept}`);

  const again = (await gc(true)).localCheckpoints!;
  assert.equal(again.garbage, 0, 'a second collection finds nothing');
});

test('store gc on a home without checkpoints; an old folder whose lock a holder on another machine refreshed lately stays', async (t) => {
  const { checkpoints, gc } = home(t, 'none');
  rmSync(checkpoints, { recursive: true });
  assert.deepEqual((await gc(true)).localCheckpoints!.items, []);
  mkdirSync(checkpoints);
  // Old, and its holder's process ran on another machine and refreshed the lock just now.
  checkpoint(checkpoints, key('a'), 1);
  age(join(checkpoints, key('a')), 40);
  writeFileSync(
    join(checkpoints, `${key('a')}.lock`),
    JSON.stringify({ token: 't', pid: 1, host: 'elsewhere', machine: 'elsewhere/boot/ns', what: 'run r stage train attempt 2', since: '' }),
  );
  const r: GarbageReport = await gc(true);
  assert.deepEqual([r.localCheckpoints!.held, r.localCheckpoints!.deleted], [1, 0]);
  assert.ok(latestCheckpoint(join(checkpoints, key('a'))));
});

test('a collection killed mid-delete leaves nothing a resume reads, and the next one finishes the delete', async (t) => {
  const { checkpoints, gc } = home(t, 'killed');
  const folder = join(checkpoints, key('a'));
  checkpoint(checkpoints, key('a'), 1);
  checkpoint(checkpoints, key('a'), 2);
  age(folder, 40);
  // A gc process whose delete of the folder is cut short by SIGKILL, one file into it: node:fs's
  // rmSync is wrapped in that process only, to delete one file and kill it.
  const module = new URL('./local-checkpoints.ts', import.meta.url).href;
  const script = `
    import fs from 'node:fs';
    import { syncBuiltinESMExports } from 'node:module';
    import { join } from 'node:path';
    const rm = fs.rmSync;
    fs.rmSync = (p, o) => {
      if (/\\.gc-\\d+-/.test(p)) { fs.unlinkSync(join(p, 'step-2', 'weights.safetensors')); process.kill(process.pid, 'SIGKILL'); }
      return rm(p, o);
    };
    syncBuiltinESMExports();
    const { collectLocalCheckpoints } = await import(${JSON.stringify(module)});
    collectLocalCheckpoints({ dir: ${JSON.stringify(checkpoints)}, horizon: Date.now() - ${HORIZON}, completed: new Map(), collect: true });
  `;
  const killed = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8' });
  assert.equal(killed.signal, 'SIGKILL', killed.stderr);
  const left = readdirSync(checkpoints);
  assert.equal(left.length, 1, `only the aside folder is left, no lock: ${left.join(', ')}`);
  assert.match(left[0]!, /^\.a{64}\.gc-\d+-[0-9a-f]{8}$/);
  // Renamed aside, it read as changed just now, not 40 days ago: another collection running meanwhile left it to this
  // one while its pid lived (it takes a live pid's aside folder once nothing in it changed for a while).
  assert.ok(lstatSync(join(checkpoints, left[0]!)).mtimeMs > Date.now() - DAY, "the aside folder kept the training's time");
  assert.equal(latestCheckpoint(folder), undefined, 'a resume finds no checkpoint, not a damaged one');

  const r = (await gc(true)).localCheckpoints!;
  assert.deepEqual(
    r.items.map((i) => [i.why, i.deleted]),
    [['interrupted gc', true]],
  );
  assert.deepEqual(readdirSync(checkpoints), []);
});

/** A tiny causal-lm train stage (src/stages/train-lock.test.ts's) in a home of its own. */
async function trainFixture(t: T) {
  const h = home(t, 'train');
  const modelDir = tinyGpt2Dir(join(h.dir, 'model'), 5, { hidden: 32, layers: 2, maxPositions: 64 });
  const tablePath = join(h.dir, 'train.arrow');
  writeRepeatTable(tablePath);
  const trainRef = await h.store.putFile(tablePath, { mediaType: 'application/vnd.apache.arrow.file' });
  const cfg = tinyLoraTrainConfig(modelDir, trainRef);
  let attempt = 0;
  /** Runs the stage of `cacheKey`; with `failAt`, it fails once it has a checkpoint of that step. */
  const run = (cacheKey: string, failAt?: number) => {
    const ac = new AbortController();
    const ctx: StageContext = {
      runId: 'r',
      stageId: 'train',
      attempt: ++attempt,
      baseDir: h.dir,
      specHash: 's',
      actor: 't',
      cacheKey,
      store: h.store,
      workDir: join(h.dir, `work-${attempt}`),
      stateDir: h.dir,
      signal: ac.signal,
      progress(p) {
        const at = /^checkpoint .*step-(\d+)$/.exec(p.message ?? '');
        if (failAt !== undefined && at && Number(at[1]) >= failAt) ac.abort(new Error('worker lost'));
      },
      log() {},
    };
    return trainStage.run(cfg, ctx).then((out) => ({
      steps: out.steps as number,
      finalLoss: out.finalLoss as number,
      resumedFromStep: (out.baseModel as { resumedFromStep: number | null }).resumedFromStep,
    }));
  };
  return { ...h, run };
}

test('after store gc --collect a kept checkpoint still resumes, and a collected one starts the next run from step 0', async (t) => {
  const { checkpoints, gc, run } = await trainFixture(t);
  const kept = key('1');
  const collected = key('2');
  await assert.rejects(run(kept, 2));
  await assert.rejects(run(collected, 2));
  const step = (k: string) => Number(/step-(\d+)$/.exec(latestCheckpoint(join(checkpoints, k))!)![1]);
  const keptStep = step(kept);
  assert.ok(keptStep >= 2 && keptStep < 6, `${keptStep}`);
  // The second failed training is left for 40 days.
  age(join(checkpoints, collected), 40);

  const r = (await gc(true)).localCheckpoints!;
  assert.deepEqual(
    r.items.map((i) => [i.name, i.why, i.deleted]),
    [[collected, 'abandoned', true]],
  );
  assert.equal(r.kept, 1);
  t.diagnostic(`a failed tiny LoRA training's folder: ${r.deletedBytes} bytes reclaimed`);

  const resumed = await run(kept);
  assert.equal(resumed.steps, 6);
  assert.equal(resumed.resumedFromStep, keptStep, 'the kept checkpoint is resumed from');
  const fresh = await run(collected);
  assert.equal(fresh.steps, 6);
  assert.equal(fresh.resumedFromStep, null, 'the collected one is gone: a clean start from step 0');
  assert.equal(fresh.finalLoss, resumed.finalLoss, 'the same training either way');

  // Both finished: their folders hold only COMPLETE now, the record a retry whose completion was lost returns
  // (src/stages/train-finished.ts), kept until it is as old as the horizon.
  const after = (await gc(true)).localCheckpoints!;
  assert.deepEqual(after.items, []);
  assert.deepEqual(readdirSync(checkpoints).sort(), [kept, collected].sort());
  for (const k of [kept, collected]) age(join(checkpoints, k), 40);
  const aged = (await gc(true)).localCheckpoints!;
  assert.deepEqual(aged.items.map((i) => i.why).sort(), ['abandoned', 'abandoned']);
  assert.deepEqual(readdirSync(checkpoints), []);
});

test('a training of work whose stage-cache record is older than its checkpoints (cache: false, --no-cache) keeps its folder; one the record came after goes', async (t) => {
  const { checkpoints, cache, gc } = home(t, 'retrain');
  const record = (k: string, createdAt: Date) =>
    cache.put({ key: k, kind: 'train', outputs: {}, producedBy: { runId: 'r0', stageId: 'train' }, createdAt: createdAt.toISOString() });
  // Recorded five days ago; trained again since by a stage with `cache: false` (or a --no-cache
  // submit), which never looks the record up: its attempt died an hour ago, and its retry or
  // `tempered resume` reads the folder.
  await record(key('a'), new Date(Date.now() - 5 * DAY));
  checkpoint(checkpoints, key('a'), 3);
  age(join(checkpoints, key('a')), 1 / 24);
  // Trained here until a day ago, then completed by another worker an hour ago: every run is a hit.
  checkpoint(checkpoints, key('b'), 3);
  age(join(checkpoints, key('b')), 1);
  await record(key('b'), new Date(Date.now() - 3600_000));

  const r = (await gc(true)).localCheckpoints!;
  assert.deepEqual(
    r.items.map((i) => [i.name, i.why, i.deleted]),
    [[key('b'), 'completed elsewhere', true]],
  );
  assert.equal(latestCheckpoint(join(checkpoints, key('a'))), join(checkpoints, key('a'), 'step-3'), 'the retraining resumes');
});

test("a --no-cache run's own checkpoint folders (<key>.fresh-…) go by their age or finish, never by the work's stage-cache record", async (t) => {
  const { checkpoints, cache, gc } = home(t, 'fresh');
  const at = (name: string) => join(checkpoints, name);
  const own = (c: string) => `${key(c)}.fresh-nightly-20261207-0a1b2c3d4e5f-train`;
  // The work completed on another run an hour ago, after this --no-cache run's attempt died (a day ago): its own retry,
  // which looks nothing up, reads the folder, so the record does not make it garbage.
  checkpoint(checkpoints, own('a'), 3);
  age(at(own('a')), 1);
  await cache.put({
    key: key('a'),
    kind: 'train',
    outputs: {},
    producedBy: { runId: 'r0', stageId: 'train' },
    createdAt: new Date(Date.now() - 3600_000).toISOString(),
  });
  // Abandoned: a --no-cache run nobody resumed for 40 days.
  checkpoint(checkpoints, own('b'), 2);
  age(at(own('b')), 40);
  // Finished, killed before it cleared its checkpoints.
  checkpoint(checkpoints, own('c'), 2);
  writeFileSync(join(at(own('c')), 'COMPLETE'), '{}');

  const r = (await gc(true)).localCheckpoints!;
  assert.deepEqual(Object.fromEntries(r.items.map((i) => [i.name, [i.why, i.deleted]])), {
    [own('b')]: ['abandoned', true],
    [own('c')]: ['finished', true],
  });
  assert.equal(latestCheckpoint(at(own('a'))), join(at(own('a')), 'step-3'), 'its retry resumes');
  assert.ok(!existsSync(at(own('b'))));
  assert.deepEqual(readdirSync(at(own('c'))), ['COMPLETE']);
});

test('an abandoned folder of a name past 234 bytes (named before 8 Dec 2026) or of a hashed one is renamed aside and collected', async (t) => {
  const { checkpoints, gc } = home(t, 'long');
  const at = (name: string) => join(checkpoints, name);
  // `<key>.fresh-<run id>-train` of a long `--run-id`: 250 bytes fit a folder name, not `.<name>.gc-<pid>-<8 hex>`.
  const long = `${key('a')}.fresh-${'r'.repeat(250 - 64 - 7 - 6)}-train`;
  assert.equal(Buffer.byteLength(long), 250);
  const hashed = `${key('b')}.h-${key('c')}`;
  for (const name of [long, hashed]) {
    checkpoint(checkpoints, name, 2);
    age(at(name), 40);
  }
  const r = (await gc(true)).localCheckpoints!;
  assert.deepEqual(Object.fromEntries(r.items.map((i) => [i.name, [i.why, i.deleted]])), {
    [long]: ['abandoned', true],
    [hashed]: ['abandoned', true],
  });
  assert.deepEqual(readdirSync(checkpoints), [], 'left aside folders or locks');
});

test("an abandoned training's folder of a dot-name (a run id like `.x` where no cache key named it) is collected; a dot-named folder no training wrote is left alone", async (t) => {
  const { checkpoints, gc } = home(t, 'dot');
  checkpoint(checkpoints, '.x-train', 2);
  // A file server's snapshot folder, as some list in every folder.
  mkdirSync(join(checkpoints, '.snapshot', 'hourly.0'), { recursive: true });
  writeFileSync(join(checkpoints, '.snapshot', 'hourly.0', 'f'), 'x');
  // One gc cannot read into: another user's folder (EACCES; root is never refused, so here a link to itself, ELOOP).
  symlinkSync('.other', join(checkpoints, '.other'));
  for (const name of ['.x-train', '.snapshot']) age(join(checkpoints, name), 40);
  const dry = (await gc(false)).localCheckpoints!;
  assert.deepEqual(Object.fromEntries(dry.items.map((i) => [i.name, [i.why, i.deleted]])), { '.x-train': ['abandoned', false] });
  const r = (await gc(true)).localCheckpoints!;
  assert.deepEqual(Object.fromEntries(r.items.map((i) => [i.name, [i.why, i.deleted]])), { '.x-train': ['abandoned', true] });
  assert.deepEqual(readdirSync(checkpoints), ['.other', '.snapshot'], 'left aside folders or locks, or took the foreign folders');
  assert.deepEqual(readdirSync(join(checkpoints, '.snapshot', 'hourly.0')), ['f']);
});

test("a gc's aside folder of a live pid is that gc's only while it changes: one of a reused pid (or another pid namespace's) is collected", async (t) => {
  const { checkpoints, gc } = home(t, 'asidepid');
  // pid 1 is alive in every pid namespace: a gc killed in a container, where it was pid 1, left this one.
  const reused = `.${key('a')}.gc-1-abcd1234`;
  checkpoint(join(checkpoints, reused), 'x', 3);
  age(join(checkpoints, reused), 40);
  // A gc running now, deleting this one: left to it.
  const live = `.${key('b')}.gc-${process.pid}-abcd1234`;
  checkpoint(join(checkpoints, live), 'x', 3);
  const r = (await gc(true)).localCheckpoints!;
  assert.deepEqual(
    r.items.map((i) => [i.name, i.why, i.deleted]),
    [[reused, 'interrupted gc', true]],
  );
  assert.deepEqual(readdirSync(checkpoints), [live]);
});

test('a lock of a holder on another machine that has not refreshed it for minutes (a long native run) is not taken over: its writer keeps its temp folder and its lock', async (t) => {
  const { checkpoints, gc } = home(t, 'remote');
  const folder = join(checkpoints, key('a'));
  checkpoint(checkpoints, key('a'), 2);
  // The writer's pid is meaningless here: it names a process of the other machine.
  const temp = join(folder, `.step-3.tmp-${deadPid()}`);
  mkdirSync(temp);
  writeFileSync(join(temp, 'weights.safetensors'), Buffer.alloc(5000));
  const lock = `${folder}.lock`;
  const owner = JSON.stringify({
    token: 'remote',
    pid: 4242,
    host: 'elsewhere',
    machine: 'elsewhere/boot/ns',
    what: 'run r stage train attempt 1',
    since: '',
  });
  writeFileSync(lock, owner);
  // Blocked in one onnxruntime run for three minutes: the lock's refresh timer has not run since.
  const threeMinutesAgo = new Date(Date.now() - 3 * 60_000);
  utimesSync(lock, threeMinutesAgo, threeMinutesAgo);

  const r = (await gc(true)).localCheckpoints!;
  assert.deepEqual([r.held, r.deleted], [1, 0]);
  assert.ok(existsSync(temp), 'the checkpoint being written stays');
  assert.equal(existsSync(lock) && readFileSync(lock, 'utf8'), owner, 'the lock stays its holder’s: it would abort on its next refresh');
});

test('a collection that fails on one folder (a file held open on NFS) reports the folders it deleted before, for the audit record', async (t) => {
  const { checkpoints, gc } = home(t, 'fails');
  for (const c of ['a', 'b']) {
    checkpoint(checkpoints, key(c), 1);
    age(join(checkpoints, key(c)), 40);
  }
  // NFS keeps a file that a process still has open as `.nfsXXXX`, and the folder's removal fails.
  const rm = fs.rmSync;
  fs.rmSync = ((p: string, o?: RmOptions) => {
    if (p.includes(`.${key('b')}.gc-`))
      throw Object.assign(new Error(`ENOTEMPTY: directory not empty, rmdir '${p}'`), { code: 'ENOTEMPTY' });
    return rm(p, o);
  }) as typeof fs.rmSync;
  syncBuiltinESMExports();
  t.after(() => {
    fs.rmSync = rm;
    syncBuiltinESMExports();
  });
  const e = await gc(true).then(
    () => assert.fail('the collection succeeded'),
    (e: unknown) => e,
  );
  assert.ok(e instanceof GarbageIncomplete, String(e));
  const c = e.report.localCheckpoints;
  assert.ok(c, 'the report says what went before the failure');
  assert.deepEqual(c.items.map((i) => [i.name, i.deleted]).sort(), [
    [key('a'), true],
    [key('b'), false],
  ]);
  assert.equal(c.deleted, 1);
  assert.equal(existsSync(join(checkpoints, key('a'))), false);
});

test("a training waits for a collecting gc's hold on its checkpoint lock instead of failing the attempt; any other holder fails it at once", async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ck-gc-wait-'));
  try {
    const path = join(dir, 'work.lock');
    const gc = acquireDirLock(path, { what: `${GC_HOLDER} (pid ${process.pid})`, staleMs: 60_000 });
    const waited: string[] = [];
    const taking = acquireCheckpointLock(path, {
      what: 'run r stage train attempt 1',
      staleMs: 60_000,
      onWait: (b) => waited.push(b.message),
    });
    // gc judges and renames the folder, then lets go.
    setTimeout(() => gc.release(), 300);
    const lock = await taking;
    assert.equal(JSON.parse(readFileSync(path, 'utf8')).what, 'run r stage train attempt 1');
    assert.equal(waited.length, 1);
    assert.match(waited[0]!, /held by tempered store gc/);
    // An earlier attempt of the training that still runs: the stage's retry policy decides, as before.
    const told: string[] = [];
    await assert.rejects(
      acquireCheckpointLock(path, { what: 'run r stage train attempt 2', staleMs: 60_000, onWait: (b) => told.push(b.message) }),
      (e: unknown) => e instanceof LockBusyError && /held by run r stage train attempt 1/.test(e.message),
    );
    assert.deepEqual(told, []);
    lock.release();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
