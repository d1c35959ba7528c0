import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { StageStatus } from '../workflows/types.ts';
import { duration, printable, progressText, stageLine } from './format.ts';

const running = (progress: Record<string, unknown>): StageStatus =>
  ({ id: 'train', uses: 'train', state: 'running', progress }) as unknown as StageStatus;

test('training progress reads as loss, learning rate, rates with units and the time left', () => {
  const text = progressText(
    running({
      fraction: 0.25,
      message: 'step 15/60 epoch 1',
      metrics: { step: 15, epoch: 1, loss: 0.38123, lr: 0.0008, samplesPerSec: 3.214, tokensPerSec: 212.43, etaSec: 125.4 },
    }),
  );
  assert.equal(text, '25% step 15/60 epoch 1 loss=0.3812 lr=8.00e-4 3.21 samples/s 212 tokens/s eta 2m05s');
});

test('other metrics keep their name=value form; without a message step and epoch are shown', () => {
  assert.equal(progressText(running({ metrics: { rows: 1200, step: 3, ratio: 0.123456 } })), 'rows=1200 step=3 ratio=0.1235');
});

test('durations', () => {
  assert.deepEqual([0, 59.4, 75, 3599, 3725].map(duration), ['0s', '59s', '1m15s', '59m59s', '1h02m']);
});

test('a running stage that is being retried shows why its last attempt failed', () => {
  const retrying = {
    ...running({}),
    attempt: 3,
    error: { message: 'retrying after: PostgreSQL at postgres://t@db/t is unavailable' },
  } as unknown as StageStatus;
  assert.match(stageLine(retrying), /running .*\(attempt 3\)\s+retrying after: PostgreSQL at postgres:\/\/t@db\/t is unavailable$/);
});

test('printable writes control characters as escapes: a record cannot fake a line or recolour the terminal', () => {
  assert.equal(printable('a\nb\r\tc'), 'a\\nb\\r\\tc');
  assert.equal(printable('x\u001b[31mRED\u001b[0m'), 'x\\u001b[31mRED\\u001b[0m');
  assert.equal(printable('p\u2028q\u007f'), 'p\\u2028q\\u007f');
  assert.equal(printable('Zoë 李 👩‍💻 → v2'), 'Zoë 李 👩‍💻 → v2');
});
