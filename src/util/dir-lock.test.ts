import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { spawn, spawnSync } from 'node:child_process';
import { hostname } from 'node:os';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { acquireDirLock, LockBusyError } from './dir-lock.ts';
import { machineId, processStart } from './process-alive.ts';

test('one holder at a time; a stale lock is taken over and its old holder is told to stop', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tempered-lock-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'ck.lock');
  const a = acquireDirLock(path, { what: 'attempt 1', staleMs: 60_000, refreshMs: 20 });
  assert.throws(
    () => acquireDirLock(path, { what: 'attempt 2', staleMs: 60_000 }),
    (e: unknown) => e instanceof LockBusyError && /attempt 1 \(pid/.test(e.message),
  );
  // attempt 1 stops refreshing (a hung zombie): its lock ages past staleMs.
  const old = new Date(Date.now() - 120_000);
  utimesSync(path, old, old);
  const b = acquireDirLock(path, { what: 'attempt 2', staleMs: 60_000, refreshMs: 20 });
  for (let i = 0; i < 100 && !a.signal.aborted; i++) await sleep(10);
  assert.equal(a.signal.aborted, true, 'the old holder learns it lost the lock');
  a.release(); // must not remove attempt 2's lock
  assert.ok(existsSync(path));
  assert.throws(() => acquireDirLock(path, { what: 'attempt 3' }), LockBusyError);
  b.release();
  assert.equal(existsSync(path), false);
  acquireDirLock(path, { what: 'attempt 3' }).release();
});

test('a fresh lock whose holder on this host is gone (crashed, killed) is taken over at once', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tempered-lock-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'ck.lock');
  const dead = spawnSync(process.execPath, ['-e', '0']).pid!;
  writeFileSync(
    path,
    JSON.stringify({ token: 'x', pid: dead, host: hostname(), what: 'crashed attempt', since: new Date().toISOString() }),
  );
  const b = acquireDirLock(path, { what: 'retry', staleMs: 60_000 });
  b.release();
  // A holder on another host is judged by freshness alone.
  writeFileSync(
    path,
    JSON.stringify({ token: 'y', pid: dead, host: `${hostname()}-elsewhere`, what: 'remote attempt', since: new Date().toISOString() }),
  );
  assert.throws(() => acquireDirLock(path, { what: 'retry' }), LockBusyError);
});

test("a lock whose holder on this machine is alive holds however long since its refresh (a long native run); a holder of another process table with this host's name is judged by its refreshes", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tempered-lock-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'ck.lock');
  const holder = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)']);
  t.after(() => holder.kill('SIGKILL'));
  const owner = {
    token: 'x',
    pid: holder.pid!,
    host: hostname(),
    machine: machineId(),
    pidStart: processStart(holder.pid!),
    what: 'blocked attempt',
    since: '',
  };
  writeFileSync(path, JSON.stringify(owner));
  const old = new Date(Date.now() - 3_600_000);
  utimesSync(path, old, old);
  assert.throws(() => acquireDirLock(path, { what: 'retry', staleMs: 60_000 }), /blocked attempt/);
  // The same pid in another pid namespace or a cloned VM (same host name) means nothing here.
  writeFileSync(path, JSON.stringify({ ...owner, machine: `${machineId()}-clone` }));
  utimesSync(path, old, old);
  acquireDirLock(path, { what: 'retry', staleMs: 60_000 }).release();
  // Its pid, now another process's (another start time): the holder is gone.
  writeFileSync(path, JSON.stringify({ ...owner, pidStart: '1' }));
  acquireDirLock(path, { what: 'retry', staleMs: 60_000 }).release();
  // Once the holder is gone, at once.
  writeFileSync(path, JSON.stringify(owner));
  holder.kill('SIGKILL');
  await new Promise((r) => holder.once('exit', r));
  acquireDirLock(path, { what: 'retry', staleMs: 60_000 }).release();
});
