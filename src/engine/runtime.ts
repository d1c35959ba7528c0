/** onnxruntime sessions for the engine: device → execution providers, threads, clear errors. */
import * as ort from 'onnxruntime-node';
import { InputError } from '../errors.ts';
import type { Model } from '../onnx/ir.ts';
import { EXTERNAL_THRESHOLD_BYTES, encodeModel, saveModel } from '../onnx/proto.ts';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { DType, TypedArray } from '../onnx/dtype.ts';

export type Device = 'cpu' | 'webgpu' | 'cuda' | 'auto';

export interface SessionOptions {
  device?: Device;
  /** Intra-op threads (onnxruntime's default: one per physical core). */
  threads?: number;
  /** Models whose weights exceed this go through a temp file with external data (protobuf's 2 GB limit). */
  externalDataBytes?: number;
}

const PROVIDERS: Record<Exclude<Device, 'auto'>, string[]> = { cpu: ['cpu'], cuda: ['cuda', 'cpu'], webgpu: ['webgpu', 'cpu'] };

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
  const tries: Exclude<Device, 'auto'>[] = device === 'auto' ? ['cuda', 'webgpu', 'cpu'] : [device];
  let last: unknown;
  for (const d of tries) {
    try {
      const o: ort.InferenceSession.SessionOptions = {
        executionProviders: PROVIDERS[d],
        ...(opts.threads !== undefined ? { intraOpNumThreads: opts.threads } : {}),
        interOpNumThreads: 1,
        executionMode: 'sequential',
        // 'all' may fuse into contrib ops; 'extended' keeps results stable and is fast enough.
        graphOptimizationLevel: 'extended',
        // TEMPERED_ORT_PROFILE=/path/prefix writes onnxruntime's per-op trace (chrome://tracing JSON) for performance work.
        ...(process.env.TEMPERED_ORT_PROFILE ? { enableProfiling: true, profileFilePrefix: process.env.TEMPERED_ORT_PROFILE } : {}),
      };
      return await (typeof bytes === 'string' ? ort.InferenceSession.create(bytes, o) : ort.InferenceSession.create(bytes, o));
    } catch (e) {
      // On CPU a failure is a bad graph, not a missing device: report it as it is.
      if (d === 'cpu') throw e;
      last = e;
    }
  }
  throw new InputError(`device '${device}' is not available: ${(last as Error)?.message ?? last}`, {
    where: 'train.device',
    hint:
      device === 'cuda'
        ? 'install the CUDA 12 libraries onnxruntime needs, or use device: cpu'
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
