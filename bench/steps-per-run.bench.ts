/**
 * Opt-in benchmark (not part of npm test): full fine-tuning step time of a MiniLM-size encoder
 * (6 layers, hidden 384, vocab 30522, seq 128, batch 16, AdamW) with one optimizer step per
 * onnxruntime run against several steps per run (the step graph inside an ONNX Loop, multi-step.ts).
 *
 *   node --import tsx bench/steps-per-run.bench.ts [stepsPerRun list=1,4] [steps=12] [rounds=3] [threads=2] [batch=16]
 *
 * Runs are sized as the train stage sizes them in its own process: `stepsPerRun` steps from the first
 * run, no time cap (BENCH_RUN_BUDGET_MS=5000 gives the inline mode's 5 s cap instead). The settings
 * alternate in one process (bench/alternate.ts), with glibc malloc tuned as `npm run demo` runs tempered
 * (scripts/malloc-tuning.mjs; BENCH_MALLOC=default skips that). A smaller batch makes the fixed
 * per-run cost (the copy of weights and optimizer state out of onnxruntime) a larger share of a step.
 * BENCH_DEVICE=cuda runs it on CUDA (starting again on onnxruntime's CUDA build, graphs compiled as the
 * trainers compile them for CUDA), where every run copies weights and moments to the GPU and back.
 * BENCH_SUMS picks how the batch sums are written: `matmul` (the deterministic forms graphs for CUDA
 * use), `reduce` (ReduceSum / scatter-add, the CPU's forms) or `both`, alternating the two in one
 * process: the cost of CUDA's determinism (default: matmul on CUDA, reduce on the CPU).
 */
import { compileTrainStep } from '../src/engine/compile.ts';
import { cudaBuildLoaded } from '../src/engine/cuda.ts';
import type { Device } from '../src/engine/runtime.ts';
import { relaunchWithCudaBuild } from '../scripts/cuda-relaunch.ts';
import { buildTinyEncoder } from '../src/engine/tiny-encoder.testing.ts';
import { alternate } from './alternate.ts';
import { MINILM_SIZE, reexecWithMallocTuning } from './common.ts';

const device = (process.env.BENCH_DEVICE ?? 'cpu') as Device;
if (device !== 'cpu' && device !== 'cuda') throw new Error('BENCH_DEVICE must be cpu or cuda');
if (device === 'cuda' && !cudaBuildLoaded()) relaunchWithCudaBuild();
reexecWithMallocTuning();
const settings = (process.argv[2] ?? '1,4').split(',').map(Number);
const sumsArg = process.env.BENCH_SUMS ?? (device === 'cuda' ? 'matmul' : 'reduce');
if (!['matmul', 'reduce', 'both'].includes(sumsArg)) throw new Error('BENCH_SUMS must be matmul, reduce or both');
const sumForms = sumsArg === 'both' ? ['matmul', 'reduce'] : [sumsArg];
const model = buildTinyEncoder(MINILM_SIZE);
const programs = sumForms.map((sums) => ({
  sums,
  prog: compileTrainStep(model, {
    loss: { kind: 'cross_entropy' },
    trainable: { kind: 'full' },
    optimizer: { kind: 'adamw' },
    clipNorm: 1,
    deterministicSums: sums === 'matmul',
  }),
}));
// BENCH_RUN_BUDGET_MS: RunSizer's time cap on a run (none, as in the train stage's own process, when unset).
const budget = process.env.BENCH_RUN_BUDGET_MS ? Number(process.env.BENCH_RUN_BUDGET_MS) : Infinity;
await alternate(
  settings.flatMap((n) =>
    programs.map(({ sums, prog }) => ({
      label: `${n} step(s) per run${sumForms.length > 1 ? `, ${sums} sums` : ''}`,
      prog,
      stepsPerRun: n,
      runBudgetMs: budget,
      device,
    })),
  ),
  {
    steps: Number(process.argv[3] ?? 12),
    rounds: Number(process.argv[4] ?? 3),
    threads: Number(process.argv[5] ?? 2),
    batch: Number(process.argv[6] ?? 16),
  },
);
