/**
 * Opt-in: writes every graph the engine compiles (train step, its multi-step Loop, grad, apply, eval, forward, export) for full,
 * LoRA and head-only training of a tiny encoder, and validates them with the reference onnx checker
 * (bench/fixtures/onnx_check.py, needs `bench/.venv` with onnx installed).
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { compileTrainStep, type TrainableSpec } from '../src/engine/compile.ts';
import { buildTinyEncoder } from '../src/engine/tiny-encoder.testing.ts';
import { exportInference } from '../src/engine/export.ts';
import { multiStepModel } from '../src/engine/multi-step.ts';
import { saveModel } from '../src/onnx/proto.ts';

const dir = mkdtempSync(join(tmpdir(), 'tempered-onnx-check-'));
const cfg = { vocab: 12, hidden: 16, heads: 2, intermediate: 32, layers: 1, seq: 8, classes: 2, seed: 11 };
const kinds: Record<string, TrainableSpec> = {
  full: { kind: 'full' },
  lora: { kind: 'lora', r: 2, alpha: 4, dropout: 0.1, targets: ['*query.weight', '*value.weight'] },
  head: { kind: 'head', features: 'pooled' },
};
for (const [name, trainable] of Object.entries(kinds)) {
  const p = compileTrainStep(buildTinyEncoder(cfg), {
    loss: { kind: 'cross_entropy', labelSmoothing: 0.1 },
    trainable,
    optimizer: { kind: 'adamw' },
    clipNorm: 1,
  });
  for (const k of ['step', 'grad', 'apply', 'eval', 'forward'] as const) saveModel(p[k], join(dir, `${name}-${k}.onnx`));
  saveModel(exportInference(p, new Map(p.params.map((q) => [q.name, q.init]))), join(dir, `${name}-export.onnx`));
  saveModel(multiStepModel(p), join(dir, `${name}-steps.onnx`));
}
const r = spawnSync('bench/.venv/bin/python', ['bench/fixtures/onnx_check.py', dir], { stdio: 'inherit' });
process.exit(r.status ?? 1);
