import test from 'node:test';
import assert from 'node:assert/strict';
import { DiskFullError, InputError, IntegrityError } from '../errors.ts';
import { fromWire, toWire } from './protocol.ts';
import { LockBusyError } from '../util/dir-lock.ts';

test('an InputError crosses the process boundary with its class, message, where, hint and code', () => {
  const original = new InputError('lr must be below 1', { where: 'stages.train.with.lr', hint: 'try 0.001', code: 'source-missing' });
  const back = fromWire(structuredClone(toWire(original)));
  assert.ok(back instanceof InputError);
  assert.equal(back.message, original.message);
  assert.equal((back as InputError).where, 'stages.train.with.lr');
  assert.equal((back as InputError).hint, 'try 0.001');
  assert.equal((back as InputError).code, 'source-missing');
});

test('other errors keep their class name and message; integrity errors their class', () => {
  const e = new TypeError('bad');
  const back = fromWire(toWire(e));
  assert.equal(back.name, 'TypeError');
  assert.equal(back.message, 'bad');
  const integrity = fromWire(toWire(new IntegrityError('hash mismatch', { sha256: 'ab'.repeat(32) })));
  assert.ok(integrity instanceof IntegrityError);
  assert.equal(integrity.sha256, 'ab'.repeat(32), 'kept: it makes the failure non-retryable');
  assert.equal(fromWire(toWire('plain string')).message, 'plain string');
});

// A plugin's own error classes: Temporal takes the failure type from the constructor (retry.nonRetryableErrorTypes
// names it), and a class merely named 'InputError' is not tempered's, in a child process as in the worker.
test("a plugin's error class keeps its type across the boundary; a class only named InputError is not one", () => {
  class BadData extends Error {}
  const back = fromWire(structuredClone(toWire(new BadData('no rows'))));
  assert.equal(back.constructor.name, 'BadData');
  assert.equal(back.message, 'no rows');
  class Impostor extends Error {
    override name = 'InputError';
  }
  const impostor = fromWire(structuredClone(toWire(new Impostor('looks like input'))));
  assert.ok(!(impostor instanceof InputError));
  assert.equal(impostor.name, 'InputError');
  assert.equal(impostor.constructor.name, 'Impostor');
  // From a child of an older release, which sent no type: the name decides, as before.
  assert.ok(fromWire({ name: 'InputError', message: 'x' }) instanceof InputError);
});

// A stage in its own process that ran out of disk: the worker tells a full disk by the error's code
// (ENOSPC, SQLITE_FULL), which it lost on the way, so a checkpoint write's ENOSPC came out as a plain Error.
test('a system error keeps its code and file across the boundary; a DiskFullError its class and fields', () => {
  const enospc = Object.assign(new Error("ENOSPC: no space left on device, copyfile 'a' -> 'b'"), {
    code: 'ENOSPC',
    errno: -28,
    path: '/x/a',
    dest: '/y/b',
  });
  const back = fromWire(structuredClone(toWire(enospc))) as NodeJS.ErrnoException & { dest?: string };
  assert.equal(back.code, 'ENOSPC');
  assert.equal(back.path, '/x/a');
  assert.equal(back.dest, '/y/b');
  assert.equal(back.message, enospc.message);
  const full = new DiskFullError('no space left on the disk that holds /h', {
    path: '/h',
    freeBytes: 0,
    totalBytes: 10,
    neededBytes: 5,
    hint: 'free it',
  });
  const fullBack = fromWire(structuredClone(toWire(full)));
  assert.ok(fullBack instanceof DiskFullError);
  assert.deepEqual(
    {
      path: fullBack.path,
      freeBytes: fullBack.freeBytes,
      totalBytes: fullBack.totalBytes,
      neededBytes: fullBack.neededBytes,
      hint: fullBack.hint,
    },
    { path: '/h', freeBytes: 0, totalBytes: 10, neededBytes: 5, hint: 'free it' },
  );
});

test('a LockBusyError keeps its class, lock and holder across the boundary (the worker logs a wait for it as one line)', () => {
  const owner = { token: 't1', pid: 7, host: 'h', what: 'run a stage train attempt 1', since: '2026-12-08T03:00:00.000Z' };
  const back = fromWire(structuredClone(toWire(new LockBusyError('/x.lock', owner))));
  assert.ok(back instanceof LockBusyError);
  assert.deepEqual([back.path, back.owner, back.message], ['/x.lock', owner, new LockBusyError('/x.lock', owner).message]);
});
