/**
 * onnxruntime's CUDA build: where `tempered setup --gpu` put it, whether this machine can run it, and
 * how a process loads it instead of the npm (CPU/WebGPU) build.
 *
 * The npm binding (`onnxruntime_binding.node`) finds its core library `libonnxruntime.so.1` through
 * RUNPATH `$ORIGIN`, which `LD_LIBRARY_PATH` overrides. So a process started with `cudaProcessEnv()`
 * loads the PyPI onnxruntime-gpu core library, its CUDA provider and NVIDIA's CUDA 13 libraries from
 * `<state>/cuda/lib`, and every other process keeps the npm build untouched. glibc reads the variable
 * only at process start: a running process cannot switch, which is why stages asking for CUDA run in
 * a child process started this way (src/isolate/run-in-child.ts).
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { InputError } from '../errors.ts';

/** Overrides `<TEMPERED_HOME>/cuda`, e.g. to share one install between several state folders. */
export const CUDA_DIR_ENV = 'TEMPERED_CUDA_DIR';
/** Set to `0` to make a CUDA session fail when any node would run on the CPU provider. */
export const CUDA_CPU_FALLBACK_ENV = 'TEMPERED_CUDA_CPU_FALLBACK';
/** Written last by the installer: the files of a complete install with their sizes and hashes. */
export const CUDA_MANIFEST = 'installed.json';
/** CUDA 13 needs an NVIDIA driver of this branch or newer. */
export const MIN_DRIVER_MAJOR = 580;

export interface CudaManifest {
  /** What was installed, e.g. `onnxruntime-gpu 1.30.0 + CUDA 13`. */
  what: string;
  /** The onnxruntime release installed (manifests before 5 Dec 2026 say it only in `what`). */
  ortVersion?: string;
  /** File name in lib/ → size and sha256 (hex). */
  files: Record<string, { bytes: number; sha256: string; from: string }>;
}

export function cudaDir(stateDir: string, env: Record<string, string | undefined> = process.env): string {
  return env[CUDA_DIR_ENV]?.trim() || join(stateDir, 'cuda');
}

export function cudaLibDir(dir: string): string {
  return join(dir, 'lib');
}

/** The version of the onnxruntime-node package this checkout runs, if it can be read. */
export function npmOrtVersion(): string | undefined {
  try {
    return (createRequire(import.meta.url)('onnxruntime-node/package.json') as { version?: string }).version;
  } catch {
    return undefined;
  }
}

/** The install's manifest when it is complete (every listed file present at its size), else why not. */
export function readCudaInstall(dir: string): { manifest: CudaManifest } | { problem: string } {
  const path = join(dir, CUDA_MANIFEST);
  if (!existsSync(path)) return { problem: `onnxruntime's CUDA build is not installed (no ${path})` };
  let manifest: CudaManifest;
  try {
    manifest = JSON.parse(readFileSync(path, 'utf8')) as CudaManifest;
    if (!manifest.files || typeof manifest.files !== 'object') throw new Error('no files listed');
  } catch (e) {
    return { problem: `${path} is unreadable (${(e as Error).message})` };
  }
  // The CUDA build must be the release the npm binding was built against, whose symbols it needs: an
  // install left from before an upgrade of onnxruntime-node would fail in every CUDA child instead.
  const installed = manifest.ortVersion ?? /onnxruntime-gpu (\S+)/.exec(manifest.what ?? '')?.[1];
  const binding = npmOrtVersion();
  if (installed && binding && installed !== binding)
    return { problem: `the CUDA install in ${dir} is onnxruntime ${installed}, but this checkout's onnxruntime-node is ${binding}` };
  for (const [name, f] of Object.entries(manifest.files)) {
    const p = join(cudaLibDir(dir), name);
    if (!existsSync(p)) return { problem: `the CUDA install in ${dir} is incomplete: ${name} is missing` };
    if (statSync(p).size !== f.bytes) return { problem: `the CUDA install in ${dir} is damaged: ${name} is not ${f.bytes} bytes` };
  }
  return { manifest };
}

export interface CudaProbe {
  ok: boolean;
  /** Each reason this machine cannot run CUDA sessions, as a sentence saying what to do. */
  problems: string[];
  /** NVIDIA devices seen (`/dev/nvidia0`, …). */
  devices: string[];
  /** Kernel driver version from /proc/driver/nvidia/version, when loaded. */
  driver?: string;
  dir: string;
}

export interface ProbeOptions {
  env?: Record<string, string | undefined>;
  /** Prefix for /dev, /proc and the system library folders: lets tests describe a machine. Default `/`. */
  root?: string;
  /** Folders searched for libcuda.so.1; default the loader's cache (ldconfig -p) and the usual driver folders. */
  driverDirs?: string[];
}

const DRIVER_DIRS = [
  '/usr/lib/x86_64-linux-gnu',
  '/usr/lib/aarch64-linux-gnu',
  '/usr/lib64',
  '/usr/lib',
  '/usr/local/nvidia/lib64',
  '/usr/local/nvidia/lib',
  '/usr/lib/wsl/lib',
];

function ldconfigDirs(): string[] {
  for (const bin of ['/sbin/ldconfig', '/usr/sbin/ldconfig']) {
    if (!existsSync(bin)) continue;
    const r = spawnSync(bin, ['-p'], { encoding: 'utf8' });
    if (r.status !== 0) continue;
    return r.stdout
      .split('\n')
      .filter((l) => l.includes('libcuda.so.1 '))
      .map((l) => dirname(l.split('=>')[1]!.trim()));
  }
  return [];
}

/**
 * Whether this machine can run onnxruntime's CUDA build: installed by `setup --gpu`, an NVIDIA driver
 * (libcuda.so.1, branch ≥ 580) and at least one visible device. Reads files only; loads nothing.
 */
export function probeCuda(dir: string, opts: ProbeOptions = {}): CudaProbe {
  const install = readCudaInstall(dir);
  const machine = probeMachine(opts);
  const problems = [
    ...('problem' in install ? [`${install.problem}: run \`npx tempered setup --gpu\` on this machine (about 1.3 GB from PyPI)`] : []),
    ...machine.problems,
  ];
  return { ...machine, ok: problems.length === 0, problems, dir };
}

/** The machine's part of probeCuda: driver and devices, whatever is installed. */
export function probeMachine(opts: ProbeOptions = {}): Omit<CudaProbe, 'dir'> {
  const env = opts.env ?? process.env;
  const root = opts.root ?? '/';
  const at = (p: string) => join(root, p);
  const problems: string[] = [];

  const driverDirs = opts.driverDirs ?? [
    ...(env.LD_LIBRARY_PATH ?? '').split(':').filter(Boolean),
    ...(root === '/' ? ldconfigDirs() : []),
    ...DRIVER_DIRS.map(at),
  ];
  const libcuda = driverDirs.find((d) => existsSync(join(d, 'libcuda.so.1')));
  let driver: string | undefined;
  try {
    driver = /Kernel Module\s+(?:for\s+\S+\s+)?([\d.]+)/.exec(readFileSync(at('/proc/driver/nvidia/version'), 'utf8'))?.[1];
  } catch {
    driver = undefined;
  }
  if (!libcuda && !driver)
    problems.push(
      `the NVIDIA driver is missing (no libcuda.so.1 in the loader's paths, no /proc/driver/nvidia): install NVIDIA's driver, branch ${MIN_DRIVER_MAJOR} or newer (CUDA 13)`,
    );
  else if (!libcuda)
    problems.push(
      `the NVIDIA driver's user-space library libcuda.so.1 is not on the loader's paths (kernel module ${driver} is loaded): install the driver's user-space part or add its folder to LD_LIBRARY_PATH`,
    );
  else if (driver && Number(driver.split('.')[0]) < MIN_DRIVER_MAJOR)
    problems.push(`NVIDIA driver ${driver} is too old for CUDA 13: upgrade to branch ${MIN_DRIVER_MAJOR} or newer`);

  let devices: string[] = [];
  try {
    devices = readdirSync(at('/dev'))
      .filter((n) => /^nvidia\d+$/.test(n))
      .map((n) => `/dev/${n}`);
  } catch {
    devices = [];
  }
  const visible = env.CUDA_VISIBLE_DEVICES?.trim();
  if (devices.length === 0)
    problems.push('no NVIDIA GPU on this machine (no /dev/nvidia0): use device: cpu, or run this stage on a GPU worker');
  else if (visible !== undefined && (visible === '' || visible === '-1' || /^none$/i.test(visible)))
    problems.push(`CUDA_VISIBLE_DEVICES=${JSON.stringify(visible)} hides every GPU: unset it or name a device`);

  return { ok: problems.length === 0, problems, devices, driver };
}

/** Set to `1` to let CUDA MatMuls run in TF32 (10-bit mantissa): faster, but no longer the CPU's numbers. */
export const CUDA_TF32_ENV = 'TEMPERED_CUDA_TF32';

/**
 * Whether a CUDA process may use TF32. onnxruntime's CUDA provider turns TF32 on by default and
 * onnxruntime-node passes no provider option to turn it off, so tempered switches it off through
 * cuBLAS/cuDNN's own NVIDIA_TF32_OVERRIDE=0 unless asked: on an H200 that gave the CPU's loss to
 * 3.6e-4 relative with TF32 on a tiny encoder and 2.0e-2 on MiniLM's shape (scripts/gpu-check.ts),
 * and PyTorch too keeps TF32 off for float32 matmuls by default. An explicit NVIDIA_TF32_OVERRIDE wins.
 */
export function cudaTf32(env: Record<string, string | undefined> = process.env): boolean {
  return switchEnv(env, CUDA_TF32_ENV, false);
}

/** A 1/0 (or true/false) switch from the environment; unset or empty gives `dflt`, anything else is refused. */
function switchEnv(env: Record<string, string | undefined>, name: string, dflt: boolean): boolean {
  const v = env[name]?.trim();
  if (v === undefined || v === '') return dflt;
  if (v === '1' || v === 'true') return true;
  if (v === '0' || v === 'false') return false;
  throw new InputError(`${name}=${JSON.stringify(v)} must be 1 or 0`, { where: name });
}

/** The environment of a child process that loads onnxruntime's CUDA build from `dir`. */
export function cudaProcessEnv(dir: string, env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const lib = cudaLibDir(dir);
  const tf32 = env.NVIDIA_TF32_OVERRIDE !== undefined ? {} : { NVIDIA_TF32_OVERRIDE: cudaTf32(env) ? '1' : '0' };
  return { ...env, ...tf32, LD_LIBRARY_PATH: [lib, env.LD_LIBRARY_PATH].filter(Boolean).join(':') };
}

/** The onnxruntime core library this process has loaded (from /proc/self/maps), if any. */
export function loadedOrtCore(): string | undefined {
  try {
    const line = readFileSync('/proc/self/maps', 'utf8')
      .split('\n')
      .find((l) => /\/libonnxruntime\.so[.\d]*$/.test(l));
    return line ? line.slice(line.indexOf('/')) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * True when the core library this process loaded is onnxruntime's CUDA build: the one `setup --gpu`
 * installs, which has the CUDA provider beside it. The npm build has no CUDA provider, so asking it
 * for CUDA can only fail.
 */
export function cudaBuildLoaded(core = loadedOrtCore()): boolean {
  return core !== undefined && existsSync(join(dirname(core), 'libonnxruntime_providers_cuda.so'));
}

/** Whether sessions for `device` run on CUDA in this process (`auto` does where the CUDA build is loaded). */
export function runsOnCuda(device: ProcessDevice | undefined): boolean {
  return device === 'cuda' || (device === 'auto' && cudaBuildLoaded());
}

/** Whether CUDA sessions may place nodes without a CUDA kernel on the CPU provider (default yes). */
export function cudaCpuFallback(env: Record<string, string | undefined> = process.env): boolean {
  return switchEnv(env, CUDA_CPU_FALLBACK_ENV, true);
}

export type ProcessDevice = 'cpu' | 'webgpu' | 'cuda' | 'auto';

/**
 * How to start the process that runs a stage asking for `device`: with the CUDA build for `cuda`
 * (an InputError at once, naming every problem, when this machine cannot: never a silent CPU run),
 * for `auto` when the probe passes, and the npm build otherwise.
 */
export function processForDevice(
  device: ProcessDevice | undefined,
  stateDir: string,
  opts: ProbeOptions & { where?: string; cudaHere?: { allowed: boolean; queues: string[] } } = {},
): { env: NodeJS.ProcessEnv; cuda: boolean; note?: string } {
  const env = (opts.env ?? process.env) as NodeJS.ProcessEnv;
  if (device !== 'cuda' && device !== 'auto') return { env, cuda: false };
  // A GPU host that also serves a CPU queue (`--cuda-queues gpu`): a stage from the CPU queue must not
  // take the GPU beside the one training the GPU queue's cap allows.
  const gate = opts.cudaHere;
  if (gate && !gate.allowed) {
    if (device === 'auto')
      return {
        env,
        cuda: false,
        note: `device auto: this worker runs CUDA stages only from queue ${gate.queues.join(', ')}; using the npm build (WebGPU where a session opens, else the CPU)`,
      };
    throw new InputError(`device 'cuda' on a queue this worker does not run CUDA stages from (only ${gate.queues.join(', ')})`, {
      where: opts.where ?? 'train.device',
      hint: `route the stage to the GPU workers with queue: ${gate.queues[0]}, or use device: auto`,
    });
  }
  const dir = cudaDir(stateDir, env);
  const probe = probeCuda(dir, opts);
  if (probe.ok) return { env: cudaProcessEnv(dir, env), cuda: true, note: `device ${device}: CUDA (${probe.devices.join(', ')})` };
  if (device === 'auto')
    return {
      env,
      cuda: false,
      note: `device auto: no CUDA here (${probe.problems.join('; ')}); using the npm build (WebGPU where a session opens, else the CPU)`,
    };
  throw cudaUnavailable(probe, opts.where ?? 'train.device');
}

export function cudaUnavailable(probe: CudaProbe, where: string, detail?: string): InputError {
  return new InputError(`device 'cuda' is not available on this machine: ${probe.problems.join('; ')}${detail ? `; ${detail}` : ''}`, {
    where,
    hint: 'use device: cpu (or auto, which takes CUDA only where it works), or route the stage to a GPU worker with queue:',
  });
}
