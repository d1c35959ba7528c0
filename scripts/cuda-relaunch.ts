/**
 * For the GPU check scripts: a process runs the npm (CPU) build of onnxruntime, so a script that wants
 * CUDA starts itself again with onnxruntime's CUDA build (src/engine/cuda.ts). Prints "no GPU" and exits
 * 0 where the machine has none (1 with `--require-gpu`), exits 1 where a GPU is present but CUDA is not usable.
 */
import { spawnSync } from 'node:child_process';
import { stateDir } from '../infra/state.ts';
import { CUDA_TF32_ENV, cudaDir, cudaProcessEnv, probeCuda, type CudaProbe } from '../src/engine/cuda.ts';

/** Set in the relaunched process, so a CUDA build that still did not load fails instead of relaunching forever. */
const RELAUNCHED_ENV = 'TEMPERED_CUDA_RELAUNCHED';

/**
 * The CUDA probe of `dir` when it passes; otherwise says why and exits: 1 where a GPU is present but
 * CUDA is not usable, and where there is no GPU 0, or 1 with `requireGpu` (`--require-gpu`: a GPU
 * host's acceptance check must not pass on a host that cannot run CUDA).
 */
export function exitUnlessCudaUsable(dir: string, opts: { requireGpu?: boolean } = {}): CudaProbe {
  const probe = probeCuda(dir);
  if (!probe.ok) {
    const noGpu = probe.devices.length === 0;
    console.log(`${noGpu ? 'no GPU' : 'GPU present, CUDA not usable'}: ${probe.problems.join('; ')}`);
    process.exit(noGpu && !opts.requireGpu ? 0 : 1);
  }
  return probe;
}

export function relaunchWithCudaBuild(opts: { tf32?: boolean; requireGpu?: boolean } = {}): never {
  const dir = cudaDir(stateDir());
  const probe = exitUnlessCudaUsable(dir, opts);
  if (process.env[RELAUNCHED_ENV]) {
    console.log(
      `the CUDA build from ${dir} did not load in the relaunched process (was LD_LIBRARY_PATH ignored, e.g. for a node binary with file capabilities?)`,
    );
    process.exit(1);
  }
  console.log(
    `GPU: ${probe.devices.join(', ')}, driver ${probe.driver ?? 'unknown'}; starting again with onnxruntime's CUDA build from ${dir}`,
  );
  // --tf32 goes through the switch a worker reads, so the check runs what a user would get.
  const env = cudaProcessEnv(dir, opts.tf32 ? { ...process.env, [CUDA_TF32_ENV]: '1' } : process.env);
  env[RELAUNCHED_ENV] = '1';
  console.log(`TF32 ${env.NVIDIA_TF32_OVERRIDE === '0' ? 'off (NVIDIA_TF32_OVERRIDE=0)' : 'allowed'}`);
  const r = spawnSync(process.execPath, [...process.execArgv, ...process.argv.slice(1)], { env, stdio: 'inherit' });
  process.exit(r.status ?? 1);
}
