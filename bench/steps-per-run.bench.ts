/**
 * Opt-in benchmark (not part of npm test): full fine-tuning step time of a MiniLM-size encoder
 * (6 layers, hidden 384, vocab 30522, seq 128, batch 16, AdamW) with one optimizer step per
 * onnxruntime run against several steps per run (the step graph inside an ONNX Loop, multi-step.ts).
 *
 *   node --import tsx bench/steps-per-run.bench.ts [stepsPerRun list=1,4] [steps=12] [rounds=3] [threads=2]
 *
 * A run also stays within RunSizer's budget (5 s unless BENCH_RUN_BUDGET_MS says otherwise; the train
 * stage, in its own process, uses 30 s), so at this model's ~0.9 s a step a setting above 5 runs 5
 * steps at a time under the 5 s default. The settings alternate in one process (bench/alternate.ts), with glibc
 * malloc tuned as `npm run demo` runs tempered (scripts/malloc-tuning.mjs; BENCH_MALLOC=default skips that).
 */
import { compileTrainStep } from '../src/engine/compile.ts';
import { buildTinyEncoder } from '../src/engine/tiny-encoder.testing.ts';
import { alternate } from './alternate.ts';
import { MINILM_SIZE, reexecWithMallocTuning } from './common.ts';

reexecWithMallocTuning();
const settings = (process.argv[2] ?? '1,4').split(',').map(Number);
const prog = compileTrainStep(buildTinyEncoder(MINILM_SIZE), {
  loss: { kind: 'cross_entropy' },
  trainable: { kind: 'full' },
  optimizer: { kind: 'adamw' },
  clipNorm: 1,
});
// BENCH_RUN_BUDGET_MS: RunSizer's time cap on a run (the engine's default when unset; Infinity for none).
const budget = process.env.BENCH_RUN_BUDGET_MS ? Number(process.env.BENCH_RUN_BUDGET_MS) : undefined;
await alternate(
  settings.map((n) => ({ label: `${n} step(s) per run`, prog, stepsPerRun: n, runBudgetMs: budget })),
  {
    steps: Number(process.argv[3] ?? 12),
    rounds: Number(process.argv[4] ?? 3),
    threads: Number(process.argv[5] ?? 2),
  },
);
