/**
 * For the GPU check scripts: a process runs the npm (CPU) build of onnxruntime, so a script that wants
 * CUDA starts itself again with onnxruntime's CUDA build (src/engine/cuda.ts). Prints "no GPU" and exits
 * 0 where the machine has none, exits 1 where a GPU is present but CUDA is not usable.
 */
import { spawnSync } from 'node:child_process';
import { stateDir } from '../infra/state.ts';
import { CUDA_TF32_ENV, cudaDir, cudaProcessEnv, probeCuda, type CudaProbe } from '../src/engine/cuda.ts';

/** The CUDA probe of `dir` when it passes; otherwise says why and exits (0 with no GPU, 1 with one). */
export function exitUnlessCudaUsable(dir: string): CudaProbe {
  const probe = probeCuda(dir);
  if (!probe.ok) {
    const noGpu = probe.devices.length === 0;
    console.log(`${noGpu ? 'no GPU' : 'GPU present, CUDA not usable'}: ${probe.problems.join('; ')}`);
    process.exit(noGpu ? 0 : 1);
  }
  return probe;
}

export function relaunchWithCudaBuild(opts: { tf32?: boolean } = {}): never {
  const dir = cudaDir(stateDir());
  const probe = exitUnlessCudaUsable(dir);
  console.log(
    `GPU: ${probe.devices.join(', ')}, driver ${probe.driver ?? 'unknown'}; starting again with onnxruntime's CUDA build from ${dir}`,
  );
  // --tf32 goes through the switch a worker reads, so the check runs what a user would get.
  const env = cudaProcessEnv(dir, opts.tf32 ? { ...process.env, [CUDA_TF32_ENV]: '1' } : process.env);
  console.log(`TF32 ${env.NVIDIA_TF32_OVERRIDE === '0' ? 'off (NVIDIA_TF32_OVERRIDE=0)' : 'allowed'}`);
  const r = spawnSync(process.execPath, [...process.execArgv, ...process.argv.slice(1)], { env, stdio: 'inherit' });
  process.exit(r.status ?? 1);
}
