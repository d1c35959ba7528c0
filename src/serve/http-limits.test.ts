import { test } from 'node:test';
import assert from 'node:assert/strict';
import { errorsToStderr } from './http-limits.ts';

test("the serve log writes errors with their stack, in each of pino's call shapes, and nothing below error", () => {
  const lines: string[] = [];
  const log = errorsToStderr((l) => lines.push(l));
  log.error(new Error('boom'));
  log.child({ reqId: 'r1' }).error({ err: new Error('bang') }, 'request failed');
  log.error('plain words');
  log.info('a request came');
  log.warn('a warning');
  assert.equal(lines.length, 3);
  assert.match(lines[0]!, /^\d{4}-\d\d-\d\dT\S+Z Error: boom\n\s+at /);
  assert.match(lines[1]!, /Z request r1: request failed: Error: bang\n\s+at /);
  assert.match(lines[2]!, /Z plain words\n$/);
});
