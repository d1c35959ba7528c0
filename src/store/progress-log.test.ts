import { test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { appendProgressPoint, progressLogPath, readProgressPoints } from './progress-log.ts';

test('points are read once each from the offset a reader keeps; a half-written line waits for the next read', () => {
  const dir = mkdtempSync(join(tmpdir(), 'progress-'));
  const path = progressLogPath(dir, 'run/../1', 'exec', 'train');
  assert.ok(path.startsWith(dir) && !path.includes('/../'), 'ids cannot leave the folder');
  assert.deepEqual(readProgressPoints(path), { points: [], offset: 0 });
  appendProgressPoint(path, { attempt: 1, t: 1, metrics: { step: 1, loss: 2 } });
  appendProgressPoint(path, { attempt: 1, t: 2, metrics: { step: 2, loss: 1.5 } });
  const first = readProgressPoints(path);
  assert.deepEqual(
    first.points.map((p) => p.metrics.step),
    [1, 2],
  );
  appendFileSync(path, '{"attempt":1,"t":3,"metrics":{"st');
  const second = readProgressPoints(path, first.offset);
  assert.deepEqual(second, { points: [], offset: first.offset });
  appendFileSync(path, 'ep":3}}\nnot json\n');
  const third = readProgressPoints(path, second.offset);
  assert.deepEqual(
    third.points.map((p) => p.metrics.step),
    [3],
    'the completed line is read, a torn one skipped',
  );
  assert.deepEqual(readProgressPoints(path, third.offset).points, []);
});
