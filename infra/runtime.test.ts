import { test } from 'node:test';
import assert from 'node:assert/strict';
import { WorkerLogger } from './runtime.ts';

test("the worker logger drops only the SDK's warning about a worker that runs no workflows (an --activities-only worker)", () => {
  const seen: string[] = [];
  const log = new WorkerLogger('WARN', (e) => void seen.push(`${e.level} ${e.message}`));
  log.warn('No workflows registered, not polling for workflow tasks', { taskQueue: 'gpu' });
  log.warn('Worker failed to heartbeat');
  log.info('below the level');
  log.error('No workflows here, but an error');
  assert.deepEqual(seen, ['WARN Worker failed to heartbeat', 'ERROR No workflows here, but an error']);
});
