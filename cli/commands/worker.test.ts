import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CliError } from '../context.ts';
import { parseCudaQueues, parseQueues, runTogether, type RunnableWorker } from './worker.ts';

test('--queue lists the queues a worker serves, each with an optional cap on stages at once', () => {
  assert.deepEqual(parseQueues('tempered', 'u'), [{ queue: 'tempered', maxActivities: undefined }]);
  // A queue's own cap wins; --max-activities caps the queues that name none.
  assert.deepEqual(parseQueues('gpu:1,cpu', 'u', 3), [
    { queue: 'gpu', maxActivities: 1 },
    { queue: 'cpu', maxActivities: 3 },
  ]);
  assert.deepEqual(parseQueues('gpu:1, cpu', 'u'), [
    { queue: 'gpu', maxActivities: 1 },
    { queue: 'cpu', maxActivities: undefined },
  ]);
});

test('a bad --queue is a usage error naming the part', () => {
  for (const bad of ['gpu:0', 'gpu:x', 'a b', '', 'gpu,', 'gpu,gpu:2']) {
    assert.throws(
      () => parseQueues(bad, 'usage line'),
      (e: unknown) => e instanceof CliError && e.exitCode === 2 && /--queue/.test(e.message) && /usage line/.test(e.message),
      bad,
    );
  }
});

/** A stand-in for an SDK worker with the SDK's state rules: shutdown() throws unless RUNNING; a failed run() leaves FAILED. */
function queueWorker(failAfterMs?: number) {
  let state = 'INITIALIZED';
  let release: () => void = () => {};
  return {
    getState: () => state as ReturnType<RunnableWorker['getState']>,
    shutdown() {
      if (state !== 'RUNNING') throw new Error(`IllegalStateError: Not running. Current state: ${state}`);
      state = 'STOPPING';
      release();
    },
    run() {
      state = 'RUNNING';
      return new Promise<void>((resolve, reject) => {
        release = () => {
          state = 'STOPPED';
          resolve();
        };
        if (failAfterMs !== undefined)
          setTimeout(() => {
            state = 'FAILED';
            reject(new Error('the gpu queue worker failed'));
          }, failAfterMs);
      });
    },
  };
}

test('runTogether: a queue worker that fails stops the others, whatever its place, and its own error is the one reported', async () => {
  for (const order of ['failing first', 'failing last'] as const) {
    const failing = queueWorker(10);
    const other = queueWorker();
    const all = order === 'failing first' ? [failing, other] : [other, failing];
    const { done } = runTogether(all as unknown as RunnableWorker[]);
    const failure = await done;
    assert.equal(other.getState(), 'STOPPED', order);
    assert.match(String((failure?.error as Error)?.message), /the gpu queue worker failed/, order);
  }
  // A signal's stop ends them all with no failure.
  const a = queueWorker();
  const b = queueWorker();
  const r = runTogether([a, b] as unknown as RunnableWorker[]);
  r.stop();
  assert.equal(await r.done, undefined);
  assert.deepEqual([a.getState(), b.getState()], ['STOPPED', 'STOPPED']);
});

test('--cuda-queues names queues the worker serves', () => {
  const slots = parseQueues('gpu:1,cpu', 'u');
  assert.equal(parseCudaQueues(undefined, slots, 'u'), undefined);
  assert.deepEqual(parseCudaQueues('gpu', slots, 'u'), ['gpu']);
  assert.throws(
    () => parseCudaQueues('gpus', slots, 'usage line'),
    (e: unknown) =>
      e instanceof CliError && /--cuda-queues names "gpus", which is not one of the queues this worker serves \(gpu, cpu\)/.test(e.message),
  );
});
