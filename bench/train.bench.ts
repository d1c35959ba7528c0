/**
 * Opt-in benchmark (not part of npm test): train-step throughput and peak RSS of a MiniLM-size encoder
 * (6 layers, hidden 384, 12 heads, intermediate 1536, vocab 30522, seq 128, batch 16) on onnxruntime CPU,
 * full fine-tuning and LoRA r=8 on query+value.
 *
 *   node --import tsx bench/train.bench.ts [full|lora|both] [steps=5] [threads]
 */
import { compileTrainStep, type TrainableSpec } from '../src/engine/compile.ts';
import { Trainer } from '../src/engine/trainer.ts';
import { buildTinyEncoder } from '../src/engine/tiny-encoder.ts';
import { tokenTask } from '../src/engine/synthetic.ts';

const mode = process.argv[2] ?? 'both';
const steps = Number(process.argv[3] ?? 5);
const threads = process.argv[4] ? Number(process.argv[4]) : undefined;
const cfg = { vocab: 30522, hidden: 384, heads: 12, intermediate: 1536, layers: 6, seq: 128, classes: 2, seed: 1 };
const batch = 16;

const specs: Record<string, TrainableSpec> = {
  full: { kind: 'full' },
  lora: { kind: 'lora', r: 8, alpha: 16, dropout: Number(process.env.LORA_DROPOUT ?? 0.1), targets: ['*attention.self.query.weight', '*attention.self.value.weight'], alsoTrain: ['classifier.*'] },
};

for (const name of mode === 'both' ? ['full', 'lora'] : [mode]) {
  const t0 = performance.now();
  const model = buildTinyEncoder(cfg);
  const prog = compileTrainStep(model, { loss: { kind: 'cross_entropy' }, trainable: specs[name]!, optimizer: { kind: 'adamw' }, clipNorm: 1 });
  const compileMs = performance.now() - t0;
  const trainable = prog.params.reduce((s, p) => s + p.init.length, 0);
  const data = tokenTask({ n: batch * (steps + 1), seq: cfg.seq, vocab: cfg.vocab, seed: 2, task: 'contains' });
  const times: number[] = [];
  let last = performance.now();
  const tr = new Trainer(prog, {
    seed: 1, batchSize: batch, maxSteps: steps + 1, threads, schedule: { kind: 'constant', lr: 1e-4 },
    onStep: (m) => {
      const now = performance.now();
      times.push(now - last);
      last = now;
      console.log(`  ${name} step ${m.step} loss ${m.loss.toFixed(4)} ${(now - (now - times.at(-1)!)) && ''}${m.samplesPerSec.toFixed(2)} samples/s`);
    },
  });
  last = performance.now();
  await tr.fit(data);
  const steady = times.slice(1); // the first step includes session creation
  const meanMs = steady.reduce((a, b) => a + b, 0) / steady.length;
  console.log(JSON.stringify({
    mode: name, trainableParams: trainable, compileMs: Math.round(compileMs), stepMs: Math.round(meanMs),
    samplesPerSec: +((batch * 1000) / meanMs).toFixed(2), peakRssMiB: Math.round(process.resourceUsage().maxRSS / 1024), threads: threads ?? 'default',
  }));
}
