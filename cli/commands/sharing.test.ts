import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createContext } from '../context.ts';
import { ApplicationFailure } from '@temporalio/common';
import { KnownBackendIds, REREAD_IDS_EVERY_MS, checkBackends, type BackendsToRead } from '../../activities/backends.ts';
import type { RunBackends } from '../../workflows/types.ts';
import { runBackends } from './sharing.ts';

const root = mkdtempSync(join(tmpdir(), 'sharing-'));
after(() => rmSync(root, { recursive: true, force: true }));

async function backendsOf(home: string, o: { database?: string; which?: BackendsToRead } = {}) {
  const saved = { home: process.env.TEMPERED_HOME, store: process.env.TEMPERED_STORE, db: process.env.TEMPERED_DATABASE_URL };
  process.env.TEMPERED_HOME = home;
  delete process.env.TEMPERED_STORE;
  if (o.database === undefined) delete process.env.TEMPERED_DATABASE_URL;
  else process.env.TEMPERED_DATABASE_URL = o.database;
  try {
    const ctx = await createContext();
    try {
      return await runBackends(ctx, (m) => assert.fail(m), o.which);
    } finally {
      await ctx.close();
    }
  } finally {
    for (const [k, v] of [
      ['TEMPERED_HOME', saved.home],
      ['TEMPERED_STORE', saved.store],
      ['TEMPERED_DATABASE_URL', saved.db],
    ] as const)
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
  }
}

/**
 * A worker of `home` that started with `started`'s ids: its reads of its own ids (what each asked to read) are
 * counted, and `check` checks a run against what it knows.
 */
function workerOf(home: string, started: RunBackends, runId: string, o: { now: () => number; log: (m: string) => void }) {
  const reads: BackendsToRead[] = [];
  const known = new KnownBackendIds(
    started,
    (which) => {
      reads.push(which);
      return backendsOf(home);
    },
    o,
  );
  return { reads, check: async (run: RunBackends) => checkBackends(run, await known.forRun(run), runId) };
}

test("a local store has an instance id of its own home: two homes' runs differ by it, one home's agree", async () => {
  // Both are 'local' by name, so a worker of one home took the other's stages when their dev servers shared an address.
  const a = await backendsOf(join(root, 'a'));
  const b = await backendsOf(join(root, 'b'));
  const again = await backendsOf(join(root, 'a'));
  assert.deepEqual([a.store, b.store], ['local', 'local']);
  assert.match(a.storeId ?? '', /^[0-9a-f-]{36}$/);
  assert.notEqual(a.storeId, b.storeId);
  assert.equal(again.storeId, a.storeId);
});

test("a worker learns its own home's new store id (its instance.json deleted) and takes runs of both; another home's stays refused", async () => {
  const home = join(root, 'c');
  const started = await backendsOf(home);
  const otherHome = await backendsOf(join(root, 'd'));
  let clock = 0;
  const logged: string[] = [];
  const { reads, check } = workerOf(home, started, 'r1', { now: () => clock, log: (m) => logged.push(m) });
  await check(started);
  assert.equal(reads.length, 0, 'a run of the id read at start reads nothing');
  // The store folder deleted to free space: the next submit writes a new marker.
  rmSync(join(home, 'store'), { recursive: true, force: true });
  const submitted = await backendsOf(home);
  assert.notEqual(submitted.storeId, started.storeId);
  await check(submitted);
  await check(started);
  assert.equal(reads.length, 1);
  assert.match(logged.join('\n'), new RegExp(`store now has instance id ${submitted.storeId} .*when it was ${started.storeId}`));
  // Another home's run: read again (once a while), and refused as before.
  clock += REREAD_IDS_EVERY_MS;
  await assert.rejects(check(otherHome), (e: unknown) => e instanceof ApplicationFailure && e.type === 'BackendMismatch');
  assert.equal(reads.length, 2);
  await assert.rejects(check(otherHome), ApplicationFailure);
  assert.equal(reads.length, 2, 'not read again within REREAD_IDS_EVERY_MS');
});

test("a worker that read its own ids for another home's run moments ago still reads them for a new id of its own", async () => {
  // The read for the other home's run left a 30 s pause on all reads: a run of the id its own submit had just written
  // was then refused without a read (for a run's local activity, for good), as if it were another home's.
  const home = join(root, 'e');
  const started = await backendsOf(home);
  const otherHome = await backendsOf(join(root, 'f'));
  const { reads, check } = workerOf(home, started, 'r2', { now: () => 0, log: () => {} });
  await assert.rejects(check(otherHome), ApplicationFailure);
  assert.equal(reads.length, 1);
  rmSync(join(home, 'store'), { recursive: true, force: true });
  const submitted = await backendsOf(home);
  await check(submitted);
  assert.equal(reads.length, 2);
  await assert.rejects(check(otherHome), ApplicationFailure);
  assert.equal(reads.length, 2, "the other home's id is not read for again within REREAD_IDS_EVERY_MS");
});

test('a run of a new id that comes while a read begun before its marker was written is under way reads again', async () => {
  const home = join(root, 'g');
  const started = await backendsOf(home);
  const otherHome = await backendsOf(join(root, 'h'));
  const reads: ((b: RunBackends) => void)[] = [];
  const known = new KnownBackendIds(started, () => new Promise<RunBackends>((resolve) => reads.push(resolve)), {
    now: () => 0,
    log: () => {},
  });
  const check = async (run: RunBackends) => checkBackends(run, await known.forRun(run), 'r3');
  const other = check(otherHome);
  while (reads.length < 1) await new Promise((r) => setImmediate(r));
  // The store folder deleted and a run submitted while that read (of the old marker) is under way.
  rmSync(join(home, 'store'), { recursive: true, force: true });
  const submitted = await backendsOf(home);
  const mine = check(submitted);
  reads[0]!(started);
  await assert.rejects(other, ApplicationFailure);
  while (reads.length < 2) await new Promise((r) => setImmediate(r));
  reads[1]!(submitted);
  await mine;
  assert.equal(reads.length, 2);
});

test("a run's new store id makes the worker read its store's id again, and not its database's", async () => {
  // A database nothing answers at: reading its id would warn, which backendsOf fails on.
  const unreachable = 'postgres://tempered:x@127.0.0.1:1/tempered';
  const home = join(root, 'i');
  const started = await backendsOf(home);
  const { reads, check } = workerOf(home, started, 'r4', { now: () => 0, log: () => {} });
  rmSync(join(home, 'store'), { recursive: true, force: true });
  const submitted = await backendsOf(home);
  await check(submitted);
  assert.deepEqual(reads, [{ store: true, database: false }]);
  // Asked for the store alone, runBackends opens no connection to the database.
  const storeOnly = await backendsOf(home, { database: unreachable, which: { store: true, database: false } });
  assert.deepEqual(storeOnly, { store: 'local', storeId: submitted.storeId, database: 'postgres:tempered' });
});
