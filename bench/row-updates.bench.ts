/**
 * Opt-in benchmark (not part of npm test): full fine-tuning step time of a MiniLM-size encoder with
 * AdamW updating the 30522×384 word-embedding table from a dense, table-sized gradient against
 * updating it row-wise (compile option rowUpdates, optimizers.ts), alternating in one process
 * (bench/alternate.ts). Both use the library's default steps per run.
 *
 *   node --import tsx bench/row-updates.bench.ts [steps=12] [rounds=3] [threads=2]
 */
import { compileTrainStep } from '../src/engine/compile.ts';
import { buildTinyEncoder } from '../src/engine/tiny-encoder.testing.ts';
import { alternate } from './alternate.ts';
import { MINILM_SIZE, reexecWithMallocTuning } from './common.ts';

reexecWithMallocTuning();
const compile = (rowUpdates: boolean) =>
  compileTrainStep(buildTinyEncoder(MINILM_SIZE), {
    loss: { kind: 'cross_entropy' },
    trainable: { kind: 'full' },
    optimizer: { kind: 'adamw' },
    clipNorm: 1,
    rowUpdates,
  });
await alternate(
  [
    { label: 'dense embedding update', prog: compile(false) },
    { label: 'row-wise embedding update', prog: compile(true) },
  ],
  {
    steps: Number(process.argv[2] ?? 12),
    rounds: Number(process.argv[3] ?? 3),
    threads: Number(process.argv[4] ?? 2),
  },
);
