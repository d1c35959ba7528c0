/**
 * Checks training on CUDA against the CPU on this machine:
 *
 *   node --import tsx scripts/gpu-check.ts [--size tiny|minilm] [--repeat N] [--against cuda|cpu]
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
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import type * as ort from 'onnxruntime-node';
import { stateDir } from '../infra/state.ts';
import { cudaBuildLoaded, cudaDir, cudaProcessEnv, loadedOrtCore, probeCuda } from '../src/engine/cuda.ts';
import { compileTrainStep, gradName, LOSS_OUTPUT, LR_INPUT, STEP_INPUT, type TrainProgram } from '../src/engine/compile.ts';
import { createSession, toOrt, type Device } from '../src/engine/runtime.ts';
import { buildTinyEncoder, type TinyEncoderConfig } from '../src/engine/tiny-encoder.testing.ts';
import { tokenTask } from '../src/engine/synthetic.testing.ts';
import { allocate, type TypedArray } from '../src/onnx/dtype.ts';

const { values: args } = parseArgs({
  options: {
    size: { type: 'string', default: 'tiny' },
    repeat: { type: 'string', default: '5' },
    against: { type: 'string', default: 'cuda' },
    batch: { type: 'string' },
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

// Tolerances: CUDA's reductions run in another order, and cuBLAS may use TF32 for float32 MatMul.
const TOL = { lossRel: 1e-3, gradRelL2: 1e-2, weightAbs: 1e-4 };

function relaunchWithCudaBuild(): never {
  const dir = cudaDir(stateDir());
  const probe = probeCuda(dir);
  if (!probe.ok) {
    const noGpu = probe.devices.length === 0;
    console.log(`${noGpu ? 'no GPU' : 'GPU present, CUDA not usable'}: ${probe.problems.join('; ')}`);
    process.exit(noGpu ? 0 : 1);
  }
  console.log(
    `GPU: ${probe.devices.join(', ')}, driver ${probe.driver ?? 'unknown'}; starting again with onnxruntime's CUDA build from ${dir}`,
  );
  const r = spawnSync(process.execPath, [...process.execArgv, ...process.argv.slice(1)], { env: cudaProcessEnv(dir), stdio: 'inherit' });
  process.exit(r.status ?? 1);
}

interface Outcome {
  loss: number;
  grads: Map<string, Float32Array>;
  stepLoss: number;
  updated: Map<string, Float32Array>;
  stepMs: number[];
  profile?: string;
}

function feedsFor(prog: TrainProgram, data: ReturnType<typeof tokenTask>, params: Map<string, TypedArray>, withState: boolean) {
  const feeds: Record<string, ort.Tensor> = {};
  for (const d of prog.dataInputs) feeds[d.name] = toOrt(data[d.name]!.dtype, data[d.name]!.data, data[d.name]!.dims);
  for (const p of prog.params) feeds[p.name] = toOrt(p.dtype, params.get(p.name)!, p.dims);
  if (withState) {
    for (const s of prog.state)
      feeds[s.input] = toOrt(
        s.dtype,
        allocate(
          s.dtype,
          s.dims.reduce((a, b) => a * b, 1),
        ),
        s.dims,
      );
    feeds[LR_INPUT] = toOrt('float32', Float32Array.of(1e-3), []);
    feeds[STEP_INPUT] = toOrt('float32', Float32Array.of(1), []);
  }
  return feeds;
}

async function runOn(
  device: Device,
  prog: TrainProgram,
  data: ReturnType<typeof tokenTask>,
  params: Map<string, TypedArray>,
  profile?: string,
): Promise<Outcome> {
  const grad = await createSession(prog.grad, { device, cpuFallback: true });
  const g = await grad.run(feedsFor(prog, data, params, false));
  const grads = new Map(prog.params.map((p) => [p.name, g[gradName(p.name)]!.data as Float32Array]));
  await grad.release();

  const step = await createSession(prog.step, { device, cpuFallback: true });
  const feeds = feedsFor(prog, data, params, true);
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
  return { loss: Number(g[LOSS_OUTPUT]!.data[0]), grads, stepLoss: Number(s[LOSS_OUTPUT]!.data[0]), updated, stepMs, profile };
}

/** Nodes of the profiled step that ran on a provider other than `want`, from onnxruntime's trace. */
function nodesOffProvider(prefix: string, want: string): { total: number; off: { name: string; op: string; provider: string }[] } {
  const dir = dirname(prefix);
  const file = readdirSync(dir).find((f) => f.startsWith(basename(prefix)) && f.endsWith('.json'));
  if (!file) throw new Error(`no onnxruntime profile under ${prefix}`);
  const events = JSON.parse(readFileSync(join(dir, file), 'utf8')) as {
    cat?: string;
    name?: string;
    args?: { op_name?: string; provider?: string };
  }[];
  const nodes = new Map<string, { op: string; provider: string }>();
  for (const e of events)
    if (e.cat === 'Node' && e.args?.provider && e.name?.endsWith('_kernel_time'))
      nodes.set(e.name.slice(0, -'_kernel_time'.length), { op: e.args.op_name ?? '?', provider: e.args.provider });
  const off = [...nodes].filter(([, n]) => n.provider !== want).map(([name, n]) => ({ name, ...n }));
  return { total: nodes.size, off };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main(): Promise<number> {
  if (target === 'cuda' && !cudaBuildLoaded()) relaunchWithCudaBuild();
  console.log(`onnxruntime core: ${loadedOrtCore()}`);
  const { batch: _b, ...cfg } = size!;
  const prog = compileTrainStep(buildTinyEncoder(cfg), {
    loss: { kind: 'cross_entropy' },
    trainable: { kind: 'full' },
    optimizer: { kind: 'adamw', weightDecay: 0.01 },
    clipNorm: 1,
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
    let worstGrad = { name: '', rel: 0 };
    for (const [name, a] of cpu.grads) {
      const b = other.grads.get(name)!;
      let num = 0,
        den = 0;
      for (let i = 0; i < a.length; i++) {
        num += (a[i]! - b[i]!) ** 2;
        den += a[i]! ** 2;
      }
      const rel = Math.sqrt(num) / Math.max(1e-30, Math.sqrt(den));
      if (rel > worstGrad.rel || !worstGrad.name) worstGrad = { name, rel };
    }
    let worstWeight = { name: '', abs: 0 };
    for (const [name, a] of cpu.updated) {
      const b = other.updated.get(name)!;
      for (let i = 0; i < a.length; i++) {
        const d = Math.abs(a[i]! - b[i]!);
        if (d > worstWeight.abs || !worstWeight.name) worstWeight = { name, abs: d };
      }
    }
    const fmt = (x: number) => x.toExponential(2);
    console.log(
      `loss             cpu ${cpu.loss.toFixed(6)}  ${target} ${other.loss.toFixed(6)}  rel diff ${fmt(lossRel)} (tolerance ${TOL.lossRel})`,
    );
    console.log(
      `gradients        worst relative L2 diff ${fmt(worstGrad.rel)} in ${worstGrad.name} (tolerance ${TOL.gradRelL2}), ${cpu.grads.size} tensors`,
    );
    console.log(
      `one AdamW step   loss rel diff ${fmt(stepLossRel)}; updated weights worst abs diff ${fmt(worstWeight.abs)} in ${worstWeight.name} (tolerance ${TOL.weightAbs})`,
    );

    const provider = target === 'cuda' ? 'CUDAExecutionProvider' : 'CPUExecutionProvider';
    const placed = nodesOffProvider(join(work, 'step'), provider);
    console.log(`placement        ${placed.total - placed.off.length}/${placed.total} nodes of the step graph ran on ${provider}`);
    for (const n of placed.off) console.log(`  on ${n.provider}: ${n.op} ${n.name}`);
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
    const ok = lossRel <= TOL.lossRel && stepLossRel <= TOL.lossRel && worstGrad.rel <= TOL.gradRelL2 && worstWeight.abs <= TOL.weightAbs;
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
