/**
 * Opt-in benchmark (not part of npm test): full fine-tuning step time of a MiniLM-size encoder
 * (6 layers, hidden 384, vocab 30522, seq 128, batch 16, AdamW) with one optimizer step per
 * onnxruntime run against several steps per run (the step graph inside an ONNX Loop, multi-step.ts).
 *
 *   node --import tsx bench/steps-per-run.bench.ts [stepsPerRun list=1,4] [steps=12] [rounds=3] [threads=2]
 *
 * A run also stays within about 5 s (RunSizer), so at this model's ~0.9 s a step a setting above 5
 * runs 5 steps at a time.
 * The settings alternate within one process for `rounds` rounds, so a slow stretch of a shared machine
 * hits all of them; each fit's first max(4, stepsPerRun) steps are the warm-up and the median step after
 * it is reported, as a ratio against the first setting of the list. Runs with glibc malloc tuned as
 * `npm run demo` runs tempered (scripts/malloc-tuning.mjs; BENCH_MALLOC=default skips that).
 */
import { spawnSync } from 'node:child_process';
import { compileTrainStep } from '../src/engine/compile.ts';
import { Trainer } from '../src/engine/trainer.ts';
import { buildTinyEncoder } from '../src/engine/tiny-encoder.ts';
import { tokenTask } from '../src/engine/synthetic.ts';
import { withMallocTuning } from '../scripts/malloc-tuning.mjs';

if (process.platform === 'linux' && !process.env.GLIBC_TUNABLES && process.env.BENCH_MALLOC !== 'default') {
  const r = spawnSync(process.execPath, [...process.execArgv, ...process.argv.slice(1)], { stdio: 'inherit', env: withMallocTuning() });
  process.exit(r.status ?? 1);
}

const settings = (process.argv[2] ?? '1,4').split(',').map(Number);
const steps = Number(process.argv[3] ?? 12);
const rounds = Number(process.argv[4] ?? 3);
const threads = Number(process.argv[5] ?? 2);
const batch = 16;
const cfg = { vocab: 30522, hidden: 384, heads: 12, intermediate: 1536, layers: 6, seq: 128, classes: 2, seed: 1 };
const prog = compileTrainStep(buildTinyEncoder(cfg), { loss: { kind: 'cross_entropy' }, trainable: { kind: 'full' }, optimizer: { kind: 'adamw' }, clipNorm: 1 });
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;

const results = new Map<number, number[]>();
for (let round = 1; round <= rounds; round++) {
  for (const perRun of settings) {
    const warmup = Math.max(4, perRun);
    const data = tokenTask({ n: batch * (steps + warmup), seq: cfg.seq, vocab: cfg.vocab, seed: 2, task: 'contains' });
    const ms: number[] = [];
    await new Trainer(prog, {
      seed: 1, batchSize: batch, maxSteps: steps + warmup, threads, stepsPerRun: perRun, schedule: { kind: 'constant', lr: 1e-4 },
      onStep: (m) => ms.push((batch * 1000) / m.samplesPerSec),
    }).fit(data);
    const step = median(ms.slice(warmup));
    results.set(perRun, [...(results.get(perRun) ?? []), step]);
    console.log(`round ${round}: ${perRun} step(s) per run, median step ${step.toFixed(0)} ms`);
  }
}
const ref = median(results.get(settings[0]!)!);
console.log(`\nmedians over ${rounds} rounds (${threads} threads, ${process.env.GLIBC_TUNABLES ? `GLIBC_TUNABLES=${process.env.GLIBC_TUNABLES}` : 'glibc default'}):`);
for (const [perRun, xs] of results) {
  const m = median(xs);
  console.log(`${String(perRun).padStart(3)} step(s) per run: ${m.toFixed(0)} ms a step (rounds ${xs.map((x) => x.toFixed(0)).join(', ')}), ${(ref / m).toFixed(2)}x the speed of ${settings[0]} per run`);
}
