/**
 * tempered side of bench/llm-train.bench.ts: one training mode of a LLaMA model folder in this process (so its peak
 * RSS is the mode's alone), on the token rows in `data.json`, printing one JSON line.
 *
 *   node --import tsx bench/llm-train-ours.ts <model dir> <lora|qlora|full>[+rc] <data.json> <threads> <warmup steps>
 *
 * `+rc`: with activation recomputation (src/engine/recompute.ts; trainCausalLm's default for qlora).
 *
 * The graph, loss, LoRA settings and optimizer are trainCausalLm's (src/finetune/causal-lm.ts): LoRA r 8, alpha 16,
 * no dropout, on every projection; AdamW (weight decay 0.01), gradient clipping at 1, constant lr 1e-4.
 * Step times come from the Trainer's step metrics (a run of several steps reports its average step).
 */
import { readFileSync } from 'node:fs';
import { compileTrainStep, type TrainableSpec } from '../src/engine/compile.ts';
import { defaultStepsPerRun } from '../src/engine/step-runner.ts';
import { Trainer } from '../src/engine/trainer.ts';
import { buildCausalLmGraph } from '../src/models/causal-lm.ts';
import { median } from './common.ts';

const [dir, modeArg, dataPath, threadsArg, warmupArg] = process.argv.slice(2) as [string, string, string, string, string];
const [mode, flag] = modeArg.split('+') as [string, string | undefined];
const threads = Number(threadsArg);
const warmup = Number(warmupArg);
const inp = JSON.parse(readFileSync(dataPath, 'utf8')) as { batch: number; seq: number; rows: number[][] };

/** VmRSS and VmHWM of this process from /proc, MiB. */
function memory(): { rss: number; hwm: number } {
  const s = readFileSync('/proc/self/status', 'utf8');
  const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(s)?.[1] ?? NaN);
  return { rss: Math.round(kb('VmRSS') / 1024), hwm: Math.round(kb('VmHWM') / 1024) };
}

const t0 = performance.now();
const { model } = buildCausalLmGraph(dir, { quantize: mode === 'qlora' ? 'q4' : undefined });
const trainable: TrainableSpec =
  mode === 'full'
    ? { kind: 'full' }
    : {
        kind: 'lora',
        r: 8,
        alpha: 16,
        dropout: 0,
        targets: ['q_proj', 'k_proj', 'v_proj', 'o_proj']
          .map((p) => `*self_attn.${p}.weight`)
          .concat(['gate_proj', 'up_proj', 'down_proj'].map((p) => `*mlp.${p}.weight`)),
        seed: 1,
      };
const prog = compileTrainStep(model, {
  loss: { kind: 'cross_entropy', logits: 'logits', labels: 'labels', shift: true, ignoreIndex: -100 },
  trainable,
  clipNorm: 1,
  optimizer: { kind: 'adamw', weightDecay: 0.01 },
  recompute: flag === 'rc',
});
const buildMs = performance.now() - t0;
const afterBuild = memory();
const { batch, seq, rows } = inp;
const flat = BigInt64Array.from(rows.flat(), (v) => BigInt(v));
const n = rows.length;
const data = {
  input_ids: { data: flat, dims: [n, seq], dtype: 'int64' as const },
  attention_mask: { data: new BigInt64Array(n * seq).fill(1n), dims: [n, seq], dtype: 'int64' as const },
  labels: { data: flat.slice(), dims: [n, seq], dtype: 'int64' as const },
};
const steps: { loss: number; ms: number; cpuMs: number }[] = [];
// CPU time (user + system, all threads) between step reports, shared evenly by the steps of one run: on a
// machine shared with other work, wall time measures the share this process got as much as the step.
let cpuMark = process.cpuUsage();
let pending: { loss: number; ms: number }[] = [];
let afterFirstStep: { rss: number; hwm: number } | undefined;
// STEPS_PER_RUN=1 runs the plain step graph (no Loop), whose nodes onnxruntime's profiler traces one by one.
const perRun = process.env.STEPS_PER_RUN ? Number(process.env.STEPS_PER_RUN) : defaultStepsPerRun(prog);
await new Trainer(prog, {
  seed: 1,
  batchSize: batch,
  maxSteps: n / batch,
  threads,
  schedule: { kind: 'constant', lr: 1e-4 },
  // As the train stage runs in its own process (src/isolate/): runs of up to 30 s.
  runBudgetMs: 30_000,
  stepsPerRun: perRun,
  onStep: (m) => {
    pending.push({ loss: m.loss, ms: (batch * 1000) / m.samplesPerSec });
    // Steps of one run arrive together, in one macrotask: account their CPU time once they all have.
    if (pending.length === 1)
      setImmediate(() => {
        const used = process.cpuUsage(cpuMark);
        cpuMark = process.cpuUsage();
        const cpuMs = (used.user + used.system) / 1000 / pending.length;
        for (const p of pending) steps.push({ ...p, cpuMs });
        pending = [];
      });
    afterFirstStep ??= memory();
  },
}).fit(data);
await new Promise((r) => setImmediate(r));
const ms = median(steps.slice(warmup).map((s) => s.ms));
const cpuMs = median(steps.slice(warmup).map((s) => s.cpuMs));
const end = memory();
console.log(
  JSON.stringify({
    side: 'tempered',
    mode: modeArg,
    threads,
    batch,
    seq,
    stepsPerRun: perRun,
    trainableParams: prog.params.reduce((s, p) => s + p.init.length, 0),
    buildMs: Math.round(buildMs),
    stepMs: Math.round(ms),
    tokPerSec: +((batch * seq * 1000) / ms).toFixed(1),
    cpuMsPerStep: Math.round(cpuMs),
    tokPerCpuSec: +((batch * seq * 1000) / cpuMs).toFixed(1),
    losses: steps.map((s) => s.loss),
    stepMsAll: steps.map((s) => Math.round(s.ms)),
    rssAfterBuildMiB: afterBuild.rss,
    rssAfterFirstStepMiB: afterFirstStep?.rss,
    peakRssMiB: end.hwm,
  }),
);
