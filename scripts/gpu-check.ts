/**
 * Checks training on CUDA against the CPU on this machine:
 *
 *   node --import tsx scripts/gpu-check.ts [--size tiny|minilm] [--repeat N] [--against cuda|cpu] [--tf32]
 *
 * Builds a BERT-style classifier (tiny, or MiniLM-L6's shape: 6 layers, hidden 384, vocab 30522) from
 * seeded weights, compiles its full fine-tuning step, and from the same weights and batch runs on both
 * devices: the gradient graph (loss and every weight's gradient) and one full optimizer step (AdamW,
 * clipping; the updated weights). Prints the differences, the nodes onnxruntime placed on the CPU
 * instead of CUDA (from its per-node profile) and whether the step builds with CPU fallback disabled,
 * and the step time both ways. Exit 1 when the two devices disagree beyond the tolerances.
 *
 * On a machine without an NVIDIA GPU it prints "no GPU" and why, and exits 0. On a GPU machine without
 * `tempered setup --gpu` it says so and exits 1. This process runs the npm (CPU) build, so for CUDA it
 * starts itself again with onnxruntime's CUDA build (src/engine/cuda.ts). `--against cpu` compares the
 * CPU with itself through the same code: a dry run of this script where no GPU is at hand.
 *
 * CUDA runs float32 MatMuls without TF32 as tempered's CUDA stages do (src/engine/cuda.ts); `--tf32`
 * lets them use TF32 to show its speed, and its differences are then printed but not judged.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { cudaBuildLoaded, loadedOrtCore } from '../src/engine/cuda.ts';
import { relaunchWithCudaBuild } from './cuda-relaunch.ts';
import { compileTrainStep, gradName, LOSS_OUTPUT, type TrainProgram } from '../src/engine/compile.ts';
import { createSession, type Device } from '../src/engine/runtime.ts';
import { buildTinyEncoder, type TinyEncoderConfig } from '../src/engine/tiny-encoder.testing.ts';
import { tokenTask } from '../src/engine/synthetic.testing.ts';
import { programFeeds } from '../src/engine/program-feeds.testing.ts';
import type { TypedArray } from '../src/onnx/dtype.ts';

const { values: args } = parseArgs({
  options: {
    size: { type: 'string', default: 'tiny' },
    repeat: { type: 'string', default: '5' },
    against: { type: 'string', default: 'cuda' },
    'require-gpu': { type: 'boolean', default: false },
    batch: { type: 'string' },
    tf32: { type: 'boolean', default: false },
  },
});
const SIZES: Record<string, TinyEncoderConfig & { batch: number }> = {
  tiny: { vocab: 64, hidden: 64, heads: 4, intermediate: 256, layers: 2, seq: 32, classes: 2, seed: 7, batch: 8 },
  minilm: { vocab: 30522, hidden: 384, heads: 12, intermediate: 1536, layers: 6, seq: 128, classes: 2, seed: 7, batch: 16 },
};
const size = SIZES[args.size!];
if (!size) throw new Error(`--size must be one of ${Object.keys(SIZES).join(', ')}`);
const target = args.against as Device;
if (target !== 'cuda' && target !== 'cpu') throw new Error('--against must be cuda or cpu');
const repeat = Math.max(1, Number(args.repeat));
const batch = args.batch ? Number(args.batch) : size.batch;

// Tolerances for float32 on both sides: CUDA's reductions run in another order. A gradient is
// compared relative to its own norm, floored at 1e-3 of the whole gradient's RMS scaled to the tensor's
// size: some gradients are zero in exact arithmetic (a key bias shifts every score of a query alike,
// which softmax ignores), and their rounding noise has no meaningful relative size. The first AdamW
// step moves each weight by about lr·sign(g), so a weight whose gradient is noise may move either way
// on either device: the check counts the weights whose update differs by more than a tenth of lr.
// Measured on an H200 (4 Dec 2026, TF32 off): tiny loss 4.2e-7, gradients 2.7e-4, updates 2.0e-4;
// MiniLM's shape loss 1.5e-4, gradients 2.5e-3, updates 6.4e-4. With TF32: 2.0e-2, 1.1 and 0.17.
const TOL = { lossRel: 1e-3, gradRelL2: 1e-2, updateOffShare: 2e-3 };
const LR = 1e-3;

interface Outcome {
  loss: number;
  grads: Map<string, Float32Array>;
  stepLoss: number;
  updated: Map<string, Float32Array>;
  stepMs: number[];
  profile?: string;
  /** Gradients that differ bitwise between two identical runs. */
  unstable: string[];
}

async function runOn(
  device: Device,
  prog: TrainProgram,
  data: ReturnType<typeof tokenTask>,
  params: Map<string, TypedArray>,
  profile?: string,
): Promise<Outcome> {
  const grad = await createSession(prog.grad, { device, cpuFallback: true });
  const g = await grad.run(programFeeds(prog, data, (n) => params.get(n)!));
  const grads = new Map(prog.params.map((p) => [p.name, g[gradName(p.name)]!.data as Float32Array]));
  // The same run again: which gradients come out with other bits tells where a device is not deterministic.
  const again = await grad.run(programFeeds(prog, data, (n) => params.get(n)!));
  const unstable = prog.params
    .map((p) => p.name)
    .filter((n) => !Buffer.from((again[gradName(n)]!.data as Float32Array).buffer).equals(Buffer.from(grads.get(n)!.buffer)));
  await grad.release();

  const step = await createSession(prog.step, { device, cpuFallback: true });
  const feeds = programFeeds(prog, data, (n) => params.get(n)!, { lr: LR });
  const s = await step.run(feeds);
  const updated = new Map(prog.params.map((p) => [p.name, s[`${p.name}::new`]!.data as Float32Array]));
  const stepMs: number[] = [];
  for (let i = 0; i < repeat; i++) {
    const t0 = performance.now();
    await step.run(feeds);
    stepMs.push(performance.now() - t0);
  }
  await step.release();
  if (profile) {
    // A session of its own: profiling slows every node, so it never runs in the timed one.
    const traced = await createSession(prog.step, { device, cpuFallback: true, profilePrefix: profile });
    await traced.run(feeds);
    traced.endProfiling();
    await traced.release();
  }
  return { loss: Number(g[LOSS_OUTPUT]!.data[0]), grads, stepLoss: Number(s[LOSS_OUTPUT]!.data[0]), updated, stepMs, profile, unstable };
}

/** Nodes of the profiled step that ran on a provider other than `want`, from onnxruntime's trace. */
function nodesOffProvider(
  prefix: string,
  want: string,
): { total: number; off: { name: string; op: string; provider: string }[]; byOp: [string, number][] } {
  const dir = dirname(prefix);
  const file = readdirSync(dir).find((f) => f.startsWith(basename(prefix)) && f.endsWith('.json'));
  if (!file) throw new Error(`no onnxruntime profile under ${prefix}`);
  const events = JSON.parse(readFileSync(join(dir, file), 'utf8')) as {
    cat?: string;
    name?: string;
    dur?: number;
    args?: { op_name?: string; provider?: string };
  }[];
  const nodes = new Map<string, { op: string; provider: string }>();
  const byOp = new Map<string, number>();
  for (const e of events)
    if (e.cat === 'Node' && e.args?.provider && e.name?.endsWith('_kernel_time')) {
      const op = e.args.op_name ?? '?';
      nodes.set(e.name.slice(0, -'_kernel_time'.length), { op, provider: e.args.provider });
      const key = e.args.provider === want ? op : `${op}@${e.args.provider.replace('ExecutionProvider', '')}`;
      byOp.set(key, (byOp.get(key) ?? 0) + (e.dur ?? 0));
    }
  const off = [...nodes].filter(([, n]) => n.provider !== want).map(([name, n]) => ({ name, ...n }));
  return { total: nodes.size, off, byOp: [...byOp].sort((a, b) => b[1] - a[1]).slice(0, 8) };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main(): Promise<number> {
  if (target === 'cuda' && !cudaBuildLoaded()) relaunchWithCudaBuild({ tf32: args.tf32, requireGpu: args['require-gpu'] });
  console.log(`onnxruntime core: ${loadedOrtCore()}`);
  const { batch: _b, ...cfg } = size!;
  const prog = compileTrainStep(buildTinyEncoder(cfg), {
    loss: { kind: 'cross_entropy' },
    trainable: { kind: 'full' },
    optimizer: { kind: 'adamw', weightDecay: 0.01 },
    clipNorm: 1,
    // Both devices run the graphs a CUDA stage runs: sums as MatMuls, so that CUDA repeats bit for bit.
    deterministicSums: target === 'cuda',
  });
  const data = tokenTask({ n: batch, seq: cfg.seq, vocab: cfg.vocab, seed: 3, task: 'contains' });
  const params = new Map(prog.params.map((p) => [p.name, p.init.slice()]));
  const nParams = prog.params.reduce((s, p) => s + p.init.length, 0);
  console.log(
    `model: ${args.size} (${cfg.layers} layers, hidden ${cfg.hidden}, ${(nParams / 1e6).toFixed(2)} M weights), batch ${batch}×${cfg.seq}, full fine-tuning, AdamW`,
  );

  const work = mkdtempSync(join(tmpdir(), 'gpu-check-'));
  try {
    const cpu = await runOn('cpu', prog, data, params);
    const other = await runOn(target, prog, data, params, join(work, 'step'));

    const lossRel = Math.abs(other.loss - cpu.loss) / Math.max(1e-12, Math.abs(cpu.loss));
    const stepLossRel = Math.abs(other.stepLoss - cpu.stepLoss) / Math.max(1e-12, Math.abs(cpu.stepLoss));
    let sumSq = 0,
      count = 0;
    for (const a of cpu.grads.values()) for (let i = 0; i < a.length; i++) ((sumSq += a[i]! ** 2), count++);
    const gradRms = Math.sqrt(sumSq / Math.max(1, count));
    let worstGrad = { name: '', rel: 0 };
    for (const [name, a] of cpu.grads) {
      const b = other.grads.get(name)!;
      let num = 0,
        den = 0;
      for (let i = 0; i < a.length; i++) {
        num += (a[i]! - b[i]!) ** 2;
        den += a[i]! ** 2;
      }
      const rel = Math.sqrt(num) / Math.max(1e-30, Math.sqrt(den), 1e-3 * gradRms * Math.sqrt(a.length));
      if (rel > worstGrad.rel || !worstGrad.name) worstGrad = { name, rel };
    }
    let worstWeight = { name: '', abs: 0 };
    let updatesOff = 0,
      weights = 0;
    for (const [name, a] of cpu.updated) {
      const b = other.updated.get(name)!;
      for (let i = 0; i < a.length; i++) {
        const d = Math.abs(a[i]! - b[i]!);
        if (d > 0.1 * LR) updatesOff++;
        if (d > worstWeight.abs || !worstWeight.name) worstWeight = { name, abs: d };
      }
      weights += a.length;
    }
    const updateOffShare = updatesOff / Math.max(1, weights);
    const fmt = (x: number) => x.toExponential(2);
    console.log(
      `loss             cpu ${cpu.loss.toFixed(6)}  ${target} ${other.loss.toFixed(6)}  rel diff ${fmt(lossRel)} (tolerance ${TOL.lossRel})`,
    );
    console.log(
      `gradients        worst relative L2 diff ${fmt(worstGrad.rel)} in ${worstGrad.name} (tolerance ${TOL.gradRelL2}), ${cpu.grads.size} tensors`,
    );
    console.log(
      `one AdamW step   loss rel diff ${fmt(stepLossRel)}; ${updatesOff} of ${weights} weights (${fmt(updateOffShare)}, tolerance ${TOL.updateOffShare}) moved differently by more than lr/10; worst ${fmt(worstWeight.abs)} in ${worstWeight.name}`,
    );

    console.log(
      `repeatability    ${target}: ${
        other.unstable.length === 0
          ? 'two runs give the same gradients bit for bit'
          : `${other.unstable.length} of ${other.grads.size} gradients differ between two identical runs: ${other.unstable.join(', ')}`
      }`,
    );
    const provider = target === 'cuda' ? 'CUDAExecutionProvider' : 'CPUExecutionProvider';
    const placed = nodesOffProvider(join(work, 'step'), provider);
    console.log(`placement        ${placed.total - placed.off.length}/${placed.total} nodes of the step graph ran on ${provider}`);
    for (const n of placed.off) console.log(`  on ${n.provider}: ${n.op} ${n.name}`);
    console.log(`time by op       ${placed.byOp.map(([op, us]) => `${op} ${(us / 1000).toFixed(1)} ms`).join(', ')} (profiled step)`);
    if (target === 'cuda') {
      const strict = await createSession(prog.step, { device: 'cuda', cpuFallback: false }).then(
        (s) => s.release().then(() => 'builds'),
        (e: Error) => `fails (${e.message.split('\n')[0]})`,
      );
      console.log(`strict           with disable_cpu_ep_fallback the step graph ${strict}`);
    }
    const c = median(cpu.stepMs),
      o = median(other.stepMs);
    console.log(
      `step time        cpu ${c.toFixed(1)} ms, ${target} ${o.toFixed(1)} ms (median of ${repeat}); ${target} is ${(c / o).toFixed(2)}× the CPU's speed`,
    );
    const ok =
      lossRel <= TOL.lossRel && stepLossRel <= TOL.lossRel && worstGrad.rel <= TOL.gradRelL2 && updateOffShare <= TOL.updateOffShare;
    const tf32 = target === 'cuda' && process.env.NVIDIA_TF32_OVERRIDE !== '0';
    if (tf32) {
      console.log(`gpu-check: TF32 allowed, differences shown but not judged (${ok ? 'within' : 'beyond'} the float32 tolerances)`);
      return 0;
    }
    console.log(ok ? 'gpu-check: OK' : 'gpu-check: FAILED (differences above tolerance)');
    return ok ? 0 : 1;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

main().then(
  (code) => process.exit(code),
  (e: Error) => {
    console.error(`gpu-check: ${e.message}`);
    process.exit(1);
  },
);
