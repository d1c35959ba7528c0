/**
 * Checks a whole pipeline with `device: cuda` through a real worker on this machine:
 *
 *   node --import tsx scripts/gpu-pipeline-check.ts [--steps 40] [--against cuda|cpu]
 *
 * Starts a Temporal dev server (SQLite in a throwaway folder) and a worker, writes the tiny classifier
 * pipeline (ingest → split → train: LoRA on a small random BERT, checkpoints every few steps) and runs
 * it three times, its train stage with `device: cpu`, `device: cuda` and `device: auto`, as a user's
 * runs go: the worker starts the train stage in a child process, on onnxruntime's CUDA build for `cuda`
 * and for `auto` where CUDA works here (src/engine/cuda.ts). Judges:
 * - every run succeeds;
 * - each train stage reports where it ran (its `device` output): `cuda` for `cuda` (a stage asking for
 *   CUDA runs on the CUDA build or fails at once; it never falls back to the CPU), and for `auto` CUDA
 *   exactly where the machine's CUDA probe passes, and elsewhere where `auto` lands on the npm build
 *   (WebGPU where a WebGPU session opens, else the CPU);
 * - the final losses agree to 1e-3 relative, and the step counts match.
 * scripts/gpu-check.ts and scripts/gpu-train-check.ts check the engine and the trainer in more detail;
 * this one checks the path through Temporal, the worker and the stage's child process.
 *
 * The CUDA install is the one `tempered setup --gpu` made for TEMPERED_HOME (or TEMPERED_CUDA_DIR). On
 * a machine without an NVIDIA GPU it prints "no GPU" and exits 0; where a GPU is present but CUDA is not
 * usable it says why and exits 1. `--against cpu` runs the "cuda" side on the CPU too: a dry run of
 * this script where no GPU is at hand (tests/gpu-scripts.test.ts).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { getRunStatus, waitForRun } from '../client/runs.ts';
import { stateDir } from '../infra/state.ts';
import { CUDA_DIR_ENV, cudaDir, probeCuda } from '../src/engine/cuda.ts';
import { loadStageKinds } from '../src/stages/stage-kinds.ts';
import { writeTrainPipeline } from '../tests/helpers/train-fixture.ts';
import { startTestEnv, submitPipelineFile, type TestEnv } from '../tests/helpers/temporal-env.ts';
import { exitUnlessCudaUsable } from './cuda-relaunch.ts';
import { whereAutoLands } from '../src/engine/where-auto-lands.testing.ts';

const { values: args } = parseArgs({
  options: {
    steps: { type: 'string', default: '40' },
    against: { type: 'string', default: 'cuda' },
    'require-gpu': { type: 'boolean', default: false },
  },
});
const target = args.against;
if (target !== 'cuda' && target !== 'cpu') throw new Error('--against must be cuda or cpu');
const steps = Number(args.steps);
if (!Number.isInteger(steps) || steps < 8) throw new Error('--steps must be an integer ≥ 8');
// As in gpu-train-check: float32 losses drift apart as rounding differences compound over steps, and
// 1e-3 relative holds for tens of steps of this model, while a wrong kernel moves the loss far more.
const LOSS_REL_TOL = 1e-3;

// The worker's state folder is a throwaway one, so the stage's child must be pointed at the CUDA
// install this machine's TEMPERED_HOME holds.
process.env[CUDA_DIR_ENV] ||= cudaDir(stateDir());
const probe =
  target === 'cuda'
    ? exitUnlessCudaUsable(process.env[CUDA_DIR_ENV]!, { requireGpu: args['require-gpu'] })
    : probeCuda(process.env[CUDA_DIR_ENV]!);
if (target === 'cuda') console.log(`GPU: ${probe.devices.join(', ')}, driver ${probe.driver ?? 'unknown'}; CUDA install ${probe.dir}`);

interface Outcome {
  state: string;
  device?: unknown;
  steps?: unknown;
  finalLoss?: unknown;
  wallSec?: unknown;
  error?: string;
}

async function runPipeline(env: TestEnv, device: 'cuda' | 'cpu' | 'auto'): Promise<Outcome> {
  const dir = mkdtempSync(join(env.dir, `pipeline-${device}-`));
  const file = writeTrainPipeline(dir, { maxSteps: steps, checkpointEvery: Math.max(2, Math.floor(steps / 4)), device });
  const runId = await submitPipelineFile(env, file, { actor: 'gpu-pipeline-check', noCache: true });
  const st = await waitForRun(env.client, runId).catch(() => getRunStatus(env.client, runId));
  const train = st.stages.find((s) => s.id === 'train');
  const out = train?.outputs as Record<string, unknown> | undefined;
  return {
    state: st.state,
    device: out?.device,
    steps: out?.steps,
    finalLoss: out?.finalLoss,
    wallSec: (out?.baseModel as { wallSec?: unknown } | undefined)?.wallSec,
    error: st.stages.find((s) => s.error)?.error?.message,
  };
}

const home = mkdtempSync(join(tmpdir(), 'gpu-pipeline-check-'));
let env: TestEnv | undefined;
let ok = true;
try {
  env = await startTestEnv(await loadStageKinds(), { dir: home });
  await env.startWorker();
  const cpu = await runPipeline(env, 'cpu');
  const gpu = await runPipeline(env, target);
  const auto = await runPipeline(env, 'auto');
  const runs = [
    ['cpu', cpu, 'cpu'],
    [target, gpu, target],
    ['auto', auto, probe.ok ? 'cuda' : await whereAutoLands()],
  ] as const;
  for (const [asked, o] of runs)
    console.log(
      `run (train device: ${asked})`.padEnd(30) +
        `${o.state}; trained on ${String(o.device)}, ${String(o.steps)} steps, final loss ${String(o.finalLoss)}, ` +
        `train stage ${typeof o.wallSec === 'number' ? o.wallSec.toFixed(1) : '?'} s${o.error ? `; error: ${o.error}` : ''}`,
    );
  const judge = (what: string, pass: boolean, detail: string) => {
    console.log(`${what.padEnd(30)}${detail}${pass ? '' : '  FAILED'}`);
    ok &&= pass;
  };
  judge(
    'every run succeeds',
    runs.every(([, o]) => o.state === 'succeeded'),
    runs.map(([, o]) => o.state).join(', '),
  );
  judge(
    'train ran where expected',
    runs.every(([, o, expected]) => o.device === expected),
    runs.map(([asked, o, expected]) => `${asked} → ${String(o.device)} (expected ${expected})`).join(', '),
  );
  judge(
    'same number of steps',
    runs.every(([, o]) => o.steps === steps),
    `${runs.map(([, o]) => String(o.steps)).join(', ')} (asked ${steps})`,
  );
  const losses = runs.map(([, o]) => o.finalLoss);
  if (losses.every((l): l is number => typeof l === 'number')) {
    const rel = Math.max(...losses.map((l) => Math.abs(l - losses[0]!) / Math.max(Math.abs(losses[0]!), 1e-12)));
    judge('final loss', rel <= LOSS_REL_TOL, `worst rel diff from the CPU run ${rel.toExponential(2)} (tolerance ${LOSS_REL_TOL})`);
  } else judge('final loss', false, 'missing');
} catch (e) {
  console.log(`gpu-pipeline-check: ${(e as Error).stack ?? String(e)}`);
  ok = false;
} finally {
  await env?.close();
  rmSync(home, { recursive: true, force: true });
}
console.log(`gpu-pipeline-check: ${ok ? 'OK' : 'FAILED'}`);
process.exit(ok ? 0 : 1);
