/**
 * Opt-in benchmark (not part of npm test): what the encoder's own dropout costs a training step of a
 * MiniLM-size encoder (6 layers, hidden 384, vocab 30522, seq 128, batch 16, AdamW): the same program
 * compiled with the model's dropout at 0.1 (BERT's rate, at BERT's places: host-drawn masks, one Mul
 * each way per site) and without. The two alternate in one process (bench/alternate.ts), with glibc malloc
 * tuned as `npm run demo` runs tempered.
 *
 *   node --import tsx bench/dropout-cost.bench.ts [lora|full] [steps=8] [rounds=3] [threads=2]
 *
 * LoRA is r=8 on query/value with the classifier, LoRA dropout 0.1 in both variants.
 */
import { compileTrainStep, type TrainableSpec } from '../src/engine/compile.ts';
import { buildTinyEncoder } from '../src/engine/tiny-encoder.testing.ts';
import { alternate } from './alternate.ts';
import { MINILM_SIZE, reexecWithMallocTuning } from './common.ts';

reexecWithMallocTuning();
const mode = process.argv[2] ?? 'lora';
const trainable: TrainableSpec =
  mode === 'full'
    ? { kind: 'full' }
    : {
        kind: 'lora',
        r: 8,
        alpha: 16,
        dropout: 0.1,
        targets: ['*attention.self.query.weight', '*attention.self.value.weight'],
        alsoTrain: ['classifier.*'],
      };
const compile = (dropout: number) =>
  compileTrainStep(buildTinyEncoder({ ...MINILM_SIZE, dropout }), {
    loss: { kind: 'cross_entropy' },
    trainable,
    optimizer: { kind: 'adamw' },
    clipNorm: 1,
  });
await alternate(
  [
    { label: `${mode}, no model dropout`, prog: compile(0) },
    { label: `${mode}, model dropout 0.1`, prog: compile(0.1) },
  ],
  {
    steps: Number(process.argv[3] ?? 8),
    rounds: Number(process.argv[4] ?? 3),
    threads: Number(process.argv[5] ?? 2),
  },
);
