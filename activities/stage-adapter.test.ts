/**
 * The stage adapter in the SDK's MockActivityEnvironment (a real activity Context without a
 * server), over a real artifact store and stage cache: input errors become non-retryable
 * failures, resume data comes back from heartbeat details, progress keeps it, cancellation stops
 * the stage, and a success is recorded in the cache.
 */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ApplicationFailure, CancelledFailure, type Logger } from '@temporalio/common';
import { MockActivityEnvironment } from '@temporalio/testing';
import { InputError } from '../src/errors.ts';
import { LockBusyError } from '../src/util/dir-lock.ts';
import { loadPluginKinds } from '../src/stages/plugin-kinds.ts';
import type { AnyStageKind, StageContext } from '../src/stages/types.ts';
import type { ArtifactRef, StageOutputs } from '../src/types.ts';
import { ArtifactStore } from '../src/store/artifact-store.ts';
import { FolderBackend } from '../src/store/folder-backend.ts';
import { cacheKey, StageCache } from '../src/store/stage-cache.ts';
import type { StageRequest, StageResult } from '../workflows/types.ts';
import { stageKey } from './cache.ts';
import { stageActivity, type ActivityDeps } from './stage-adapter.ts';
import { fillDisk, mountTmpfs, NO_TMPFS } from '../src/util/tmpfs.testing.ts';

const root = mkdtempSync(join(tmpdir(), 'tempered-adapter-'));
after(() => rmSync(root, { recursive: true, force: true }));

function deps(extra: Partial<ActivityDeps> = {}): ActivityDeps {
  const dir = mkdtempSync(join(root, 'state-'));
  const store = new ArtifactStore(join(dir, 'store'));
  return {
    store,
    cache: new StageCache(join(dir, 'cache'), store),
    stateDir: dir,
    isolation: { mode: 'inline', limits: {} },
    heartbeatEveryMs: 50,
    ...extra,
  };
}

function kind(run: (cfg: Record<string, unknown>, ctx: StageContext) => Promise<StageOutputs>): AnyStageKind {
  return {
    kind: 'probe',
    description: 'test stage',
    codeVersion: 'probe-1',
    withSchema: { type: 'object' },
    outputs: { done: { type: 'boolean' }, echoed: { type: 'number' }, n: { type: 'number' }, report: { type: 'json' } },
    run,
  };
}

const request = (over: Partial<StageRequest> = {}): StageRequest => ({
  runId: 'run-1',
  stageId: 'stage-a',
  kind: 'probe',
  config: { value: 1 },
  baseDir: root,
  specHash: 'spec',
  actor: 'test',
  cacheKey: 'key-1',
  writeCache: true,
  ...over,
});

describe('stage adapter', () => {
  it('turns an input error into a non-retryable InputError failure that keeps where and hint', async () => {
    const act = stageActivity(
      kind(async () => {
        throw new InputError('column "text" is missing', { where: 'data/train.csv', hint: 'name the text column with textColumn' });
      }),
      deps(),
    );
    const err = await new MockActivityEnvironment().run(act, request()).then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(err instanceof ApplicationFailure, `got ${String(err)}`);
    assert.equal(err.type, 'InputError');
    assert.equal(err.nonRetryable, true);
    assert.match(err.message, /column "text" is missing/);
    assert.deepEqual(err.details, [{ where: 'data/train.csv', hint: 'name the text column with textColumn' }]);
  });

  // With two train stages, `train.lora.layers` did not say which one failed.
  it("names a config field by the stage's path in the pipeline", async () => {
    const probe = kind(async () => {
      throw new InputError('layers [40] are out of range', { where: 'probe.lora.layers', hint: 'the model has 30 layers' });
    });
    const act = stageActivity({ ...probe, withSchema: { type: 'object', properties: { lora: { type: 'object' } } } }, deps());
    const err = await new MockActivityEnvironment().run(act, request({ stageId: 'train_b' })).then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(err instanceof ApplicationFailure, `got ${String(err)}`);
    assert.equal(err.message, 'stages.train_b.with.lora.layers: layers [40] are out of range');
    assert.deepEqual(err.details, [{ where: 'stages.train_b.with.lora.layers', hint: 'the model has 30 layers' }]);
  });

  // A plugin returned a string for a number output and an untyped table: the stage succeeded, was cached, and
  // a later stage (or, from the cache, every later run) failed with an error about that stage.
  it('fails a stage whose outputs break its declaration, without retry and without caching them', async () => {
    const d = deps();
    const probe = kind(async (_cfg, ctx) => ({
      n: 'many' as unknown as number,
      table: await ctx.store.putJson({ not: 'arrow' }),
      ghost: { uri: `artifact://sha256/${'0'.repeat(64)}`, sha256: '0'.repeat(64), bytes: 1, mediaType: 'application/json' },
      extra: 1,
    }));
    const act = stageActivity({ ...probe, outputs: { n: { type: 'number' }, table: { type: 'table' }, ghost: { type: 'json' } } }, d);
    const err = await new MockActivityEnvironment().run(act, request({ cacheKey: 'contract-key' })).then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(err instanceof ApplicationFailure, `got ${String(err)}`);
    assert.equal(err.type, 'StageContractError');
    assert.equal(err.nonRetryable, true);
    assert.match(err.message, /^stage kind 'probe' returned outputs its declaration does not allow: /);
    assert.match(err.message, /'n' \(number\) is string "many"/);
    assert.match(err.message, /'table' \(table\) has media type "application\/json"; a table is an Arrow IPC file/);
    assert.match(err.message, /'ghost' \(json\) refers to 000000000000…, which is not in the store/);
    assert.match(err.message, /'extra' is not a declared output \(declared: n, table, ghost\)/);
    assert.equal(await d.cache.get('contract-key'), undefined, 'nothing cached');
  });

  it("keeps an input error's code in the failure's details, for the CLI's advice", async () => {
    const act = stageActivity(
      kind(async () => {
        throw new InputError('"d.jsonl" does not exist', { code: 'source-missing' });
      }),
      deps(),
    );
    const err = await new MockActivityEnvironment().run(act, request()).then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(err instanceof ApplicationFailure, `got ${String(err)}`);
    assert.deepEqual(err.details, [{ where: undefined, hint: undefined, code: 'source-missing' }]);
  });

  // A full disk came out as "ENOSPC: no space left on device, write", retried at once (three attempts in 3 s)
  // and never saying which disk, nor what to do.
  it(
    'tells a full disk as a DiskFull failure naming the folder and what to do, retried only after a wait',
    { skip: NO_TMPFS },
    async (t) => {
      const disk = mountTmpfs(t, 512);
      const store = new ArtifactStore(join(disk, 'store'));
      const d = deps({ store, cache: new StageCache(join(disk, 'cache'), store), stateDir: disk });
      let filler = '';
      const raw = stageActivity(
        kind(async (_cfg, ctx) => {
          filler = fillDisk(disk);
          // A write of the stage's own (an Arrow table, a checkpoint): Node's error names no file.
          writeFileSync(join(ctx.workDir, 'out.arrow'), Buffer.alloc(64 * 1024));
          return { done: true };
        }),
        d,
      );
      const err = await new MockActivityEnvironment({ attempt: 2 }).run(raw, request()).then(
        () => undefined,
        (e: unknown) => e,
      );
      assert.ok(err instanceof ApplicationFailure, `got ${String(err)}`);
      assert.equal(err.type, 'DiskFull');
      assert.equal(err.nonRetryable, false);
      assert.equal(err.nextRetryDelay, 60_000, 'the second attempt waits 60 s');
      assert.match(err.message, new RegExp(`^no space left on the disk that holds ${disk} \\(.* free of 512\\.0 KiB\\): ENOSPC`));
      const details = err.details?.[0] as { path: string; hint: string };
      assert.equal(details.path, disk);
      // The run the stage belongs to, by its id: the hint said `tempered resume <run>`, which read like a template
      // left unfilled.
      assert.match(details.hint, /then `tempered resume run-1`: finished stages are reused/);
      assert.doesNotMatch(details.hint, /<run>|RUN_ID/);
      assert.deepEqual(readdirSync(join(disk, 'store', 'tmp')), [], "the stage's scratch folder is gone");
      rmSync(filler);

      // The store's own put knows what it needed.
      const put = stageActivity(
        kind(async (_cfg, ctx) => {
          filler = fillDisk(disk, 16 * 1024);
          return { report: await ctx.store.putJson({ pad: 'p'.repeat(100_000) }) };
        }),
        d,
      );
      const err2 = await new MockActivityEnvironment().run(put, request()).then(
        () => undefined,
        (e: unknown) => e,
      );
      assert.ok(err2 instanceof ApplicationFailure, `got ${String(err2)}`);
      assert.equal(err2.type, 'DiskFull');
      assert.equal(err2.nextRetryDelay, 30_000);
      assert.match(err2.message, /this write needed 97\.7 KiB\)/);
      // Built by the store, which knows no run: the adapter names it.
      assert.match((err2.details?.[0] as { hint: string }).hint, /then `tempered resume run-1`:/);
      assert.deepEqual(readdirSync(join(disk, 'store', 'tmp')), []);
      rmSync(filler);
    },
  );

  it('lets other errors through unchanged, so Temporal retries them', async () => {
    const boom = new Error('connection reset');
    const act = stageActivity(
      kind(async () => {
        throw boom;
      }),
      deps(),
    );
    await assert.rejects(new MockActivityEnvironment().run(act, request()), (e) => e === boom);
  });

  // Under overlap allow-all, a second run of the same work waits for the first's checkpoint folder: each retry printed
  // a full `[WARN] Activity failed` with its stack in the worker's log, a fault to whoever read it.
  it("logs a wait for a lock another stage holds as one line naming the holder and the next attempt; the last attempt's in full", async () => {
    const logged: { level: string; message: string }[] = [];
    const logger: Logger = {
      log: (level, message) => void logged.push({ level, message }),
      trace: (message) => void logged.push({ level: 'TRACE', message }),
      debug: (message) => void logged.push({ level: 'DEBUG', message }),
      info: (message) => void logged.push({ level: 'INFO', message }),
      warn: (message) => void logged.push({ level: 'WARN', message }),
      error: (message) => void logged.push({ level: 'ERROR', message }),
    };
    const owner = { token: 't1', pid: 4242, host: 'gpu-1', what: 'run nightly-a stage train attempt 1', since: '2026-12-08T03:00:00.000Z' };
    const act = stageActivity(
      kind(async () => {
        throw new LockBusyError('/state/checkpoints/key-train.lock', owner);
      }),
      deps(),
    );
    const retryPolicy = { maximumAttempts: 3, initialInterval: 2000, backoffCoefficient: 2 };
    const err = await new MockActivityEnvironment({ attempt: 2, retryPolicy }, { logger }).run(act, request()).then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(err instanceof ApplicationFailure, `got ${String(err)}`);
    // Typed as the last attempt's failure is (and every attempt's was): a retry policy's nonRetryableErrorTypes naming
    // LockBusyError stopped at the first, where a type of its own let every attempt but the last be retried.
    assert.deepEqual([err.type, err.nonRetryable, err.category], ['LockBusyError', false, 'BENIGN']);
    const warned = logged.filter((l) => l.level === 'WARN' || l.level === 'ERROR');
    assert.deepEqual(
      warned.map((l) => l.message),
      [
        'stage stage-a of run run-1, attempt 2: waiting for /state/checkpoints/key-train.lock: held by run nightly-a stage train attempt 1 (pid 4242 on gpu-1, since 2026-12-08T03:00:00.000Z); attempt 3 starts in 4s, 1 attempt left',
      ],
    );
    // No attempt follows the last: the stage fails, and that is logged as the failure it is.
    logged.length = 0;
    const last = await new MockActivityEnvironment({ attempt: 3, retryPolicy }, { logger }).run(act, request()).then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(last instanceof LockBusyError);
    assert.equal(ApplicationFailure.fromError(last).type, err.type);
    assert.deepEqual(
      logged.filter((l) => l.level === 'WARN').map((l) => l.message),
      ['Activity failed'],
    );
  });

  it("hands a retried attempt the previous attempt's resume data from its heartbeat details, and keeps it in later heartbeats", async () => {
    let seen: unknown;
    const act = stageActivity(
      kind(async (_cfg, ctx) => {
        seen = ctx.resumeFrom;
        ctx.progress({ message: 'step 4', metrics: { step: 4 } });
        ctx.progress({ message: 'checkpoint', resume: { checkpoint: 'step-4' } });
        ctx.progress({ message: 'step 5', metrics: { step: 5 } });
        return { done: true };
      }),
      deps(),
    );
    const env = new MockActivityEnvironment({ attempt: 2, heartbeatDetails: { resume: { checkpoint: 'step-3' } } });
    const beats: unknown[] = [];
    env.on('heartbeat', (d: unknown) => beats.push(d));
    const res = (await env.run(act, request())) as StageResult;
    assert.deepEqual(seen, { checkpoint: 'step-3' });
    assert.deepEqual(res.outputs, { done: true });
    assert.deepEqual(
      beats[0],
      { resume: { checkpoint: 'step-3' } },
      'the first heartbeat already carries the resume data, so a crash before any progress loses nothing',
    );
    assert.deepEqual(beats.slice(1, 4), [
      { progress: { message: 'step 4', metrics: { step: 4 } }, resume: { checkpoint: 'step-3' } },
      { progress: { message: 'checkpoint' }, resume: { checkpoint: 'step-4' } },
      { progress: { message: 'step 5', metrics: { step: 5 } }, resume: { checkpoint: 'step-4' } },
    ]);
  });

  it('stops a running stage on cancellation, reports it as cancelled and removes its scratch folder', async () => {
    const d = deps();
    let workDir = '';
    let started!: () => void;
    const running = new Promise<void>((r) => (started = r));
    const act = stageActivity(
      kind(
        (_cfg, ctx) =>
          new Promise((_resolve, reject) => {
            workDir = ctx.workDir;
            ctx.signal.addEventListener('abort', () => reject(new Error('aborted by signal')));
            started();
          }),
      ),
      d,
    );
    const env = new MockActivityEnvironment();
    const result = env.run(act, request());
    await running;
    assert.ok(existsSync(workDir));
    env.cancel();
    await assert.rejects(result, (e) => e instanceof CancelledFailure);
    assert.equal(existsSync(workDir), false);
    assert.equal(await d.cache.get('key-1'), undefined, 'a cancelled stage records nothing in the cache');
  });

  // A stage routed to another queue is looked up by the workflow's worker. With a plugin edited and only that
  // worker restarted, the old code's outputs went under the new code's key, and hit the cache from then on.
  it('records under its own code version the outputs of a stage another worker looked up with other code', async () => {
    const d = deps();
    const act = stageActivity(
      kind(async (cfg) => ({ echoed: cfg.value as number })),
      d,
    );
    const same = (await new MockActivityEnvironment().run(act, request({ cacheKeyCodeVersion: 'probe-1' }))) as StageResult;
    assert.equal(same.cacheKey, 'key-1', 'same code: the looked-up key stands');
    const res = (await new MockActivityEnvironment().run(
      act,
      request({ cacheKey: 'key-new-code', cacheKeyCodeVersion: 'probe-2' }),
    )) as StageResult;
    const own = cacheKey({ kind: 'probe', codeVersion: 'probe-1', config: { value: 1 } });
    assert.equal(res.cacheKey, own);
    assert.equal(await d.cache.get('key-new-code'), undefined, "nothing under the other code's key");
    assert.deepEqual((await d.cache.get(own))?.outputs, { echoed: 1 });
  });

  it('records a success in the stage cache under the request key and calls the completion hook once', async () => {
    const completed: StageResult[] = [];
    const d = deps({ onStageCompleted: async (_req, res) => void completed.push(res) });
    const act = stageActivity(
      kind(async (cfg) => ({ echoed: cfg.value as number })),
      d,
    );
    const res = (await new MockActivityEnvironment().run(act, request())) as StageResult;
    assert.deepEqual(res, { outputs: { echoed: 1 }, cacheKey: 'key-1' });
    assert.deepEqual((await d.cache.get('key-1'))?.outputs, { echoed: 1 });
    assert.deepEqual(completed, [res]);
    assert.deepEqual(readdirSync(join(d.store.root, 'tmp')), [], 'no scratch folder left behind');
    const noWrite = (await new MockActivityEnvironment().run(act, request({ cacheKey: 'key-2', writeCache: false }))) as StageResult;
    assert.equal(noWrite.cacheKey, 'key-2');
    assert.equal(await d.cache.get('key-2'), undefined, 'writeCache: false records nothing');
  });

  it("sends a first attempt's first heartbeat with its first progress, not before the stage runs", async () => {
    const act = stageActivity(
      kind(async (_cfg, ctx) => {
        ctx.progress({ message: 'step 1', metrics: { step: 1 } });
        return {};
      }),
      deps({ heartbeatEveryMs: 60_000 }),
    );
    const env = new MockActivityEnvironment({ attempt: 1 });
    const beats: unknown[] = [];
    env.on('heartbeat', (d: unknown) => beats.push(d));
    await env.run(act, request());
    assert.deepEqual(beats, [{ progress: { message: 'step 1', metrics: { step: 1 } }, resume: undefined }]);
  });

  it("completes a stage without waiting for its cache record's shared copy, which goes up after", async () => {
    // A shared store whose uploads of cache records are held back until the test lets them go.
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    class HeldUploads extends FolderBackend {
      override async putBytes(key: string, bytes: Uint8Array, opts: { ifAbsent: boolean }): Promise<'stored' | 'exists'> {
        if (key.startsWith('cache/')) await held;
        return super.putBytes(key, bytes, opts);
      }
    }
    // Shared records are looked up by a sha256 key, as cacheKey makes them.
    const KEY = 'a'.repeat(64);
    const dir = mkdtempSync(join(root, 'held-'));
    const shared = new HeldUploads(join(dir, 'shared'));
    const store = new ArtifactStore(join(dir, 'store'), { remote: shared });
    const cache = new StageCache(join(dir, 'cache'), store);
    // (A stage that ran longer than awaitRecordUploadAfterMs would wait for the upload: on a loaded
    // machine this one may take longer than the default second.)
    const d = { ...deps(), store, cache, awaitRecordUploadAfterMs: 60_000 };
    let timer: NodeJS.Timeout | undefined;
    const res = (await Promise.race([
      new MockActivityEnvironment().run(
        stageActivity(
          kind(async () => ({ n: 1 })),
          d,
        ),
        request({ cacheKey: KEY }),
      ),
      // Waiting for the held upload would never end; the timer turns that into a failure.
      new Promise((_, reject) => (timer = setTimeout(() => reject(new Error('the stage waited for the upload')), 10_000))),
    ])) as StageResult;
    clearTimeout(timer);
    assert.deepEqual(res.outputs, { n: 1 });
    assert.equal(cache.pendingUploads, 1, 'the upload is still held back');
    assert.ok(await cache.get(KEY), "this worker's local copy serves a hit meanwhile");
    release();
    await cache.flush();
    const other = new StageCache(join(dir, 'cache-other'), new ArtifactStore(join(dir, 'store-other'), { remote: shared }));
    assert.deepEqual((await other.get(KEY))?.outputs, { n: 1 }, 'the shared copy is there for other workers');
  });

  it('a stage that ran longer than awaitRecordUploadAfterMs waits for its record to reach the shared store', async () => {
    const dir = mkdtempSync(join(root, 'long-'));
    const shared = new FolderBackend(join(dir, 'shared'));
    const cache = new StageCache(join(dir, 'cache'), new ArtifactStore(join(dir, 'store'), { remote: shared }));
    const d = { ...deps(), store: new ArtifactStore(join(dir, 'store'), { remote: shared }), cache, awaitRecordUploadAfterMs: 0 };
    await new MockActivityEnvironment().run(
      stageActivity(
        kind(async () => ({ n: 1 })),
        d,
      ),
      request({ cacheKey: 'b'.repeat(64) }),
    );
    assert.equal(cache.pendingUploads, 0, 'nothing left uploading when the activity returned');
    const other = new StageCache(join(dir, 'cache-other'), new ArtifactStore(join(dir, 'store-other'), { remote: shared }));
    assert.deepEqual((await other.get('b'.repeat(64)))?.outputs, { n: 1 });
  });

  it('writes the cache record and calls the completion hook side by side, and fails the attempt when either fails', async () => {
    let hookCalled!: () => void;
    const hookSeen = new Promise<void>((r) => (hookCalled = r));
    class WaitsForHook extends StageCache {
      override async put(...[rec, opts]: Parameters<StageCache['put']>): Promise<void> {
        // In sequence (put, then the hook) this would wait forever; the timer turns that into a failure.
        let timer: NodeJS.Timeout | undefined;
        const waited = await Promise.race([
          hookSeen.then(() => true),
          new Promise<false>((r) => (timer = setTimeout(() => r(false), 5_000))),
        ]);
        clearTimeout(timer);
        if (!waited) throw new Error('the cache put ran before the completion hook was called, not beside it');
        return super.put(rec, opts);
      }
    }
    const base = deps();
    const d = { ...base, cache: new WaitsForHook(join(base.stateDir, 'cache2'), base.store), onStageCompleted: async () => hookCalled() };
    const act = stageActivity(
      kind(async () => ({ n: 1 })),
      d,
    );
    await new MockActivityEnvironment().run(act, request());
    assert.deepEqual((await d.cache.get('key-1'))?.outputs, { n: 1 });

    const hookFails = deps({
      onStageCompleted: async () => {
        throw new Error('audit store down');
      },
    });
    await assert.rejects(
      new MockActivityEnvironment().run(
        stageActivity(
          kind(async () => ({ n: 2 })),
          hookFails,
        ),
        request(),
      ),
      /audit store down/,
    );
  });

  it('with lookup, computes the key itself: a hit returns the recorded outputs without running the stage, a miss runs and records under that key', async () => {
    const completed: StageResult[] = [];
    const d = deps({ onStageCompleted: async (_req, res) => void completed.push(res) });
    let runs = 0;
    let keySeen: string | undefined;
    const act = stageActivity(
      kind(async (cfg, ctx) => {
        runs++;
        keySeen = ctx.cacheKey;
        return { echoed: cfg.value as number };
      }),
      d,
    );
    const key = cacheKey({ kind: 'probe', codeVersion: 'probe-1', config: { value: 1 } });
    const lookup = request({ cacheKey: undefined, lookup: { reuse: true } });

    const miss = (await new MockActivityEnvironment().run(act, lookup)) as StageResult;
    assert.deepEqual(miss, { outputs: { echoed: 1 }, cacheKey: key });
    assert.equal(keySeen, key, 'the stage sees the key it will be recorded under');
    assert.deepEqual((await d.cache.get(key))?.outputs, { echoed: 1 });

    // A later run (another workflow execution) finds the record.
    const later = { workflowExecution: { workflowId: 'run-1', runId: 'a-later-execution' } };
    const hit = (await new MockActivityEnvironment(later).run(act, lookup)) as StageResult;
    assert.deepEqual(hit, { outputs: { echoed: 1 }, cacheKey: key, cachedFrom: { runId: 'run-1', stageId: 'stage-a' } });
    assert.equal(runs, 1, 'a hit does not run the stage');
    // The hook hears of the reuse (a stage.reused record: which run's outputs this run took), and of no run.
    assert.equal(completed.length, 2);
    assert.deepEqual(completed[1]!.cachedFrom, { runId: 'run-1', stageId: 'stage-a' });

    const noReuse = (await new MockActivityEnvironment(later).run(act, { ...lookup, lookup: { reuse: false } })) as StageResult;
    assert.equal(noReuse.cachedFrom, undefined);
    assert.equal(runs, 2, 'reuse: false runs the stage even though a record exists');
  });

  it("a retried attempt that finds its own earlier attempt's record finishes it: the completion hook runs and the stage is not reported as reused", async () => {
    const completed: string[] = [];
    let auditDown = true;
    const d = deps({
      onStageCompleted: async (req, res) => {
        if (auditDown) throw new Error('audit store down');
        completed.push(`${req.runId}/${req.stageId}${res.cachedFrom ? ` reused from ${res.cachedFrom.runId}` : ''}`);
      },
    });
    let runs = 0;
    const act = stageActivity(
      kind(async () => ({ n: ++runs })),
      d,
    );
    const lookup = request({ cacheKey: undefined, lookup: { reuse: true } });
    // Attempt 1 runs the stage and records its outputs; its audit record fails, so the attempt fails.
    await assert.rejects(new MockActivityEnvironment({ attempt: 1 }).run(act, lookup), /audit store down/);
    auditDown = false;
    const retried = (await new MockActivityEnvironment({ attempt: 2 }).run(act, lookup)) as StageResult;
    assert.deepEqual(retried.outputs, { n: 1 }, "attempt 1's outputs, not a second run");
    assert.equal(retried.cachedFrom, undefined, 'done in this run, not reused from another');
    assert.equal(runs, 1);
    assert.deepEqual(completed, ['run-1/stage-a'], 'the audit record attempt 1 could not write');

    // Another execution (a resumed run) finding the same record reuses it, as before.
    const other = (await new MockActivityEnvironment({
      workflowExecution: { workflowId: 'run-2', runId: 'another-execution' },
    }).run(act, { ...lookup, runId: 'run-2' })) as StageResult;
    assert.deepEqual(other.cachedFrom, { runId: 'run-1', stageId: 'stage-a' });
    assert.deepEqual(completed, ['run-1/stage-a', 'run-2/stage-a reused from run-1'], 'a reuse record for reused outputs');
  });

  it("hands the completion hook what the kind's audit adds, read from the outputs, also when a retry finishes an earlier attempt", async () => {
    const seen: { outputs: Record<string, unknown>; audit: unknown }[] = [];
    let auditDown = true;
    const d = deps({
      onStageCompleted: async (_req, res, audit) => {
        if (auditDown) throw new Error('audit store down');
        seen.push({ outputs: res.outputs, audit });
      },
    });
    let runs = 0;
    const withAudit: AnyStageKind = {
      ...kind(async (_cfg, ctx) => ({ n: ++runs, report: await ctx.store.putJson({ files: ['a.jsonl'] }) })),
      async audit(cfg, outputs, { store }) {
        const report = await store.readJson<{ files: string[] }>(outputs.report as ArtifactRef);
        return { dataHashes: { 'source:a.jsonl': 'f'.repeat(64) }, details: { files: report.files, value: cfg.value } };
      },
    };
    const act = stageActivity(withAudit, d);
    const lookup = request({ cacheKey: undefined, lookup: { reuse: true } });
    await assert.rejects(new MockActivityEnvironment({ attempt: 1 }).run(act, lookup), /audit store down/);
    auditDown = false;
    await new MockActivityEnvironment({ attempt: 2 }).run(act, lookup);
    assert.equal(runs, 1, 'the retry finished attempt 1 instead of running again');
    const expected = {
      dataHashes: { 'source:a.jsonl': 'f'.repeat(64) },
      details: { files: ['a.jsonl'], value: 1, codeVersion: 'probe-1' },
    };
    assert.deepEqual(
      seen.map((s) => s.audit),
      [expected],
    );
    // A plain run (no lookup) gives the hook the same.
    await new MockActivityEnvironment().run(act, request({ runId: 'run-3' }));
    assert.deepEqual(seen[1]?.audit, expected);
    // A kind without audit: the hook gets the code version only.
    const plain: unknown[] = [];
    await new MockActivityEnvironment().run(
      stageActivity(
        kind(async () => ({ n: 1 })),
        deps({ onStageCompleted: async (_req, _res, audit) => void plain.push(audit) }),
      ),
      request(),
    );
    assert.deepEqual(plain, [{ details: { codeVersion: 'probe-1' } }]);
  });

  it('with a shared store, a stage reads its inputs through links in its scratch folder, which go with it', async () => {
    const dir = mkdtempSync(join(root, 'pins-'));
    const store = new ArtifactStore(join(dir, 'store'), { remote: new FolderBackend(join(dir, 'shared')) });
    const input = await store.putBytes('rows', { mediaType: 'text/plain' });
    let seen: { path: string; scratch: string } | undefined;
    const act = stageActivity(
      kind(async (_cfg, ctx) => {
        seen = { path: await ctx.store.verify(input), scratch: ctx.workDir };
        return {};
      }),
      deps({ store, cache: new StageCache(join(dir, 'cache'), store) }),
    );
    await new MockActivityEnvironment().run(act, request());
    assert.equal(seen!.path, join(seen!.scratch, '.inputs', input.sha256), 'pruning the cached copy cannot take it');
    assert.equal(existsSync(seen!.scratch), false);
    assert.equal(existsSync(join(store.root, 'sha256', input.sha256.slice(0, 2), input.sha256)), true, 'the cached copy stays');
  });
  // The key was of the file as written: a default changed in a module the plugin imports reused the old outputs.
  it("keys a plugin kind's stage by its config with the defaults filled in", async () => {
    const folder = mkdtempSync(join(root, 'plugin-'));
    const kindWith = async (name: string, limit: number) => {
      const file = join(folder, `${name}.mjs`);
      writeFileSync(
        file,
        `export function stageKinds() { return [{ kind: 'keyed', description: 'd', codeVersion: 'keyed-1',
          withSchema: { type: 'object', properties: { limit: { type: 'integer', default: ${limit} } } },
          outputs: { n: { type: 'number' } }, async run(cfg) { return { n: cfg.limit }; } }]; }\n`,
      );
      return (await loadPluginKinds([file], new Set(), root))[0]!;
    };
    const seven = await kindWith('seven', 7);
    assert.equal(stageKey(seven, {}, undefined), stageKey(seven, { limit: 7 }, undefined), 'the default, or the same value written');
    assert.notEqual(stageKey(seven, {}, undefined), stageKey(seven, { limit: 8 }, undefined));
    const eight = await kindWith('eight', 8);
    assert.equal(stageKey(eight, {}, undefined), stageKey(eight, { limit: 8 }, undefined));
    const builtin = { ...seven, withSchema: { type: 'object', properties: { limit: { default: 7 } } } };
    assert.notEqual(
      stageKey(builtin, {}, undefined),
      stageKey(builtin, { limit: 7 }, undefined),
      "a built-in kind's config is keyed as written",
    );
  });

  // A child imports the plugin afresh each attempt: an edit since the worker started ran new code under the old key.
  it('refuses to run a plugin kind in a child process when its module file changed since the worker loaded it', async () => {
    const file = join(mkdtempSync(join(root, 'plugin-')), 'one.mjs');
    const source = (n: number) =>
      `export function stageKinds() { return [{ kind: 'one', description: 'd', codeVersion: 'one-1', withSchema: { type: 'object' },
        outputs: { n: { type: 'number' } }, isolation: { module: import.meta.url }, async run() { return { n: ${n} }; } }]; }\n`;
    writeFileSync(file, source(1));
    const [one] = await loadPluginKinds([file], new Set(), root);
    const act = stageActivity(one!, deps({ isolation: { mode: 'process', limits: {} } }));
    const ran = (await new MockActivityEnvironment().run(act, request({ kind: 'one', config: {} }))) as StageResult;
    assert.equal(ran.outputs.n, 1);
    writeFileSync(file, source(2));
    const err = await new MockActivityEnvironment().run(act, request({ kind: 'one', config: {}, cacheKey: 'key-2' })).then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(err instanceof ApplicationFailure, `got ${String(err)}`);
    assert.equal(err.type, 'InputError');
    assert.equal(err.nonRetryable, true);
    assert.match(err.message, /one\.mjs: the module file changed since this worker loaded it, so this stage would run other code/);
    assert.match(String((err.details?.[0] as { hint?: string })?.hint), /restart the worker/);
  });

  // A train stage's finished record names the execution (src/stages/train-finished.ts): in a child process it had none.
  it('gives a stage the execution id of its run, inline and in a child process', async () => {
    const file = join(mkdtempSync(join(root, 'plugin-')), 'exec.mjs');
    writeFileSync(
      file,
      `export function stageKinds() { return [{ kind: 'exec', description: 'd', codeVersion: 'exec-1', withSchema: { type: 'object' },
        outputs: { e: { type: 'string' } }, isolation: { module: import.meta.url },
        async run(cfg, ctx) { return { e: ctx.executionId ?? 'none' }; } }]; }\n`,
    );
    const [exec] = await loadPluginKinds([file], new Set(), root);
    for (const mode of ['inline', 'process'] as const) {
      const act = stageActivity(exec!, deps({ isolation: { mode, limits: {} } }));
      const env = new MockActivityEnvironment({ workflowExecution: { workflowId: 'r', runId: 'exec-7' } });
      const result = (await env.run(act, request({ kind: 'exec', config: {}, cacheKey: `key-${mode}` }))) as StageResult;
      assert.equal(result.outputs.e, 'exec-7', mode);
    }
  });

  // The child process loads the plugin's module as written, so the defaults must travel in the config it is sent.
  it("gives a plugin kind's run its withSchema defaults, inline and in a child process", async () => {
    const file = join(mkdtempSync(join(root, 'plugin-')), 'limit.mjs');
    writeFileSync(
      file,
      `export function stageKinds() { return [{ kind: 'limit', description: 'd', codeVersion: 'limit-1',
        withSchema: { type: 'object', properties: { limit: { type: 'integer', default: 7 } } },
        outputs: { n: { type: 'number' } }, isolation: { module: import.meta.url },
        async run(cfg) { return { n: cfg.limit }; } }]; }\n`,
    );
    const [limit] = await loadPluginKinds([file], new Set(), root);
    for (const mode of ['inline', 'process'] as const) {
      const act = stageActivity(limit!, deps({ isolation: { mode, limits: {} } }));
      const result = (await new MockActivityEnvironment().run(act, request({ kind: 'limit', config: {} }))) as StageResult;
      assert.equal(result.outputs.n, 7, mode);
      const given = (await new MockActivityEnvironment().run(
        act,
        request({ kind: 'limit', config: { limit: 3 }, cacheKey: 'key-2' }),
      )) as StageResult;
      assert.equal(given.outputs.n, 3, `${mode}: a value the file gives is kept`);
    }
  });
});
