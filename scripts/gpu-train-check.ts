/**
 * Checks the library's whole training loop on CUDA against the CPU on this machine:
 *
 *   node --import tsx scripts/gpu-train-check.ts [--steps 64] [--against cuda|cpu] [--steps-per-run N]
 *
 * Full fine-tuning of a tiny seeded BERT classifier on a synthetic task, with the encoder's dropout on
 * (masks drawn from the seed, the same on both devices), checkpoints, and each device's default steps
 * per onnxruntime run (8 on CUDA, in an ONNX Loop; 1 on the CPU at this size) unless --steps-per-run
 * says otherwise, through `trainClassifier` as a train stage runs it. Prints and judges:
 * - the loss curves on the CPU and on CUDA, step by step (float32 on both: CUDA runs without TF32);
 * - the validation accuracy both ways;
 * - determinism on CUDA: a second run gives the same exported files, byte for byte;
 * - resume on CUDA: a run stopped after a checkpoint and resumed continues the same loss curve and
 *   gives the same files as an uninterrupted one, byte for byte.
 * On an H200 (4 Dec 2026, 3 steps per run on both devices) the curves agreed to 4.5e-7 but two CUDA
 * runs did not give the same bytes until the CUDA graphs summed over the batch with MatMuls
 * (src/engine/deterministic-sums.ts); with them every line above passed.
 * On a machine without an NVIDIA GPU it prints "no GPU" and exits 0; `--against cpu` runs everything
 * CPU against CPU as a dry run. scripts/gpu-check.ts checks a single step in more detail.
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { cudaBuildLoaded, loadedOrtCore } from '../src/engine/cuda.ts';
import type { Device } from '../src/engine/runtime.ts';
import { trainClassifier, type TrainClassifierOptions, type TrainResult } from '../src/finetune/classifier.ts';
import { syntheticClassifierTask } from '../src/finetune/synthetic-text.testing.ts';
import { relaunchWithCudaBuild } from './cuda-relaunch.ts';

const { values: args } = parseArgs({
  options: {
    steps: { type: 'string', default: '64' },
    against: { type: 'string', default: 'cuda' },
    'require-gpu': { type: 'boolean', default: false },
    'steps-per-run': { type: 'string' },
  },
});
const target = args.against as Device;
if (target !== 'cuda' && target !== 'cpu') throw new Error('--against must be cuda or cpu');
const steps = Number(args.steps);
if (!Number.isInteger(steps) || steps < 10) throw new Error('--steps must be an integer ≥ 10');
const checkpointEvery = Math.floor(steps / 3);
const stepsPerRun = args['steps-per-run'] === undefined ? undefined : Number(args['steps-per-run']);
if (stepsPerRun !== undefined && !(Number.isInteger(stepsPerRun) && stepsPerRun >= 1))
  throw new Error('--steps-per-run must be a positive integer');

// The float32 loss curves drift apart as rounding differences compound over steps; 1e-3 relative
// holds for tens of steps of this model, and a wrong kernel moves the loss by far more.
const LOSS_REL_TOL = 1e-3;
const MIN_ACCURACY = 0.8;

function filesHash(dir: string): string {
  const h = createHash('sha256');
  for (const e of readdirSync(dir, { withFileTypes: true, recursive: true }).sort((a, b) =>
    join(a.parentPath, a.name).localeCompare(join(b.parentPath, b.name)),
  ))
    if (e.isFile()) h.update(join(e.parentPath, e.name).slice(dir.length)).update(readFileSync(join(e.parentPath, e.name)));
  return h.digest('hex');
}

async function main(): Promise<number> {
  if (target === 'cuda' && !cudaBuildLoaded()) relaunchWithCudaBuild({ requireGpu: args['require-gpu'] });
  console.log(`onnxruntime core: ${loadedOrtCore()}`);
  const root = mkdtempSync(join(tmpdir(), 'gpu-train-check-'));
  try {
    const { base } = syntheticClassifierTask(root);
    const options = (name: string, device: Device, over: Partial<TrainClassifierOptions> = {}): TrainClassifierOptions => ({
      ...base(name),
      method: 'full',
      lr: 3e-3,
      maxSteps: steps,
      device,
      threads: 4,
      stepsPerRun,
      // As in the train stage's own process: runs are sized by steps alone.
      runBudgetMs: Infinity,
      checkpointEvery,
      evalEvery: steps,
      ...over,
    });
    const timed = async (o: TrainClassifierOptions): Promise<TrainResult & { ms: number }> => {
      const t0 = performance.now();
      const r = await trainClassifier(o);
      return { ...r, ms: performance.now() - t0 };
    };

    const cpu = await timed(options('cpu', 'cpu'));
    const a = await timed(options('a', target));
    const b = await timed(options('b', target));
    const ctl = new AbortController();
    const stopAt = `step-${String(checkpointEvery).padStart(8, '0')}`;
    const stopped = await trainClassifier(
      options('c', target, { signal: ctl.signal, onCheckpoint: (dir) => dir.endsWith(stopAt) && ctl.abort() }),
    ).then(
      () => 'ran to the end',
      (e: Error) => (e.name === 'AbortError' ? 'stopped' : `failed: ${e.message}`),
    );
    const c = await trainClassifier(options('c', target, { resume: true }));

    let worst = { step: 0, rel: 0 };
    for (let i = 0; i < cpu.history.length; i++) {
      const rel = Math.abs(a.history[i]!.loss - cpu.history[i]!.loss) / Math.max(1e-12, Math.abs(cpu.history[i]!.loss));
      if (rel > worst.rel) worst = { step: cpu.history[i]!.step, rel };
    }
    const curve = (r: TrainResult) =>
      r.history
        .filter((h) => h.step % checkpointEvery === 0 || h.step === 1)
        .map((h) => `${h.step}:${h.loss.toFixed(4)}`)
        .join(' ');
    const acc = (r: TrainResult) => r.history.at(-1)?.val?.accuracy ?? NaN;
    const resumedRel = Math.abs(c.finalLoss - a.finalLoss) / Math.max(1e-12, Math.abs(a.finalLoss));
    const [ha, hb, hc] = [filesHash(a.outDir), filesHash(b.outDir), filesHash(c.outDir)];
    console.log(
      `model: tiny BERT, full fine-tuning with dropout 0.1, ${steps} steps of 16, ${stepsPerRun ?? "each device's default"} steps per run`,
    );
    console.log(`loss cpu          ${curve(cpu)}`);
    console.log(`loss ${target.padEnd(13)}${curve(a)}`);
    console.log(`loss curves       worst rel diff ${worst.rel.toExponential(2)} at step ${worst.step} (tolerance ${LOSS_REL_TOL})`);
    console.log(`val accuracy      cpu ${acc(cpu).toFixed(3)}  ${target} ${acc(a).toFixed(3)} (at least ${MIN_ACCURACY})`);
    console.log(`deterministic     two ${target} runs export ${ha === hb ? 'the same bytes' : 'DIFFERENT bytes'}`);
    console.log(
      `resume            ${stopped} after ${stopAt}, resumed from step ${c.resumedFromStep ?? '-'}: final loss rel diff ${resumedRel.toExponential(2)}, ${hc === ha ? 'the same bytes' : 'DIFFERENT bytes'} as uninterrupted`,
    );
    console.log(
      `wall time         cpu ${(cpu.ms / 1000).toFixed(1)} s, ${target} ${(a.ms / 1000).toFixed(1)} s (compile and checkpoints included)`,
    );
    const ok =
      worst.rel <= LOSS_REL_TOL &&
      acc(a) >= MIN_ACCURACY &&
      ha === hb &&
      stopped === 'stopped' &&
      c.resumedFromStep === checkpointEvery &&
      resumedRel <= LOSS_REL_TOL &&
      hc === ha;
    console.log(ok ? 'gpu-train-check: OK' : 'gpu-train-check: FAILED');
    return ok ? 0 : 1;
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

main().then(
  (code) => process.exit(code),
  (e: Error) => {
    console.error(`gpu-train-check: ${e.stack ?? e.message}`);
    process.exit(1);
  },
);
