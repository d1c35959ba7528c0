// kill -9 during causal-LM training: a process SIGKILLed while it trains (LoRA with dropout on the tiny GGUF LLaMA)
// and started again with resume continues from its last checkpoint and exports a model.onnx and adapter bitwise equal
// to those of an uninterrupted run, with the uninterrupted run's training history.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { KILL_TEST_CHECKPOINT_EVERY, KILL_TEST_STEPS, writeTable } from './causal-train-child.testing.ts';

const CHILD = fileURLToPath(new URL('./causal-train-child.testing.ts', import.meta.url));
const root = mkdtempSync(join(tmpdir(), 'causal-kill-'));
process.on('exit', () => rmSync(root, { recursive: true, force: true }));
writeTable(join(root, 'train.arrow'));

interface Run {
  steps: number;
  resumedFromStep: number | null;
  history: { step: number; epoch: number; loss: number; lr: number; gradNorm: number; seqLen?: number }[];
}

/** Runs the child; with killAfterCheckpoint, SIGKILLs it once that many checkpoints are written. */
function runChild(
  name: string,
  resume: boolean,
  killAfterCheckpoint?: number,
): Promise<{ result?: Run; killed: boolean; checkpoints: string[] }> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', CHILD, JSON.stringify({ root, name, resume, stepPauseMs: killAfterCheckpoint ? 40 : 0 })],
      {
        stdio: ['ignore', 'pipe', 'inherit'],
        env: { ...process.env },
      },
    );
    let out = '';
    const checkpoints: string[] = [];
    child.stdout.on('data', (b: Buffer) => {
      out += b.toString();
      const lines = out.split('\n');
      out = lines.pop()!;
      for (const line of lines) {
        if (line.startsWith('checkpoint ')) {
          checkpoints.push(line.slice('checkpoint '.length));
          if (checkpoints.length === killAfterCheckpoint) child.kill('SIGKILL');
        } else if (line.startsWith('{')) out = line + '\n' + out;
      }
    });
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      const last = out.split('\n').find((l) => l.startsWith('{'));
      if (signal === 'SIGKILL') resolve({ killed: true, checkpoints });
      else if (code === 0 && last) resolve({ result: JSON.parse(last) as Run, killed: false, checkpoints });
      else reject(new Error(`child exited with ${code ?? signal}`));
    });
  });
}

const sha = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');

test('SIGKILL mid-training, then resume: same steps and history, bitwise-identical model.onnx and adapter as an uninterrupted run', async () => {
  const [reference, killed] = await Promise.all([runChild('reference', false), runChild('killed', false, 2)]);
  assert.equal(reference.result?.steps, KILL_TEST_STEPS);
  assert.equal(reference.result?.resumedFromStep, null);
  assert.ok(killed.killed, 'the run was killed, not finished');
  assert.equal(existsSync(join(root, 'killed', 'out')), false, 'a killed run exports nothing');
  const kept = readdirSync(join(root, 'killed', 'ck')).filter((n) => /^step-\d+$/.test(n));
  assert.ok(kept.length >= 2, `checkpoints left by the killed run: ${kept}`);
  const resumed = await runChild('killed', true);
  const from = resumed.result!.resumedFromStep!;
  assert.ok(from >= 2 * KILL_TEST_CHECKPOINT_EVERY && from < KILL_TEST_STEPS, `resumed from step ${from}`);
  assert.equal(resumed.result!.steps, KILL_TEST_STEPS);
  // Steps 1..from come from the checkpoint, the rest from the resumed training: the uninterrupted run's history.
  assert.deepEqual(
    reference.result!.history.map((h) => h.step),
    Array.from({ length: KILL_TEST_STEPS }, (_, i) => i + 1),
  );
  assert.deepEqual(resumed.result!.history, reference.result!.history, 'the resumed run has the whole history');
  for (const f of ['model.onnx', join('adapter', 'adapter_model.safetensors')])
    assert.equal(
      sha(join(root, 'killed', 'out', f)),
      sha(join(root, 'reference', 'out', f)),
      `${f} is bitwise that of the uninterrupted run`,
    );
});
