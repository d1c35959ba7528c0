/**
 * Opt-in benchmark (not part of npm test): train-step throughput and peak RSS of a MiniLM-size encoder
 * (6 layers, hidden 384, 12 heads, intermediate 1536, vocab 30522, seq 128, batch 16) on onnxruntime CPU,
 * full fine-tuning and LoRA r=8 on query+value.
 *
 *   node --import tsx bench/train.bench.ts [full|lora|both] [steps=5] [threads=1] [rounds=1]
 *
 * When bench/.venv has the reference (`python3 -m venv bench/.venv && bench/.venv/bin/pip install torch transformers
 * peft accelerate`, the latest releases; see bench/fixtures/torch_train_bench.py), the same step is timed with Hugging Face
 * transformers' BertForSequenceClassification (SDPA attention) on PyTorch, LoRA through PEFT, with the same thread count,
 * and the ratio is printed beside it.
 * Both sides report the median step after two warm-up steps (session creation, arena growth), which keeps
 * one descheduled step on a shared machine from moving the ratio. With rounds > 1 the two sides alternate
 * (tempered, PyTorch, tempered, …) so a slow stretch of a shared machine hits both, and the median of the
 * per-round ratios is printed. LORA_DROPOUT (default 0.1) and MODEL_DROPOUT (the encoder's own dropout
 * where BERT drops out, default 0.1 as BERT's config; 0 for none) apply to both. tempered runs with glibc malloc tuned as `npm run demo` runs it (scripts/malloc-tuning.mjs; the
 * bench re-executes itself to apply it, BENCH_MALLOC=default skips that); PyTorch runs with the
 * environment as given. Each side's setting is printed. PRUNE_ROWS=0 turns off row pruning (the last layer then runs for every position, as in PyTorch),
 * to show what that optimization contributes; ROW_UPDATES=0 gives AdamW a dense embedding gradient (compile option rowUpdates). STEPS_PER_RUN sets the optimizer steps per onnxruntime run (default: the
 * library's, 4 for full fine-tuning here and 1 for LoRA); the first run is the warm-up. Peak RSS is per process: run one mode at a time to read it per mode.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { compileTrainStep, type TrainableSpec } from '../src/engine/compile.ts';
import { Trainer } from '../src/engine/trainer.ts';
import { defaultStepsPerRun } from '../src/engine/step-runner.ts';
import { buildTinyEncoder } from '../src/engine/tiny-encoder.testing.ts';
import { tokenTask } from '../src/engine/synthetic.testing.ts';
import { mallocSetting, median, MINILM_SIZE, reexecWithMallocTuning, referenceEnv } from './common.ts';

reexecWithMallocTuning();

const mode = process.argv[2] ?? 'both';
const steps = Number(process.argv[3] ?? 5);
const threads = Number(process.argv[4] ?? 1);
const rounds = Number(process.argv[5] ?? 1);
const cfg = MINILM_SIZE;
const batch = 16;

const specs: Record<string, TrainableSpec> = {
  full: { kind: 'full' },
  lora: {
    kind: 'lora',
    r: 8,
    alpha: 16,
    dropout: Number(process.env.LORA_DROPOUT ?? 0.1),
    targets: ['*attention.self.query.weight', '*attention.self.value.weight'],
    alsoTrain: ['classifier.*'],
  },
};

const modelDropout = Number(process.env.MODEL_DROPOUT ?? 0.1);
const pruneRows = process.env.PRUNE_ROWS !== '0';
const rowUpdates = process.env.ROW_UPDATES !== '0';
const stepsPerRunEnv = process.env.STEPS_PER_RUN ? Number(process.env.STEPS_PER_RUN) : undefined;

for (const name of mode === 'both' ? ['full', 'lora'] : [mode]) {
  const t0 = performance.now();
  const model = buildTinyEncoder({ ...cfg, dropout: modelDropout });
  const prog = compileTrainStep(model, {
    loss: { kind: 'cross_entropy' },
    trainable: specs[name]!,
    optimizer: { kind: 'adamw' },
    clipNorm: 1,
    pruneRows,
    rowUpdates,
  });
  const compileMs = performance.now() - t0;
  const trainable = prog.params.reduce((s, p) => s + p.init.length, 0);
  const data = tokenTask({ n: batch * (steps + 8), seq: cfg.seq, vocab: cfg.vocab, seed: 2, task: 'contains' });
  const ratios: number[] = [];
  for (let round = 1; round <= rounds; round++) {
    // Steps of one onnxruntime run report together, each with the run's average step time. The first
    // run takes one step (RunSizer), so dropping max(2, perRun) steps drops it and, with several steps
    // per run, the second one's first steps too: at least two warm-up steps, as on the PyTorch side.
    const perRun = stepsPerRunEnv ?? defaultStepsPerRun(prog);
    const warmup = Math.max(2, perRun);
    const times: number[] = [];
    const tr = new Trainer(prog, {
      seed: 1,
      batchSize: batch,
      maxSteps: steps + warmup,
      threads,
      schedule: { kind: 'constant', lr: 1e-4 },
      stepsPerRun: perRun,
      onStep: (m) => {
        times.push((batch * 1000) / m.samplesPerSec);
        console.log(`  ${name} step ${m.step} loss ${m.loss.toFixed(4)} ${m.samplesPerSec.toFixed(2)} samples/s`);
      },
    });
    await tr.fit(data);
    const medianMs = median(times.slice(warmup));
    const ours = {
      mode: name,
      round,
      modelDropout,
      pruneRows,
      rowUpdates,
      stepsPerRun: perRun,
      ...(name === 'lora' ? { loraDropout: specs.lora!.kind === 'lora' ? specs.lora!.dropout : 0 } : {}),
      trainableParams: trainable,
      compileMs: Math.round(compileMs),
      stepMs: Math.round(medianMs),
      samplesPerSec: +((batch * 1000) / medianMs).toFixed(2),
      peakRssMiB: Math.round(process.resourceUsage().maxRSS / 1024),
      threads,
      malloc: mallocSetting(),
    };
    console.log('tempered', JSON.stringify(ours));
    const py = 'bench/.venv/bin/python';
    if (!existsSync(py)) {
      console.log('pytorch reference unavailable: no bench/.venv (see bench/fixtures/torch_train_bench.py)');
      continue;
    }
    const r = spawnSync(py, ['bench/fixtures/torch_train_bench.py', name, String(steps), String(threads)], {
      encoding: 'utf8',
      env: { ...referenceEnv(), MODEL_DROPOUT: String(modelDropout) },
    });
    const line = r.stdout.trim().split('\n').pop() ?? '';
    if (r.status === 0 && line.startsWith('{')) {
      const ref = JSON.parse(line) as { samplesPerSec: number; peakRssMiB: number };
      console.log('pytorch ', line);
      ratios.push(ours.samplesPerSec / ref.samplesPerSec);
      console.log(
        `ratio tempered/pytorch: throughput ${(ours.samplesPerSec / ref.samplesPerSec).toFixed(2)}x, peak RSS ${(ours.peakRssMiB / ref.peakRssMiB).toFixed(2)}x`,
      );
    } else console.log('pytorch reference unavailable:', (r.stderr || '').trim().split('\n').pop());
  }
  if (ratios.length > 1)
    console.log(`${name}: throughput ratio per round ${ratios.map((x) => x.toFixed(2)).join(', ')}; median ${median(ratios).toFixed(2)}x`);
}
