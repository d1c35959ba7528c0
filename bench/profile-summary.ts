/**
 * Summarizes an onnxruntime profile (TEMPERED_ORT_PROFILE=/tmp/p …, chrome-tracing JSON): kernel time
 * per run by op type, and for MatMul-like ops the time and GFLOP/s by input shapes.
 *
 *   STEPS_PER_RUN=1 TEMPERED_ORT_PROFILE=/tmp/p node --import tsx bench/train.bench.ts full 4 2 1
 *   node --import tsx bench/profile-summary.ts /tmp/p_<timestamp>.json [skip runs=2]
 *
 * The first `skip` runs (session warm-up, arena growth) are left out. For a Loop session (several steps
 * per run) the body's nodes are not traced one by one, so profile with STEPS_PER_RUN=1.
 */
import { readProfile } from './common.ts';

const [file, skipArg] = process.argv.slice(2);
if (!file) {
  console.error('usage: node --import tsx bench/profile-summary.ts PROFILE.json [skip=2]');
  process.exit(2);
}
const events = readProfile(file);
const runs = events.filter((e) => e.cat === 'Session' && e.name === 'model_run');
const skip = Number(skipArg ?? 2);
if (runs.length <= skip) throw new Error(`${file} has ${runs.length} runs; nothing left after skipping ${skip}`);
const from = runs[skip]!.ts;
const counted = runs.length - skip;
const kernels = events.filter((e) => e.cat === 'Node' && e.name.endsWith('_kernel_time') && e.ts >= from);

const byOp = new Map<string, number>();
for (const e of kernels) byOp.set(e.args.op_name!, (byOp.get(e.args.op_name!) ?? 0) + e.dur);
const total = [...byOp.values()].reduce((a, b) => a + b, 0);
console.log(
  `${counted} runs: ${runs
    .slice(skip)
    .map((r) => (r.dur / 1000).toFixed(0))
    .join(', ')} ms; kernel time ${(total / counted / 1000).toFixed(1)} ms a run`,
);
for (const [op, us] of [...byOp].sort((a, b) => b[1] - a[1]).slice(0, 20)) {
  console.log(`  ${op.padEnd(22)} ${(us / counted / 1000).toFixed(1).padStart(7)} ms  ${((100 * us) / total).toFixed(1).padStart(5)}%`);
}

const dims = (x: Record<string, number[]> | undefined) => (x ? Object.values(x)[0]! : []);
const numel = (d: number[]) => d.reduce((a, b) => a * b, 1);
const gemms = new Map<string, { count: number; us: number; flops: number }>();
for (const e of kernels) {
  if (!/MatMul|Gemm/.test(e.args.op_name!)) continue;
  const [a, b] = (e.args.input_type_shape ?? []).map(dims);
  const out = dims(e.args.output_type_shape?.[0]);
  if (!a || !b || out.length < 2) continue;
  // Each output element is a dot product of length K = |A| / (rows of the output, batch included).
  const k = numel(a) / numel(out.slice(0, -1));
  const key = `${e.args.op_name} [${a}] x [${b}] -> [${out}]`;
  const g = gemms.get(key) ?? { count: 0, us: 0, flops: 0 };
  g.count++;
  g.us += e.dur;
  g.flops += 2 * numel(out) * k;
  gemms.set(key, g);
}
console.log('\nMatMul-like ops by shape (per run):');
for (const [key, g] of [...gemms].sort((a, b) => b[1].us - a[1].us).slice(0, 15)) {
  console.log(
    `  ${key.padEnd(72)} x${String(Math.round(g.count / counted)).padEnd(3)} ${(g.us / counted / 1000).toFixed(1).padStart(6)} ms  ${(g.flops / g.us / 1000).toFixed(0).padStart(4)} GFLOP/s`,
  );
}
