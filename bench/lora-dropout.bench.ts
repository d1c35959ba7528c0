/**
 * Opt-in benchmark (not part of npm test): host time to draw one training step's LoRA dropout masks for
 * the train bench's model (12 adapted modules, inputs [16, 128, 384]), against filling the same buffers
 * with a plain copy, the floor for writing that much memory.
 *
 *   node --import tsx bench/lora-dropout.bench.ts [steps=20]
 */
import * as ort from 'onnxruntime-node';
import { DropoutMasker, dropoutThreshold } from '../src/engine/dropout-masks.ts';

const steps = Number(process.argv[2] ?? 20);
const { threshold } = dropoutThreshold(0.1);
const masks = Array.from({ length: 12 }, (_, k) => ({
  input: `lora_dropout_mask:m${k}`,
  shape: ['batch', 'seq', 384],
  threshold,
  dtype: 'float32' as const,
}));
const masker = new DropoutMasker(masks, [{ name: 'input_ids', dtype: 'int64', shape: ['batch', 'seq'] }]);
const data = { input_ids: new ort.Tensor('int64', new BigInt64Array(16 * 128), [16, 128]) };
import { median } from './common.ts';

const drawMs: number[] = [];
let kept = 0,
  total = 0;
for (let s = 0; s < steps; s++) {
  const t = performance.now();
  const feeds = masker.feeds(data, s + 1);
  drawMs.push(performance.now() - t);
  for (const f of Object.values(feeds)) {
    const d = f.data as Float32Array;
    total += d.length;
    for (let i = 0; i < d.length; i++) kept += d[i]!;
  }
}
const source = new Float32Array(16 * 128 * 384).fill(1);
const targets = masks.map(() => new Float32Array(source.length));
const copyMs: number[] = [];
for (let s = 0; s < steps; s++) {
  const t = performance.now();
  for (const b of targets) b.set(source);
  copyMs.push(performance.now() - t);
}
console.log(
  JSON.stringify({
    values: total / steps,
    drawMs: +median(drawMs).toFixed(1),
    copyMs: +median(copyMs).toFixed(1),
    ratio: +(median(drawMs) / median(copyMs)).toFixed(2),
    keptFraction: +(kept / total).toFixed(5),
  }),
);
