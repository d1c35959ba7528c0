/** onnxruntime sessions for the engine: device → execution providers, threads, clear errors. */
import * as ort from 'onnxruntime-node';
import { InputError } from '../errors.ts';
import type { Model } from '../onnx/ir.ts';
import { EXTERNAL_THRESHOLD_BYTES, encodeModel, saveModel } from '../onnx/proto.ts';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { DType, TypedArray } from '../onnx/dtype.ts';
import { cudaBuildLoaded, cudaCpuFallback, loadedOrtCore, probeMachine, runsOnCuda } from './cuda.ts';

export type Device = 'cpu' | 'webgpu' | 'cuda' | 'auto';

export interface SessionOptions {
  device?: Device;
  /** Intra-op threads (onnxruntime's default: one per physical core). */
  threads?: number;
  /** Models whose weights exceed this go through a temp file with external data (protobuf's 2 GB limit). */
  externalDataBytes?: number;
  /**
   * CUDA only: false makes session creation fail when any node has no CUDA kernel and would run on the
   * CPU provider (onnxruntime's `session.disable_cpu_ep_fallback`). Default: TEMPERED_CUDA_CPU_FALLBACK, else true.
   */
  cpuFallback?: boolean;
  /** Writes onnxruntime's per-node trace (which provider ran each node) under this prefix; default TEMPERED_ORT_PROFILE. */
  profilePrefix?: string;
  /**
   * onnxruntime's memory pattern (default on): from the second run on, one block sized for all of a run's intermediate
   * values, planned from the first run. The arena keeps what the first run allocated tensor by tensor and adds that
   * block beside it, so the process holds the step's activations twice: training steps turn it off (`StepRunner`),
   * which measured a lower peak RSS (SmolLM2-135M LoRA, batch 2 × 256: 3974 vs 5209 MiB) at no loss of speed.
   */
  memPattern?: boolean;
  /**
   * onnxruntime's CPU memory arena (default on, as in onnxruntime). The arena never gives back what it took: a
   * long-lived session holds its largest run's peak for good. Off, a run's buffers go back to malloc when it ends,
   * at the cost of page faults on large runs. Served classifiers run without it (SERVE_MEM_ARENA in
   * src/serve/worker-pool.ts, figures in bench/serve-memory.bench.ts); training sessions keep it, since each
   * attempt runs in a process that exits.
   */
  memArena?: boolean;
}

const PROVIDERS: Record<Exclude<Device, 'auto'>, ort.InferenceSession.ExecutionProviderConfig[]> = {
  cpu: ['cpu'],
  cuda: [{ name: 'cuda', deviceId: 0 }, 'cpu'],
  webgpu: ['webgpu', 'cpu'],
};

/**
 * The devices to try, in order. CUDA needs onnxruntime's CUDA build in this process (cuda.ts): asking
 * the npm build for it is an error at once that says why, never a silent run on the CPU.
 */
function devicesToTry(device: Device): Exclude<Device, 'auto'>[] {
  if (device === 'auto') return runsOnCuda(device) ? ['cuda', 'cpu'] : ['webgpu', 'cpu'];
  if (device === 'cuda' && !cudaBuildLoaded()) {
    const machine = probeMachine();
    throw new InputError(
      `device 'cuda' is not available: ${
        machine.ok
          ? `this process runs onnxruntime's npm build (${loadedOrtCore() ?? 'core library not found'}), which has no CUDA provider`
          : machine.problems.join('; ')
      }`,
      {
        where: 'train.device',
        hint: machine.ok
          ? 'run `npx tempered setup --gpu`; stages run in their own process (TEMPERED_STAGE_ISOLATION=process, the default) are then started with the CUDA build'
          : 'use device: cpu (or auto, which takes CUDA only where it works), or route the stage to a GPU worker with queue:',
      },
    );
  }
  return [device];
}

/** The device each session opened here landed on: `auto` and fallbacks are only settled by trying. */
const landedOn = new WeakMap<ort.InferenceSession, Exclude<Device, 'auto'>>();

/** Where a session from createSession runs: the first device in its try order that opened it. */
export function sessionDevice(session: ort.InferenceSession): Exclude<Device, 'auto'> {
  const d = landedOn.get(session);
  if (!d) throw new Error('sessionDevice: this session was not opened by createSession');
  return d;
}

export async function createSession(model: Model | Uint8Array, opts: SessionOptions = {}): Promise<ort.InferenceSession> {
  const weightBytes = model instanceof Uint8Array ? 0 : [...model.graph.initializers.values()].reduce((s, t) => s + t.data.byteLength, 0);
  if (!(model instanceof Uint8Array) && weightBytes > (opts.externalDataBytes ?? EXTERNAL_THRESHOLD_BYTES)) {
    const dir = mkdtempSync(join(tmpdir(), 'tempered-session-'));
    try {
      saveModel(model, join(dir, 'model.onnx'), { externalData: true });
      return await open(join(dir, 'model.onnx'), opts);
    } finally {
      // onnxruntime has read (or mapped) the weights by now; an unlinked mapping stays valid on Linux.
      rmSync(dir, { recursive: true, force: true });
    }
  }
  return open(model instanceof Uint8Array ? model : encodeModel(model), opts);
}

/** A session from a model file on disk (external data beside it is read, or memory-mapped, by onnxruntime). */
export function createSessionFromFile(path: string, opts: SessionOptions = {}): Promise<ort.InferenceSession> {
  return open(path, opts);
}

async function open(bytes: Uint8Array | string, opts: SessionOptions): Promise<ort.InferenceSession> {
  const device = opts.device ?? 'cpu';
  const tries = devicesToTry(device);
  const profile = opts.profilePrefix ?? process.env.TEMPERED_ORT_PROFILE;
  let last: unknown;
  for (const d of tries) {
    try {
      const strictCuda = d === 'cuda' && !(opts.cpuFallback ?? cudaCpuFallback());
      const o: ort.InferenceSession.SessionOptions = {
        executionProviders: PROVIDERS[d],
        ...(strictCuda ? { extra: { session: { disable_cpu_ep_fallback: '1' } } } : {}),
        ...(opts.threads !== undefined ? { intraOpNumThreads: opts.threads } : {}),
        interOpNumThreads: 1,
        executionMode: 'sequential',
        // 'all' may fuse into contrib ops; 'extended' keeps results stable and is fast enough.
        graphOptimizationLevel: 'extended',
        // TEMPERED_ORT_PROFILE=/path/prefix writes onnxruntime's per-op trace (chrome://tracing JSON) for performance work.
        ...(profile ? { enableProfiling: true, profileFilePrefix: profile } : {}),
        ...(opts.memPattern === false ? { enableMemPattern: false } : {}),
        ...(opts.memArena === false ? { enableCpuMemArena: false } : {}),
      };
      const session = await (typeof bytes === 'string' ? ort.InferenceSession.create(bytes, o) : ort.InferenceSession.create(bytes, o));
      landedOn.set(session, d);
      return session;
    } catch (e) {
      // On CPU a failure is a bad graph, not a missing device: report it as it is.
      if (d === 'cpu') throw e;
      last = e;
    }
  }
  throw sessionFailure(device, last, device === 'cuda' ? probeMachine() : undefined);
}

/** GPU memory or a busy device at session creation: another process holds it now, not a setting to fix. */
const TRANSIENT_DEVICE_ERROR =
  /out of memory|CUDA_ERROR_OUT_OF_MEMORY|cudaErrorMemoryAllocation|CUBLAS_STATUS_ALLOC_FAILED|device(?: is)? busy|busy or unavailable/i;

/**
 * Why no session could be made on `device`. A device that is missing or cannot run the graph is an
 * input error (another attempt meets the same machine); a GPU that is present but out of memory or
 * busy (a second training on a shared GPU) is a plain error, so the stage is retried later.
 */
export function sessionFailure(device: Device, last: unknown, machine?: { ok: boolean; problems: string[] }): Error {
  const message = (last as Error)?.message ?? String(last);
  if (device !== 'cpu' && (!machine || machine.ok) && TRANSIENT_DEVICE_ERROR.test(message))
    return new Error(`device '${device}' could not take the session now (${message}); the attempt is retried`);
  const why = machine && !machine.ok ? `; ${machine.problems.join('; ')}` : '';
  return new InputError(`device '${device}' is not available: ${message}${why}`, {
    where: 'train.device',
    hint:
      device === 'cuda'
        ? 'check the GPU with `node --import tsx scripts/gpu-check.ts`; TEMPERED_CUDA_CPU_FALLBACK=0 fails on nodes without a CUDA kernel, unset it to let them run on the CPU'
        : 'use device: cpu (available everywhere) or auto',
  });
}

export function toOrt(dtype: DType, data: TypedArray, dims: readonly number[]): ort.Tensor {
  const t =
    dtype === 'float32'
      ? 'float32'
      : dtype === 'float64'
        ? 'float64'
        : dtype === 'int64'
          ? 'int64'
          : dtype === 'int32'
            ? 'int32'
            : dtype === 'bool'
              ? 'bool'
              : dtype === 'uint8'
                ? 'uint8'
                : dtype === 'int8'
                  ? 'int8'
                  : 'float16';
  return new ort.Tensor(t, data as never, dims as number[]);
}
