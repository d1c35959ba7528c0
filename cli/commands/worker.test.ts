import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CliError } from '../context.ts';
import { parseQueues } from './worker.ts';

test('--queue lists the queues a worker serves, each with an optional cap on stages at once', () => {
  assert.deepEqual(parseQueues('tempered', 'u'), [{ queue: 'tempered', maxActivities: undefined }]);
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
